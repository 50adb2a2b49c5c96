// confman::LogStore — the durable Raft log: entries plus the hard state.
//
// A LogStore is the raft::LogReader the core reads, plus the writes a driver
// performs on a Ready batch (core.h, step 3). Two implementations:
//
//   MemoryLogStore  raft::MemoryLog behind a mutex. "Durable" means "in this
//                   process's memory"; for tests and the simulator.
//   LmdbLogStore    its own LMDB environment; a writer thread group-commits
//                   everything queued since its last commit in one
//                   transaction (one durable commit per group, no flush
//                   interval to tune).
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

#include <cstdint>
#include <functional>
#include <memory>
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

// An in-memory LogStore over raft::MemoryLog. Write applies the write and
// runs `done` synchronously, on the caller's thread, before returning.
class MemoryLogStore final : public LogStore {
 public:
  // `retain_entries_from_bytes` as in LmdbLogStoreOptions (0: none).
  explicit MemoryLogStore(uint64_t retain_entries_from_bytes = 0);
  ~MemoryLogStore() override;

  raft::Index FirstIndex() const override;
  raft::Index LastIndex() const override;
  [[nodiscard]] absl::StatusOr<raft::Term> TermAt(raft::Index index) const override;
  [[nodiscard]] absl::StatusOr<std::vector<raft::Entry>> Entries(
      raft::Index lo, raft::Index hi, uint64_t max_bytes) const override;

  void Write(LogWrite write, WriteDone done) override;
  [[nodiscard]] absl::StatusOr<raft::HardState> LoadHardState() const override;
  [[nodiscard]] absl::Status CompactPrefix(raft::Index through) override;
  [[nodiscard]] absl::Status ResetToSnapshot(raft::Index index, raft::Term term) override;

  bool RetainsEntry(const raft::Entry& entry) const override;
  [[nodiscard]] absl::StatusOr<std::string> ReadEntryData(raft::Index index) const override;
  [[nodiscard]] absl::StatusOr<std::vector<raft::Index>> RetainedIndexes(
      raft::Index after, size_t limit) const override;
  [[nodiscard]] absl::Status DropRetained(std::vector<raft::Index> indexes) override;

 private:
  struct State;
  // ResetToSnapshot's effect; requires state_->mu.
  void ResetLocked(raft::Index index, raft::Term term);
  std::unique_ptr<State> state_;
};

struct LmdbLogStoreOptions {
  // Directory holding the environment (data.mdb, lock.mdb). Required;
  // created if missing. One process may open it at a time.
  std::string dir = {};
  // Initial LMDB map size in bytes. The map is address space, not disk:
  // the file grows only as pages are used. On MDB_MAP_FULL the store
  // doubles the map, up to max_map_bytes.
  uint64_t initial_map_bytes = uint64_t{1} << 30;  // 1 GiB
  // Hard ceiling; a write that needs more fails with ResourceExhausted.
  uint64_t max_map_bytes = uint64_t{1} << 40;  // 1 TiB
  // The writer thread puts queued writes into one transaction until their
  // entry bytes reach this (a single larger write still goes alone). It
  // bounds the memory a group's dirty pages take.
  uint64_t max_group_bytes = uint64_t{64} << 20;  // 64 MiB

  // Normal entries whose data is at least this many bytes are retained
  // (entry_archive.h) when they leave the log. 0 retains nothing. Default 0;
  // the Node sets it from NodeOptions::value_in_log_min_bytes.
  uint64_t retain_entries_from_bytes = 0;

  // InvalidArgument naming the first bad field.
  [[nodiscard]] absl::Status Validate() const;
};

// Counters for benchmarks and monitoring. Monotonic since Open.
struct LogStoreStats {
  uint64_t commits = 0;          // Durable LMDB commits (one per group).
  uint64_t writes = 0;           // LogWrites made durable.
  uint64_t entries_written = 0;  // Entries in those writes.
  uint64_t map_bytes = 0;        // Current LMDB map size.
  uint64_t file_bytes = 0;       // Size of data.mdb on disk.
};

// The LMDB LogStore. `done` callbacks run on the store's writer thread.
//
// Durability: a write is durable when LMDB's commit (data fdatasync, then a
// synchronous meta-page write) returns. Entries are stored with a CRC32C
// over index, term, type and data; hard state and compaction point carry
// one too.
//
// Not fork-safe: never use a store in a child forked after Open (it reports
// FailedPrecondition); open a new one there instead.
class LmdbLogStore final : public LogStore {
 public:
  // Opens or creates the log in options.dir, clearing stale reader slots
  // left by crashed processes. InvalidArgument for bad options; Internal
  // (with LMDB's message) if the environment cannot be opened; DataLoss if
  // its metadata is corrupt.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<LmdbLogStore>> Open(
      const LmdbLogStoreOptions& options);

  // Waits for every queued write to finish (callbacks included), then
  // closes the environment.
  ~LmdbLogStore() override;

  raft::Index FirstIndex() const override;
  raft::Index LastIndex() const override;
  [[nodiscard]] absl::StatusOr<raft::Term> TermAt(raft::Index index) const override;
  [[nodiscard]] absl::StatusOr<std::vector<raft::Entry>> Entries(
      raft::Index lo, raft::Index hi, uint64_t max_bytes) const override;

  void Write(LogWrite write, WriteDone done) override;
  [[nodiscard]] absl::StatusOr<raft::HardState> LoadHardState() const override;
  [[nodiscard]] absl::Status CompactPrefix(raft::Index through) override;
  [[nodiscard]] absl::Status ResetToSnapshot(raft::Index index, raft::Term term) override;

  bool RetainsEntry(const raft::Entry& entry) const override;
  [[nodiscard]] absl::StatusOr<std::string> ReadEntryData(raft::Index index) const override;
  [[nodiscard]] absl::StatusOr<std::vector<raft::Index>> RetainedIndexes(
      raft::Index after, size_t limit) const override;
  [[nodiscard]] absl::Status DropRetained(std::vector<raft::Index> indexes) override;

  LogStoreStats Stats() const;

 private:
  class Impl;
  explicit LmdbLogStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Wraps a LogStore and fails operations on demand, for testing how a
// driver copes with a failing disk. Thread-safe; the wrapped store must
// outlive the wrapper. By default it passes everything through.
class FaultInjectingLogStore final : public LogStore {
 public:
  explicit FaultInjectingLogStore(LogStore* wrapped);
  ~FaultInjectingLogStore() override;

  // The next `count` writes (Write, WriteSync, CompactPrefix,
  // ResetToSnapshot, DropRetained) fail with `status` without reaching the
  // wrapped store.
  void FailNextWrites(int count, absl::Status status);
  // While set, TermAt, Entries and ReadEntryData fail with `status` (e.g.
  // DataLoss).
  void FailReads(std::optional<absl::Status> status);

  raft::Index FirstIndex() const override;
  raft::Index LastIndex() const override;
  [[nodiscard]] absl::StatusOr<raft::Term> TermAt(raft::Index index) const override;
  [[nodiscard]] absl::StatusOr<std::vector<raft::Entry>> Entries(
      raft::Index lo, raft::Index hi, uint64_t max_bytes) const override;

  void Write(LogWrite write, WriteDone done) override;
  [[nodiscard]] absl::StatusOr<raft::HardState> LoadHardState() const override;
  [[nodiscard]] absl::Status CompactPrefix(raft::Index through) override;
  [[nodiscard]] absl::Status ResetToSnapshot(raft::Index index, raft::Term term) override;

  bool RetainsEntry(const raft::Entry& entry) const override;
  [[nodiscard]] absl::StatusOr<std::string> ReadEntryData(raft::Index index) const override;
  [[nodiscard]] absl::StatusOr<std::vector<raft::Index>> RetainedIndexes(
      raft::Index after, size_t limit) const override;
  [[nodiscard]] absl::Status DropRetained(std::vector<raft::Index> indexes) override;

 private:
  struct Faults;
  // The injected failure for the next write, if one is armed.
  std::optional<absl::Status> TakeWriteFault();
  // The armed read failure, if any.
  std::optional<absl::Status> ReadFault() const;

  LogStore* wrapped_;
  std::unique_ptr<Faults> faults_;
};

}  // namespace confman
