// One conformance suite for every LogStore, plus LMDB-only behaviour:
// persistence, corruption detection, group commit and map growth.
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <thread>

#include <catch2/catch.hpp>

#include "confman/log_store.h"
#include "test_dir.h"

namespace confman {
namespace {

using raft::Entry;
using raft::EntryType;
using raft::HardState;

Entry MakeEntry(raft::Index index, raft::Term term, std::string data = "") {
  if (data.empty()) data = "entry-" + std::to_string(index) + "-" + std::to_string(term);
  return Entry{.term = term, .index = index, .type = EntryType::kNormal, .data = data};
}

std::vector<Entry> MakeEntries(raft::Index first, raft::Index last, raft::Term term) {
  std::vector<Entry> out;
  for (raft::Index i = first; i <= last; ++i) out.push_back(MakeEntry(i, term));
  return out;
}

LogWrite Append(std::vector<Entry> entries) {
  return LogWrite{.hard_state = std::nullopt, .entries = std::move(entries)};
}

struct MemoryFactory {
  std::unique_ptr<LogStore> Open() { return std::make_unique<MemoryLogStore>(); }
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
  REQUIRE(log->WriteSync({.hard_state = hs, .entries = MakeEntries(1, 5, 3)}).ok());
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
  REQUIRE(log->WriteSync({.hard_state = hs, .entries = MakeEntries(1, 5, 1)}).ok());
  REQUIRE(log->ResetToSnapshot(40, 6).ok());
  CHECK(log->FirstIndex() == 41);
  CHECK(log->LastIndex() == 40);
  CHECK(log->TermAt(40).value() == 6);
  CHECK(absl::IsOutOfRange(log->TermAt(5).status()));
  CHECK(log->LoadHardState().value() == hs);
  CHECK(log->WriteSync(Append({MakeEntry(41, 7)})).ok());
  CHECK(log->Entries(41, 42, 10).value().front() == MakeEntry(41, 7));
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
    REQUIRE(log->WriteSync({.hard_state = hs, .entries = MakeEntries(1, 20, 5)}).ok());
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
    REQUIRE(log->WriteSync(Append({MakeEntry(i, 1, std::string(512 << 10, 'x'))})).ok());
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
    status = log->WriteSync(Append({MakeEntry(i, 1, std::string(256 << 10, 'y'))}));
  }
  REQUIRE(absl::IsResourceExhausted(status));
  CHECK_THAT(std::string(status.message()), Catch::Contains("max_map_bytes"));
  const raft::Index last = log->LastIndex();
  REQUIRE(log->CompactPrefix(last).ok());
  // Freed pages are reused once no reader pins them.
  for (int k = 0; k < 2; ++k) REQUIRE(log->WriteSync(LogWrite{.hard_state = HardState{}, .entries = {}}).ok());
  CHECK(log->WriteSync(Append({MakeEntry(last + 1, 1, std::string(256 << 10, 'z'))})).ok());
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
