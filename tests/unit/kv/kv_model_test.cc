// The config model's operations, on both backends: revisions, CAS, delete,
// listing with pagination, the change history/audit trail and its bounds,
// and values compressed once at the proposer.
#include "kv_test_util.h"

namespace confman::kv {
namespace {

using testing::CommandEntry;
using testing::Delete;
using testing::LmdbMachine;
using testing::MemoryMachine;
using testing::MustApply;
using testing::NoiseBytes;
using testing::Put;

// Applies one command at the next index.
template <typename Machine>
ApplyResult Run(Machine& sm, const Command& command, std::string actor = "tester") {
  auto results = MustApply(sm, {CommandEntry(sm.AppliedIndex() + 1, command,
                                             std::move(actor))});
  REQUIRE(results.size() == 1);
  return results[0];
}

TEMPLATE_TEST_CASE("puts get revisions and versions", "[kv]", MemoryMachine,
                   LmdbMachine) {
  TestType factory;
  auto sm = factory.Open();
  CHECK(Run(*sm, Put("app", "a", "one")).revision == 1);
  CHECK(Run(*sm, Put("app", "b", "two")).revision == 2);
  CHECK(Run(*sm, Put("app", "a", "uno")).revision == 3);
  const KeyValue a = sm->Get("app", "a").value();
  CHECK(a.value == "uno");
  CHECK(a.content_type == "text/plain");
  CHECK(a.create_revision == 1);
  CHECK(a.mod_revision == 3);
  CHECK(a.version == 2);
  CHECK(sm->Revision() == 3);
  CHECK(absl::IsNotFound(sm->Get("app", "missing").status()));
  CHECK(absl::IsNotFound(sm->Get("other", "a").status()));
}

TEMPLATE_TEST_CASE("compare-and-set conflicts are results", "[kv]",
                   MemoryMachine, LmdbMachine) {
  TestType factory;
  auto sm = factory.Open();
  CHECK(Run(*sm, Put("app", "k", "v1", /*expected=*/0)).outcome.ok());
  const ApplyResult conflict = Run(*sm, Put("app", "k", "v2", /*expected=*/0));
  CHECK(absl::IsFailedPrecondition(conflict.outcome));
  CHECK(conflict.revision == 0);
  CHECK_THAT(std::string(conflict.outcome.message()),
             Catch::Contains("expected revision 0, found 1"));
  CHECK(Run(*sm, Put("app", "k", "v2", /*expected=*/1)).revision == 2);
  CHECK(absl::IsFailedPrecondition(Run(*sm, Put("app", "k", "v3", 1)).outcome));
  CHECK(sm->Get("app", "k").value().value == "v2");
  CHECK(sm->Revision() == 2);
  CHECK(sm->AppliedIndex() == 4);  // Conflicts still advance the index.
}

TEMPLATE_TEST_CASE("deletes", "[kv]", MemoryMachine, LmdbMachine) {
  TestType factory;
  auto sm = factory.Open();
  Run(*sm, Put("app", "k", "v"));
  CHECK(absl::IsFailedPrecondition(Run(*sm, Delete("app", "k", 7)).outcome));
  CHECK(Run(*sm, Delete("app", "k", 1)).revision == 2);
  CHECK(absl::IsNotFound(sm->Get("app", "k").status()));
  CHECK(absl::IsNotFound(Run(*sm, Delete("app", "k")).outcome));
  CHECK(sm->Revision() == 2);
  // Re-created keys start a new life.
  CHECK(Run(*sm, Put("app", "k", "again")).revision == 3);
  CHECK(sm->Get("app", "k").value().create_revision == 3);
  CHECK(sm->Get("app", "k").value().version == 1);
}

TEMPLATE_TEST_CASE("listing pages through a namespace or prefix", "[kv]",
                   MemoryMachine, LmdbMachine) {
  TestType factory;
  auto sm = factory.Open();
  for (int i = 0; i < 25; ++i) {
    char key[16];
    std::snprintf(key, sizeof key, "svc/%02d", i);
    Run(*sm, Put("app", key, "value" + std::to_string(i)));
  }
  Run(*sm, Put("app", "zzz", "last"));
  Run(*sm, Put("ap", "svc/00", "other namespace"));
  Run(*sm, Put("app2", "svc/00", "other namespace"));

  std::vector<std::string> seen;
  ListRequest request{.ns = "app", .prefix = "svc/", .limit = 10};
  for (int page_count = 0; page_count < 10; ++page_count) {
    const ListPage page = sm->List(request).value();
    CHECK(page.revision == 28);
    for (const KeyValue& kv : page.items) seen.push_back(kv.key);
    if (!page.more) break;
    CHECK(page.items.size() == 10);
    request.start_after = page.next_start_after;
  }
  REQUIRE(seen.size() == 25);
  CHECK(seen.front() == "svc/00");
  CHECK(seen.back() == "svc/24");
  CHECK(std::is_sorted(seen.begin(), seen.end()));

  const ListPage all = sm->List({.ns = "app", .limit = 100}).value();
  CHECK(all.items.size() == 26);
  CHECK_FALSE(all.more);
  CHECK(all.items.front().value == "value0");
  const ListPage keys = sm->List({.ns = "app", .limit = 100, .keys_only = true}).value();
  CHECK(keys.items.front().value.empty());
  CHECK(keys.items.front().mod_revision == 1);
  const ListPage small = sm->List({.ns = "app", .limit = 100, .max_bytes = 1}).value();
  CHECK(small.items.size() == 1);
  CHECK(small.more);
  CHECK(absl::IsInvalidArgument(sm->List({.ns = "", .limit = 1}).status()));
  CHECK(absl::IsInvalidArgument(sm->List({.ns = "app", .limit = 0}).status()));
}

TEMPLATE_TEST_CASE("every change is recorded with actor and time", "[kv]",
                   MemoryMachine, LmdbMachine) {
  TestType factory;
  auto sm = factory.Open();
  Run(*sm, Put("app", "k", "v1"), "alice");
  Run(*sm, Put("app", "k", "v2", 5), "mallory");  // Conflict: not a change.
  Run(*sm, Put("app", "k", "v2"), "bob");
  Run(*sm, Delete("app", "k"), "carol");
  const ChangePage page = sm->Changes(0, 100).value();
  CHECK(page.revision == 3);
  REQUIRE(page.changes.size() == 3);
  const Change& first = page.changes[0];
  CHECK(first.revision == 1);
  CHECK(first.op == ChangeOp::kPut);
  CHECK(first.ns == "app");
  CHECK(first.key == "k");
  CHECK(first.actor == "alice");
  CHECK(first.time_unix_micros == 1700000000000000);
  CHECK(first.old_revision == 0);
  CHECK(first.new_revision == 1);
  CHECK(page.changes[1].actor == "bob");
  CHECK(page.changes[1].old_revision == 1);
  CHECK(page.changes[2].op == ChangeOp::kDelete);
  CHECK(page.changes[2].old_revision == 2);
  CHECK(page.changes[2].new_revision == 0);
  CHECK(sm->Changes(2, 100).value().changes.size() == 1);
  CHECK(sm->Changes(0, 2).value().changes.size() == 2);
  CHECK(sm->Changes(3, 100).value().changes.empty());
}

TEMPLATE_TEST_CASE("history retention and compaction bound the trail", "[kv]",
                   MemoryMachine, LmdbMachine) {
  TestType factory;
  factory.options.history_retention = 5;
  auto sm = factory.Open();
  for (int i = 0; i < 12; ++i) Run(*sm, Put("app", "k", std::to_string(i)));
  ChangePage page = sm->Changes(7, 100).value();
  CHECK(page.compacted_through == 7);
  CHECK(page.changes.size() == 5);
  CHECK(absl::IsOutOfRange(sm->Changes(3, 100).status()));

  Command compact;
  compact.kind = Command::Kind::kCompactHistory;
  compact.compact_through = 10;
  CHECK(Run(*sm, compact).outcome.ok());
  CHECK(absl::IsOutOfRange(sm->Changes(9, 100).status()));
  page = sm->Changes(10, 100).value();
  REQUIRE(page.changes.size() == 2);
  CHECK(page.changes[0].revision == 11);
}

TEMPLATE_TEST_CASE("large values are stored compressed and read back whole",
                   "[kv]", MemoryMachine, LmdbMachine) {
  TestType factory;
  auto sm = factory.Open();
  std::string json;
  while (json.size() < 100000) json += R"({"feature":"on","limit":1234},)";
  Run(*sm, Put("app", "big", json));
  const KeyValue kv = sm->Get("app", "big").value();
  CHECK(kv.value == json);
  CHECK(kv.stored_bytes < json.size() / 10);
  const std::string noise = NoiseBytes(100000, 9);
  Run(*sm, Put("app", "noise", noise));
  CHECK(sm->Get("app", "noise").value().stored_bytes == noise.size());
  CHECK(sm->Get("app", "noise").value().value == noise);
}

TEST_CASE("a large value is judged by its start before a full compression",
          "[kv][command]") {
  // Random first 64 KiB: stored raw without compressing the rest.
  std::string mixed = NoiseBytes(64 * 1024, 3) + std::string(512 * 1024, 'z');
  CommandView view;
  std::string bytes = EncodeCommand(Put("a", "k", mixed), "ops", 1).value();
  view = DecodeCommand(bytes).value();
  CHECK(view.encoding == ValueEncoding::kRaw);
  CHECK(view.stored_value == mixed);
  // A compressible start: the whole value is compressed.
  std::string json;
  while (json.size() < 300 * 1024) json += R"({"feature":"on","limit":1234},)";
  bytes = EncodeCommand(Put("a", "k", json), "ops", 1).value();
  view = DecodeCommand(bytes).value();
  CHECK(view.encoding == ValueEncoding::kZstd);
  CHECK(view.stored_value.size() < json.size() / 10);
  CHECK(DecodeValue(view.stored_value, view.encoding, view.raw_size).value() ==
        json);
}

TEST_CASE("the encoder validates and compresses once", "[kv][command]") {
  CHECK(absl::IsInvalidArgument(EncodeCommand(Put("", "k", "v"), "a", 1).status()));
  CHECK(absl::IsInvalidArgument(EncodeCommand(Put("a", "", "v"), "a", 1).status()));
  CHECK(absl::IsInvalidArgument(
      EncodeCommand(Put(std::string("a\0b", 3), "k", "v"), "a", 1).status()));
  CHECK(absl::IsInvalidArgument(
      EncodeCommand(Put(std::string(65, 'n'), "k", "v"), "a", 1).status()));
  CHECK(absl::IsInvalidArgument(
      EncodeCommand(Put("a", std::string(401, 'k'), "v"), "a", 1).status()));
  CHECK(absl::IsInvalidArgument(
      EncodeCommand(Put("a", "k", std::string(2000, 'v')), "a", 1,
                    {.max_value_bytes = 1000})
          .status()));

  const std::string small(4096, 'x');
  const std::string bytes = EncodeCommand(Put("a", "k", small), "ops", 42).value();
  const CommandView view = DecodeCommand(bytes).value();
  CHECK(view.encoding == ValueEncoding::kRaw);
  CHECK(view.stored_value == small);
  CHECK(view.actor == "ops");
  CHECK(view.time_unix_micros == 42);

  const std::string large(4097, 'x');
  const std::string packed = EncodeCommand(Put("a", "k", large), "ops", 42).value();
  CHECK(packed.size() < 1000);
  const CommandView packed_view = DecodeCommand(packed).value();
  CHECK(packed_view.encoding == ValueEncoding::kZstd);
  CHECK(packed_view.raw_size == 4097);
  CHECK(DecodeValue(packed_view.stored_value, packed_view.encoding,
                    packed_view.raw_size)
            .value() == large);
  CHECK(absl::IsDataLoss(
      DecodeValue("not zstd", ValueEncoding::kZstd, 10).status()));
}

TEST_CASE("the decoder rejects every truncation and most flips", "[kv][command]") {
  const std::string bytes =
      EncodeCommand(Put("app", "key", "value", 3), "ops", 42).value();
  for (size_t n = 0; n < bytes.size(); ++n) {
    std::string prefix = bytes.substr(0, n);
    prefix.reserve(64);
    CHECK_FALSE(DecodeCommand(prefix).ok());
  }
  for (size_t i = 0; i < bytes.size(); ++i) {
    std::string flipped = bytes;
    flipped[i] ^= 0x5A;
    (void)DecodeCommand(flipped);  // Must not crash; may decode.
  }
}

}  // namespace
}  // namespace confman::kv
