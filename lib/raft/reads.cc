// Linearizable reads on the leader (thesis §6.4): ReadIndex, and lease
// reads (§6.4.1), plus the forwarding of a follower's read to the leader.
//
// A read is answered with a read index: once the state machine has applied
// through it, the read sees every write that completed before it began.
// The leader may hand one out only when two things hold:
//   1. it knows the cluster's true commit index, which it does once the
//      no-op of its own term has committed (before that, entries of
//      earlier terms may be committed without its knowing); reads that
//      arrive earlier wait in reads_waiting_noop_;
//   2. it is still the leader at the moment the read arrived. A ReadIndex
//      read proves it by a heartbeat round started after the read arrived
//      and acknowledged by a quorum (reads_waiting_round_ is released in
//      round order). A lease read instead trusts that no other leader can
//      have been elected within an election timeout (less the clock-drift
//      allowance) of a round a quorum acknowledged; this relies on
//      check-quorum keeping followers from voting meanwhile, and is given
//      up once this leader has sent TimeoutNow (lease_revoked_).
// A read the leader cannot serve is failed rather than dropped, so its
// caller learns at once; reads lost on a lossy network are timed out by
// the driver. Losing leadership fails every waiting read.
#include "core_impl.h"

#include "absl/strings/str_cat.h"
#include "quorum.h"

namespace confman::raft {

size_t CoreImpl::PendingReadCount() const {
  return reads_waiting_noop_.size() + reads_waiting_round_.size();
}

bool CoreImpl::NoopCommitted() const {
  return commit_ >= term_start_index_ ||
         Faulty(TestingFault::kReadBeforeNoopCommit);
}

// The newest heartbeat round a quorum has acknowledged (in a joint
// configuration, a quorum of each half). This member counts as having
// acknowledged every round it sent.
uint64_t CoreImpl::QuorumAckedRound() const {
  auto round_of = [&](MemberId id) -> Index {
    if (id == options_.id) return round_;
    auto it = progress_.find(id);
    return it == progress_.end() ? 0 : it->second.acked_round;
  };
  return quorum::JointValue(membership_, round_of);
}

bool CoreImpl::LeaseValid() const {
  if (Faulty(TestingFault::kLeaseWithoutQuorum)) return true;
  if (!options_.check_quorum || lease_revoked_) return false;
  const uint64_t acked = QuorumAckedRound();
  // Rounds are recorded consecutively, so the acknowledged one is found by
  // its distance from the oldest still kept.
  if (round_sent_at_.empty() || acked < round_sent_at_.front().first ||
      acked > round_sent_at_.back().first) {
    return false;
  }
  const uint64_t sent_tick =
      round_sent_at_[acked - round_sent_at_.front().first].second;
  // No other member can have elected a new leader before its election
  // timer, started no earlier than this round's send, expires; the drift
  // allowance covers clocks running faster than ours (§6.4.1).
  return now_ < sent_tick + options_.election_timeout_ticks -
                    options_.lease_clock_drift_ticks;
}

absl::Status CoreImpl::ReadIndex(std::string context, ReadMode mode) {
  if (role_ != Role::kLeader) {
    if (leader_ == kNoMember) {
      return absl::UnavailableError(
          "no leader is known to confirm the read; retry after an election");
    }
    Message m;
    m.type = MessageType::kReadIndex;
    m.to = leader_;
    m.term = term_;
    m.context = std::move(context);
    Send(std::move(m));
    AfterInput();
    return absl::OkStatus();
  }
  const size_t pending = PendingReadCount();
  if (pending >= options_.max_pending_reads) {
    return absl::ResourceExhaustedError(absl::StrCat(
        pending, " reads are waiting for confirmation; retry shortly"));
  }
  StartRead(PendingRead{std::move(context), 0, 0, kNoMember}, mode);
  AfterInput();
  return absl::OkStatus();
}

void CoreImpl::StartRead(PendingRead read, ReadMode mode) {
  if (!NoopCommitted()) {
    // Until this term's no-op commits the leader does not know the true
    // commit index; the read waits for it.
    reads_waiting_noop_.push_back(std::move(read));
    return;
  }
  read.index = commit_;
  if (mode == ReadMode::kLease && LeaseValid()) {
    DeliverRead(read, read.index);
    return;
  }
  read.round = round_ + 1;
  round_requested_ = true;
  reads_waiting_round_.push_back(std::move(read));
}

void CoreImpl::ReleaseReads() {
  if (role_ != Role::kLeader) return;
  if (NoopCommitted()) {
    while (!reads_waiting_noop_.empty()) {
      PendingRead read = std::move(reads_waiting_noop_.front());
      reads_waiting_noop_.pop_front();
      StartRead(std::move(read), ReadMode::kReadIndex);
    }
  }
  const uint64_t acked = QuorumAckedRound();
  while (!reads_waiting_round_.empty() &&
         reads_waiting_round_.front().round <= acked) {
    DeliverRead(reads_waiting_round_.front(), reads_waiting_round_.front().index);
    reads_waiting_round_.pop_front();
  }
  // Lease checks only need the newest acknowledged round.
  while (round_sent_at_.size() > 1 && round_sent_at_.front().first < acked) {
    round_sent_at_.pop_front();
  }
}

void CoreImpl::DeliverRead(const PendingRead& read, Index index) {
  if (read.requester == kNoMember) {
    read_states_.push_back(ReadState{index, read.context});
    return;
  }
  ReplyToRead(read, index, /*reject=*/false);
}

void CoreImpl::FailRead(const PendingRead& read) {
  if (read.requester == kNoMember) {
    failed_reads_.push_back(read.context);
    return;
  }
  ReplyToRead(read, 0, /*reject=*/true);
}

void CoreImpl::ReplyToRead(const PendingRead& read, Index index, bool reject) {
  Message reply = ReplyTo(read.requester, MessageType::kReadIndexResponse);
  reply.log_index = index;
  reply.reject = reject;
  reply.context = read.context;
  Send(std::move(reply));
}

void CoreImpl::FailPendingReads() {
  for (const PendingRead& read : reads_waiting_noop_) FailRead(read);
  for (const PendingRead& read : reads_waiting_round_) FailRead(read);
  reads_waiting_noop_.clear();
  reads_waiting_round_.clear();
}

void CoreImpl::HandleReadIndexRequest(const Message& m) {
  PendingRead read{m.context, 0, 0, m.from};
  if (role_ != Role::kLeader ||
      PendingReadCount() >= options_.max_pending_reads) {
    return FailRead(read);
  }
  StartRead(std::move(read), ReadMode::kReadIndex);
}

void CoreImpl::HandleReadIndexResponse(const Message& m) {
  if (m.reject) {
    failed_reads_.push_back(m.context);
    return;
  }
  read_states_.push_back(ReadState{m.log_index, m.context});
}

}  // namespace confman::raft
