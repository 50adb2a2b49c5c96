// A host's write, from the member it was handed to until its caller has an
// answer. The member keeps the write's bytes and sends it to whichever
// member leads: when that member stops leading, cannot be reached, or
// refuses it, the write goes again, under the same session id, to the next
// leader. The state machine applies a (client, sequence) once and answers a
// repeat with the first result, so retrying a write whose outcome is unknown
// is safe, and the caller sees one effect and one answer (thesis §6.3).
#include <algorithm>
#include <random>

#include "absl/strings/str_cat.h"
#include "confman/testing/node_faults.h"
#include "forward_codec.h"
#include "node_impl.h"

namespace confman::node_internal {
namespace {

// Outcomes that only the state machine gives: whichever attempt reports
// one reports the write's single effect.
bool IsAppliedOutcome(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kAborted:
      return true;
    default:
      return false;
  }
}

// The attempt was refused before it was proposed (Unavailable), or its
// outcome is unknown (DeadlineExceeded at the leader): another may follow.
bool MayRetry(const absl::Status& status) {
  return absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status);
}

// See ProposeQueued.
constexpr uint64_t kMaxProposalBatchBytes = uint64_t{1} << 20;

uint64_t RandomSessionId() {
  std::random_device device;
  std::mt19937_64 bits((uint64_t{device()} << 32) ^ device());
  uint64_t id = 0;
  while (id == 0) id = bits();
  return id;
}

}  // namespace

uint64_t NewSessionId() { return RandomSessionId(); }

void NodeImpl::StampSession(kv::Command& command) {
  if (command.client_id != 0) return;  // The host numbers its own writes.
  common::MutexLock lock(&session_mu_);
  const std::set<uint64_t>& current = unanswered_sequences_[session_id_];
  if (!current.empty() &&
      next_sequence_ - *current.begin() >= options_.session_max_results / 2) {
    session_id_ = NewSessionId();
    next_sequence_ = 1;
  }
  std::set<uint64_t>& unanswered = unanswered_sequences_[session_id_];
  command.client_id = session_id_;
  command.sequence = next_sequence_++;
  unanswered.insert(command.sequence);
  command.lowest_unanswered = *unanswered.begin();
}

void NodeImpl::SessionAnswered(uint64_t client_id, uint64_t sequence) {
  common::MutexLock lock(&session_mu_);
  auto it = unanswered_sequences_.find(client_id);
  if (it == unanswered_sequences_.end()) return;
  it->second.erase(sequence);
  if (it->second.empty() && client_id != session_id_) {
    unanswered_sequences_.erase(it);
  }
}

absl::Status NodeImpl::StorageFailedError() const {
  absl::Status storage;
  {
    common::MutexLock lock(&status_mu_);
    storage = storage_error_;
  }
  if (storage.ok()) return storage;
  const raft::MemberId leader = core_->LeaderId();
  return absl::UnavailableError(
      absl::StrCat("member ", id_, " cannot make writes durable (",
                   storage.ToString(), "); retry on another member",
                   leader == raft::kNoMember || leader == id_
                       ? std::string()
                       : absl::StrCat(", e.g. the leader, member ", leader,
                                      " at ", AddressOf(leader))));
}

void NodeImpl::StartWrite(std::string command,
                          std::shared_ptr<WriteAnswer> answer,
                          Clock::time_point deadline) {
  auto refuse = [&](absl::Status status) {
    RunOnApplyThread([answer, status] { answer->Answer(status); });
  };
  if (closing_) {
    return refuse(ClosingError());
  }
  if (absl::Status halted = HaltedError(); !halted.ok()) return refuse(halted);
  // Refused here too, not only on the leader: the host learns at once that
  // this member is broken rather than through writes that happen to work.
  if (absl::Status storage = StorageFailedError(); !storage.ok()) {
    return refuse(storage);
  }
  if (origin_write_bytes_ > options_.max_uncommitted_bytes) {
    return refuse(absl::ResourceExhaustedError(absl::StrCat(
        "member ", id_, " holds ", origin_write_bytes_,
        " bytes of writes waiting for a leader (max_uncommitted_bytes); "
        "retry shortly")));
  }
  const uint64_t request_id = next_request_id_++;
  origin_write_bytes_ += command.size();
  OriginWrite& write = origin_writes_[request_id];
  write.command = std::move(command);
  write.answer = std::move(answer);
  write.deadline = deadline;
  SendAttempt(request_id, write);
}

void NodeImpl::SendAttempt(uint64_t request_id, OriginWrite& write) {
  write.target = raft::kNoMember;
  write.answer->current_attempt = ++write.attempt;
  if (core_->role() == raft::Role::kLeader) {
    write.target = id_;
    write.sent = true;
    return ProposeLocal(write.command,
                        AttemptDone(request_id, write.attempt, write.answer),
                        write.deadline);
  }
  const raft::MemberId leader = core_->LeaderId();
  if (leader == raft::kNoMember) {
    write.waiting_since = Clock::now();
    writes_waiting_ = true;
    return;  // Sent once a leader is known (RedirectWrites).
  }
  absl::Status sent = transport_->SendForward(
      leader, ForwardFrame{request_id, false, write.command});
  if (!sent.ok()) {
    Log(LogLevel::kDebug,
        absl::StrCat("cannot forward a write to the leader, member ", leader,
                     ": ", sent.ToString(), "; retrying"));
    write.failed_at = leader;
    write.waiting_since = Clock::now();
    writes_waiting_ = true;
    return;
  }
  Count("node.forwarded");
  write.target = leader;
  write.sent = true;
}

WriteCallback NodeImpl::AttemptDone(uint64_t request_id, uint32_t attempt,
                                    std::shared_ptr<WriteAnswer> answer) {
  return [this, request_id, attempt,
          answer = std::move(answer)](absl::StatusOr<uint64_t> result) {
    if (answer->answered) return;
    const bool current = answer->current_attempt == attempt;
    if (IsAppliedOutcome(result.status()) ||
        (current && !MayRetry(result.status()))) {
      if (answer->Answer(std::move(result))) {
        common::MutexLock lock(&answered_mu_);
        answered_writes_.push_back(request_id);
      }
      return;
    }
    if (!current || closing_) return;
    asio::post(loop_, [this, request_id, attempt, status = result.status()] {
      OnAttemptRefused(request_id, attempt, status);
    });
  };
}

void NodeImpl::OnAttemptRefused(uint64_t request_id, uint32_t attempt,
                                const absl::Status& status) {
  auto it = origin_writes_.find(request_id);
  if (it == origin_writes_.end() || it->second.attempt != attempt) return;
  OriginWrite& write = it->second;
  Log(LogLevel::kDebug, absl::StrCat("write ", request_id, " attempt ", attempt,
                                     " refused: ", status.ToString()));
  write.failed_at = write.target;
  write.target = raft::kNoMember;
  write.waiting_since = Clock::now();
  writes_waiting_ = true;
  const raft::MemberId leader =
      core_->role() == raft::Role::kLeader ? id_ : core_->LeaderId();
  if (leader != raft::kNoMember && leader != write.failed_at) {
    SendAttempt(request_id, write);
  }
}

void NodeImpl::RedirectWrites(raft::MemberId unreachable) {
  const raft::MemberId target =
      core_->role() == raft::Role::kLeader ? id_ : core_->LeaderId();
  const bool moved = target != write_target_;
  write_target_ = target;
  if ((!moved && unreachable == raft::kNoMember) || origin_writes_.empty()) {
    return;
  }
  for (auto& [request_id, write] : origin_writes_) {
    if (write.answer->answered) continue;
    if (write.target != raft::kNoMember &&
        (write.target != target || write.target == unreachable)) {
      // Lost: its outcome is unknown, as it may still commit through the
      // old leader's log. The next attempt is applied at most once either
      // way, and the lost one's refusals no longer count.
      write.failed_at = write.target;
      write.target = raft::kNoMember;
      write.waiting_since = Clock::now();
      write.answer->current_attempt = ++write.attempt;
      writes_waiting_ = true;
    }
    // Sent on at once to a new leader; the same one, just unreachable, is
    // retried after a heartbeat interval (RetryWaitingWrites).
    if (write.target == raft::kNoMember && target != raft::kNoMember &&
        (moved || write.failed_at != target)) {
      SendAttempt(request_id, write);
    }
  }
}

// Writes left waiting: for a leader, or after their last target refused
// them while it still seemed to lead (a stale view), for a heartbeat.
void NodeImpl::RetryWaitingWrites() {
  if (!writes_waiting_) return;
  const raft::MemberId target =
      core_->role() == raft::Role::kLeader ? id_ : core_->LeaderId();
  if (target == raft::kNoMember) return;
  const auto ready = Clock::now() - options_.heartbeat_interval;
  bool still_waiting = false;
  for (auto& [request_id, write] : origin_writes_) {
    if (write.target != raft::kNoMember || write.answer->answered) continue;
    if (write.failed_at == target && write.waiting_since > ready) {
      still_waiting = true;
      continue;
    }
    SendAttempt(request_id, write);
    still_waiting |= write.target == raft::kNoMember;
  }
  writes_waiting_ = still_waiting;
}

void NodeImpl::ForgetAnsweredWrites() {
  std::vector<uint64_t> answered;
  {
    common::MutexLock lock(&answered_mu_);
    answered.swap(answered_writes_);
  }
  for (uint64_t request_id : answered) {
    auto it = origin_writes_.find(request_id);
    if (it == origin_writes_.end()) continue;
    origin_write_bytes_ -= it->second.command.size();
    origin_writes_.erase(it);
  }
}

void NodeImpl::ExpireWrites(Clock::time_point now) {
  ForgetAnsweredWrites();
  const std::string leader = AddressOf(core_->LeaderId());
  for (auto it = origin_writes_.begin(); it != origin_writes_.end();) {
    OriginWrite& write = it->second;
    if (!write.answer->answered && write.deadline > now) {
      ++it;
      continue;
    }
    if (write.answer->answered) {
      origin_write_bytes_ -= write.command.size();
      it = origin_writes_.erase(it);
      continue;
    }
    absl::Status status =
        write.sent
            ? absl::DeadlineExceededError(
                  absl::StrCat("no answer within the request timeout (leader: ",
                               leader.empty() ? std::string("unknown") : leader,
                               "); the write may still take effect"))
            : absl::UnavailableError(
                  "no leader was known within the request timeout, so the "
                  "write was never proposed and did not take effect; retry");
    RunOnApplyThread(
        [answer = write.answer, status] { answer->Answer(status); });
    origin_write_bytes_ -= write.command.size();
    it = origin_writes_.erase(it);
  }
}

void NodeImpl::FailWrites(const absl::Status& unsent,
                          const absl::Status& sent) {
  for (auto& [request_id, write] : origin_writes_) {
    RunOnApplyThread(
        [answer = write.answer, status = write.sent ? sent : unsent] {
          answer->Answer(status);
        });
  }
  origin_writes_.clear();
  origin_write_bytes_ = 0;
  for (QueuedProposal& queued : queued_proposals_) {
    RunOnApplyThread([done = std::move(queued.done), unsent] { done(unsent); });
  }
  queued_proposals_.clear();
}

void NodeImpl::ProposeLocal(std::string command, WriteCallback done,
                            Clock::time_point deadline) {
  if (absl::Status storage = StorageFailedError(); !storage.ok()) {
    return RunOnApplyThread([done, storage] { done(storage); });
  }
  if (apply_backlog_bytes_ > options_.max_uncommitted_bytes) {
    return RunOnApplyThread([done] {
      done(absl::ResourceExhaustedError(
          "the leader's apply queue is full (the state machine lags the "
          "log); retry shortly"));
    });
  }
  queued_proposals_.push_back(
      QueuedProposal{std::move(command), std::move(done), deadline});
  ProcessReadySoon();
}

void NodeImpl::ProposeQueued() {
  std::vector<QueuedProposal> queued;
  queued.swap(queued_proposals_);
  size_t begin = 0;
  while (begin < queued.size()) {
    // One core call per kMaxProposalBatchBytes (or one command): a batch
    // counts against the uncommitted budget whole, and each call sends its
    // own AppendEntries, so wire frames stay about one large value in size
    // while small writes still travel thousands to a frame. All the calls'
    // entries still share one log write.
    size_t end = begin;
    uint64_t bytes = 0;
    std::vector<std::string> data;
    const uint64_t batch_bytes =
        std::min<uint64_t>(options_.max_append_bytes, kMaxProposalBatchBytes);
    while (
        end < queued.size() &&
        (end == begin || bytes + queued[end].command.size() <= batch_bytes)) {
      bytes += queued[end].command.size();
      data.push_back(std::move(queued[end].command));
      ++end;
    }
    Sample("node.proposal_batch_entries", static_cast<double>(end - begin));
    absl::StatusOr<raft::ProposalPosition> pos =
        core_->Propose(std::move(data));
    if (!pos.ok()) {
      // Not leading any more (or handing over): not proposed, so another
      // attempt may follow.
      const absl::Status s =
          absl::IsFailedPrecondition(pos.status())
              ? absl::UnavailableError(
                    NotLeaderError(core_->LeaderId(), "a write").message())
              : pos.status();
      for (size_t i = begin; i < end; ++i) {
        RunOnApplyThread([done = std::move(queued[i].done), s] { done(s); });
      }
    } else if (testing::HasTestingFault(
                   options_.testing_faults,
                   testing::NodeTestingFault::kAckBeforeCommit)) {
      // TEST ONLY: answered now, with a guessed revision, whatever happens
      // to the entry.
      for (size_t i = begin; i < end; ++i) {
        testing_predicted_revision_ =
            std::max(testing_predicted_revision_, sm_->Revision()) + 1;
        RunOnApplyThread(
            [done = std::move(queued[i].done),
             revision = testing_predicted_revision_] { done(revision); });
      }
    } else {
      common::MutexLock lock(&writes_mu_);
      for (size_t i = begin; i < end; ++i) {
        pending_writes_[pos->first + (i - begin)] = PendingWrite{
            pos->term, std::move(queued[i].done), queued[i].deadline};
      }
    }
    begin = end;
  }
}

void NodeImpl::HandleForwardRequest(raft::MemberId from, ForwardFrame frame) {
  if (halted_) return;  // The forwarding member times the write out.
  const uint64_t request_id = frame.request_id;
  WriteCallback reply = [this, from,
                         request_id](absl::StatusOr<uint64_t> result) {
    if (closed_) return;
    absl::Status sent = transport_->SendForward(
        from, ForwardFrame{request_id, true, EncodeForwardResult(result)});
    if (!sent.ok()) {
      // The forwarding member sends the write again when it sees the
      // connection fail, or answers its caller at the deadline.
      Count("node.forward_replies_lost");
      Log(LogLevel::kWarning,
          absl::StrCat("cannot answer member ", from, "'s forwarded write (",
                       sent.ToString(), ")"));
    }
  };
  if (core_->role() != raft::Role::kLeader || closing_) {
    absl::Status s =
        closing_ ? absl::UnavailableError("the leader is closing; retry")
                 : NotLeaderError(core_->LeaderId(), "a forwarded write");
    return reply(absl::UnavailableError(s.message()));
  }
  ProposeLocal(std::move(frame.payload), std::move(reply), Deadline());
}

void NodeImpl::HandleForwardResponse(raft::MemberId from, ForwardFrame frame) {
  auto it = origin_writes_.find(frame.request_id);
  if (it == origin_writes_.end()) return;  // Answered already.
  OriginWrite& write = it->second;
  // An answer from a member the current attempt did not go to belongs to
  // an earlier attempt.
  const uint32_t attempt = from == write.target ? write.attempt : 0;
  WriteCallback done = AttemptDone(frame.request_id, attempt, write.answer);
  RunOnApplyThread(
      [done = std::move(done), payload = std::move(frame.payload)] {
        done(DecodeForwardResult(payload));
      });
}

}  // namespace confman::node_internal
