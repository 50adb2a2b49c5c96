// confman_fault: one seeded fault run over a LocalCluster, its history
// checked for linearizability.
//
//   confman_fault --seed S --seconds T [--network tcp|memory] [--hook NAME]
//                 [--expect-violation] [--clients N] [--keys N] [--verbose]
//                 [--history-out FILE]
//
// Exit status: 0 when the history checked linearizable and the harness found
// nothing wrong; 1 on a violation; 2 for bad arguments or a cluster that
// would not start; 3 when the checker gave up on a key (nothing proven).
// With --expect-violation (used with --hook) the meaning flips: 0 only if
// the checker found a violation, 1 if it did not. A crash kills the process
// with its signal after printing the seed and how to reproduce it.
//
// The last line of output is one JSON object summarising the run.
#include <execinfo.h>
#include <signal.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "confman/testing/node_faults.h"
#include "fault_harness.h"
#include "linearizability.h"

namespace confman::fault {
namespace {

constexpr size_t kViolationsShown = 20;
constexpr size_t kLogLinesShown = 150;

struct Args {
  FaultRunOptions run{};
  std::string network = "memory";
  std::string hook = "none";
  bool expect_violation = false;
  std::string history_out{};  // Where to write the history as text.
};

void Usage() {
  std::fprintf(
      stderr,
      "usage: confman_fault --seed S --seconds T [--network tcp|memory] "
      "[--hook NAME] [--expect-violation] [--clients N] [--keys N] "
      "[--verbose] [--history-out FILE]\n"
      "hooks: local-linearizable-reads, ack-before-commit, "
      "skip-applies\n");
}

std::optional<uint64_t> ParseUnsigned(const char* text) {
  char* end = nullptr;
  errno = 0;
  const unsigned long long value = std::strtoull(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || text[0] == '-')
    return std::nullopt;
  return value;
}

std::optional<Args> ParseArgs(int argc, char** argv) {
  Args args;
  bool have_seed = false;
  bool have_seconds = false;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
    auto number = [&]() -> std::optional<uint64_t> {
      if (value == nullptr) return std::nullopt;
      ++i;
      return ParseUnsigned(value);
    };
    if (flag == "--seed") {
      std::optional<uint64_t> n = number();
      if (!n) return std::nullopt;
      args.run.seed = *n;
      have_seed = true;
    } else if (flag == "--seconds") {
      std::optional<uint64_t> n = number();
      if (!n || *n == 0 || *n > 24 * 3600) return std::nullopt;
      args.run.duration = std::chrono::seconds(*n);
      have_seconds = true;
    } else if (flag == "--clients" || flag == "--keys") {
      std::optional<uint64_t> n = number();
      if (!n || *n == 0 || *n > 100) return std::nullopt;
      (flag == "--clients" ? args.run.clients : args.run.keys) =
          static_cast<int>(*n);
    } else if (flag == "--network") {
      if (value == nullptr) return std::nullopt;
      args.network = argv[++i];
      if (args.network != "tcp" && args.network != "memory")
        return std::nullopt;
      args.run.in_memory_network = args.network == "memory";
    } else if (flag == "--hook") {
      if (value == nullptr) return std::nullopt;
      args.hook = argv[++i];
      std::optional<testing::NodeTestingFault> fault =
          testing::NodeTestingFaultFromName(args.hook);
      if (!fault) return std::nullopt;
      args.run.testing_faults = testing::FaultBit(*fault);
      // One member skipping an entry is the bug; all of them skipping the
      // same one would be consistent.
      if (*fault == testing::NodeTestingFault::kSkipApplies) {
        args.run.faulty_members = {2};
      }
    } else if (flag == "--expect-violation") {
      args.expect_violation = true;
    } else if (flag == "--history-out") {
      if (value == nullptr) return std::nullopt;
      args.history_out = argv[++i];
    } else if (flag == "--verbose") {
      args.run.verbose = true;
    } else {
      return std::nullopt;
    }
  }
  if (!have_seed || !have_seconds) return std::nullopt;
  return args;
}

std::string ReproduceCommand(const Args& args) {
  std::string command =
      absl::StrCat("confman_fault --seed ", args.run.seed, " --seconds ",
                   args.run.duration.count(), " --network ", args.network);
  if (args.hook != "none") absl::StrAppend(&command, " --hook ", args.hook);
  if (args.expect_violation) absl::StrAppend(&command, " --expect-violation");
  if (args.run.clients != FaultRunOptions{}.clients) {
    absl::StrAppend(&command, " --clients ", args.run.clients);
  }
  if (args.run.keys != FaultRunOptions{}.keys) {
    absl::StrAppend(&command, " --keys ", args.run.keys);
  }
  return command;
}

// Written before the run so the handler only calls write(2).
char crash_banner[1024];

void OnFatalSignal(int signal) {
  const ssize_t ignored =
      ::write(STDERR_FILENO, crash_banner, std::strlen(crash_banner));
  (void)ignored;
  void* frames[64];
  const int depth = ::backtrace(frames, 64);
  ::backtrace_symbols_fd(frames, depth, STDERR_FILENO);
  ::signal(signal, SIG_DFL);
  ::raise(signal);
}

void InstallCrashReport(const Args& args) {
  std::snprintf(
      crash_banner, sizeof(crash_banner),
      "\nconfman_fault: FATAL SIGNAL during seed %llu (network %s, hook "
      "%s)\nreproduce: %s\nbacktrace (run under gdb for symbols):\n",
      static_cast<unsigned long long>(args.run.seed), args.network.c_str(),
      args.hook.c_str(), ReproduceCommand(args).c_str());
  for (int signal : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) {
    ::signal(signal, OnFatalSignal);
  }
}

std::string JsonString(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string JsonCounts(const std::map<std::string, uint64_t>& counts) {
  std::string out = "{";
  for (const auto& [name, count] : counts) {
    if (out.size() > 1) out += ",";
    absl::StrAppend(&out, JsonString(name), ":", count);
  }
  return out + "}";
}

// What each client was told for the operations a violation names ("#id").
void PrintStatusesNamedIn(const std::vector<std::string>& violations,
                          const FaultRunReport& report) {
  std::set<uint64_t> ids;
  for (const std::string& violation : violations) {
    for (size_t at = violation.find('#'); at != std::string::npos;
         at = violation.find('#', at + 1)) {
      size_t end = at + 1;
      while (end < violation.size() &&
             std::isdigit(static_cast<unsigned char>(violation[end]))) {
        ++end;
      }
      if (end > at + 1)
        ids.insert(std::stoull(violation.substr(at + 1, end - at - 1)));
    }
  }
  for (uint64_t id : ids) {
    auto status = report.statuses.find(id);
    if (status == report.statuses.end()) continue;
    std::printf("  #%llu was told: %s\n", static_cast<unsigned long long>(id),
                status->second.c_str());
  }
}

// One line per operation, then per watch event, for reading a failure.
void WriteHistory(const std::string& path, const FaultRunReport& report) {
  std::FILE* out = std::fopen(path.c_str(), "w");
  if (out == nullptr) {
    std::printf("confman_fault: cannot write %s\n", path.c_str());
    return;
  }
  for (const Operation& op : report.history.operations) {
    auto status = report.statuses.find(op.id);
    std::fprintf(out, "%s%s%s\n", DescribeOperation(op).c_str(),
                 status == report.statuses.end() ? "" : " | told: ",
                 status == report.statuses.end() ? "" : status->second.c_str());
  }
  for (const WatchStream& stream : report.history.watches) {
    std::fprintf(
        out, "watch %d member %llu prefix '%s' after %llu:", stream.watcher,
        static_cast<unsigned long long>(stream.member), stream.prefix.c_str(),
        static_cast<unsigned long long>(stream.after_revision));
    for (const WatchEvent& event : stream.events) {
      std::fprintf(out, " %s%s@%llu", event.is_delete ? "-" : "",
                   event.key.c_str(),
                   static_cast<unsigned long long>(event.revision));
    }
    std::fprintf(out, "\n");
  }
  std::fclose(out);
}

int Main(int argc, char** argv) {
  std::optional<Args> parsed = ParseArgs(argc, argv);
  if (!parsed) {
    Usage();
    return 2;
  }
  const Args& args = *parsed;
  InstallCrashReport(args);
  std::printf("confman_fault: %s\n", ReproduceCommand(args).c_str());
  std::fflush(stdout);

  absl::StatusOr<FaultRunReport> report = RunFaults(args.run);
  if (!report.ok()) {
    std::printf("confman_fault: the run could not start: %s\n",
                report.status().ToString().c_str());
    return 2;
  }

  if (!args.history_out.empty()) WriteHistory(args.history_out, *report);

  const auto check_start = std::chrono::steady_clock::now();
  const CheckResult check = CheckHistory(report->history);
  const auto check_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::steady_clock::now() - check_start)
                            .count();

  uint64_t ok = 0, failed = 0, unknown = 0;
  for (const Operation& op : report->history.operations) {
    ok += op.outcome == Outcome::kOk;
    failed += op.outcome == Outcome::kFailed;
    unknown += op.outcome == Outcome::kUnknown;
  }
  uint64_t watch_events = 0;
  for (const WatchStream& stream : report->history.watches) {
    watch_events += stream.events.size();
  }
  // Given-up keys are listed among the violations; count the real ones.
  uint64_t violations = 0;
  for (const std::string& v : check.violations)
    violations += v.rfind("gave up", 0) != 0;

  for (size_t i = 0; i < check.violations.size() && i < kViolationsShown; ++i) {
    std::printf("CHECKER: %s\n", check.violations[i].c_str());
  }
  if (check.violations.size() > kViolationsShown) {
    std::printf("CHECKER: ... and %zu more\n",
                check.violations.size() - kViolationsShown);
  }
  PrintStatusesNamedIn(check.violations, *report);
  for (const std::string& v : report->violations)
    std::printf("HARNESS: %s\n", v.c_str());

  const bool clean = check.ok && report->violations.empty();
  int exit_code = 0;
  std::string result = "pass";
  if (args.expect_violation) {
    exit_code = violations > 0 ? 0 : 1;
    result =
        violations > 0 ? "violation found as expected" : "no violation found";
  } else if (violations > 0 || !report->violations.empty()) {
    exit_code = 1;
    result = "violation";
  } else if (check.gave_up) {
    exit_code = 3;
    result = "checker gave up";
  }
  if (!clean && !args.expect_violation) {
    const size_t from = report->recent_log.size() > kLogLinesShown
                            ? report->recent_log.size() - kLogLinesShown
                            : 0;
    std::printf("last member log lines:\n");
    for (size_t i = from; i < report->recent_log.size(); ++i) {
      std::printf("  %s\n", report->recent_log[i].c_str());
    }
  }
  if (exit_code != 0) {
    std::printf("confman_fault: %s; reproduce: %s\n", result.c_str(),
                ReproduceCommand(args).c_str());
  }

  std::printf(
      "{\"seed\":%llu,\"seconds\":%lld,\"network\":%s,\"hook\":%s,"
      "\"operations\":%zu,\"ok\":%llu,\"failed\":%llu,\"unknown\":%llu,"
      "\"lists\":%llu,\"watch_streams\":%zu,\"watch_events\":%llu,"
      "\"faults\":%s,\"fault_errors\":%s,\"snapshots_installed\":%llu,"
      "\"snapshots_sent\":%llu,\"storage_errors\":%llu,\"leader_changes\":%llu,"
      "\"checked_operations\":%llu,\"violations\":%llu,\"harness_violations\":%"
      "zu,"
      "\"gave_up\":%s,\"check_ms\":%lld,\"result\":%s}\n",
      static_cast<unsigned long long>(args.run.seed),
      static_cast<long long>(args.run.duration.count()),
      JsonString(args.network).c_str(), JsonString(args.hook).c_str(),
      report->history.operations.size(), static_cast<unsigned long long>(ok),
      static_cast<unsigned long long>(failed),
      static_cast<unsigned long long>(unknown),
      static_cast<unsigned long long>(report->lists),
      report->history.watches.size(),
      static_cast<unsigned long long>(watch_events),
      JsonCounts(report->faults).c_str(),
      JsonCounts(report->fault_errors).c_str(),
      static_cast<unsigned long long>(report->snapshots_received),
      static_cast<unsigned long long>(report->snapshots_sent),
      static_cast<unsigned long long>(report->storage_errors),
      static_cast<unsigned long long>(report->leader_changes),
      static_cast<unsigned long long>(check.operations_checked),
      static_cast<unsigned long long>(violations), report->violations.size(),
      check.gave_up ? "true" : "false", static_cast<long long>(check_ms),
      JsonString(result).c_str());
  return exit_code;
}

}  // namespace
}  // namespace confman::fault

int main(int argc, char** argv) { return confman::fault::Main(argc, argv); }
