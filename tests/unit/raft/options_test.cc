// CoreOptions::Validate and Core::Create's handling of bad options.
#include <functional>
#include <string>

#include <catch2/catch.hpp>

#include "confman/raft/core.h"
#include "confman/raft/memory_log.h"

namespace confman::raft {
namespace {

CoreOptions ValidOptions() {
  CoreOptions options;
  options.id = 1;
  return options;
}

struct InvalidCase {
  const char* field;  // The option the error message must name.
  std::function<void(CoreOptions&)> spoil;
};

TEST_CASE("default options with an id are valid", "[options]") {
  CHECK(ValidOptions().Validate().ok());
}

TEST_CASE("invalid options are refused with a message naming the option",
          "[options]") {
  const InvalidCase invalid = GENERATE(values<InvalidCase>({
      {"id", [](CoreOptions& o) { o.id = kNoMember; }},
      {"election_timeout_ticks",
       [](CoreOptions& o) {
         o.election_timeout_ticks = o.heartbeat_interval_ticks;
       }},
      {"heartbeat_interval_ticks",
       [](CoreOptions& o) { o.heartbeat_interval_ticks = 0; }},
      {"max_uncommitted_bytes",
       [](CoreOptions& o) {
         o.max_uncommitted_bytes = o.max_append_bytes - 1;
       }},
      {"lease_clock_drift_ticks",
       [](CoreOptions& o) {
         o.lease_clock_drift_ticks = o.election_timeout_ticks;
       }},
      {"max_unapplied_bytes",
       [](CoreOptions& o) { o.max_unapplied_bytes = o.max_apply_bytes - 1; }},
  }));
  CoreOptions options = ValidOptions();
  invalid.spoil(options);
  INFO("spoiled option: " << invalid.field);

  const absl::Status status = options.Validate();
  CHECK(status.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(status.message()),
             Catch::Matchers::Contains(invalid.field));

  MemoryLog log;
  BootState boot;
  boot.membership.voters = {1};
  auto core = Core::Create(options, boot, &log);
  CHECK(core.status().code() == absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace confman::raft
