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
// ones from the durable log, except the durable entries not yet handed out
// for applying: those stay in memory too (`durable_tail`), because the
// driver is about to apply them and, on a leader, to send them to a
// follower that is a little behind. Their payloads are shared with the
// copies already handed out (payload.h), so keeping them costs no copy;
// it saves reading each entry back from storage and checking it again.
// Storage may still hold stale entries past a truncation point until the
// driver writes the replacement; they are never consulted because the
// unstable entries shadow them. Likewise, after a
// reset to a snapshot, storage holds the old log until the driver's write
// of the reset is durable; until then only the snapshot's own index is
// answered below the unstable entries, from the snapshot's metadata.
class RaftLog {
 public:
  // Keeps at most `durable_tail_bytes` of entry data in durable_tail().
  RaftLog(const LogReader* durable, uint64_t durable_tail_bytes);

  Index FirstIndex() const;
  Index LastIndex() const;
  Term LastTerm() const;
  [[nodiscard]] absl::StatusOr<Term> TermAt(Index index) const;
  // Like LogReader::Entries over the merged view; at most `max_entries`.
  [[nodiscard]] absl::StatusOr<std::vector<Entry>> Entries(
      Index lo, Index hi, uint64_t max_bytes, uint32_t max_entries) const;
  // Whether the entry at `index` exists and has term `term`; an index
  // outside the log is simply no match, any other read failure an error.
  [[nodiscard]] absl::StatusOr<bool> Matches(Index index, Term term) const;

  // Appends entries that follow LastIndex() or replace the suffix starting
  // at entries.front().index, which must lie after the compaction point
  // (callers never rewrite committed entries, and only committed entries
  // are compacted).
  void Append(std::vector<Entry> entries);

  // Entries handed to the driver for writing are tracked so each is emitted
  // once; TakeUnemitted returns the rest.
  std::vector<Entry> TakeUnemitted();
  bool HasUnemitted() const { return emitted_through_ < LastIndex(); }

  // The storage reports a write durable whose last entry is `index`/`term`
  // (or, for a write holding only a reset, the reset's snapshot point).
  // Returns true if the report is current: it names an emitted entry this
  // log still holds, or the pending reset. A report for anything else was
  // superseded by a later truncation or reset and changes nothing.
  bool MarkDurable(Index index, Term term);
  // Entries through `index` have been handed out for applying: the log no
  // longer keeps them in memory once they are durable, except the last.
  void ReleaseThrough(Index index);

  // Replaces everything with the empty log that follows `meta`. The reset
  // is written ahead of the entries emitted after it (the driver puts it at
  // the head of the same Ready's log write); until a write at or after it
  // is reported durable, `unsynced_reset()` holds it.
  void Reset(const SnapshotMeta& meta);
  const std::optional<SnapshotMeta>& unsynced_reset() const {
    return unsynced_reset_;
  }
  Index emitted_through() const { return emitted_through_; }

  Index durable_index() const { return durable_index_; }
  Index unstable_offset() const { return offset_; }
  const std::deque<Entry>& unstable() const { return unstable_; }
  const std::deque<Entry>& durable_tail() const { return durable_tail_; }

 private:
  // Whether [lo, hi) lies inside durable_tail_ and inside the log's bounds.
  bool InDurableTail(Index lo, Index hi) const;
  void PopDurableTailFront();
  void ClearDurableTail();

  const LogReader* durable_;
  // Invariant: unstable_[i].index == offset_ + i.
  Index offset_;
  std::deque<Entry> unstable_;
  // Invariant: offset_ - 1 <= emitted_through_ <= LastIndex().
  Index emitted_through_;
  // Highest index known durable and consistent with this log.
  // Invariant: durable_index_ <= emitted_through_ <= LastIndex().
  Index durable_index_;
  // A reset not yet known durable: `durable_` may still hold the old log,
  // so nothing at or before its index is read from it.
  // Invariant: if set, offset_ == unsynced_reset_->index + 1 (entries only
  // leave unstable_ once a write after the reset is durable).
  std::optional<SnapshotMeta> unsynced_reset_;
  // Durable entries just before offset_, from the last released one on:
  // contiguous, the last one at offset_ - 1. Empty while a reset is
  // unsynced.
  std::deque<Entry> durable_tail_;
  uint64_t durable_tail_bytes_ = 0;
  const uint64_t max_durable_tail_bytes_;
  // Highest index handed out for applying (ReleaseThrough).
  Index released_through_ = 0;
};

}  // namespace confman::raft
