// A thin owner of one LMDB environment, shared by the log store and the
// config state machine. It adds what LMDB leaves to its users:
//
//  * statuses instead of return codes, with LMDB's own text in the message;
//  * map growth: a write transaction that hits MDB_MAP_FULL is aborted, the
//    map is doubled (up to a ceiling) once no read transaction is open, and
//    the transaction body runs again;
//  * a fork guard: an environment is refused in a process other than the
//    one that opened it (LMDB forbids using one across fork()).
#pragma once

#include <lmdb.h>
#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace confman::common {

// Maps an LMDB return code to a status whose message says what failed
// (`what`) and what to do about it. MDB_MAP_FULL becomes ResourceExhausted.
[[nodiscard]] absl::Status LmdbError(int rc, std::string_view what);

inline std::string_view ToView(const MDB_val& v) {
  return {static_cast<const char*>(v.mv_data), v.mv_size};
}
inline MDB_val ToVal(std::string_view s) {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}

struct LmdbEnvOptions {
  std::string dir;
  uint64_t map_bytes = uint64_t{1} << 30;
  uint64_t max_map_bytes = uint64_t{1} << 40;
  // Named databases opened (created if missing) at Open, in this order.
  std::vector<std::string> databases;
  // False skips the fsync on each commit (MDB_NOSYNC); for environments
  // that are filled and then made durable once with Sync(), like a restore.
  bool sync_commits = true;
  // False leaves each commit's metadata write unsynced (MDB_NOMETASYNC):
  // a commit costs one fsync instead of two and the environment stays
  // intact, but a system crash may undo the last commit. For data that can
  // be rebuilt (a state machine behind its log); Sync() makes it all
  // durable.
  bool sync_meta = true;
};

class LmdbEnv;

// A read-only transaction. Holds a reader slot and blocks map growth while
// alive; keep it short unless it is a snapshot. Movable, single owner; may
// be destroyed on any thread (the environment uses MDB_NOTLS).
class ReadTxn {
 public:
  ReadTxn() = default;
  ReadTxn(ReadTxn&& other) noexcept;
  ReadTxn& operator=(ReadTxn&& other) noexcept;
  ~ReadTxn();

  MDB_txn* get() const { return txn_; }
  // The stored bytes under `key`, or NotFound. The view points into the
  // map and stays valid until the transaction ends.
  [[nodiscard]] absl::StatusOr<std::string_view> Get(MDB_dbi dbi, std::string_view key) const;

 private:
  friend class LmdbEnv;
  ReadTxn(const LmdbEnv* env, MDB_txn* txn) : env_(env), txn_(txn) {}
  void Release();

  const LmdbEnv* env_ = nullptr;
  MDB_txn* txn_ = nullptr;
};

class LmdbEnv {
 public:
  // Creates `dir` if needed, opens the environment with MDB_NOTLS, clears
  // stale reader slots (mdb_reader_check) and opens `databases`.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<LmdbEnv>> Open(const LmdbEnvOptions& options);
  ~LmdbEnv();
  LmdbEnv(const LmdbEnv&) = delete;
  LmdbEnv& operator=(const LmdbEnv&) = delete;

  MDB_dbi db(size_t i) const { return dbis_[i]; }
  const std::string& dir() const { return dir_; }

  [[nodiscard]] absl::StatusOr<ReadTxn> BeginRead() const;

  // Runs `body` in a write transaction and commits it (a durable commit).
  // If `body` or the commit reports MDB_MAP_FULL, the transaction is
  // aborted, the map grows and `body` runs again from scratch, so `body`
  // must only depend on what it reads through the transaction. Any other
  // error from `body` aborts and is returned. Only one thread may write.
  [[nodiscard]] absl::Status RunWrite(const std::function<absl::Status(MDB_txn*)>& body);

  // Forces data.mdb to disk (after writes made with durability relaxed).
  [[nodiscard]] absl::Status Sync();
  // Turns the per-commit fsync on or off (see LmdbEnvOptions::sync_commits).
  [[nodiscard]] absl::Status SetSyncCommits(bool sync);

  uint64_t map_bytes() const;
  // Size of data.mdb; 0 if it cannot be read.
  uint64_t FileBytes() const;

  static bool IsMapFull(const absl::Status& status);

  // Asks the kernel to read `bytes` (a view into the map) in one request.
  // Environments are opened with MDB_NORDAHEAD, which suits B-tree lookups
  // but makes a large value read sequentially fault in page by page. No-op
  // for small views, where a few faults are cheaper than the call.
  static void Prefetch(std::string_view bytes);

 private:
  friend class ReadTxn;
  LmdbEnv() = default;
  [[nodiscard]] absl::Status CheckProcess() const;
  [[nodiscard]] absl::Status Grow();
  void ExitReader() const;

  MDB_env* env_ = nullptr;
  std::string dir_;
  pid_t owner_pid_ = 0;
  uint64_t max_map_bytes_ = 0;
  std::vector<MDB_dbi> dbis_;

  // Map growth needs every read transaction of this process closed
  // (mdb_env_set_mapsize); readers register here.
  mutable std::mutex gate_mu_;
  mutable std::condition_variable gate_cv_;
  mutable int open_readers_ = 0;
  mutable bool growing_ = false;
  // Written by the writing thread, read by Stats() from others.
  std::atomic<uint64_t> map_bytes_{0};
};

}  // namespace confman::common
