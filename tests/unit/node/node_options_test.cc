#include "confman/node_options.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "confman/node.h"
#include "confman/storage/memory.h"
#include "confman/transport/tcp.h"
#include "confman/wire_limits.h"
#include "eventually.h"

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
  o.heartbeat_interval = o.election_timeout / 2;
  CHECK(absl::IsInvalidArgument(o.Validate()));
  o = Valid();
  o.request_timeout = o.election_timeout;
  CHECK(absl::IsInvalidArgument(o.Validate()));
  o = Valid();
  o.session_max_results = 1;
  CHECK(absl::IsInvalidArgument(o.Validate()));
  o = Valid();
  o.session_ttl = std::chrono::seconds(0);
  CHECK(absl::IsInvalidArgument(o.Validate()));
  o = Valid();
  o.session_max_clients = 0;
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

TEST_CASE("Open reports a log store factory's failure or missing store") {
  NodeOptions o = Valid();
  o.log_store_factory =
      [](const std::string&) -> absl::StatusOr<std::unique_ptr<LogStore>> {
    return absl::PermissionDeniedError("log directory is read-only");
  };
  auto refused = Node::Open(o);
  CHECK(absl::IsPermissionDenied(refused.status()));

  o.log_store_factory =
      [](const std::string&) -> absl::StatusOr<std::unique_ptr<LogStore>> {
    return std::unique_ptr<LogStore>();
  };
  auto empty = Node::Open(o);
  CHECK(absl::IsInvalidArgument(empty.status()));
  CHECK(std::string(empty.status().message()).find("log_store_factory") !=
        std::string::npos);
}

TEST_CASE(
    "a log store factory gets the log directory and its store holds the log") {
  const std::filesystem::path data_dir =
      std::filesystem::temp_directory_path() /
      ("confman_log_factory_" + std::to_string(::getpid()));
  std::string seen;
  MemoryLogStore* store = nullptr;  // Owned by the Node; used while it is open.
  NodeOptions o = Valid();
  o.data_dir = data_dir.string();
  o.heartbeat_interval = std::chrono::milliseconds(20);
  o.election_timeout = std::chrono::milliseconds(100);
  o.log_store_factory =
      [&](const std::string& dir) -> absl::StatusOr<std::unique_ptr<LogStore>> {
    seen = dir;
    auto owned = std::make_unique<MemoryLogStore>();
    store = owned.get();
    return std::unique_ptr<LogStore>(std::move(owned));
  };
  auto node = Node::Open(o);
  REQUIRE(node.ok());
  CHECK(seen == (data_dir / "log").string());
  REQUIRE(store != nullptr);
  // A single voter elects itself and appends its first entry there.
  CHECK(test::Eventually([&] { return store->LastIndex() >= 1; },
                         std::chrono::milliseconds(3000)));
  (*node)->Close();
  std::filesystem::remove_all(data_dir);
}

// NodeOptions::Validate checks frame sizes with wire_limits; the default
// transport must accept exactly what passes.
TEST_CASE("the wire limits options are checked against are the TCP transport's") {
  for (uint64_t payload : {uint64_t{0}, uint64_t{1} << 20, uint64_t{64} << 20}) {
    for (uint64_t entries : {uint64_t{0}, uint64_t{1}, uint64_t{1024}}) {
      CHECK(wire_limits::FrameBytesFor(payload, entries) ==
            TcpTransportOptions::FrameBytesFor(payload, entries));
    }
  }
}

}  // namespace
}  // namespace confman
