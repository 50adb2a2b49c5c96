// confman::LogStore — the durable Raft log: entries plus the hard state.
//
// A LogStore is the raft::LogReader the core reads, plus the writes a driver
// performs on a Ready batch (core.h, step 3). This header holds the
// interface and the types every implementation shares. Implementations:
//
//   MemoryLogStore  (storage/memory.h) raft::MemoryLog behind a mutex.
//                   "Durable" means "in this process's memory"; for tests
//                   and the simulator.
//   LmdbLogStore    (storage/lmdb.h) its own LMDB environment; a writer
//                   thread group-commits everything queued since its last
//                   commit in one transaction (one durable commit per
//                   group, no flush interval to tune).
//   FaultInjectingLogStore  (testing/fault_injecting_log_store.h) wraps
//                   another store and fails operations on demand.
//
// Status codes returned by every implementation:
//   InvalidArgument     the write itself is malformed: entries not
//                       consecutive, a gap after the last entry, or a write
//                       into the compacted prefix. The store is unchanged
//                       and keeps working.
//   OutOfRange          a read outside the stored range (see LogReader).
//   DataLoss            a stored entry failed its checksum; the message
//                       names the index. Never served silently.
//   ResourceExhausted   the log cannot grow: its map reached max_map_bytes.
//   FailedPrecondition  the store hit an earlier I/O error and refuses
//                       further writes (reopen it), or it is used in a
//                       process forked after it was opened.
//   Internal            an unexpected LMDB or file-system error (the
//                       message carries LMDB's text).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "confman/entry_archive.h"
#include "confman/raft/log_reader.h"
#include "confman/raft/types.h"

namespace confman {

// Where a write resets the log: the snapshot at (index, term).
struct LogResetPoint {
  raft::Index index = 0;
  raft::Term term = 0;
};

// One Ready's worth of log writes, applied in this order and durable
// atomically:
//   reset       when set, the log first becomes the empty log that follows
//               it, exactly as ResetToSnapshot does;
//   hard_state  when set, replaces the stored one;
//   entries     (consecutive indexes) replace every stored entry at or
//               after entries.front().index — the suffix is truncated, then
//               the entries are appended — exactly like
//               raft::MemoryLog::Append.
struct LogWrite {
  std::optional<LogResetPoint> reset = {};
  std::optional<raft::HardState> hard_state = {};
  std::vector<raft::Entry> entries = {};
};

// Thread safety: Write/WriteSync/CompactPrefix/ResetToSnapshot may be called
// from any thread. The LogReader methods and LoadHardState may run
// concurrently with writes from one other thread (the Raft loop); each call
// sees the log as of some completed write, never a partial one.
//
// Ordering: writes, compactions and resets take effect, and become durable,
// in the order they were submitted. FirstIndex()/LastIndex()/TermAt()
// reflect a write once it is durable, before its callback runs.
class LogStore : public raft::LogReader, public EntryArchive {
 public:
  // Called exactly once per Write with OK once the write is durable, or the
  // reason it was not applied.
  using WriteDone = std::function<void(absl::Status)>;

  ~LogStore() override = default;

  // Queues `write`. `done` runs after the write is durable, in submission
  // order, on a thread the implementation documents (it must not block for
  // long, and must not call WriteSync, CompactPrefix or ResetToSnapshot on
  // the same store: that would deadlock a single writer thread).
  virtual void Write(LogWrite write, WriteDone done) = 0;

  // Queues `write` and waits until it is durable. Same statuses as Write.
  [[nodiscard]] absl::Status WriteSync(LogWrite write);

  // The last durable hard state; a zero HardState for a new log.
  [[nodiscard]] virtual absl::StatusOr<raft::HardState> LoadHardState() const = 0;

  // Drops every entry through `through` (<= LastIndex()) once the writes
  // queued before it are durable. TermAt(through) keeps answering, and
  // FirstIndex() becomes through + 1. At or below the current compaction
  // point it is a no-op. Returns when the compaction is durable;
  // InvalidArgument if `through` > LastIndex().
  [[nodiscard]] virtual absl::Status CompactPrefix(raft::Index through) = 0;

  // Makes the log the empty log that follows a snapshot at (index, term):
  // every entry is dropped, FirstIndex() == index + 1, LastIndex() == index,
  // TermAt(index) == term. The hard state is kept. Ordered and durable like
  // CompactPrefix.
  [[nodiscard]] virtual absl::Status ResetToSnapshot(raft::Index index, raft::Term term) = 0;

  // Retained entries (entry_archive.h). CompactPrefix and ResetToSnapshot
  // keep every entry at or below their index for which RetainsEntry() is
  // true; such entries are invisible to the LogReader methods (which see
  // only [FirstIndex(), LastIndex()]) but ReadEntryData serves them until
  // DropRetained. A reset drops retained-kind entries above its index like
  // any other. Stores that retain nothing keep these defaults.

  // Indexes of the retained entries below FirstIndex() and above `after`,
  // ascending, at most `limit` of them (page through with the last one).
  [[nodiscard]] virtual absl::StatusOr<std::vector<raft::Index>> RetainedIndexes(
      raft::Index after, size_t limit) const {
    (void)after;
    (void)limit;
    return std::vector<raft::Index>();
  }
  // Drops the listed retained entries. Indexes at or above FirstIndex(), or
  // holding nothing, are ignored. Ordered and durable like CompactPrefix.
  [[nodiscard]] virtual absl::Status DropRetained(std::vector<raft::Index> indexes) {
    (void)indexes;
    return absl::OkStatus();
  }
};

}  // namespace confman
