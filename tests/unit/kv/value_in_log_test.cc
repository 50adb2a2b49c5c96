// Values left in the Raft log: a put whose entry the log retains stores a
// reference instead of a copy, reads follow it, snapshots carry the value
// inline, and the references the store still needs are listed exactly.
#include <map>
#include <mutex>

#include "kv_test_util.h"
#include "records.h"

namespace confman::kv {
namespace {

using testing::CommandEntry;
using testing::Delete;
using testing::LmdbMachine;
using testing::MemoryMachine;
using testing::MustApply;
using testing::NoiseBytes;
using testing::Put;

constexpr size_t kRetainFrom = 64 * 1024;

// Messages about one key name its namespace and key apart, never through
// the NUL-joined key of the store's table.
void CheckNamesKey(absl::string_view message, absl::string_view expected) {
  INFO("message: " << std::string(message));
  CHECK(message.find('\0') == absl::string_view::npos);
  CHECK(message.find(expected) != absl::string_view::npos);
}

// An archive holding the entries it was given, retaining large normal ones.
class FakeArchive : public EntryArchive {
 public:
  bool RetainsEntry(const raft::Entry& entry) const override {
    return entry.type == raft::EntryType::kNormal &&
           entry.data.size() >= kRetainFrom;
  }
  absl::StatusOr<std::string> ReadEntryData(raft::Index index) const override {
    std::lock_guard lock(mu_);
    auto it = entries_.find(index);
    if (it == entries_.end()) return absl::NotFoundError("entry not stored");
    return it->second;
  }
  void Store(const raft::Entry& entry) {
    std::lock_guard lock(mu_);
    entries_[entry.index] = entry.data;
  }
  void Replace(raft::Index index, std::string data) {
    std::lock_guard lock(mu_);
    entries_[index] = std::move(data);
  }
  void Drop(raft::Index index) {
    std::lock_guard lock(mu_);
    entries_.erase(index);
  }

 private:
  mutable std::mutex mu_;
  std::map<raft::Index, std::string> entries_;
};

template <typename Machine>
struct WithArchive {
  FakeArchive archive;
  Machine machine;
  std::unique_ptr<KvStateMachine> sm;

  WithArchive() {
    machine.options.value_archive = &archive;
    sm = machine.Open();
  }
  // Logs, then applies, one command at the next index.
  ApplyResult Run(const Command& command) {
    raft::Entry entry = CommandEntry(sm->AppliedIndex() + 1, command);
    archive.Store(entry);
    auto results = MustApply(*sm, {std::move(entry)});
    REQUIRE(results.size() == 1);
    return results[0];
  }
  std::vector<raft::Index> Referenced() {
    return sm->ReferencedLogEntries(0, ~raft::Index{0}).value();
  }
};

TEMPLATE_TEST_CASE("a large value is stored once, in its log entry",
                   "[kv][value_in_log]", MemoryMachine, LmdbMachine) {
  WithArchive<TestType> store;
  const std::string big = NoiseBytes(1 << 20, 1);
  REQUIRE(store.Run(Put("app", "big", big)).outcome.ok());
  REQUIRE(store.Run(Put("app", "small", "tiny")).outcome.ok());
  CHECK(store.Referenced() == std::vector<raft::Index>{1});

  const KeyValue got = store.sm->Get("app", "big").value();
  CHECK(got.value == big);
  CHECK(got.stored_bytes == big.size());
  CHECK(store.sm->Get("app", "small")->value == "tiny");
  auto page = store.sm->List({.ns = "app", .limit = 10});
  REQUIRE(page.ok());
  REQUIRE(page->items.size() == 2);
  CHECK(page->items[0].value == big);

  if constexpr (TestType::kDurable) {
    for (int i = 0; i < 7; ++i) {
      REQUIRE(store
                  .Run(Put("app", "more" + std::to_string(i),
                           NoiseBytes(1 << 20, 10 + i)))
                  .outcome.ok());
    }
    // Eight 1 MiB values, none of them copied into the state's file.
    CHECK(store.sm->StorageBytes() < (uint64_t{2} << 20));
  }
}

TEMPLATE_TEST_CASE("references follow overwrites, deletes and failed writes",
                   "[kv][value_in_log]", MemoryMachine, LmdbMachine) {
  WithArchive<TestType> store;
  const std::string big = NoiseBytes(200 * 1024, 2);
  REQUIRE(store.Run(Put("app", "k", big)).outcome.ok());  // 1
  CHECK(store.Referenced() == std::vector<raft::Index>{1});
  REQUIRE(store.Run(Put("app", "k", big + "x")).outcome.ok());  // 2
  CHECK(store.Referenced() == std::vector<raft::Index>{2});
  REQUIRE(store.Run(Put("app", "k", "small now")).outcome.ok());  // 3
  CHECK(store.Referenced().empty());
  REQUIRE(store.Run(Put("app", "k", big)).outcome.ok());  // 4
  CHECK(store.sm->ReferencedLogEntries(4, 4).value() ==
        std::vector<raft::Index>{4});
  CHECK(store.sm->ReferencedLogEntries(1, 3).value().empty());
  CHECK(store.sm->ReferencedLogEntries(5, 100).value().empty());
  // A compare-and-set that loses keeps the current value's reference.
  CHECK(absl::IsFailedPrecondition(
      store.Run(Put("app", "k", big + "y", /*expected=*/1)).outcome));  // 5
  CHECK(store.Referenced() == std::vector<raft::Index>{4});
  CHECK(store.sm->Get("app", "k")->value == big);
  REQUIRE(store.Run(Delete("app", "k")).outcome.ok());  // 6
  CHECK(store.Referenced().empty());
  CHECK(absl::IsNotFound(store.sm->Get("app", "k").status()));
}

TEMPLATE_TEST_CASE("a snapshot carries values from the log inline",
                   "[kv][value_in_log]", MemoryMachine, LmdbMachine) {
  WithArchive<TestType> source_store;
  const std::string big = NoiseBytes(300 * 1024, 3);
  REQUIRE(source_store.Run(Put("app", "big", big)).outcome.ok());
  REQUIRE(source_store.Run(Put("app", "small", "s")).outcome.ok());

  auto source = source_store.sm->OpenSnapshot();
  REQUIRE(source.ok());
  CHECK(source_store.sm->OpenSnapshotCount() == 1);
  // The receiver's log holds none of the sender's entries.
  TestType receiver_machine;
  auto receiver = receiver_machine.Open();
  auto sink = receiver->BeginRestore((*source)->meta());
  REQUIRE(sink.ok());
  REQUIRE(testing::Transfer(**source, **sink).ok());
  source->reset();
  CHECK(source_store.sm->OpenSnapshotCount() == 0);

  CHECK(receiver->Get("app", "big")->value == big);
  CHECK(receiver->Get("app", "small")->value == "s");
  CHECK(receiver->ReferencedLogEntries(0, ~raft::Index{0})->empty());
}

TEMPLATE_TEST_CASE("a value missing from the log is a clear error",
                   "[kv][value_in_log]", MemoryMachine, LmdbMachine) {
  WithArchive<TestType> store;
  const std::string big = NoiseBytes(100 * 1024, 4);
  REQUIRE(store.Run(Put("app", "a", big)).outcome.ok());
  REQUIRE(store.Run(Put("app", "b", big)).outcome.ok());

  // Dropped while the record still points at it: the read retries, then
  // tells the caller to retry.
  store.archive.Drop(1);
  absl::StatusOr<KeyValue> dropped = store.sm->Get("app", "a");
  CHECK(absl::IsAborted(dropped.status()));
  CHECK(dropped.status().message().find("retry") != std::string_view::npos);
  CheckNamesKey(dropped.status().message(), R"(namespace "app", key "a")");
  CHECK(absl::IsAborted(store.sm->List({.ns = "app", .limit = 10}).status()));

  // An entry that is not the recorded put is damage, not a race.
  store.archive.Replace(
      2, std::string(CommandEntry(2, Put("app", "other", big)).data.view()));
  const absl::Status damaged = store.sm->Get("app", "b").status();
  CHECK(absl::IsDataLoss(damaged));
  CheckNamesKey(damaged.message(), R"(namespace "app", key "b")");
  // Metadata needs no value.
  auto keys = store.sm->List({.ns = "app", .limit = 10, .keys_only = true});
  REQUIRE(keys.ok());
  CHECK(keys->items.size() == 2);
}

TEST_CASE("a store reopened without its log says what is missing",
          "[kv][value_in_log][lmdb]") {
  LmdbMachine machine;
  FakeArchive archive;
  machine.options.value_archive = &archive;
  {
    auto sm = machine.Open();
    raft::Entry entry =
        CommandEntry(1, Put("app", "big", NoiseBytes(kRetainFrom, 5)));
    archive.Store(entry);
    MustApply(*sm, {std::move(entry)});
  }
  machine.options.value_archive = nullptr;
  auto sm = machine.Open();
  absl::Status status = sm->Get("app", "big").status();
  CHECK(absl::IsFailedPrecondition(status));
  CHECK(status.message().find("value_archive") != std::string_view::npos);
  CheckNamesKey(status.message(), R"(namespace "app", key "big")");
}

TEST_CASE("a key is named readably whatever bytes it holds", "[kv]") {
  CHECK(DescribeTableKey(KeysTableKey("ns", "k")) ==
        R"(namespace "ns", key "k")");
  // Keys may hold any byte, a NUL or a quote included; only the first NUL
  // separates the namespace.
  const std::string odd =
      DescribeTableKey(KeysTableKey("app", std::string("a\0b\"c\n", 6)));
  CHECK(odd == R"(namespace "app", key "a\000b\"c\n")");
  CheckNamesKey(odd, R"(namespace "app")");
  CHECK(DescribeTableKey(KeysTableKey("app", "")) ==
        R"(namespace "app", key "")");
}

}  // namespace
}  // namespace confman::kv
