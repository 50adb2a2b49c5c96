// Malformed, misaddressed and out-of-place messages never abort the core
// or break its invariants, and the cluster keeps working afterwards.
#include <limits>

#include <catch2/catch.hpp>

#include "harness.h"

namespace confman::raft {
namespace {

using testing::AllEntries;
using testing::Cluster;

constexpr Index kHuge = std::numeric_limits<Index>::max();

Message Make(MessageType type, MemberId from, MemberId to, Term term) {
  Message m;
  m.type = type;
  m.from = from;
  m.to = to;
  m.term = term;
  return m;
}

Entry At(Index index, Term term) {
  Entry e;
  e.index = index;
  e.term = term;
  e.data = "junk";
  return e;
}

// Messages no correct member would send, aimed at `to` in term `term`.
std::vector<Message> Junk(MemberId from, MemberId to, Term term,
                          Index last_index) {
  std::vector<Message> junk;
  Message m = Make(MessageType::kAppend, from, to, term);
  m.log_index = last_index;
  m.log_term = term;
  m.entries = {At(last_index + 3, term), At(last_index + 1, term)};  // Gap.
  junk.push_back(m);
  m.entries = {At(last_index + 1, term + 5)};  // Entry newer than the message.
  junk.push_back(m);
  m.log_index = kHuge;  // Index arithmetic must not overflow.
  m.entries = {At(kHuge, term)};
  junk.push_back(m);

  m = Make(MessageType::kHeartbeat, from, to, term);
  m.commit = kHuge;
  junk.push_back(m);
  m = Make(MessageType::kSnapshot, from, to, term);  // No snapshot attached.
  junk.push_back(m);
  m = Make(MessageType::kAppendResponse, from, to, term);
  m.log_index = kHuge;  // Acknowledges entries nobody has.
  junk.push_back(m);
  m.reject = true;
  m.hint_index = kHuge;
  m.hint_term = kHuge;
  junk.push_back(m);
  m = Make(MessageType::kReadIndexResponse, from, to, term);  // Unasked.
  m.log_index = kHuge;
  m.context = "unasked";
  junk.push_back(m);
  m = Make(MessageType::kReadIndex, from, to, term);  // To a non-leader, too.
  m.context = "misrouted";
  junk.push_back(m);
  m = Make(MessageType::kTimeoutNow, from, to, term - 1);  // Stale.
  junk.push_back(m);
  m = Make(static_cast<MessageType>(200), from, to, term);  // Unknown type.
  junk.push_back(m);
  m = Make(MessageType::kHeartbeat, kNoMember, to, term);  // No sender.
  junk.push_back(m);
  m = Make(MessageType::kHeartbeat, from, to + 100, term);  // Not for `to`.
  junk.push_back(m);
  return junk;
}

TEST_CASE("junk messages leave leader and follower working", "[robustness]") {
  Cluster cluster(3);
  cluster.ElectLeader(1);
  const Term term = cluster.core(1).term();
  const Index last = cluster.member(1).log.LastIndex();

  // The harness checks the invariants after every delivery.
  for (const Message& m : Junk(2, 1, term, last)) {
    INFO("to the leader: " << MessageTypeName(m.type));
    cluster.core(1).Step(m);
    cluster.HandleReady(1);
  }
  for (const Message& m : Junk(1, 3, term, last)) {
    INFO("to a follower: " << MessageTypeName(m.type));
    cluster.core(3).Step(m);
    cluster.HandleReady(3);
  }
  cluster.Settle();
  CHECK(cluster.core(1).CommitIndex() <= cluster.member(1).log.LastIndex());
  CHECK(cluster.core(3).CommitIndex() <= cluster.member(3).log.LastIndex());

  cluster.Run(30);
  const MemberId leader = cluster.Leader();
  REQUIRE(leader != kNoMember);
  const ProposalPosition position = cluster.Replicate(leader, {"still-working"}, 2);
  for (MemberId id : cluster.ids()) {
    INFO("member " << id);
    CHECK(cluster.core(id).Status().storage_error.ok());
    CHECK(AllEntries(cluster.member(id).log) ==
          AllEntries(cluster.member(leader).log));
    CHECK(cluster.member(id).applied_index >= position.last);
  }
}

}  // namespace
}  // namespace confman::raft
