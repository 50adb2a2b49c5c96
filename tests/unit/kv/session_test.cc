// Exactly-once writes: the config store's session table.
#include <chrono>
#include <random>

#include "kv_test_util.h"

namespace confman::kv {
namespace {

using testing::CommandEntry;
using testing::Delete;
using testing::LmdbMachine;
using testing::MemoryMachine;
using testing::MustApply;
using testing::Put;
using testing::Transfer;

constexpr int64_t kT0 = 1700000000000000;  // Microseconds since the epoch.
constexpr int64_t kSecond = 1000000;

Command Session(Command c, uint64_t client, uint64_t sequence,
                uint64_t lowest_unanswered = 0) {
  c.client_id = client;
  c.sequence = sequence;
  c.lowest_unanswered = lowest_unanswered;
  return c;
}

// The same bytes proposed again at another index: what a retry is.
raft::Entry Again(const raft::Entry& first, raft::Index index) {
  raft::Entry entry = first;
  entry.index = index;
  return entry;
}

ApplyResult ApplyOne(StateMachine& sm, raft::Entry entry) {
  auto results = MustApply(sm, {std::move(entry)});
  REQUIRE(results.size() == 1);
  return results[0];
}

void CheckSame(const ApplyResult& retry, const ApplyResult& first) {
  CHECK(retry.outcome == first.outcome);
  CHECK(retry.revision == first.revision);
}

uint64_t ChangeCount(const KvStateMachine& sm) {
  return sm.Changes(0, 10000).value().changes.size();
}

std::string SnapshotBytes(const KvStateMachine& sm) {
  auto source = sm.OpenSnapshot();
  REQUIRE(source.ok());
  std::string out;
  while (true) {
    auto chunk = (*source)->NextChunk();
    REQUIRE(chunk.ok());
    out += chunk->data;
    if (chunk->last) return out;
  }
}

TEMPLATE_TEST_CASE("a retried put returns its first result and changes nothing",
                   "[kv][session]", MemoryMachine, LmdbMachine) {
  TestType factory;
  auto sm = factory.Open();
  const raft::Entry put =
      CommandEntry(1, Session(Put("app", "k", "v1"), 7, 1), "c", kT0);
  const ApplyResult first = ApplyOne(*sm, put);
  REQUIRE(first.outcome.ok());
  CHECK(first.revision == 1);
  // Someone else writes the key; the retry must not overwrite it.
  ApplyOne(*sm, CommandEntry(2, Put("app", "k", "other"), "c", kT0 + 1));

  const ApplyResult retry = ApplyOne(*sm, Again(put, 3));
  CheckSame(retry, first);
  CHECK(retry.index == 3);
  CHECK(sm->AppliedIndex() == 3);
  CHECK(sm->Revision() == 2);
  CHECK(ChangeCount(*sm) == 2);
  CHECK(sm->Get("app", "k").value().value == "other");

  // A retry in the same batch as the first attempt is caught too.
  const raft::Entry put2 =
      CommandEntry(4, Session(Put("app", "j", "x"), 7, 2), "c", kT0 + 2);
  auto results = MustApply(*sm, {put2, Again(put2, 5), Again(put, 6)});
  CHECK(results[0].revision == 3);
  CheckSame(results[1], results[0]);
  CheckSame(results[2], first);
  CHECK(sm->Revision() == 3);
  CHECK(sm->Get("app", "j").value().version == 1);
}

TEMPLATE_TEST_CASE(
    "retried deletes and compare-and-sets return their first outcome",
    "[kv][session]", MemoryMachine, LmdbMachine) {
  TestType factory;
  auto sm = factory.Open();
  ApplyOne(*sm,
           CommandEntry(1, Put("app", "k", "v"), "c", kT0));  // Revision 1.

  // A delete that took effect, retried after the key was written again.
  const raft::Entry del =
      CommandEntry(2, Session(Delete("app", "k"), 9, 1), "c", kT0 + 1);
  const ApplyResult deleted = ApplyOne(*sm, del);
  REQUIRE(deleted.outcome.ok());
  CHECK(deleted.revision == 2);
  ApplyOne(*sm, CommandEntry(3, Put("app", "k", "back"), "c", kT0 + 2));  // 3.
  CheckSame(ApplyOne(*sm, Again(del, 4)), deleted);
  CHECK(sm->Get("app", "k").value().value == "back");

  // A delete of an absent key: NotFound, and still NotFound after the key
  // appears (the retry is not a fresh delete).
  const raft::Entry missing =
      CommandEntry(5, Session(Delete("app", "none"), 9, 2), "c", kT0 + 3);
  const ApplyResult not_found = ApplyOne(*sm, missing);
  CHECK(absl::IsNotFound(not_found.outcome));
  ApplyOne(*sm,
           CommandEntry(6, Put("app", "none", "now"), "c", kT0 + 4));  // 4.
  CheckSame(ApplyOne(*sm, Again(missing, 7)), not_found);
  CHECK(sm->Get("app", "none").ok());

  // A compare-and-set that lost stays lost although it would now win...
  const raft::Entry lost = CommandEntry(
      8, Session(Put("app", "k", "cas", uint64_t{4}), 9, 3), "c", kT0 + 5);
  const ApplyResult conflict = ApplyOne(*sm, lost);
  CHECK(absl::IsFailedPrecondition(conflict.outcome));
  ApplyOne(*sm, CommandEntry(9, Put("app", "pad", "x"), "c", kT0 + 6));  // 5.
  ApplyOne(*sm, CommandEntry(10, Put("app", "k", "r4"), "c", kT0 + 7));  // 6.
  // ...and one that won is not applied again after the key moved on.
  const raft::Entry won = CommandEntry(
      11, Session(Put("app", "k", "won", uint64_t{6}), 9, 4), "c", kT0 + 8);
  const ApplyResult success = ApplyOne(*sm, won);
  REQUIRE(success.outcome.ok());
  CHECK(success.revision == 7);
  ApplyOne(*sm,
           CommandEntry(12, Put("app", "k", "after"), "c", kT0 + 9));  // 8.

  const uint64_t changes = ChangeCount(*sm);
  CheckSame(ApplyOne(*sm, Again(lost, 13)), conflict);
  CheckSame(ApplyOne(*sm, Again(won, 14)), success);
  CHECK(sm->Revision() == 8);
  CHECK(ChangeCount(*sm) == changes);
  CHECK(sm->Get("app", "k").value().value == "after");
}

TEMPLATE_TEST_CASE("writes without a client id apply every time",
                   "[kv][session]", MemoryMachine, LmdbMachine) {
  TestType factory;
  auto sm = factory.Open();
  const raft::Entry put = CommandEntry(1, Put("app", "k", "v"), "c", kT0);
  CHECK(ApplyOne(*sm, put).revision == 1);
  CHECK(ApplyOne(*sm, Again(put, 2)).revision == 2);
  CHECK(ApplyOne(*sm, Again(put, 3)).revision == 3);
  CHECK(sm->Get("app", "k").value().version == 3);
}

TEMPLATE_TEST_CASE("lowest_unanswered lets the store forget results",
                   "[kv][session]", MemoryMachine, LmdbMachine) {
  TestType factory;
  auto sm = factory.Open();
  const raft::Entry w1 =
      CommandEntry(1, Session(Put("app", "a", "1"), 5, 1), "c", kT0);
  const raft::Entry w2 =
      CommandEntry(2, Session(Put("app", "b", "2"), 5, 2), "c", kT0);
  // The client holds the answers to 1 and 2 when it sends 3.
  const raft::Entry w3 =
      CommandEntry(3, Session(Put("app", "c", "3"), 5, 3, 3), "c", kT0 + 1);
  MustApply(*sm, {w1, w2, w3});
  CHECK(sm->Revision() == 3);

  const ApplyResult retry1 = ApplyOne(*sm, Again(w1, 4));
  CHECK(absl::IsAborted(retry1.outcome));
  CHECK(retry1.revision == 0);
  CHECK(
      retry1.outcome.message().find("write 5/1 on app/a was retried after its "
                                    "session record expired") == 0);
  CHECK(retry1.outcome.message().find("read the key and decide") !=
        std::string::npos);
  CHECK(absl::IsAborted(ApplyOne(*sm, Again(w2, 5)).outcome));
  CHECK(ApplyOne(*sm, Again(w3, 6)).revision == 3);  // Still remembered.
  CHECK(sm->Revision() == 3);
  // New sequences still apply.
  CHECK(ApplyOne(*sm, CommandEntry(7, Session(Put("app", "d", "4"), 5, 4), "c",
                                   kT0 + 2))
            .revision == 4);
}

TEMPLATE_TEST_CASE("each client keeps at most max_results_per_client results",
                   "[kv][session]", MemoryMachine, LmdbMachine) {
  TestType factory;
  factory.options.max_results_per_client = 4;
  auto sm = factory.Open();
  std::vector<raft::Entry> writes;
  for (uint64_t seq = 1; seq <= 6; ++seq) {
    writes.push_back(CommandEntry(seq, Session(Put("app", "k", "v"), 3, seq),
                                  "c", kT0 + static_cast<int64_t>(seq)));
  }
  MustApply(*sm, writes);
  CHECK(sm->Revision() == 6);
  raft::Index next = 7;
  CHECK(absl::IsAborted(ApplyOne(*sm, Again(writes[0], next++)).outcome));
  CHECK(absl::IsAborted(ApplyOne(*sm, Again(writes[1], next++)).outcome));
  for (uint64_t seq = 3; seq <= 6; ++seq) {
    CHECK(ApplyOne(*sm, Again(writes[seq - 1], next++)).revision == seq);
  }
  CHECK(sm->Revision() == 6);
}

TEMPLATE_TEST_CASE("max_sessions evicts the least recently active client",
                   "[kv][session]", MemoryMachine, LmdbMachine) {
  TestType factory;
  factory.options.max_sessions = 2;
  auto sm = factory.Open();
  const raft::Entry a =
      CommandEntry(1, Session(Put("app", "a", "1"), 1, 1), "c", kT0);
  const raft::Entry b =
      CommandEntry(2, Session(Put("app", "b", "1"), 2, 1), "c", kT0 + 1);
  // Client 1 writes again, so client 2 is now the least recently active.
  const raft::Entry a2 =
      CommandEntry(3, Session(Put("app", "a", "2"), 1, 2), "c", kT0 + 2);
  const raft::Entry c =
      CommandEntry(4, Session(Put("app", "c", "1"), 3, 1), "c", kT0 + 3);
  MustApply(*sm, {a, b, a2, c});
  CHECK(sm->Revision() == 4);

  const ApplyResult refused = ApplyOne(*sm, Again(b, 5));
  CHECK(absl::IsAborted(refused.outcome));
  CHECK(refused.outcome.message().find("write 2/1 on app/b") == 0);
  CHECK(ApplyOne(*sm, Again(a, 6)).revision == 1);
  CHECK(ApplyOne(*sm, Again(c, 7)).revision == 4);
  CHECK(sm->Revision() == 4);

  // A new first attempt of the evicted client applies (evicting client 1,
  // now the least recently active)...
  const raft::Entry b2 =
      CommandEntry(8, Session(Put("app", "b", "2"), 2, 2), "c", kT0 + 4);
  CHECK(ApplyOne(*sm, b2).revision == 5);
  CHECK(ApplyOne(*sm, Again(b2, 9)).revision == 5);
  // ...but its record vouches for nothing older than the eviction.
  CHECK(absl::IsAborted(ApplyOne(*sm, Again(b, 10)).outcome));
  CHECK(absl::IsAborted(ApplyOne(*sm, Again(a2, 11)).outcome));
  CHECK(sm->Get("app", "b").value().value == "2");
  CHECK(sm->Revision() == 5);
}

TEMPLATE_TEST_CASE("ties in last activity evict the smallest client id first",
                   "[kv][session]", MemoryMachine, LmdbMachine) {
  TestType factory;
  factory.options.max_sessions = 2;
  auto sm = factory.Open();
  const raft::Entry x =
      CommandEntry(1, Session(Put("app", "x", "1"), 20, 1), "c", kT0);
  const raft::Entry y =
      CommandEntry(2, Session(Put("app", "y", "1"), 10, 1), "c", kT0);
  const raft::Entry z =
      CommandEntry(3, Session(Put("app", "z", "1"), 30, 1), "c", kT0 + 1);
  MustApply(*sm, {x, y, z});
  CHECK(absl::IsAborted(ApplyOne(*sm, Again(y, 4)).outcome));
  // Client 20 survived, but the watermark covers its time stamp: it was
  // stamped no later than the evicted client's last activity.
  CHECK(ApplyOne(*sm, Again(x, 5)).revision == 1);
  CHECK(ApplyOne(*sm, Again(z, 6)).revision == 3);
}

TEMPLATE_TEST_CASE("session_ttl forgets idle clients on the store clock",
                   "[kv][session]", MemoryMachine, LmdbMachine) {
  TestType factory;
  factory.options.session_ttl = std::chrono::seconds(10);
  auto sm = factory.Open();
  const raft::Entry a =
      CommandEntry(1, Session(Put("app", "a", "1"), 1, 1), "c", kT0);
  const raft::Entry b = CommandEntry(2, Session(Put("app", "b", "1"), 2, 1),
                                     "c", kT0 + 5 * kSecond);
  CHECK(sm->ClockMicros() == INT64_MIN);
  MustApply(*sm, {a, b});
  CHECK(sm->ClockMicros() == kT0 + 5 * kSecond);
  // Ten seconds of store clock: client 1 is exactly at the edge, kept.
  ApplyOne(*sm,
           CommandEntry(3, Put("app", "tick", "1"), "c", kT0 + 10 * kSecond));
  CHECK(ApplyOne(*sm, Again(a, 4)).revision == 1);
  // A write without a session moves the clock past it: client 1 expires,
  // client 2 does not.
  ApplyOne(*sm,
           CommandEntry(5, Put("app", "tick", "2"), "c", kT0 + 11 * kSecond));
  const uint64_t revision = sm->Revision();
  const ApplyResult expired = ApplyOne(*sm, Again(a, 6));
  CHECK(absl::IsAborted(expired.outcome));
  CHECK(expired.outcome.message().find("no record of client 1") !=
        std::string::npos);
  CHECK(ApplyOne(*sm, Again(b, 7)).revision == 2);
  CHECK(sm->Revision() == revision);

  // A new first attempt of client 1 applies; the retry of its old write
  // still does not.
  const raft::Entry a2 = CommandEntry(8, Session(Put("app", "a", "2"), 1, 2),
                                      "c", kT0 + 12 * kSecond);
  CHECK(ApplyOne(*sm, a2).revision == revision + 1);
  CHECK(absl::IsAborted(ApplyOne(*sm, Again(a, 9)).outcome));
  CHECK(ApplyOne(*sm, Again(a2, 10)).revision == revision + 1);
  CHECK(sm->Get("app", "a").value().value == "2");
}

TEST_CASE(
    "a delayed first attempt older than the session TTL is refused, "
    "not applied",
    "[kv][session]") {
  MemoryMachine factory;
  factory.options.session_ttl = std::chrono::seconds(10);
  auto sm = factory.Open();
  ApplyOne(*sm,
           CommandEntry(1, Put("app", "tick", "1"), "c", kT0 + 60 * kSecond));
  const ApplyResult late = ApplyOne(
      *sm, CommandEntry(2, Session(Put("app", "k", "v"), 4, 1), "c", kT0));
  CHECK(absl::IsAborted(late.outcome));
  CHECK(absl::IsNotFound(sm->Get("app", "k").status()));
  CHECK(sm->AppliedIndex() == 2);
}

// A seeded mix of session writes, retries, clients and clock jumps.
std::vector<raft::Entry> RandomHistory(uint64_t seed, int count) {
  std::mt19937_64 rng(seed);
  std::vector<raft::Entry> entries;
  std::vector<uint64_t> next_seq(8, 1);
  int64_t clock = kT0;
  for (int i = 0; i < count; ++i) {
    const raft::Index index = entries.size() + 1;
    const uint64_t roll = rng() % 100;
    clock += static_cast<int64_t>(rng() % (3 * kSecond));
    if (roll < 25 && !entries.empty()) {
      entries.push_back(Again(entries[rng() % entries.size()], index));
      continue;
    }
    const uint64_t client = rng() % next_seq.size();
    const std::string key = std::to_string(rng() % 5);
    Command c =
        roll < 70 ? Put("ns", key, std::to_string(i)) : Delete("ns", key);
    if (roll % 7 == 0) c.expected_revision = rng() % 8;
    if (client != 0) {
      const uint64_t seq = next_seq[client]++;
      c = Session(std::move(c), client, seq, seq > 3 ? seq - rng() % 4 : 0);
    }
    entries.push_back(CommandEntry(index, c, "c", clock));
  }
  return entries;
}

TEST_CASE("members fed the same entries keep identical session tables",
          "[kv][session]") {
  const auto entries = RandomHistory(42, 400);
  KvStateMachineOptions options;
  options.max_sessions = 4;
  options.max_results_per_client = 3;
  options.session_ttl = std::chrono::seconds(20);
  MemoryMachine memory;
  memory.options = options;
  LmdbMachine lmdb;
  lmdb.options = options;
  auto a = memory.Open();
  auto b = lmdb.Open();
  // Different batch boundaries must not matter either.
  std::vector<ApplyResult> ra = MustApply(*a, entries);
  std::vector<ApplyResult> rb;
  for (size_t i = 0; i < entries.size(); i += 7) {
    std::vector<raft::Entry> batch(
        entries.begin() + i, entries.begin() + std::min(i + 7, entries.size()));
    for (ApplyResult& r : MustApply(*b, batch)) rb.push_back(std::move(r));
  }
  REQUIRE(ra.size() == rb.size());
  int aborted = 0;
  for (size_t i = 0; i < ra.size(); ++i) {
    CHECK(ra[i].outcome == rb[i].outcome);
    CHECK(ra[i].revision == rb[i].revision);
    aborted += absl::IsAborted(ra[i].outcome);
  }
  CHECK(aborted > 0);  // The history exercises forgetting.
  CHECK(SnapshotBytes(*a) == SnapshotBytes(*b));
}

TEMPLATE_TEST_CASE("deduplication holds across a snapshot restore",
                   "[kv][session]", MemoryMachine, LmdbMachine) {
  MemoryMachine donor_factory;
  donor_factory.options.session_ttl = std::chrono::seconds(30);
  auto donor = donor_factory.Open();
  const raft::Entry put =
      CommandEntry(1, Session(Put("app", "k", "v"), 7, 1), "c", kT0);
  const raft::Entry cas = CommandEntry(
      2, Session(Put("app", "k", "w", uint64_t{99}), 7, 2), "c", kT0 + 1);
  const raft::Entry old =
      CommandEntry(3, Session(Put("app", "o", "v"), 8, 1), "c", kT0);
  MustApply(*donor, {put, cas, old});
  // Client 7 keeps writing within the TTL; client 8, idle, expires.
  MustApply(*donor, {CommandEntry(4, Session(Put("app", "n", "1"), 7, 3), "c",
                                  kT0 + 25 * kSecond),
                     CommandEntry(5, Session(Put("app", "n", "2"), 7, 4), "c",
                                  kT0 + 50 * kSecond)});
  CHECK(absl::IsAborted(ApplyOne(*donor, Again(old, 6)).outcome));

  TestType factory;
  factory.options.session_ttl = std::chrono::seconds(30);
  auto sm = factory.Open();
  auto source = donor->OpenSnapshot().value();
  auto sink = sm->BeginRestore(source->meta()).value();
  REQUIRE(Transfer(*source, *sink).ok());
  CHECK(SnapshotBytes(*sm) == SnapshotBytes(*donor));
  CHECK(sm->ClockMicros() == kT0 + 50 * kSecond);

  const ApplyResult retry = ApplyOne(*sm, Again(put, 7));
  INFO(retry.outcome.ToString());
  CHECK(retry.outcome.ok());
  CHECK(retry.revision == 1);
  const ApplyResult conflict = ApplyOne(*sm, Again(cas, 8));
  CHECK(absl::IsFailedPrecondition(conflict.outcome));
  CHECK(ApplyOne(*sm, Again(old, 9)).outcome.code() ==
        absl::StatusCode::kAborted);
  CHECK(sm->Revision() == donor->Revision());
}

TEST_CASE("deduplication holds across a restart of the LMDB store",
          "[kv][session][lmdb]") {
  LmdbMachine factory;
  factory.options.max_results_per_client = 2;
  const raft::Entry w1 =
      CommandEntry(1, Session(Put("app", "a", "1"), 3, 1), "c", kT0);
  const raft::Entry w2 =
      CommandEntry(2, Session(Delete("app", "x"), 3, 2), "c", kT0);
  const raft::Entry w3 =
      CommandEntry(3, Session(Put("app", "b", "1"), 3, 3), "c", kT0);
  ApplyResult deleted;
  {
    auto sm = factory.Open();
    auto results = MustApply(*sm, {w1, w2, w3});
    deleted = results[1];
    CHECK(absl::IsNotFound(deleted.outcome));
  }
  auto sm = factory.Open();
  CHECK(sm->ClockMicros() == kT0);
  CHECK(absl::IsAborted(ApplyOne(*sm, Again(w1, 4)).outcome));
  CheckSame(ApplyOne(*sm, Again(w2, 5)), deleted);
  CHECK(ApplyOne(*sm, Again(w3, 6)).revision == 2);
  CHECK(sm->Revision() == 2);
}

TEST_CASE("a version 1 snapshot stream still restores", "[kv][session]") {
  MemoryMachine donor_factory;
  auto donor = donor_factory.Open();
  MustApply(*donor, {CommandEntry(1, Put("app", "k", "v"), "c", kT0)});
  auto source = donor->OpenSnapshot().value();
  std::vector<SnapshotChunk> chunks;
  while (chunks.empty() || !chunks.back().last) {
    chunks.push_back(source->NextChunk().value());
  }
  REQUIRE(chunks[0].data.substr(0, 8) == "CMSNAP02");
  chunks[0].data.replace(0, 8, "CMSNAP01");
  chunks[0].checksum =
      SnapshotChunkChecksum(chunks[0].seq, chunks[0].last, chunks[0].data);
  MemoryMachine factory;
  auto sm = factory.Open();
  auto sink = sm->BeginRestore(source->meta()).value();
  for (const SnapshotChunk& chunk : chunks) REQUIRE(sink->Write(chunk).ok());
  REQUIRE(sink->Commit().ok());
  CHECK(sm->Get("app", "k").value().value == "v");

  // A version 1 stream cannot carry session records.
  MustApply(*donor,
            {CommandEntry(2, Session(Put("app", "k", "w"), 1, 1), "c", kT0)});
  auto with_sessions = donor->OpenSnapshot().value();
  chunks.clear();
  while (chunks.empty() || !chunks.back().last) {
    chunks.push_back(with_sessions->NextChunk().value());
  }
  chunks[0].data.replace(0, 8, "CMSNAP01");
  chunks[0].checksum =
      SnapshotChunkChecksum(chunks[0].seq, chunks[0].last, chunks[0].data);
  MemoryMachine refusing;
  auto target = refusing.Open();
  auto refusing_sink = target->BeginRestore(with_sessions->meta()).value();
  absl::Status status;
  for (const SnapshotChunk& chunk : chunks) {
    status = refusing_sink->Write(chunk);
    if (!status.ok()) break;
  }
  CHECK(absl::IsDataLoss(status));
  CHECK(target->AppliedIndex() == 0);
}

TEST_CASE("session commands are validated where they are encoded",
          "[kv][session][command]") {
  Command put = Session(Put("app", "k", "v"), 5, 0);
  CHECK(absl::IsInvalidArgument(EncodeCommand(put, "c", kT0).status()));
  put.sequence = 1;
  put.lowest_unanswered = 1;
  auto view_bytes = EncodeCommand(put, "c", kT0);
  REQUIRE(view_bytes.ok());
  auto view = DecodeCommand(*view_bytes);
  REQUIRE(view.ok());
  CHECK(view->client_id == 5);
  CHECK(view->sequence == 1);
  CHECK(view->lowest_unanswered == 1);

  // A compaction carries no session.
  Command compact;
  compact.kind = Command::Kind::kCompactHistory;
  compact.compact_through = 3;
  compact.client_id = 5;
  auto compact_bytes = EncodeCommand(compact, "c", kT0);
  REQUIRE(compact_bytes.ok());
  CHECK(DecodeCommand(*compact_bytes).value().client_id == 0);

  // Without a session the encoding is the one older versions produced
  // (the fields are absent), and it reads back as client 0.
  auto plain = EncodeCommand(Put("app", "k", "v"), "c", kT0);
  REQUIRE(plain.ok());
  CHECK(DecodeCommand(*plain).value().client_id == 0);
  CHECK(plain->size() < view_bytes->size());
}

TEST_CASE("the session options are validated", "[kv][session]") {
  KvStateMachineOptions options;
  CHECK(options.Validate().ok());
  options.max_sessions = 0;
  CHECK(absl::IsInvalidArgument(options.Validate()));
  options = {};
  options.max_results_per_client = 0;
  CHECK(absl::IsInvalidArgument(options.Validate()));
  options = {};
  options.session_ttl = std::chrono::milliseconds(10);
  CHECK(absl::IsInvalidArgument(options.Validate()));
  CHECK(absl::IsInvalidArgument(
      KvStateMachine::CreateInMemory(options).status()));
}

}  // namespace
}  // namespace confman::kv
