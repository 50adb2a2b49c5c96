// The core's view of its log: the durable LogReader plus the entries that
// were accepted but not yet reported durable.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "confman/raft/log_reader.h"
#include "confman/raft/types.h"

namespace confman::raft {

// Entries at or after `unstable_offset()` are answered from memory, earlier
// ones from the durable log. Storage may still hold stale entries past a
// truncation point until the driver writes the replacement; they are never
// consulted because the unstable entries shadow them.
class RaftLog {
 public:
  explicit RaftLog(const LogReader* durable);

  Index FirstIndex() const;
  Index LastIndex() const;
  Term LastTerm() const;
  absl::StatusOr<Term> TermAt(Index index) const;
  // Like LogReader::Entries over the merged view; at most `max_entries`.
  absl::StatusOr<std::vector<Entry>> Entries(Index lo, Index hi,
                                             uint64_t max_bytes,
                                             uint32_t max_entries) const;
  // Whether the entry at `index` exists and has term `term`; an index
  // outside the log is simply no match, any other read failure an error.
  absl::StatusOr<bool> Matches(Index index, Term term) const;

  // Appends entries that follow LastIndex() or replace the suffix starting
  // at entries.front().index, which must lie after the compaction point
  // (callers never rewrite committed entries, and only committed entries
  // are compacted).
  void Append(std::vector<Entry> entries);

  // Entries handed to the driver for writing are tracked so each is emitted
  // once; TakeUnemitted returns the rest.
  std::vector<Entry> TakeUnemitted();
  bool HasUnemitted() const { return emitted_through_ < LastIndex(); }

  // The storage reports `index`/`term` durable. Returns true if that
  // matched an unstable entry (the report is current, not superseded).
  bool MarkDurable(Index index, Term term);

  // Replaces everything with the empty log that follows `meta`, pending the
  // driver's install.
  void RestoreSnapshot(const SnapshotMeta& meta);
  void SnapshotInstalled();
  const std::optional<SnapshotMeta>& pending_snapshot() const {
    return pending_snapshot_;
  }

  Index durable_index() const { return durable_index_; }
  Index unstable_offset() const { return offset_; }
  const std::deque<Entry>& unstable() const { return unstable_; }

 private:
  const LogReader* durable_;
  // Invariant: unstable_[i].index == offset_ + i.
  Index offset_;
  std::deque<Entry> unstable_;
  // Invariant: offset_ - 1 <= emitted_through_ <= LastIndex().
  Index emitted_through_;
  // Highest index known durable and consistent with this log.
  // Invariant: durable_index_ <= LastIndex().
  Index durable_index_;
  // Set between accepting a snapshot and the driver installing it; while
  // set, nothing at or before its index may be read from `durable_`.
  std::optional<SnapshotMeta> pending_snapshot_;
};

}  // namespace confman::raft
