// A simulated cluster: Raft cores over durable in-memory logs, a seeded
// network, disks that complete writes late, and crash-restarts.
//
// Time is counted in steps; a member's core ticks about once every
// `steps_per_tick` steps, at a per-member phase and rate. Every delay below
// is in steps. All randomness comes from the Rng handed in, and all
// containers are iterated in a fixed order, so a run is a pure function of
// its seed.
//
// Each member has:
//   - a raft::MemoryLog holding only what is durable (the core reads it);
//   - a queue of writes in flight to disk: each Ready's hard state and
//     entries become durable after a random delay, in Ready order; only then
//     is ReportDurable called and messages_after_persist sent;
//   - a StateMachine whose applies are durable at once, and confirmed to
//     the core with ReportApplied after a random delay (an asynchronous
//     applier), so the apply window (max_unapplied_bytes) fills and drains;
//   - snapshot installs that take the state at once (durably) but reset the
//     log through the ordered disk queue and report to the core after a
//     random delay; a restart between the two resets the log to the state
//     first, as the Node does.
// A crash discards the in-flight writes and every undelivered message to or
// from the member; a restart rebuilds the core from the MemoryLog and the
// state machine.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "checker.h"
#include "confman/raft/core.h"
#include "confman/raft/memory_log.h"
#include "rng.h"

namespace confman::sim {

// Partitions are kept as a bit per directed link in one 64-bit word.
inline constexpr uint32_t kMaxMembers = 8;

struct NetworkProfile {
  uint32_t drop_per_million = 0;
  uint32_t duplicate_per_million = 0;
  // A reordered message is held back by up to reorder_extra_steps more.
  uint32_t reorder_per_million = 0;
  uint32_t min_delay_steps = 1;
  uint32_t max_delay_steps = 5;
  uint32_t reorder_extra_steps = 40;
  // A stale message resurfaces up to stale_extra_steps late (several
  // election timeouts), after terms and leaders have moved on.
  uint32_t stale_per_million = 0;
  uint32_t stale_extra_steps = 400;
};

struct DiskProfile {
  uint32_t min_delay_steps = 1;
  uint32_t max_delay_steps = 10;
  // A slow write takes up to slow_extra_steps more (later writes queue
  // behind it: writes complete in order).
  uint32_t slow_per_million = 0;
  uint32_t slow_extra_steps = 60;
};

struct ApplyProfile {
  // Each ReportApplied follows the first unreported apply by 0 to this many
  // steps; one report covers everything applied by then.
  uint32_t max_report_delay_steps = 0;
  // Driver fault for the non-vacuity tests: applies are never reported.
  bool lose_reports = false;
};

struct SnapshotProfile {
  uint32_t min_delay_steps = 10;
  uint32_t max_delay_steps = 80;
  uint32_t fail_per_million = 100000;
  // An install is reported to the core 0 to this many steps after the
  // state machine took the snapshot (an installer on another thread), while
  // the log writes after it, the reset included, go on completing.
  uint32_t max_install_report_delay_steps = 0;
};

struct ClusterConfig {
  // Members 1..voters boot as the initial voters; the next `spares` ids
  // boot with an empty membership, ready to be added. At most kMaxMembers
  // in all.
  uint32_t voters = 3;
  uint32_t spares = 2;
  uint32_t steps_per_tick = 10;
  // Clock skew: each member's tick period is steps_per_tick plus 0 to
  // tick_skew_steps. Lease reads tolerate clocks that differ by at most
  // lease_clock_drift_ticks per election timeout, so keep
  // tick_skew_steps / steps_per_tick within that ratio.
  uint32_t tick_skew_steps = 0;
  // Shared core options; id and random_seed are set per member.
  raft::CoreOptions core;
  NetworkProfile network;
  DiskProfile disk;
  ApplyProfile apply;
  SnapshotProfile snapshot;
};

struct ClusterStats {
  uint64_t crashes = 0;
  uint64_t snapshots_sent = 0;
  uint64_t snapshots_installed = 0;
  uint64_t reads_checked = 0;
  uint64_t membership_applied = 0;  // Membership entries applied anywhere.
  uint64_t messages_delivered = 0;
  uint64_t compactions = 0;
  uint64_t apply_reports = 0;
  // Largest data bytes any member held handed out but not reported applied.
  uint64_t max_unreported_bytes = 0;
};

class Cluster {
 public:
  // `rng` and `checker` must outlive the cluster; `trace` may be null.
  Cluster(const ClusterConfig& config, Rng& rng, SafetyChecker& checker,
          std::ostream* trace);
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  // Creates every member's core. Failures are recorded in the checker.
  void Boot();

  // Runs everything due at step `now` (steps never go backwards): restarts,
  // message and snapshot deliveries, disk completions, then ticks.
  void Advance(uint64_t now);
  // Per-step checks: every live core's CheckInvariants, and leader
  // completeness for entries first applied during the step.
  void FinishStep();

  // Client inputs. Each is ignored on a member that is down.
  // Unavailable when the member is down; otherwise the core's answer.
  absl::StatusOr<raft::ProposalPosition> Propose(raft::MemberId id,
                                                 std::vector<std::string> data);
  void Read(raft::MemberId id, raft::ReadMode mode);
  bool ChangeMembership(raft::MemberId id, const raft::MembershipChange& change);
  bool TransferLeadership(raft::MemberId id, raft::MemberId to);
  // Compacts the member's durable log up to a random index it has applied.
  void CompactSome(raft::MemberId id);

  // Faults.
  void Crash(raft::MemberId id, uint64_t restart_at);
  void Block(raft::MemberId from, raft::MemberId to);
  void HealAll();
  void set_network(const NetworkProfile& network) { config_.network = network; }
  const NetworkProfile& network() const { return config_.network; }

  // Member ids are 1..size().
  uint32_t size() const { return static_cast<uint32_t>(members_.size()); }
  bool up(raft::MemberId id) const;
  // Null while the member is down.
  const raft::Core* core(raft::MemberId id) const;
  const StateMachine& state_machine(raft::MemberId id) const;
  // The up leader with the highest term, if any.
  std::optional<raft::MemberId> Leader() const;
  // Every up member that believes it leads, stale ones included.
  std::vector<raft::MemberId> Leaders() const;
  uint32_t down_count() const;
  const ClusterStats& stats() const { return stats_; }

 private:
  struct Member;
  struct DiskWrite;
  struct Packet;
  struct PacketLater {
    bool operator()(const Packet& a, const Packet& b) const;
  };

  Member& member(raft::MemberId id) { return *members_[id - 1]; }
  const Member& member(raft::MemberId id) const { return *members_[id - 1]; }

  void StartCore(Member& m);
  void Drive(Member& m);
  void HandleReady(Member& m, raft::Ready ready);
  void QueueWrite(Member& m, raft::Ready& ready);
  void CompleteWrite(Member& m, DiskWrite& write);
  bool Persist(Member& m, const DiskWrite& write);
  void InstallSnapshot(Member& m, const raft::SnapshotMeta& meta);
  void ReportInstalls(Member& m);
  void AlignLogWithState(Member& m);
  void Apply(Member& m, const raft::Entry& entry);
  void ScheduleApplyReport(Member& m);
  void ReportApplied(Member& m);
  void CheckApplyWindow(const Member& m);
  void ServeRead(Member& m, const raft::ReadState& read);
  void StartSnapshot(Member& m, raft::MemberId to);
  void ObserveLeadership(Member& m);

  void Send(Member& from, raft::Message message);
  void Schedule(Packet packet, uint64_t delay);
  void Deliver(Packet& packet);
  void DeliverSnapshot(Packet& packet);
  bool Blocked(raft::MemberId from, raft::MemberId to) const;
  bool ValidPeer(const Member& from, raft::MemberId to);

  std::optional<raft::Term> LogicalTermAt(const Member& m, raft::Index index) const;
  raft::Index LowestPendingWrite(const Member& m) const;
  void Trace(const Member& m, const std::string& what) const;
  static std::string DescribeMessage(const raft::Message& message);

  ClusterConfig config_;
  Rng& rng_;
  SafetyChecker& checker_;
  std::ostream* trace_;
  std::vector<std::unique_ptr<Member>> members_;
  std::vector<Packet> network_;  // A min-heap on (deliver_at, seq).
  uint64_t now_ = 0;
  uint64_t next_seq_ = 0;
  uint64_t next_read_ = 0;
  uint64_t blocked_ = 0;  // Bit (from - 1) * 8 + (to - 1): link cut.
  ClusterStats stats_;
};

}  // namespace confman::sim
