// Proves the simulator's checks are not vacuous: each deliberately broken
// core behaviour is caught within a bounded number of seeds, a correct core
// passes, and a run replays identically from its seed.
#include <string>

#include <catch2/catch.hpp>

#include "confman/raft/core.h"
#include "simulator.h"

namespace confman::sim {
namespace {

constexpr uint32_t kJobs = 2;
// Each broken behaviour must be caught within this many seeds (the current
// core is caught within the first 40 for every fault).
constexpr uint64_t kMaxSeeds = 1000;

// Runs seeds 1.. in batches until one reports a violation; returns it, or
// nullopt if none of `max_seeds` seeds did.
std::optional<RunReport> FirstViolation(uint32_t faults, uint64_t max_seeds,
                                        uint64_t steps) {
  SimOptions base;
  base.steps = steps;
  base.testing_faults = faults;
  constexpr uint64_t kBatch = 8;
  for (uint64_t first = 1; first <= max_seeds; first += kBatch) {
    for (const RunReport& report :
         RunSeeds(first, kBatch, base, std::nullopt, kJobs)) {
      if (report.violation) return report;
    }
  }
  return std::nullopt;
}

void RequireCaught(raft::TestingFault fault, uint64_t max_seeds, uint64_t steps) {
  const uint32_t bits = static_cast<uint32_t>(fault);
  std::optional<RunReport> report = FirstViolation(bits, max_seeds, steps);
  INFO("fault " << TestingFaultNames(bits));
  REQUIRE(report.has_value());
  INFO("seed " << report->options.seed << ": " << *report->violation);
  // The reported command must replay the same violation.
  SimOptions replay = report->options;
  RunReport again = RunSeed(replay);
  REQUIRE(again.violation == report->violation);
  REQUIRE(again.violation_step == report->violation_step);
}

TEST_CASE("a correct core passes 50 seeds of faults", "[sim]") {
  SimOptions base;
  base.steps = 3000;
  for (const RunReport& report : RunSeeds(1, 50, base, std::nullopt, kJobs)) {
    INFO("seed " << report.options.seed << ": "
                 << report.violation.value_or("") << "\n  "
                 << ReproduceCommand(report.options));
    CHECK_FALSE(report.violation.has_value());
    // Not vacuous: the run elected leaders and applied entries.
    CHECK(report.stats.leaders > 0);
    CHECK(report.stats.applied > 0);
  }
}

TEST_CASE("a run is a pure function of its options", "[sim]") {
  SimOptions options;
  options.seed = 7;
  options.steps = 3000;
  options.members = 5;
  const RunReport a = RunSeed(options);
  const RunReport b = RunSeed(options);
  CHECK(a.violation == b.violation);
  CHECK(a.stats.leaders == b.stats.leaders);
  CHECK(a.stats.applied == b.stats.applied);
  CHECK(a.stats.reads_checked == b.stats.reads_checked);
  CHECK(a.stats.snapshots_installed == b.stats.snapshots_installed);
  CHECK(a.stats.liveness_ticks == b.stats.liveness_ticks);
}

TEST_CASE("counting old-term entries towards commit is caught", "[sim]") {
  RequireCaught(raft::TestingFault::kCommitOldTermEntries, kMaxSeeds, 5000);
}

TEST_CASE("granting two votes in one term is caught", "[sim]") {
  RequireCaught(raft::TestingFault::kGrantTwoVotesPerTerm, kMaxSeeds, 5000);
}

TEST_CASE("skipping the log consistency check is caught", "[sim]") {
  RequireCaught(raft::TestingFault::kSkipConsistencyCheck, kMaxSeeds, 5000);
}

TEST_CASE("serving ReadIndex before the term's no-op commits is caught", "[sim]") {
  RequireCaught(raft::TestingFault::kReadBeforeNoopCommit, kMaxSeeds, 5000);
}

TEST_CASE("lease reads without a quorum are caught", "[sim]") {
  RequireCaught(raft::TestingFault::kLeaseWithoutQuorum, kMaxSeeds, 5000);
}

}  // namespace
}  // namespace confman::sim
