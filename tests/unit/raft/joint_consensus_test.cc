// Membership changes by joint consensus (thesis §4.3).
#include <catch2/catch.hpp>

#include "confman/raft/membership.h"
#include "harness.h"

namespace confman::raft {
namespace {

using testing::Cluster;
using testing::ClusterConfig;
using Kind = MembershipChange::Kind;

Membership Voters(std::vector<MemberId> voters,
                  std::vector<MemberId> outgoing = {}) {
  Membership membership;
  membership.voters = std::move(voters);
  membership.voters_outgoing = std::move(outgoing);
  return membership;
}

// The configurations `id` applied from the log, in order.
std::vector<Membership> AppliedConfigurations(Cluster& cluster, MemberId id) {
  std::vector<Membership> out;
  for (const Entry& e : cluster.member(id).applied) {
    if (e.type != EntryType::kMembership) continue;
    auto decoded = DecodeMembership(e.data);
    REQUIRE(decoded.ok());
    out.push_back(*decoded);
  }
  return out;
}

ClusterConfig ThreeVotersAndOutsiders(std::vector<MemberId> outsiders) {
  ClusterConfig config;
  config.voters = {1, 2, 3};
  config.outsiders = std::move(outsiders);
  return config;
}

// Booted mid-change: incoming voters {1, 2, 3}, outgoing {1, 4, 5}.
ClusterConfig JointConfig() {
  ClusterConfig config;
  config.voters = {1, 2, 3};
  config.voters_outgoing = {1, 4, 5};
  return config;
}

TEST_CASE("adding a voter enters and then leaves the joint configuration "
          "unprompted",
          "[joint]") {
  Cluster cluster(ThreeVotersAndOutsiders({4}));
  cluster.ElectLeader(1);
  cluster.Reconfigure(1, Kind::kAddVoter, 4);

  const Membership final_config = Voters({1, 2, 3, 4});
  CHECK(AppliedConfigurations(cluster, 1) ==
        std::vector<Membership>{Voters({1, 2, 3, 4}, {1, 2, 3}), final_config});
  for (MemberId id : cluster.ids()) {
    INFO("member " << id);
    CHECK(cluster.core(id).membership() == final_config);
  }
  CHECK(testing::AllEntries(cluster.member(4).log) ==
        testing::AllEntries(cluster.member(1).log));
}

TEST_CASE("removing a voter leaves a cluster that commits without it",
          "[joint]") {
  Cluster cluster(3);
  cluster.ElectLeader(1);
  cluster.Reconfigure(1, Kind::kRemove, 3);
  CHECK(AppliedConfigurations(cluster, 1) ==
        std::vector<Membership>{Voters({1, 2}, {1, 2, 3}), Voters({1, 2})});
  CHECK(cluster.core(1).membership() == Voters({1, 2}));

  cluster.Isolate(3);
  const ProposalPosition position = cluster.Replicate(1, {"after-removal"}, 0);
  CHECK(cluster.core(1).CommitIndex() >= position.last);
}

TEST_CASE("while joint, commitment needs a majority of both configurations",
          "[joint]") {
  Cluster cluster(JointConfig());
  cluster.Campaign(1, /*settle=*/false);
  REQUIRE(cluster.core(1).membership().joint());
  const Index start = cluster.core(1).CommitIndex();
  const Index last = cluster.member(1).log.LastIndex();
  REQUIRE(last > start);
  const auto commit_without = [&cluster](MemberId a, MemberId b) {
    cluster.Isolate(a);
    cluster.Isolate(b);
    cluster.Settle();
    cluster.Run(3);
    return cluster.core(1).CommitIndex();
  };

  SECTION("a majority of the incoming voters alone") {
    CHECK(commit_without(4, 5) == start);
  }
  SECTION("a majority of the outgoing voters alone") {
    CHECK(commit_without(2, 3) == start);
  }
  SECTION("a majority of each") {
    CHECK(commit_without(3, 5) >= last);
  }
}

TEST_CASE("while joint, an election needs a majority of both configurations",
          "[joint]") {
  const ClusterConfig config = JointConfig();
  Cluster cluster(config);
  cluster.Isolate(4);
  cluster.Isolate(5);
  // Members 1, 2 and 3 are all of the incoming configuration.
  for (int t = 0; t < 6 * static_cast<int>(config.options.election_timeout_ticks);
       ++t) {
    cluster.Run(1);
  }
  CHECK(cluster.Leader() == kNoMember);
  cluster.Heal();
  cluster.Run(6 * static_cast<int>(config.options.election_timeout_ticks));
  CHECK(cluster.Leader() != kNoMember);
}

TEST_CASE("only one membership change may be pending at a time", "[joint]") {
  Cluster cluster(ThreeVotersAndOutsiders({4, 5}));
  cluster.ElectLeader(1);
  REQUIRE(cluster.ChangeMembership(1, Kind::kAddVoter, 4).ok());
  auto second = cluster.ChangeMembership(1, Kind::kAddVoter, 5);
  CHECK(second.status().code() == absl::StatusCode::kUnavailable);

  cluster.Settle();
  cluster.Run(3);
  REQUIRE(cluster.core(1).membership() == Voters({1, 2, 3, 4}));
  cluster.Reconfigure(1, Kind::kAddVoter, 5);
  CHECK(cluster.core(1).membership() == Voters({1, 2, 3, 4, 5}));
}

TEST_CASE("a change that would leave no voter is refused", "[joint]") {
  Cluster cluster(1);
  cluster.ElectLeader(1);
  auto refused = cluster.ChangeMembership(1, Kind::kRemove, 1);
  CHECK(refused.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(cluster.core(1).membership() == Voters({1}));
}

TEST_CASE("a leader that removes itself hands over to the remaining voters",
          "[joint]") {
  Cluster cluster(3);
  cluster.ElectLeader(1);
  cluster.Reconfigure(1, Kind::kRemove, 1, 40);

  const MemberId leader = cluster.Leader();
  REQUIRE((leader == 2 || leader == 3));
  CHECK(cluster.core(leader).membership() == Voters({2, 3}));
  const ProposalPosition position = cluster.Replicate(leader, {"without-1"});
  CHECK(cluster.core(leader).CommitIndex() >= position.last);
}

TEST_CASE("learners are added without a joint step and promoted with one",
          "[joint]") {
  Cluster cluster(ThreeVotersAndOutsiders({4}));
  cluster.ElectLeader(1);
  cluster.Reconfigure(1, Kind::kAddLearner, 4, 2);
  Membership with_learner = Voters({1, 2, 3});
  with_learner.learners = {4};
  CHECK(AppliedConfigurations(cluster, 1) ==
        std::vector<Membership>{with_learner});
  CHECK(cluster.core(4).membership() == with_learner);

  cluster.Reconfigure(1, Kind::kAddVoter, 4);
  const std::vector<Membership> applied = AppliedConfigurations(cluster, 1);
  REQUIRE(applied.size() == 3);
  CHECK(applied[1].joint());
  CHECK(applied[2] == Voters({1, 2, 3, 4}));
  CHECK(cluster.core(4).membership() == Voters({1, 2, 3, 4}));
}

TEST_CASE("a restarted member replays configuration changes from its log",
          "[joint]") {
  Cluster cluster(ThreeVotersAndOutsiders({4}));
  cluster.ElectLeader(1);
  cluster.Reconfigure(1, Kind::kAddVoter, 4);
  REQUIRE(cluster.core(2).membership() == Voters({1, 2, 3, 4}));

  // Its state machine remembers nothing, its log everything.
  cluster.ForgetStateMachine(2);
  cluster.Restart(2);
  CHECK(cluster.core(2).membership() == Voters({1, 2, 3, 4}));
  cluster.Run(2);
  CHECK(cluster.member(2).applied == cluster.member(1).applied);
}

}  // namespace
}  // namespace confman::raft
