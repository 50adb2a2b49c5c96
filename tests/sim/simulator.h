// confman's deterministic Raft simulator, as a library.
//
// RunSeed runs one simulated cluster for `steps` steps of faults and
// workload — message loss, duplication, reordering and delay, symmetric and
// one-way partitions, crash-restarts that lose unflushed writes, membership
// changes, leadership transfers, proposals, ReadIndex and lease reads, log
// compaction and snapshot transfers — checking Raft's safety properties
// after every step (see checker.h). A liveness phase follows: faults stop,
// the network heals, and a leader must commit a probe entry and settle every
// accepted proposal within a bounded simulated time.
//
// A run is a pure function of its SimOptions: the same options give the same
// run, step for step, so every violation is reproducible from the command
// line ReproduceCommand prints.
//
// Thread safety: RunSeed uses no shared state; RunSeeds runs seeds on
// several threads.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace confman::sim {

struct SimOptions {
  // Selects every random choice of the run.
  uint64_t seed = 1;
  // Steps of the fault phase. A step is a tenth of a core tick; an election
  // timeout is 10 ticks, so 5000 steps are 50 election timeouts.
  uint64_t steps = 5000;
  // Initial voters: 3 or 5. Two more member ids boot as spares.
  uint32_t members = 3;
  // A bitwise OR of raft::TestingFault values, for the non-vacuity tests.
  uint32_t testing_faults = 0;
  // Bound on the liveness phase, in core ticks, plus two ticks for each
  // entry some member holds beyond the highest applied index when the
  // faults stop (a long uncommitted backlog drains one round trip at a
  // time when the flow-control windows are tiny).
  uint32_t liveness_ticks = 500;
  // Test-only driver fault: never call Core::ReportApplied. Seeds with a
  // small apply window (max_unapplied_bytes) must then fail the liveness
  // phase; seeds without one must still pass.
  bool lose_apply_reports = false;
  // When set, the run's events are written here (for diagnosing a seed).
  std::ostream* trace = nullptr;

  // InvalidArgument when members is not 3 or 5, steps is 0, or the
  // liveness bound is shorter than a few election timeouts.
  absl::Status Validate() const;
};

struct RunStats {
  uint64_t leaders = 0;          // Distinct (term, leader) pairs seen.
  uint64_t applied = 0;          // Highest index applied by any member.
  uint64_t proposals = 0;        // Proposals a leader accepted.
  uint64_t reads_checked = 0;    // Read points compared against writes.
  uint64_t crashes = 0;
  uint64_t snapshots_installed = 0;
  uint64_t membership_applied = 0;
  uint64_t transfers = 0;        // Leadership transfers started.
  uint64_t liveness_ticks = 0;   // Ticks the liveness phase needed.
  uint64_t windowed_seeds = 0;   // Seeds run with max_unapplied_bytes set.
  uint64_t apply_reports = 0;    // ReportApplied calls.
  // Most bytes a member held handed out but not reported applied, over the
  // windowed seeds.
  uint64_t max_unreported_bytes = 0;

  RunStats& operator+=(const RunStats& other);
};

struct RunReport {
  SimOptions options;
  // The first violation, if any, and the step it was found at.
  std::optional<std::string> violation;
  uint64_t violation_step = 0;
  RunStats stats;
};

RunReport RunSeed(const SimOptions& options);

// Runs seeds first_seed .. first_seed + count - 1 on `jobs` threads. The
// member count alternates by seed (odd seeds 3, even 5) unless `members`
// is given. Reports come back in seed order.
std::vector<RunReport> RunSeeds(uint64_t first_seed, uint64_t count,
                                const SimOptions& base,
                                std::optional<uint32_t> members, uint32_t jobs);
uint32_t MembersForSeed(uint64_t seed);

// The exact command line that replays `options`.
std::string ReproduceCommand(const SimOptions& options);

// The --fault names: commit-old-term-entries, grant-two-votes-per-term,
// skip-consistency-check, read-before-noop-commit, lease-without-quorum.
std::optional<uint32_t> TestingFaultByName(std::string_view name);
std::string TestingFaultNames(uint32_t faults);
const std::vector<std::string>& AllTestingFaultNames();

}  // namespace confman::sim
