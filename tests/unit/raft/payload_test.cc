// raft::Payload: copies share one buffer, comparisons look at the bytes,
// and Release() moves the bytes out only when no other copy holds them.
#include "confman/raft/payload.h"

#include <catch2/catch.hpp>
#include <string>

#include "confman/raft/types.h"

namespace confman::raft {
namespace {

TEST_CASE("a payload's copies share its bytes") {
  const std::string bytes(4096, 'v');
  const Payload original(bytes);
  const Payload copy = original;
  CHECK(copy.data() == original.data());
  CHECK(copy == original);
  CHECK(copy == bytes);
  CHECK(copy.size() == 4096);

  Entry entry{.term = 1, .index = 1, .data = original};
  const Entry entry_copy = entry;
  CHECK(entry_copy.data.data() == original.data());
  CHECK(entry_copy == entry);
}

TEST_CASE("a payload compares by bytes, and empty ones are equal") {
  CHECK(Payload("abc") == Payload(std::string("abc")));
  CHECK_FALSE(Payload("abc") == Payload("abd"));
  CHECK(Payload() == Payload(""));
  CHECK(Payload().empty());
  CHECK(Payload().view().empty());
  CHECK(Payload(std::string_view("x\0y", 3)).size() == 3);
}

TEST_CASE("moving a string into a payload does not copy it") {
  std::string bytes(1 << 16, 'm');
  const char* where = bytes.data();
  const Payload payload(std::move(bytes));
  CHECK(payload.data() == where);
}

TEST_CASE("Release moves the bytes of a sole copy and copies shared ones") {
  Payload sole(std::string(1 << 16, 's'));
  const char* where = sole.data();
  const std::string moved = std::move(sole).Release();
  CHECK(moved.data() == where);
  CHECK(sole.empty());  // Release() leaves the moved-from payload empty.

  Payload shared(std::string(1 << 16, 'h'));
  const Payload other = shared;
  const std::string copied = std::move(shared).Release();
  CHECK(copied.data() != other.data());
  CHECK(copied == other.view());
  CHECK(other.size() == (1u << 16));
}

TEST_CASE("a payload can share part of a buffer someone else owns") {
  auto buffer = std::make_shared<std::string>("headerVALUEtrailer");
  const std::weak_ptr<std::string> watch = buffer;
  {
    Payload part(buffer, std::string_view(*buffer).substr(6, 5));
    CHECK(part == "VALUE");
    CHECK(part.data() == buffer->data() + 6);
    buffer.reset();
    // The payload alone keeps the whole buffer alive.
    REQUIRE_FALSE(watch.expired());
    CHECK(part == "VALUE");
    const Payload copy = part;
    // A borrowed buffer is never moved out of, even by its sole holder.
    CHECK(std::move(part).Release() == "VALUE");
    CHECK(part.empty());
    CHECK(copy == "VALUE");
    CHECK_FALSE(watch.expired());
  }
  CHECK(watch.expired());
  CHECK(Payload(std::make_shared<int>(1), std::string_view()).empty());
}

TEST_CASE("clear forgets the bytes in one copy only") {
  Payload a("kept");
  const Payload b = a;
  a.clear();
  CHECK(a.empty());
  CHECK(b == "kept");
}

}  // namespace
}  // namespace confman::raft
