// The StateMachine contract, run against every implementation (and across
// them: a snapshot taken from one restores into the other).
#include <thread>

#include "confman/raft/membership.h"
#include "kv_test_util.h"

namespace confman::kv {
namespace {

using testing::CommandEntry;
using testing::LmdbMachine;
using testing::MemoryMachine;
using testing::MustApply;
using testing::Put;
using testing::Transfer;

raft::Entry Noop(raft::Index index, raft::Term term) {
  return raft::Entry{.term = term, .index = index, .type = raft::EntryType::kNoop,
                     .data = ""};
}

raft::Entry MembershipEntry(raft::Index index, const raft::Membership& m) {
  return raft::Entry{.term = 2, .index = index,
                     .type = raft::EntryType::kMembership,
                     .data = raft::EncodeMembership(m)};
}

const raft::Membership kThree{.voters = {1, 2, 3}, .voters_outgoing = {},
                              .learners = {4}};

// Applies a few keys, a membership and a no-op: index 6, term 2.
void Populate(StateMachine& sm) {
  MustApply(sm, {CommandEntry(1, Put("app", "a", "1")),
                 CommandEntry(2, Put("app", "b", testing::NoiseBytes(10000, 2))),
                 MembershipEntry(3, kThree),
                 CommandEntry(4, Put("other", "c", "3")),
                 Noop(5, 2),
                 Noop(6, 2)});
}

TEMPLATE_TEST_CASE("apply advances the applied index and boot info",
                   "[state_machine]", MemoryMachine, LmdbMachine) {
  TestType factory;
  auto sm = factory.Open();
  CHECK(sm->AppliedIndex() == 0);
  CHECK(sm->CurrentAppliedState().value().applied_index == 0);
  Populate(*sm);
  CHECK(sm->AppliedIndex() == 6);
  const AppliedState boot = sm->CurrentAppliedState().value();
  CHECK(boot.applied_index == 6);
  CHECK(boot.applied_term == 2);
  CHECK(boot.membership == kThree);
  CHECK(boot.membership_index == 3);
}

TEMPLATE_TEST_CASE("results are reported once, before they become visible",
                   "[state_machine]", MemoryMachine, LmdbMachine) {
  TestType factory;
  auto sm = factory.Open();
  int calls = 0;
  std::vector<ApplyResult> early;
  raft::Index applied_when_known = 99;
  auto results = sm->Apply({CommandEntry(1, Put("app", "a", "1")),
                            CommandEntry(2, Put("app", "a", "2", 7))},
                           [&](const std::vector<ApplyResult>& known) {
                             ++calls;
                             early = known;
                             applied_when_known = sm->AppliedIndex();
                           });
  REQUIRE(results.ok());
  CHECK(calls == 1);
  CHECK(applied_when_known == 0);
  REQUIRE(early.size() == 2);
  CHECK(early[0].index == results->at(0).index);
  CHECK(early[0].revision == results->at(0).revision);
  CHECK(early[1].outcome == results->at(1).outcome);
  CHECK(absl::IsFailedPrecondition(early[1].outcome));
  CHECK(sm->AppliedIndex() == 2);
}

TEMPLATE_TEST_CASE("entries already applied are skipped, gaps refused",
                   "[state_machine]", MemoryMachine, LmdbMachine) {
  TestType factory;
  auto sm = factory.Open();
  Populate(*sm);
  const uint64_t revision = sm->Revision();
  auto results = MustApply(*sm, {CommandEntry(5, Put("app", "z", "again")),
                                 CommandEntry(6, Put("app", "z", "again")),
                                 CommandEntry(7, Put("app", "z", "new"))});
  REQUIRE(results.size() == 1);
  CHECK(results[0].index == 7);
  CHECK(sm->Revision() == revision + 1);
  CHECK(absl::IsInvalidArgument(sm->Apply({Noop(9, 2)}).status()));
  CHECK(sm->AppliedIndex() == 7);
  CHECK(MustApply(*sm, {Noop(8, 2)}).size() == 1);
}

TEMPLATE_TEST_CASE("garbage entries are outcomes, not failures",
                   "[state_machine]", MemoryMachine, LmdbMachine) {
  TestType factory;
  auto sm = factory.Open();
  raft::Entry garbage{.term = 1, .index = 1, .type = raft::EntryType::kNormal,
                      .data = std::string(100, '\x07')};
  raft::Entry bad_membership{.term = 1, .index = 2,
                             .type = raft::EntryType::kMembership, .data = "zz"};
  auto results = MustApply(*sm, {garbage, bad_membership,
                                 CommandEntry(3, Put("app", "k", "v"))});
  REQUIRE(results.size() == 3);
  CHECK(absl::IsInvalidArgument(results[0].outcome));
  CHECK(absl::IsInvalidArgument(results[1].outcome));
  CHECK(results[2].outcome.ok());
  CHECK(sm->AppliedIndex() == 3);
}

TEMPLATE_TEST_CASE("a snapshot streams and restores the whole state",
                   "[state_machine]", MemoryMachine, LmdbMachine) {
  TestType factory;
  factory.options.snapshot_chunk_bytes = 4096;  // Many chunks, split records.
  auto sm = factory.Open();
  Populate(*sm);
  auto snapshot = sm->OpenSnapshot().value();
  CHECK(snapshot->meta() == raft::SnapshotMeta{.index = 6, .term = 2,
                                               .membership = kThree});
  auto second = sm->OpenSnapshot().value();
  // Later applies do not leak into an open snapshot.
  MustApply(*sm, {CommandEntry(7, Put("app", "late", "x"))});

  auto restore_into = [&](KvStateMachine& target, SnapshotSource* snapshot) {
    auto sink = target.BeginRestore(snapshot->meta()).value();
    uint64_t chunks = 0;
    while (true) {
      auto chunk = snapshot->NextChunk().value();
      CHECK(chunk.data.size() <= 4096);
      ++chunks;
      REQUIRE(sink->Write(chunk).ok());
      if (chunk.last) break;
    }
    CHECK(chunks > 2);
    CHECK(absl::IsOutOfRange(snapshot->NextChunk().status()));
    REQUIRE(sink->Commit().ok());
    CHECK(target.AppliedIndex() == 6);
    CHECK(target.CurrentAppliedState().value().membership == kThree);
    CHECK(target.Get("app", "b").value().value == testing::NoiseBytes(10000, 2));
    CHECK(target.Get("other", "c").value().value == "3");
    CHECK(absl::IsNotFound(target.Get("app", "late").status()));
    CHECK(target.Revision() == 3);
    // The restored machine keeps applying from the snapshot's index.
    CHECK(MustApply(target, {CommandEntry(7, Put("app", "d", "4"))})[0].revision == 4);
  };
  MemoryMachine memory_target;
  restore_into(*memory_target.Open(), snapshot.get());
  LmdbMachine lmdb_target;
  restore_into(*lmdb_target.Open(), second.get());
}

// Restores `chunks` (possibly tampered with) into `sm` and returns the
// first failure, or the Commit status.
absl::Status RestoreChunks(StateMachine& sm, const raft::SnapshotMeta& meta,
                           const std::vector<SnapshotChunk>& chunks) {
  auto sink = sm.BeginRestore(meta).value();
  for (const SnapshotChunk& chunk : chunks) {
    if (absl::Status s = sink->Write(chunk); !s.ok()) return s;
  }
  return sink->Commit();
}

std::vector<SnapshotChunk> AllChunks(SnapshotSource& source) {
  std::vector<SnapshotChunk> out;
  while (out.empty() || !out.back().last) out.push_back(source.NextChunk().value());
  return out;
}

TEMPLATE_TEST_CASE("a broken snapshot stream leaves the state untouched",
                   "[state_machine]", MemoryMachine, LmdbMachine) {
  MemoryMachine donor_factory;
  donor_factory.options.snapshot_chunk_bytes = 4096;
  auto donor = donor_factory.Open();
  Populate(*donor);
  auto source = donor->OpenSnapshot().value();
  const raft::SnapshotMeta meta = source->meta();
  const std::vector<SnapshotChunk> good = AllChunks(*source);
  REQUIRE(good.size() > 2);

  TestType factory;
  auto sm = factory.Open();
  MustApply(*sm, {CommandEntry(1, Put("mine", "k", "kept"))});
  auto unchanged = [&] {
    CHECK(sm->AppliedIndex() == 1);
    CHECK(sm->Get("mine", "k").value().value == "kept");
    CHECK(absl::IsNotFound(sm->Get("app", "a").status()));
  };

  SECTION("a flipped byte") {
    auto chunks = good;
    chunks[1].data[100] ^= 0x20;
    CHECK(absl::IsDataLoss(RestoreChunks(*sm, meta, chunks)));
  }
  SECTION("a flipped byte with a recomputed checksum") {
    auto chunks = good;
    chunks[0].data[0] ^= 0x20;  // The magic.
    chunks[0].checksum = SnapshotChunkChecksum(0, chunks[0].last, chunks[0].data);
    CHECK(absl::IsDataLoss(RestoreChunks(*sm, meta, chunks)));
  }
  SECTION("a missing chunk") {
    auto chunks = good;
    chunks.erase(chunks.begin() + 1);
    CHECK(absl::IsInvalidArgument(RestoreChunks(*sm, meta, chunks)));
  }
  SECTION("no last chunk") {
    auto chunks = good;
    chunks.pop_back();
    CHECK(absl::IsFailedPrecondition(RestoreChunks(*sm, meta, chunks)));
  }
  SECTION("a stream for another index") {
    raft::SnapshotMeta other = meta;
    other.index = 99;
    CHECK(absl::IsFailedPrecondition(RestoreChunks(*sm, other, good)));
  }
  SECTION("an oversized chunk") {
    auto chunks = good;
    chunks[0].data.resize(65 << 20, 'x');
    chunks[0].checksum =
        SnapshotChunkChecksum(0, chunks[0].last, chunks[0].data);
    CHECK(absl::IsInvalidArgument(RestoreChunks(*sm, meta, chunks)));
  }
  SECTION("a sink dropped before commit") {
    auto sink = sm->BeginRestore(meta).value();
    REQUIRE(sink->Write(good[0]).ok());
  }
  unchanged();
  // A later, correct restore still works.
  REQUIRE(RestoreChunks(*sm, meta, good).ok());
  CHECK(sm->AppliedIndex() == 6);
  CHECK(sm->Get("app", "a").value().value == "1");
  CHECK(absl::IsNotFound(sm->Get("mine", "k").status()));
}

TEMPLATE_TEST_CASE("a failed sink refuses further chunks", "[state_machine]",
                   MemoryMachine, LmdbMachine) {
  TestType factory;
  auto sm = factory.Open();
  Populate(*sm);
  auto source = sm->OpenSnapshot().value();
  auto chunks = AllChunks(*source);
  auto sink = sm->BeginRestore(source->meta()).value();
  SnapshotChunk wrong = chunks[0];
  wrong.seq = 5;
  CHECK(absl::IsInvalidArgument(sink->Write(wrong)));
  CHECK(absl::IsFailedPrecondition(sink->Write(chunks[0])));
  CHECK(absl::IsFailedPrecondition(sink->Commit()));
}

TEST_CASE("the LMDB state machine survives a reopen", "[state_machine][lmdb]") {
  LmdbMachine factory;
  {
    auto sm = factory.Open();
    Populate(*sm);
  }
  auto sm = factory.Open();
  CHECK(sm->AppliedIndex() == 6);
  CHECK(sm->Revision() == 3);
  CHECK(sm->CurrentAppliedState().value().membership == kThree);
  CHECK(sm->Get("app", "a").value().value == "1");
}

TEST_CASE("a restore survives a reopen and replaces the old generation",
          "[state_machine][lmdb]") {
  MemoryMachine donor_factory;
  auto donor = donor_factory.Open();
  Populate(*donor);
  LmdbMachine factory;
  {
    auto sm = factory.Open();
    MustApply(*sm, {CommandEntry(1, Put("mine", "k", "old"))});
    auto source = donor->OpenSnapshot().value();
    auto sink = sm->BeginRestore(source->meta()).value();
    REQUIRE(Transfer(*source, *sink).ok());
  }
  auto sm = factory.Open();
  CHECK(sm->AppliedIndex() == 6);
  CHECK(absl::IsNotFound(sm->Get("mine", "k").status()));
  int generations = 0;
  for (const auto& entry : std::filesystem::directory_iterator(factory.options.dir)) {
    if (entry.path().filename().string().rfind("state-", 0) == 0) ++generations;
  }
  CHECK(generations == 1);
}

TEST_CASE("a snapshot held open does not block apply", "[state_machine][lmdb]") {
  LmdbMachine factory;
  auto sm = factory.Open();
  Populate(*sm);
  auto source = sm->OpenSnapshot().value();
  std::thread applier([&] {
    for (raft::Index i = 7; i < 57; ++i) {
      MustApply(*sm, {CommandEntry(i, Put("app", "k" + std::to_string(i), "v"))});
    }
  });
  applier.join();
  CHECK(sm->AppliedIndex() == 56);
  CHECK(source->meta().index == 6);
  auto chunks = AllChunks(*source);
  MemoryMachine target_factory;
  auto target = target_factory.Open();
  REQUIRE(RestoreChunks(*target, source->meta(), chunks).ok());
  CHECK(target->Revision() == 3);
}

}  // namespace
}  // namespace confman::kv

namespace confman::kv {
namespace {

TEST_CASE("the state map grows, and a full map is a clear storage error",
          "[state_machine][lmdb]") {
  LmdbMachine factory;
  factory.options.initial_map_bytes = 1 << 20;
  factory.options.max_map_bytes = 8 << 20;
  auto sm = factory.Open();
  absl::Status status;
  raft::Index index = 0;
  while (status.ok() && index < 64) {
    ++index;
    auto results = sm->Apply(
        {CommandEntry(index, Put("app", "k" + std::to_string(index),
                                 testing::NoiseBytes(512 << 10, index)))});
    status = results.status();
  }
  CHECK(index > 2);  // Grew past the initial 1 MiB.
  REQUIRE(absl::IsResourceExhausted(status));
  CHECK_THAT(std::string(status.message()), Catch::Contains("max_map_bytes"));
  CHECK(sm->AppliedIndex() == index - 1);  // The failed batch applied nothing.
  CHECK(sm->Get("app", "k1").ok());
}

}  // namespace
}  // namespace confman::kv

namespace confman::kv {
namespace {

TEMPLATE_TEST_CASE("two restores in flight do not disturb each other",
                   "[state_machine]", MemoryMachine, LmdbMachine) {
  MemoryMachine donor_factory;
  auto donor = donor_factory.Open();
  MustApply(*donor, {CommandEntry(1, Put("app", "a", "first"))});
  auto first = donor->OpenSnapshot().value();
  MustApply(*donor, {CommandEntry(2, Put("app", "a", "second"))});
  auto second = donor->OpenSnapshot().value();

  TestType factory;
  auto sm = factory.Open();
  auto first_sink = sm->BeginRestore(first->meta()).value();
  auto second_sink = sm->BeginRestore(second->meta()).value();
  REQUIRE(testing::Transfer(*second, *second_sink).ok());
  CHECK(sm->Get("app", "a").value().value == "second");
  REQUIRE(testing::Transfer(*first, *first_sink).ok());
  CHECK(sm->AppliedIndex() == 1);
  CHECK(sm->Get("app", "a").value().value == "first");
}

}  // namespace
}  // namespace confman::kv
