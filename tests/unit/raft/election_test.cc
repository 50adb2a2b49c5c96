// Leader election: randomized timeouts, the voting rules (thesis §3.4,
// §3.6), pre-vote (§9.6) and check-quorum (§6.2).
#include <functional>
#include <set>

#include <catch2/catch.hpp>

#include "harness.h"

namespace confman::raft {
namespace {

using testing::Cluster;
using testing::OfTypeFrom;
using testing::OfTypeTo;
using testing::TestOptions;

CoreOptions WithoutPreVoteOrCheckQuorum() {
  CoreOptions options = TestOptions();
  options.pre_vote = false;
  options.check_quorum = false;
  return options;
}

// Vote responses from `from` to `to` that grant (or, with granted = false,
// refuse) the vote.
std::function<bool(const Message&)> VoteAnswer(MemberId from, MemberId to,
                                               bool granted) {
  return [=](const Message& m) {
    return m.type == MessageType::kVoteResponse && m.from == from &&
           m.to == to && m.reject != granted;
  };
}

// A vote request from `from` carrying its real last log position.
Message VoteRequest(Cluster& cluster, MemberId from, MemberId to, Term term) {
  const MemoryLog& log = cluster.member(from).log;
  Message vote;
  vote.type = MessageType::kVote;
  vote.from = from;
  vote.to = to;
  vote.term = term;
  vote.log_index = log.LastIndex();
  vote.log_term = *log.TermAt(log.LastIndex());
  return vote;
}

TEST_CASE("election timeouts produce exactly one leader, which stays",
          "[election]") {
  const int size = GENERATE(3, 5);
  Cluster cluster(size);
  for (int t = 0; t < 100 && cluster.Leader() == kNoMember; ++t) cluster.Run(1);
  const MemberId leader = cluster.Leader();
  REQUIRE(leader != kNoMember);
  const Term term = cluster.core(leader).term();

  cluster.Run(50);  // Five election timeouts of heartbeats: nobody campaigns.
  CHECK(cluster.Leader() == leader);
  for (MemberId id : cluster.ids()) {
    INFO("member " << id);
    CHECK(cluster.core(id).term() == term);
    CHECK(cluster.core(id).LeaderId() == leader);
    if (id != leader) CHECK(cluster.core(id).role() == Role::kFollower);
  }
}

TEST_CASE("election timeouts are randomized within [timeout, 2 * timeout)",
          "[election]") {
  const CoreOptions base = TestOptions();
  std::set<int> observed;
  for (uint64_t seed = 1; seed <= 40; ++seed) {
    CoreOptions options = base;
    options.id = 1;
    options.random_seed = seed;
    MemoryLog log;
    BootState boot;
    boot.membership.voters = {1, 2, 3};
    auto core = Core::Create(options, boot, &log);
    REQUIRE(core.ok());
    int ticks = 0;
    while ((*core)->role() == Role::kFollower && ticks < 100) {
      (*core)->Tick();
      (*core)->TakeReady();
      ++ticks;
    }
    INFO("seed " << seed);
    CHECK(ticks >= static_cast<int>(base.election_timeout_ticks));
    CHECK(ticks < 2 * static_cast<int>(base.election_timeout_ticks));
    observed.insert(ticks);
  }
  // Forty seeds over ten possible values: a fixed timeout would show one.
  CHECK(observed.size() >= 4);
}

TEST_CASE("voters deny candidates whose log is less up to date",
          "[election]") {
  Cluster cluster(3, WithoutPreVoteOrCheckQuorum());
  cluster.ElectLeader(1);
  cluster.Isolate(3);
  cluster.Replicate(1, testing::Payloads(3, 8));
  REQUIRE(cluster.member(2).log.LastIndex() >
          cluster.member(3).log.LastIndex());

  // The leader vanishes; the stale member 3 campaigns first.
  cluster.Heal();
  cluster.Isolate(1);
  cluster.ClearHistory();
  cluster.StartElection(3);
  cluster.Settle();
  CHECK(cluster.core(3).role() != Role::kLeader);
  CHECK(cluster.CountSent(VoteAnswer(2, 3, /*granted=*/false)) >= 1);
  CHECK(cluster.CountSent(VoteAnswer(2, 3, /*granted=*/true)) == 0);
  CHECK(cluster.member(2).log.hard_state().vote != 3);

  // The up-to-date member wins, with the stale member's vote.
  cluster.Campaign(2);
  CHECK(cluster.Leader() == 2);
}

TEST_CASE("a vote cast in a term survives a restart", "[election]") {
  Cluster cluster(3, WithoutPreVoteOrCheckQuorum());
  cluster.StartElection(1);
  cluster.StartElection(3);
  REQUIRE(cluster.core(1).term() == cluster.core(3).term());
  const Term term = cluster.core(1).term();

  auto from_1 = cluster.Take(OfTypeTo(MessageType::kVote, 2));
  REQUIRE(from_1.size() == 2);  // Both candidates asked member 2.
  REQUIRE(from_1[0].from == 1);
  cluster.ClearHistory();
  cluster.Deliver(from_1[0]);
  REQUIRE(cluster.CountSent(VoteAnswer(2, 1, /*granted=*/true)) == 1);
  CHECK(cluster.member(2).log.hard_state().term == term);
  CHECK(cluster.member(2).log.hard_state().vote == 1);

  cluster.Restart(2);
  cluster.ClearHistory();
  cluster.Deliver(from_1[1]);  // Member 3's request, same term.
  CHECK(cluster.CountSent(VoteAnswer(2, 3, /*granted=*/true)) == 0);
  CHECK(cluster.core(2).term() == term);
  CHECK(cluster.member(2).log.hard_state().vote == 1);
}

TEST_CASE("a vote is sent only once it is durable", "[election]") {
  Cluster cluster(3, WithoutPreVoteOrCheckQuorum());
  cluster.StartElection(1);
  cluster.HoldDurability(2);
  auto requests = cluster.Take(OfTypeTo(MessageType::kVote, 2));
  REQUIRE(requests.size() == 1);
  cluster.ClearHistory();
  cluster.Deliver(requests[0]);
  // A crash now must not leave a granted vote that storage forgot.
  CHECK(cluster.CountSent(VoteAnswer(2, 1, /*granted=*/true)) == 0);
  CHECK(cluster.member(2).log.hard_state().vote == kNoMember);

  cluster.ReleaseDurability(2);
  CHECK(cluster.member(2).log.hard_state().vote == 1);
  CHECK(cluster.CountSent(VoteAnswer(2, 1, /*granted=*/true)) == 1);
}

TEST_CASE("pre-vote: a member rejoining after a partition does not disrupt",
          "[election]") {
  CoreOptions options = TestOptions();
  const bool pre_vote = GENERATE(true, false);
  options.pre_vote = pre_vote;
  Cluster cluster(3, options);
  cluster.ElectLeader(1);
  const Term term = cluster.core(1).term();

  cluster.Isolate(3);
  cluster.ClearHistory();
  cluster.Run(10 * static_cast<int>(options.election_timeout_ticks));
  REQUIRE(cluster.Propose(1, {"while-partitioned"}).ok());
  cluster.Settle();

  if (!pre_vote) {
    // Without pre-vote the lone member bumps its term on every attempt,
    // which is exactly what pre-vote exists to prevent.
    CHECK(cluster.core(3).term() > term);
    return;
  }
  CHECK(cluster.CountSent(OfTypeFrom(MessageType::kPreVote, 3)) > 0);
  CHECK(cluster.CountSent(OfTypeFrom(MessageType::kVote, 3)) == 0);
  CHECK(cluster.core(3).term() == term);

  cluster.Heal();
  cluster.Run(3 * static_cast<int>(options.election_timeout_ticks));
  CHECK(cluster.Leader() == 1);
  CHECK(cluster.core(1).term() == term);
  CHECK(testing::AllEntries(cluster.member(3).log) ==
        testing::AllEntries(cluster.member(1).log));
}

TEST_CASE("check-quorum: an isolated leader steps down within an election "
          "timeout",
          "[election]") {
  CoreOptions options = TestOptions();
  const bool check_quorum = GENERATE(true, false);
  options.check_quorum = check_quorum;
  Cluster cluster(3, options);
  cluster.ElectLeader(1);
  cluster.Isolate(1);

  const int timeout = static_cast<int>(options.election_timeout_ticks);
  int ticks = 0;
  while (cluster.core(1).role() == Role::kLeader && ticks < 3 * timeout) {
    cluster.Run(1);
    ++ticks;
  }
  if (check_quorum) {
    CHECK(cluster.core(1).role() == Role::kFollower);
    CHECK(ticks <= timeout + 1);
  } else {
    // The contrast: without check-quorum nothing makes it step down.
    CHECK(cluster.core(1).role() == Role::kLeader);
  }
}

// Followers whose disks are slow (a log write takes longer than an
// election timeout) are alive: their heartbeat answers promise nothing
// durable, so they do not wait for the write and the leader keeps leading.
TEST_CASE("check-quorum: followers with slow log writes still count as heard",
          "[election]") {
  Cluster cluster(3);
  cluster.ElectLeader(1);
  const Term term = cluster.core(1).term();
  cluster.HoldDurability(2);
  cluster.HoldDurability(3);
  (void)cluster.Replicate(1, {"waits-for-slow-disks"}, 0);

  const int timeout =
      static_cast<int>(cluster.member(1).options.election_timeout_ticks);
  cluster.Run(3 * timeout);
  CHECK(cluster.core(1).role() == Role::kLeader);
  CHECK(cluster.core(1).term() == term);

  cluster.ReleaseDurability(2);
  cluster.ReleaseDurability(3);
  cluster.Run(2);
  CHECK(cluster.core(1).CommitIndex() == cluster.member(1).log.LastIndex());
}

TEST_CASE("check-quorum: followers that hear from a leader ignore vote "
          "requests",
          "[election]") {
  Cluster cluster(3);
  cluster.ElectLeader(1);
  const Term term = cluster.core(1).term();

  // Member 3 claims a higher term with an up-to-date log.
  cluster.ClearHistory();
  cluster.Deliver(VoteRequest(cluster, 3, 2, term + 1));
  CHECK(cluster.core(2).term() == term);
  CHECK(cluster.core(2).LeaderId() == 1);
  CHECK(cluster.member(2).log.hard_state().vote != 3);
  CHECK(cluster.CountSent(VoteAnswer(2, 3, /*granted=*/true)) == 0);

  // Once an election timeout passes without the leader, the same request
  // is granted: the refusal above came from the lease, not the log.
  cluster.Isolate(1);
  for (uint32_t t = 0; t < cluster.member(2).options.election_timeout_ticks;
       ++t) {
    cluster.Tick(2);
  }
  cluster.Settle();
  cluster.ClearHistory();
  cluster.Deliver(VoteRequest(cluster, 3, 2, cluster.core(2).term() + 1));
  CHECK(cluster.CountSent(VoteAnswer(2, 3, /*granted=*/true)) == 1);
}

TEST_CASE("followers refuse proposals and name the leader", "[election]") {
  // Distinctive ids, so that finding the leader's in the message means
  // something.
  testing::ClusterConfig config;
  config.voters = {11, 22, 33};
  Cluster cluster(config);
  cluster.ElectLeader(33);
  auto refused = cluster.Propose(11, {"x"});
  REQUIRE(refused.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(refused.status().message()),
             Catch::Matchers::Contains("33"));
  CHECK(cluster.core(11).LeaderId() == 33);
}

}  // namespace
}  // namespace confman::raft
