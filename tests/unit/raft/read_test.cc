// Linearizable reads: ReadIndex (thesis §6.4) and lease reads (§6.4.1).
#include <catch2/catch.hpp>

#include "harness.h"

namespace confman::raft {
namespace {

using testing::Cluster;
using testing::OfType;
using testing::OfTypeFrom;
using testing::TestOptions;

// The read states `id` produced for `context`.
std::vector<ReadState> ReadsFor(Cluster& cluster, MemberId id,
                                const std::string& context) {
  std::vector<ReadState> out;
  for (const ReadState& read : cluster.member(id).read_states) {
    if (read.context == context) out.push_back(read);
  }
  return out;
}

// Elects member 1 and commits one write; returns the write's index.
Index LeaderWithOneWrite(Cluster& cluster) {
  cluster.ElectLeader(1);
  const ProposalPosition position = cluster.Replicate(1, {"write"});
  REQUIRE(cluster.core(1).CommitIndex() >= position.last);
  return position.last;
}

TEST_CASE("ReadIndex is not served before the leader's no-op commits",
          "[read]") {
  Cluster cluster(3);
  cluster.Campaign(1, /*settle=*/false);
  // Followers store the no-op but their acknowledgements are lost.
  cluster.DropWhere(OfType(MessageType::kAppendResponse));
  cluster.Settle();
  const Index noop = cluster.member(1).log.LastIndex();
  REQUIRE(cluster.core(1).CommitIndex() < noop);

  const absl::Status early = cluster.ReadIndex(1, "early");
  cluster.Run(3);  // Heartbeat rounds complete; the no-op still does not.
  CHECK(ReadsFor(cluster, 1, "early").empty());
  if (!early.ok()) CHECK(early.code() == absl::StatusCode::kUnavailable);

  cluster.Heal();
  cluster.Run(2);
  REQUIRE(cluster.core(1).CommitIndex() >= noop);
  if (early.ok()) {
    // Accepted and deferred: served once the no-op committed.
    auto reads = ReadsFor(cluster, 1, "early");
    REQUIRE(reads.size() == 1);
    CHECK(reads[0].index >= noop);
  }
  REQUIRE(cluster.ReadIndex(1, "late").ok());
  cluster.Run(1);
  CHECK(ReadsFor(cluster, 1, "late").size() == 1);
}

TEST_CASE("ReadIndex is served after a quorum acknowledges a heartbeat "
          "round",
          "[read]") {
  Cluster cluster(3);
  const Index write = LeaderWithOneWrite(cluster);
  const Index commit = cluster.core(1).CommitIndex();

  SECTION("no quorum, no read") {
    cluster.Isolate(2);
    cluster.Isolate(3);
    REQUIRE(cluster.ReadIndex(1, "r").ok());
    cluster.Run(3);
    CHECK(ReadsFor(cluster, 1, "r").empty());
    cluster.Heal();
    cluster.Run(2);
  }
  SECTION("one follower completes a quorum of three") {
    cluster.Isolate(3);
    REQUIRE(cluster.ReadIndex(1, "r").ok());
    cluster.Run(1);
  }
  auto reads = ReadsFor(cluster, 1, "r");
  REQUIRE(reads.size() == 1);
  CHECK(reads[0].index == commit);
  CHECK(reads[0].index >= write);
}

TEST_CASE("ReadIndex on a follower is forwarded to the leader", "[read]") {
  Cluster cluster(3);
  const Index write = LeaderWithOneWrite(cluster);

  REQUIRE(cluster.ReadIndex(2, "f").ok());
  CHECK(cluster.CountQueued(OfTypeFrom(MessageType::kReadIndex, 2)) == 1);
  cluster.Settle();
  cluster.Run(1);

  auto reads = ReadsFor(cluster, 2, "f");
  REQUIRE(reads.size() == 1);
  CHECK(reads[0].index == cluster.core(1).CommitIndex());
  CHECK(reads[0].index >= write);
  CHECK(ReadsFor(cluster, 1, "f").empty());
}

TEST_CASE("lease reads skip the heartbeat round only with check-quorum and "
          "while the lease holds",
          "[read]") {
  CoreOptions options = TestOptions();
  options.check_quorum = GENERATE(true, false);
  Cluster cluster(3, options);
  const Index write = LeaderWithOneWrite(cluster);

  // The round that established the lease was acknowledged just now; from
  // here on no follower hears from the leader.
  cluster.Isolate(2);
  cluster.Isolate(3);
  REQUIRE(cluster.ReadIndex(1, "lease", ReadMode::kLease).ok());
  if (!options.check_quorum) {
    // Falls back to ReadIndex, which needs a round the partition prevents.
    CHECK(ReadsFor(cluster, 1, "lease").empty());
    return;
  }
  auto reads = ReadsFor(cluster, 1, "lease");
  REQUIRE(reads.size() == 1);
  CHECK(reads[0].index >= write);

  // After election_timeout - drift ticks the lease is over, although the
  // leader has not stepped down yet.
  const uint32_t lease_ticks =
      options.election_timeout_ticks - options.lease_clock_drift_ticks;
  for (uint32_t t = 0; t < lease_ticks; ++t) cluster.Tick(1);
  REQUIRE(cluster.core(1).role() == Role::kLeader);
  const absl::Status expired = cluster.ReadIndex(1, "expired", ReadMode::kLease);
  CHECK(ReadsFor(cluster, 1, "expired").empty());
  if (expired.ok()) {
    cluster.Tick(1);
    CHECK(ReadsFor(cluster, 1, "expired").empty());
  }
}

TEST_CASE("a leader handing over leadership stops serving lease reads",
          "[read]") {
  Cluster cluster(3);
  LeaderWithOneWrite(cluster);
  REQUIRE(cluster.TransferLeadership(1, 2).ok());
  REQUIRE(cluster.CountQueued(testing::OfTypeTo(MessageType::kTimeoutNow, 2)) == 1);
  // Member 2 may win any moment now, so the old lease proves nothing.
  const absl::Status status = cluster.ReadIndex(1, "handover", ReadMode::kLease);
  CHECK(ReadsFor(cluster, 1, "handover").empty());
  cluster.Settle();
  CHECK(cluster.Leader() == 2);
  CHECK(ReadsFor(cluster, 1, "handover").empty());
  if (!status.ok()) CHECK(status.code() != absl::StatusCode::kOk);
}

TEST_CASE("pending reads beyond max_pending_reads are refused", "[read]") {
  CoreOptions options = TestOptions();
  options.max_pending_reads = 2;
  Cluster cluster(3, options);
  LeaderWithOneWrite(cluster);
  cluster.Isolate(2);
  cluster.Isolate(3);
  REQUIRE(cluster.ReadIndex(1, "a").ok());
  REQUIRE(cluster.ReadIndex(1, "b").ok());
  const absl::Status third = cluster.ReadIndex(1, "c");
  CHECK(third.code() == absl::StatusCode::kResourceExhausted);
  CHECK_FALSE(third.message().empty());

  cluster.Heal();
  cluster.Run(1);
  CHECK(ReadsFor(cluster, 1, "a").size() == 1);
  CHECK(ReadsFor(cluster, 1, "b").size() == 1);
  CHECK(ReadsFor(cluster, 1, "c").empty());
  CHECK(cluster.ReadIndex(1, "d").ok());
}

}  // namespace
}  // namespace confman::raft
