// The apply thread: applies committed entries in order, completes the
// writes waiting for them, serves reads whose read index is applied, and
// runs every user callback, so neither the Raft loop nor the transport
// ever waits on host code. Log compaction and the sweep of retained values
// run beside it (log_retention.cc); peer addresses are refreshed from the
// applied state in node_peers.cc.
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "confman/kv/command.h"
#include "confman/status_macros.h"
#include "confman/testing/node_faults.h"
#include "node_impl.h"

namespace confman::node_internal {

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
                               testing::NodeTestingFault::kSkipApplies)) {
    SkipAppliesForTesting(entries);
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
    ProcessReadySoon();
  });
  ServeReadsUpTo(applied_);
  watch_hub_->NotifyRevision();
  if (membership_changed) RefreshPeers(before ? &*before : nullptr);
  retention_->Applied(applied_);
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

// TEST ONLY (NodeTestingFault::kSkipApplies). The skipped entry's bytes
// are replaced by an undecodable command, which the state machine applies
// as a no-op (InvalidArgument outcome): the index still advances, so only
// this member's state and revisions diverge. Only unconditional puts are
// skipped: a compare-and-set that mismatches or a delete of an absent key
// changes nothing, and skipping it would leave no trace to catch.
void NodeImpl::SkipAppliesForTesting(std::vector<raft::Entry>& entries) {
  for (raft::Entry& entry : entries) {
    if (entry.type != raft::EntryType::kNormal || entry.data.empty()) continue;
    absl::StatusOr<kv::CommandView> command = kv::DecodeCommand(entry.data);
    if (!command.ok() || command->kind != kv::Command::Kind::kPut ||
        command->expected_revision ||
        command->ns.rfind(kReservedPrefix, 0) == 0) {
      continue;
    }
    if (++testing_host_puts_applied_ % testing::kSkipApplyInterval == 0) {
      Log(LogLevel::kWarning,
          absl::StrCat("TESTING FAULT: not applying entry ", entry.index));
      entry.data.clear();
    }
  }
}

void NodeImpl::FailPendingWrites(const absl::Status& status,
                                 bool only_expired) {
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
  Log(LogLevel::kInfo,
      absl::StrCat("installed snapshot at index ", install.meta.index));
  applied_ = sm_->AppliedIndex();
  retention_->SnapshotInstalled(install.meta.index);
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

}  // namespace confman::node_internal
