// RaftLog (raft_log.h): the durable log the driver stores, overlaid with
// the entries appended since that the driver has not yet reported
// durable, and the bookkeeping of what Ready has handed out for writing.
// Entries leave unstable_ for durable_tail_ when they are reported durable
// and leave durable_tail_ when they are released for applying; a
// truncation or a reset drops whatever it replaces from both.
#include "raft_log.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace confman::raft {

RaftLog::RaftLog(const LogReader* durable, uint64_t durable_tail_bytes)
    : durable_(durable),
      offset_(durable->LastIndex() + 1),
      emitted_through_(durable->LastIndex()),
      durable_index_(durable->LastIndex()),
      max_durable_tail_bytes_(durable_tail_bytes) {}

Index RaftLog::FirstIndex() const {
  if (unsynced_reset_) return unsynced_reset_->index + 1;
  return durable_->FirstIndex();
}

Index RaftLog::LastIndex() const {
  if (!unstable_.empty()) return unstable_.back().index;
  return offset_ - 1;
}

Term RaftLog::LastTerm() const {
  auto term = TermAt(LastIndex());
  return term.ok() ? *term : 0;
}

absl::StatusOr<Term> RaftLog::TermAt(Index index) const {
  if (index >= offset_) {
    if (index - offset_ >= unstable_.size()) {
      return absl::OutOfRangeError(
          absl::StrCat("index ", index, " is past the log's end"));
    }
    return unstable_[index - offset_].term;
  }
  if (unsynced_reset_) {
    if (index == unsynced_reset_->index) return unsynced_reset_->term;
    return absl::OutOfRangeError(
        absl::StrCat("index ", index,
                     " precedes the snapshot the log was "
                     "reset to"));
  }
  if (InDurableTail(index, index + 1)) {
    return durable_tail_[index - durable_tail_.front().index].term;
  }
  return durable_->TermAt(index);
}

absl::StatusOr<bool> RaftLog::Matches(Index index, Term term) const {
  auto t = TermAt(index);
  if (absl::IsOutOfRange(t.status())) return false;
  if (!t.ok()) return t.status();
  return *t == term;
}

absl::StatusOr<std::vector<Entry>> RaftLog::Entries(
    Index lo, Index hi, uint64_t max_bytes, uint32_t max_entries) const {
  std::vector<Entry> out;
  hi = std::min({hi, LastIndex() + 1, lo + max_entries});
  if (lo >= hi) return out;
  uint64_t bytes = 0;
  if (lo < offset_ && InDurableTail(lo, std::min(hi, offset_))) {
    const Index tail_first = durable_tail_.front().index;
    for (Index i = lo; i < std::min(hi, offset_); ++i) {
      const Entry& e = durable_tail_[i - tail_first];
      if (!out.empty() && bytes + e.data.size() > max_bytes) return out;
      bytes += e.data.size();
      out.push_back(e);
    }
  } else if (lo < offset_) {
    if (unsynced_reset_) {
      return absl::OutOfRangeError(
          absl::StrCat("index ", lo,
                       " precedes the snapshot the log was "
                       "reset to"));
    }
    auto stored = durable_->Entries(lo, std::min(hi, offset_), max_bytes);
    if (!stored.ok()) return stored.status();
    out = std::move(*stored);
    for (const Entry& e : out) bytes += e.data.size();
    const bool complete =
        !out.empty() && out.back().index + 1 == std::min(hi, offset_);
    if (!complete) return out;
  }
  for (Index i = std::max(lo, offset_); i < hi; ++i) {
    const Entry& e = unstable_[i - offset_];
    if (!out.empty() && bytes + e.data.size() > max_bytes) break;
    bytes += e.data.size();
    out.push_back(e);
  }
  return out;
}

void RaftLog::Append(std::vector<Entry> entries) {
  if (entries.empty()) return;
  const Index first = entries.front().index;
  if (first < offset_) {
    // Replacing entries that were already handed to storage: everything
    // from `first` on is now answered from memory.
    unstable_.clear();
    offset_ = first;
    while (!durable_tail_.empty() && durable_tail_.back().index >= first) {
      durable_tail_bytes_ -= durable_tail_.back().data.size();
      durable_tail_.pop_back();
    }
  } else {
    unstable_.resize(first - offset_);
  }
  durable_index_ = std::min(durable_index_, first - 1);
  emitted_through_ = std::min(emitted_through_, first - 1);
  for (Entry& e : entries) unstable_.push_back(std::move(e));
}

std::vector<Entry> RaftLog::TakeUnemitted() {
  std::vector<Entry> out;
  for (Index i = emitted_through_ + 1; i <= LastIndex(); ++i) {
    out.push_back(unstable_[i - offset_]);
  }
  emitted_through_ = LastIndex();
  return out;
}

bool RaftLog::MarkDurable(Index index, Term term) {
  // Entries not emitted since the last truncation or reset cannot have
  // been written: the report is about their predecessors.
  if (index > emitted_through_) return false;
  if (unsynced_reset_ && index == unsynced_reset_->index &&
      term == unsynced_reset_->term) {
    unsynced_reset_.reset();
    durable_index_ = std::max(durable_index_, index);
    return true;
  }
  if (index < offset_ || unstable_[index - offset_].term != term) return false;
  // The write that made `index` durable also wrote everything before it,
  // the reset included.
  const Index drop = index - offset_ + 1;
  if (!durable_tail_.empty() && durable_tail_.back().index + 1 != offset_) {
    ClearDurableTail();
  }
  for (size_t i = 0; i < drop; ++i) {
    if (unstable_[i].index >= released_through_) {
      durable_tail_bytes_ += unstable_[i].data.size();
      durable_tail_.push_back(std::move(unstable_[i]));
    }
  }
  while (durable_tail_bytes_ > max_durable_tail_bytes_) PopDurableTailFront();
  unstable_.erase(unstable_.begin(), unstable_.begin() + drop);
  offset_ = index + 1;
  durable_index_ = std::max(durable_index_, index);
  unsynced_reset_.reset();
  return true;
}

void RaftLog::ReleaseThrough(Index index) {
  released_through_ = std::max(released_through_, index);
  // The last released entry stays: the next append to a follower that is
  // caught up names it as its predecessor, and asks for its term.
  while (durable_tail_.size() > 1 &&
         durable_tail_.front().index < released_through_) {
    PopDurableTailFront();
  }
}

void RaftLog::PopDurableTailFront() {
  durable_tail_bytes_ -= durable_tail_.front().data.size();
  durable_tail_.pop_front();
}

void RaftLog::ClearDurableTail() {
  durable_tail_.clear();
  durable_tail_bytes_ = 0;
}

bool RaftLog::InDurableTail(Index lo, Index hi) const {
  if (durable_tail_.empty() || unsynced_reset_ || lo >= hi) return false;
  // Below the durable log's first index the answer must stay "compacted",
  // whatever memory still holds.
  return lo >= durable_tail_.front().index && lo >= FirstIndex() &&
         hi - 1 <= durable_tail_.back().index;
}

void RaftLog::Reset(const SnapshotMeta& meta) {
  unsynced_reset_ = meta;
  unstable_.clear();
  ClearDurableTail();
  offset_ = meta.index + 1;
  emitted_through_ = meta.index;
  durable_index_ = std::min(durable_index_, meta.index);
}

}  // namespace confman::raft
