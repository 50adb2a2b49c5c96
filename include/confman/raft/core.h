// confman::raft::Core — the Raft protocol as a pure, deterministic state
// machine.
//
// The core performs no I/O: no threads, clocks, sockets, files or global
// randomness. A driver (confman::Node, the simulator, or an advanced host)
// feeds it inputs — Tick(), Step(), Propose(), ReadIndex(), membership
// changes, leadership transfer, storage reports — and after each input
// collects a Ready batch describing what to persist, send and apply.
//
// Time is logical: one Tick() is whatever interval the driver chooses
// (confman::Node uses 10 ms). Every duration option is in ticks.
//
// Thread safety: none. A Core must be used from one thread (or strand) at a
// time.
//
// Status mapping used by every fallible call:
//   FailedPrecondition  this member is not the leader; the message names the
//                       leader's id when one is known (LeaderId() returns it).
//   Unavailable         a leadership transfer or membership change is in
//                       progress, or no leader is known; retry.
//   ResourceExhausted   the uncommitted-bytes budget or the pending-read
//                       limit is full; retry after entries commit.
//   InvalidArgument     the request itself is malformed (e.g. a membership
//                       change that would leave no voter).
//   DataLoss / other    the log store failed a read; the member stops
//                       making progress and reports it through Status().
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "confman/raft/log_reader.h"
#include "confman/raft/member_progress.h"
#include "confman/raft/types.h"

namespace confman::raft {

struct CoreOptions {
  // This member's id. Required; must not be kNoMember.
  MemberId id = kNoMember;

  // Elections: a follower that hears from no leader for a randomized
  // timeout in [election_timeout_ticks, 2 * election_timeout_ticks) starts
  // an election. Must be > heartbeat_interval_ticks.
  uint32_t election_timeout_ticks = 10;
  // How often a leader sends heartbeats.
  uint32_t heartbeat_interval_ticks = 1;

  // Pre-vote (thesis §9.6): a candidate first asks whether it could win
  // before bumping its term, so a member returning from a partition cannot
  // force a healthy leader to step down.
  bool pre_vote = true;
  // Check-quorum (thesis §6.2): a leader that has not heard from a quorum
  // within an election timeout steps down, and followers that heard from a
  // leader within the minimum election timeout ignore vote requests.
  // Required for lease reads.
  bool check_quorum = true;

  // AppendEntries batching: entry data bytes per message (a single larger
  // entry is still sent alone) and entries per message.
  uint64_t max_append_bytes = 4u << 20;  // 4 MiB
  uint32_t max_append_entries = 1024;
  // Pipelining: per follower, at most this many AppendEntries messages and
  // this many entry bytes in flight (sent but not acknowledged).
  uint32_t max_inflight_messages = 64;
  uint64_t max_inflight_bytes = 32u << 20;  // 32 MiB

  // Memory budget for proposed-but-uncommitted entry data on the leader.
  // Proposals beyond it fail with ResourceExhausted. Must be >=
  // max_append_bytes so one maximal proposal always fits an empty budget.
  uint64_t max_uncommitted_bytes = 64u << 20;  // 64 MiB

  // Committed entries handed out per Ready, in data bytes (at least one).
  uint64_t max_apply_bytes = 16u << 20;  // 16 MiB

  // Apply window: data bytes of committed entries handed out in
  // Ready::committed_entries (or queued for the next Ready) that the driver
  // has not yet confirmed with Core::ReportApplied, at most. A state machine
  // slower than the log then holds committed entries back in the log rather
  // than in memory. As with max_apply_bytes, an entry larger than the window
  // still goes out alone once everything before it is reported applied, so
  // a maximal entry never stalls. 0 (the default) disables the window: the
  // driver need not call ReportApplied and only max_apply_bytes bounds each
  // Ready. When non-zero it must be >= max_apply_bytes, so that a window
  // always holds at least one full Ready batch (InvalidArgument otherwise).
  uint64_t max_unapplied_bytes = 0;

  // ReadIndex requests waiting for a quorum confirmation, at most.
  uint32_t max_pending_reads = 4096;

  // Lease reads assume that no member's clock runs faster than the leader's
  // by more than this many ticks per election timeout: a lease lasts
  // election_timeout_ticks - lease_clock_drift_ticks after the heartbeat
  // round that established it was sent. Must be < election_timeout_ticks.
  uint32_t lease_clock_drift_ticks = 2;

  // Seeds the randomized election timeout. Give each member a different
  // seed; the simulator derives them from its run seed.
  uint64_t random_seed = 1;

  // Test-only; a bitwise OR of raft::TestingFault values, declared in
  // confman/raft/testing_faults.h. Leave at 0 outside tests.
  uint32_t testing_faults = 0;

  [[nodiscard]] absl::Status Validate() const;
};

// Where a member starts from. A brand-new cluster member passes its initial
// membership with membership_index = 0; a restarting member passes what its
// storage recovered.
struct BootState {
  HardState hard_state;
  // The configuration in force after applying every entry through
  // `membership_index`. The core replays kMembership entries it finds in
  // (membership_index, hard_state.commit].
  Membership membership;
  Index membership_index = 0;
  // The index the state machine has applied through. Committed entries
  // after it are handed out again in Ready::committed_entries.
  Index applied = 0;
};

// A request to change the cluster's membership.
struct MembershipChange {
  enum class Kind : uint8_t {
    kAddLearner,  // Add a non-voting member (or no-op if already learner).
    kAddVoter,    // Add a voter, or promote a learner.
    kRemove,      // Remove a voter or learner.
  };
  Kind kind = Kind::kAddLearner;
  MemberId member = kNoMember;
};

// A linearizable read point: once the state machine has applied through
// `index`, a read for `context` may be served locally.
struct ReadState {
  Index index = 0;
  std::string context;
};

enum class ReadMode : uint8_t {
  // Confirm leadership with a quorum heartbeat round (thesis §6.4).
  kReadIndex,
  // Rely on the leader's lease (thesis §6.4.1); requires check_quorum and
  // the bounded clock drift described at CoreOptions::lease_clock_drift_ticks.
  kLease,
};

// Asks the driver to stream a state-machine snapshot to `to`. When the
// transfer completes the receiving driver steps a kSnapshot message into its
// core; the sending driver calls Core::ReportSnapshotSent either way.
struct SnapshotSend {
  MemberId to = kNoMember;
};

// The term and index range a proposal was appended at. The proposal took
// effect iff the entry applied at `last` has term `term`.
struct ProposalPosition {
  Term term = 0;
  Index first = 0;
  Index last = 0;
};

// Everything the driver must do after an input. Handle the parts in this
// order:
//
//   1. snapshot_to_install: make the staged snapshot the state machine's
//      state, then call Core::ReportSnapshotInstalled. The install may
//      finish later, on another thread: later Readies may be handled
//      meanwhile. Until the report, the core hands out no committed entries
//      and does not campaign.
//   2. messages: send now. They never depend on local durability (a
//      leader replicates entries in parallel with writing them itself).
//   3. The log write, durable in Ready order (a Ready's writes must not
//      become durable before an earlier Ready's):
//        - when snapshot_to_install is set, first reset the log to the
//          empty log that follows it (LogStore::ResetToSnapshot's effect);
//        - then hard_state, if set;
//        - then entries, which replace any stored entries at and after
//          entries.front().index (the store truncates that suffix first).
//      Once durable, call Core::ReportDurable with the last entry's index
//      and term, or, for a write whose last part is the reset, the
//      snapshot's. A driver that can crash must make the install of step 1
//      durable before the reset (else a restart finds a state machine
//      behind the log's first entry); the core allows either order.
//   4. messages_after_persist: send only after step 3's writes for this
//      Ready (and every earlier one) are durable; they promise what was
//      written (votes, append acknowledgements, a snapshot's receipt).
//   5. committed_entries: apply in order. They are always durable locally.
//      Membership entries among them have already taken effect in the core.
//      Then call Core::ReportApplied(index of the last entry applied); with
//      CoreOptions::max_unapplied_bytes set, no further committed entries
//      are handed out once the window is full until that report (it may
//      also come later, from another Ready or an asynchronous applier).
//   6. read_states: serve each read once the state machine has applied
//      through its index. failed_reads: answer each of these reads with
//      Unavailable (leadership was lost, or the leader refused it). A read
//      whose request or answer a lossy network dropped appears in neither
//      list: drivers time reads out.
//   7. snapshots_to_send: start streaming a snapshot to each member.
struct Ready {
  std::optional<SnapshotMeta> snapshot_to_install;
  std::vector<Message> messages;
  std::optional<HardState> hard_state;
  std::vector<Entry> entries;
  std::vector<Message> messages_after_persist;
  std::vector<Entry> committed_entries;
  std::vector<ReadState> read_states;
  std::vector<std::string> failed_reads;  // Contexts, as given to ReadIndex.
  std::vector<SnapshotSend> snapshots_to_send;

  bool empty() const {
    return !snapshot_to_install && messages.empty() && !hard_state &&
           entries.empty() && messages_after_persist.empty() &&
           committed_entries.empty() && read_states.empty() &&
           failed_reads.empty() && snapshots_to_send.empty();
  }
};

struct CoreStatus {
  MemberId id = kNoMember;
  Role role = Role::kFollower;
  Term term = 0;
  MemberId leader = kNoMember;
  Index commit = 0;
  // Highest committed index queued for the state machine: returned in
  // Ready::committed_entries, or to be in the next Ready. Membership
  // entries through it have taken effect.
  Index queued_index = 0;
  // Highest index the driver confirmed with Core::ReportApplied (or a
  // snapshot install brought the state machine to).
  Index reported_applied_index = 0;
  // Data bytes counted against CoreOptions::max_unapplied_bytes (0 when the
  // window is disabled).
  uint64_t unapplied_bytes = 0;
  Index last_index = 0;
  Index durable_index = 0;
  Membership membership;
  std::vector<MemberProgress> progress;  // Filled on the leader only.
  uint64_t uncommitted_bytes = 0;
  absl::Status storage_error;  // First log read failure, if any.
};

// How long a leader waits for a follower to acknowledge a snapshot it was
// sent, in election timeouts, before probing it again.
inline constexpr uint32_t kSnapshotAckTimeoutElections = 10;

class CoreImpl;

class Core {
 public:
  // `log` must outlive the core. Returns InvalidArgument for bad options and
  // the log's error if the boot replay cannot read it.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Core>> Create(const CoreOptions& options,
                                                      const BootState& boot,
                                                      const LogReader* log);
  ~Core();
  Core(const Core&) = delete;
  Core& operator=(const Core&) = delete;

  // Advances logical time by one tick.
  void Tick();

  // Handles a message from another member. Messages from older terms and
  // from members outside the configuration are handled as Raft requires
  // (mostly ignored); malformed input never aborts.
  void Step(const Message& message);
  void Step(Message&& message);

  // Appends application entries (EntryType::kNormal), one per element, to
  // the leader's log. See the status mapping above.
  [[nodiscard]] absl::StatusOr<ProposalPosition> Propose(std::vector<std::string> entries);

  // Requests a linearizable read point for `context` (returned verbatim in
  // a ReadState, or in Ready::failed_reads if it cannot be served). On a
  // follower the request is forwarded to the leader. A leader answers only
  // after its term's no-op has committed (§6.4). kLease is only honoured on
  // the leader with check_quorum; elsewhere it falls back to kReadIndex.
  // Unavailable when no leader is known; ResourceExhausted beyond
  // max_pending_reads.
  [[nodiscard]] absl::Status ReadIndex(std::string context, ReadMode mode = ReadMode::kReadIndex);

  // Proposes a membership change (leader only). Changing the voter set uses
  // joint consensus; the leader leaves the joint configuration by itself
  // once it commits. Only one change may be pending at a time
  // (Unavailable otherwise).
  [[nodiscard]] absl::StatusOr<ProposalPosition> ProposeMembershipChange(
      const MembershipChange& change);

  // Hands leadership to `to` (thesis §3.10): the leader brings it up to
  // date, then tells it to campaign. Proposals are refused (Unavailable)
  // until the transfer completes or times out after an election timeout.
  [[nodiscard]] absl::Status TransferLeadership(MemberId to);

  // Storage reports.
  // A log write (Ready step 3) is durable; `index`/`term` name its last
  // entry, or the snapshot it reset the log to if it holds no entry.
  // Reports for writes that a later truncation or reset superseded are
  // recognised and ignored.
  void ReportDurable(Index index, Term term);
  // The snapshot from Ready::snapshot_to_install is now the state machine's
  // state (the log's reset is reported through ReportDurable). Empties the
  // apply window: entries handed out before the snapshot no longer need
  // reporting. A report for a snapshot superseded by a later one is
  // ignored.
  void ReportSnapshotInstalled(const SnapshotMeta& meta);
  // The state machine has applied every committed entry through `index`.
  // Frees their bytes in the apply window (CoreOptions::max_unapplied_bytes)
  // so that waiting committed entries are handed out in the next Ready
  // (HasReady() turns true). Reports may be coalesced: one report covers
  // every entry up to `index`. An index beyond the last entry handed out
  // in Ready::committed_entries, or not above an earlier report, is
  // ignored. Harmless (and unnecessary) when the window is disabled.
  void ReportApplied(Index index);
  // The snapshot stream to `to` ended: `ok` with the index of the snapshot
  // it carried, or !ok if it failed (the index is then ignored). After a
  // success the leader sends `to` nothing but heartbeats until `to`
  // acknowledges the snapshot (it is still installing it), for at most
  // kSnapshotAckTimeoutElections election timeouts; if the log has been
  // compacted past the snapshot meanwhile, it asks for another one.
  void ReportSnapshotSent(MemberId to, bool ok, Index snapshot_index);
  // The member was unreachable (a send failed); the leader slows down to
  // probing it.
  void ReportUnreachable(MemberId member);

  bool HasReady() const;
  // Collects everything pending since the last call.
  Ready TakeReady();

  CoreStatus Status() const;
  Role role() const;
  Term term() const;
  MemberId id() const;
  MemberId LeaderId() const;
  Index CommitIndex() const;
  const Membership& membership() const;

  // Checks the core's internal invariants; a non-OK result means a bug.
  // The simulator calls this after every step.
  [[nodiscard]] absl::Status CheckInvariants() const;

 private:
  explicit Core(std::unique_ptr<CoreImpl> impl);
  std::unique_ptr<CoreImpl> impl_;
};

}  // namespace confman::raft
