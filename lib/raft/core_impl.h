// The Raft protocol state behind confman::raft::Core. Internal. Its member
// functions are defined in core_impl.cc (elections, replication,
// membership, transfer, snapshots, Ready), reads.cc (§6.4 reads) and
// apply_window.cc (handing committed entries to the state machine).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "confman/raft/core.h"
#include "confman/raft/testing_faults.h"
#include "progress.h"
#include "raft_log.h"

namespace confman::raft {

class CoreImpl {
 public:
  CoreImpl(const CoreOptions& options, const LogReader* log);
  [[nodiscard]] absl::Status Boot(const BootState& boot);

  void Tick();
  void Step(Message message);
  [[nodiscard]] absl::StatusOr<ProposalPosition> Propose(std::vector<std::string> entries);
  [[nodiscard]] absl::Status ReadIndex(std::string context, ReadMode mode);
  [[nodiscard]] absl::StatusOr<ProposalPosition> ProposeMembershipChange(
      const MembershipChange& change);
  [[nodiscard]] absl::Status TransferLeadership(MemberId to);
  void ReportDurable(Index index, Term term);
  void ReportSnapshotInstalled(const SnapshotMeta& meta);
  void ReportApplied(Index index);
  void ReportSnapshotSent(MemberId to, bool ok, Index snapshot_index);
  void ReportUnreachable(MemberId member);

  bool HasReady() const;
  Ready TakeReady();
  CoreStatus Status() const;
  [[nodiscard]] absl::Status CheckInvariants() const;

  Role role() const { return role_; }
  Term term() const { return term_; }
  MemberId id() const { return options_.id; }
  MemberId leader() const { return leader_; }
  Index commit() const { return commit_; }
  const Membership& membership() const { return membership_; }

 private:
  struct PendingRead {
    std::string context;
    Index index = 0;
    uint64_t round = 0;          // Released once a quorum acked this round.
    MemberId requester = kNoMember;  // kNoMember: this member's own read.
  };

  bool Faulty(TestingFault fault) const;

  // Role transitions (thesis §3.4).
  void BecomeFollower(Term term, MemberId leader);
  void BecomePreCandidate();
  void BecomeCandidate();
  void BecomeLeader();
  void Campaign(bool pre_vote, bool transfer);
  void ResetElectionTimer();
  bool Promotable() const;
  bool InLease() const;

  // Message handling.
  bool HandleTerm(const Message& m);
  void HandleVoteRequest(const Message& m);
  void HandleVoteResponse(const Message& m);
  void HandleAppend(Message& m);
  void HandleHeartbeat(const Message& m);
  void HandleSnapshot(const Message& m);
  void HandleAppendResponse(const Message& m);
  void HandleHeartbeatResponse(const Message& m);
  void HandleReadIndexRequest(const Message& m);
  void HandleReadIndexResponse(const Message& m);
  void HandleTimeoutNow(const Message& m);
  bool ValidAppendEntries(const Message& m) const;
  Index FindConflictByTerm(Index index, Term term) const;
  void RejectAppend(const Message& m);

  // Leader replication.
  ProposalPosition AppendLocal(std::vector<Entry> entries);
  void BroadcastAppend();
  void ProbeOverdueSnapshots();
  bool SendAppend(MemberId to, Progress& pr, bool send_if_empty);
  uint64_t AppendByteBudget(const Progress& pr) const;
  void SendHeartbeat(MemberId to, const Progress& pr);
  void BroadcastHeartbeat();
  void MaybeSendTimeoutNow(MemberId to);
  bool MaybeCommit();
  Index SelfMatch() const;
  void ResetProgress();
  void SyncProgressWithMembership();
  bool RecentlyHeard(const Progress& pr) const;
  bool QuorumRecentlyHeard() const;

  // Reads (reads.cc).
  void StartRead(PendingRead read, ReadMode mode);
  size_t PendingReadCount() const;
  uint64_t QuorumAckedRound() const;
  bool LeaseValid() const;
  void ReleaseReads();
  void DeliverRead(const PendingRead& read, Index index);
  void FailRead(const PendingRead& read);
  // Answers a follower's forwarded read: the read index, or a rejection.
  void ReplyToRead(const PendingRead& read, Index index, bool reject);
  void FailPendingReads();
  bool NoopCommitted() const;

  // The apply window (apply_window.cc).
  void AdvanceApply();
  bool ApplyRoomFor(uint64_t bytes) const;
  uint64_t ApplyFetchBudget() const;
  void ChargeApplyWindow(const Entry& entry);
  void ResetApplyWindow(Index index);
  std::string CheckApplyWindow() const;

  // Work every input ends with, and membership taking effect.
  void AfterInput();
  void ApplyMembershipEntry(const Entry& entry);
  void MaybeLeaveJoint();

  // The skeleton of an answer: `type`, addressed to `to` (or to the sender
  // of `m`), in this member's current term. Callers set the rest.
  Message ReplyTo(MemberId to, MessageType type) const;
  Message Reply(const Message& m, MessageType type) const;
  void Send(Message m);
  void FailStorage(const absl::Status& status);
  uint32_t NextRandom(uint32_t bound);

  CoreOptions options_;
  RaftLog log_;

  // Persistent state (thesis Figure 3.1), emitted through Ready::hard_state.
  Term term_ = 0;
  MemberId vote_ = kNoMember;
  // Invariant: queued_index_ <= commit_ <= log_.LastIndex().
  Index commit_ = 0;
  HardState emitted_hard_state_;

  Role role_ = Role::kFollower;
  MemberId leader_ = kNoMember;

  // The configuration in force: the last kMembership entry queued for
  // applying (thesis §4.1 lets it take effect on append; applying it on
  // commit is also safe while only one change is pending at a time).
  Membership membership_;
  Index membership_index_ = 0;
  // Leader: index of the newest membership entry in its log; a new change
  // is refused until queued_index_ reaches it.
  Index pending_membership_index_ = 0;

  // The apply pipeline. A committed, locally durable entry moves through
  // three stages, each tracked by the highest index that reached it:
  //   queued_index_            moved into committed_to_emit_ for the next
  //                            Ready; a membership entry takes effect here.
  //   handed_out_index_        returned by TakeReady in
  //                            Ready::committed_entries.
  //   reported_applied_index_  confirmed by the driver through
  //                            ReportApplied (or a snapshot install).
  // Invariant: reported_applied_index_ <= handed_out_index_ <=
  // queued_index_ <= commit_.
  Index queued_index_ = 0;
  Index handed_out_index_ = 0;
  Index reported_applied_index_ = 0;
  // Apply window (only with max_unapplied_bytes): (index, data bytes) of
  // each non-empty entry past reported_applied_index_ that was queued,
  // oldest first. Empty entries need no record, so the deque never
  // outgrows the window. unapplied_bytes_ is the sum of their bytes.
  std::deque<std::pair<Index, uint64_t>> unapplied_entries_;
  uint64_t unapplied_bytes_ = 0;

  // Logical clock.
  uint64_t now_ = 0;
  uint32_t election_elapsed_ = 0;
  uint32_t heartbeat_elapsed_ = 0;
  uint32_t randomized_election_timeout_ = 0;
  uint64_t rng_state_ = 0;

  // Candidates: answers received, by voter.
  std::map<MemberId, bool> votes_;

  // Leader state. Invariant: a Progress exists for every member of
  // membership_ other than this member, and only while role_ == kLeader.
  std::map<MemberId, Progress> progress_;
  Index term_start_index_ = 0;  // Index of this term's no-op.
  MemberId transfer_target_ = kNoMember;
  uint32_t transfer_elapsed_ = 0;
  // Set once this leader has sent TimeoutNow in its term; lease reads then
  // fall back to a quorum round.
  bool lease_revoked_ = false;
  // Data bytes of this term's proposals not yet committed, by index.
  std::deque<std::pair<Index, uint64_t>> uncommitted_;
  uint64_t uncommitted_bytes_ = 0;
  // Heartbeat rounds: each broadcast increments round_; reads wait for a
  // quorum to acknowledge a round started after they arrived.
  uint64_t round_ = 0;
  bool round_requested_ = false;
  // (round, tick sent). Invariant: rounds are consecutive, oldest first.
  std::deque<std::pair<uint64_t, uint64_t>> round_sent_at_;
  std::deque<PendingRead> reads_waiting_noop_;
  std::deque<PendingRead> reads_waiting_round_;

  // Ready accumulation.
  std::vector<Message> messages_;
  std::vector<Message> messages_after_persist_;
  std::vector<Entry> committed_to_emit_;
  uint64_t committed_to_emit_bytes_ = 0;
  std::vector<ReadState> read_states_;
  std::vector<std::string> failed_reads_;
  std::vector<SnapshotSend> snapshots_to_send_;
  std::optional<SnapshotMeta> snapshot_to_install_;
  // A snapshot handed out in Ready::snapshot_to_install whose install the
  // driver has not reported yet: nothing is applied and no campaign starts
  // until it has (the state machine is behind the log).
  std::optional<SnapshotMeta> pending_install_;

  absl::Status storage_error_;
  // A protocol invariant this member observed broken (only reachable with
  // TestingFault flags or a bug); reported by CheckInvariants().
  std::string broken_invariant_;
};

}  // namespace confman::raft
