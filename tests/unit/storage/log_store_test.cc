// One conformance suite for every LogStore, plus LMDB-only behaviour:
// persistence, corruption detection, group commit and map growth.
#include "confman/log_store.h"

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <thread>

#include "confman/storage/lmdb.h"
#include "confman/storage/memory.h"
#include "confman/testing/fault_injecting_log_store.h"
#include "test_dir.h"

namespace confman {
namespace {

using raft::Entry;
using raft::EntryType;
using raft::HardState;

Entry MakeEntry(raft::Index index, raft::Term term, std::string data = "") {
  if (data.empty())
    data = "entry-" + std::to_string(index) + "-" + std::to_string(term);
  return Entry{
      .term = term, .index = index, .type = EntryType::kNormal, .data = data};
}

std::vector<Entry> MakeEntries(raft::Index first, raft::Index last,
                               raft::Term term) {
  std::vector<Entry> out;
  for (raft::Index i = first; i <= last; ++i) out.push_back(MakeEntry(i, term));
  return out;
}

LogWrite Append(std::vector<Entry> entries) {
  return LogWrite{.hard_state = std::nullopt, .entries = std::move(entries)};
}

struct MemoryFactory {
  std::unique_ptr<LogStore> Open() {
    return std::make_unique<MemoryLogStore>();
  }
};

struct LmdbFactory {
  testing::TempDir dir;
  std::unique_ptr<LogStore> Open() {
    auto store = LmdbLogStore::Open({.dir = dir.path() + "/log"});
    REQUIRE(store.ok());
    return std::move(store).value();
  }
};

TEMPLATE_TEST_CASE("an empty log answers like MemoryLog", "[log_store]",
                   MemoryFactory, LmdbFactory) {
  TestType factory;
  auto log = factory.Open();
  CHECK(log->FirstIndex() == 1);
  CHECK(log->LastIndex() == 0);
  CHECK(log->TermAt(0).value() == 0);
  CHECK(absl::IsOutOfRange(log->TermAt(1).status()));
  CHECK(log->Entries(1, 1, 100).value().empty());
  CHECK(absl::IsOutOfRange(log->Entries(1, 2, 100).status()));
  CHECK(log->LoadHardState().value() == HardState{});
}

TEMPLATE_TEST_CASE("appended entries and hard state read back", "[log_store]",
                   MemoryFactory, LmdbFactory) {
  TestType factory;
  auto log = factory.Open();
  const HardState hs{.term = 3, .vote = 2, .commit = 4};
  REQUIRE(
      log->WriteSync({.hard_state = hs, .entries = MakeEntries(1, 5, 3)}).ok());
  CHECK(log->LastIndex() == 5);
  CHECK(log->TermAt(5).value() == 3);
  CHECK(log->LoadHardState().value() == hs);
  CHECK(log->Entries(1, 6, 1u << 20).value() == MakeEntries(1, 5, 3));
  Entry membership = MakeEntry(6, 3, "members");
  membership.type = EntryType::kMembership;
  REQUIRE(log->WriteSync(Append({membership})).ok());
  CHECK(log->Entries(6, 7, 0).value().front() == membership);
}

TEMPLATE_TEST_CASE("the byte budget always returns at least one entry",
                   "[log_store]", MemoryFactory, LmdbFactory) {
  TestType factory;
  auto log = factory.Open();
  REQUIRE(log->WriteSync(Append({MakeEntry(1, 1, std::string(100, 'a')),
                                 MakeEntry(2, 1, std::string(100, 'b')),
                                 MakeEntry(3, 1, std::string(100, 'c'))}))
              .ok());
  CHECK(log->Entries(1, 4, 10).value().size() == 1);
  CHECK(log->Entries(1, 4, 200).value().size() == 2);
  CHECK(log->Entries(1, 4, 199).value().size() == 1);
  CHECK(log->Entries(2, 4, 1000).value().size() == 2);
}

TEMPLATE_TEST_CASE("a write replaces the stored suffix", "[log_store]",
                   MemoryFactory, LmdbFactory) {
  TestType factory;
  auto log = factory.Open();
  REQUIRE(log->WriteSync(Append(MakeEntries(1, 10, 1))).ok());
  REQUIRE(log->WriteSync(Append(MakeEntries(4, 6, 2))).ok());
  CHECK(log->LastIndex() == 6);
  CHECK(log->TermAt(3).value() == 1);
  CHECK(log->TermAt(4).value() == 2);
  CHECK(absl::IsOutOfRange(log->TermAt(7).status()));
  auto entries = log->Entries(1, 7, 1u << 20).value();
  REQUIRE(entries.size() == 6);
  CHECK(entries[5] == MakeEntry(6, 2));
}

TEMPLATE_TEST_CASE("malformed writes are refused and the log keeps working",
                   "[log_store]", MemoryFactory, LmdbFactory) {
  TestType factory;
  auto log = factory.Open();
  REQUIRE(log->WriteSync(Append(MakeEntries(1, 3, 1))).ok());
  CHECK(absl::IsInvalidArgument(log->WriteSync(Append({MakeEntry(5, 1)}))));
  CHECK(absl::IsInvalidArgument(
      log->WriteSync(Append({MakeEntry(4, 1), MakeEntry(6, 1)}))));
  CHECK(log->LastIndex() == 3);
  CHECK(log->WriteSync(Append({MakeEntry(4, 1)})).ok());
  CHECK(log->LastIndex() == 4);
}

TEMPLATE_TEST_CASE("compaction keeps the term of the compaction point",
                   "[log_store]", MemoryFactory, LmdbFactory) {
  TestType factory;
  auto log = factory.Open();
  REQUIRE(log->WriteSync(Append(MakeEntries(1, 10, 2))).ok());
  REQUIRE(log->CompactPrefix(4).ok());
  CHECK(log->FirstIndex() == 5);
  CHECK(log->TermAt(4).value() == 2);
  CHECK(absl::IsOutOfRange(log->TermAt(3).status()));
  CHECK(absl::IsOutOfRange(log->Entries(4, 6, 100).status()));
  CHECK(log->Entries(5, 11, 1u << 20).value().size() == 6);
  CHECK(log->CompactPrefix(2).ok());  // Below the point: no-op.
  CHECK(log->FirstIndex() == 5);
  CHECK(absl::IsInvalidArgument(log->CompactPrefix(11)));
  CHECK(absl::IsInvalidArgument(log->WriteSync(Append({MakeEntry(4, 3)}))));
  REQUIRE(log->CompactPrefix(10).ok());
  CHECK(log->FirstIndex() == 11);
  CHECK(log->LastIndex() == 10);
  CHECK(log->TermAt(10).value() == 2);
  CHECK(log->WriteSync(Append({MakeEntry(11, 3)})).ok());
}

TEMPLATE_TEST_CASE("a reset leaves the empty log after a snapshot",
                   "[log_store]", MemoryFactory, LmdbFactory) {
  TestType factory;
  auto log = factory.Open();
  const HardState hs{.term = 7, .vote = 1, .commit = 3};
  REQUIRE(
      log->WriteSync({.hard_state = hs, .entries = MakeEntries(1, 5, 1)}).ok());
  REQUIRE(log->ResetToSnapshot(40, 6).ok());
  CHECK(log->FirstIndex() == 41);
  CHECK(log->LastIndex() == 40);
  CHECK(log->TermAt(40).value() == 6);
  CHECK(absl::IsOutOfRange(log->TermAt(5).status()));
  CHECK(log->LoadHardState().value() == hs);
  CHECK(log->WriteSync(Append({MakeEntry(41, 7)})).ok());
  CHECK(log->Entries(41, 42, 10).value().front() == MakeEntry(41, 7));
}

TEMPLATE_TEST_CASE("a write that resets the log applies the reset first",
                   "[log_store]", MemoryFactory, LmdbFactory) {
  TestType factory;
  auto log = factory.Open();
  REQUIRE(log->WriteSync(Append(MakeEntries(1, 60, 1))).ok());
  // Queued behind an ordinary write, the reset and the entries that follow
  // the snapshot become durable together, after it.
  std::vector<int> order;
  log->Write(Append(MakeEntries(61, 62, 1)), [&](absl::Status s) {
    CHECK(s.ok());
    order.push_back(1);
  });
  const HardState hs{.term = 6, .vote = 2, .commit = 40};
  REQUIRE(log->WriteSync({.reset = LogResetPoint{.index = 40, .term = 5},
                          .hard_state = hs,
                          .entries = MakeEntries(41, 43, 6)})
              .ok());
  CHECK(order == std::vector<int>{1});
  CHECK(log->FirstIndex() == 41);
  CHECK(log->LastIndex() == 43);
  CHECK(log->TermAt(40).value() == 5);
  CHECK(log->TermAt(43).value() == 6);
  CHECK(absl::IsOutOfRange(log->TermAt(39).status()));
  CHECK(log->LoadHardState().value() == hs);

  // Entries that would not follow the reset are refused with the whole
  // write: the log is unchanged.
  CHECK(absl::IsInvalidArgument(
      log->WriteSync({.reset = LogResetPoint{.index = 50, .term = 6},
                      .entries = MakeEntries(52, 52, 6)})));
  CHECK(log->FirstIndex() == 41);
  CHECK(log->LastIndex() == 43);
  // A reset alone.
  REQUIRE(
      log->WriteSync({.reset = LogResetPoint{.index = 70, .term = 7}}).ok());
  CHECK(log->FirstIndex() == 71);
  CHECK(log->LastIndex() == 70);
  CHECK(log->TermAt(70).value() == 7);
}

TEMPLATE_TEST_CASE("callbacks run once each, in submission order",
                   "[log_store]", MemoryFactory, LmdbFactory) {
  TestType factory;
  auto log = factory.Open();
  std::mutex mu;
  std::vector<int> order;
  std::vector<absl::Status> statuses;
  for (int i = 1; i <= 50; ++i) {
    // Index 30 is written twice: the second write is a gap and fails alone.
    const raft::Index index = i == 31 ? 60 : static_cast<raft::Index>(i);
    log->Write(Append({MakeEntry(index, 1)}), [&, i](absl::Status status) {
      std::lock_guard lock(mu);
      order.push_back(i);
      statuses.push_back(status);
    });
  }
  REQUIRE(log->WriteSync(LogWrite{}).ok());  // Drains the queue.
  std::lock_guard lock(mu);
  REQUIRE(order.size() == 50);
  for (int i = 0; i < 50; ++i) CHECK(order[i] == i + 1);
  CHECK(absl::IsInvalidArgument(statuses[30]));
  CHECK(statuses[29].ok());
  CHECK(absl::IsInvalidArgument(statuses[31]));  // 32 after the failed 31.
  CHECK(log->LastIndex() == 30);
}

TEST_CASE("the LMDB log survives a reopen", "[log_store][lmdb]") {
  LmdbFactory factory;
  const HardState hs{.term = 5, .vote = 3, .commit = 8};
  {
    auto log = factory.Open();
    REQUIRE(log->WriteSync({.hard_state = hs, .entries = MakeEntries(1, 20, 5)})
                .ok());
    REQUIRE(log->CompactPrefix(8).ok());
  }
  auto log = factory.Open();
  CHECK(log->FirstIndex() == 9);
  CHECK(log->LastIndex() == 20);
  CHECK(log->TermAt(8).value() == 5);
  CHECK(log->LoadHardState().value() == hs);
  CHECK(log->Entries(9, 21, 1u << 20).value() == MakeEntries(9, 20, 5));
}

// Flips one byte of `needle` inside the environment's data file.
void FlipByteOf(const std::string& file, const std::string& needle) {
  std::string bytes;
  {
    std::ifstream in(file, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  const size_t at = bytes.find(needle);
  REQUIRE(at != std::string::npos);
  std::fstream out(file, std::ios::in | std::ios::out | std::ios::binary);
  out.seekp(static_cast<std::streamoff>(at + needle.size() / 2));
  out.put(static_cast<char>(bytes[at + needle.size() / 2] ^ 0x01));
}

TEST_CASE("a flipped byte is reported as data loss naming the index",
          "[log_store][lmdb]") {
  LmdbFactory factory;
  {
    auto log = factory.Open();
    std::vector<Entry> entries = MakeEntries(1, 5, 1);
    entries[2].data = "a-recognisable-payload-for-entry-three";
    REQUIRE(log->WriteSync(Append(entries)).ok());
  }
  FlipByteOf(factory.dir.path() + "/log/data.mdb", "recognisable-payload");
  auto log = factory.Open();
  auto read = log->Entries(1, 6, 1u << 20);
  REQUIRE(absl::IsDataLoss(read.status()));
  CHECK_THAT(std::string(read.status().message()),
             Catch::Contains("log entry 3 "));
  CHECK(log->Entries(1, 3, 1u << 20).value().size() == 2);
  CHECK(log->Entries(4, 6, 1u << 20).value().size() == 2);
  CHECK(log->WriteSync(Append({MakeEntry(6, 1)})).ok());
}

TEST_CASE("concurrent appenders share commits", "[log_store][lmdb]") {
  testing::TempDir dir;
  auto log = LmdbLogStore::Open({.dir = dir.path() + "/log"}).value();
  std::atomic<raft::Index> next{1};
  std::mutex order_mu;  // Indexes must be queued in order: serialize submit.
  std::atomic<int> failures{0};
  std::vector<std::thread> appenders;
  for (int t = 0; t < 8; ++t) {
    appenders.emplace_back([&] {
      for (int i = 0; i < 25; ++i) {
        std::promise<absl::Status> done;
        auto result = done.get_future();
        {
          std::lock_guard lock(order_mu);
          log->Write(Append({MakeEntry(next++, 1)}),
                     [&done](absl::Status s) { done.set_value(s); });
        }
        if (!result.get().ok()) ++failures;
      }
    });
  }
  for (auto& t : appenders) t.join();
  CHECK(failures == 0);
  CHECK(log->LastIndex() == 200);
  const LogStoreStats stats = log->Stats();
  CHECK(stats.writes == 200);
  CHECK(stats.commits < stats.writes);
}

TEST_CASE("the LMDB map grows instead of failing", "[log_store][lmdb]") {
  testing::TempDir dir;
  auto log = LmdbLogStore::Open({.dir = dir.path() + "/log",
                                 .initial_map_bytes = 1u << 20,
                                 .max_map_bytes = 64u << 20})
                 .value();
  for (raft::Index i = 1; i <= 16; ++i) {
    REQUIRE(
        log->WriteSync(Append({MakeEntry(i, 1, std::string(512 << 10, 'x'))}))
            .ok());
  }
  CHECK(log->Stats().map_bytes > (1u << 20));
  CHECK(log->Entries(16, 17, 1).value().front().data.size() == (512u << 10));
}

TEST_CASE("a full map is a clear error and compaction recovers",
          "[log_store][lmdb]") {
  testing::TempDir dir;
  auto log = LmdbLogStore::Open({.dir = dir.path() + "/log",
                                 .initial_map_bytes = 4u << 20,
                                 .max_map_bytes = 4u << 20})
                 .value();
  raft::Index i = 1;
  absl::Status status;
  for (; i <= 64 && status.ok(); ++i) {
    status =
        log->WriteSync(Append({MakeEntry(i, 1, std::string(256 << 10, 'y'))}));
  }
  REQUIRE(absl::IsResourceExhausted(status));
  CHECK_THAT(std::string(status.message()), Catch::Contains("max_map_bytes"));
  const raft::Index last = log->LastIndex();
  REQUIRE(log->CompactPrefix(last).ok());
  // Freed pages are reused once no reader pins them.
  for (int k = 0; k < 2; ++k)
    REQUIRE(log->WriteSync(LogWrite{.hard_state = HardState{}, .entries = {}})
                .ok());
  CHECK(log->WriteSync(
               Append({MakeEntry(last + 1, 1, std::string(256 << 10, 'z'))}))
            .ok());
}

TEST_CASE("options are validated", "[log_store][lmdb]") {
  CHECK(absl::IsInvalidArgument(LmdbLogStoreOptions{}.Validate()));
  CHECK(absl::IsInvalidArgument(
      LmdbLogStoreOptions{.dir = "x", .initial_map_bytes = 10}.Validate()));
  CHECK(absl::IsInvalidArgument(LmdbLogStore::Open({}).status()));
}

}  // namespace
}  // namespace confman

namespace confman {
namespace {

TEST_CASE("a store is refused in a forked child", "[log_store][lmdb]") {
  testing::TempDir dir;
  auto log = LmdbLogStore::Open({.dir = dir.path() + "/log"}).value();
  REQUIRE(log->WriteSync(Append({MakeEntry(1, 1)})).ok());
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // Only reads: the writer thread does not exist in the child.
    const auto read = log->Entries(1, 2, 100);
    _exit(absl::IsFailedPrecondition(read.status()) ? 0 : 1);
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(log->Entries(1, 2, 100).ok());
}

}  // namespace
}  // namespace confman

namespace confman {
namespace {

TEST_CASE("the fault injector fails what it is told to, then passes through",
          "[log_store]") {
  MemoryLogStore memory;
  FaultInjectingLogStore log(&memory);
  REQUIRE(log.WriteSync(Append({MakeEntry(1, 1)})).ok());
  log.FailNextWrites(2, absl::UnavailableError("disk unplugged"));
  CHECK(absl::IsUnavailable(log.WriteSync(Append({MakeEntry(2, 1)}))));
  CHECK(absl::IsUnavailable(log.CompactPrefix(1)));
  CHECK(log.LastIndex() == 1);
  CHECK(log.FirstIndex() == 1);
  CHECK(log.WriteSync(Append({MakeEntry(2, 1)})).ok());
  log.FailReads(absl::DataLossError("log entry 2 is corrupt"));
  CHECK(absl::IsDataLoss(log.Entries(1, 3, 100).status()));
  CHECK(absl::IsDataLoss(log.TermAt(2).status()));
  log.FailReads(std::nullopt);
  CHECK(log.Entries(1, 3, 100).value().size() == 2);
}

}  // namespace
}  // namespace confman

// Retained entries: large normal entries kept after they leave the log.
namespace confman {
namespace {

constexpr uint64_t kRetainFrom = 64;

Entry Large(raft::Index index, raft::Term term, size_t bytes = kRetainFrom,
            EntryType type = EntryType::kNormal) {
  std::string data = "value-" + std::to_string(index) + "-";
  data.resize(bytes, static_cast<char>('a' + index % 26));
  return Entry{.term = term, .index = index, .type = type, .data = data};
}

struct RetainingMemoryFactory {
  std::unique_ptr<LogStore> Open() {
    return std::make_unique<MemoryLogStore>(kRetainFrom);
  }
};

struct RetainingLmdbFactory {
  testing::TempDir dir;
  std::unique_ptr<LogStore> Open() {
    auto store = LmdbLogStore::Open(
        {.dir = dir.path() + "/log", .retain_entries_from_bytes = kRetainFrom});
    REQUIRE(store.ok());
    return std::move(store).value();
  }
};

using Indexes = std::vector<raft::Index>;

// 1 small, 2 large, 3 large membership, 4 exactly the threshold,
// 5 one byte short, 6 large, 7 small; all at term 2.
std::vector<Entry> MixedEntries() {
  return {MakeEntry(1, 2),
          Large(2, 2, 300),
          Large(3, 2, 300, EntryType::kMembership),
          Large(4, 2, kRetainFrom),
          Large(5, 2, kRetainFrom - 1),
          Large(6, 2, 500),
          MakeEntry(7, 2)};
}

TEMPLATE_TEST_CASE(
    "large normal entries outlive compaction, invisible to the log",
    "[log_store][retain]", RetainingMemoryFactory, RetainingLmdbFactory) {
  TestType factory;
  auto log = factory.Open();
  const std::vector<Entry> entries = MixedEntries();
  // The predicate: normal entries of at least kRetainFrom data bytes.
  CHECK_FALSE(log->RetainsEntry(entries[0]));
  CHECK(log->RetainsEntry(entries[1]));
  CHECK_FALSE(log->RetainsEntry(entries[2]));
  CHECK(log->RetainsEntry(entries[3]));
  CHECK_FALSE(log->RetainsEntry(entries[4]));
  REQUIRE(log->WriteSync(Append(entries)).ok());
  REQUIRE(log->CompactPrefix(5).ok());
  CHECK(log->RetainedIndexes(0, 100).value() == Indexes{2, 4});
  CHECK(log->ReadEntryData(2).value() == entries[1].data);
  CHECK(log->ReadEntryData(4).value() == entries[3].data);
  for (raft::Index dropped : {1, 3, 5}) {
    INFO("index " << dropped);
    CHECK(absl::IsNotFound(log->ReadEntryData(dropped).status()));
  }
  CHECK(log->ReadEntryData(6).value() == entries[5].data);  // Still in the log.
  CHECK(log->ReadEntryData(7).value() == entries[6].data);
  CHECK(absl::IsNotFound(log->ReadEntryData(8).status()));
  CHECK(log->FirstIndex() == 6);
  CHECK(log->LastIndex() == 7);
  CHECK(log->TermAt(5).value() == 2);
  CHECK(absl::IsOutOfRange(log->TermAt(4).status()));
  CHECK(absl::IsOutOfRange(log->TermAt(2).status()));
  CHECK(absl::IsOutOfRange(log->Entries(4, 6, 1u << 20).status()));
  CHECK(log->Entries(6, 8, 1u << 20).value() ==
        std::vector<Entry>{entries[5], entries[6]});
  REQUIRE(log->CompactPrefix(7).ok());
  CHECK(log->RetainedIndexes(0, 100).value() == Indexes{2, 4, 6});
  // Paged: at most `limit`, strictly after `after`.
  CHECK(log->RetainedIndexes(0, 2).value() == Indexes{2, 4});
  CHECK(log->RetainedIndexes(4, 2).value() == Indexes{6});
  CHECK(log->RetainedIndexes(6, 2).value().empty());
  CHECK(log->RetainedIndexes(0, 0).value().empty());
  CHECK(log->WriteSync(Append({MakeEntry(8, 3)})).ok());
  CHECK(log->FirstIndex() == 8);
  CHECK(log->Entries(8, 9, 100).value().front() == MakeEntry(8, 3));
}

TEMPLATE_TEST_CASE("a reset retains large entries at or below its index only",
                   "[log_store][retain]", RetainingMemoryFactory,
                   RetainingLmdbFactory) {
  TestType factory;
  auto log = factory.Open();
  REQUIRE(log->WriteSync(Append({MakeEntry(1, 1), Large(2, 1), MakeEntry(3, 1),
                                 MakeEntry(4, 1), Large(5, 1), MakeEntry(6, 1),
                                 Large(7, 1), MakeEntry(8, 1)}))
              .ok());
  REQUIRE(log->CompactPrefix(3).ok());
  REQUIRE(log->ResetToSnapshot(6, 9).ok());
  CHECK(log->RetainedIndexes(0, 100).value() == Indexes{2, 5});
  CHECK(log->ReadEntryData(5).value() == Large(5, 1).data);
  CHECK(absl::IsNotFound(log->ReadEntryData(7).status()));
  CHECK(absl::IsNotFound(log->ReadEntryData(4).status()));
  CHECK(log->FirstIndex() == 7);
  CHECK(log->LastIndex() == 6);
  CHECK(log->TermAt(6).value() == 9);
  REQUIRE(log->WriteSync(Append({Large(7, 10, 100)})).ok());
  CHECK(log->Entries(7, 8, 1).value().front() == Large(7, 10, 100));
  // A reset below a retained entry drops it like any entry above the index.
  REQUIRE(log->ResetToSnapshot(3, 11).ok());
  CHECK(log->RetainedIndexes(0, 100).value() == Indexes{2});
  CHECK(absl::IsNotFound(log->ReadEntryData(5).status()));
  CHECK(absl::IsNotFound(log->ReadEntryData(7).status()));
  CHECK(log->WriteSync(Append({MakeEntry(4, 11)})).ok());
  CHECK(log->LastIndex() == 4);
}

TEMPLATE_TEST_CASE("DropRetained removes the listed retained entries only",
                   "[log_store][retain]", RetainingMemoryFactory,
                   RetainingLmdbFactory) {
  TestType factory;
  auto log = factory.Open();
  REQUIRE(log->WriteSync(Append({Large(1, 1), Large(2, 1), Large(3, 1),
                                 MakeEntry(4, 1), Large(5, 1), Large(6, 1)}))
              .ok());
  REQUIRE(log->CompactPrefix(4).ok());
  REQUIRE(log->RetainedIndexes(0, 100).value() == Indexes{1, 2, 3});
  // 4 held nothing; 5 is in the log; 99 was never stored.
  REQUIRE(log->DropRetained({2, 4, 5, 99}).ok());
  CHECK(log->RetainedIndexes(0, 100).value() == Indexes{1, 3});
  CHECK(absl::IsNotFound(log->ReadEntryData(2).status()));
  CHECK(log->ReadEntryData(1).value() == Large(1, 1).data);
  CHECK(log->ReadEntryData(5).value() == Large(5, 1).data);
  CHECK(log->Entries(5, 7, 1u << 20).value().size() == 2);
  CHECK(log->FirstIndex() == 5);
  REQUIRE(log->DropRetained({1, 3}).ok());
  CHECK(log->RetainedIndexes(0, 100).value().empty());
  CHECK(log->TermAt(4).value() == 1);
}

TEMPLATE_TEST_CASE("a store with retention off keeps nothing after compaction",
                   "[log_store][retain]", MemoryFactory, LmdbFactory) {
  TestType factory;
  auto log = factory.Open();
  CHECK_FALSE(log->RetainsEntry(Large(1, 1, 1u << 20)));
  REQUIRE(log->WriteSync(Append({Large(1, 1, 4096), Large(2, 1, 4096),
                                 Large(3, 1, 4096)}))
              .ok());
  CHECK(log->ReadEntryData(2).value() == Large(2, 1, 4096).data);
  REQUIRE(log->CompactPrefix(2).ok());
  CHECK(log->RetainedIndexes(0, 100).value().empty());
  CHECK(absl::IsNotFound(log->ReadEntryData(1).status()));
  CHECK(absl::IsNotFound(log->ReadEntryData(2).status()));
  REQUIRE(log->ResetToSnapshot(3, 2).ok());
  CHECK(log->RetainedIndexes(0, 100).value().empty());
  CHECK(absl::IsNotFound(log->ReadEntryData(3).status()));
}

TEST_CASE("retained entries and drops survive a reopen",
          "[log_store][lmdb][retain]") {
  RetainingLmdbFactory factory;
  {
    auto log = factory.Open();
    REQUIRE(
        log->WriteSync(Append({Large(1, 1), MakeEntry(2, 1), Large(3, 1),
                               Large(4, 1), MakeEntry(5, 1), MakeEntry(6, 2)}))
            .ok());
    REQUIRE(log->CompactPrefix(5).ok());
    REQUIRE(log->DropRetained({3}).ok());
  }
  {
    auto log = factory.Open();
    CHECK(log->FirstIndex() == 6);
    CHECK(log->LastIndex() == 6);
    CHECK(log->TermAt(5).value() == 1);
    CHECK(log->RetainedIndexes(0, 100).value() == Indexes{1, 4});
    CHECK(log->ReadEntryData(4).value() == Large(4, 1).data);
    CHECK(absl::IsNotFound(log->ReadEntryData(3).status()));
    // Leaves only retained entries stored, all below the snapshot.
    REQUIRE(log->ResetToSnapshot(10, 3).ok());
  }
  auto log = factory.Open();
  CHECK(log->FirstIndex() == 11);
  CHECK(log->LastIndex() == 10);
  CHECK(log->TermAt(10).value() == 3);
  CHECK(log->RetainedIndexes(0, 100).value() == Indexes{1, 4});
  CHECK(log->WriteSync(Append({MakeEntry(11, 3)})).ok());
  CHECK(log->Entries(11, 12, 100).value().front() == MakeEntry(11, 3));
}

TEST_CASE("a corrupt retained entry reads as data loss naming its index",
          "[log_store][lmdb][retain]") {
  RetainingLmdbFactory factory;
  // Larger than a page: LMDB keeps it in overflow pages that compaction
  // does not copy, so the file holds one copy to damage.
  Entry precious = Large(2, 1, 8192);
  std::string precious_bytes(precious.data.view());
  precious_bytes.replace(100, 30, "a-retained-recognisable-value");
  precious.data = std::move(precious_bytes);
  {
    auto log = factory.Open();
    REQUIRE(
        log->WriteSync(Append({MakeEntry(1, 1), precious, Large(3, 1)})).ok());
    REQUIRE(log->CompactPrefix(3).ok());
    REQUIRE(log->RetainedIndexes(0, 100).value() == Indexes{2, 3});
  }
  FlipByteOf(factory.dir.path() + "/log/data.mdb", "retained-recognisable");
  auto log = factory.Open();
  auto read = log->ReadEntryData(2);
  REQUIRE(absl::IsDataLoss(read.status()));
  CHECK_THAT(std::string(read.status().message()),
             Catch::Contains("log entry 2 "));
  CHECK(log->ReadEntryData(3).value() == Large(3, 1).data);
  CHECK(log->RetainedIndexes(0, 100).value() == Indexes{2, 3});
}

TEST_CASE("retained entries read consistently while the log is written",
          "[log_store][lmdb][retain]") {
  RetainingLmdbFactory factory;
  auto log = factory.Open();
  REQUIRE(log->WriteSync(Append({Large(1, 1, 4096)})).ok());
  REQUIRE(log->CompactPrefix(1).ok());
  std::atomic<bool> stop{false};
  std::atomic<int> bad_reads{0};
  std::thread reader([&] {
    for (int i = 0; i < 100000 && !stop; ++i) {
      auto data = log->ReadEntryData(1);
      if (!data.ok() || *data != Large(1, 1, 4096).data) ++bad_reads;
    }
  });
  for (raft::Index i = 2; i <= 101; ++i) {
    REQUIRE(log->WriteSync(Append({Large(i, 1, 200)})).ok());
    if (i % 10 == 0) REQUIRE(log->CompactPrefix(i - 5).ok());
  }
  stop = true;
  reader.join();
  CHECK(bad_reads == 0);
  auto retained = log->RetainedIndexes(0, 100).value();
  REQUIRE(retained.size() == 95);  // 1..95: the last compaction was through 95.
  CHECK(retained.front() == 1);
  CHECK(retained.back() == 95);
}

TEST_CASE("the fault injector covers retained-entry reads and drops",
          "[log_store][retain]") {
  MemoryLogStore memory(kRetainFrom);
  FaultInjectingLogStore log(&memory);
  CHECK(log.RetainsEntry(Large(1, 1)));
  REQUIRE(
      log.WriteSync(Append({Large(1, 1), Large(2, 1), MakeEntry(3, 1)})).ok());
  REQUIRE(log.CompactPrefix(2).ok());
  CHECK(log.RetainedIndexes(0, 100).value() == Indexes{1, 2});
  log.FailReads(absl::DataLossError("log entry 1 is corrupt"));
  CHECK(absl::IsDataLoss(log.ReadEntryData(1).status()));
  log.FailReads(std::nullopt);
  CHECK(log.ReadEntryData(1).value() == Large(1, 1).data);
  log.FailNextWrites(1, absl::UnavailableError("disk unplugged"));
  CHECK(absl::IsUnavailable(log.DropRetained({1})));
  CHECK(memory.RetainedIndexes(0, 100).value() == Indexes{1, 2});
  REQUIRE(log.DropRetained({1}).ok());
  CHECK(memory.RetainedIndexes(0, 100).value() == Indexes{2});
}

}  // namespace
}  // namespace confman
