// Three confman members in one process, over real TCP on 127.0.0.1 and
// LMDB in a temporary directory: write config, read it back from every
// member, crash the leader, and show that a new leader has every value.
//
// Exits 0 when everything checked out, 1 otherwise.

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "confman/node.h"
#include "confman/testing/loopback_port.h"

namespace {

using confman::Node;
using confman::NodeOptions;
using confman::ReadConsistency;
using confman::raft::MemberId;
using Clock = std::chrono::steady_clock;

constexpr int kMembers = 3;

bool Fail(const std::string& what) {
  std::fprintf(stderr, "FAILED: %s\n", what.c_str());
  return false;
}

class Example {
 public:
  explicit Example(std::string dir) : dir_(std::move(dir)) {}

  bool Run() {
    if (!OpenAll()) return false;
    MemberId leader = WaitForLeader(MemberId{0});
    if (leader == 0) return Fail("no leader was elected within 10 s");
    std::printf("leader: member %llu at %s\n", ToULL(leader),
                nodes_[leader]->listen_address().c_str());
    if (!WriteConfig() || !ReadEverywhere("before the crash")) return false;

    std::printf("crashing the leader, member %llu (its Node is dropped)\n",
                ToULL(leader));
    const auto crashed_at = Clock::now();
    nodes_.erase(leader);
    MemberId next = WaitForLeader(leader);
    if (next == 0) return Fail("no new leader within 10 s of the crash");
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
        Clock::now() - crashed_at);
    std::printf("new leader: member %llu at %s (elected in %lld ms)\n",
                ToULL(next), nodes_[next]->listen_address().c_str(),
                static_cast<long long>(ms.count()));
    if (!ReadEverywhere("after the crash")) return false;
    if (!Write(nodes_.begin()->second.get(), "service", "failover", "done")) {
      return false;
    }
    std::printf("a write after the failover succeeded\n");
    return true;
  }

 private:
  static unsigned long long ToULL(MemberId id) { return id; }

  bool OpenAll() {
    std::vector<confman::PeerAddress> peers;
    for (MemberId id = 1; id <= kMembers; ++id) {
      // A port no other process on this machine is using or about to use,
      // so the example runs beside other services and tests.
      absl::StatusOr<uint16_t> port = confman::testing::PickLoopbackPort();
      if (!port.ok())
        return Fail("choosing a port: " + port.status().ToString());
      peers.push_back({id, "127.0.0.1:" + std::to_string(*port)});
    }
    for (const auto& peer : peers) {
      auto node = Node::Open(NodeOptions{
          .id = peer.id,
          .cluster_id = "embedded-example",
          .shared_secret = "an example secret, change it",
          .listen_address = peer.address,
          .initial_members = peers,
          .data_dir = dir_ + "/member-" + std::to_string(peer.id),
      });
      if (!node.ok())
        return Fail("opening member: " + node.status().ToString());
      nodes_[peer.id] = std::move(*node);
    }
    std::printf("started %d members, data under %s\n", kMembers, dir_.c_str());
    return true;
  }

  // The leader every running member agrees on, other than `not_this`.
  MemberId WaitForLeader(MemberId not_this) {
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    while (Clock::now() < deadline) {
      MemberId agreed = 0;
      bool agree = true;
      for (const auto& [id, node] : nodes_) {
        const MemberId leader = node->GetStatus().leader;
        if (leader == 0 || leader == not_this ||
            (agreed != 0 && leader != agreed)) {
          agree = false;
        }
        agreed = leader;
      }
      if (agree && nodes_.count(agreed) != 0) return agreed;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return 0;
  }

  // Retries while an election is running (Unavailable), up to 10 s.
  bool Write(Node* node, const std::string& ns, const std::string& key,
             const std::string& value) {
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    while (true) {
      auto revision = node->Put(ns, key, value, {.actor = "embedded-example"});
      if (revision.ok()) {
        written_[ns + "/" + key] = value;
        return true;
      }
      if (!absl::IsUnavailable(revision.status()) || Clock::now() > deadline) {
        return Fail("put " + ns + "/" + key + ": " +
                    revision.status().ToString());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }

  bool WriteConfig() {
    const std::map<std::string, std::string> config = {
        {"max_connections", "512"},
        {"feature.dark_mode", "on"},
        {"timeout_ms", "2500"},
        {"region", "eu-west"},
        {"payload", std::string(64 * 1024, 'x')},  // Stored compressed.
    };
    int i = 0;
    for (const auto& [key, value] : config) {
      // Spread the writes: followers forward theirs to the leader.
      auto it = nodes_.begin();
      std::advance(it, i++ % nodes_.size());
      if (!Write(it->second.get(), "service", key, value)) return false;
    }
    std::printf("wrote %zu keys through every member\n", config.size());
    return true;
  }

  bool ReadEverywhere(const char* when) {
    for (const auto& [id, node] : nodes_) {
      for (const auto& [path, value] : written_) {
        const std::string key = path.substr(path.find('/') + 1);
        auto got = node->Get("service", key, {ReadConsistency::kLinearizable});
        if (!got.ok() || got->value != value) {
          return Fail("member " + std::to_string(id) + " " + when + ": " +
                      path +
                      (got.ok() ? " has the wrong value"
                                : " " + got.status().ToString()));
        }
      }
    }
    std::printf("every member returns all %zu values %s\n", written_.size(),
                when);
    const auto one = nodes_.begin()->second->Get("service", "max_connections");
    if (one.ok()) {
      std::printf("  service/max_connections = %s (revision %llu)\n",
                  one->value.c_str(),
                  static_cast<unsigned long long>(one->mod_revision));
    }
    return true;
  }

  std::string dir_;
  std::map<MemberId, std::unique_ptr<Node>> nodes_;
  std::map<std::string, std::string> written_;
};

}  // namespace

int main() {
  std::string dir =
      (std::filesystem::temp_directory_path() / "confman-example-XXXXXX")
          .string();
  if (::mkdtemp(dir.data()) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  bool ok = false;
  {
    Example example(dir);
    ok = example.Run();
  }  // Every member closes here, before its data is removed.
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  std::printf("%s\n", ok ? "OK" : "FAILED");
  return ok ? 0 : 1;
}
