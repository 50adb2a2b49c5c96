// The LMDB backend. The live environment is one "generation" directory,
// state-<n>, named by the CURRENT file; a restore fills state-<n+1> and
// switches CURRENT with an atomic rename, so a crash mid-restore leaves the
// old generation in force (and the half-written one is removed at open).
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/bytes.h"
#include "common/lmdb_env.h"
#include "confman/status_macros.h"
#include "kv_backend.h"

namespace confman::kv {
namespace {

namespace fs = std::filesystem;
using common::LmdbEnv;
using common::LmdbError;
using common::ReadTxn;
using common::ToVal;
using common::ToView;

constexpr char kCurrentFile[] = "CURRENT";
constexpr char kGenerationPrefix[] = "state-";

// One environment generation. Shared ownership is deliberate: a reader or
// snapshot source on another thread must keep its environment open after a
// restore has replaced it; the last holder closes it and, once obsolete,
// removes its files.
struct Generation {
  uint64_t number = 0;
  std::string dir;
  std::unique_ptr<LmdbEnv> env;
  std::atomic<bool> obsolete{false};

  MDB_dbi dbi(Table table) const { return env->db(static_cast<size_t>(table)); }

  ~Generation() {
    env.reset();
    if (obsolete) {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  }
};

[[nodiscard]] absl::StatusOr<std::optional<std::string_view>> GetIn(MDB_txn* txn, MDB_dbi dbi,
                                                      std::string_view key) {
  MDB_val k = ToVal(key), v;
  const int rc = mdb_get(txn, dbi, &k, &v);
  if (rc == MDB_NOTFOUND) return std::optional<std::string_view>();
  if (rc != 0) return LmdbError(rc, "reading the config store");
  return std::optional<std::string_view>(ToView(v));
}

[[nodiscard]] absl::Status ScanIn(MDB_txn* txn, MDB_dbi dbi, std::string_view from,
                    const Visitor& visit) {
  MDB_cursor* cursor = nullptr;
  int rc = mdb_cursor_open(txn, dbi, &cursor);
  if (rc != 0) return LmdbError(rc, "opening a config store cursor");
  MDB_val k = ToVal(from), v;
  rc = from.empty() ? mdb_cursor_get(cursor, &k, &v, MDB_FIRST)
                    : mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
  while (rc == 0 && visit(ToView(k), ToView(v))) {
    rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT);
  }
  mdb_cursor_close(cursor);
  if (rc != 0 && rc != MDB_NOTFOUND) {
    return LmdbError(rc, "scanning the config store");
  }
  return absl::OkStatus();
}

[[nodiscard]] absl::Status PutIn(MDB_txn* txn, MDB_dbi dbi, std::string_view key,
                   std::initializer_list<std::string_view> parts,
                   unsigned flags) {
  size_t size = 0;
  for (std::string_view p : parts) size += p.size();
  MDB_val k = ToVal(key);
  MDB_val v{size, nullptr};
  const int rc = mdb_put(txn, dbi, &k, &v, flags | MDB_RESERVE);
  if (rc != 0) return LmdbError(rc, "writing the config store");
  char* out = static_cast<char*>(v.mv_data);
  for (std::string_view p : parts) {
    if (!p.empty()) std::memcpy(out, p.data(), p.size());
    out += p.size();
  }
  return absl::OkStatus();
}

class LmdbReader : public TableReader {
 public:
  LmdbReader(std::shared_ptr<Generation> generation, ReadTxn txn)
      : generation_(std::move(generation)), txn_(std::move(txn)) {}

  [[nodiscard]] absl::StatusOr<std::optional<std::string_view>> Get(
      Table table, std::string_view key) const override {
    return GetIn(txn_.get(), generation_->dbi(table), key);
  }
  [[nodiscard]] absl::Status Scan(Table table, std::string_view from,
                    const Visitor& visit) const override {
    return ScanIn(txn_.get(), generation_->dbi(table), from, visit);
  }
  void WillRead(std::string_view bytes) const override {
    LmdbEnv::Prefetch(bytes);
  }

 private:
  std::shared_ptr<Generation> generation_;  // Outlives txn_ (declared first).
  ReadTxn txn_;
};

class LmdbWriter : public TableWriter {
 public:
  LmdbWriter(MDB_txn* txn, const Generation* generation)
      : txn_(txn), generation_(generation) {}

  [[nodiscard]] absl::StatusOr<std::optional<std::string_view>> Get(
      Table table, std::string_view key) const override {
    return GetIn(txn_, generation_->dbi(table), key);
  }
  [[nodiscard]] absl::Status Scan(Table table, std::string_view from,
                    const Visitor& visit) const override {
    return ScanIn(txn_, generation_->dbi(table), from, visit);
  }
  [[nodiscard]] absl::Status Put(Table table, std::string_view key,
                   std::initializer_list<std::string_view> parts) override {
    return PutIn(txn_, generation_->dbi(table), key, parts, 0);
  }
  [[nodiscard]] absl::Status Delete(Table table, std::string_view key) override {
    MDB_val k = ToVal(key);
    const int rc = mdb_del(txn_, generation_->dbi(table), &k, nullptr);
    if (rc != 0 && rc != MDB_NOTFOUND) {
      return LmdbError(rc, "deleting from the config store");
    }
    return absl::OkStatus();
  }

 private:
  MDB_txn* txn_;
  const Generation* generation_;
};

std::string GenerationDir(const std::string& root, uint64_t number) {
  return absl::StrCat(root, "/", kGenerationPrefix, number);
}

[[nodiscard]] absl::Status FsyncPath(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags);
  if (fd < 0 || ::fsync(fd) != 0) {
    if (fd >= 0) ::close(fd);
    return absl::InternalError(absl::StrCat("cannot fsync ", path, ": ",
                                            std::strerror(errno)));
  }
  ::close(fd);
  return absl::OkStatus();
}

// Points CURRENT at generation `number`: write a temporary file, fsync it,
// rename it over CURRENT, fsync the directory.
[[nodiscard]] absl::Status WriteCurrent(const std::string& root, uint64_t number) {
  const std::string tmp = root + "/" + kCurrentFile + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << kGenerationPrefix << number << "\n";
    if (!out.good()) {
      return absl::InternalError(absl::StrCat("cannot write ", tmp,
                                              "; check free space"));
    }
  }
  CONFMAN_RETURN_IF_ERROR(FsyncPath(tmp, O_RDONLY));
  std::error_code ec;
  fs::rename(tmp, root + "/" + kCurrentFile, ec);
  if (ec) {
    return absl::InternalError(absl::StrCat("cannot switch ", root, "/",
                                            kCurrentFile, ": ", ec.message()));
  }
  return FsyncPath(root, O_RDONLY | O_DIRECTORY);
}

[[nodiscard]] absl::StatusOr<uint64_t> ReadCurrent(const std::string& root) {
  std::ifstream in(root + "/" + kCurrentFile);
  if (!in) return uint64_t{0};
  std::string line;
  std::getline(in, line);
  uint64_t number = 0;
  const std::string_view prefix = kGenerationPrefix;
  if (line.rfind(prefix, 0) != 0 ||
      !absl::SimpleAtoi(absl::string_view(line).substr(prefix.size()), &number)) {
    return absl::DataLossError(absl::StrCat(
        root, "/", kCurrentFile, " does not name a state generation (\"",
        line, "\"); restore this member from a peer snapshot"));
  }
  return number;
}

// Removes every generation but `keep` (half-written restores, obsolete
// ones a crash left behind).
void RemoveOtherGenerations(const std::string& root, uint64_t keep) {
  const std::string keep_name = absl::StrCat(kGenerationPrefix, keep);
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(kGenerationPrefix, 0) == 0 && name != keep_name) {
      fs::remove_all(entry.path(), ec);
    }
  }
}

class LmdbBackend;

class LmdbRestore : public RestoreTarget {
 public:
  LmdbRestore(LmdbBackend* backend, std::shared_ptr<Generation> generation,
              uint64_t batch_bytes)
      : backend_(backend), generation_(std::move(generation)),
        batch_bytes_(batch_bytes) {}

  ~LmdbRestore() override {
    if (generation_) generation_->obsolete = true;
  }

  [[nodiscard]] absl::Status Put(Table table, std::string_view key,
                   std::string_view value) override {
    pending_.push_back({table, std::string(key), std::string(value)});
    pending_bytes_ += key.size() + value.size();
    if (pending_bytes_ >= batch_bytes_) return Flush();
    return absl::OkStatus();
  }

  [[nodiscard]] absl::Status Commit() override;

 private:
  struct Record {
    Table table;
    std::string key;
    std::string value;
  };

  // Records arrive in key order per table, so MDB_APPEND applies; a stream
  // out of order fails here instead of being silently reordered.
  [[nodiscard]] absl::Status Flush() {
    absl::Status status = generation_->env->RunWrite([&](MDB_txn* txn) {
      for (const Record& r : pending_) {
        CONFMAN_RETURN_IF_ERROR(PutIn(txn, generation_->dbi(r.table), r.key,
                                      {r.value}, MDB_APPEND));
      }
      return absl::OkStatus();
    });
    pending_.clear();
    pending_bytes_ = 0;
    return status;
  }

  LmdbBackend* backend_;
  std::shared_ptr<Generation> generation_;
  const uint64_t batch_bytes_;
  std::vector<Record> pending_;
  uint64_t pending_bytes_ = 0;
};

class LmdbBackend : public KvBackend {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<KvBackend>> Open(
      const LmdbBackendOptions& options) {
    std::error_code ec;
    fs::create_directories(options.dir, ec);
    if (ec) {
      return absl::InternalError(absl::StrCat("cannot create ", options.dir,
                                              ": ", ec.message()));
    }
    CONFMAN_ASSIGN_OR_RETURN(uint64_t number, ReadCurrent(options.dir));
    RemoveOtherGenerations(options.dir, number);
    std::unique_ptr<LmdbBackend> backend(new LmdbBackend(options));
    CONFMAN_ASSIGN_OR_RETURN(backend->current_,
                             backend->OpenGeneration(number, /*sync=*/true));
    backend->next_number_ = number + 1;
    if (!fs::exists(options.dir + "/" + kCurrentFile)) {
      CONFMAN_RETURN_IF_ERROR(WriteCurrent(options.dir, number));
    }
    return std::unique_ptr<KvBackend>(std::move(backend));
  }

  [[nodiscard]] absl::StatusOr<std::unique_ptr<TableReader>> BeginRead() const override {
    std::shared_ptr<Generation> generation = current();
    CONFMAN_ASSIGN_OR_RETURN(ReadTxn txn, generation->env->BeginRead());
    return std::unique_ptr<TableReader>(
        std::make_unique<LmdbReader>(std::move(generation), std::move(txn)));
  }

  [[nodiscard]] absl::Status Update(
      const std::function<absl::Status(TableWriter&)>& body) override {
    std::shared_ptr<Generation> generation = current();
    return generation->env->RunWrite([&](MDB_txn* txn) {
      LmdbWriter writer(txn, generation.get());
      return body(writer);
    });
  }

  // Each restore writes its own generation, so concurrent restores never
  // share a directory; the last one committed wins.
  [[nodiscard]] absl::StatusOr<std::unique_ptr<RestoreTarget>> BeginRestore() override {
    const uint64_t number = next_number_++;
    std::error_code ec;
    fs::remove_all(GenerationDir(options_.dir, number), ec);
    CONFMAN_ASSIGN_OR_RETURN(std::shared_ptr<Generation> generation,
                             OpenGeneration(number, /*sync=*/false));
    return std::unique_ptr<RestoreTarget>(std::make_unique<LmdbRestore>(
        this, std::move(generation), options_.restore_batch_bytes));
  }

  uint64_t StorageBytes() const override { return current()->env->FileBytes(); }

  [[nodiscard]] absl::Status Sync() override { return current()->env->Sync(); }

  // Makes `next` (fully written) the live generation.
  [[nodiscard]] absl::Status Install(std::shared_ptr<Generation> next) {
    CONFMAN_RETURN_IF_ERROR(next->env->Sync());
    CONFMAN_RETURN_IF_ERROR(next->env->SetSyncCommits(true));
    CONFMAN_RETURN_IF_ERROR(WriteCurrent(options_.dir, next->number));
    std::shared_ptr<Generation> old;
    {
      std::lock_guard lock(mu_);
      old = std::exchange(current_, std::move(next));
    }
    old->obsolete = true;
    return absl::OkStatus();
  }

 private:
  explicit LmdbBackend(const LmdbBackendOptions& options) : options_(options) {}

  [[nodiscard]] absl::StatusOr<std::shared_ptr<Generation>> OpenGeneration(uint64_t number,
                                                             bool sync) {
    auto generation = std::make_shared<Generation>();
    generation->number = number;
    generation->dir = GenerationDir(options_.dir, number);
    // Databases in Table order; a store from before a table existed gains
    // it empty.
    CONFMAN_ASSIGN_OR_RETURN(
        generation->env,
        LmdbEnv::Open({.dir = generation->dir,
                       .map_bytes = options_.initial_map_bytes,
                       .max_map_bytes = options_.max_map_bytes,
                       .databases = {"meta", "keys", "changes", "value_refs",
                                     "sessions"},
                       .sync_commits = sync,
                       .sync_meta = false}));
    return generation;
  }

  std::shared_ptr<Generation> current() const {
    std::lock_guard lock(mu_);
    return current_;
  }

  const LmdbBackendOptions options_;
  mutable std::mutex mu_;
  std::shared_ptr<Generation> current_;  // Guarded by mu_.
  std::atomic<uint64_t> next_number_{0};  // The next restore's generation.
};

absl::Status LmdbRestore::Commit() {
  if (!generation_) {
    return absl::FailedPreconditionError("this restore was already committed");
  }
  CONFMAN_RETURN_IF_ERROR(Flush());
  CONFMAN_RETURN_IF_ERROR(backend_->Install(generation_));
  generation_.reset();
  return absl::OkStatus();
}

}  // namespace

[[nodiscard]] absl::StatusOr<std::unique_ptr<KvBackend>> OpenLmdbBackend(
    const LmdbBackendOptions& options) {
  return LmdbBackend::Open(options);
}

}  // namespace confman::kv
