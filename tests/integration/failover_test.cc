// The leader crashes while many writes are in flight through the other
// members. Each write must take effect exactly once, no acknowledged write
// may be lost, and each caller is answered within its request timeout:
// writes whose leader is gone go again, under their session, to the next.
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "confman/node.h"
#include "confman/testing/local_cluster.h"

namespace confman {
namespace {

using testing::LocalCluster;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr milliseconds kRequestTimeout{3000};

struct Outcome {
  std::string key;
  absl::Status status;
  Clock::duration took{};
};

// Writes fresh keys through one member (never the one that will crash)
// until stopped, and records every answer.
class KeyWriter {
 public:
  KeyWriter(Node* node, int writer) : node_(node), writer_(writer) {
    thread_ = std::thread([this] { Run(); });
  }
  ~KeyWriter() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  const std::vector<Outcome>& outcomes() const { return outcomes_; }

 private:
  void Run() {
    const auto give_up = Clock::now() + std::chrono::seconds(60);
    for (int i = 0; !stop_ && i < 100000 && Clock::now() < give_up; ++i) {
      Outcome outcome;
      outcome.key = "w" + std::to_string(writer_) + "-" + std::to_string(i);
      const auto start = Clock::now();
      outcome.status = node_->Put("failover", outcome.key, "v").status();
      outcome.took = Clock::now() - start;
      outcomes_.push_back(std::move(outcome));
    }
  }

  Node* node_;
  const int writer_;
  std::atomic<bool> stop_{false};
  std::vector<Outcome> outcomes_;
  std::thread thread_;
};

TEST_CASE("a leader crash with writes in flight: each takes effect once",
          "[failover]") {
  for (const bool tcp : {true, false}) {
    DYNAMIC_SECTION((tcp ? "over TCP" : "over the in-memory network")) {
      auto started = LocalCluster::Start(
          {.members = 3,
           .in_memory_network = !tcp,
           .customize = [](NodeOptions& o) { o.request_timeout = kRequestTimeout; }});
      REQUIRE(started.ok());
      LocalCluster& cluster = **started;
      REQUIRE(cluster.WaitForLeader().ok());
      const raft::MemberId old_leader = cluster.leader_id();

      std::vector<std::unique_ptr<KeyWriter>> writers;
      int next_writer = 0;
      for (raft::MemberId id : cluster.ids()) {
        if (id == old_leader) continue;
        for (int w = 0; w < 4; ++w) {
          writers.push_back(
              std::make_unique<KeyWriter>(cluster.member(id), next_writer++));
        }
      }
      std::this_thread::sleep_for(milliseconds(300));
      REQUIRE(cluster.Crash(old_leader).ok());
      std::this_thread::sleep_for(milliseconds(1500));
      for (auto& writer : writers) writer->Stop();

      absl::StatusOr<Node*> leader = cluster.WaitForLeader();
      REQUIRE(leader.ok());
      CHECK(cluster.leader_id() != old_leader);

      // Everything in the namespace, read at one linearizable point.
      std::map<std::string, kv::KeyValue> stored;
      kv::ListRequest request{.ns = "failover", .limit = 1000};
      for (int page = 0; page < 1000; ++page) {
        absl::StatusOr<kv::ListPage> listed = (*leader)->List(request);
        REQUIRE(listed.ok());
        for (kv::KeyValue& kv : listed->items) stored[kv.key] = std::move(kv);
        if (!listed->more) break;
        request.start_after = listed->next_start_after;
      }

      int acknowledged = 0;
      int answered_late = 0;
      std::map<std::string, int> failures;
      for (const auto& writer : writers) {
        for (const Outcome& outcome : writer->outcomes()) {
          if (outcome.took > kRequestTimeout + milliseconds(500)) ++answered_late;
          if (outcome.status.ok()) {
            ++acknowledged;
            INFO("acknowledged write " << outcome.key);
            CHECK(stored.count(outcome.key) == 1);
          } else {
            ++failures[outcome.status.ToString()];
          }
        }
      }
      // Applied once: a key written twice would have version 2.
      int applied_twice = 0;
      for (const auto& [key, kv] : stored) applied_twice += kv.version != 1;
      std::string failed;
      for (const auto& [failure, count] : failures) {
        failed += std::to_string(count) + " x " + failure + "; ";
      }
      INFO("acknowledged " << acknowledged << ", stored " << stored.size()
                           << ", failed: " << failed);
      CHECK(applied_twice == 0);
      CHECK(answered_late == 0);
      CHECK(acknowledged > 100);
      // The failover is far shorter than the request timeout, so every
      // write in flight at the crash is retried to success.
      CHECK(failures.empty());
    }
  }
}

}  // namespace
}  // namespace confman
