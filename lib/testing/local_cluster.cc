// LocalCluster (testing/local_cluster.h): starting, crashing, restarting
// and partitioning in-process members over TCP or the in-memory network.
#include "confman/testing/local_cluster.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "confman/status_macros.h"
#include "confman/testing/loopback_port.h"
#include "confman/transport/in_memory.h"

namespace confman::testing {
namespace {

[[nodiscard]] absl::StatusOr<std::string> MakeTempDir(
    const std::string& parent) {
  std::string pattern = (parent.empty() ? std::filesystem::temp_directory_path()
                                        : std::filesystem::path(parent)) /
                        "confman-cluster-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    return absl::InternalError(
        absl::StrCat("cannot create a temporary directory like ", pattern,
                     "; check LocalClusterOptions::temp_root"));
  }
  return pattern;
}

constexpr char kClusterId[] = "local-cluster";
constexpr char kSecret[] = "local-cluster-shared-secret";

}  // namespace

namespace {

// `configured`, or CONFMAN_TIME_SCALE (1..100) when it is 0, else 1.
uint32_t TimeScale(uint32_t configured) {
  if (configured != 0) return configured;
  const char* env = std::getenv("CONFMAN_TIME_SCALE");
  if (env == nullptr) return 1;
  const long scale = std::strtol(env, nullptr, 10);
  return scale >= 1 && scale <= 100 ? static_cast<uint32_t>(scale) : 1;
}

}  // namespace

absl::Status LocalClusterOptions::Validate() const {
  if (members < 1 || members > 9) {
    return absl::InvalidArgumentError(
        "LocalClusterOptions.members must be within [1, 9]");
  }
  if (time_scale > 100) {
    return absl::InvalidArgumentError(
        "LocalClusterOptions.time_scale must be within [0, 100]");
  }
  return absl::OkStatus();
}

LocalCluster::LocalCluster(LocalClusterOptions options)
    : options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<LocalCluster>> LocalCluster::Start(
    LocalClusterOptions options) {
  CONFMAN_RETURN_IF_ERROR(options.Validate());
  std::unique_ptr<LocalCluster> cluster(new LocalCluster(std::move(options)));
  CONFMAN_RETURN_IF_ERROR(cluster->Prepare());
  for (auto& [id, member] : cluster->members_) {
    CONFMAN_RETURN_IF_ERROR(cluster->OpenMember(id));
  }
  return cluster;
}

absl::Status LocalCluster::Prepare() {
  if (!options_.in_memory_storage) {
    CONFMAN_ASSIGN_OR_RETURN(root_, MakeTempDir(options_.temp_root));
  }
  if (options_.in_memory_network) {
    network_ = std::make_unique<InMemoryNetwork>();
    network_->StartDeliveryThread();
  }
  for (raft::MemberId id = 1;
       id <= static_cast<raft::MemberId>(options_.members); ++id) {
    Member& member = members_[id];
    uint16_t port = static_cast<uint16_t>(id);
    if (!options_.in_memory_network) {
      CONFMAN_ASSIGN_OR_RETURN(port, PickLoopbackPort());
    }
    member.address = absl::StrCat("127.0.0.1:", port);
    if (!root_.empty()) member.data_dir = absl::StrCat(root_, "/member-", id);
  }
  return absl::OkStatus();
}

LocalCluster::~LocalCluster() {
  for (auto& [id, member] : members_) member.node.reset();
  if (network_) network_->StopDeliveryThread();
  network_.reset();
  if (!root_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }
}

std::vector<PeerAddress> LocalCluster::Addresses(bool with_joined) const {
  std::vector<PeerAddress> peers;
  for (const auto& [id, member] : members_) {
    if (!member.joined || with_joined) peers.push_back({id, member.address});
  }
  return peers;
}

NodeOptions LocalCluster::MemberOptions(raft::MemberId id) const {
  const Member& member = members_.at(id);
  NodeOptions options{
      .id = id,
      .cluster_id = kClusterId,
      .shared_secret = kSecret,
      .listen_address = member.address,
      // A joining member learns the others' addresses only from the
      // snapshot it is sent, and must answer whoever leads before that,
      // which may be a member that joined earlier.
      .initial_members = Addresses(/*with_joined=*/member.joined),
      .join = member.joined,
      .data_dir = member.data_dir,
  };
  if (network_) {
    options.transport_factory =
        [network = network_.get()](
            raft::MemberId self) -> absl::StatusOr<std::unique_ptr<Transport>> {
      CONFMAN_ASSIGN_OR_RETURN(auto transport, network->CreateTransport(self));
      return std::unique_ptr<Transport>(std::move(transport));
    };
  }
  const uint32_t scale = TimeScale(options_.time_scale);
  options.election_timeout *= scale;
  options.heartbeat_interval *= scale;
  options.request_timeout *= scale;
  if (options_.customize) options_.customize(options);
  return options;
}

absl::Status LocalCluster::OpenMember(raft::MemberId id) {
  CONFMAN_ASSIGN_OR_RETURN(members_.at(id).node, Node::Open(MemberOptions(id)));
  return absl::OkStatus();
}

std::vector<raft::MemberId> LocalCluster::ids() const {
  std::vector<raft::MemberId> out;
  for (const auto& [id, member] : members_) out.push_back(id);
  return out;
}

Node* LocalCluster::member(raft::MemberId id) const {
  auto it = members_.find(id);
  return it == members_.end() ? nullptr : it->second.node.get();
}

std::string LocalCluster::data_dir(raft::MemberId id) const {
  auto it = members_.find(id);
  return it == members_.end() ? std::string() : it->second.data_dir;
}

std::string LocalCluster::address(raft::MemberId id) const {
  auto it = members_.find(id);
  return it == members_.end() ? std::string() : it->second.address;
}

raft::MemberId LocalCluster::leader_id() const {
  raft::MemberId agreed = raft::kNoMember;
  for (const auto& [id, member] : members_) {
    if (!member.node) continue;
    const NodeStatus status = member.node->GetStatus();
    if (status.leader == raft::kNoMember) return raft::kNoMember;
    if (agreed != raft::kNoMember && status.leader != agreed)
      return raft::kNoMember;
    agreed = status.leader;
  }
  if (member(agreed) == nullptr ||
      member(agreed)->GetStatus().role != raft::Role::kLeader) {
    return raft::kNoMember;
  }
  return agreed;
}

absl::StatusOr<Node*> LocalCluster::WaitForLeader(
    std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (raft::MemberId leader = leader_id(); leader != raft::kNoMember) {
      return member(leader);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("the running members did not agree on a leader within ",
                   timeout.count(), " ms"));
}

absl::Status LocalCluster::WaitForApplied(raft::Index index,
                                          std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    bool all = true;
    for (const auto& [id, m] : members_) {
      if (m.node && m.node->GetStatus().applied_index < index) all = false;
    }
    if (all) return absl::OkStatus();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("not every running member applied index ", index, " within ",
                   timeout.count(), " ms"));
}

absl::Status LocalCluster::Crash(raft::MemberId id) {
  auto it = members_.find(id);
  if (it == members_.end() || !it->second.node) {
    return absl::NotFoundError(absl::StrCat("member ", id, " is not running"));
  }
  it->second.node.reset();
  return absl::OkStatus();
}

absl::Status LocalCluster::Restart(raft::MemberId id) {
  auto it = members_.find(id);
  if (it == members_.end()) {
    return absl::NotFoundError(absl::StrCat("member ", id, " is unknown"));
  }
  if (it->second.node) {
    return absl::FailedPreconditionError(
        absl::StrCat("member ", id, " is running; Crash it first"));
  }
  return OpenMember(id);
}

absl::StatusOr<raft::MemberId> LocalCluster::AddMember() {
  CONFMAN_ASSIGN_OR_RETURN(Node * leader, WaitForLeader());
  const raft::MemberId id = members_.rbegin()->first + 1;
  Member& member = members_[id];
  member.joined = true;
  uint16_t port = static_cast<uint16_t>(id);
  if (!network_) {
    CONFMAN_ASSIGN_OR_RETURN(port, PickLoopbackPort());
  }
  member.address = absl::StrCat("127.0.0.1:", port);
  if (!root_.empty()) member.data_dir = absl::StrCat(root_, "/member-", id);
  CONFMAN_RETURN_IF_ERROR(OpenMember(id));
  CONFMAN_RETURN_IF_ERROR(leader->AddLearner(id, member.address));
  return id;
}

absl::Status LocalCluster::Partition(raft::MemberId id) {
  if (!network_) {
    return absl::FailedPreconditionError(
        "Partition needs the in-memory network "
        "(LocalClusterOptions::in_memory_network = true)");
  }
  network_->Isolate(id);
  return absl::OkStatus();
}

absl::Status LocalCluster::SetLinkUp(raft::MemberId from, raft::MemberId to,
                                     bool up) {
  if (!network_) {
    return absl::FailedPreconditionError(
        "SetLinkUp needs the in-memory network "
        "(LocalClusterOptions::in_memory_network = true)");
  }
  network_->SetLinkUp(from, to, up);
  return absl::OkStatus();
}

absl::Status LocalCluster::Heal() {
  if (!network_) {
    return absl::FailedPreconditionError(
        "Heal needs the in-memory network "
        "(LocalClusterOptions::in_memory_network = true)");
  }
  network_->HealAll();
  return absl::OkStatus();
}

}  // namespace confman::testing
