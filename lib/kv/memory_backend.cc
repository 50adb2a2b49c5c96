// The in-memory backend: immutable versions of the tables, replaced whole
// on every update, so every reader and snapshot gets a version that never
// changes under it, exactly like an LMDB read transaction. Values are
// shared between versions, so an update copies the key index (O(keys)),
// not the data.
#include <array>
#include <map>
#include <mutex>
#include <string>

#include "kv_backend.h"

namespace confman::kv {
namespace {

// A stored value never changes once written; versions share it.
using Value = std::shared_ptr<const std::string>;
using Tables =
    std::array<std::map<std::string, Value, std::less<>>, kTableCount>;

// A version outlives the backend's pointer to it while a reader holds it,
// which is why versions are shared.
using Version = std::shared_ptr<const Tables>;

class MemoryReader : public TableReader {
 public:
  explicit MemoryReader(const Tables* tables) : tables_(tables) {}

  [[nodiscard]] absl::StatusOr<std::optional<std::string_view>> Get(
      Table table, std::string_view key) const override {
    const auto& map = (*tables_)[static_cast<size_t>(table)];
    auto it = map.find(key);
    if (it == map.end()) return std::optional<std::string_view>();
    return std::optional<std::string_view>(*it->second);
  }

  [[nodiscard]] absl::Status Scan(Table table, std::string_view from,
                    const Visitor& visit) const override {
    const auto& map = (*tables_)[static_cast<size_t>(table)];
    for (auto it = map.lower_bound(from); it != map.end(); ++it) {
      if (!visit(it->first, *it->second)) break;
    }
    return absl::OkStatus();
  }

 protected:
  const Tables* tables_;
};

class VersionReader : public MemoryReader {
 public:
  explicit VersionReader(Version version)
      : MemoryReader(version.get()), version_(std::move(version)) {}

 private:
  Version version_;
};

class MemoryTableWriter : public TableWriter {
 public:
  explicit MemoryTableWriter(Tables* tables) : tables_(tables), reader_(tables) {}

  [[nodiscard]] absl::StatusOr<std::optional<std::string_view>> Get(
      Table table, std::string_view key) const override {
    return reader_.Get(table, key);
  }
  [[nodiscard]] absl::Status Scan(Table table, std::string_view from,
                    const Visitor& visit) const override {
    return reader_.Scan(table, from, visit);
  }
  [[nodiscard]] absl::Status Put(Table table, std::string_view key,
                   std::initializer_list<std::string_view> parts) override {
    std::string value;
    for (std::string_view p : parts) value.append(p);
    (*tables_)[static_cast<size_t>(table)].insert_or_assign(
        std::string(key),
        std::make_shared<const std::string>(std::move(value)));
    return absl::OkStatus();
  }
  [[nodiscard]] absl::Status Delete(Table table, std::string_view key) override {
    auto& map = (*tables_)[static_cast<size_t>(table)];
    if (auto it = map.find(key); it != map.end()) map.erase(it);
    return absl::OkStatus();
  }

 private:
  Tables* tables_;
  MemoryReader reader_;
};

class MemoryBackend : public KvBackend {
 public:
  MemoryBackend() : current_(std::make_shared<const Tables>()) {}

  [[nodiscard]] absl::StatusOr<std::unique_ptr<TableReader>> BeginRead() const override {
    return std::unique_ptr<TableReader>(std::make_unique<VersionReader>(current()));
  }

  [[nodiscard]] absl::Status Update(
      const std::function<absl::Status(TableWriter&)>& body) override {
    auto next = std::make_shared<Tables>(*current());
    MemoryTableWriter writer(next.get());
    if (absl::Status status = body(writer); !status.ok()) return status;
    Publish(std::move(next));
    return absl::OkStatus();
  }

  [[nodiscard]] absl::StatusOr<std::unique_ptr<RestoreTarget>> BeginRestore() override;

  uint64_t StorageBytes() const override { return 0; }
  [[nodiscard]] absl::Status Sync() override { return absl::OkStatus(); }

  void Publish(std::shared_ptr<const Tables> next) {
    std::lock_guard lock(mu_);
    current_ = std::move(next);
  }

 private:
  Version current() const {
    std::lock_guard lock(mu_);
    return current_;
  }

  mutable std::mutex mu_;
  Version current_;  // Guarded by mu_.
};

class MemoryRestore : public RestoreTarget {
 public:
  explicit MemoryRestore(MemoryBackend* backend)
      : backend_(backend), tables_(std::make_shared<Tables>()) {}

  [[nodiscard]] absl::Status Put(Table table, std::string_view key,
                   std::string_view value) override {
    (*tables_)[static_cast<size_t>(table)].insert_or_assign(
        std::string(key), std::make_shared<const std::string>(value));
    return absl::OkStatus();
  }

  [[nodiscard]] absl::Status Commit() override {
    backend_->Publish(std::move(tables_));
    return absl::OkStatus();
  }

 private:
  MemoryBackend* backend_;
  std::shared_ptr<Tables> tables_;
};

absl::StatusOr<std::unique_ptr<RestoreTarget>> MemoryBackend::BeginRestore() {
  return std::unique_ptr<RestoreTarget>(std::make_unique<MemoryRestore>(this));
}

}  // namespace

std::unique_ptr<KvBackend> NewMemoryBackend() {
  return std::make_unique<MemoryBackend>();
}

}  // namespace confman::kv
