// The storage the config state machine runs on: a few ordered byte tables
// with consistent read views, atomic write transactions and a restore that
// swaps in a whole new store. LMDB and an in-memory map implement it, so
// the command logic, the read API and the snapshot format exist once.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace confman::kv {

enum class Table : uint8_t {
  kMeta = 0,     // Applied index/term, revision, membership, history start.
  kKeys = 1,     // ns '\0' key -> key record.
  kChanges = 2,  // big-endian revision -> change record.
  // big-endian log index -> kKeys table key, for every value left in the log
  // (KeyRecord::value_log_index): the entries the store still needs.
  kValueRefs = 3,
  // Exactly-once client sessions (sessions.h): per-client records, their
  // recorded results and an index by last activity.
  kSessions = 4,
};
inline constexpr uint8_t kTableCount = 5;
// Tables a snapshot stream carries, in stream order. Values left in the log
// are copied into their key records instead (the receiver's log does not
// hold them), so kValueRefs stays behind.
inline constexpr Table kStreamedTables[] = {Table::kMeta, Table::kKeys,
                                            Table::kChanges, Table::kSessions};
inline constexpr uint8_t kStreamedTableCount = std::size(kStreamedTables);

// Visits (key, value) pairs in key order; returns false to stop.
using Visitor = std::function<bool(std::string_view key, std::string_view value)>;

// A consistent view of all tables. Views it returns stay valid for its
// lifetime (or, for a TableWriter, until its next write).
class TableReader {
 public:
  virtual ~TableReader() = default;
  [[nodiscard]] virtual absl::StatusOr<std::optional<std::string_view>> Get(
      Table table, std::string_view key) const = 0;
  // Visits records with key >= from.
  [[nodiscard]] virtual absl::Status Scan(Table table, std::string_view from,
                            const Visitor& visit) const = 0;
  // Hints that `bytes`, a view this reader returned, is about to be read
  // in full, so a file-backed store can fetch it in one request instead of
  // page by page.
  virtual void WillRead(std::string_view bytes) const { (void)bytes; }
};

class TableWriter : public TableReader {
 public:
  // Stores the concatenation of `parts` under `key` (no intermediate copy).
  [[nodiscard]] virtual absl::Status Put(Table table, std::string_view key,
                           std::initializer_list<std::string_view> parts) = 0;
  // Removes `key`; absent keys are fine.
  [[nodiscard]] virtual absl::Status Delete(Table table, std::string_view key) = 0;
};

// Fills a fresh, invisible store. Dropping it discards the store.
class RestoreTarget {
 public:
  virtual ~RestoreTarget() = default;
  [[nodiscard]] virtual absl::Status Put(Table table, std::string_view key,
                           std::string_view value) = 0;
  // Makes the store durable and swaps it in for the backend's current one;
  // readers already open keep their old view.
  [[nodiscard]] virtual absl::Status Commit() = 0;
};

class KvBackend {
 public:
  virtual ~KvBackend() = default;
  [[nodiscard]] virtual absl::StatusOr<std::unique_ptr<TableReader>> BeginRead() const = 0;
  // Runs `body` in one atomic transaction; commits if it returns OK. The
  // commit is durable once the next Update or Sync returns (a system crash
  // may undo the last one, never part of one). `body` may run more than once
  // (after LMDB map growth) and must only depend on what it reads through the
  // writer.
  [[nodiscard]] virtual absl::Status Update(
      const std::function<absl::Status(TableWriter&)>& body) = 0;
  [[nodiscard]] virtual absl::StatusOr<std::unique_ptr<RestoreTarget>> BeginRestore() = 0;
  // Bytes of the backing file; 0 in memory.
  virtual uint64_t StorageBytes() const = 0;
  // Makes every committed Update durable.
  [[nodiscard]] virtual absl::Status Sync() = 0;
};

std::unique_ptr<KvBackend> NewMemoryBackend();

struct LmdbBackendOptions {
  std::string dir;
  uint64_t initial_map_bytes = 0;
  uint64_t max_map_bytes = 0;
  uint64_t restore_batch_bytes = 0;
};
[[nodiscard]] absl::StatusOr<std::unique_ptr<KvBackend>> OpenLmdbBackend(
    const LmdbBackendOptions& options);

}  // namespace confman::kv
