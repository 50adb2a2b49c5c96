// What a host service's own test looks like: a real three-member cluster in
// the test process, the service's config written and read through it, and
// a leader failure survived.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#include "confman/node.h"
#include "confman/testing/local_cluster.h"

TEST_CASE("the service's config survives a leader failure") {
  auto cluster = confman::testing::LocalCluster::Start({.members = 3});
  REQUIRE(cluster.ok());
  auto leader = (*cluster)->WaitForLeader();
  REQUIRE(leader.ok());

  auto revision = (*leader)->Put("my-service", "log_level", "debug");
  REQUIRE(revision.ok());

  const confman::raft::MemberId old_leader = (*cluster)->leader_id();
  REQUIRE((*cluster)->Crash(old_leader).ok());
  auto next = (*cluster)->WaitForLeader();
  REQUIRE(next.ok());
  CHECK((*cluster)->leader_id() != old_leader);

  auto value = (*next)->Get("my-service", "log_level");
  REQUIRE(value.ok());
  CHECK(value->value == "debug");
  CHECK(value->mod_revision == *revision);
}
