// Log replication: the consistency check and fast backtracking (thesis
// §3.5), commitment rules (§3.6.2, Figures 7 and 8 of the Raft paper),
// the leader's parallel disk write (§10.2.1), batching, the in-flight
// window, and the probe / replicate states.
#include <catch2/catch.hpp>

#include "harness.h"

namespace confman::raft {
namespace {

using testing::AllEntries;
using testing::Cluster;
using testing::OfTypeFrom;
using testing::OfTypeTo;
using testing::Payloads;
using testing::ProgressOf;
using testing::TestOptions;

Message AppendFromLeader(MemberId from, MemberId to, Term term,
                         Index prev_index, Term prev_term,
                         std::vector<Entry> entries) {
  Message append;
  append.type = MessageType::kAppend;
  append.from = from;
  append.to = to;
  append.term = term;
  append.log_index = prev_index;
  append.log_term = prev_term;
  append.entries = std::move(entries);
  return append;
}

Entry MakeEntry(Index index, Term term, std::string data) {
  Entry entry;
  entry.index = index;
  entry.term = term;
  entry.data = std::move(data);
  return entry;
}

std::vector<Term> TermsOf(const MemoryLog& log) {
  std::vector<Term> terms;
  for (const Entry& e : AllEntries(log)) terms.push_back(e.term);
  return terms;
}

uint64_t DataBytes(const Message& m) {
  uint64_t bytes = 0;
  for (const Entry& e : m.entries) bytes += e.data.size();
  return bytes;
}

bool IsAppendWithEntries(const Message& m) {
  return m.type == MessageType::kAppend && !m.entries.empty();
}

TEST_CASE(
    "the consistency check rejects appends whose previous entry "
    "does not match",
    "[replication]") {
  Cluster cluster(3);
  cluster.Preload(2, {1, 1, 2}, 2);
  const std::vector<Term> before = TermsOf(cluster.member(2).log);

  SECTION("previous entry has another term") {
    cluster.Deliver(AppendFromLeader(1, 2, 3, 3, 3, {MakeEntry(4, 3, "x")}));
    auto responses = cluster.Take(OfTypeFrom(MessageType::kAppendResponse, 2));
    REQUIRE(responses.size() == 1);
    CHECK(responses[0].reject);
    CHECK(responses[0].log_index == 3);
    CHECK(responses[0].hint_index <= 3);
    CHECK(TermsOf(cluster.member(2).log) == before);
  }
  SECTION("previous entry is beyond the follower's log") {
    cluster.Deliver(AppendFromLeader(1, 2, 3, 7, 3, {MakeEntry(8, 3, "x")}));
    auto responses = cluster.Take(OfTypeFrom(MessageType::kAppendResponse, 2));
    REQUIRE(responses.size() == 1);
    CHECK(responses[0].reject);
    CHECK(responses[0].hint_index <= 3);
    CHECK(TermsOf(cluster.member(2).log) == before);
  }
  SECTION("a matching previous entry is accepted and conflicts truncated") {
    cluster.Deliver(AppendFromLeader(
        1, 2, 3, 2, 1, {MakeEntry(3, 3, "x"), MakeEntry(4, 3, "y")}));
    auto responses = cluster.Take(OfTypeFrom(MessageType::kAppendResponse, 2));
    REQUIRE(responses.size() == 1);
    CHECK_FALSE(responses[0].reject);
    CHECK(responses[0].log_index == 4);
    CHECK(TermsOf(cluster.member(2).log) == std::vector<Term>{1, 1, 3, 3});
  }
}

TEST_CASE(
    "fast backtracking skips a long divergent suffix in a few round "
    "trips",
    "[replication]") {
  std::vector<Term> leader_log(10, 1);
  std::vector<Term> divergent = leader_log;
  leader_log.resize(500, 3);
  divergent.resize(1000, 2);  // A deposed term-2 leader's unreplicated tail.

  Cluster cluster(3);
  cluster.Preload(1, leader_log, 3);
  cluster.Preload(2, divergent, 3);
  cluster.Preload(3, leader_log, 3);
  cluster.ClearHistory();
  cluster.Campaign(1);
  cluster.Run(2);

  const int rejections = cluster.CountSent([](const Message& m) {
    return m.type == MessageType::kAppendResponse && m.from == 2 && m.reject;
  });
  CHECK(rejections >= 1);  // The divergence was found...
  CHECK(rejections <= 3);  // ...without walking back one entry at a time.
  CHECK(AllEntries(cluster.member(2).log) == AllEntries(cluster.member(1).log));
}

TEST_CASE(
    "Raft paper Figure 7: every follower log converges to the "
    "leader's",
    "[replication]") {
  const std::vector<Term> leader = {1, 1, 1, 4, 4, 5, 5, 6, 6, 6};
  const std::vector<std::vector<Term>> followers = {
      {1, 1, 1, 4, 4, 5, 5, 6, 6},           // (a) missing entries
      {1, 1, 1, 4},                          // (b) missing more
      {1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6},     // (c) an extra uncommitted entry
      {1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7},  // (d) extra entries of term 7
      {1, 1, 1, 4, 4, 4, 4},                 // (e) missing and extra
      {1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3},     // (f) a long divergent tail
  };
  Cluster cluster(7);
  cluster.Preload(1, leader, 7);
  for (size_t i = 0; i < followers.size(); ++i) {
    cluster.Preload(i + 2, followers[i], 7);
  }
  // a, b, e and f vote for the leader; c and d have more up-to-date logs.
  cluster.Campaign(1);
  cluster.Run(3);

  REQUIRE(cluster.core(1).term() == 8);
  std::vector<Term> expected = leader;
  expected.push_back(8);  // The leader's no-op.
  CHECK(TermsOf(cluster.member(1).log) == expected);
  for (MemberId id = 2; id <= 7; ++id) {
    INFO("follower " << static_cast<char>('a' + id - 2));
    CHECK(AllEntries(cluster.member(id).log) ==
          AllEntries(cluster.member(1).log));
    CHECK(cluster.core(id).CommitIndex() == expected.size());
  }
}

TEST_CASE(
    "Raft paper Figure 8: an earlier term's entry commits only with "
    "an entry of the current term",
    "[replication]") {
  // Figure 8 (c): S1 leads term 4 with index 2 from term 2; S5 holds a
  // conflicting index 2 from term 3 and is down. Pre-vote and check-quorum
  // are off so that the figure's elections happen exactly as drawn.
  CoreOptions options = TestOptions();
  options.pre_vote = false;
  options.check_quorum = false;
  options.max_append_entries = 1;
  Cluster cluster(5, options);
  cluster.Preload(1, {1, 2}, 3);
  for (MemberId id : {2, 3, 4}) cluster.Preload(id, {1}, 3);
  cluster.Preload(5, {1, 3}, 3);
  cluster.Isolate(5);

  // Appends that would land S1's term-4 entry (index 3) anywhere are lost,
  // so index 2 reaches S2, S3 and S4 alone.
  cluster.DropWhere([&cluster](const Message& m) {
    if (m.type != MessageType::kAppend) return false;
    for (const Entry& e : m.entries) {
      if (e.index < 3) continue;
      auto term = cluster.member(m.to).log.TermAt(m.log_index);
      return term.ok() && *term == m.log_term;
    }
    return false;
  });
  cluster.Campaign(1);
  cluster.Run(3);
  REQUIRE(cluster.core(1).term() == 4);
  for (MemberId id : {2, 3, 4}) {
    INFO("S" << id);
    REQUIRE(ProgressOf(cluster.core(1), id).match == 2);
  }
  // Stored on four of five members, yet from an earlier term: not committed.
  CHECK(cluster.core(1).CommitIndex() == 0);
  CHECK(cluster.member(1).applied.empty());

  SECTION("(d) S1 crashes; S5 may still overwrite index 2") {
    cluster.Heal();
    cluster.Isolate(1);
    cluster.Campaign(5);
    cluster.Run(3);
    for (MemberId id : {2, 3, 4, 5}) {
      INFO("S" << id);
      CHECK(*cluster.member(id).log.TermAt(2) == 3);
      CHECK(cluster.core(id).CommitIndex() >= 2);
    }
  }
  SECTION("(e) S1 replicates an entry of its term; both commit") {
    cluster.Heal();
    cluster.Isolate(5);
    cluster.Run(3);
    CHECK(cluster.core(1).CommitIndex() == 3);
    REQUIRE(cluster.member(1).applied.size() == 3);
    CHECK(cluster.member(1).applied[1].term == 2);
    CHECK(cluster.member(1).applied[2].term == 4);
  }
}

TEST_CASE("the leader's own entries count toward commit only once durable",
          "[replication]") {
  Cluster cluster(3);
  cluster.ElectLeader(1);
  const Index commit_before = cluster.core(1).CommitIndex();
  cluster.Isolate(3);
  cluster.HoldDurability(1);

  const ProposalPosition position = cluster.Replicate(1, {"x"});
  // Member 2 stored and acknowledged it; the leader's disk has not.
  REQUIRE(cluster.member(2).log.LastIndex() >= position.last);
  REQUIRE(ProgressOf(cluster.core(1), 2).match >= position.last);
  CHECK(cluster.core(1).CommitIndex() == commit_before);

  cluster.ReleaseDurability(1);
  cluster.Settle();
  CHECK(cluster.core(1).CommitIndex() >= position.last);
}

TEST_CASE("the leader's log write and its appends share an entry's bytes",
          "[replication]") {
  Cluster cluster(3);
  cluster.ElectLeader(1);
  cluster.ClearHistory();
  const std::string value(64 << 10, 'p');
  REQUIRE(cluster.Propose(1, {value}).ok());
  cluster.Settle();

  const char* stored = nullptr;
  for (const Entry& e : AllEntries(cluster.member(1).log)) {
    if (e.data == value) stored = e.data.data();
  }
  REQUIRE(stored != nullptr);
  int appends = 0;
  for (const Message& m : cluster.history()) {
    if (m.from != 1 || !IsAppendWithEntries(m)) continue;
    for (const Entry& e : m.entries) {
      if (e.data != value) continue;
      ++appends;
      CHECK(e.data.data() == stored);
    }
  }
  CHECK(appends == 2);
}

TEST_CASE("committed entries are handed out from memory, not read back",
          "[replication]") {
  Cluster cluster(3);
  cluster.ElectLeader(1);
  cluster.Replicate(1, Payloads(3, 8));
  // From here on a read of any member's stored log fails: entries that
  // were just made durable must come from the log's memory.
  for (MemberId id : {1, 2, 3}) {
    cluster.FailReads(id, absl::DataLossError("reads are off in this test"));
  }
  const ProposalPosition position = cluster.Replicate(1, Payloads(5, 1000));
  for (MemberId id : {1, 2, 3}) {
    INFO("member " << id);
    CHECK(cluster.core(id).Status().storage_error.ok());
    CHECK(cluster.core(id).Status().queued_index >= position.last);
  }
}

TEST_CASE("appends are batched by max_append_entries and max_append_bytes",
          "[replication]") {
  CoreOptions options = TestOptions();
  options.max_append_entries = 4;
  options.max_append_bytes = 100;
  Cluster cluster(3, options);
  cluster.ElectLeader(1);
  cluster.ClearHistory();

  REQUIRE(cluster.Propose(1, Payloads(20, 30)).ok());  // 3 fit 100 bytes.
  REQUIRE(cluster.Propose(1, Payloads(20, 1)).ok());   // 4 fit the count.
  REQUIRE(cluster.Propose(1, Payloads(1, 500)).ok());  // Alone, oversized.
  cluster.Settle();
  cluster.Run(2);

  size_t largest_batch = 0;
  bool oversized_sent_alone = false;
  for (const Message& m : cluster.history()) {
    if (!IsAppendWithEntries(m)) continue;
    INFO("append to " << m.to << " after index " << m.log_index);
    CHECK(m.entries.size() <= options.max_append_entries);
    CHECK((m.entries.size() == 1 || DataBytes(m) <= options.max_append_bytes));
    largest_batch = std::max(largest_batch, m.entries.size());
    if (DataBytes(m) == 500) oversized_sent_alone = m.entries.size() == 1;
  }
  CHECK(largest_batch == options.max_append_entries);
  CHECK(oversized_sent_alone);
  for (MemberId id : {2, 3}) {
    CHECK(AllEntries(cluster.member(id).log) ==
          AllEntries(cluster.member(1).log));
  }
}

TEST_CASE("the in-flight window caps unacknowledged appends", "[replication]") {
  CoreOptions options = TestOptions();
  options.max_append_entries = 1;
  const bool cap_bytes = GENERATE(false, true);
  if (cap_bytes) {
    options.max_append_bytes = 40;
    options.max_inflight_bytes = 100;  // Two 40-byte appends, not three.
  } else {
    options.max_inflight_messages = 3;
  }
  Cluster cluster(3, options);
  cluster.ElectLeader(1);
  REQUIRE(ProgressOf(cluster.core(1), 2).state ==
          MemberProgress::State::kReplicate);
  cluster.ClearHistory();

  REQUIRE(cluster.Propose(1, Payloads(10, 40)).ok());
  auto held =
      cluster.SettleHolding(OfTypeFrom(MessageType::kAppendResponse, 2));
  const int sent = cluster.CountSent(OfTypeTo(MessageType::kAppend, 2));
  const MemberProgress progress = ProgressOf(cluster.core(1), 2);
  if (cap_bytes) {
    CHECK(sent == 2);
    CHECK(progress.inflight_bytes <= options.max_inflight_bytes);
  } else {
    CHECK(sent == 3);
    CHECK(progress.inflight_messages == 3);
  }
  // Member 3 is not throttled by member 2's window.
  CHECK(cluster.member(3).log.LastIndex() == cluster.member(1).log.LastIndex());

  // One acknowledgement frees room for one more append.
  REQUIRE(!held.empty());
  cluster.Deliver(held.front());
  CHECK(cluster.CountQueued(OfTypeTo(MessageType::kAppend, 2)) == 1);
}

TEST_CASE("followers move from probe to replicate and back", "[replication]") {
  Cluster cluster(3);
  cluster.Campaign(1, /*settle=*/false);
  CHECK(ProgressOf(cluster.core(1), 2).state == MemberProgress::State::kProbe);

  // While probing, one append at a time, however much is proposed.
  REQUIRE(cluster.Propose(1, Payloads(5, 8)).ok());
  CHECK(cluster.CountQueued(OfTypeTo(MessageType::kAppend, 2)) == 1);

  cluster.Settle();
  MemberProgress progress = ProgressOf(cluster.core(1), 2);
  CHECK(progress.state == MemberProgress::State::kReplicate);
  CHECK(progress.match == cluster.member(1).log.LastIndex());

  cluster.core(1).ReportUnreachable(2);
  cluster.HandleReady(1);
  CHECK(ProgressOf(cluster.core(1), 2).state == MemberProgress::State::kProbe);
}

TEST_CASE("committed entries are handed out in batches of max_apply_bytes",
          "[replication]") {
  CoreOptions options = TestOptions();
  options.max_apply_bytes = 100;
  Cluster cluster(3, options);
  cluster.ElectLeader(1);
  cluster.HoldDurability(1);  // Let many entries commit at once.
  REQUIRE(cluster.Propose(1, Payloads(10, 40)).ok());
  REQUIRE(cluster.Propose(1, Payloads(1, 300)).ok());
  cluster.Settle();
  cluster.ReleaseDurability(1);
  cluster.Settle();
  cluster.Run(2);

  for (MemberId id : cluster.ids()) {
    const testing::Member& m = cluster.member(id);
    INFO("member " << id);
    REQUIRE(m.applied_index == cluster.member(1).log.LastIndex());
    for (size_t i = 0; i < m.apply_batch_bytes.size(); ++i) {
      INFO("batch " << i << ": " << m.apply_batch_sizes[i] << " entries, "
                    << m.apply_batch_bytes[i] << " bytes");
      CHECK((m.apply_batch_sizes[i] == 1 ||
             m.apply_batch_bytes[i] <= options.max_apply_bytes));
    }
  }
  // Ten 40-byte entries committed together need at least four batches.
  CHECK(cluster.member(1).apply_batch_sizes.size() >= 4);
}

}  // namespace
}  // namespace confman::raft
