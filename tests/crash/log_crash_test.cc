// Kills a process appending to an LmdbLogStore with SIGKILL at random
// points, hundreds of times, and checks after every kill that:
//   * every stored entry is one that was written (its bytes derive from its
//     index and term) and terms never decrease along the log;
//   * the hard state is intact and was committed atomically with its batch
//     (each batch's hard state names that batch's last index and term);
//   * every batch acknowledged before the kill is there (or was replaced by
//     a later, higher-term write the child also issued).
//
// The parent never has the environment open across fork(): it opens the
// store to check, closes it, then forks the next child.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <random>

#include "confman/storage/lmdb.h"
#include "kill_child.h"
#include "test_dir.h"

namespace confman {
namespace {

using raft::Entry;
using raft::Index;
using raft::Term;

constexpr int kKills = 200;
constexpr auto kTimeBudget = std::chrono::seconds(150);

std::string EntryData(Index index, Term term) {
  const size_t size = 16 + (index * 7919 + term * 31) % 6000;
  std::string data = "i" + std::to_string(index) + "t" + std::to_string(term) + "|";
  data.resize(size, static_cast<char>('a' + (index + term) % 26));
  return data;
}

struct Ack {
  Index last = 0;
  Term term = 0;
};

// What one child writes: batches with increasing terms; sometimes replacing
// the last few entries, sometimes several batches queued at once.
[[noreturn]] void RunChild(const std::string& dir, int ack_fd, uint64_t seed,
                           Term first_term) {
  auto opened = LmdbLogStore::Open({.dir = dir});
  if (!opened.ok()) _exit(2);
  std::unique_ptr<LmdbLogStore> store = *std::move(opened);
  std::mt19937_64 rng(seed);
  const char ready = 'R';
  if (write(ack_fd, &ready, 1) != 1) _exit(3);
  Term term = first_term;
  Index last = store->LastIndex();
  std::mutex mu;
  std::condition_variable cv;
  int pending = 0;
  while (true) {
    const int queued = 1 + static_cast<int>(rng() % 4);
    for (int q = 0; q < queued; ++q) {
      ++term;
      Index first = last + 1;
      if (rng() % 8 == 0 && last >= store->FirstIndex() + 3) first = last - 2;
      const Index count = 1 + rng() % 8;
      LogWrite write;
      for (Index i = first; i < first + count; ++i) {
        write.entries.push_back(Entry{.term = term, .index = i,
                                      .type = raft::EntryType::kNormal,
                                      .data = EntryData(i, term)});
      }
      last = first + count - 1;
      write.hard_state = raft::HardState{.term = term, .vote = 1, .commit = last};
      const Ack ack{.last = last, .term = term};
      {
        std::lock_guard lock(mu);
        ++pending;
      }
      store->Write(std::move(write), [&, ack](absl::Status status) {
        if (!status.ok()) _exit(4);
        if (::write(ack_fd, &ack, sizeof ack) != sizeof ack) _exit(5);
        std::lock_guard lock(mu);
        --pending;
        cv.notify_one();
      });
    }
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return pending == 0; });
    lock.unlock();
    if (rng() % 16 == 0 && last > 64) {
      if (!store->CompactPrefix(last - 32).ok()) _exit(6);
    }
  }
}

// The latest acknowledgement among those reported (acks arrive in write
// order).
std::optional<Ack> LatestAck(const std::string& reported) {
  REQUIRE(reported.size() % sizeof(Ack) == 0);
  if (reported.empty()) return std::nullopt;
  Ack ack;
  std::memcpy(&ack, reported.data() + reported.size() - sizeof ack, sizeof ack);
  return ack;
}

// Checks the log; returns the highest term in it (the next child starts
// above it).
Term CheckLog(const std::string& dir, const std::optional<Ack>& acked) {
  auto opened = LmdbLogStore::Open({.dir = dir});
  REQUIRE(opened.ok());
  std::unique_ptr<LmdbLogStore> store = *std::move(opened);
  const raft::HardState hs = store->LoadHardState().value();
  const Index first = store->FirstIndex();
  const Index last = store->LastIndex();
  INFO("log [" << first << ", " << last << "] hard state term " << hs.term
               << " commit " << hs.commit);
  // The hard state was written in the same transaction as its batch.
  REQUIRE(hs.commit == last);
  if (last >= first) REQUIRE(store->TermAt(last).value() == hs.term);
  if (acked) {
    INFO("acknowledged batch ends at " << acked->last << " term " << acked->term);
    REQUIRE(hs.term >= acked->term);
    if (hs.term == acked->term) REQUIRE(last == acked->last);
  }
  Term previous = store->TermAt(first - 1).value();
  for (Index lo = first; lo <= last;) {
    auto entries = store->Entries(lo, last + 1, 1 << 20);
    REQUIRE(entries.ok());
    for (const Entry& e : *entries) {
      REQUIRE(e.data == EntryData(e.index, e.term));
      REQUIRE(e.term >= previous);
      previous = e.term;
    }
    lo += entries->size();
  }
  return hs.term;
}

TEST_CASE("the LMDB log survives SIGKILL at random points", "[crash]") {
  testing::TempDir root;
  const std::string dir = root.path() + "/log";
  std::mt19937_64 rng(Catch::rngSeed() + 1);
  const auto start = std::chrono::steady_clock::now();
  Term term = 0;
  int acked_kills = 0;
  for (int kill_count = 0; kill_count < kKills; ++kill_count) {
    REQUIRE(std::chrono::steady_clock::now() - start < kTimeBudget);
    const uint64_t child_seed = rng();
    const std::optional<Ack> acked = LatestAck(testing::RunUntilKilled(
        rng, [&](int fd) { RunChild(dir, fd, child_seed, term + 1000); }));
    if (acked) ++acked_kills;
    term = std::max(term + 1000, CheckLog(dir, acked));
  }
  CHECK(acked_kills > kKills / 2);  // Most kills land after some durable writes.
}

}  // namespace
}  // namespace confman
