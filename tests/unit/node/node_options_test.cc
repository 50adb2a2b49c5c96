#include <catch2/catch.hpp>

#include "confman/node.h"
#include "confman/node_options.h"

namespace confman {
namespace {

NodeOptions Valid() {
  return NodeOptions{.id = 1,
                     .cluster_id = "c",
                     .shared_secret = "0123456789abcdef",
                     .listen_address = "127.0.0.1:0",
                     .initial_members = {{1, "127.0.0.1:0"}}};
}

TEST_CASE("default options with identity are valid") {
  CHECK(Valid().Validate().ok());
}

TEST_CASE("the size budget chain is enforced and named") {
  NodeOptions o = Valid();
  o.max_value_bytes = o.max_append_bytes;  // No room for the command.
  absl::Status s = o.Validate();
  CHECK(absl::IsInvalidArgument(s));
  CHECK(std::string(s.message()).find("max_value_bytes") != std::string::npos);

  o = Valid();
  o.max_append_bytes = o.max_frame_bytes;
  s = o.Validate();
  CHECK(absl::IsInvalidArgument(s));
  CHECK(std::string(s.message()).find("max_append_bytes") != std::string::npos);

  o = Valid();
  o.snapshot_chunk_bytes = o.max_frame_bytes;
  s = o.Validate();
  CHECK(std::string(s.message()).find("snapshot_chunk_bytes") != std::string::npos);
}

TEST_CASE("identity and timing mistakes are refused") {
  NodeOptions o = Valid();
  o.id = 0;
  CHECK(absl::IsInvalidArgument(o.Validate()));
  o = Valid();
  o.shared_secret = "short";
  CHECK(absl::IsInvalidArgument(o.Validate()));
  o = Valid();
  o.initial_members = {{2, "127.0.0.1:1"}};
  CHECK(absl::IsInvalidArgument(o.Validate()));
  o = Valid();
  o.election_timeout = o.heartbeat_interval;
  CHECK(absl::IsInvalidArgument(o.Validate()));
  o = Valid();
  o.initial_members.clear();
  CHECK(absl::IsInvalidArgument(o.Validate()));
  o.join = true;
  CHECK(o.Validate().ok());
}

TEST_CASE("Open refuses bad options without starting anything") {
  NodeOptions o = Valid();
  o.cluster_id.clear();
  auto node = Node::Open(o);
  REQUIRE_FALSE(node.ok());
  CHECK(absl::IsInvalidArgument(node.status()));
}

}  // namespace
}  // namespace confman
