// A three-member cluster in memory storage over loopback TCP: the API's
// behaviour end to end, quickly. The LMDB variants live in
// tests/integration.
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <future>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "confman/node.h"
#include "confman/storage/memory.h"
#include "confman/testing/fault_injecting_log_store.h"
#include "confman/testing/local_cluster.h"
#include "confman/testing/node_faults.h"
#include "confman/transport.h"
#include "eventually.h"

namespace confman {
namespace {

using std::chrono::milliseconds;
using test::Eventually;
using testing::LocalCluster;
using testing::LocalClusterOptions;

std::unique_ptr<LocalCluster> StartCluster(bool in_memory_network = false,
                                           uint64_t log_keep_entries = 256) {
  auto cluster = LocalCluster::Start(LocalClusterOptions{
      .members = 3,
      .in_memory_storage = true,
      .in_memory_network = in_memory_network,
      .customize = [log_keep_entries](NodeOptions& o) {
        o.election_timeout = std::chrono::milliseconds(300);
        o.heartbeat_interval = std::chrono::milliseconds(30);
        o.log_keep_entries = log_keep_entries;
        o.log_compact_every = 8;
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

TEST_CASE("writes on any member are readable in every consistency everywhere") {
  auto cluster = StartCluster();
  uint64_t last = 0;
  for (raft::MemberId writer : cluster->ids()) {
    const std::string key = "k" + std::to_string(writer);
    auto rev =
        cluster->member(writer)->Put("app", key, "v" + std::to_string(writer));
    REQUIRE(rev.ok());
    CHECK(*rev > last);
    last = *rev;
  }
  for (raft::MemberId reader : cluster->ids()) {
    for (ReadConsistency c :
         {ReadConsistency::kLinearizable, ReadConsistency::kLease}) {
      auto got = cluster->member(reader)->Get("app", "k1", ReadOptions{c});
      REQUIRE(got.ok());
      CHECK(got->value == "v1");
    }
  }
  REQUIRE(
      cluster
          ->WaitForApplied(
              cluster->member(cluster->leader_id())->GetStatus().commit_index)
          .ok());
  auto local = cluster->member(3)->Get("app", "k2", {ReadConsistency::kLocal});
  REQUIRE(local.ok());
  CHECK(local->value == "v2");
}

TEST_CASE("compare-and-set conflicts are reported as FailedPrecondition") {
  auto cluster = StartCluster();
  Node* follower = AFollower(*cluster);
  auto created = follower->CompareAndSet("app", "lock", 0, "a");
  REQUIRE(created.ok());
  auto again = follower->CompareAndSet("app", "lock", 0, "b");
  CHECK(absl::IsFailedPrecondition(again.status()));
  auto swapped = follower->CompareAndSet("app", "lock", *created, "c");
  REQUIRE(swapped.ok());
  auto got = follower->Get("app", "lock");
  REQUIRE(got.ok());
  CHECK(got->value == "c");
  CHECK(got->mod_revision == *swapped);
}

TEST_CASE("bad requests fail clearly and the member keeps working") {
  auto cluster = StartCluster();
  Node* node = cluster->member(1);
  CHECK(
      absl::IsInvalidArgument(node->Put("confman.members", "9", "x").status()));
  CHECK(absl::IsInvalidArgument(node->Put("", "k", "x").status()));
  CHECK(absl::IsInvalidArgument(
      node->Put("app", "big", std::string((4u << 20) + 1, 'x')).status()));
  CHECK(absl::IsNotFound(node->Get("app", "absent").status()));
  CHECK(node->Put("app", "ok", "fine").ok());
}

TEST_CASE("delete and list") {
  auto cluster = StartCluster();
  Node* node = cluster->member(2);
  for (int i = 0; i < 5; ++i) {
    REQUIRE(node->Put("ns", "p/" + std::to_string(i), "x").ok());
  }
  REQUIRE(node->Put("ns", "q", "y").ok());
  REQUIRE(node->Delete("ns", "p/3").ok());
  auto page =
      node->List(kv::ListRequest{.ns = "ns", .prefix = "p/", .limit = 2});
  REQUIRE(page.ok());
  CHECK(page->items.size() == 2);
  CHECK(page->more);
  auto rest = node->List(kv::ListRequest{
      .ns = "ns", .prefix = "p/", .start_after = page->next_start_after});
  REQUIRE(rest.ok());
  CHECK(rest->items.size() == 2);  // p/2, p/4 (p/3 deleted)
  CHECK(absl::IsNotFound(node->Get("ns", "p/3").status()));
}

TEST_CASE("a watch delivers every change in order and resumes") {
  auto cluster = StartCluster();
  std::mutex mu;
  std::vector<std::string> watch_errors;  // Guarded by mu.
  std::vector<uint64_t> seen;
  auto watch = cluster->member(3)->Watch(
      WatchRequest{.ns = "w"}, [&](absl::StatusOr<kv::Change> c) {
        std::lock_guard lock(mu);
        if (!c.ok()) {
          watch_errors.push_back(c.status().ToString());
          return;
        }
        seen.push_back(c->revision);
      });
  REQUIRE(watch.ok());
  std::vector<uint64_t> written;
  for (int i = 0; i < 20; ++i) {
    auto rev =
        cluster->member(1 + i % 3)->Put("w", "k" + std::to_string(i % 4), "v");
    REQUIRE(rev.ok());
    written.push_back(*rev);
    REQUIRE(cluster->member(1)->Put("other", "k", "v").ok());
  }
  auto seen_count = [&] {
    std::lock_guard lock(mu);
    return seen.size();
  };
  CHECK(Eventually([&] { return seen_count() >= written.size(); },
                   milliseconds(3000)));
  (*watch)->Cancel();
  {
    std::lock_guard lock(mu);
    CHECK(watch_errors.empty());
    CHECK(seen == written);
  }
  // Resume from the middle.
  std::vector<uint64_t> resumed;
  auto again = cluster->member(2)->Watch(
      WatchRequest{.ns = "w", .after_revision = written[9]},
      [&](absl::StatusOr<kv::Change> c) {
        std::lock_guard lock(mu);
        if (!c.ok()) {
          watch_errors.push_back(c.status().ToString());
          return;
        }
        resumed.push_back(c->revision);
      });
  REQUIRE(again.ok());
  auto resumed_count = [&] {
    std::lock_guard lock(mu);
    return resumed.size();
  };
  CHECK(Eventually([&] { return resumed_count() >= 10; }, milliseconds(3000)));
  (*again)->Cancel();
  std::lock_guard lock(mu);
  CHECK(watch_errors.empty());
  CHECK(resumed == std::vector<uint64_t>(written.begin() + 10, written.end()));
}

TEST_CASE("async writes complete through callbacks and futures") {
  auto cluster = StartCluster();
  Node* node = AFollower(*cluster);
  auto future = node->WriteFuture(kv::Command{
      .kind = kv::Command::Kind::kPut, .ns = "a", .key = "k", .value = "1"});
  REQUIRE(future.wait_for(std::chrono::seconds(5)) ==
          std::future_status::ready);
  auto rev = future.get();
  REQUIRE(rev.ok());
  std::promise<absl::StatusOr<kv::KeyValue>> got;
  node->GetAsync("a", "k", {}, [&](absl::StatusOr<kv::KeyValue> v) {
    got.set_value(std::move(v));
  });
  auto value = got.get_future().get();
  REQUIRE(value.ok());
  CHECK(value->mod_revision == *rev);
}

// Wraps a member's transport: the test can withhold the snapshot chunk
// acknowledgements one member sends, and send acknowledgements of its own
// through any member's transport.
struct AckSpy {
  std::mutex mu;
  raft::MemberId withholding = raft::kNoMember;  // whose acks are held back
  std::vector<TransportSnapshotAck> withheld;
  std::map<raft::MemberId, Transport*> transports;

  size_t WithheldFor(uint64_t snapshot_id) {
    std::lock_guard<std::mutex> lock(mu);
    size_t n = 0;
    for (const auto& ack : withheld) n += ack.snapshot_id == snapshot_id;
    return n;
  }
};

class SpyTransport : public Transport {
 public:
  SpyTransport(raft::MemberId self, std::unique_ptr<Transport> inner,
               AckSpy* spy)
      : self_(self), inner_(std::move(inner)), spy_(spy) {
    std::lock_guard<std::mutex> lock(spy_->mu);
    spy_->transports[self_] = inner_.get();
  }
  ~SpyTransport() override {
    {
      std::lock_guard<std::mutex> lock(spy_->mu);
      if (spy_->transports[self_] == inner_.get())
        spy_->transports.erase(self_);
    }
    inner_->Stop();
  }
  absl::Status Start(TransportHandler* handler) override {
    return inner_->Start(handler);
  }
  void Stop() override { inner_->Stop(); }
  absl::Status AddPeer(raft::MemberId id, const std::string& address) override {
    return inner_->AddPeer(id, address);
  }
  void RemovePeer(raft::MemberId id) override { inner_->RemovePeer(id); }
  absl::Status Send(raft::Message message) override {
    return inner_->Send(std::move(message));
  }
  absl::Status SendSnapshotChunk(raft::MemberId to,
                                 TransportSnapshotChunk chunk) override {
    return inner_->SendSnapshotChunk(to, std::move(chunk));
  }
  absl::Status SendForward(raft::MemberId to, ForwardFrame frame) override {
    return inner_->SendForward(to, std::move(frame));
  }
  absl::Status SendSnapshotAck(raft::MemberId to,
                               TransportSnapshotAck ack) override {
    {
      std::lock_guard<std::mutex> lock(spy_->mu);
      if (spy_->withholding == self_) {
        spy_->withheld.push_back(ack);
        return absl::OkStatus();
      }
    }
    return inner_->SendSnapshotAck(to, ack);
  }

 private:
  const raft::MemberId self_;
  const std::unique_ptr<Transport> inner_;
  AckSpy* const spy_;
};

// A leader streams a snapshot only as far ahead of its receiver's
// acknowledgements as its window allows. An acknowledgement for the stream
// from any other member (a confused or hostile peer) must not widen it.
TEST_CASE("a snapshot stream counts only its receiver's acknowledgements") {
  AckSpy spy;  // outlives the cluster, whose transports point at it
  auto started = LocalCluster::Start(LocalClusterOptions{
      .members = 3,
      .in_memory_storage = true,
      .in_memory_network = true,
      .customize = [&spy](NodeOptions& o) {
        o.election_timeout = std::chrono::milliseconds(300);
        o.heartbeat_interval = std::chrono::milliseconds(30);
        o.log_keep_entries = 8;
        o.log_compact_every = 4;
        // Small chunks, so the state below takes far more of them than
        // the window holds.
        o.snapshot_chunk_bytes = 4096;
        o.transport_factory = [&spy,
                               inner = o.transport_factory](raft::MemberId self)
            -> absl::StatusOr<std::unique_ptr<Transport>> {
          absl::StatusOr<std::unique_ptr<Transport>> transport = inner(self);
          if (!transport.ok()) return transport.status();
          return std::unique_ptr<Transport>(
              new SpyTransport(self, std::move(*transport), &spy));
        };
      }});
  REQUIRE(started.ok());
  LocalCluster& cluster = **started;
  REQUIRE(cluster.WaitForLeader().ok());
  const raft::MemberId leader = cluster.leader_id();
  raft::MemberId receiver = raft::kNoMember, bystander = raft::kNoMember;
  for (raft::MemberId id : cluster.ids()) {
    if (id == leader) continue;
    (receiver == raft::kNoMember ? receiver : bystander) = id;
  }
  {
    std::lock_guard<std::mutex> lock(spy.mu);
    spy.withholding = receiver;
  }

  // The receiver forgets everything (in-memory storage) and the log moves
  // on, so it can only catch up through a snapshot: about 400 KB of state.
  REQUIRE(cluster.Crash(receiver).ok());
  Node* const leader_node = cluster.member(leader);
  const std::string value(2000, 'v');
  for (int i = 0; i < 200; ++i) {
    REQUIRE(leader_node->Put("s", "k" + std::to_string(i), value).ok());
  }
  REQUIRE(cluster.Restart(receiver).ok());

  // The stream stops at its window while the receiver acknowledges nothing.
  uint64_t snapshot_id = 0;
  REQUIRE(Eventually([&] {
    std::lock_guard<std::mutex> lock(spy.mu);
    if (spy.withheld.empty()) return false;
    snapshot_id = spy.withheld.front().snapshot_id;
    return true;
  }));
  // Held means no new chunk for 600 ms (slow sanitizer builds included).
  size_t window = 0;
  int unchanged = 0;
  REQUIRE(Eventually(
      [&] {
        const size_t now = spy.WithheldFor(snapshot_id);
        unchanged = now == window ? unchanged + 1 : 0;
        window = now;
        return unchanged >= 3;
      },
      milliseconds(10000), milliseconds(200)));
  INFO("the stream's window held at " << window << " chunks");
  REQUIRE(window >= 1);
  REQUIRE(window < 50);

  // The bystander acknowledges the whole stream; the leader must ignore it.
  {
    std::lock_guard<std::mutex> lock(spy.mu);
    REQUIRE(spy.transports.count(bystander) == 1);
    REQUIRE(spy.transports[bystander]
                ->SendSnapshotAck(
                    leader, TransportSnapshotAck{.snapshot_id = snapshot_id,
                                                 .seq = 1'000'000})
                .ok());
  }
  std::this_thread::sleep_for(milliseconds(500));
  CHECK(spy.WithheldFor(snapshot_id) == window);

  // The receiver's own acknowledgement moves the stream on, and the
  // receiver catches up.
  TransportSnapshotAck last;
  {
    std::lock_guard<std::mutex> lock(spy.mu);
    spy.withholding = raft::kNoMember;
    last = spy.withheld.back();
    REQUIRE(spy.transports[receiver]->SendSnapshotAck(leader, last).ok());
  }
  const raft::Index commit = leader_node->GetStatus().commit_index;
  CHECK(Eventually(
      [&] {
        return cluster.member(receiver)->GetStatus().applied_index >= commit;
      },
      milliseconds(20000)));
  auto got =
      cluster.member(receiver)->Get("s", "k199", {ReadConsistency::kLocal});
  REQUIRE(got.ok());
  CHECK(got->value == value);
}

TEST_CASE("a partitioned leader is replaced and writes continue") {
  auto cluster = StartCluster(/*in_memory_network=*/true);
  const raft::MemberId old_leader = cluster->leader_id();
  REQUIRE(cluster->member(old_leader)->Put("p", "before", "1").ok());
  REQUIRE(cluster->Partition(old_leader).ok());
  raft::MemberId new_leader = raft::kNoMember;
  REQUIRE(Eventually([&] {
    for (raft::MemberId id : cluster->ids()) {
      if (id == old_leader) continue;
      auto s = cluster->member(id)->GetStatus();
      if (s.role == raft::Role::kLeader) new_leader = id;
    }
    return new_leader != raft::kNoMember;
  }));
  REQUIRE(cluster->member(new_leader)->Put("p", "during", "2").ok());
  REQUIRE(cluster->Heal().ok());
  REQUIRE(cluster->WaitForLeader().ok());
  auto got = cluster->member(old_leader)->Get("p", "during");
  REQUIRE(got.ok());
  CHECK(got->value == "2");
}

TEST_CASE(
    "membership: a member joins through a snapshot, becomes a voter, is "
    "removed") {
  // A short log tail: the newcomer cannot catch up from the log alone.
  auto cluster =
      StartCluster(/*in_memory_network=*/false, /*log_keep_entries=*/4);
  Node* leader = *cluster->WaitForLeader();
  for (int i = 0; i < 50; ++i) {
    REQUIRE(
        leader->Put("m", "k" + std::to_string(i), std::string(1000, 'x')).ok());
  }
  auto id = cluster->AddMember();
  REQUIRE(id.ok());
  leader = *cluster->WaitForLeader();
  REQUIRE(cluster->WaitForApplied(leader->GetStatus().commit_index).ok());
  REQUIRE(leader->PromoteToVoter(*id).ok());
  auto got = cluster->member(*id)->Get("m", "k49", {ReadConsistency::kLocal});
  REQUIRE(got.ok());
  CHECK(got->value.size() == 1000);
  CHECK(Eventually(
      [&] {
        leader = *cluster->WaitForLeader();
        const raft::Membership m = leader->GetStatus().membership;
        return m.voters.size() == 4 && !m.joint();
      },
      milliseconds(2000)));
  absl::Status removed = leader->RemoveMember(*id);
  INFO(removed.ToString());
  REQUIRE(removed.ok());
  REQUIRE(cluster->Crash(*id).ok());
  leader = *cluster->WaitForLeader();
  CHECK(leader->Put("m", "after", "1").ok());
}

}  // namespace
}  // namespace confman

namespace confman {
namespace {

class CountingSink final : public MetricsSink {
 public:
  void AddCounter(std::string_view name, uint64_t delta) override {
    std::lock_guard lock(mu_);
    counters_[std::string(name)] += delta;
  }
  void RecordHistogram(std::string_view name, double) override {
    std::lock_guard lock(mu_);
    ++samples_[std::string(name)];
  }
  uint64_t counter(const std::string& name) {
    std::lock_guard lock(mu_);
    return counters_[name];
  }
  uint64_t samples(const std::string& name) {
    std::lock_guard lock(mu_);
    return samples_[name];
  }

 private:
  std::mutex mu_;
  std::map<std::string, uint64_t> counters_;
  std::map<std::string, uint64_t> samples_;
};

// Three in-memory members that all report to `sink`, with a leader.
std::unique_ptr<LocalCluster> StartMeteredCluster(CountingSink& sink) {
  auto cluster = LocalCluster::Start(LocalClusterOptions{
      .members = 3,
      .in_memory_storage = true,
      .customize = [&](NodeOptions& o) { o.metrics = &sink; }});
  REQUIRE(cluster.ok());
  REQUIRE((*cluster)->WaitForLeader().ok());
  return *std::move(cluster);
}

TEST_CASE("the metrics hook sees writes, forwards and applies") {
  CountingSink sink;
  std::unique_ptr<LocalCluster> cluster = StartMeteredCluster(sink);
  Node* follower = AFollower(*cluster);
  for (int i = 0; i < 5; ++i) REQUIRE(follower->Put("m", "k", "v").ok());
  Node* leader = cluster->member(cluster->leader_id());
  REQUIRE(leader != nullptr);
  // Every write has been applied on the leader (Put returned); the status's
  // commit index may be a cached, older value.
  REQUIRE(cluster->WaitForApplied(leader->GetStatus().applied_index).ok());
  CHECK(sink.counter("node.proposals") >= 5);
  CHECK(sink.counter("node.forwarded") >= 5);
  CHECK(sink.counter("node.applied_entries") >= 15);  // On three members.
  CHECK(sink.samples("node.write_ms") >= 5);
  CHECK(sink.counter("node.proposals_failed") == 0);
}

TEST_CASE("writes queued together on the leader are proposed together") {
  CountingSink sink;
  std::unique_ptr<LocalCluster> cluster = StartMeteredCluster(sink);
  Node* leader = cluster->member(cluster->leader_id());
  REQUIRE(leader != nullptr);
  // Issued without waiting: they reach the Raft loop faster than it can
  // replicate one, so most find others queued.
  constexpr int kWrites = 400;
  std::vector<std::future<absl::StatusOr<uint64_t>>> answers;
  for (int i = 0; i < kWrites; ++i) {
    answers.push_back(leader->WriteFuture(
        kv::Command{.ns = "batch", .key = absl::StrCat("k", i), .value = "v"}));
  }
  for (auto& answer : answers) REQUIRE(answer.get().ok());
  const uint64_t proposal_calls = sink.samples("node.proposal_batch_entries");
  INFO(kWrites << " writes in " << proposal_calls << " proposal calls");
  CHECK(proposal_calls >= 1);
  CHECK(proposal_calls <= kWrites / 4);
}

TEST_CASE("no callback runs after Close returns") {
  auto cluster = StartCluster();
  Node* node = cluster->member(cluster->leader_id());
  std::atomic<bool> closed{false};
  std::atomic<int> late{0};
  std::atomic<int> completed{0};
  for (int i = 0; i < 200; ++i) {
    node->WriteAsync(kv::Command{.kind = kv::Command::Kind::kPut,
                                 .ns = "c",
                                 .key = std::to_string(i)},
                     {}, [&](absl::StatusOr<uint64_t>) {
                       if (closed) ++late;
                       ++completed;
                     });
  }
  auto watch = node->Watch({.ns = "c"}, [&](absl::StatusOr<kv::Change>) {
    if (closed) ++late;
  });
  REQUIRE(watch.ok());
  node->Close();
  closed = true;
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK(late == 0);
  CHECK(completed == 200);  // Each one answered: success or an error.
  CHECK(absl::IsUnavailable(node->Put("c", "after", "x").status()));
  watch->reset();
}

}  // namespace
}  // namespace confman

namespace confman {
namespace {

// Closing stops every watch while hosts may be destroying their handles on
// other threads; neither may touch a watch the other has freed (run under
// AddressSanitizer or ThreadSanitizer to see a violation).
TEST_CASE("watch handles destroyed while the node closes") {
  auto cluster = StartCluster();
  Node* node = cluster->member(cluster->leader_id());
  for (int round = 0; round < 5; ++round) {
    std::vector<std::unique_ptr<WatchHandle>> handles;
    for (int i = 0; i < 40; ++i) {
      auto watch = node->Watch({.ns = "d"}, [](absl::StatusOr<kv::Change>) {});
      REQUIRE(watch.ok());
      handles.push_back(std::move(*watch));
    }
    if (round == 4) {
      std::thread destroyer([&] { handles.clear(); });
      node->Close();
      destroyer.join();
    } else {
      std::thread destroyer([&] {
        for (size_t i = 0; i < handles.size(); i += 2) handles[i].reset();
      });
      for (size_t i = 1; i < handles.size(); i += 2) handles[i].reset();
      destroyer.join();
    }
  }
  CHECK(absl::IsUnavailable(node->Put("d", "after", "x").status()));
}

TEST_CASE("a watch resuming before the retained history gets OutOfRange") {
  auto cluster = LocalCluster::Start(LocalClusterOptions{
      .members = 3, .in_memory_storage = true, .customize = [](NodeOptions& o) {
        o.history_retention = 10;
      }});
  REQUIRE(cluster.ok());
  Node* leader = *(*cluster)->WaitForLeader();
  for (int i = 0; i < 30; ++i)
    REQUIRE(leader->Put("h", "k", std::to_string(i)).ok());
  std::promise<absl::Status> ended;
  auto watch = leader->Watch({.ns = "h", .after_revision = 1},
                             [&](absl::StatusOr<kv::Change> c) {
                               if (!c.ok()) ended.set_value(c.status());
                             });
  REQUIRE(watch.ok());
  auto future = ended.get_future();
  REQUIRE(future.wait_for(std::chrono::seconds(5)) ==
          std::future_status::ready);
  CHECK(absl::IsOutOfRange(future.get()));
}

}  // namespace
}  // namespace confman

namespace confman {
namespace {

TEST_CASE(
    "a read on a deposed leader fails with Unavailable before the request "
    "timeout") {
  auto cluster = StartCluster(/*in_memory_network=*/true);
  const raft::MemberId old_leader = cluster->leader_id();
  Node* node = cluster->member(old_leader);
  REQUIRE(node->Put("r", "k", "v").ok());
  REQUIRE(cluster->Partition(old_leader).ok());
  const auto start = std::chrono::steady_clock::now();
  auto got = node->Get("r", "k", {ReadConsistency::kLinearizable});
  const auto waited = std::chrono::steady_clock::now() - start;
  INFO(got.status().ToString());
  CHECK(absl::IsUnavailable(got.status()));
  // Check-quorum deposes the leader within about one election timeout
  // (300 ms here); the request timeout is 5 s.
  CHECK(waited < std::chrono::seconds(2));
  REQUIRE(cluster->Heal().ok());
}

TEST_CASE(
    "a member whose log cannot be written refuses writes; the others keep "
    "serving") {
  CountingSink sink;
  // The stores each member's log wraps: owned here and declared before the
  // cluster, so they outlive every Node.
  std::map<raft::MemberId, std::unique_ptr<MemoryLogStore>> stores;
  // The wrappers: owned by each member's Node, used only while it runs.
  std::map<raft::MemberId, FaultInjectingLogStore*> faults;
  auto started = LocalCluster::Start(LocalClusterOptions{
      .members = 3,
      .in_memory_storage = true,
      .customize = [&](NodeOptions& o) {
        o.election_timeout = std::chrono::milliseconds(300);
        o.heartbeat_interval = std::chrono::milliseconds(30);
        o.request_timeout = std::chrono::milliseconds(1500);
        o.metrics = &sink;
        o.log_store_factory = [&, id = o.id](const std::string& dir)
            -> absl::StatusOr<std::unique_ptr<LogStore>> {
          CHECK(dir.empty());  // In-memory members have no directory.
          stores[id] = std::make_unique<MemoryLogStore>();
          auto wrapper =
              std::make_unique<FaultInjectingLogStore>(stores[id].get());
          faults[id] = wrapper.get();
          return std::unique_ptr<LogStore>(std::move(wrapper));
        };
      }});
  REQUIRE(started.ok());
  LocalCluster& cluster = **started;
  Node* broken = *cluster.WaitForLeader();
  const raft::MemberId broken_id = cluster.leader_id();
  REQUIRE(broken->Put("s", "before", "1").ok());

  faults.at(broken_id)->FailNextWrites(
      1000000,
      absl::ResourceExhaustedError("no space left on device (injected)"));
  // This write's log append fails; it may still commit through the others.
  (void)broken->Put("s", "during", "2");
  absl::Status storage;
  CHECK(Eventually(
      [&] {
        storage = broken->GetStatus().storage_error;
        return !storage.ok();
      },
      milliseconds(3000)));
  INFO(storage.ToString());
  CHECK(absl::IsResourceExhausted(storage));
  CHECK(sink.counter("node.storage_errors") == 1);

  auto refused = broken->Put("s", "after", "3");
  INFO(refused.status().ToString());
  CHECK(absl::IsUnavailable(refused.status()));
  CHECK(refused.status().message().find("no space left on device") !=
        std::string::npos);

  // Its log takes no new entries, so it can never reach a fresh read point:
  // a linearizable read is refused at once, not at the request timeout.
  const auto read_start = std::chrono::steady_clock::now();
  auto read = broken->Get("s", "before", {ReadConsistency::kLinearizable});
  INFO(read.status().ToString());
  CHECK(absl::IsUnavailable(read.status()));
  CHECK(std::chrono::steady_clock::now() - read_start <
        std::chrono::milliseconds(500));
  CHECK(broken->Get("s", "before", {ReadConsistency::kLocal}).ok());

  // The broken member hands leadership over; the others carry on.
  CHECK(Eventually(
      [&] {
        for (raft::MemberId id : cluster.ids()) {
          if (id == broken_id) continue;
          if (cluster.member(id)->Put("s", "after", "4").ok()) return true;
        }
        return false;
      },
      milliseconds(5000), milliseconds(20)));
  CHECK(broken->GetStatus().role != raft::Role::kLeader);
}

// After one failed log write a follower's log may have a gap where that
// write's entries belong. It must then acknowledge nothing more: an ack for
// a later write would tell the leader it holds entries it never stored.
TEST_CASE("a follower whose log write failed acknowledges nothing after it") {
  std::map<raft::MemberId, std::unique_ptr<MemoryLogStore>> stores;
  std::map<raft::MemberId, FaultInjectingLogStore*> faults;
  auto started = LocalCluster::Start(LocalClusterOptions{
      .members = 3,
      .in_memory_storage = true,
      .customize = [&](NodeOptions& o) {
        o.election_timeout = std::chrono::milliseconds(300);
        o.heartbeat_interval = std::chrono::milliseconds(30);
        o.log_store_factory = [&, id = o.id](const std::string&)
            -> absl::StatusOr<std::unique_ptr<LogStore>> {
          stores[id] = std::make_unique<MemoryLogStore>();
          auto wrapper =
              std::make_unique<FaultInjectingLogStore>(stores[id].get());
          faults[id] = wrapper.get();
          return std::unique_ptr<LogStore>(std::move(wrapper));
        };
      }});
  REQUIRE(started.ok());
  LocalCluster& cluster = **started;
  Node* leader = *cluster.WaitForLeader();
  const raft::MemberId leader_id = cluster.leader_id();
  const raft::MemberId follower = leader_id == 1 ? 2 : 1;
  REQUIRE(leader->Put("g", "before", "1").ok());
  // Idle, so the write that fails is the next one carrying entries.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));

  // One write fails; the ones after it reach the store again.
  faults.at(follower)->FailNextWrites(
      1, absl::UnavailableError("I/O error (injected)"));
  // Paced, so the leader also sends appends that carry no entries (commit
  // updates), which ask for an ack without a log write.
  for (int i = 0; i < 20; ++i) {
    REQUIRE(leader->Put("g", "k" + std::to_string(i), "v").ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));

  CHECK(!cluster.member(follower)->GetStatus().storage_error.ok());
  const MemoryLogStore& stored = *stores.at(follower);
  raft::Index promised = 0;
  for (const raft::MemberProgress& p : leader->GetStatus().progress) {
    if (p.id == follower) promised = p.match;
  }
  // Every entry the leader believes the follower holds is in its store.
  INFO("leader's match for member " << follower << ": " << promised
                                    << ", stored through "
                                    << stored.LastIndex());
  REQUIRE(promised <= stored.LastIndex());
  for (raft::Index i = std::max<raft::Index>(stored.FirstIndex(), 1);
       i <= promised; ++i) {
    INFO("index " << i);
    CHECK(stored.TermAt(i).ok());
  }
}

}  // namespace
}  // namespace confman

namespace confman {
namespace {

// A member whose Raft state breaks an invariant (injected here; a bug in
// real life) halts: it refuses every request, reads included, says why in
// its status, and the others go on without it.
TEST_CASE("a member that finds a broken invariant halts and serves nothing") {
  auto cluster = LocalCluster::Start(LocalClusterOptions{
      .members = 3, .in_memory_storage = true, .customize = [](NodeOptions& o) {
        o.election_timeout = std::chrono::milliseconds(300);
        o.heartbeat_interval = std::chrono::milliseconds(30);
        if (o.id == 3) {
          o.testing_faults =
              testing::FaultBit(testing::NodeTestingFault::kBreakInvariant);
        }
      }});
  REQUIRE(cluster.ok());
  REQUIRE((*cluster)->WaitForLeader().ok());
  Node* broken = (*cluster)->member(3);
  Node* healthy = (*cluster)->member(1);
  absl::StatusOr<uint64_t> last = absl::UnknownError("none");
  for (uint64_t i = 0; i < testing::kBreakInvariantAtCommit + 10; ++i) {
    last = healthy->Put("h", "k" + std::to_string(i), "v");
    if (!last.ok()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  Eventually([&] { return !broken->GetStatus().halted.ok(); },
             milliseconds(10000));
  const NodeStatus status = broken->GetStatus();
  INFO(status.halted.ToString());
  REQUIRE(absl::IsInternal(status.halted));
  CHECK(absl::StrContains(status.halted.message(), "broken invariant"));
  const raft::Index applied = status.applied_index;

  CHECK(absl::IsInternal(broken->Put("h", "x", "y").status()));
  CHECK(absl::IsInternal(broken->Get("h", "k1").status()));
  CHECK(absl::IsInternal(
      broken->Get("h", "k1", {ReadConsistency::kLocal}).status()));
  CHECK(absl::IsInternal(broken->List({.ns = "h"}).status()));
  CHECK(absl::IsInternal(broken->Watch({.ns = "h"}, [](auto) {}).status()));

  // The other two go on, and the halted member applies nothing more.
  for (int i = 0; i < 5; ++i) {
    CHECK(Eventually(
        [&] {
          Node* leader = (*cluster)->member((*cluster)->leader_id());
          if (leader == nullptr) leader = healthy;
          return leader->Put("h", "after" + std::to_string(i), "v").ok();
        },
        milliseconds(2500), milliseconds(50)));
  }
  CHECK(broken->GetStatus().applied_index == applied);
}

}  // namespace
}  // namespace confman
