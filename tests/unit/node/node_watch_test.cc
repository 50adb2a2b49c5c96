// Watches on a three-member cluster (memory storage, loopback TCP): shared
// delivery threads, bounded queues, cancellation, single-key watches,
// progress notices and the history's bounds. Every wait is bounded.
#include <dirent.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "confman/node.h"
#include "confman/testing/local_cluster.h"
#include "eventually.h"

namespace confman {
namespace {

using test::Eventually;
using std::chrono::milliseconds;
using testing::LocalCluster;
using testing::LocalClusterOptions;
using Clock = std::chrono::steady_clock;

std::unique_ptr<LocalCluster> StartCluster(
    std::function<void(NodeOptions&)> customize = {}) {
  auto cluster = LocalCluster::Start(
      LocalClusterOptions{.members = 3,
                          .in_memory_storage = true,
                          .customize = [customize](NodeOptions& o) {
                            o.election_timeout = milliseconds(300);
                            o.heartbeat_interval = milliseconds(30);
                            if (customize) customize(o);
                          }});
  REQUIRE(cluster.ok());
  REQUIRE((*cluster)->WaitForLeader().ok());
  return std::move(*cluster);
}

Node* AFollower(LocalCluster& cluster) {
  const raft::MemberId leader = cluster.leader_id();
  for (raft::MemberId id : cluster.ids()) {
    if (id != leader && cluster.member(id) != nullptr)
      return cluster.member(id);
  }
  return nullptr;
}

// What one watch delivered.
struct Recorder {
  std::mutex mu;
  std::vector<uint64_t> revisions;
  std::vector<std::string> keys;
  std::vector<absl::Status> errors;

  WatchCallback Callback() {
    return [this](absl::StatusOr<kv::Change> change) { Record(change); };
  }
  void Record(const absl::StatusOr<kv::Change>& change) {
    std::lock_guard lock(mu);
    if (!change.ok()) {
      errors.push_back(change.status());
      return;
    }
    revisions.push_back(change->revision);
    keys.push_back(change->key);
  }
  size_t count() {
    std::lock_guard lock(mu);
    return revisions.size();
  }
  size_t error_count() {
    std::lock_guard lock(mu);
    return errors.size();
  }
};

// A gate a callback can block on; opening it releases every waiter.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  void Wait() {
    std::unique_lock lock(mu);
    // Bounded, so a broken test cannot hang the suite.
    cv.wait_for(lock, std::chrono::seconds(20), [&] { return open; });
  }
  void Open() {
    {
      std::lock_guard lock(mu);
      open = true;
    }
    cv.notify_all();
  }
};

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

// The latest revision `node` has applied.
uint64_t CurrentRevision(Node* node) {
  auto page = node->List({.ns = "any", .limit = 1, .keys_only = true},
                         {ReadConsistency::kLinearizable});
  REQUIRE(page.ok());
  return page->revision;
}

TEST_CASE("watch: the watch options are checked and named") {
  const NodeOptions valid{.id = 1,
                          .cluster_id = "c",
                          .shared_secret = "0123456789abcdef",
                          .listen_address = "127.0.0.1:0",
                          .initial_members = {{1, "127.0.0.1:0"}}};
  REQUIRE(valid.Validate().ok());
  CHECK(valid.watch_threads == 2);
  CHECK(valid.watch_queue_events == 10000);
  for (uint32_t threads : {0u, 65u}) {
    NodeOptions o = valid;
    o.watch_threads = threads;
    absl::Status s = o.Validate();
    CHECK(absl::IsInvalidArgument(s));
    CHECK(absl::StrContains(s.message(), "watch_threads"));
  }
  for (uint64_t events : {uint64_t{0}, uint64_t{10000001}}) {
    NodeOptions o = valid;
    o.watch_queue_events = events;
    absl::Status s = o.Validate();
    CHECK(absl::IsInvalidArgument(s));
    CHECK(absl::StrContains(s.message(), "watch_queue_events"));
  }
  NodeOptions edge = valid;
  edge.watch_threads = 64;
  edge.watch_queue_events = 1;
  CHECK(edge.Validate().ok());
}

TEST_CASE("watch: a blocked callback does not delay the other watches") {
  auto cluster = StartCluster();
  Node* leader = *cluster->WaitForLeader();
  Node* follower = AFollower(*cluster);
  const uint64_t start = CurrentRevision(leader);
  REQUIRE(cluster->WaitForApplied(leader->GetStatus().applied_index).ok());

  Gate gate;
  Recorder slow;
  Recorder fast;
  std::vector<std::unique_ptr<WatchHandle>> handles;
  auto blocked = follower->Watch({.ns = "s", .after_revision = start},
                                 [&](absl::StatusOr<kv::Change> change) {
                                   gate.Wait();
                                   slow.Record(change);
                                 });
  REQUIRE(blocked.ok());
  handles.push_back(std::move(*blocked));
  for (int i = 0; i < 10; ++i) {
    auto watch =
        follower->Watch({.ns = "s", .after_revision = start}, fast.Callback());
    REQUIRE(watch.ok());
    handles.push_back(std::move(*watch));
  }
  std::vector<uint64_t> written;
  for (int i = 0; i < 20; ++i) {
    auto rev = leader->Put("s", absl::StrCat("k", i), "v");
    REQUIRE(rev.ok());
    written.push_back(*rev);
  }
  // Every fast watch has everything while the blocked one still waits on
  // its first change.
  CHECK(Eventually([&] { return fast.count() == 10 * written.size(); }));
  CHECK(slow.count() == 0);
  gate.Open();
  CHECK(Eventually([&] { return slow.count() == written.size(); }));
  handles.clear();
  std::lock_guard lock(slow.mu);
  CHECK(slow.revisions == written);
  CHECK(slow.errors.empty());
  CHECK(fast.errors.empty());
}

TEST_CASE(
    "watch: an overflowing watch ends with ResourceExhausted and resumes "
    "without loss or duplicates") {
  auto cluster = StartCluster([](NodeOptions& o) { o.watch_queue_events = 5; });
  Node* leader = *cluster->WaitForLeader();
  Node* follower = AFollower(*cluster);
  const uint64_t start = CurrentRevision(leader);
  REQUIRE(cluster->WaitForApplied(leader->GetStatus().applied_index).ok());

  Gate gate;
  Recorder first;
  auto watch = follower->Watch({.ns = "o", .after_revision = start},
                               [&](absl::StatusOr<kv::Change> change) {
                                 if (change.ok()) gate.Wait();
                                 first.Record(change);
                               });
  REQUIRE(watch.ok());
  std::vector<uint64_t> written;
  for (int i = 0; i < 30; ++i) {
    auto rev = leader->Put("o", absl::StrCat("k", i % 3), "v");
    REQUIRE(rev.ok());
    written.push_back(*rev);
  }
  REQUIRE(cluster->WaitForApplied(leader->GetStatus().applied_index).ok());
  gate.Open();
  REQUIRE(Eventually([&] { return first.error_count() == 1; }));
  uint64_t resume_from = 0;
  {
    std::lock_guard lock(first.mu);
    const absl::Status& ended = first.errors[0];
    CHECK(absl::IsResourceExhausted(ended));
    CHECK(absl::StrContains(ended.message(), "watch_queue_events"));
    // Under load the queue may overflow before the first change is
    // handed over: the resume point is then the watch's own start.
    resume_from = first.revisions.empty() ? start : first.revisions.back();
    CHECK(absl::StrContains(ended.message(),
                            absl::StrCat("after_revision = ", resume_from)));
    CHECK(first.revisions.size() < written.size());
  }
  // Nothing more arrives on the ended watch.
  REQUIRE(leader->Put("o", "after", "v").ok());
  written.push_back(CurrentRevision(leader));
  std::this_thread::sleep_for(milliseconds(50));
  CHECK(first.error_count() == 1);

  Recorder second;
  auto resumed = follower->Watch({.ns = "o", .after_revision = resume_from},
                                 second.Callback());
  REQUIRE(resumed.ok());
  CHECK(Eventually([&] {
    std::lock_guard lock(first.mu);
    return first.revisions.size() + second.count() >= written.size();
  }));
  (*resumed)->Cancel();
  std::lock_guard lock_first(first.mu);
  std::lock_guard lock_second(second.mu);
  std::vector<uint64_t> all = first.revisions;
  all.insert(all.end(), second.revisions.begin(), second.revisions.end());
  CHECK(all == written);
  CHECK(second.errors.empty());
}

TEST_CASE("watch: cancel from inside its own callback") {
  auto cluster = StartCluster();
  Node* leader = *cluster->WaitForLeader();
  const uint64_t start = CurrentRevision(leader);

  SECTION("Cancel()") {
    std::atomic<int> calls{0};
    std::unique_ptr<WatchHandle> handle;
    std::atomic<WatchHandle*> self{nullptr};
    auto watch = leader->Watch({.ns = "c", .after_revision = start},
                               [&](absl::StatusOr<kv::Change>) {
                                 if (++calls == 3) self.load()->Cancel();
                               });
    REQUIRE(watch.ok());
    handle = std::move(*watch);
    self = handle.get();
    for (int i = 0; i < 10; ++i) REQUIRE(leader->Put("c", "k", "v").ok());
    CHECK(Eventually([&] { return calls >= 3; }));
    std::this_thread::sleep_for(milliseconds(100));
    CHECK(calls == 3);
    handle.reset();
  }
  SECTION("destroying the handle") {
    std::atomic<int> calls{0};
    std::mutex mu;
    std::unique_ptr<WatchHandle> handle;  // Guarded by mu once set.
    std::unique_lock setup(mu);
    auto watch = leader->Watch({.ns = "c", .after_revision = start},
                               [&](absl::StatusOr<kv::Change>) {
                                 if (++calls != 2) return;
                                 std::lock_guard lock(mu);
                                 handle.reset();
                               });
    REQUIRE(watch.ok());
    handle = std::move(*watch);
    setup.unlock();
    for (int i = 0; i < 10; ++i) REQUIRE(leader->Put("c", "k", "v").ok());
    CHECK(Eventually([&] { return calls >= 2; }));
    std::this_thread::sleep_for(milliseconds(100));
    CHECK(calls == 2);
    std::lock_guard lock(mu);
    CHECK(handle == nullptr);
  }
}

TEST_CASE("watch: no callback runs after Cancel returns on another thread") {
  auto cluster = StartCluster();
  Node* leader = *cluster->WaitForLeader();
  Node* follower = AFollower(*cluster);
  std::atomic<bool> writing{true};
  std::thread writer([&] {
    int i = 0;
    while (writing) {
      (void)leader->Put("x", absl::StrCat("k", i++ % 10), "v");
    }
  });
  int late = 0;
  int delivered = 0;
  auto slowest_cancel = Clock::duration::zero();
  for (int round = 0; round < 30; ++round) {
    auto returned = std::make_shared<std::atomic<bool>>(false);
    auto late_calls = std::make_shared<std::atomic<int>>(0);
    auto calls = std::make_shared<std::atomic<int>>(0);
    auto watch = follower->Watch(
        {.ns = "x", .after_revision = CurrentRevision(follower)},
        [=](absl::StatusOr<kv::Change>) {
          if (*returned) ++*late_calls;
          ++*calls;
          std::this_thread::sleep_for(std::chrono::microseconds(200));
          if (*returned) ++*late_calls;
        });
    REQUIRE(watch.ok());
    Eventually([&] { return *calls >= 2; }, milliseconds(2000));
    const auto before = Clock::now();
    if (round % 2 == 0) {
      (*watch)->Cancel();
    } else {
      watch->reset();
    }
    slowest_cancel = std::max(slowest_cancel, Clock::now() - before);
    *returned = true;
    std::this_thread::sleep_for(milliseconds(5));
    late += *late_calls;
    delivered += *calls;
  }
  writing = false;
  writer.join();
  CHECK(late == 0);
  CHECK(delivered > 0);
  // It waits for at most one running callback (200 us) plus scheduling.
  CHECK(slowest_cancel < milliseconds(100));
}

TEST_CASE("watch: cancelling many watches on other threads while they run") {
  auto cluster = StartCluster();
  Node* leader = *cluster->WaitForLeader();
  Node* follower = AFollower(*cluster);
  const uint64_t start = CurrentRevision(leader);
  auto calls = std::make_shared<std::atomic<int>>(0);
  std::vector<std::unique_ptr<WatchHandle>> handles;
  for (int i = 0; i < 200; ++i) {
    auto watch =
        follower->Watch({.ns = "m", .after_revision = start},
                        [calls](absl::StatusOr<kv::Change>) { ++*calls; });
    REQUIRE(watch.ok());
    handles.push_back(std::move(*watch));
  }
  for (int i = 0; i < 20; ++i) REQUIRE(leader->Put("m", "k", "v").ok());
  std::thread a([&] {
    for (size_t i = 0; i < handles.size(); i += 2) handles[i]->Cancel();
  });
  std::thread b([&] {
    for (size_t i = 1; i < handles.size(); i += 2) handles[i].reset();
  });
  a.join();
  b.join();
  const int after_cancel = *calls;
  std::this_thread::sleep_for(milliseconds(50));
  CHECK(*calls == after_cancel);
  handles.clear();
}

TEST_CASE("watch: a single key") {
  auto cluster = StartCluster();
  Node* leader = *cluster->WaitForLeader();
  Node* follower = AFollower(*cluster);
  const uint64_t start = CurrentRevision(leader);

  CHECK(absl::IsInvalidArgument(
      follower->Watch({.ns = "k", .prefix = "a", .key = "a"}, [](auto) {})
          .status()));

  Recorder key;
  Recorder prefix;
  auto by_key = follower->Watch(
      {.ns = "k", .after_revision = start, .key = "a"}, key.Callback());
  auto by_prefix = follower->Watch(
      {.ns = "k", .prefix = "a", .after_revision = start}, prefix.Callback());
  REQUIRE(by_key.ok());
  REQUIRE(by_prefix.ok());
  std::vector<uint64_t> on_a;
  for (const char* name : {"a", "ab", "b", "a", "", "aa"}) {
    if (*name == '\0') {
      REQUIRE(leader->Put("other", "a", "v").ok());
      continue;
    }
    auto rev = leader->Put("k", name, "v");
    REQUIRE(rev.ok());
    if (std::string(name) == "a") on_a.push_back(*rev);
  }
  auto deleted = leader->Delete("k", "a");
  REQUIRE(deleted.ok());
  on_a.push_back(*deleted);
  CHECK(Eventually(
      [&] { return key.count() == on_a.size() && prefix.count() == 5; }));
  std::this_thread::sleep_for(milliseconds(50));
  std::lock_guard lock(key.mu);
  CHECK(key.revisions == on_a);
  CHECK(key.keys == std::vector<std::string>{"a", "a", "a"});
  std::lock_guard lock_prefix(prefix.mu);
  CHECK(prefix.keys == std::vector<std::string>{"a", "ab", "a", "aa", "a"});
}

TEST_CASE("watch: progress notices while nothing matching changes") {
  auto cluster = StartCluster();
  Node* leader = *cluster->WaitForLeader();
  Node* follower = AFollower(*cluster);

  CHECK(absl::IsInvalidArgument(
      follower
          ->Watch({.ns = "p", .progress_interval = milliseconds(10)},
                  [](auto) {})
          .status()));
  CHECK(absl::IsInvalidArgument(
      follower->Watch({.ns = "p", .on_progress = [](uint64_t) {}}, [](auto) {})
          .status()));

  std::mutex mu;
  std::vector<uint64_t> notices;
  Recorder changes;
  const uint64_t start = CurrentRevision(leader);
  auto watch = follower->Watch({.ns = "p",
                                .after_revision = start,
                                .progress_interval = milliseconds(30),
                                .on_progress =
                                    [&](uint64_t revision) {
                                      std::lock_guard lock(mu);
                                      notices.push_back(revision);
                                    }},
                               changes.Callback());
  REQUIRE(watch.ok());
  auto notice_count = [&] {
    std::lock_guard lock(mu);
    return notices.size();
  };
  REQUIRE(Eventually([&] { return notice_count() >= 2; }));
  // Writes elsewhere move the revision the notices report.
  auto elsewhere = leader->Put("q", "k", "v");
  REQUIRE(elsewhere.ok());
  CHECK(Eventually([&] {
    std::lock_guard lock(mu);
    return notices.back() >= *elsewhere;
  }));
  // A matching change arrives in order with the notices, and the notices
  // after it report at least its revision.
  auto matching = leader->Put("p", "k", "v");
  REQUIRE(matching.ok());
  REQUIRE(Eventually([&] { return changes.count() == 1; }));
  const size_t before = notice_count();
  CHECK(Eventually([&] { return notice_count() >= before + 2; }));
  (*watch)->Cancel();
  std::lock_guard lock(mu);
  CHECK(notices.front() >= start);
  for (size_t i = 1; i < notices.size(); ++i)
    CHECK(notices[i] >= notices[i - 1]);
  CHECK(notices.back() >= *matching);
}

TEST_CASE(
    "watch: a watch resumed from the past catches up while writes go on") {
  auto cluster = StartCluster();
  Node* leader = *cluster->WaitForLeader();
  Node* follower = AFollower(*cluster);
  const uint64_t start = CurrentRevision(leader);
  std::vector<uint64_t> written;
  std::mutex written_mu;
  for (int i = 0; i < 300; ++i) {
    auto rev = leader->Put("r", absl::StrCat("k", i % 7), "v");
    REQUIRE(rev.ok());
    written.push_back(*rev);
  }
  std::atomic<bool> writing{true};
  std::thread writer([&] {
    for (int i = 0; i < 300 && writing; ++i) {
      auto rev = leader->Put("r", absl::StrCat("k", i % 5), "v");
      if (!rev.ok()) continue;
      std::lock_guard lock(written_mu);
      written.push_back(*rev);
    }
  });
  std::vector<std::unique_ptr<Recorder>> recorders;
  std::vector<std::unique_ptr<WatchHandle>> handles;
  for (int i = 0; i < 20; ++i) {
    recorders.push_back(std::make_unique<Recorder>());
    auto watch = follower->Watch({.ns = "r", .after_revision = start},
                                 recorders.back()->Callback());
    REQUIRE(watch.ok());
    handles.push_back(std::move(*watch));
    std::this_thread::sleep_for(milliseconds(5));
  }
  writer.join();
  std::vector<uint64_t> expected;
  {
    std::lock_guard lock(written_mu);
    expected = written;
  }
  for (auto& recorder : recorders) {
    CHECK(Eventually([&] { return recorder->count() >= expected.size(); },
                    milliseconds(10000)));
    std::lock_guard lock(recorder->mu);
    CHECK(recorder->revisions == expected);
    CHECK(recorder->errors.empty());
  }
}

TEST_CASE("watch: the oldest retained revision") {
  auto cluster = StartCluster([](NodeOptions& o) { o.history_retention = 10; });
  Node* leader = *cluster->WaitForLeader();
  CHECK(*leader->CompactedRevision() == 0);
  for (int i = 0; i < 30; ++i) REQUIRE(leader->Put("h", "k", "v").ok());
  const uint64_t latest = CurrentRevision(leader);
  auto compacted = leader->CompactedRevision();
  REQUIRE(compacted.ok());
  CHECK(*compacted == latest - 10);

  Recorder from_oldest;
  auto ok = leader->Watch({.ns = "h", .after_revision = *compacted},
                          from_oldest.Callback());
  REQUIRE(ok.ok());
  CHECK(Eventually([&] { return from_oldest.count() == 10; }));
  Recorder too_old;
  auto gone = leader->Watch({.ns = "h", .after_revision = *compacted - 1},
                            too_old.Callback());
  REQUIRE(gone.ok());
  REQUIRE(Eventually([&] { return too_old.error_count() == 1; }));
  std::lock_guard lock(too_old.mu);
  CHECK(absl::IsOutOfRange(too_old.errors[0]));
  CHECK(too_old.revisions.empty());
}

TEST_CASE("history: the audit trail names actor and time, pages and ends at compaction") {
  auto cluster = StartCluster([](NodeOptions& o) { o.history_retention = 10; });
  Node* leader = *cluster->WaitForLeader();
  Node* follower = AFollower(*cluster);
  const int64_t before = std::chrono::duration_cast<std::chrono::microseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  std::vector<uint64_t> revisions;
  for (int i = 0; i < 6; ++i) {
    auto r = follower->Put("h", absl::StrCat("k", i % 2), "v",
                           {.actor = absl::StrCat("alice-", i)});
    REQUIRE(r.ok());
    revisions.push_back(*r);
  }
  auto del = leader->Delete("h", "k0", {.actor = "bob"});
  REQUIRE(del.ok());
  revisions.push_back(*del);
  const uint64_t start = revisions.front() - 1;

  // A linearizable read on a follower sees every acknowledged change.
  auto page = follower->History(start, 4);
  REQUIRE(page.ok());
  REQUIRE(page->changes.size() == 4);
  for (size_t i = 0; i < 4; ++i) {
    CHECK(page->changes[i].revision == revisions[i]);
    CHECK(page->changes[i].actor == absl::StrCat("alice-", i));
    CHECK(page->changes[i].time_unix_micros >= before);
  }
  auto rest = follower->History(page->changes.back().revision, 100);
  REQUIRE(rest.ok());
  REQUIRE(rest->changes.size() == 3);
  CHECK(rest->changes.back().op == kv::ChangeOp::kDelete);
  CHECK(rest->changes.back().actor == "bob");
  CHECK(rest->revision == revisions.back());
  CHECK(follower->GetStatus().revision == revisions.back());

  for (int i = 0; i < 20; ++i) REQUIRE(leader->Put("h", "k", "v").ok());
  auto gone = follower->History(start, 10);
  CHECK(absl::IsOutOfRange(gone.status()));
}

TEST_CASE(
    "watch: thousands of watches share a fixed set of threads and "
    "close fast") {
  auto cluster = StartCluster([](NodeOptions& o) { o.watch_threads = 3; });
  Node* leader = *cluster->WaitForLeader();
  Node* follower = AFollower(*cluster);
  const uint64_t start = CurrentRevision(leader);
  REQUIRE(cluster->WaitForApplied(leader->GetStatus().applied_index).ok());
  // The first watch starts the reader and the workers.
  auto first =
      follower->Watch({.ns = "t", .after_revision = start}, [](auto) {});
  REQUIRE(first.ok());
  const int threads_before = ThreadsInProcess();

  constexpr int kWatches = 5000;
  auto delivered = std::make_shared<std::atomic<int>>(0);
  auto unavailable = std::make_shared<std::atomic<int>>(0);
  std::vector<std::unique_ptr<WatchHandle>> handles;
  for (int i = 0; i < kWatches; ++i) {
    auto watch = follower->Watch(
        {.ns = "t",
         .prefix = absl::StrCat("p", i % 50, "/"),
         .after_revision = start},
        [delivered, unavailable](absl::StatusOr<kv::Change> change) {
          if (change.ok()) {
            ++*delivered;
          } else if (absl::IsUnavailable(change.status())) {
            ++*unavailable;
          }
        });
    REQUIRE(watch.ok());
    handles.push_back(std::move(*watch));
  }
  CHECK(ThreadsInProcess() == threads_before);
  for (int i = 0; i < 50; ++i) {
    REQUIRE(leader->Put("t", absl::StrCat("p", i, "/k"), "v").ok());
  }
  // Each write matches the 100 watches on its prefix.
  CHECK(Eventually([&] { return *delivered == kWatches; }));

  const auto before = Clock::now();
  follower->Close();
  const auto took = Clock::now() - before;
  CHECK(took < std::chrono::seconds(1));
  CHECK(*unavailable == kWatches);
  // Handles outlive the closed Node safely.
  handles.clear();
  first->reset();
}

}  // namespace
}  // namespace confman
