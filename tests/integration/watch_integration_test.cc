// Watches on three members over TCP on 127.0.0.1 with LMDB: thousands on
// one follower, and one across a leader crash. Every wait is bounded.
#include <dirent.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "confman/node.h"
#include "confman/testing/local_cluster.h"

namespace confman {
namespace {

using testing::LocalCluster;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::unique_ptr<LocalCluster> StartCluster() {
  auto cluster = LocalCluster::Start({.members = 3});
  REQUIRE(cluster.ok());
  REQUIRE((*cluster)->WaitForLeader().ok());
  return std::move(*cluster);
}

bool WaitUntil(const std::function<bool()>& done, milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  while (!done()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(milliseconds(2));
  }
  return true;
}

int ThreadsInProcess() {
  int count = 0;
  if (DIR* dir = opendir("/proc/self/task")) {
    while (dirent* entry = readdir(dir)) {
      if (entry->d_name[0] != '.') ++count;
    }
    closedir(dir);
  }
  return count;
}

uint64_t RevisionOf(Node* node) {
  auto page = node->List({.ns = "any", .limit = 1, .keys_only = true});
  REQUIRE(page.ok());
  return page->revision;
}

// One watch's stream; its callbacks run one at a time.
struct Stream {
  std::atomic<uint64_t> last{0};
  std::atomic<int> received{0};
  std::atomic<int> out_of_order{0};
  std::atomic<int> unavailable{0};
  std::atomic<int> other_errors{0};
};

TEST_CASE(
    "10,000 watches on a follower: every change in order, a fixed set "
    "of threads, closed within a second") {
  auto cluster = StartCluster();
  Node* leader = *cluster->WaitForLeader();
  const raft::MemberId leader_id = cluster->leader_id();
  raft::MemberId follower_id = raft::kNoMember;
  for (raft::MemberId id : cluster->ids()) {
    if (id != leader_id) follower_id = id;
  }
  Node* follower = cluster->member(follower_id);
  const uint64_t start = RevisionOf(leader);
  REQUIRE(cluster->WaitForApplied(leader->GetStatus().applied_index).ok());

  constexpr int kWatches = 10000;
  constexpr int kPrefixes = 100;
  std::vector<std::unique_ptr<Stream>> streams;
  std::vector<std::unique_ptr<WatchHandle>> handles;
  int threads_with_one = 0;
  for (int i = 0; i < kWatches; ++i) {
    streams.push_back(std::make_unique<Stream>());
    Stream* stream = streams.back().get();
    auto watch = follower->Watch(
        {.ns = "w",
         .prefix = absl::StrCat("p", i % kPrefixes, "/"),
         .after_revision = start},
        [stream](absl::StatusOr<kv::Change> change) {
          if (!change.ok()) {
            ++(absl::IsUnavailable(change.status()) ? stream->unavailable
                                                    : stream->other_errors);
            return;
          }
          if (change->revision <= stream->last) ++stream->out_of_order;
          stream->last = change->revision;
          ++stream->received;
        });
    REQUIRE(watch.ok());
    handles.push_back(std::move(*watch));
    if (i == 0) threads_with_one = ThreadsInProcess();
  }
  CHECK(ThreadsInProcess() == threads_with_one);

  constexpr int kWrites = 300;  // Three per prefix.
  for (int i = 0; i < kWrites; ++i) {
    REQUIRE(
        leader->Put("w", absl::StrCat("p", i % kPrefixes, "/k", i), "v").ok());
  }
  auto received = [&] {
    int n = 0;
    for (const auto& stream : streams) n += stream->received;
    return n;
  };
  CHECK(WaitUntil([&] { return received() == kWatches * 3; },
                  milliseconds(30000)));
  for (const auto& stream : streams) {
    CHECK(stream->received == 3);
    CHECK(stream->out_of_order == 0);
  }
  CHECK(ThreadsInProcess() == threads_with_one);

  const auto before = Clock::now();
  REQUIRE(cluster->Crash(follower_id).ok());  // Closes the member.
  CHECK(Clock::now() - before < std::chrono::seconds(1));
  int unavailable = 0;
  int other_errors = 0;
  for (const auto& stream : streams) {
    unavailable += stream->unavailable;
    other_errors += stream->other_errors;
  }
  CHECK(unavailable == kWatches);
  CHECK(other_errors == 0);
  // The handles outlive the member they came from.
  const auto cancel_start = Clock::now();
  handles.clear();
  CHECK(Clock::now() - cancel_start < std::chrono::seconds(1));
}

TEST_CASE(
    "a watch on a follower stays complete and in order across a leader "
    "crash") {
  auto cluster = StartCluster();
  Node* leader = *cluster->WaitForLeader();
  const raft::MemberId leader_id = cluster->leader_id();
  raft::MemberId follower_id = raft::kNoMember;
  for (raft::MemberId id : cluster->ids()) {
    if (id != leader_id) follower_id = id;
  }
  Node* follower = cluster->member(follower_id);
  const uint64_t start = RevisionOf(leader);

  std::mutex mu;
  std::vector<uint64_t> seen;
  std::vector<absl::Status> errors;
  auto watch = follower->Watch({.ns = "f", .after_revision = start},
                               [&](absl::StatusOr<kv::Change> change) {
                                 std::lock_guard lock(mu);
                                 if (!change.ok()) {
                                   errors.push_back(change.status());
                                   return;
                                 }
                                 seen.push_back(change->revision);
                               });
  REQUIRE(watch.ok());

  std::set<uint64_t> acknowledged;
  for (int i = 0; i < 200; ++i) {
    if (i == 80) REQUIRE(cluster->Crash(leader_id).ok());
    // Through the watched follower, which sends each write to whoever
    // leads; an unknown outcome may or may not show up in the stream.
    for (int attempt = 0; attempt < 100; ++attempt) {
      auto rev =
          follower->Put("f", absl::StrCat("k", i % 10), std::to_string(i));
      if (rev.ok()) {
        acknowledged.insert(*rev);
        break;
      }
      if (!absl::IsUnavailable(rev.status())) break;
      std::this_thread::sleep_for(milliseconds(20));
    }
  }
  REQUIRE(acknowledged.size() >= 150);
  const uint64_t highest = *acknowledged.rbegin();
  CHECK(WaitUntil(
      [&] {
        std::lock_guard lock(mu);
        return !seen.empty() && seen.back() >= highest;
      },
      milliseconds(10000)));
  (*watch)->Cancel();
  std::lock_guard lock(mu);
  CHECK(errors.empty());
  for (size_t i = 1; i < seen.size(); ++i) CHECK(seen[i] > seen[i - 1]);
  const std::set<uint64_t> delivered(seen.begin(), seen.end());
  for (uint64_t revision : acknowledged) CHECK(delivered.count(revision) == 1);
}

}  // namespace
}  // namespace confman
