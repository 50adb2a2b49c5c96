// A log store that fails its reads: the member reports the error through
// Status() and stops, and the rest of the cluster carries on without it.
#include <catch2/catch.hpp>

#include "harness.h"

namespace confman::raft {
namespace {

using testing::Cluster;
using testing::Payloads;

const absl::Status kDiskGone =
    absl::DataLossError("injected: the disk under the log is gone");

// The log keeps its newest durable entries in memory, up to one append's
// bytes; with appends of one byte it keeps none of these entries, so the
// members read their stored logs and meet the failure.
CoreOptions ReadingOptions() {
  CoreOptions options = testing::TestOptions();
  options.max_append_bytes = 1;
  return options;
}

TEST_CASE(
    "a follower whose log reads fail reports it and the others "
    "commit",
    "[storage]") {
  Cluster cluster(3, ReadingOptions());
  cluster.ElectLeader(1);
  cluster.Replicate(1, Payloads(3, 8));
  cluster.FailReads(2, kDiskGone);

  const ProposalPosition position = cluster.Replicate(1, Payloads(3, 8), 5);
  CHECK(cluster.core(1).CommitIndex() >= position.last);
  CHECK(cluster.core(2).Status().storage_error == kDiskGone);
  CHECK(cluster.core(1).Status().storage_error.ok());
}

TEST_CASE("a leader whose log reads fail reports it and makes way",
          "[storage]") {
  Cluster cluster(3, ReadingOptions());
  cluster.ElectLeader(1);
  cluster.Replicate(1, Payloads(3, 8));
  cluster.FailReads(1, kDiskGone);
  (void)cluster.Propose(1, Payloads(3, 8));
  cluster.Run(60);

  CHECK(cluster.core(1).Status().storage_error == kDiskGone);
  // A member that cannot read its log cannot lead; the others must be able
  // to elect a leader and keep committing.
  const MemberId leader = cluster.Leader();
  REQUIRE((leader == 2 || leader == 3));
  const ProposalPosition position = cluster.Replicate(leader, {"after"}, 2);
  CHECK(cluster.core(leader).CommitIndex() >= position.last);
}

}  // namespace
}  // namespace confman::raft
