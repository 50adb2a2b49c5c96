// An in-memory LogReader with the write operations a driver performs.
//
// The reference implementation of the log the core reads: the simulator and
// unit tests drive the core over it, and confman's in-memory LogStore is
// built on it. Not thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "confman/raft/log_reader.h"
#include "confman/raft/types.h"

namespace confman::raft {

class MemoryLog final : public LogReader {
 public:
  MemoryLog() = default;

  Index FirstIndex() const override { return compacted_index_ + 1; }
  Index LastIndex() const override { return compacted_index_ + entries_.size(); }
  [[nodiscard]] absl::StatusOr<Term> TermAt(Index index) const override;
  [[nodiscard]] absl::StatusOr<std::vector<Entry>> Entries(Index lo, Index hi,
                                             uint64_t max_bytes) const override;

  // Writes `entries` (consecutive indexes), first discarding any stored
  // entry at or after entries.front().index. InvalidArgument if that would
  // leave a gap or reach into the compacted prefix.
  [[nodiscard]] absl::Status Append(const std::vector<Entry>& entries);
  // Append's checks alone: OK if Append would accept `entries`.
  [[nodiscard]] absl::Status CheckAppend(const std::vector<Entry>& entries) const;

  // Drops every entry through `index` (which must be <= LastIndex());
  // TermAt(index) keeps answering. Compacting at or below the current
  // compaction point is a no-op.
  [[nodiscard]] absl::Status Compact(Index index);

  // Replaces the whole log with the empty log that follows a snapshot.
  void ResetToSnapshot(Index index, Term term);

  const HardState& hard_state() const { return hard_state_; }
  void set_hard_state(const HardState& hard_state) { hard_state_ = hard_state; }

 private:
  HardState hard_state_;
  Index compacted_index_ = 0;
  Term compacted_term_ = 0;
  // Invariant: entries_[i].index == compacted_index_ + 1 + i.
  std::deque<Entry> entries_;
};

}  // namespace confman::raft
