// LmdbEnv (lmdb_env.h): LMDB errors as statuses, map growth on
// MDB_MAP_FULL once readers are out, and the fork guard.
#include "common/lmdb_env.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "common/bytes.h"

namespace confman::common {
namespace {

constexpr char kMapFullPayload[] = "confman.lmdb/map_full";

}  // namespace

[[nodiscard]] absl::Status LmdbError(int rc, std::string_view what) {
  const std::string message =
      absl::StrCat(ToAbsl(what), ": ", mdb_strerror(rc), " (LMDB code ", rc, ")");
  switch (rc) {
    case MDB_MAP_FULL: {
      absl::Status status = absl::ResourceExhaustedError(absl::StrCat(
          message, "; the map reached its configured maximum, raise "
                   "max_map_bytes or free space by compacting"));
      status.SetPayload(kMapFullPayload, absl::Cord("1"));
      return status;
    }
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH:
      return absl::DataLossError(absl::StrCat(
          message, "; the environment is damaged, restore it from a peer "
                   "snapshot"));
    case MDB_READERS_FULL:
      return absl::ResourceExhaustedError(
          absl::StrCat(message, "; too many concurrent readers, close some"));
    case MDB_NOTFOUND:
      return absl::NotFoundError(message);
    default:
      return absl::InternalError(message);
  }
}

void LmdbEnv::Prefetch(std::string_view bytes) {
  constexpr size_t kMinBytes = 64 << 10;
  if (bytes.size() < kMinBytes) return;
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const auto start = reinterpret_cast<uintptr_t>(bytes.data()) & ~(page - 1);
  const auto end = reinterpret_cast<uintptr_t>(bytes.data()) + bytes.size();
  madvise(reinterpret_cast<void*>(start), end - start, MADV_WILLNEED);
}

bool LmdbEnv::IsMapFull(const absl::Status& status) {
  return status.GetPayload(kMapFullPayload).has_value();
}

ReadTxn::ReadTxn(ReadTxn&& other) noexcept
    : env_(std::exchange(other.env_, nullptr)),
      txn_(std::exchange(other.txn_, nullptr)) {}

ReadTxn& ReadTxn::operator=(ReadTxn&& other) noexcept {
  if (this != &other) {
    Release();
    env_ = std::exchange(other.env_, nullptr);
    txn_ = std::exchange(other.txn_, nullptr);
  }
  return *this;
}

ReadTxn::~ReadTxn() { Release(); }

void ReadTxn::Release() {
  if (txn_ == nullptr) return;
  mdb_txn_abort(txn_);
  txn_ = nullptr;
  env_->ExitReader();
  env_ = nullptr;
}

absl::StatusOr<std::string_view> ReadTxn::Get(MDB_dbi dbi,
                                              std::string_view key) const {
  MDB_val k = ToVal(key);
  MDB_val v;
  const int rc = mdb_get(txn_, dbi, &k, &v);
  if (rc != 0) return LmdbError(rc, "reading a stored record");
  return ToView(v);
}

absl::StatusOr<std::unique_ptr<LmdbEnv>> LmdbEnv::Open(
    const LmdbEnvOptions& options) {
  std::error_code ec;
  std::filesystem::create_directories(options.dir, ec);
  if (ec) {
    return absl::InternalError(absl::StrCat(
        "cannot create directory ", options.dir, ": ", ec.message(),
        "; check the path and its permissions"));
  }
  std::unique_ptr<LmdbEnv> env(new LmdbEnv());
  env->dir_ = options.dir;
  env->owner_pid_ = getpid();
  env->max_map_bytes_ = std::max(options.max_map_bytes, options.map_bytes);
  env->map_bytes_ = options.map_bytes;
  int rc = mdb_env_create(&env->env_);
  if (rc != 0) return LmdbError(rc, "creating an LMDB environment");
  rc = mdb_env_set_maxdbs(env->env_,
                          static_cast<MDB_dbi>(options.databases.size() + 1));
  if (rc != 0) return LmdbError(rc, "setting the number of LMDB databases");
  rc = mdb_env_set_maxreaders(env->env_, 256);
  if (rc != 0) return LmdbError(rc, "setting the number of LMDB readers");
  rc = mdb_env_set_mapsize(env->env_, options.map_bytes);
  if (rc != 0) return LmdbError(rc, "setting the LMDB map size");
  const unsigned flags = MDB_NOTLS | MDB_NORDAHEAD |
                         (options.sync_commits ? 0u : MDB_NOSYNC) |
                         (options.sync_meta ? 0u : MDB_NOMETASYNC);
  rc = mdb_env_open(env->env_, options.dir.c_str(), flags, 0644);
  if (rc != 0) {
    return LmdbError(rc, absl::StrCat("opening the LMDB environment in ",
                                      options.dir));
  }
  // A larger map recorded by an earlier run wins over the configured one.
  MDB_envinfo info;
  rc = mdb_env_info(env->env_, &info);
  if (rc != 0) return LmdbError(rc, "reading the LMDB environment's map size");
  env->map_bytes_ = info.me_mapsize;
  int stale = 0;
  rc = mdb_reader_check(env->env_, &stale);
  if (rc != 0) return LmdbError(rc, "clearing stale LMDB readers");
  env->dbis_.resize(options.databases.size());
  absl::Status status = env->RunWrite([&](MDB_txn* txn) -> absl::Status {
    for (size_t i = 0; i < options.databases.size(); ++i) {
      const int dbi_rc = mdb_dbi_open(txn, options.databases[i].c_str(),
                                      MDB_CREATE, &env->dbis_[i]);
      if (dbi_rc != 0) {
        return LmdbError(dbi_rc, absl::StrCat("opening database ",
                                              options.databases[i]));
      }
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return env;
}

LmdbEnv::~LmdbEnv() {
  if (env_ != nullptr) mdb_env_close(env_);
}

absl::Status LmdbEnv::CheckProcess() const {
  if (getpid() != owner_pid_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the LMDB environment in ", dir_, " was opened by process ",
        owner_pid_, " and cannot be used after fork(); open it again in "
        "this process"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ReadTxn> LmdbEnv::BeginRead() const {
  if (absl::Status s = CheckProcess(); !s.ok()) return s;
  {
    std::unique_lock lock(gate_mu_);
    gate_cv_.wait(lock, [&] { return !growing_; });
    ++open_readers_;
  }
  MDB_txn* txn = nullptr;
  const int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn);
  if (rc != 0) {
    ExitReader();
    return LmdbError(rc, "beginning an LMDB read transaction");
  }
  return ReadTxn(this, txn);
}

void LmdbEnv::ExitReader() const {
  std::lock_guard lock(gate_mu_);
  if (--open_readers_ == 0) gate_cv_.notify_all();
}

absl::Status LmdbEnv::Grow() {
  if (map_bytes_ >= max_map_bytes_) {
    return LmdbError(MDB_MAP_FULL,
                     absl::StrCat("growing the LMDB map in ", dir_, " beyond ",
                                  map_bytes_.load(), " bytes"));
  }
  const uint64_t next = std::min(max_map_bytes_, map_bytes_ * 2);
  std::unique_lock lock(gate_mu_);
  growing_ = true;
  gate_cv_.wait(lock, [&] { return open_readers_ == 0; });
  const int rc = mdb_env_set_mapsize(env_, next);
  growing_ = false;
  gate_cv_.notify_all();
  if (rc != 0) return LmdbError(rc, "growing the LMDB map");
  map_bytes_ = next;
  return absl::OkStatus();
}

absl::Status LmdbEnv::RunWrite(
    const std::function<absl::Status(MDB_txn*)>& body) {
  if (absl::Status s = CheckProcess(); !s.ok()) return s;
  while (true) {
    MDB_txn* txn = nullptr;
    int rc = mdb_txn_begin(env_, nullptr, 0, &txn);
    if (rc != 0) return LmdbError(rc, "beginning an LMDB write transaction");
    absl::Status status = body(txn);
    if (status.ok()) {
      rc = mdb_txn_commit(txn);
      if (rc == 0) return absl::OkStatus();
      status = LmdbError(rc, absl::StrCat("committing to ", dir_));
    } else {
      mdb_txn_abort(txn);
    }
    if (!IsMapFull(status)) return status;
    if (absl::Status grown = Grow(); !grown.ok()) return grown;
  }
}

absl::Status LmdbEnv::Sync() {
  const int rc = mdb_env_sync(env_, 1);
  if (rc != 0) return LmdbError(rc, absl::StrCat("syncing ", dir_));
  return absl::OkStatus();
}

absl::Status LmdbEnv::SetSyncCommits(bool sync) {
  const int rc = mdb_env_set_flags(env_, MDB_NOSYNC, sync ? 0 : 1);
  if (rc != 0) return LmdbError(rc, absl::StrCat("setting sync mode on ", dir_));
  return absl::OkStatus();
}

uint64_t LmdbEnv::map_bytes() const { return map_bytes_; }

uint64_t LmdbEnv::FileBytes() const {
  struct stat st;
  if (stat((dir_ + "/data.mdb").c_str(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_size);
}

}  // namespace confman::common
