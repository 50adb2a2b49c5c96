// Log retention (log_retention.h): compaction of the Raft log behind the
// applied index, and the sweep of retained entries whose values no state
// refers to any more, on the confman-compact thread.
#include "log_retention.h"

#include <pthread.h>

#include <algorithm>
#include <iterator>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "confman/status_macros.h"

namespace confman::node_internal {
namespace {

// Retained entries examined per step of the sweep of replaced values, which
// bounds its memory whatever the number of large values stored.
constexpr size_t kSweepPageEntries = 4096;

}  // namespace

LogRetention::LogRetention(LogStore& log, StateMachine& state,
                           const LogEntryReferences& references,
                           Options options, LogLine log_line,
                           SnapshotFloor snapshot_floor)
    : log_(log),
      state_(state),
      references_(references),
      options_(options),
      log_line_(std::move(log_line)),
      snapshot_floor_(std::move(snapshot_floor)) {}

LogRetention::~LogRetention() { Stop(); }

void LogRetention::Start() {
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "confman-compact");
    Loop();
  });
}

void LogRetention::Stop() {
  {
    common::MutexLock lock(&mu_);
    stop_ = true;
  }
  cv_.SignalAll();
  if (thread_.joinable()) thread_.join();
}

void LogRetention::CompactedThrough(raft::Index index) {
  last_compaction_requested_ = index;
}

void LogRetention::SnapshotInstalled(raft::Index index) {
  last_compaction_requested_ = index;
  Request(0);
}

void LogRetention::Applied(raft::Index applied) {
  const uint64_t keep = options_.keep_entries;
  if (applied < last_compaction_requested_ + keep + options_.compact_every) {
    return;
  }
  // A follower installing a snapshot continues from the log right after
  // it; compacting that away would send it another snapshot.
  const raft::Index through = std::min(applied - keep, snapshot_floor_());
  if (through <= last_compaction_requested_) return;
  last_compaction_requested_ = through;
  Request(last_compaction_requested_);
}

void LogRetention::RequestSweep() { Request(0); }

void LogRetention::Request(raft::Index through) {
  {
    common::MutexLock lock(&mu_);
    compact_through_ = std::max(compact_through_, through);
    sweep_requested_ = true;
  }
  cv_.Signal();
}

void LogRetention::Loop() {
  mu_.Lock();
  while (true) {
    while (!stop_ && !sweep_requested_) cv_.Wait(&mu_);
    if (stop_) break;
    const raft::Index through = std::exchange(compact_through_, 0);
    sweep_requested_ = false;
    mu_.Unlock();
    if (through > 0) {
      // The state's last commit may not be durable yet; the log must still
      // hold whatever a system crash could undo.
      absl::Status s = state_.Sync();
      if (s.ok()) s = log_.CompactPrefix(through);
      if (!s.ok() && !absl::IsInvalidArgument(s)) {
        log_line_(LogLevel::kWarning,
                  absl::StrCat("log compaction through ", through,
                               " failed: ", s.ToString()));
      }
    }
    DropUnreferencedValues();
    mu_.Lock();
  }
  mu_.Unlock();
}

void LogRetention::SweepNow() { DropUnreferencedValues(); }

// Retained entries below the log hold values of keys that may since have
// changed. An entry the current state no longer refers to is never needed
// again (later states only refer to newer entries), unless a snapshot
// source opened on an older state is still streaming it; so the sweep waits
// for open sources to close (a finished stream asks for it again). Applies
// may run meanwhile: the retained list is read before the references, so an
// entry a newer state refers to already shows there. Open sources are
// counted again after the references are read: one opened in between may
// hold an older state; one opened later holds this state or a newer one.
void LogRetention::DropUnreferencedValues() {
  raft::Index after = 0;
  while (true) {
    absl::StatusOr<raft::Index> next = DropUnreferencedValuesAfter(after);
    if (!next.ok()) {
      log_line_(LogLevel::kWarning, absl::StrCat("dropping log entries of replaced "
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
absl::StatusOr<raft::Index> LogRetention::DropUnreferencedValuesAfter(
    raft::Index after) {
  if (references_.OpenSnapshotCount() > 0) return after;
  CONFMAN_ASSIGN_OR_RETURN(std::vector<raft::Index> retained,
                           log_.RetainedIndexes(after, kSweepPageEntries));
  if (retained.empty()) return after;
  CONFMAN_ASSIGN_OR_RETURN(
      std::vector<raft::Index> referenced,
      references_.ReferencedLogEntries(retained.front(), retained.back()));
  if (references_.OpenSnapshotCount() > 0) return after;
  std::vector<raft::Index> unreferenced;
  std::set_difference(retained.begin(), retained.end(), referenced.begin(),
                      referenced.end(), std::back_inserter(unreferenced));
  if (!unreferenced.empty()) {
    // The state version read above must survive a system crash before the
    // entries it no longer needs are gone.
    CONFMAN_RETURN_IF_ERROR(state_.Sync());
    CONFMAN_RETURN_IF_ERROR(log_.DropRetained(std::move(unreferenced)));
  }
  return retained.back();
}

}  // namespace confman::node_internal
