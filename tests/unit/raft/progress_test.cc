// Per-follower flow control (lib/raft/progress.h).
#include "progress.h"

#include <catch2/catch.hpp>

namespace confman::raft {
namespace {

using State = MemberProgress::State;

TEST_CASE("Inflights counts messages and bytes until acknowledged",
          "[progress]") {
  Inflights inflights;
  inflights.Add(5, 100);
  inflights.Add(9, 50);
  inflights.Add(12, 10);
  CHECK(inflights.count() == 3);
  CHECK(inflights.bytes() == 160);
  CHECK(inflights.Full(3, 1000));
  CHECK_FALSE(inflights.Full(4, 1000));
  CHECK(inflights.Full(10, 160));
  CHECK_FALSE(inflights.Full(10, 161));

  inflights.FreeThrough(8);  // Acknowledges the first message only.
  CHECK(inflights.count() == 2);
  CHECK(inflights.bytes() == 60);
  inflights.FreeThrough(8);  // A duplicate acknowledgement frees nothing.
  CHECK(inflights.count() == 2);
  inflights.FreeOldest();
  CHECK(inflights.count() == 1);
  CHECK(inflights.bytes() == 10);
  inflights.FreeThrough(100);
  CHECK(inflights.count() == 0);
  CHECK(inflights.bytes() == 0);
  inflights.FreeOldest();  // Harmless when empty.
  CHECK(inflights.bytes() == 0);
}

TEST_CASE("a probing follower gets one append at a time", "[progress]") {
  Progress pr;
  pr.match = 4;
  pr.BecomeProbe();
  CHECK(pr.next == 5);
  CHECK_FALSE(pr.Paused(64, 1 << 20));
  pr.SentEntries(8, 40);
  CHECK(pr.Paused(64, 1 << 20));
  CHECK(pr.next == 5);  // Probing does not advance optimistically.
  CHECK(pr.inflights.count() == 0);

  // A rejection that cannot move next below match + 1 (the follower denies
  // what it acknowledged) leaves the probe outstanding instead of looping.
  CHECK_FALSE(pr.Reject(4, 3));
  CHECK(pr.Paused(64, 1 << 20));
  CHECK(pr.next == 5);  // Never below match + 1.
  CHECK_FALSE(pr.Reject(9, 3));  // Not the outstanding probe: stale.

  // A rejection that does move it back unpauses at once.
  Progress behind;
  behind.match = 4;
  behind.BecomeProbe();
  behind.next = 9;
  behind.SentEntries(12, 40);
  CHECK(behind.Reject(8, 6));
  CHECK(behind.next == 6);
  CHECK_FALSE(behind.Paused(64, 1 << 20));
}

TEST_CASE("a replicating follower is pipelined up to the window",
          "[progress]") {
  Progress pr;
  pr.match = 10;
  pr.BecomeReplicate();
  CHECK(pr.next == 11);
  pr.SentEntries(15, 50);
  pr.SentEntries(20, 50);
  CHECK(pr.next == 21);
  CHECK(pr.Paused(2, 1000));
  CHECK(pr.Paused(10, 100));
  CHECK_FALSE(pr.Paused(10, 101));

  CHECK(pr.AcknowledgeMatch(15));
  CHECK(pr.match == 15);
  CHECK(pr.inflights.count() == 1);
  CHECK_FALSE(pr.AcknowledgeMatch(12));  // Stale.
  CHECK(pr.match == 15);

  // A rejection drops back to probing from the hint, keeping match.
  CHECK(pr.Reject(20, 18));
  CHECK(pr.state == State::kProbe);
  CHECK(pr.next == 18);
  CHECK(pr.match == 15);
  CHECK(pr.inflights.count() == 0);
}

TEST_CASE("a reordered rejection below match is ignored while replicating",
          "[progress]") {
  Progress pr;
  pr.match = 10;
  pr.BecomeReplicate();
  pr.SentEntries(14, 8);
  CHECK_FALSE(pr.Reject(9, 5));
  CHECK(pr.state == State::kReplicate);
  CHECK(pr.next == 15);
}

TEST_CASE("a follower receiving a snapshot gets nothing else", "[progress]") {
  Progress pr;
  pr.match = 3;
  pr.BecomeReplicate();
  pr.SentEntries(7, 10);
  pr.BecomeSnapshot();
  CHECK(pr.state == State::kSnapshot);
  CHECK(pr.Paused(64, 1 << 20));
  CHECK(pr.inflights.count() == 0);
}

}  // namespace
}  // namespace confman::raft
