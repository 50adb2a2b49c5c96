// Members that fall behind the leader's compacted log catch up through a
// snapshot while writes go on, over and over: the install must interleave
// with the log writes that follow the snapshot without harming the member,
// and the member must then keep up with the writes.
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "confman/node.h"
#include "counting_metrics.h"
#include "confman/testing/local_cluster.h"

namespace confman {
namespace {

using testing::LocalCluster;
using Clock = std::chrono::steady_clock;

// Writes small values through one member (forwarded if it does not lead)
// until stopped. LocalCluster is driven from the test's thread only, so the
// writer holds the Node itself; the test never crashes that member.
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
    const auto deadline = Clock::now() + std::chrono::minutes(3);
    for (uint64_t i = 0; !stop_ && Clock::now() < deadline; ++i) {
      if (node_->Put("catchup", "k" + std::to_string(i % 64),
                     "value-" + std::to_string(i))
              .ok()) {
        ++acknowledged_;
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    }
  }

  Node* node_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> acknowledged_{0};
  std::thread thread_;
};


TEST_CASE("a member catches up through snapshots while writes go on",
          "[snapshot]") {
  CountingMetrics counters;
  auto started = LocalCluster::Start(
      {.members = 3, .customize = [&counters](NodeOptions& o) {
         // A few dozen entries behind is already too far for the log.
         o.log_keep_entries = 8;
         o.log_compact_every = 4;
         o.metrics = &counters;
       }});
  REQUIRE(started.ok());
  LocalCluster& cluster = **started;
  REQUIRE(cluster.WaitForLeader().ok());

  const raft::MemberId writing = cluster.leader_id();
  Node* const writer_node = cluster.member(writing);
  // The writer's member is never crashed; it knows the commit index.
  auto commit_index = [&] { return writer_node->GetStatus().commit_index; };
  Writer writer(writer_node);
  for (int round = 0; round < 6; ++round) {
    const raft::MemberId leader = cluster.leader_id();
    raft::MemberId lagging = raft::kNoMember;
    for (raft::MemberId id : cluster.ids()) {
      if (id != leader && id != writing) lagging = id;
    }
    REQUIRE(lagging != raft::kNoMember);
    const uint64_t installed = counters.Get("node.snapshots_received");
    REQUIRE(cluster.Crash(lagging).ok());
    const raft::Index crashed_at = commit_index();
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    while (commit_index() < crashed_at + 100 &&
           Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    REQUIRE(commit_index() >= crashed_at + 100);
    REQUIRE(cluster.Restart(lagging).ok());

    // With writes still going on, the member installs a snapshot and then
    // follows the log: its applied index reaches a commit index the leader
    // had after the restart.
    const raft::Index target = commit_index() + 50;
    const auto caught_up_by = Clock::now() + std::chrono::seconds(20);
    raft::Index applied = 0;
    while (Clock::now() < caught_up_by) {
      applied = cluster.member(lagging)->GetStatus().applied_index;
      if (applied >= target) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    INFO("round " << round << ": member " << lagging << " applied " << applied
                  << ", target " << target);
    REQUIRE(applied >= target);
    CHECK(counters.Get("node.snapshots_received") > installed);
  }
  writer.Stop();
  CHECK(writer.acknowledged() > 600);

  // Every member ends with the same state.
  const raft::Index commit = commit_index();
  REQUIRE(cluster.WaitForApplied(commit).ok());
  std::map<std::string, std::string> expected;
  for (raft::MemberId id : cluster.ids()) {
    std::map<std::string, std::string> seen;
    for (int k = 0; k < 64; ++k) {
      const std::string key = "k" + std::to_string(k);
      auto got = cluster.member(id)->Get("catchup", key,
                                         {ReadConsistency::kLocal});
      if (got.ok()) seen[key] = got->value + "@" + std::to_string(got->mod_revision);
    }
    if (expected.empty()) expected = seen;
    CHECK(seen == expected);
  }
}

}  // namespace
}  // namespace confman
