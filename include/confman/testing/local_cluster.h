// confman::testing::LocalCluster — N confman members in one process, for
// testing code that uses confman against a real cluster.
//
//   auto cluster = confman::testing::LocalCluster::Start({.members = 3});
//   confman::Node* leader = (*cluster)->WaitForLeader().value();
//   leader->Put("app", "flag", "on");
//   (*cluster)->Crash((*cluster)->leader_id());
//
// Members talk over TCP on 127.0.0.1 (or an in-memory network) and keep
// their state in LMDB under a fresh temporary directory (or in memory),
// which the cluster removes when it is destroyed.
//
// Thread safety: a LocalCluster is driven from one thread (the test's).
// The Node pointers it hands out are valid until that member is crashed,
// removed or the cluster is destroyed.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "confman/node.h"
#include "confman/node_options.h"

namespace confman {
class InMemoryNetwork;
}

namespace confman::testing {

struct LocalClusterOptions {
  // Founding voters, with ids 1..members. Default 3; 1..9.
  int members = 3;
  // LMDB under a temporary directory (default), or in memory. In-memory
  // members forget everything when crashed.
  bool in_memory_storage = false;
  // TCP on 127.0.0.1 (default), or the in-memory network, which is the
  // only one that supports Partition().
  bool in_memory_network = false;
  // Parent for the temporary data directory. Default: the system's
  // temporary directory.
  std::string temp_root{};
  // Applied to every member's options before it opens, e.g. to shorten
  // timeouts or attach a MetricsSink.
  std::function<void(NodeOptions&)> customize{};
  // Multiplies the default election timeout, heartbeat interval and request
  // timeout (before `customize` runs), for builds whose threads run many
  // times slower than a release build, e.g. under ThreadSanitizer, where
  // the 150 ms default election timeout would see leaders come and go.
  // 0..100; 0 (default) reads the CONFMAN_TIME_SCALE environment variable,
  // or uses 1 if it is unset.
  uint32_t time_scale = 0;

  // InvalidArgument naming the field out of range.
  [[nodiscard]] absl::Status Validate() const;
};

class LocalCluster {
 public:
  // Opens every member. Returns the first member's error if one fails.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<LocalCluster>> Start(
      LocalClusterOptions options = {});
  // Closes every running member and deletes the temporary directory.
  ~LocalCluster();
  LocalCluster(const LocalCluster&) = delete;
  LocalCluster& operator=(const LocalCluster&) = delete;

  // Ids of every member the cluster created (running or crashed).
  std::vector<raft::MemberId> ids() const;
  // The running member `id`, or nullptr if it is crashed or unknown.
  Node* member(raft::MemberId id) const;
  // Its data directory (empty with in-memory storage).
  std::string data_dir(raft::MemberId id) const;
  // Its "127.0.0.1:port" address.
  std::string address(raft::MemberId id) const;

  // Waits until every running member agrees on one leader, which is
  // running, and returns it. DeadlineExceeded otherwise.
  [[nodiscard]] absl::StatusOr<Node*> WaitForLeader(
      std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // The leader the running members agree on right now, or kNoMember.
  raft::MemberId leader_id() const;
  // Waits until every running member has applied through `index`.
  [[nodiscard]] absl::Status WaitForApplied(raft::Index index,
                              std::chrono::milliseconds timeout =
                                  std::chrono::seconds(10));

  // Stops member `id` at once (its Node is closed without waiting for the
  // cluster); its data directory is kept for Restart. NotFound if unknown
  // or already stopped.
  [[nodiscard]] absl::Status Crash(raft::MemberId id);
  // Reopens a crashed member on the same data directory and address.
  [[nodiscard]] absl::Status Restart(raft::MemberId id);

  // Opens a new member (id = largest so far + 1) that joins the cluster,
  // adds it as a learner through the leader and returns its id. Promote it
  // with the leader's PromoteToVoter once it has caught up.
  [[nodiscard]] absl::StatusOr<raft::MemberId> AddMember();

  // Cuts member `id` off from every other member (in-memory network only;
  // FailedPrecondition over TCP). Heal() restores every link.
  [[nodiscard]] absl::Status Partition(raft::MemberId id);
  // Cuts (up = false) or restores one direction of one link: messages from
  // `from` to `to` are dropped while it is cut, the reverse direction keeps
  // working (in-memory network only; FailedPrecondition over TCP).
  [[nodiscard]] absl::Status SetLinkUp(raft::MemberId from, raft::MemberId to,
                                       bool up);
  [[nodiscard]] absl::Status Heal();

 private:
  struct Member {
    std::string address;
    std::string data_dir;
    bool joined = false;  // Added after the start.
    std::unique_ptr<Node> node;
  };

  explicit LocalCluster(LocalClusterOptions options);
  [[nodiscard]] absl::Status Prepare();
  [[nodiscard]] absl::Status OpenMember(raft::MemberId id);
  NodeOptions MemberOptions(raft::MemberId id) const;
  // The founding members' addresses, and with `with_joined` those of the
  // members added since too.
  std::vector<PeerAddress> Addresses(bool with_joined) const;

  LocalClusterOptions options_{};
  std::string root_{};  // Temporary directory we own.
  std::unique_ptr<InMemoryNetwork> network_{};
  std::map<raft::MemberId, Member> members_{};
};

}  // namespace confman::testing
