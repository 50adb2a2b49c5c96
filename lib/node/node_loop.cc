// The Raft loop: one thread owns the core. Every input (tick, message,
// proposal, storage report) arrives here as a posted handler, and after
// each one the Ready batches are handled in the order core.h prescribes.
#include "absl/strings/str_cat.h"
#include "confman/testing/node_faults.h"
#include "forward_codec.h"
#include "node_impl.h"

namespace confman::node_internal {

void NodeImpl::ScheduleTick() {
  tick_timer_->expires_after(options_.tick_interval);
  tick_timer_->async_wait([this](const asio::error_code& ec) {
    if (!ec && !closing_) OnTick();
  });
}

void NodeImpl::OnTick() {
  if (halted_) return;  // No more ticks: the member stays silent.
  core_->Tick();
  ProcessReady();
  RefreshStatusCache();
  ForgetAnsweredWrites();
  RetryWaitingWrites();
  // Deadlines need no finer resolution than ten ticks.
  if (++ticks_ % 10 == 0) {
    ExpireRequests();
    // A transfer times out after an election timeout; keep trying.
    if (storage_failed_) HandOffLeadership();
  }
  ScheduleTick();
}

void NodeImpl::ProcessReady() {
  if (halted_) return;
  while (core_->HasReady()) {
    // Nothing is acted on from a state that is not consistent.
    if (absl::Status broken = CheckCoreInvariants(); !broken.ok()) {
      return Halt(broken);
    }
    raft::Ready ready = core_->TakeReady();
    // Published before the apply thread can see these entries, so a status
    // never shows an applied index beyond the commit index.
    commit_index_ = core_->CommitIndex();
    HandleReady(std::move(ready));
  }
  // Membership calls wait on GetStatus(); let them see a change at once.
  if (core_->membership() != last_membership_) {
    last_membership_ = core_->membership();
    RefreshStatusCache();
  }
  const raft::Role role = core_->role();
  if (last_role_ == raft::Role::kLeader && role != raft::Role::kLeader) {
    // Worth a warning: each one costs writes an election.
    Log(LogLevel::kWarning,
        core_->term() == last_term_
            ? absl::StrCat("stepped down as leader in term ", last_term_,
                           ": heard from no quorum for an election timeout")
            : absl::StrCat("stepped down as leader: term ", core_->term(),
                           " began (was ", last_term_, ")"));
  }
  const raft::Term leading = role == raft::Role::kLeader ? core_->term() : 0;
  if (leading_term_.exchange(leading) != leading) {
    // Wakes senders waiting for acknowledgements, to notice.
    { common::MutexLock lock(&snapshot_mu_); }
    snapshot_ack_cv_.SignalAll();
  }
  last_role_ = role;
  last_term_ = core_->term();
  const raft::MemberId leader = core_->LeaderId();
  if (leader != raft::kNoMember && leader != last_leader_) {
    if (last_leader_ != raft::kNoMember) {
      ++leader_changes_;
      Count("node.leader_changes");
    }
    Log(LogLevel::kInfo, absl::StrCat("leader is now member ", leader,
                                      " (term ", core_->term(), ")"));
    last_leader_ = leader;
    RefreshStatusCache();
  }
  RedirectWrites();
}

void NodeImpl::ProcessReadySoon() {
  if (ready_pass_posted_) return;
  ready_pass_posted_ = true;
  // Queued behind what is already waiting: a burst of inputs is handled
  // first, then answered with one Ready.
  asio::post(loop_, [this] {
    ready_pass_posted_ = false;
    if (closing_ || halted_) return;
    ProposeQueued();
    ProcessReady();
  });
}

void NodeImpl::HandleReady(raft::Ready ready) {
  if (ready.snapshot_to_install) {
    // The log's reset travels in this Ready's log write, held back until
    // the install commits.
    ++installs_started_;
    if (staged_sink_ == nullptr) {
      FailStorage(absl::InternalError(
          absl::StrCat("snapshot at index ", ready.snapshot_to_install->index,
                       " accepted with no staged data")));
    } else {
      EnqueueApply(InstallSnapshot{std::move(staged_sink_),
                                   *ready.snapshot_to_install,
                                   installs_started_});
    }
  }
  SendMessages(std::move(ready.messages));
  SubmitLogWrite(ready);
  if (!ready.committed_entries.empty()) {
    EnqueueApply(CommittedBatch{std::move(ready.committed_entries)});
  }
  HandleReadStates(std::move(ready.read_states));
  HandleFailedReads(ready.failed_reads);
  for (const raft::SnapshotSend& send : ready.snapshots_to_send) {
    StartSnapshotSend(send.to);
  }
}

void NodeImpl::SendMessages(std::vector<raft::Message> messages) {
  for (raft::Message& m : messages) {
    const raft::MemberId to = m.to;
    absl::Status s = transport_->Send(std::move(m));
    // A full bulk queue or an unknown peer: stop pipelining to it; Raft
    // re-sends what was lost once it answers again.
    if (absl::IsResourceExhausted(s) || absl::IsNotFound(s)) {
      core_->ReportUnreachable(to);
    }
  }
}

void NodeImpl::SubmitLogWrite(raft::Ready& ready) {
  const std::optional<raft::SnapshotMeta>& reset = ready.snapshot_to_install;
  if (!reset && !ready.hard_state && ready.entries.empty()) {
    // Nothing to write: these only wait for earlier writes. After a failed
    // write they promise what this member may not hold: never sent.
    if (storage_failed_) return;
    if (pending_sends_.empty()) {
      SendMessages(std::move(ready.messages_after_persist));
    } else {
      auto& waiting = pending_sends_.back().messages;
      for (auto& m : ready.messages_after_persist)
        waiting.push_back(std::move(m));
    }
    return;
  }
  raft::Index index = 0;
  raft::Term term = 0;
  if (!ready.entries.empty()) {
    index = ready.entries.back().index;
    term = ready.entries.back().term;
  } else if (reset) {
    index = reset->index;
    term = reset->term;
  }
  LogWrite write{.reset = reset ? std::optional<LogResetPoint>(
                                      LogResetPoint{reset->index, reset->term})
                                : std::nullopt,
                 .hard_state = ready.hard_state,
                 .entries = std::move(ready.entries)};
  pending_sends_.push_back(
      PendingSends{std::move(ready.messages_after_persist)});
  if (reset || !held_log_writes_.empty()) {
    held_log_writes_.push_back(
        HeldLogWrite{installs_started_, std::move(write), index, term});
    return;
  }
  WriteLog(std::move(write), index, term);
}

void NodeImpl::WriteLog(LogWrite write, raft::Index index, raft::Term term) {
  const auto start = Clock::now();
  log_->Write(
      std::move(write), [this, index, term, start](absl::Status status) {
        Sample("node.log_write_ms",
               std::chrono::duration<double, std::milli>(Clock::now() - start)
                   .count());
        asio::post(loop_, [this, status, index, term] {
          OnLogWriteDone(status, index, term);
        });
      });
}

// Raft loop, after an install committed: the writes that waited for it go
// to the log store, in order.
void NodeImpl::ReleaseHeldLogWrites() {
  while (!held_log_writes_.empty() &&
         held_log_writes_.front().after_install <= installs_done_) {
    HeldLogWrite held = std::move(held_log_writes_.front());
    held_log_writes_.pop_front();
    WriteLog(std::move(held.write), held.index, held.term);
  }
}

void NodeImpl::OnLogWriteDone(absl::Status status, raft::Index index,
                              raft::Term term) {
  if (pending_sends_.empty()) return;
  PendingSends done = std::move(pending_sends_.front());
  pending_sends_.pop_front();
  if (!status.ok()) return FailStorage(status);
  // A write that succeeded after an earlier one failed may follow a gap.
  if (storage_failed_) return;
  if (index != 0) core_->ReportDurable(index, term);
  SendMessages(std::move(done.messages));
  ProcessReadySoon();
}

absl::Status NodeImpl::CheckCoreInvariants() const {
  absl::Status status = core_->CheckInvariants();
  if (status.ok() &&
      testing::HasTestingFault(options_.testing_faults,
                               testing::NodeTestingFault::kBreakInvariant) &&
      core_->CommitIndex() >= testing::kBreakInvariantAtCommit) {
    status = absl::InternalError("TESTING FAULT: invariant reported broken");
  }
  return status;
}

void NodeImpl::Halt(const absl::Status& cause) {
  if (halted_.exchange(true)) return;
  const absl::Status halted = absl::InternalError(absl::StrCat(
      "member ", id_, " halted on a broken invariant (", cause.message(),
      "); it serves nothing until reopened; please report this"));
  {
    common::MutexLock lock(&status_mu_);
    halted_error_ = halted;
  }
  Count("node.halts");
  Log(LogLevel::kError, halted.ToString());
  tick_timer_->cancel();
  // Writes proposed or forwarded may still commit elsewhere: their outcome
  // is unknown.
  const absl::Status unknown = absl::DeadlineExceededError(
      absl::StrCat(halted.message(), "; the write may still take effect"));
  FailLoopRequests(halted, unknown);
  FailPendingWrites(unknown, /*only_expired=*/false);
}

absl::Status NodeImpl::HaltedError() const {
  if (!halted_) return absl::OkStatus();
  common::MutexLock lock(&status_mu_);
  return halted_error_;
}

void NodeImpl::FailStorage(const absl::Status& status) {
  storage_failed_ = true;
  {
    common::MutexLock lock(&status_mu_);
    if (!storage_error_.ok()) return;
    storage_error_ = status;
  }
  Count("node.storage_errors");
  Log(LogLevel::kError,
      absl::StrCat("storage failed; refusing writes until reopened: ",
                   status.ToString()));
  // Runs on the apply thread too (state machine failures), and inside
  // HandleReady, where a nested ProcessReady would reorder Ready batches.
  asio::post(loop_, [this] {
    if (closing_) return;
    HandOffLeadership();
    // Reads waiting for a read point would wait for entries this member can
    // no longer take.
    const absl::Status refused = StorageFailedError();
    for (auto& [id, read] : pending_reads_) read.done(refused);
    pending_reads_.clear();
  });
}

// A leader that cannot make its log durable would keep the cluster from
// electing one that can (its heartbeats still arrive), so it hands over to
// the most up-to-date voter. Raft loop, outside HandleReady.
void NodeImpl::HandOffLeadership() {
  if (core_->role() != raft::Role::kLeader) return;
  raft::MemberId best = raft::kNoMember;
  raft::Index best_match = 0;
  for (const raft::MemberProgress& p : core_->Status().progress) {
    if (p.id == id_ || !p.voter) continue;
    if (best == raft::kNoMember || p.match > best_match) {
      best = p.id;
      best_match = p.match;
    }
  }
  if (best == raft::kNoMember) return;  // A single voter: nobody to take over.
  absl::Status s = core_->TransferLeadership(best);
  if (s.ok()) {
    Log(LogLevel::kWarning,
        absl::StrCat("handing leadership to member ", best,
                     " because this member's storage failed"));
  }
  ProcessReady();
}

// ---------------------------------------------------------------------------
// Reads.

void NodeImpl::StartRead(raft::ReadMode mode, ReadAt done,
                         Clock::time_point deadline) {
  if (closing_) {
    return done(ClosingError());
  }
  if (absl::Status halted = HaltedError(); !halted.ok()) return done(halted);
  // Its log takes no new entries, so it would never apply up to a fresh
  // read point: refused now rather than at the deadline.
  if (absl::Status storage = StorageFailedError(); !storage.ok()) {
    return done(absl::UnavailableError(
        absl::StrCat(storage.message(),
                     "; it serves only kLocal reads of what it applied")));
  }
  const uint64_t request_id = next_request_id_++;
  absl::Status s = core_->ReadIndex(EncodeRequestId(request_id), mode);
  if (!s.ok()) {
    return done(absl::IsFailedPrecondition(s) || absl::IsUnavailable(s)
                    ? absl::UnavailableError(
                          absl::StrCat("no read point available: ", s.message(),
                                       "; retry shortly or read with kLocal"))
                    : s);
  }
  pending_reads_[request_id] = PendingRead{std::move(done), deadline};
  ProcessReady();
}

void NodeImpl::HandleReadStates(std::vector<raft::ReadState> states) {
  for (raft::ReadState& state : states) {
    auto it = pending_reads_.find(DecodeRequestId(state.context));
    if (it == pending_reads_.end()) continue;
    ReadAt done = std::move(it->second.done);
    pending_reads_.erase(it);
    done(state.index);
  }
}

// The core will never answer these (leadership was lost, or the leader
// refused a forwarded read), so fail them now rather than at the deadline.
void NodeImpl::HandleFailedReads(const std::vector<std::string>& contexts) {
  if (contexts.empty()) return;
  const raft::MemberId leader = core_->LeaderId();
  const absl::Status lost = absl::UnavailableError(absl::StrCat(
      "the read point was lost (leadership changed or the leader refused "
      "the read); ",
      leader == raft::kNoMember ? std::string("no leader is known yet")
                                : absl::StrCat("the leader is member ", leader,
                                               " at ", AddressOf(leader)),
      "; retry shortly"));
  for (const std::string& context : contexts) {
    auto it = pending_reads_.find(DecodeRequestId(context));
    if (it == pending_reads_.end()) continue;  // Expired already.
    ReadAt done = std::move(it->second.done);
    pending_reads_.erase(it);
    done(lost);
  }
}

void NodeImpl::ExpireRequests() {
  const auto now = Clock::now();
  const std::string leader = AddressOf(core_->LeaderId());
  const absl::Status expired = absl::DeadlineExceededError(
      absl::StrCat("no answer within the request timeout (leader: ",
                   leader.empty() ? std::string("unknown") : leader,
                   "); a write may still take effect"));
  for (auto it = pending_reads_.begin(); it != pending_reads_.end();) {
    if (it->second.deadline > now) {
      ++it;
      continue;
    }
    it->second.done(expired);
    it = pending_reads_.erase(it);
  }
  ExpireWrites(now);
  FailPendingWrites(expired, /*only_expired=*/true);
}

void NodeImpl::FailLoopRequests(const absl::Status& reads,
                                const absl::Status& writes) {
  for (auto& [id, read] : pending_reads_) read.done(reads);
  pending_reads_.clear();
  FailWrites(reads, writes);
}

void NodeImpl::RefreshStatusCache() {
  raft::CoreStatus core = core_->Status();
  if (!core.storage_error.ok()) FailStorage(core.storage_error);
  ReleaseSnapshotFloors(core);
  const std::string leader_address = AddressOf(core.leader);
  common::MutexLock lock(&status_mu_);
  status_.id = core.id;
  status_.role = core.role;
  status_.term = core.term;
  status_.leader = core.leader;
  status_.leader_address =
      core.leader == raft::kNoMember ? std::string() : leader_address;
  status_.commit_index = core.commit;
  status_.last_index = core.last_index;
  status_.membership = std::move(core.membership);
  status_.progress = std::move(core.progress);
}

// ---------------------------------------------------------------------------
// Transport input: hand over to the loop and return at once.

void NodeImpl::OnMessage(raft::Message message) {
  if (closing_ || halted_) return;
  asio::post(loop_, [this, m = std::move(message)]() mutable {
    if (closing_) return;
    core_->Step(std::move(m));
    ProcessReadySoon();
  });
}

void NodeImpl::OnForward(raft::MemberId from, ForwardFrame frame) {
  if (closing_) return;
  asio::post(loop_, [this, from, f = std::move(frame)]() mutable {
    if (f.response) return HandleForwardResponse(from, std::move(f));
    HandleForwardRequest(from, std::move(f));
  });
}

void NodeImpl::OnUnreachable(raft::MemberId member) {
  if (closing_) return;
  asio::post(loop_, [this, member] {
    if (closing_) return;
    core_->ReportUnreachable(member);
    ProcessReady();
    RedirectWrites(member);
  });
}

}  // namespace confman::node_internal
