// MemoryLog: a LogReader kept entirely in memory, with the writes a
// driver performs (append, compact, reset to a snapshot). Used by tests,
// the simulator and hosts that need no durability.
#include "confman/raft/memory_log.h"

#include "absl/strings/str_cat.h"

namespace confman::raft {

absl::StatusOr<Term> MemoryLog::TermAt(Index index) const {
  if (index == compacted_index_) return compacted_term_;
  if (index < compacted_index_ || index > LastIndex()) {
    return absl::OutOfRangeError(absl::StrCat(
        "log index ", index, " is outside the stored range [",
        compacted_index_, ", ", LastIndex(), "]"));
  }
  return entries_[index - compacted_index_ - 1].term;
}

absl::StatusOr<std::vector<Entry>> MemoryLog::Entries(Index lo, Index hi,
                                                      uint64_t max_bytes) const {
  if (lo < FirstIndex() || hi > LastIndex() + 1 || lo > hi) {
    return absl::OutOfRangeError(absl::StrCat(
        "log range [", lo, ", ", hi, ") is outside the stored range [",
        FirstIndex(), ", ", LastIndex() + 1, ")"));
  }
  std::vector<Entry> out;
  uint64_t bytes = 0;
  for (Index i = lo; i < hi; ++i) {
    const Entry& e = entries_[i - compacted_index_ - 1];
    if (!out.empty() && bytes + e.data.size() > max_bytes) break;
    bytes += e.data.size();
    out.push_back(e);
  }
  return out;
}

absl::Status MemoryLog::CheckAppend(const std::vector<Entry>& entries) const {
  if (entries.empty()) return absl::OkStatus();
  const Index first = entries.front().index;
  if (first <= compacted_index_ || first > LastIndex() + 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "append at index ", first, " would leave a gap or rewrite compacted "
        "entries; the log holds [", FirstIndex(), ", ", LastIndex(), "]"));
  }
  for (size_t i = 1; i < entries.size(); ++i) {
    if (entries[i].index != first + i) {
      return absl::InvalidArgumentError(
          absl::StrCat("appended entries are not consecutive at index ",
                       entries[i].index));
    }
  }
  return absl::OkStatus();
}

absl::Status MemoryLog::Append(const std::vector<Entry>& entries) {
  if (absl::Status s = CheckAppend(entries); !s.ok()) return s;
  if (entries.empty()) return absl::OkStatus();
  const Index first = entries.front().index;
  entries_.resize(first - compacted_index_ - 1);
  entries_.insert(entries_.end(), entries.begin(), entries.end());
  return absl::OkStatus();
}

absl::Status MemoryLog::Compact(Index index) {
  if (index <= compacted_index_) return absl::OkStatus();
  if (index > LastIndex()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot compact through index ", index, ": the log ends at ",
        LastIndex()));
  }
  compacted_term_ = entries_[index - compacted_index_ - 1].term;
  entries_.erase(entries_.begin(),
                 entries_.begin() + (index - compacted_index_));
  compacted_index_ = index;
  return absl::OkStatus();
}

void MemoryLog::ResetToSnapshot(Index index, Term term) {
  entries_.clear();
  compacted_index_ = index;
  compacted_term_ = term;
}

}  // namespace confman::raft
