// Kills a one-member Node writing a mix of small values and values large
// enough to stay in the log with SIGKILL at random points, then reopens it:
// every write acknowledged before the kill must read back with the
// revision it was acknowledged at. Writes are acknowledged before the
// state's own commit, and large values live only in the log, so this checks
// that the log alone carries every acknowledged write across a crash.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>

#include "confman/node.h"
#include "confman/transport/in_memory.h"
#include "kill_child.h"
#include "test_dir.h"

namespace confman {
namespace {

constexpr int kKills = 20;
constexpr uint64_t kKeys = 16;
constexpr size_t kLargeBytes = 100 * 1024;  // Above value_in_log_min_bytes.

// What a child reports for each acknowledged write.
struct Ack {
  uint64_t sequence;
  uint64_t revision;
};

std::string KeyFor(uint64_t sequence) {
  return "k" + std::to_string(sequence % kKeys);
}

// Every third write is large. The content names the write and is random
// past that, so compression cannot shrink a large one below the threshold.
std::string ValueFor(uint64_t sequence) {
  std::string value = "write-" + std::to_string(sequence) + "-";
  const size_t size = sequence % 3 == 0 ? kLargeBytes : 64;
  std::mt19937_64 bytes(sequence);
  while (value.size() < size) value += static_cast<char>(bytes());
  return value;
}

NodeOptions OptionsFor(const std::string& dir, InMemoryNetwork& network) {
  NodeOptions options{
      .id = 1,
      .cluster_id = "crash",
      .shared_secret = "crash-secret-0123456789",
      .listen_address = "127.0.0.1:7101",
      .initial_members = {{1, "127.0.0.1:7101"}},
      .data_dir = dir,
  };
  // Short so a reopened member elects itself quickly; compaction often so
  // large values move below the log while the test runs.
  options.election_timeout = std::chrono::milliseconds(100);
  options.heartbeat_interval = std::chrono::milliseconds(20);
  options.log_keep_entries = 1;
  options.log_compact_every = 1;
  options.transport_factory =
      [&network](
          raft::MemberId self) -> absl::StatusOr<std::unique_ptr<Transport>> {
    auto transport = network.CreateTransport(self);
    if (!transport.ok()) return transport.status();
    return std::unique_ptr<Transport>(std::move(*transport));
  };
  return options;
}

Node* WaitForLeadership(Node& node) {
  for (int i = 0; i < 500; ++i) {
    if (node.GetStatus().role == raft::Role::kLeader) return &node;
    usleep(10000);
  }
  return nullptr;
}

[[noreturn]] void RunChild(const std::string& dir, int ack_fd, uint64_t first) {
  InMemoryNetwork network;
  auto opened = Node::Open(OptionsFor(dir, network));
  if (!opened.ok()) {
    std::fprintf(stderr, "reopening the node failed: %s\n",
                 opened.status().ToString().c_str());
    _exit(2);
  }
  if (WaitForLeadership(**opened) == nullptr) _exit(6);
  const char ready = 'R';
  if (write(ack_fd, &ready, 1) != 1) _exit(3);
  for (uint64_t sequence = first;; ++sequence) {
    auto revision =
        (*opened)->Put("crash", KeyFor(sequence), ValueFor(sequence));
    if (!revision.ok()) _exit(4);
    const Ack ack{sequence, *revision};
    if (write(ack_fd, &ack, sizeof ack) != sizeof ack) _exit(5);
  }
}

std::vector<Ack> ParseAcks(const std::string& reported) {
  REQUIRE(reported.size() % sizeof(Ack) == 0);
  std::vector<Ack> acks(reported.size() / sizeof(Ack));
  if (!acks.empty()) std::memcpy(acks.data(), reported.data(), reported.size());
  return acks;
}

TEST_CASE("a node killed while writing keeps every acknowledged write",
          "[crash]") {
  confman::testing::TempDir root;
  const std::string dir = root.path() + "/member";
  std::mt19937_64 rng(Catch::rngSeed() + 3);
  // key -> the last acknowledged write to it, across all runs.
  std::map<std::string, Ack> latest;
  uint64_t next_sequence = 0;
  uint64_t acked_total = 0;
  for (int kill_count = 0; kill_count < kKills; ++kill_count) {
    const uint64_t first = next_sequence;
    const std::vector<Ack> acks = ParseAcks(testing::RunUntilKilled(
        rng, [&](int fd) { RunChild(dir, fd, first); }));
    for (const Ack& ack : acks) latest[KeyFor(ack.sequence)] = ack;
    acked_total += acks.size();
    // Unacknowledged writes of the killed run may or may not have taken
    // effect; later runs use fresh sequence numbers so they are told apart.
    next_sequence = first + acks.size() + 1000;

    InMemoryNetwork network;
    auto node = Node::Open(OptionsFor(dir, network));
    REQUIRE(node.ok());
    REQUIRE(WaitForLeadership(**node) != nullptr);
    for (const auto& [key, ack] : latest) {
      auto got = (*node)->Get("crash", key, {ReadConsistency::kLinearizable});
      INFO("key " << key << " acknowledged at revision " << ack.revision
                  << " (write " << ack.sequence << ")");
      REQUIRE(got.ok());
      // A later unacknowledged write to the same key may have landed.
      REQUIRE(got->mod_revision >= ack.revision);
      if (got->mod_revision == ack.revision) {
        REQUIRE(got->value == ValueFor(ack.sequence));
      }
    }
    (*node)->Close();
  }
  // The kills must have landed mid-stream, not before any write.
  CHECK(acked_total > 0);
}

}  // namespace
}  // namespace confman
