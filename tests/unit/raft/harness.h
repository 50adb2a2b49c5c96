// A deterministic, synchronous test cluster of raft::Core instances.
//
// Every member runs over its own raft::MemoryLog. After each input the
// cluster drains the member's Ready batches in the order core.h prescribes:
// install the snapshot, send messages, persist hard state and entries (then
// ReportDurable), send the after-persist messages, apply committed entries,
// record read states and snapshot requests. Messages go into one FIFO queue
// that the test controls: it can deliver them one by one, remove or inspect
// them, cut links or isolate members. Nothing depends on wall-clock time.
//
// Applied entries are reported with Core::ReportApplied right away unless
// the test holds the reports back.
//
// Failures of the driver contract (an apply gap, a log write the MemoryLog
// refuses) and any Core::CheckInvariants() error after an input are
// reported as Catch2 failures at the point they happen.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "confman/raft/core.h"
#include "confman/raft/memory_log.h"
#include "confman/raft/types.h"

namespace confman::raft::testing {

// Options every test starts from: short timeouts so that scenarios stay a
// few hundred ticks long, everything else at its default.
CoreOptions TestOptions();

// The view of a member's MemoryLog its core reads through; it can be told
// to fail every read, as a broken disk would.
class FailingReader final : public LogReader {
 public:
  explicit FailingReader(const MemoryLog* log) : log_(log) {}
  void set_failure(absl::Status failure) { failure_ = std::move(failure); }

  Index FirstIndex() const override { return log_->FirstIndex(); }
  Index LastIndex() const override { return log_->LastIndex(); }
  absl::StatusOr<Term> TermAt(Index index) const override;
  absl::StatusOr<std::vector<Entry>> Entries(Index lo, Index hi,
                                             uint64_t max_bytes) const override;

 private:
  const MemoryLog* log_;
  absl::Status failure_;
};

// One Ready's writes, kept until the member's "disk" makes them durable.
struct PendingWrite {
  std::optional<SnapshotMeta> reset;  // Written first.
  std::optional<HardState> hard_state;
  std::vector<Entry> entries;
  std::vector<Message> messages_after_persist;
};

// One member's core and everything its driver owns. Lives in the cluster's
// map and never moves: `reader` and `core` point at `log`.
struct Member {
  MemberId id = kNoMember;
  CoreOptions options;
  MemoryLog log;
  FailingReader reader{&log};
  std::unique_ptr<Core> core;

  // While true, Ready writes wait in `pending_writes`.
  bool hold_durability = false;
  std::deque<PendingWrite> pending_writes;

  // The configuration the member first booted with.
  Membership initial_membership;
  // The state machine: every applied entry, in index order. It survives
  // restarts, like a durable state machine would (see ForgetStateMachine).
  std::vector<Entry> applied;
  Index applied_index = 0;
  Membership applied_membership;
  Index applied_membership_index = 0;

  // While true, applied entries are not reported to the core (a state
  // machine still working on them); ReleaseApplyReports reports them.
  bool hold_apply_reports = false;

  // Data bytes of each Ready's committed_entries that had any.
  std::vector<uint64_t> apply_batch_bytes;
  // Entry count of each such batch.
  std::vector<size_t> apply_batch_sizes;

  std::vector<ReadState> read_states;
  std::vector<SnapshotSend> snapshot_requests;
  std::vector<SnapshotMeta> installed_snapshots;
  // While true, a snapshot the core hands out is made the state machine's
  // state at once but Core::ReportSnapshotInstalled waits (an installer
  // still committing it) until ReleaseSnapshotInstalls.
  bool hold_install_reports = false;
  std::vector<SnapshotMeta> unreported_installs;
};

struct ClusterConfig {
  std::vector<MemberId> voters;
  std::vector<MemberId> learners;
  // Non-empty to boot every member in a joint configuration.
  std::vector<MemberId> voters_outgoing;
  // Members booted with the configuration above without being part of it
  // (to be added later by a membership change).
  std::vector<MemberId> outsiders;
  CoreOptions options = TestOptions();
};

class Cluster {
 public:
  explicit Cluster(ClusterConfig config);
  // A cluster of `voter_count` voters with ids 1..voter_count.
  explicit Cluster(int voter_count, CoreOptions options = TestOptions());

  Member& member(MemberId id);
  Core& core(MemberId id) { return *member(id).core; }
  std::vector<MemberId> ids() const;

  // ---- Time ----------------------------------------------------------
  // One tick of one member; its Ready is handled, nothing is delivered.
  void Tick(MemberId id);
  // `ticks` rounds of: tick every member, then deliver until quiet.
  void Run(int ticks);

  // ---- Network -------------------------------------------------------
  std::deque<Message>& queue() { return queue_; }
  // Every message ever sent (including dropped ones), in send order.
  const std::vector<Message>& history() const { return history_; }
  void ClearHistory() { history_.clear(); }
  // Counts the messages in history() matching `match`.
  int CountSent(const std::function<bool(const Message&)>& match) const;

  // Delivers the oldest queued message; false when the queue is empty.
  bool DeliverOne();
  // Delivers until the queue is empty; returns how many were delivered.
  // Fails the test if the cluster is still chatting after `max_messages`.
  int Settle(int max_messages = 100000);
  // Like Settle, but messages matching `hold` are taken out of the queue
  // instead of delivered; returns them in send order.
  std::vector<Message> SettleHolding(
      const std::function<bool(const Message&)>& hold);
  // Steps `message` into its recipient right now (bypassing the queue but
  // not the link state) and handles the resulting Ready.
  void Deliver(const Message& message);
  // Removes and returns the queued messages matching `match`.
  std::vector<Message> Take(const std::function<bool(const Message&)>& match);
  // Counts the queued messages matching `match`.
  int CountQueued(const std::function<bool(const Message&)>& match) const;

  // A down link drops messages both when they are sent and when they would
  // be delivered.
  void Isolate(MemberId id);
  void CutLink(MemberId from, MemberId to);  // One-way.
  // Drops every message matching `match` until Heal().
  void DropWhere(std::function<bool(const Message&)> match);
  void Heal();

  // ---- State machine -------------------------------------------------
  // While held, the member applies what it is handed but does not call
  // Core::ReportApplied; ReleaseApplyReports reports everything applied so
  // far (one coalesced report) and stops holding.
  void HoldApplyReports(MemberId id);
  void ReleaseApplyReports(MemberId id);
  // While held, snapshot installs are not reported to the core;
  // ReleaseSnapshotInstalls reports them in order and stops holding.
  void HoldSnapshotInstalls(MemberId id);
  void ReleaseSnapshotInstalls(MemberId id);

  // ---- Storage -------------------------------------------------------
  // While held, the member's writes (and the messages that promise them)
  // wait; ReleaseDurability makes them durable in order, reports it, and
  // stops holding.
  void HoldDurability(MemberId id);
  void ReleaseDurability(MemberId id);

  // From now on every read of the member's log fails with `failure`.
  void FailReads(MemberId id, absl::Status failure);

  // Replaces the member's log with entries 1..terms.size() of the given
  // terms and restarts it at `term`. Use before any election.
  void Preload(MemberId id, const std::vector<Term>& terms, Term term);
  // Crashes the member (losing writes not yet durable) and boots a new core
  // from what its log and state machine hold. `adjust` may change options.
  void Restart(MemberId id,
               const std::function<void(CoreOptions&)>& adjust = {});

  // Empties the member's state machine, as an in-memory one would be after
  // a crash; the next Restart boots with applied = 0 and the initial
  // configuration, so the core must replay the log.
  void ForgetStateMachine(MemberId id);

  // Completes the snapshot stream `from` was asked to send to `to`: builds
  // the snapshot of `from`'s state machine, steps it into `to` and reports
  // the outcome to `from`.
  void CompleteSnapshot(MemberId from, MemberId to, bool ok = true);

  // ---- Client requests (each handles the member's Ready afterwards) ---
  absl::StatusOr<ProposalPosition> Propose(MemberId id,
                                           std::vector<std::string> payloads);
  absl::Status ReadIndex(MemberId id, std::string context,
                         ReadMode mode = ReadMode::kReadIndex);
  absl::StatusOr<ProposalPosition> ChangeMembership(
      MemberId id, MembershipChange::Kind kind, MemberId subject);
  absl::Status TransferLeadership(MemberId id, MemberId to);
  // Proposes on `leader` (failing the test if it refuses), delivers until
  // quiet, then runs `ticks` rounds so that followers learn the commit.
  ProposalPosition Replicate(MemberId leader, std::vector<std::string> payloads,
                             int ticks = 1);
  // The same for a membership change; the default leaves time for the
  // joint configuration to be entered and left.
  ProposalPosition Reconfigure(MemberId leader, MembershipChange::Kind kind,
                               MemberId subject, int ticks = 3);

  // ---- Elections -----------------------------------------------------
  // Ticks only `id` until it has started an election (fails the test if
  // it never does); delivers nothing.
  void StartElection(MemberId id);
  // Ticks only `id`, delivering after each tick, until it leads (fails the
  // test if it does not within a few election timeouts). With `settle`,
  // also delivers everything left, so the no-op of the new term commits on
  // the leader.
  void Campaign(MemberId id, bool settle = true);
  // Campaign(id), then one more round so that followers learn the commit.
  void ElectLeader(MemberId id);
  // The leader of the highest term, or kNoMember. Fails the test if two
  // members lead the same term.
  MemberId Leader();

  // Handles every pending Ready of the member.
  void HandleReady(MemberId id);

 private:
  Member& AddMember(MemberId id, const Membership& membership,
                    const CoreOptions& base);
  void Boot(Member& m);
  void HandleOneReady(Member& m, Ready ready);
  void WriteDurably(Member& m, PendingWrite write);
  void InstallSnapshot(Member& m, const SnapshotMeta& meta);
  void Apply(Member& m, const std::vector<Entry>& entries);
  void Send(Message message);
  bool LinkUp(const Message& message) const;

  std::map<MemberId, Member> members_;
  std::deque<Message> queue_;
  std::vector<Message> history_;
  std::set<MemberId> isolated_;
  std::set<std::pair<MemberId, MemberId>> cut_links_;
  std::vector<std::function<bool(const Message&)>> drop_rules_;
  // State-machine contents streamed to a member, waiting to be installed.
  std::map<MemberId, std::vector<Entry>> staged_snapshots_;
};

// ---- Message predicates ----------------------------------------------
std::function<bool(const Message&)> OfType(MessageType type);
std::function<bool(const Message&)> OfTypeTo(MessageType type, MemberId to);
std::function<bool(const Message&)> OfTypeFrom(MessageType type,
                                               MemberId from);

// The progress entry the leader keeps for `id`; fails if there is none.
MemberProgress ProgressOf(const Core& leader, MemberId id);

// Entries with the given data, one each.
std::vector<std::string> Payloads(int count, size_t bytes_each);

// The log's entries [FirstIndex(), LastIndex()].
std::vector<Entry> AllEntries(const MemoryLog& log);

}  // namespace confman::raft::testing
