// confman::LmdbLogStore — the durable LogStore (log_store.h): the Raft log
// in its own LMDB environment, written by one thread that group-commits
// everything queued since its last commit in one transaction. Statuses as
// listed in log_store.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "confman/log_store.h"
#include "confman/raft/types.h"

namespace confman {

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

}  // namespace confman
