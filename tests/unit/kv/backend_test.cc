// The table store under the state machine, on both backends, against a
// std::map model: random puts and deletes, point reads, scans from any key,
// a failed update leaving nothing behind, and readers that keep seeing the
// version they opened while later updates replace and delete its records.
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "catch2/catch.hpp"
#include "kv_backend.h"
#include "test_dir.h"

namespace confman::kv {
namespace {

using Model = std::map<std::string, std::string>;

struct MemoryStore {
  std::unique_ptr<KvBackend> Open() { return NewMemoryBackend(); }
};

struct LmdbStore {
  testing::TempDir dir;
  std::unique_ptr<KvBackend> Open() {
    absl::StatusOr<std::unique_ptr<KvBackend>> backend =
        OpenLmdbBackend(LmdbBackendOptions{
            .dir = dir.path(),
            .initial_map_bytes = 64 << 20,  // No growth: it waits for readers.
            .max_map_bytes = uint64_t{1} << 30,
            .restore_batch_bytes = 1 << 20});
    REQUIRE(backend.ok());
    return std::move(*backend);
  }
};

std::string KeyOf(uint32_t n) { return "k" + std::to_string(n); }

// Every record of `table` from `from` on, as the reader sees it.
Model ScanAll(const TableReader& reader, Table table, std::string_view from) {
  Model seen;
  REQUIRE(reader
              .Scan(table, from,
                    [&](std::string_view key, std::string_view value) {
                      seen.emplace(std::string(key), std::string(value));
                      return true;
                    })
              .ok());
  return seen;
}

Model Suffix(const Model& model, const std::string& from) {
  return Model(model.lower_bound(from), model.end());
}

void CheckMatches(const TableReader& reader, const Model& model,
                  std::mt19937& random) {
  CHECK(ScanAll(reader, Table::kKeys, "") == model);
  for (int i = 0; i < 20; ++i) {
    const std::string probe = KeyOf(random() % 600);
    absl::StatusOr<std::optional<std::string_view>> got =
        reader.Get(Table::kKeys, probe);
    REQUIRE(got.ok());
    auto it = model.find(probe);
    if (it == model.end()) {
      CHECK_FALSE(got->has_value());
    } else {
      REQUIRE(got->has_value());
      CHECK(**got == it->second);
    }
    CHECK(ScanAll(reader, Table::kKeys, probe) == Suffix(model, probe));
  }
}

TEMPLATE_TEST_CASE(
    "a backend's tables behave like ordered maps, and a reader "
    "keeps the version it opened",
    "[kv][backend]", MemoryStore, LmdbStore) {
  TestType store;
  std::unique_ptr<KvBackend> backend = store.Open();
  std::mt19937 random(7);
  Model model;
  // Readers opened along the way, each with the model of its version.
  std::vector<std::pair<std::unique_ptr<TableReader>, Model>> readers;
  for (int update = 0; update < 300; ++update) {
    Model next = model;
    const int ops = 1 + static_cast<int>(random() % 8);
    absl::Status status = backend->Update([&](TableWriter& writer) {
      next = model;  // The body may run again.
      for (int op = 0; op < ops; ++op) {
        const std::string key = KeyOf(random() % 600);
        if (random() % 3 == 0) {
          if (absl::Status s = writer.Delete(Table::kKeys, key); !s.ok())
            return s;
          next.erase(key);
        } else {
          const std::string value =
              "v" + std::to_string(update) + "-" + std::to_string(op);
          if (absl::Status s = writer.Put(Table::kKeys, key, {value, "!"});
              !s.ok()) {
            return s;
          }
          next[key] = value + "!";
        }
        // The writer reads its own writes.
        absl::StatusOr<std::optional<std::string_view>> own =
            writer.Get(Table::kKeys, key);
        if (!own.ok()) return own.status();
        const bool present = next.count(key) != 0;
        if (own->has_value() != present ||
            (present && std::string(**own) != next[key])) {
          return absl::InternalError("the writer does not see its own write");
        }
      }
      // Other tables are separate.
      return writer.Put(Table::kMeta, "updates", {std::to_string(update)});
    });
    REQUIRE(status.ok());
    model = std::move(next);
    if (update % 30 == 0) {
      absl::StatusOr<std::unique_ptr<TableReader>> reader =
          backend->BeginRead();
      REQUIRE(reader.ok());
      readers.emplace_back(std::move(*reader), model);
    }
  }
  absl::StatusOr<std::unique_ptr<TableReader>> latest = backend->BeginRead();
  REQUIRE(latest.ok());
  CheckMatches(**latest, model, random);
  CHECK(ScanAll(**latest, Table::kMeta, "") == Model{{"updates", "299"}});
  REQUIRE(readers.size() == 10);
  for (const auto& [reader, seen] : readers)
    CheckMatches(*reader, seen, random);
}

TEMPLATE_TEST_CASE("a failed update changes nothing", "[kv][backend]",
                   MemoryStore, LmdbStore) {
  TestType store;
  std::unique_ptr<KvBackend> backend = store.Open();
  REQUIRE(backend
              ->Update([](TableWriter& writer) {
                return writer.Put(Table::kKeys, "kept", {"1"});
              })
              .ok());
  absl::Status failed = backend->Update([](TableWriter& writer) {
    if (absl::Status s = writer.Put(Table::kKeys, "dropped", {"2"}); !s.ok())
      return s;
    if (absl::Status s = writer.Delete(Table::kKeys, "kept"); !s.ok()) return s;
    return absl::AbortedError("the body gave up");
  });
  CHECK(absl::IsAborted(failed));
  absl::StatusOr<std::unique_ptr<TableReader>> reader = backend->BeginRead();
  REQUIRE(reader.ok());
  CHECK(ScanAll(**reader, Table::kKeys, "") == Model{{"kept", "1"}});
}

TEST_CASE(
    "the memory backend keeps 100,000 records and old versions without "
    "copying them per update",
    "[kv][backend]") {
  std::unique_ptr<KvBackend> backend = NewMemoryBackend();
  constexpr int kRecords = 100000;
  REQUIRE(backend
              ->Update([](TableWriter& writer) {
                for (int i = 0; i < kRecords; ++i) {
                  const std::string key = KeyOf(static_cast<uint32_t>(i));
                  if (absl::Status s = writer.Put(Table::kKeys, key, {"x"});
                      !s.ok()) {
                    return s;
                  }
                }
                return absl::OkStatus();
              })
              .ok());
  absl::StatusOr<std::unique_ptr<TableReader>> before = backend->BeginRead();
  REQUIRE(before.ok());
  // A copy of the table per update would make these 100,000 updates copy
  // ten billion records: the test would not finish.
  for (int i = 0; i < kRecords; ++i) {
    REQUIRE(backend
                ->Update([&](TableWriter& writer) {
                  return writer.Put(Table::kKeys,
                                    KeyOf(static_cast<uint32_t>(i)), {"y"});
                })
                .ok());
  }
  absl::StatusOr<std::unique_ptr<TableReader>> after = backend->BeginRead();
  REQUIRE(after.ok());
  const auto count_of = [](const TableReader& reader, std::string_view value) {
    int count = 0;
    REQUIRE(reader
                .Scan(Table::kKeys, "",
                      [&](std::string_view, std::string_view v) {
                        count += v == value;
                        return true;
                      })
                .ok());
    return count;
  };
  CHECK(count_of(**before, "x") == kRecords);
  CHECK(count_of(**after, "y") == kRecords);
}

}  // namespace
}  // namespace confman::kv
