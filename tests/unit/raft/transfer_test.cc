// Leadership transfer (thesis §3.10).
#include <catch2/catch.hpp>

#include "harness.h"

namespace confman::raft {
namespace {

using testing::Cluster;
using testing::OfTypeTo;
using testing::Payloads;
using testing::ProgressOf;

TEST_CASE("transfer to an up-to-date member sends TimeoutNow and it wins",
          "[transfer]") {
  Cluster cluster(3);
  cluster.ElectLeader(1);
  const Term term = cluster.core(1).term();

  REQUIRE(cluster.TransferLeadership(1, 2).ok());
  REQUIRE(cluster.CountQueued(OfTypeTo(MessageType::kTimeoutNow, 2)) == 1);
  // Member 2 must win with member 3's vote, although member 3 heard from
  // the leader a moment ago: a transfer campaign overrides its lease.
  cluster.CutLink(2, 1);
  cluster.Settle();
  CHECK(cluster.Leader() == 2);
  CHECK(cluster.core(2).term() == term + 1);
  CHECK(cluster.core(3).LeaderId() == 2);

  // The old leader learns of the new term from its next exchange.
  cluster.Heal();
  cluster.Run(1);
  CHECK(cluster.core(1).role() == Role::kFollower);
  CHECK(cluster.core(1).LeaderId() == 2);
}

TEST_CASE("transfer waits for the target to catch up and refuses proposals "
          "meanwhile",
          "[transfer]") {
  Cluster cluster(3);
  cluster.ElectLeader(1);
  cluster.Isolate(3);
  REQUIRE(cluster.Propose(1, Payloads(5, 8)).ok());
  cluster.Settle();
  cluster.Heal();
  REQUIRE(ProgressOf(cluster.core(1), 3).match <
          cluster.member(1).log.LastIndex());

  REQUIRE(cluster.TransferLeadership(1, 3).ok());
  CHECK(cluster.CountQueued(OfTypeTo(MessageType::kTimeoutNow, 3)) == 0);
  auto refused = cluster.Propose(1, {"during-transfer"});
  CHECK(refused.status().code() == absl::StatusCode::kUnavailable);

  // Deliver until TimeoutNow goes out; by then member 3 must have caught up.
  bool timeout_now_sent = false;
  for (int tick = 0; tick < 3 && !timeout_now_sent; ++tick) {
    while (!timeout_now_sent && cluster.DeliverOne()) {
      timeout_now_sent =
          cluster.CountQueued(OfTypeTo(MessageType::kTimeoutNow, 3)) > 0;
    }
    if (!timeout_now_sent) cluster.Tick(1);
  }
  REQUIRE(timeout_now_sent);
  CHECK(ProgressOf(cluster.core(1), 3).match ==
        cluster.member(1).log.LastIndex());
  cluster.Settle();
  CHECK(cluster.Leader() == 3);
}

TEST_CASE("a transfer that cannot complete is abandoned after an election "
          "timeout",
          "[transfer]") {
  Cluster cluster(3);
  cluster.ElectLeader(1);
  cluster.Isolate(3);
  REQUIRE(cluster.TransferLeadership(1, 3).ok());
  REQUIRE(cluster.Propose(1, {"refused"}).status().code() ==
          absl::StatusCode::kUnavailable);

  const int timeout =
      static_cast<int>(cluster.member(1).options.election_timeout_ticks);
  int ticks = 0;
  absl::StatusOr<ProposalPosition> accepted = absl::UnknownError("not tried");
  while (!accepted.ok() && ticks < 3 * timeout) {
    cluster.Run(1);
    ++ticks;
    accepted = cluster.Propose(1, {"after-abort"});
  }
  CHECK(accepted.ok());
  CHECK(ticks <= timeout + 1);
  CHECK(cluster.Leader() == 1);
}

}  // namespace
}  // namespace confman::raft
