// The apply window: the bounded hand-out of committed entries to the
// driver's state machine.
//
// Committed entries that are durable locally move from the log into
// committed_to_emit_ (the queue the next Ready returns as
// committed_entries). Two budgets limit that move, in entry data bytes:
//   - per Ready, CoreOptions::max_apply_bytes, so one Ready never carries
//     an unbounded batch;
//   - across Readies, CoreOptions::max_unapplied_bytes (when non-zero):
//     bytes queued or handed out that the driver has not yet confirmed
//     through ReportApplied. A state machine slower than the log then
//     leaves committed entries in the log instead of in memory.
// Either budget admits any single entry while it is empty, so an entry
// larger than a budget still goes out, alone, and never stalls the log.
//
// Queuing an entry is also the moment a membership entry takes effect in
// the core (ApplyMembershipEntry), which is why queuing stops while a
// snapshot install is outstanding or the log store has failed: the state
// machine and the configuration must not run ahead of what is installed.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core_impl.h"

namespace confman::raft {

void CoreImpl::ReportApplied(Index index) {
  if (index <= reported_applied_index_ || index > handed_out_index_) return;
  reported_applied_index_ = index;
  while (!unapplied_entries_.empty() &&
         unapplied_entries_.front().first <= index) {
    unapplied_bytes_ -= unapplied_entries_.front().second;
    unapplied_entries_.pop_front();
  }
  AfterInput();
}

void CoreImpl::AdvanceApply() {
  if (pending_install_ || !storage_error_.ok()) return;
  const Index limit = std::min(commit_, log_.durable_index());
  // ApplyRoomFor(1): both budgets have at least a byte left.
  while (queued_index_ < limit && ApplyRoomFor(1)) {
    auto entries =
        log_.Entries(queued_index_ + 1, limit + 1, ApplyFetchBudget(),
                     options_.max_append_entries);
    if (!entries.ok()) return FailStorage(entries.status());
    if (entries->empty()) return;
    for (Entry& e : *entries) {
      if (!ApplyRoomFor(e.data.size())) return MaybeLeaveJoint();
      queued_index_ = e.index;
      if (e.type == EntryType::kMembership) ApplyMembershipEntry(e);
      ChargeApplyWindow(e);
      committed_to_emit_bytes_ += e.data.size();
      committed_to_emit_.push_back(std::move(e));
    }
    log_.ReleaseThrough(queued_index_);
  }
  MaybeLeaveJoint();
}

// Both the per-Ready batch and the apply window admit any entry while they
// are empty, so an entry larger than either still goes out alone.
bool CoreImpl::ApplyRoomFor(uint64_t bytes) const {
  const bool batch_fits =
      committed_to_emit_.empty() ||
      committed_to_emit_bytes_ + bytes <= options_.max_apply_bytes;
  const uint64_t window = options_.max_unapplied_bytes;
  const bool window_fits = window == 0 || unapplied_bytes_ == 0 ||
                           unapplied_bytes_ + bytes <= window;
  return batch_fits && window_fits;
}

// Only called while ApplyRoomFor(1) holds, so neither difference wraps.
uint64_t CoreImpl::ApplyFetchBudget() const {
  uint64_t budget = options_.max_apply_bytes - committed_to_emit_bytes_;
  if (options_.max_unapplied_bytes != 0) {
    budget = std::min(budget, options_.max_unapplied_bytes - unapplied_bytes_);
  }
  return budget;
}

void CoreImpl::ChargeApplyWindow(const Entry& entry) {
  if (options_.max_unapplied_bytes == 0 || entry.data.empty()) return;
  unapplied_entries_.emplace_back(entry.index, entry.data.size());
  unapplied_bytes_ += entry.data.size();
}

// The state machine's state now reflects everything through `index`.
void CoreImpl::ResetApplyWindow(Index index) {
  unapplied_entries_.clear();
  unapplied_bytes_ = 0;
  handed_out_index_ = index;
  reported_applied_index_ = index;
}

// Empty when the apply window's bookkeeping is consistent.
std::string CoreImpl::CheckApplyWindow() const {
  if (reported_applied_index_ > handed_out_index_ ||
      handed_out_index_ > queued_index_) {
    return absl::StrCat("reported applied ", reported_applied_index_,
                        ", handed out ", handed_out_index_, ", queued ",
                        queued_index_, " out of order");
  }
  const uint64_t window = options_.max_unapplied_bytes;
  if (window != 0 && unapplied_entries_.size() > 1 &&
      unapplied_bytes_ > window) {
    return absl::StrCat(unapplied_bytes_,
                        " unapplied bytes exceed the window of ", window);
  }
  if (!unapplied_entries_.empty() &&
      unapplied_entries_.front().first <= reported_applied_index_) {
    return absl::StrCat("entry ", unapplied_entries_.front().first,
                        " still charged to the apply window after being "
                        "reported applied");
  }
  return {};
}

}  // namespace confman::raft
