// The apply thread: applies committed entries in order, completes the
// writes waiting for them, serves reads whose read index is applied, and
// runs every user callback, so neither the Raft loop nor the transport
// ever waits on host code.
#include <algorithm>
#include <charconv>
#include <iterator>
#include <utility>

#include "absl/strings/str_cat.h"
#include "confman/kv/command.h"
#include "confman/status_macros.h"
#include "confman/testing/node_faults.h"
#include "node_impl.h"

namespace confman::node_internal {

// Retained entries examined per step of the sweep of replaced values, which
// bounds its memory whatever the number of large values stored.
constexpr size_t kSweepPageEntries = 4096;
namespace {

// Consecutive committed batches are applied in one state-machine
// transaction up to this many entry bytes: one fsync for many writes.
constexpr uint64_t kMaxApplyGroupBytes = uint64_t{32} << 20;

uint64_t DataBytes(const std::vector<raft::Entry>& entries) {
  uint64_t bytes = 0;
  for (const raft::Entry& e : entries) bytes += e.data.size();
  return bytes;
}

}  // namespace

void NodeImpl::EnqueueApply(ApplyTask task) {
  if (auto* batch = std::get_if<CommittedBatch>(&task)) {
    apply_backlog_bytes_ += DataBytes(batch->entries);
  }
  {
    common::MutexLock lock(&apply_mu_);
    apply_queue_.push_back(std::move(task));
  }
  apply_cv_.Signal();
}

void NodeImpl::RunOnApplyThread(std::function<void()> task) {
  {
    common::MutexLock lock(&apply_mu_);
    if (!apply_exited_) {
      apply_queue_.push_back(std::move(task));
      apply_cv_.Signal();
      return;
    }
  }
  task();  // Close() has drained the thread: run here, before it returns.
}

void NodeImpl::ApplyLoop() {
  apply_mu_.Lock();
  while (true) {
    while (!apply_stop_ && apply_queue_.empty()) apply_cv_.Wait(&apply_mu_);
    if (apply_queue_.empty()) break;
    ApplyTask task = std::move(apply_queue_.front());
    apply_queue_.pop_front();
    // Group the committed batches already queued behind this one.
    if (auto* batch = std::get_if<CommittedBatch>(&task)) {
      uint64_t bytes = DataBytes(batch->entries);
      while (!apply_queue_.empty() && bytes < kMaxApplyGroupBytes) {
        auto* next = std::get_if<CommittedBatch>(&apply_queue_.front());
        if (next == nullptr) break;
        bytes += DataBytes(next->entries);
        for (auto& e : next->entries) batch->entries.push_back(std::move(e));
        apply_queue_.pop_front();
      }
    }
    apply_mu_.Unlock();
    const uint64_t bytes =
        std::holds_alternative<CommittedBatch>(task)
            ? DataBytes(std::get<CommittedBatch>(task).entries)
            : 0;
    RunApplyTask(task);
    apply_backlog_bytes_ -= bytes;
    apply_mu_.Lock();
  }
  apply_exited_ = true;
  apply_mu_.Unlock();
}

void NodeImpl::RunApplyTask(ApplyTask& task) {
  if (auto* batch = std::get_if<CommittedBatch>(&task)) {
    ApplyBatch(std::move(batch->entries));
  } else if (auto* install = std::get_if<InstallSnapshot>(&task)) {
    InstallStaged(std::move(*install));
  } else {
    std::get<std::function<void()>>(task)();
  }
}

void NodeImpl::ApplyBatch(std::vector<raft::Entry> entries) {
  std::map<raft::Index, raft::Term> terms;
  bool membership_changed = false;
  for (const raft::Entry& e : entries) {
    terms[e.index] = e.term;
    membership_changed |= e.type == raft::EntryType::kMembership;
  }
  std::optional<raft::Membership> before;
  if (membership_changed) {
    before = AppliedMembership();
  }
  if (testing::HasTestingFault(options_.testing_faults,
                               testing::NodeTestingFault::kDropOneApply)) {
    DropOneApplyForTesting(entries);
  }
  Sample("node.apply_batch_entries", static_cast<double>(entries.size()));
  // Writes are acknowledged once their results are known: the entries are
  // already durable in a quorum's logs, so the state's own commit need not
  // delay them.
  absl::StatusOr<std::vector<ApplyResult>> results = sm_->Apply(
      std::move(entries), [&](const std::vector<ApplyResult>& known) {
        CompleteWrites(known, terms);
      });
  if (!results.ok()) return FailStorage(results.status());
  Count("node.applied_entries", results->size());
  applied_ = sm_->AppliedIndex();
  asio::post(loop_, [this, applied = applied_.load()] {
    if (closing_) return;
    core_->ReportApplied(applied);
    ProcessReady();
  });
  ServeReadsUpTo(applied_);
  watch_hub_->NotifyRevision();
  if (membership_changed) RefreshPeers(before ? &*before : nullptr);
  MaybeCompactLog(applied_);
}

void NodeImpl::CompleteWrites(const std::vector<ApplyResult>& results,
                              const std::map<raft::Index, raft::Term>& terms) {
  for (const ApplyResult& result : results) {
    PendingWrite write;
    {
      common::MutexLock lock(&writes_mu_);
      auto it = pending_writes_.find(result.index);
      if (it == pending_writes_.end()) continue;
      write = std::move(it->second);
      pending_writes_.erase(it);
    }
    auto term = terms.find(result.index);
    if (term == terms.end() || term->second != write.term) {
      write.done(absl::UnavailableError(
          "leadership changed before the write committed, so it did not take "
          "effect; retry"));
    } else if (!result.outcome.ok()) {
      write.done(result.outcome);
    } else {
      write.done(result.revision);
    }
  }
}

// TEST ONLY (NodeTestingFault::kDropOneApply). The skipped entry's bytes
// are replaced by an undecodable command, which the state machine applies
// as a no-op (InvalidArgument outcome): the index still advances, so only
// this member's state and revisions diverge.
void NodeImpl::DropOneApplyForTesting(std::vector<raft::Entry>& entries) {
  for (raft::Entry& entry : entries) {
    if (entry.type != raft::EntryType::kNormal || entry.data.empty()) continue;
    absl::StatusOr<kv::CommandView> command = kv::DecodeCommand(entry.data);
    if (!command.ok() || command->kind == kv::Command::Kind::kCompactHistory ||
        command->ns.rfind(kReservedPrefix, 0) == 0) {
      continue;
    }
    if (++testing_host_writes_applied_ == testing::kDropOneApplyOrdinal) {
      Log(LogLevel::kWarning,
          absl::StrCat("TESTING FAULT: not applying entry ", entry.index));
      entry.data.clear();
      return;
    }
  }
}

void NodeImpl::FailPendingWrites(const absl::Status& status, bool only_expired) {
  const auto now = Clock::now();
  std::vector<WriteCallback> failed;
  {
    common::MutexLock lock(&writes_mu_);
    for (auto it = pending_writes_.begin(); it != pending_writes_.end();) {
      if (only_expired && it->second.deadline > now) {
        ++it;
        continue;
      }
      failed.push_back(std::move(it->second.done));
      it = pending_writes_.erase(it);
    }
  }
  for (WriteCallback& done : failed) {
    RunOnApplyThread([done = std::move(done), status] { done(status); });
  }
}

// The state is committed (durably) before the log's reset is written: the
// Raft loop holds the reset and every later log write until this reports
// back. A failed commit leaves them held: the member stops, its log intact.
void NodeImpl::InstallStaged(InstallSnapshot install) {
  std::optional<raft::Membership> before = AppliedMembership();
  absl::Status committed = install.sink->Commit();
  if (!committed.ok()) return FailStorage(committed);
  Count("node.snapshots_received");
  Log(LogLevel::kInfo, absl::StrCat("installed snapshot at index ",
                                    install.meta.index));
  applied_ = sm_->AppliedIndex();
  last_compacted_ = install.meta.index;
  RequestCompaction(0);
  asio::post(loop_, [this, meta = install.meta, number = install.number] {
    if (closing_) return;
    installs_done_ = std::max(installs_done_, number);
    ReleaseHeldLogWrites();
    core_->ReportSnapshotInstalled(meta);
    ProcessReady();
  });
  RefreshPeers(before ? &*before : nullptr);
  ServeReadsUpTo(applied_);
  watch_hub_->NotifyRevision();
}

void NodeImpl::ServeReadsUpTo(raft::Index applied) {
  while (!waiting_reads_.empty() && waiting_reads_.begin()->first <= applied) {
    std::function<void()> read = std::move(waiting_reads_.begin()->second);
    waiting_reads_.erase(waiting_reads_.begin());
    read();
  }
}

void NodeImpl::AddWaitingRead(raft::Index index, std::function<void()> read) {
  RunOnApplyThread([this, index, read = std::move(read)]() mutable {
    if (index <= applied_) return read();
    waiting_reads_.emplace(index, std::move(read));
  });
}

void NodeImpl::MaybeCompactLog(raft::Index applied) {
  const uint64_t keep = options_.log_keep_entries;
  if (applied < last_compacted_ + keep + options_.log_compact_every) return;
  // A follower installing a snapshot continues from the log right after
  // it; compacting that away would send it another snapshot.
  const raft::Index through = std::min(applied - keep, SnapshotFloor());
  if (through <= last_compacted_) return;
  last_compacted_ = through;
  RequestCompaction(last_compacted_);
}

void NodeImpl::RequestCompaction(raft::Index through) {
  {
    common::MutexLock lock(&compact_mu_);
    compact_through_ = std::max(compact_through_, through);
    sweep_requested_ = true;
  }
  compact_cv_.Signal();
}

void NodeImpl::CompactionLoop() {
  compact_mu_.Lock();
  while (true) {
    while (!compact_stop_ && !sweep_requested_) compact_cv_.Wait(&compact_mu_);
    if (compact_stop_) break;
    const raft::Index through = std::exchange(compact_through_, 0);
    sweep_requested_ = false;
    compact_mu_.Unlock();
    if (through > 0) {
      // The state's last commit may not be durable yet; the log must still
      // hold whatever a system crash could undo.
      absl::Status s = sm_->Sync();
      if (s.ok()) s = log_->CompactPrefix(through);
      if (!s.ok() && !absl::IsInvalidArgument(s)) {
        Log(LogLevel::kWarning, absl::StrCat("log compaction through ", through,
                                             " failed: ", s.ToString()));
      }
    }
    DropUnreferencedLogValues();
    compact_mu_.Lock();
  }
  compact_mu_.Unlock();
}

void NodeImpl::StopCompaction() {
  {
    common::MutexLock lock(&compact_mu_);
    compact_stop_ = true;
  }
  compact_cv_.SignalAll();
  if (compact_thread_.joinable()) compact_thread_.join();
}

// Retained entries below the log hold values of keys that may since have
// changed. An entry the current state no longer refers to is never needed
// again (later states only refer to newer entries), unless a snapshot
// source opened on an older state is still streaming it; so the sweep waits
// for open sources to close (a finished stream asks for it again). Applies
// may run meanwhile: the retained list is read before the references, so an
// entry a newer state refers to already shows there. Open sources are
// counted again after the references are read: one opened in between may
// hold an older state; one opened later holds this state or a newer one.
void NodeImpl::DropUnreferencedLogValues() {
  raft::Index after = 0;
  while (true) {
    absl::StatusOr<raft::Index> next = DropUnreferencedLogValuesAfter(after);
    if (!next.ok()) {
      Log(LogLevel::kWarning, absl::StrCat("dropping log entries of replaced "
                                           "values failed: ",
                                           next.status().ToString()));
      return;
    }
    if (*next == after) return;
    after = *next;
  }
}

// One page of the sweep: retained entries above `after`, at most
// kSweepPageEntries of them. Returns where the next page starts (`after`
// itself when the sweep is done or must wait).
absl::StatusOr<raft::Index> NodeImpl::DropUnreferencedLogValuesAfter(
    raft::Index after) {
  if (sm_->OpenSnapshotCount() > 0) return after;
  CONFMAN_ASSIGN_OR_RETURN(std::vector<raft::Index> retained,
                           log_->RetainedIndexes(after, kSweepPageEntries));
  if (retained.empty()) return after;
  CONFMAN_ASSIGN_OR_RETURN(
      std::vector<raft::Index> referenced,
      sm_->ReferencedLogEntries(retained.front(), retained.back()));
  if (sm_->OpenSnapshotCount() > 0) return after;
  std::vector<raft::Index> unreferenced;
  std::set_difference(retained.begin(), retained.end(), referenced.begin(),
                      referenced.end(), std::back_inserter(unreferenced));
  if (!unreferenced.empty()) {
    // The state version read above must survive a system crash before the
    // entries it no longer needs are gone.
    CONFMAN_RETURN_IF_ERROR(sm_->Sync());
    CONFMAN_RETURN_IF_ERROR(log_->DropRetained(std::move(unreferenced)));
  }
  return retained.back();
}

// The membership the state has applied; nullopt (logged) if the state
// cannot say, in which case peers are only ever added, never removed.
std::optional<raft::Membership> NodeImpl::AppliedMembership() {
  absl::StatusOr<AppliedState> info = sm_->BootInfo();
  if (info.ok()) return info->membership;
  Log(LogLevel::kWarning, absl::StrCat("cannot read the applied membership: ",
                                       info.status().ToString()));
  return std::nullopt;
}

void NodeImpl::RefreshPeers(const raft::Membership* previous) {
  absl::StatusOr<kv::ListPage> page =
      sm_->List(kv::ListRequest{.ns = kMembersNamespace, .limit = 10000});
  if (!page.ok()) {
    Log(LogLevel::kWarning, absl::StrCat("cannot read member addresses: ",
                                         page.status().ToString()));
  } else {
    for (const kv::KeyValue& kv : page->items) {
      raft::MemberId id = 0;
      std::from_chars(kv.key.data(), kv.key.data() + kv.key.size(), id);
      if (id == raft::kNoMember || id == id_ || AddressOf(id) == kv.value) continue;
      if (absl::Status added = transport_->AddPeer(id, kv.value); !added.ok()) {
        Log(LogLevel::kWarning,
            absl::StrCat("cannot reach member ", id, " at ", kv.value, ": ",
                         added.ToString()));
        continue;
      }
      common::MutexLock lock(&peers_mu_);
      addresses_[id] = kv.value;
    }
  }
  if (previous == nullptr) return;
  const std::optional<raft::Membership> now = AppliedMembership();
  if (!now) return;
  for (const auto* list : {&previous->voters, &previous->voters_outgoing,
                           &previous->learners}) {
    for (raft::MemberId id : *list) {
      if (id != id_ && !raft::IsMember(*now, id)) transport_->RemovePeer(id);
    }
  }
}

}  // namespace confman::node_internal
