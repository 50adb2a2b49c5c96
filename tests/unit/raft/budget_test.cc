// The leader's memory budget for uncommitted entries.
#include <catch2/catch.hpp>

#include "harness.h"

namespace confman::raft {
namespace {

using testing::Cluster;
using testing::Payloads;
using testing::TestOptions;

CoreOptions HundredByteBudget() {
  CoreOptions options = TestOptions();
  options.max_append_bytes = 100;
  options.max_uncommitted_bytes = 100;
  return options;
}

TEST_CASE(
    "proposals beyond the uncommitted budget are refused until "
    "entries commit",
    "[budget]") {
  const CoreOptions options = HundredByteBudget();
  Cluster cluster(3, options);
  cluster.ElectLeader(1);
  cluster.Isolate(2);
  cluster.Isolate(3);

  REQUIRE(cluster.Propose(1, Payloads(1, 40)).ok());
  REQUIRE(cluster.Propose(1, Payloads(1, 40)).ok());
  const Index last = cluster.member(1).log.LastIndex();
  auto refused = cluster.Propose(1, Payloads(1, 40));
  CHECK(refused.status().code() == absl::StatusCode::kResourceExhausted);
  CHECK_FALSE(refused.status().message().empty());
  CHECK(cluster.member(1).log.LastIndex() == last);  // Nothing appended.
  CHECK(cluster.core(1).Status().uncommitted_bytes <= options.max_uncommitted_bytes);

  cluster.Heal();
  cluster.Settle();
  cluster.Run(1);
  REQUIRE(cluster.core(1).CommitIndex() >= last);
  CHECK(cluster.core(1).Status().uncommitted_bytes == 0);
  CHECK(cluster.Propose(1, Payloads(1, 40)).ok());
}

TEST_CASE(
    "a proposal larger than the whole budget is refused even when "
    "nothing is pending",
    "[budget]") {
  Cluster cluster(3, HundredByteBudget());
  cluster.ElectLeader(1);
  REQUIRE(cluster.core(1).Status().uncommitted_bytes == 0);
  const Index last = cluster.member(1).log.LastIndex();

  SECTION("many small entries in one call") {
    auto refused = cluster.Propose(1, Payloads(10, 40));
    REQUIRE(refused.status().code() == absl::StatusCode::kResourceExhausted);
  }
  SECTION("one entry beyond the budget") {
    auto refused = cluster.Propose(1, Payloads(1, 150));
    REQUIRE(refused.status().code() == absl::StatusCode::kResourceExhausted);
  }
  CHECK(cluster.member(1).log.LastIndex() == last);
  // What fits is still accepted.
  CHECK(cluster.Propose(1, Payloads(1, 100)).ok());
}

}  // namespace
}  // namespace confman::raft
