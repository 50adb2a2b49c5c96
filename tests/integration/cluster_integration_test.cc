#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "confman/node.h"
#include "confman/raft/membership.h"
#include "confman/storage/lmdb.h"
#include "confman/testing/local_cluster.h"

namespace confman {
namespace {

using testing::LocalCluster;
using Clock = std::chrono::steady_clock;

// Set CONFMAN_TEST_VERBOSE=1 to see every member's log lines.
class StderrSink final : public LogSink {
 public:
  void Log(LogLevel level, std::string_view line) override {
    std::fprintf(stderr, "%s %.*s\n", LogLevelName(level),
                 static_cast<int>(line.size()), line.data());
  }
};
StderrSink stderr_sink;

// The members' election timeout, as LocalCluster set it (scaled by
// CONFMAN_TIME_SCALE in slow sanitized builds).
std::chrono::milliseconds election_timeout{0};

std::unique_ptr<LocalCluster> StartCluster() {
  const bool verbose = std::getenv("CONFMAN_TEST_VERBOSE") != nullptr;
  auto cluster = LocalCluster::Start(
      {.members = 3, .customize = [verbose](NodeOptions& o) {
         if (verbose) o.log = &stderr_sink;
         election_timeout = o.election_timeout;
       }});
  REQUIRE(cluster.ok());
  REQUIRE((*cluster)->WaitForLeader().ok());
  return std::move(*cluster);
}

// Put with bounded retries while an election runs; the revision or the
// last error.
absl::StatusOr<uint64_t> PutRetrying(Node* node, const std::string& ns,
                                     const std::string& key,
                                     const std::string& value) {
  absl::StatusOr<uint64_t> result = absl::UnavailableError("not tried");
  for (int attempt = 0; attempt < 100; ++attempt) {
    result = node->Put(ns, key, value);
    if (!absl::IsUnavailable(result.status())) return result;
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
  }
  return result;
}

// Everything in `ns` as seen by `node`, read linearizably page by page.
std::map<std::string, std::pair<std::string, uint64_t>> ReadAll(
    Node* node, const std::string& ns, ReadConsistency consistency) {
  std::map<std::string, std::pair<std::string, uint64_t>> out;
  kv::ListRequest request{.ns = ns, .limit = 100};
  for (int page = 0; page < 100000; ++page) {
    auto listed = node->List(request, {consistency});
    REQUIRE(listed.ok());
    for (const kv::KeyValue& kv : listed->items) {
      out[kv.key] = {kv.value, kv.mod_revision};
    }
    if (!listed->more) break;
    request.start_after = listed->next_start_after;
  }
  return out;
}

// A hash of a member's state for `namespaces`, read locally.
uint64_t StateHash(Node* node, const std::vector<std::string>& namespaces) {
  uint64_t hash = 1469598103934665603ull;
  auto mix = [&](const std::string& s) {
    for (unsigned char c : s) hash = (hash ^ c) * 1099511628211ull;
    hash = (hash ^ 0xff) * 1099511628211ull;
  };
  for (const std::string& ns : namespaces) {
    for (const auto& [key, entry] :
         ReadAll(node, ns, ReadConsistency::kLocal)) {
      mix(key);
      mix(entry.first);
      mix(std::to_string(entry.second));
    }
  }
  return hash;
}

raft::MemberId WaitForNewLeader(LocalCluster& cluster, raft::MemberId old,
                                std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    const raft::MemberId leader = cluster.leader_id();
    if (leader != raft::kNoMember && leader != old) return leader;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return raft::kNoMember;
}

TEST_CASE("writes and reads in every consistency from every member") {
  auto cluster = StartCluster();
  std::map<std::string, std::string> written;
  for (raft::MemberId writer : cluster->ids()) {
    for (int i = 0; i < 5; ++i) {
      const std::string key =
          "m" + std::to_string(writer) + "-" + std::to_string(i);
      REQUIRE(
          PutRetrying(cluster->member(writer), "it", key, key + "-value").ok());
      written[key] = key + "-value";
    }
  }
  for (raft::MemberId reader : cluster->ids()) {
    for (ReadConsistency c :
         {ReadConsistency::kLinearizable, ReadConsistency::kLease}) {
      for (const auto& [key, value] : written) {
        auto got = cluster->member(reader)->Get("it", key, {c});
        REQUIRE(got.ok());
        CHECK(got->value == value);
      }
    }
  }
  // Local reads are eventually complete on every member.
  REQUIRE(
      cluster
          ->WaitForApplied(
              cluster->member(cluster->leader_id())->GetStatus().commit_index)
          .ok());
  for (raft::MemberId reader : cluster->ids()) {
    auto all = ReadAll(cluster->member(reader), "it", ReadConsistency::kLocal);
    CHECK(all.size() == written.size());
  }
}

TEST_CASE("a compare-and-set conflict is reported as such") {
  auto cluster = StartCluster();
  Node* a = cluster->member(1);
  Node* b = cluster->member(2);
  auto first = PutRetrying(a, "cas", "k", "one");
  REQUIRE(first.ok());
  auto won = b->CompareAndSet("cas", "k", *first, "two");
  REQUIRE(won.ok());
  auto lost = a->CompareAndSet("cas", "k", *first, "three");
  REQUIRE(absl::IsFailedPrecondition(lost.status()));
  CHECK(std::string(lost.status().message()).find(std::to_string(*won)) !=
        std::string::npos);
  CHECK(a->Get("cas", "k")->value == "two");
}

TEST_CASE(
    "a crashed leader is replaced within 2 s and no acknowledged write is "
    "lost; "
    "a watch sees every change in order across the change") {
  auto cluster = StartCluster();
  const raft::MemberId old_leader = cluster->leader_id();
  raft::MemberId watcher = old_leader % 3 + 1;
  std::mutex mu;
  std::vector<std::string> watch_errors;  // Guarded by mu.
  std::vector<uint64_t> watched;
  auto watch = cluster->member(watcher)->Watch(
      {.ns = "fo"}, [&](absl::StatusOr<kv::Change> c) {
        std::lock_guard lock(mu);
        if (!c.ok()) {
          watch_errors.push_back(c.status().ToString());
          return;
        }
        watched.push_back(c->revision);
      });
  REQUIRE(watch.ok());

  std::map<std::string, uint64_t> acknowledged;
  std::atomic<bool> stop{false};
  std::atomic<int> counter{0};
  auto writer = [&](raft::MemberId via) {
    for (int i = 0; i < 2000 && !stop; ++i) {
      Node* node = cluster->member(via);
      const std::string key = "k" + std::to_string(counter++);
      auto rev = node->Put("fo", key, "v-" + key);
      if (rev.ok()) {
        std::lock_guard lock(mu);
        acknowledged[key] = *rev;
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
  };
  // Writers go through the members that stay up.
  std::vector<std::thread> writers;
  for (raft::MemberId id : cluster->ids()) {
    if (id != old_leader) writers.emplace_back(writer, id);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const auto crashed_at = Clock::now();
  REQUIRE(cluster->Crash(old_leader).ok());
  const raft::MemberId new_leader =
      WaitForNewLeader(*cluster, old_leader, std::chrono::seconds(5));
  const auto elected_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                              Clock::now() - crashed_at)
                              .count();
  REQUIRE(new_leader != raft::kNoMember);
  INFO("new leader after " << elected_ms << " ms");
  // Followers time out within two election timeouts; the rest is slack
  // for a loaded machine.
  CHECK(elected_ms < 4 * election_timeout.count() + 1000);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  stop = true;
  for (auto& t : writers) t.join();

  Node* reader = cluster->member(new_leader);
  auto all = ReadAll(reader, "fo", ReadConsistency::kLinearizable);
  std::lock_guard lock(mu);
  REQUIRE(acknowledged.size() > 10);
  for (const auto& [key, rev] : acknowledged) {
    auto it = all.find(key);
    REQUIRE(it != all.end());
    CHECK(it->second.second == rev);
  }
  // The watch: strictly increasing, and containing every acknowledged
  // revision once the watcher has caught up.
  uint64_t last_rev = 0;
  for (const auto& [key, entry] : all)
    last_rev = std::max(last_rev, entry.second);
  for (int i = 0; i < 500; ++i) {
    if (!watched.empty() && watched.back() >= last_rev) break;
    mu.unlock();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    mu.lock();
  }
  (*watch)->Cancel();
  CHECK(watch_errors.empty());
  CHECK(std::is_sorted(watched.begin(), watched.end()));
  CHECK(std::adjacent_find(watched.begin(), watched.end()) == watched.end());
  std::set<uint64_t> seen(watched.begin(), watched.end());
  for (const auto& [key, rev] : acknowledged) CHECK(seen.count(rev) == 1);
}

TEST_CASE(
    "a fourth member with 1 GiB of existing data catches up by snapshot, "
    "becomes a voter, and a member is removed") {
  auto cluster = StartCluster();
  Node* leader = *cluster->WaitForLeader();
  constexpr int kValues = 1024;  // x 1 MiB = 1 GiB.
  constexpr int kWriters = 8;
  std::vector<std::thread> writers;
  std::atomic<int> failed{0};
  std::mutex error_mu;
  std::string last_error;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      std::mt19937_64 rng(w);
      std::string value(1 << 20, '\0');
      for (int i = w; i < kValues; i += kWriters) {
        for (auto& c : value) c = static_cast<char>(rng());
        absl::StatusOr<uint64_t> put =
            PutRetrying(leader, "big", "v" + std::to_string(i), value);
        if (!put.ok()) {
          ++failed;
          std::lock_guard lock(error_mu);
          last_error = put.status().ToString();
        }
      }
    });
  }
  for (auto& t : writers) t.join();
  INFO("last error: " << last_error);
  REQUIRE(failed == 0);
  const uint64_t changes_before = leader->GetStatus().leader_changes;

  auto added = cluster->AddMember();
  REQUIRE(added.ok());
  Node* newcomer = cluster->member(*added);
  const auto deadline = Clock::now() + std::chrono::minutes(3);
  const raft::Index target = leader->GetStatus().commit_index;
  while (newcomer->GetStatus().applied_index < target &&
         Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  REQUIRE(newcomer->GetStatus().applied_index >= target);
  // The leader kept its followers while streaming: no election happened.
  CHECK(leader->GetStatus().leader_changes == changes_before);
  CHECK(leader->GetStatus().role == raft::Role::kLeader);
  REQUIRE(leader->PromoteToVoter(*added).ok());
  auto got = newcomer->Get("big", "v1023", {ReadConsistency::kLinearizable});
  REQUIRE(got.ok());
  CHECK(got->value.size() == (1u << 20));

  // Remove a founding follower; the rest keep working.
  raft::MemberId removed = raft::kNoMember;
  for (raft::MemberId id : cluster->ids()) {
    if (id != cluster->leader_id() && id != *added) removed = id;
  }
  leader = *cluster->WaitForLeader();
  REQUIRE(leader->RemoveMember(removed).ok());
  REQUIRE(cluster->Crash(removed).ok());
  leader = *cluster->WaitForLeader();
  bool gone = false;
  for (int i = 0; i < 300 && !gone; ++i) {
    gone = !raft::IsMember(leader->GetStatus().membership, removed);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(gone);
  CHECK(PutRetrying(leader, "big", "after-removal", "ok").ok());
}

TEST_CASE("every member restarted: the same state on all") {
  auto cluster = StartCluster();
  for (int i = 0; i < 200; ++i) {
    Node* node = cluster->member(1 + i % 3);
    // Every fifth write is large enough to stay in the log (stored once).
    std::string value = std::to_string(i);
    if (i % 5 == 0) value.resize(100 * 1024, static_cast<char>('a' + i % 26));
    REQUIRE(PutRetrying(node, "rs", "k" + std::to_string(i % 50), value).ok());
  }
  REQUIRE(cluster->member(2)->Delete("rs", "k7").ok());
  for (raft::MemberId id : cluster->ids()) REQUIRE(cluster->Crash(id).ok());
  for (raft::MemberId id : cluster->ids()) REQUIRE(cluster->Restart(id).ok());
  Node* leader = *cluster->WaitForLeader();
  REQUIRE(PutRetrying(leader, "rs", "after", "restart").ok());
  std::set<uint64_t> hashes;
  for (raft::MemberId id : cluster->ids()) {
    // A linearizable read leaves the member applied through the last write.
    REQUIRE(cluster->member(id)->Get("rs", "after").ok());
    hashes.insert(StateHash(cluster->member(id), {"rs", "confman.members"}));
  }
  CHECK(hashes.size() == 1);
  auto all = ReadAll(leader, "rs", ReadConsistency::kLinearizable);
  CHECK(all.size() == 50);  // 50 keys, one deleted, one added.
  CHECK(all.count("k7") == 0);
}

TEST_CASE(
    "a large value is written once per member and leaves the log when "
    "replaced") {
  // Each member's log store, observed through the factory seam.
  std::mutex mu;
  std::map<std::string, LogStore*> logs;
  auto cluster = LocalCluster::Start(
      {.members = 3, .customize = [&](NodeOptions& o) {
         o.log_keep_entries = 4;
         o.log_compact_every = 4;
         const uint64_t retain = o.value_in_log_min_bytes;
         o.log_store_factory = [&, retain](const std::string& dir)
             -> absl::StatusOr<std::unique_ptr<LogStore>> {
           auto store = LmdbLogStore::Open(
               {.dir = dir, .retain_entries_from_bytes = retain});
           if (!store.ok()) return store.status();
           std::lock_guard lock(mu);
           logs[dir] = store->get();
           return std::unique_ptr<LogStore>(std::move(*store));
         };
       }});
  REQUIRE(cluster.ok());
  Node* leader = *(*cluster)->WaitForLeader();
  constexpr int kKeys = 10;
  std::mt19937_64 rng(7);
  std::string value(200 * 1024, '\0');
  std::map<std::string, std::string> latest;
  for (int round = 0; round < 2; ++round) {
    for (int k = 0; k < kKeys; ++k) {
      for (auto& c : value) c = static_cast<char>(rng());
      const std::string key = "big" + std::to_string(k);
      REQUIRE(PutRetrying(leader, "once", key, value).ok());
      latest[key] = value;
    }
  }
  // Small writes push every large entry out of the log.
  for (int i = 0; i < 20; ++i) {
    REQUIRE(PutRetrying(leader, "once", "small" + std::to_string(i), "s").ok());
  }
  REQUIRE((*cluster)->WaitForApplied(leader->GetStatus().commit_index).ok());
  // Compaction runs on each member's apply thread; give it a moment.
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  auto retained_counts = [&] {
    std::set<size_t> counts;
    std::lock_guard lock(mu);
    for (auto& [dir, log] : logs) {
      counts.insert(log->RetainedIndexes(0, 1000)->size());
    }
    return counts;
  };
  while (retained_counts() != std::set<size_t>{kKeys} &&
         Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  // Exactly the live values remain; the replaced round is gone.
  CHECK(retained_counts() == std::set<size_t>{kKeys});
  for (raft::MemberId id : (*cluster)->ids()) {
    for (const auto& [key, expected] : latest) {
      auto got =
          (*cluster)->member(id)->Get("once", key, {ReadConsistency::kLocal});
      REQUIRE(got.ok());
      CHECK(got->value == expected);
    }
  }
}

}  // namespace
}  // namespace confman
