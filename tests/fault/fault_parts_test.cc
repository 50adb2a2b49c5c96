// The fault harness' own parts: the values it writes must be recognised
// byte for byte when read back, and its log store must fail and slow down
// when told to.
#include <catch2/catch.hpp>
#include <chrono>
#include <set>
#include <string>

#include "fault_store.h"
#include "fault_values.h"
#include "test_dir.h"

namespace confman::fault {
namespace {

using Clock = std::chrono::steady_clock;

TEST_CASE("a value read back intact yields its tag, of every size and kind") {
  for (uint64_t seq : {1u, 2u, 3u, 4u}) {
    for (size_t bytes : {size_t{1}, size_t{10}, size_t{1000}, size_t{70000},
                         size_t{1} << 20}) {
      const std::string tag = ValueTag(3, seq, bytes);
      const std::string value = MakeValue(tag);
      CHECK(value.size() == std::max(bytes, tag.size() + 1));
      CHECK(value.compare(0, tag.size(), tag) == 0);
      CHECK(TagOfStoredValue(value) == tag);
    }
  }
}

TEST_CASE("even values compress, odd values do not repeat") {
  const std::string even = MakeValue(ValueTag(1, 2, 4096));
  const std::string odd = MakeValue(ValueTag(1, 3, 4096));
  CHECK(even.find("-filler;", 100) != std::string::npos);
  CHECK(odd.find(odd.substr(100, 16), 200) == std::string::npos);
}

TEST_CASE("tags of different writes differ") {
  std::set<std::string> tags;
  for (int client = 0; client < 12; ++client) {
    for (uint64_t seq = 1; seq <= 100; ++seq)
      tags.insert(ValueTag(client, seq, 10));
  }
  CHECK(tags.size() == 1200);
}

TEST_CASE("a damaged, truncated or foreign value is reported corrupt") {
  const std::string tag = ValueTag(2, 7, 5000);
  std::string damaged = MakeValue(tag);
  damaged[4000] ^= 1;
  CHECK(TagOfStoredValue(damaged).rfind("corrupt:", 0) == 0);
  const std::string truncated = MakeValue(tag).substr(0, 4999);
  CHECK(TagOfStoredValue(truncated).rfind("corrupt:", 0) == 0);
  CHECK(TagOfStoredValue("hello").rfind("corrupt:", 0) == 0);
  CHECK(TagOfStoredValue("x1.2.3|abc").rfind("corrupt:", 0) == 0);
  CHECK(TagOfStoredValue("").rfind("corrupt:", 0) == 0);
}

LogWrite OneEntry(raft::Index index) {
  return LogWrite{
      .entries = {raft::Entry{.term = 1, .index = index, .data = "x"}}};
}

TEST_CASE(
    "the harness log store fails the writes it is told to, then recovers") {
  confman::testing::TempDir dir;
  auto store = HarnessLogStore::Open(dir.path() + "/log", 0);
  REQUIRE(store.ok());
  REQUIRE((*store)->WriteSync(OneEntry(1)).ok());
  (*store)->FailNextWrites(2, absl::InternalError("injected"));
  CHECK(absl::IsInternal((*store)->WriteSync(OneEntry(2))));
  CHECK(absl::IsInternal((*store)->CompactPrefix(1)));
  CHECK((*store)->LastIndex() == 1);
  CHECK((*store)->WriteSync(OneEntry(2)).ok());
  CHECK((*store)->LastIndex() == 2);
}

TEST_CASE("the harness log store reports writes durable late while slowed") {
  confman::testing::TempDir dir;
  auto store = HarnessLogStore::Open(dir.path() + "/log", 0);
  REQUIRE(store.ok());
  (*store)->SetWriteDelay(std::chrono::milliseconds(80));
  auto start = Clock::now();
  REQUIRE((*store)->WriteSync(OneEntry(1)).ok());
  CHECK(Clock::now() - start >= std::chrono::milliseconds(80));
  (*store)->SetWriteDelay(std::chrono::milliseconds(0));
  REQUIRE((*store)->WriteSync(OneEntry(2)).ok());
  CHECK((*store)->LastIndex() == 2);
}

}  // namespace
}  // namespace confman::fault
