// Snapshots for followers behind the compaction point (thesis §5).
#include <catch2/catch.hpp>

#include "harness.h"

namespace confman::raft {
namespace {

using testing::Cluster;
using testing::OfTypeTo;
using testing::Payloads;
using testing::ProgressOf;

// Leaves member 3 far behind a leader (member 1) that compacted its log.
void LeaveMemberThreeBehindCompaction(Cluster& cluster) {
  cluster.ElectLeader(1);
  cluster.Isolate(3);
  cluster.Replicate(1, Payloads(20, 8));
  const Index applied = cluster.member(1).applied_index;
  REQUIRE(applied > cluster.member(3).log.LastIndex() + 10);
  REQUIRE(cluster.member(1).log.Compact(applied - 2).ok());
  cluster.Heal();
  cluster.Run(2);
}

TEST_CASE("a follower behind the compaction point is sent a snapshot",
          "[snapshot]") {
  Cluster cluster(3);
  LeaveMemberThreeBehindCompaction(cluster);

  const auto& requests = cluster.member(1).snapshot_requests;
  REQUIRE(requests.size() == 1);
  CHECK(requests[0].to == 3);
  CHECK(ProgressOf(cluster.core(1), 3).state == MemberProgress::State::kSnapshot);
  // Nothing is appended to it while the snapshot is on its way.
  cluster.ClearHistory();
  cluster.Run(3);
  CHECK(cluster.CountSent([](const Message& m) {
          return m.type == MessageType::kAppend && m.to == 3 &&
                 !m.entries.empty();
        }) == 0);
  CHECK(cluster.member(1).snapshot_requests.size() == 1);
}

TEST_CASE("replication resumes once the snapshot is installed", "[snapshot]") {
  Cluster cluster(3);
  LeaveMemberThreeBehindCompaction(cluster);
  REQUIRE(cluster.member(1).snapshot_requests.size() == 1);

  SECTION("the stream succeeds") {
    cluster.CompleteSnapshot(1, 3);
    REQUIRE(cluster.member(3).installed_snapshots.size() == 1);
    CHECK(cluster.member(3).installed_snapshots[0].index ==
          cluster.member(1).applied_index);
  }
  SECTION("the stream fails, then a retry succeeds") {
    cluster.CompleteSnapshot(1, 3, /*ok=*/false);
    CHECK(cluster.member(3).installed_snapshots.empty());
    // The leader asks for another stream, at once or after probing again.
    const int timeout =
        static_cast<int>(cluster.member(1).options.election_timeout_ticks);
    for (int t = 0; t < timeout && cluster.member(1).snapshot_requests.size() < 2;
         ++t) {
      cluster.Run(1);
    }
    REQUIRE(cluster.member(1).snapshot_requests.size() == 2);
    cluster.CompleteSnapshot(1, 3);
  }

  cluster.Replicate(1, Payloads(3, 8), 2);
  CHECK(ProgressOf(cluster.core(1), 3).state == MemberProgress::State::kReplicate);
  CHECK(cluster.member(3).log.LastIndex() == cluster.member(1).log.LastIndex());
  CHECK(cluster.member(3).applied_index == cluster.member(1).applied_index);
  CHECK(cluster.member(3).applied == cluster.member(1).applied);
}

// An installer reports back after the log writes that followed the
// snapshot are durable (the Node's apply thread commits the state while its
// log writer goes on). The core's view of its log must not fall behind
// what it reported durable.
TEST_CASE("entries made durable while a snapshot install is pending",
          "[snapshot]") {
  Cluster cluster(3);
  LeaveMemberThreeBehindCompaction(cluster);
  REQUIRE(cluster.member(1).snapshot_requests.size() == 1);

  cluster.HoldSnapshotInstalls(3);
  cluster.CompleteSnapshot(1, 3);
  REQUIRE(cluster.member(3).unreported_installs.size() == 1);
  const Index snapshot_index = cluster.member(3).unreported_installs[0].index;
  // Writes go on; member 3 appends and persists them before its install is
  // reported.
  cluster.Replicate(1, Payloads(4, 8), 1);
  CHECK(cluster.member(3).log.LastIndex() > snapshot_index);
  CHECK(cluster.core(3).Status().last_index == cluster.member(3).log.LastIndex());

  cluster.ReleaseSnapshotInstalls(3);
  cluster.Replicate(1, Payloads(3, 8), 2);
  CHECK(cluster.member(3).log.LastIndex() == cluster.member(1).log.LastIndex());
  CHECK(cluster.member(3).applied_index == cluster.member(1).applied_index);
  CHECK(cluster.member(3).applied == cluster.member(1).applied);
}

TEST_CASE("the leader waits for a sent snapshot to be acknowledged",
          "[snapshot]") {
  Cluster cluster(3);
  LeaveMemberThreeBehindCompaction(cluster);
  REQUIRE(cluster.member(1).snapshot_requests.size() == 1);
  // Member 3 takes a while to install: nothing it promises leaves it.
  cluster.HoldDurability(3);
  cluster.CompleteSnapshot(1, 3);
  const int election = static_cast<int>(
      cluster.member(1).options.election_timeout_ticks);

  SECTION("it acknowledges, and replication resumes without a second stream") {
    cluster.Replicate(1, Payloads(3, 8), 2 * election);
    CHECK(cluster.member(1).snapshot_requests.size() == 1);
    CHECK(ProgressOf(cluster.core(1), 3).state ==
          MemberProgress::State::kSnapshot);
    cluster.ReleaseDurability(3);
    cluster.Replicate(1, Payloads(2, 8), 2);
    CHECK(cluster.member(1).snapshot_requests.size() == 1);
    CHECK(ProgressOf(cluster.core(1), 3).state ==
          MemberProgress::State::kReplicate);
    CHECK(cluster.member(3).applied == cluster.member(1).applied);
  }
  SECTION("the log moved past the snapshot meanwhile: another one is sent") {
    cluster.Replicate(1, Payloads(10, 8), 1);
    REQUIRE(cluster.member(1).log.Compact(cluster.member(1).applied_index).ok());
    cluster.ReleaseDurability(3);
    cluster.Run(2);
    REQUIRE(cluster.member(1).snapshot_requests.size() == 2);
    cluster.CompleteSnapshot(1, 3);
    cluster.Replicate(1, Payloads(2, 8), 2);
    CHECK(cluster.member(3).applied == cluster.member(1).applied);
  }
  SECTION("it never acknowledges: the leader probes it again in time") {
    cluster.Isolate(3);
    cluster.Run(static_cast<int>(kSnapshotAckTimeoutElections) * election - 2);
    CHECK(cluster.member(1).snapshot_requests.size() == 1);
    cluster.Run(4);
    // The probe finds the log compacted: a fresh snapshot is asked for.
    CHECK(cluster.member(1).snapshot_requests.size() == 2);
  }
}

// A cluster that never changed its membership has applied no membership
// entry, so its state machine's snapshots carry no configuration. The
// installing member keeps the founding one: without it, it would count no
// voters and never campaign again.
TEST_CASE("a snapshot carrying no membership keeps the founding one",
          "[snapshot]") {
  Cluster cluster(3);
  LeaveMemberThreeBehindCompaction(cluster);
  REQUIRE(cluster.member(1).snapshot_requests.size() == 1);
  cluster.member(1).applied_membership = Membership{};

  cluster.CompleteSnapshot(1, 3);
  REQUIRE(cluster.member(3).installed_snapshots.size() == 1);
  Membership founders;
  founders.voters = {1, 2, 3};
  CHECK(cluster.core(3).membership() == founders);

  // Member 3 can still lead: handed leadership, it campaigns and wins.
  cluster.Replicate(1, Payloads(2, 8), 2);
  REQUIRE(cluster.core(1).TransferLeadership(3).ok());
  const int election =
      static_cast<int>(cluster.member(3).options.election_timeout_ticks);
  for (int t = 0; t < 2 * election && cluster.core(3).role() != Role::kLeader;
       ++t) {
    cluster.Run(1);
  }
  CHECK(cluster.core(3).role() == Role::kLeader);
}

TEST_CASE("a voter added after compaction joins through a snapshot",
          "[snapshot]") {
  testing::ClusterConfig config;
  config.voters = {1, 2, 3};
  config.outsiders = {4};
  Cluster cluster(config);
  cluster.ElectLeader(1);
  cluster.Replicate(1, Payloads(10, 8));
  REQUIRE(cluster.member(1).log.Compact(cluster.member(1).applied_index).ok());

  cluster.Reconfigure(1, MembershipChange::Kind::kAddVoter, 4);
  REQUIRE(!cluster.member(1).snapshot_requests.empty());
  CHECK(cluster.member(1).snapshot_requests.back().to == 4);

  cluster.CompleteSnapshot(1, 4);
  cluster.Run(2);
  Membership four_voters;
  four_voters.voters = {1, 2, 3, 4};
  CHECK(cluster.core(4).membership() == four_voters);
  CHECK(cluster.member(4).applied == cluster.member(1).applied);

  // Member 4 now completes quorums: with member 3 gone, 3 of 4 need it.
  cluster.Isolate(3);
  const ProposalPosition position = cluster.Replicate(1, {"needs-4"}, 0);
  CHECK(cluster.core(1).CommitIndex() >= position.last);
  CHECK(cluster.member(4).log.LastIndex() >= position.last);
}

TEST_CASE("compaction below every follower's match needs no snapshot",
          "[snapshot]") {
  Cluster cluster(3);
  cluster.ElectLeader(1);
  cluster.Replicate(1, Payloads(10, 8));
  for (MemberId id : cluster.ids()) {
    testing::Member& m = cluster.member(id);
    REQUIRE(m.log.Compact(m.applied_index).ok());
  }
  cluster.Replicate(1, Payloads(5, 8), 2);
  CHECK(cluster.member(1).snapshot_requests.empty());
  for (MemberId id : {2, 3}) {
    CHECK(cluster.member(id).applied == cluster.member(1).applied);
  }

  // A member restarting over a compacted log carries on from it.
  cluster.Restart(2);
  const ProposalPosition position = cluster.Replicate(1, {"after-restart"}, 2);
  CHECK(cluster.member(2).applied_index >= position.last);
  CHECK(cluster.member(2).applied == cluster.member(1).applied);
}

}  // namespace
}  // namespace confman::raft
