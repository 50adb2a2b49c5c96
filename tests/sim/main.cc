// confman_sim: runs the deterministic Raft simulator over a range of seeds.
//
//   confman_sim --seeds N --steps M [--seed S] [--members 3|5]
//               [--fault NAME[,NAME...]] [--jobs J] [--liveness-ticks T]
//               [--lose-apply-reports]
//               [--trace]
//
// Runs seeds S .. S+N-1 (S defaults to 1), each for M steps, and prints every
// violation with the command that replays it, then exactly
// "seeds: N, steps: M, violations: V". Exits 1 when V > 0, 2 on bad usage.
#include <charconv>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "absl/strings/str_join.h"
#include "simulator.h"

namespace {

using confman::sim::SimOptions;

struct Args {
  uint64_t first_seed = 1;
  uint64_t seeds = 1;
  std::optional<uint32_t> members;
  uint32_t jobs = 0;
  bool trace = false;
  SimOptions base;
};

constexpr const char* kUsage =
    "usage: confman_sim --seeds N --steps M [--seed S] [--members 3|5]\n"
    "                   [--fault NAME[,NAME...]] [--jobs J] [--liveness-ticks "
    "T]\n"
    "                   [--lose-apply-reports]\n"
    "                   [--trace]\n";

bool ParseNumber(std::string_view text, uint64_t& out) {
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, out);
  return ec == std::errc() && ptr == end;
}

// Returns an error message, or an empty string when the arguments parse.
std::string Parse(int argc, char** argv, Args& args) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (flag == "--trace") {
      args.trace = true;
      continue;
    }
    if (flag == "--lose-apply-reports") {
      args.base.lose_apply_reports = true;
      continue;
    }
    if (i + 1 >= argc) return std::string(flag) + " needs a value";
    const std::string_view value = argv[++i];
    uint64_t number = 0;
    if (flag == "--fault") {
      std::optional<uint32_t> faults = confman::sim::TestingFaultByName(value);
      if (!faults) {
        return "unknown --fault '" + std::string(value) + "'; known faults: " +
               absl::StrJoin(confman::sim::AllTestingFaultNames(), ", ");
      }
      args.base.testing_faults = *faults;
      continue;
    }
    if (!ParseNumber(value, number)) {
      return std::string(flag) + " needs a non-negative integer, got '" +
             std::string(value) + "'";
    }
    if (flag == "--seeds") {
      args.seeds = number;
    } else if (flag == "--steps") {
      args.base.steps = number;
    } else if (flag == "--seed") {
      args.first_seed = number;
    } else if (flag == "--members") {
      args.members = static_cast<uint32_t>(number);
      args.base.members = static_cast<uint32_t>(number);
    } else if (flag == "--jobs") {
      args.jobs = static_cast<uint32_t>(number);
    } else if (flag == "--liveness-ticks") {
      args.base.liveness_ticks = static_cast<uint32_t>(number);
    } else {
      return "unknown flag " + std::string(flag);
    }
  }
  if (args.seeds == 0) return "--seeds must be at least 1";
  absl::Status valid = args.base.Validate();
  if (!valid.ok()) return std::string(valid.message());
  return "";
}

int RunTraced(const Args& args) {
  SimOptions options = args.base;
  options.seed = args.first_seed;
  options.members = args.members ? *args.members
                                 : confman::sim::MembersForSeed(options.seed);
  options.trace = &std::cerr;
  confman::sim::RunReport report = confman::sim::RunSeed(options);
  if (report.violation) {
    std::cout << "violation: seed " << options.seed << " at step "
              << report.violation_step << ": " << *report.violation << "\n"
              << "  reproduce: " << confman::sim::ReproduceCommand(options) << "\n";
  }
  const int violations = report.violation ? 1 : 0;
  std::cout << "seeds: 1, steps: " << options.steps
            << ", violations: " << violations << "\n";
  return violations == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  const std::string error = Parse(argc, argv, args);
  if (!error.empty()) {
    std::cerr << "confman_sim: " << error << "\n" << kUsage;
    return 2;
  }
  if (args.trace) {
    if (args.seeds != 1) {
      std::cerr << "confman_sim: --trace replays one seed; drop --seeds\n";
      return 2;
    }
    return RunTraced(args);
  }
  const uint32_t jobs = args.jobs != 0
                            ? args.jobs
                            : std::max(1u, std::thread::hardware_concurrency());
  const auto reports = confman::sim::RunSeeds(args.first_seed, args.seeds,
                                              args.base, args.members, jobs);
  uint64_t violations = 0;
  uint64_t slowest_seed = 0;
  confman::sim::RunStats total;
  for (const confman::sim::RunReport& report : reports) {
    if (report.stats.liveness_ticks > total.liveness_ticks) {
      slowest_seed = report.options.seed;
    }
    total += report.stats;
    if (!report.violation) continue;
    ++violations;
    std::cout << "violation: seed " << report.options.seed << " at step "
              << report.violation_step << ": " << *report.violation << "\n"
              << "  reproduce: " << confman::sim::ReproduceCommand(report.options)
              << "\n";
  }
  std::cout << "totals: leaders " << total.leaders << ", applied entries "
            << total.applied << ", proposals accepted " << total.proposals
            << ", reads checked " << total.reads_checked << ", crashes "
            << total.crashes << ", snapshots installed "
            << total.snapshots_installed << ", membership entries applied "
            << total.membership_applied << ", transfers " << total.transfers
            << ", slowest liveness " << total.liveness_ticks << " ticks (seed "
            << slowest_seed << ")\n";
  std::cout << "apply window: " << total.windowed_seeds
            << " seeds with max_unapplied_bytes set, " << total.apply_reports
            << " ReportApplied calls, at most " << total.max_unreported_bytes
            << " bytes handed out and unreported\n";
  std::cout << "seeds: " << args.seeds << ", steps: " << args.base.steps
            << ", violations: " << violations << "\n";
  return violations == 0 ? 0 : 1;
}
