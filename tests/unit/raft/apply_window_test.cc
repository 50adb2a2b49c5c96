// The apply window: committed entries handed out but not yet reported
// applied are bounded by CoreOptions::max_unapplied_bytes on every member.
#include <catch2/catch.hpp>

#include "harness.h"

namespace confman::raft {
namespace {

using testing::Cluster;
using testing::Member;
using testing::Payloads;
using testing::TestOptions;

constexpr uint64_t kWindow = 100;

CoreOptions HundredByteWindow() {
  CoreOptions options = TestOptions();
  options.max_apply_bytes = kWindow;
  options.max_unapplied_bytes = kWindow;
  return options;
}

// Data bytes of the entries the member applied after `index`.
uint64_t BytesAppliedAfter(const Member& m, Index index) {
  uint64_t bytes = 0;
  for (const Entry& e : m.applied) {
    if (e.index > index) bytes += e.data.size();
  }
  return bytes;
}

// Reports what the member applied so far while it keeps holding reports, so
// the next window's entries are handed out (and applied) but not reported.
void ReportAppliedSoFar(Cluster& cluster, MemberId id) {
  cluster.core(id).ReportApplied(cluster.member(id).applied_index);
  cluster.HandleReady(id);
}

TEST_CASE(
    "every member hands out at most a window of committed bytes "
    "until they are reported applied",
    "[apply_window]") {
  Cluster cluster(3, HundredByteWindow());
  cluster.ElectLeader(1);
  for (MemberId id : cluster.ids()) cluster.HoldApplyReports(id);
  const Index start = cluster.member(1).applied_index;
  cluster.Replicate(1, Payloads(10, 40), 2);
  const Index last = cluster.member(1).log.LastIndex();

  for (MemberId id : cluster.ids()) {
    INFO("member " << id);
    Member& m = cluster.member(id);
    REQUIRE(cluster.core(id).CommitIndex() == last);
    REQUIRE(m.applied_index > start);
    CHECK(BytesAppliedAfter(m, start) == 80);
    int reports = 0;
    while (m.applied_index < last) {
      const Index reported = m.applied_index;
      ReportAppliedSoFar(cluster, id);
      INFO("after report " << reports << " at index " << reported);
      // Two 40-byte entries fit a 100-byte window, a third does not.
      CHECK(BytesAppliedAfter(m, reported) == 80);
      CHECK(cluster.core(id).Status().unapplied_bytes == 80);
      CHECK(cluster.core(id).Status().reported_applied_index == reported);
      REQUIRE(++reports <= 4);
    }
    CHECK(reports == 4);
  }
}

TEST_CASE(
    "an entry larger than the window goes out alone once the window "
    "is empty",
    "[apply_window]") {
  Cluster cluster(3, HundredByteWindow());
  cluster.ElectLeader(1);
  cluster.HoldApplyReports(2);
  const Index start = cluster.member(2).applied_index;
  cluster.Replicate(1, Payloads(1, 40), 0);
  cluster.Replicate(1, Payloads(1, 300), 0);
  cluster.Replicate(1, Payloads(2, 40), 2);
  Member& follower = cluster.member(2);
  REQUIRE(cluster.core(2).CommitIndex() == start + 4);

  // The 40-byte entry holds the window: the large one waits behind it.
  CHECK(follower.applied_index == start + 1);
  ReportAppliedSoFar(cluster, 2);
  CHECK(follower.applied_index == start + 2);
  CHECK(follower.applied.back().data.size() == 300);
  CHECK(cluster.core(2).Status().unapplied_bytes == 300);
  ReportAppliedSoFar(cluster, 2);
  CHECK(follower.applied_index == start + 4);
}

TEST_CASE("without a window committed entries flow without reports",
          "[apply_window]") {
  CoreOptions options = HundredByteWindow();
  options.max_unapplied_bytes = 0;
  Cluster cluster(3, options);
  cluster.ElectLeader(1);
  for (MemberId id : cluster.ids()) cluster.HoldApplyReports(id);
  cluster.Replicate(1, Payloads(10, 40), 2);

  const Index last = cluster.member(1).log.LastIndex();
  for (MemberId id : cluster.ids()) {
    INFO("member " << id);
    CHECK(cluster.member(id).applied_index == last);
    CHECK(cluster.core(id).Status().unapplied_bytes == 0);
  }
}

TEST_CASE(
    "reports beyond what was handed out, or not above an earlier "
    "one, release nothing",
    "[apply_window]") {
  Cluster cluster(3, HundredByteWindow());
  cluster.ElectLeader(1);
  cluster.HoldApplyReports(2);
  cluster.Replicate(1, Payloads(10, 40), 2);
  Member& follower = cluster.member(2);
  const Index handed_out = follower.applied_index;
  REQUIRE(handed_out < cluster.core(2).CommitIndex());

  cluster.core(2).ReportApplied(cluster.core(2).CommitIndex());
  cluster.HandleReady(2);
  CHECK(follower.applied_index == handed_out);
  CHECK(cluster.core(2).Status().unapplied_bytes == 80);

  // Freeing the first of the two 40-byte entries makes room for one more.
  cluster.core(2).ReportApplied(handed_out - 1);
  cluster.HandleReady(2);
  CHECK(follower.applied_index == handed_out + 1);
  CHECK(cluster.core(2).Status().unapplied_bytes == 80);
  cluster.core(2).ReportApplied(handed_out - 1);  // Stale: nothing more.
  cluster.HandleReady(2);
  CHECK(cluster.core(2).Status().unapplied_bytes == 80);
  CHECK(follower.applied_index == handed_out + 1);
}

TEST_CASE("installing a snapshot empties the apply window", "[apply_window]") {
  Cluster cluster(3, HundredByteWindow());
  cluster.ElectLeader(1);
  cluster.HoldApplyReports(3);
  cluster.Replicate(1, Payloads(5, 40), 2);
  REQUIRE(cluster.core(3).Status().unapplied_bytes == 80);

  // Member 3 falls behind the leader's compaction point, reports still held.
  cluster.Isolate(3);
  cluster.Replicate(1, Payloads(20, 8));
  const Index applied = cluster.member(1).applied_index;
  REQUIRE(cluster.member(1).log.Compact(applied - 2).ok());
  cluster.Heal();
  cluster.Run(2);
  REQUIRE(cluster.member(1).snapshot_requests.size() == 1);
  cluster.CompleteSnapshot(1, 3);
  REQUIRE(cluster.member(3).installed_snapshots.size() == 1);

  const Index snapshot = cluster.member(3).installed_snapshots[0].index;
  const CoreStatus status = cluster.core(3).Status();
  CHECK(status.unapplied_bytes == 0);
  CHECK(status.reported_applied_index == snapshot);
  // New entries reach the state machine without any further report.
  cluster.Replicate(1, Payloads(3, 40), 2);
  CHECK(cluster.member(3).applied_index == snapshot + 2);
  CHECK(BytesAppliedAfter(cluster.member(3), snapshot) == 80);
}

}  // namespace
}  // namespace confman::raft
