// The Ready contract's durability rules: acknowledgements promise only what
// is durable, and a restarted member resumes from what storage kept.
#include <catch2/catch.hpp>

#include "harness.h"

namespace confman::raft {
namespace {

using testing::AllEntries;
using testing::Cluster;
using testing::Payloads;

TEST_CASE("followers acknowledge entries only once they are durable",
          "[durability]") {
  Cluster cluster(3);
  cluster.ElectLeader(1);
  const Index commit_before = cluster.core(1).CommitIndex();
  cluster.HoldDurability(2);
  cluster.HoldDurability(3);

  const ProposalPosition position = cluster.Replicate(1, {"held"}, 2);
  CHECK(cluster.core(1).CommitIndex() == commit_before);
  CHECK(cluster.member(2).log.LastIndex() < position.last);

  cluster.ReleaseDurability(2);
  cluster.Settle();
  CHECK(cluster.core(1).CommitIndex() >= position.last);
}

TEST_CASE("a restarted member hands out only entries it has not applied",
          "[durability]") {
  Cluster cluster(3);
  cluster.ElectLeader(1);
  cluster.Replicate(1, Payloads(5, 8), 2);
  const Index applied = cluster.member(2).applied_index;
  REQUIRE(applied == cluster.core(1).CommitIndex());

  // The harness fails the test if an applied index is handed out again or
  // one is skipped.
  cluster.Restart(2);
  CHECK(cluster.member(2).applied_index == applied);
  cluster.Replicate(1, Payloads(3, 8), 2);
  CHECK(cluster.member(2).applied == cluster.member(1).applied);
}

TEST_CASE("a member that loses unsynced writes in a crash catches up",
          "[durability]") {
  Cluster cluster(3);
  cluster.ElectLeader(1);
  cluster.HoldDurability(3);
  const ProposalPosition position = cluster.Replicate(1, Payloads(4, 8), 0);
  REQUIRE(cluster.core(1).CommitIndex() >= position.last);  // Via member 2.

  cluster.Restart(3);  // Everything member 3 had not synced is gone.
  REQUIRE(cluster.member(3).log.LastIndex() < position.last);
  cluster.Run(3);
  CHECK(AllEntries(cluster.member(3).log) == AllEntries(cluster.member(1).log));
  CHECK(cluster.member(3).applied == cluster.member(1).applied);
}

TEST_CASE("a restarted leader's vote and term are kept", "[durability]") {
  Cluster cluster(3);
  cluster.ElectLeader(1);
  const Term term = cluster.core(1).term();
  cluster.Restart(1);
  CHECK(cluster.core(1).term() == term);
  CHECK(cluster.member(1).log.hard_state().vote == 1);
  CHECK(cluster.core(1).role() == Role::kFollower);
  // The cluster elects someone again and keeps every committed entry.
  cluster.Run(40);
  const MemberId leader = cluster.Leader();
  REQUIRE(leader != kNoMember);
  CHECK(cluster.core(leader).term() > term);
  CHECK(cluster.member(1).applied == cluster.member(leader).applied);
}

}  // namespace
}  // namespace confman::raft
