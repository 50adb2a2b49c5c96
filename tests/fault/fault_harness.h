// A seeded fault run over a whole confman cluster in one process.
//
// RunFaults starts a LocalCluster of three members (LMDB storage; the
// in-memory network or TCP), runs client threads that write, read, compare-
// and-set, delete, list and watch a few keys, while a nemesis crashes and
// restarts members (the leader too, and members in the middle of a snapshot
// transfer), partitions them (both ways and one way), transfers leadership,
// adds, promotes and removes members, fails and slows their log storage.
// Members keep only a few log entries, so whoever falls behind catches up
// through a snapshot while writes go on. At the end everything is healed and
// restarted, the members must converge, and every key is read through every
// member. The result is the History of what every client was told, for
// the linearizability checker, plus what the harness checked itself.
//
// Same seed, same schedule: the operations each client issues and the
// nemesis' actions are drawn from generators seeded by the run's seed (the
// threads' timing, and so the outcomes, still vary from run to run).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "history.h"

namespace confman::fault {

struct FaultRunOptions {
  uint64_t seed = 1;
  // How long clients and nemesis run; healing, convergence and the final
  // reads come after.
  std::chrono::seconds duration{30};
  // The in-memory network (partitions possible) or TCP on 127.0.0.1.
  bool in_memory_network = true;
  // confman::testing::NodeTestingFault bits given to the members listed in
  // faulty_members (every member when that is empty).
  uint32_t testing_faults = 0;
  std::vector<uint64_t> faulty_members{};
  int clients = 6;
  int keys = 6;
  // Member log lines and nemesis actions on stderr as they happen.
  bool verbose = false;
};

struct FaultRunReport {
  History history{};
  // What the caller was told for every operation that did not return OK
  // (keyed by Operation::id), to explain a violation.
  std::map<uint64_t, std::string> statuses{};
  // Nemesis actions by kind, and those that could not be carried out.
  std::map<std::string, uint64_t> faults{};
  std::map<std::string, uint64_t> fault_errors{};
  uint64_t lists = 0;
  uint64_t snapshots_received = 0;  // node.snapshots_received, all members.
  uint64_t snapshots_sent = 0;      // node.snapshots_sent, all members.
  uint64_t storage_errors = 0;      // node.storage_errors, all members.
  uint64_t leader_changes = 0;      // As the nemesis observed them.
  // Found by the harness itself: phantom values in lists, members that did
  // not converge or hold different states, values read back corrupted.
  std::vector<std::string> violations{};
  // The last lines the members and the nemesis logged.
  std::vector<std::string> recent_log{};
};

// InvalidArgument for bad options; the error if the cluster cannot start.
// Everything that goes wrong later is in the report.
absl::StatusOr<FaultRunReport> RunFaults(const FaultRunOptions& options);

// One line describing `op`, for violation reports.
std::string DescribeOperation(const Operation& op);

}  // namespace confman::fault
