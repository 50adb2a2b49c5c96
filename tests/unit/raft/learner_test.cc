// Learners (thesis §4.2.1): they receive the log but neither vote nor count
// toward commitment.
#include <catch2/catch.hpp>

#include "harness.h"

namespace confman::raft {
namespace {

using testing::Cluster;
using testing::ClusterConfig;
using testing::OfTypeFrom;
using testing::ProgressOf;

TEST_CASE("learners never campaign and their answers elect nobody",
          "[learner]") {
  ClusterConfig config;
  config.voters = {1, 2};
  config.learners = {3};
  Cluster cluster(config);
  // Member 1 needs member 2's vote; a learner's must not stand in for it.
  cluster.Isolate(2);
  cluster.Run(10 * static_cast<int>(config.options.election_timeout_ticks));

  CHECK(cluster.Leader() == kNoMember);
  CHECK(cluster.CountSent(OfTypeFrom(MessageType::kPreVote, 1)) > 0);
  CHECK(cluster.CountSent(OfTypeFrom(MessageType::kPreVote, 3)) == 0);
  CHECK(cluster.CountSent(OfTypeFrom(MessageType::kVote, 3)) == 0);
  CHECK(cluster.core(3).role() == Role::kFollower);
}

TEST_CASE("learners receive entries but do not count toward commit",
          "[learner]") {
  ClusterConfig config;
  config.voters = {1, 2, 3};
  config.learners = {4};
  Cluster cluster(config);
  cluster.ElectLeader(1);
  CHECK_FALSE(ProgressOf(cluster.core(1), 4).voter);

  cluster.Isolate(2);
  cluster.Isolate(3);
  const ProposalPosition position = cluster.Replicate(1, {"for-everyone"}, 0);
  // Leader and learner hold it: two of four members, one of three voters.
  REQUIRE(cluster.member(4).log.LastIndex() >= position.last);
  REQUIRE(ProgressOf(cluster.core(1), 4).match >= position.last);
  CHECK(cluster.core(1).CommitIndex() < position.last);

  cluster.Heal();
  cluster.Run(2);
  CHECK(cluster.core(1).CommitIndex() >= position.last);
  const std::vector<Entry>& applied = cluster.member(4).applied;
  REQUIRE(applied.size() >= position.last);
  CHECK(applied[position.last - 1].data == "for-everyone");
}

}  // namespace
}  // namespace confman::raft
