// A learner joins a cluster that holds 1 GiB of 1 MiB values while writers
// keep writing: it takes one snapshot stream, then follows the log, and is
// promoted, with no leader change and memory bounded by chunk and batch
// sizes rather than by the data. Prints the times it took as one JSON line.
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include "confman/node.h"
#include "counting_metrics.h"
#include "confman/testing/local_cluster.h"

namespace confman {
namespace {

using testing::LocalCluster;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr int kLargeValues = 1024;        // 1 GiB in all.
constexpr size_t kValueBytes = 1u << 20;  // 1 MiB, incompressible.

// Anonymous resident memory of this process in bytes (LMDB's mapped files
// are not counted: the kernel may drop those pages at any time).
uint64_t RssAnonBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("RssAnon:", 0) == 0) {
      return std::stoull(line.substr(8)) * 1024;
    }
  }
  return 0;
}

// Samples RssAnonBytes until destroyed and keeps the largest.
class PeakMemory {
 public:
  PeakMemory() {
    thread_ = std::thread([this] {
      while (!stop_) {
        peak_ = std::max<uint64_t>(peak_, RssAnonBytes());
        std::this_thread::sleep_for(milliseconds(20));
      }
    });
  }
  ~PeakMemory() {
    stop_ = true;
    thread_.join();
  }
  uint64_t peak() const { return peak_; }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> peak_{0};
  std::thread thread_;
};

std::string RandomBytes(std::mt19937_64& rng, size_t n) {
  std::string out(n, '\0');
  for (size_t i = 0; i + 8 <= n; i += 8) {
    const uint64_t word = rng();
    std::memcpy(out.data() + i, &word, 8);
  }
  return out;
}

// Writes through one member until stopped: small values, and every tenth
// write a 64 KiB one.
class Writer {
 public:
  explicit Writer(Node* node) : node_(node) {
    thread_ = std::thread([this] { Run(); });
  }
  ~Writer() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  uint64_t acknowledged() const { return acknowledged_; }

 private:
  void Run() {
    std::mt19937_64 rng(7);
    const auto deadline = Clock::now() + std::chrono::minutes(5);
    for (uint64_t i = 0; !stop_ && Clock::now() < deadline; ++i) {
      std::string value = i % 10 == 9 ? RandomBytes(rng, 64 << 10)
                                      : "small-" + std::to_string(i);
      if (node_->Put("live", "k" + std::to_string(i % 100), std::move(value))
              .ok()) {
        ++acknowledged_;
      }
    }
  }

  Node* node_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> acknowledged_{0};
  std::thread thread_;
};

std::string DescribeProgress(Node& leader, Node& learner) {
  std::string out;
  const NodeStatus learner_status = learner.GetStatus();
  out += "learner commit " + std::to_string(learner_status.commit_index) +
         " term " + std::to_string(learner_status.term) + " leader " +
         std::to_string(learner_status.leader);
  for (const raft::MemberProgress& p : leader.GetStatus().progress) {
    out += "; member " + std::to_string(p.id) + " state " +
           std::to_string(static_cast<int>(p.state)) + " match " +
           std::to_string(p.match) + " next " + std::to_string(p.next) +
           " inflight " + std::to_string(p.inflight_messages) + "/" +
           std::to_string(p.inflight_bytes) + " active " +
           std::to_string(p.recently_active);
  }
  return out;
}

double Seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

TEST_CASE("a learner joins 1 GiB of 1 MiB values while writes go on",
          "[snapshot][large]") {
  CountingMetrics counters;
  auto started = LocalCluster::Start(
      {.members = 3,
       .customize = [&counters](NodeOptions& o) { o.metrics = &counters; }});
  REQUIRE(started.ok());
  LocalCluster& cluster = **started;
  Node* leader = cluster.WaitForLeader().value();
  const raft::MemberId leader_id = cluster.leader_id();

  const auto fill_start = Clock::now();
  {
    std::mt19937_64 rng(1);
    std::vector<std::thread> fillers;
    std::atomic<int> next{0};
    std::atomic<int> failed{0};
    for (int t = 0; t < 4; ++t) {
      fillers.emplace_back([&, t] {
        std::mt19937_64 local(rng() + t);
        for (int i = next++; i < kLargeValues; i = next++) {
          if (!leader->Put("big", "v" + std::to_string(i),
                           RandomBytes(local, kValueBytes))
                   .ok()) {
            ++failed;
          }
        }
      });
    }
    for (std::thread& f : fillers) f.join();
    REQUIRE(failed == 0);
  }
  const double fill_seconds = Seconds(Clock::now() - fill_start);

  PeakMemory memory;
  const uint64_t leader_changes_before = leader->GetStatus().leader_changes;
  const uint64_t sent_before = counters.Get("node.snapshots_sent");
  Writer writer(leader);
  const auto add_start = Clock::now();
  absl::StatusOr<raft::MemberId> learner_id = cluster.AddMember();
  REQUIRE(learner_id.ok());
  Node* learner = cluster.member(*learner_id);

  // Caught up: the learner has applied a commit index the leader reached
  // after it joined, while the writer goes on.
  auto caught_up_to = [&](raft::Index target, Clock::duration within) {
    const auto deadline = Clock::now() + within;
    while (Clock::now() < deadline) {
      if (learner->GetStatus().applied_index >= target) return true;
      std::this_thread::sleep_for(milliseconds(10));
    }
    return false;
  };
  REQUIRE(caught_up_to(leader->GetStatus().commit_index, std::chrono::seconds(60)));
  const double install_seconds = Seconds(Clock::now() - add_start);
  // Then it keeps up: within a second of any later commit index.
  for (int probe = 0; probe < 5; ++probe) {
    const raft::Index target = leader->GetStatus().commit_index;
    INFO("probe " << probe << ": learner applied "
                  << learner->GetStatus().applied_index << ", leader commit "
                  << target << "; " << DescribeProgress(*leader, *learner));
    REQUIRE(caught_up_to(target, std::chrono::seconds(1)));
    std::this_thread::sleep_for(milliseconds(200));
  }
  REQUIRE(leader->PromoteToVoter(*learner_id).ok());
  const double promoted_seconds = Seconds(Clock::now() - add_start);
  writer.Stop();

  CHECK(cluster.leader_id() == leader_id);
  CHECK(leader->GetStatus().leader_changes == leader_changes_before);
  CHECK(counters.Get("node.snapshots_sent") == sent_before + 1);
  CHECK(writer.acknowledged() > 100);
  // Memory holds a few values in flight per stage, not the data set.
  const uint64_t peak = memory.peak();
  CHECK(peak < (uint64_t{512} << 20));
  // A sample of the large values reads back on the new member.
  REQUIRE(caught_up_to(leader->GetStatus().commit_index, std::chrono::seconds(10)));
  for (int i = 0; i < kLargeValues; i += 97) {
    auto on_leader = leader->Get("big", "v" + std::to_string(i));
    auto on_learner = learner->Get("big", "v" + std::to_string(i),
                                   {ReadConsistency::kLocal});
    REQUIRE(on_leader.ok());
    REQUIRE(on_learner.ok());
    CHECK(on_learner->value == on_leader->value);
  }
  std::printf(
      "{\"fill_seconds\":%.2f,\"learner_caught_up_seconds\":%.2f,"
      "\"learner_promoted_seconds\":%.2f,\"peak_rss_anon_mib\":%.1f,"
      "\"writes_during_add\":%llu}\n",
      fill_seconds, install_seconds, promoted_seconds,
      static_cast<double>(peak) / (1 << 20),
      static_cast<unsigned long long>(writer.acknowledged()));
}

}  // namespace
}  // namespace confman
