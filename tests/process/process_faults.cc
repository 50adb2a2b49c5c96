// confman_process_faults: one seeded fault run against real confman-node
// processes, checked for linearizability with the project's checker
// (tests/fault/linearizability.h).
//
//   confman_process_faults --seed S --seconds T --scenario NAME
//       [--members N] [--clients N] [--keys N] [--testing-fault NAME]
//       [--expect-violation] [--rss-budget-mib M] [--verbose]
//
// Scenarios (the nemesis strikes every 2-4 s, then heals; the last seconds
// of a run are quiet so the cluster can recover):
//   kill-leader   kill -9 the leader, restart it 1-3 s later;
//   kill-random   kill -9 any member, restart it 1-3 s later;
//   pause-leader  SIGSTOP the leader for 3-8 election timeouts, then
//                 SIGCONT: it wakes up deposed, with requests in flight;
//   restart-all   kill -9 every member at once and start them all again;
//   snapshot-kill kill -9 a follower, let the log move on past what the
//                 leader keeps, restart it so it catches up by snapshot,
//                 and kill -9 it (install) or the leader (send) while the
//                 snapshot streams;
//   partition-leader   cut the leader off from every other member;
//   partition-split    cut a minority off from the majority;
//   partition-one-way  drop the leader's packets at the others, but not
//                      theirs at the leader;
//   partition-bridge   (5 members) two sides that cannot see each other,
//                      and one member that sees both;
//   packet-loss   drop 5-20 % of the packets arriving at every member;
//   slow-links    limit what every member sends to 0.5-4 Mbit/s, so packets
//                 queue (delay that grows with load, drops past 200 ms);
//   disk-full     fill the last member's small (64 MiB ext4) disk, free
//                 it, and restart the member (a member whose log store
//                 failed refuses writes until it is reopened);
//   membership    start a new member from empty, add it as a learner, wait
//                 until it caught up, promote it, then remove the leader
//                 (once per run; later strikes of this kind kill a random
//                 member instead);
//   mixed         each strike picks one of the above.
// Members run in network namespaces of their own (so the run needs root);
// this kernel has no netem, so links get loss and queueing delay (a rate
// limit), not a fixed added delay. Clocks
// are not skewed: lease reads rely on bounded clock drift (node.h), and
// are checked under the other faults.
//
// Clients are pinned to members and issue puts, compare-and-sets, deletes
// and reads at every consistency over HTTP; each operation is recorded
// with its invoke and complete times and outcome (ok, fail, unknown). One
// watch stream per member records every change it delivers, reconnecting
// from the last revision when its member dies. After the run every member
// is running again and the checks are:
//   - the history is linearizable, revisions unique and growing, and every
//     watch stream saw each change once, in order, with no gap;
//   - every acknowledged write is there (final linearizable reads of every
//     key on every member take part in the check);
//   - every member holds identical state once it has applied as far as
//     the others;
//   - the cluster served a write again within 10 s of the last heal;
//   - no member ended unless the nemesis killed it;
//   - no member's resident memory exceeded the budget.
// --testing-fault NAME starts every member with CONFMAN_TESTING_FAULT=NAME
// (a guarantee broken on purpose); with --expect-violation the run passes
// only if the checks catch it.
//
// Exit status: 0 pass, 1 a check failed, 2 bad arguments or a cluster that
// would not start, 3 the checker gave up on a key. The last line is JSON.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "history.h"
#include "linearizability.h"
#include "process_cluster.h"

namespace confman::process_test {
namespace {

using fault::History;
using fault::Nanos;
using fault::Operation;
using fault::OpType;
using fault::Outcome;
using fault::ReadKind;
using fault::WatchEvent;
using fault::WatchStream;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr int kElectionTimeoutMs = 150;
constexpr std::chrono::milliseconds kHttpTimeout{4000};

struct Args {
  uint64_t seed = 1;
  int seconds = 30;
  std::string scenario = "mixed";
  int members = 3;
  int clients = 6;
  int keys = 5;
  std::string testing_fault{};
  bool expect_violation = false;
  uint64_t rss_budget_mib = 512;
  bool verbose = false;
};

const char* const kScenarios[] = {
    "kill-leader",       "kill-random",      "pause-leader",      "restart-all",
    "snapshot-kill",     "partition-leader", "partition-split",   "partition-one-way",
    "partition-bridge",  "packet-loss",      "disk-full",         "membership",
    "slow-links",        "mixed"};
constexpr size_t kStrikeKinds = std::size(kScenarios) - 1;  // All but mixed.

std::optional<Args> ParseArgs(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
    auto number = [&](auto& out) {
      if (value == nullptr || !absl::SimpleAtoi(value, &out)) return false;
      ++i;
      return true;
    };
    bool ok = true;
    if (flag == "--seed") ok = number(a.seed);
    else if (flag == "--seconds") ok = number(a.seconds);
    else if (flag == "--members") ok = number(a.members);
    else if (flag == "--clients") ok = number(a.clients);
    else if (flag == "--keys") ok = number(a.keys);
    else if (flag == "--rss-budget-mib") ok = number(a.rss_budget_mib);
    else if (flag == "--scenario" && value != nullptr) a.scenario = argv[++i];
    else if (flag == "--testing-fault" && value != nullptr) a.testing_fault = argv[++i];
    else if (flag == "--expect-violation") a.expect_violation = true;
    else if (flag == "--verbose") a.verbose = true;
    else ok = false;
    if (!ok) return std::nullopt;
  }
  if (std::find(std::begin(kScenarios), std::end(kScenarios), a.scenario) ==
          std::end(kScenarios) ||
      a.seconds < 5 || a.members < 3 || a.members > 9 || a.clients < 1 || a.keys < 1) {
    return std::nullopt;
  }
  if (a.scenario == "partition-bridge" && a.members < 5) a.members = 5;
  return a;
}

// Everything the threads share. A restarted member keeps its client port,
// so each client and watcher gets its member's URL once, at its start;
// `urls` (the current members) is used by the main thread only, where the
// nemesis runs.
struct Run {
  Args args;
  Clock::time_point start = Clock::now();
  std::map<uint64_t, std::string> urls;
  std::atomic<bool> stop_clients{false};
  std::atomic<bool> stop_watches{false};
  std::mutex mu;  // Guards history and log.
  History history;
  std::vector<std::string> log;
  std::atomic<uint64_t> next_op{1};

  Nanos Now() const {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count();
  }
  void Log(const std::string& line) {
    const std::string stamped = absl::StrCat(Now() / 1000000, " ms: ", line);
    if (args.verbose) std::fprintf(stderr, "%s\n", stamped.c_str());
    std::lock_guard lock(mu);
    log.push_back(stamped);
  }
  void Record(Operation op) {
    std::lock_guard lock(mu);
    history.operations.push_back(std::move(op));
  }
};

// A request that could not even connect was certainly not applied.
bool NeverSent(const absl::Status& s) {
  return absl::StartsWith(s.message(), "connect to");
}

uint64_t RevisionOf(const HttpResponse& r) {
  json j = json::parse(r.body, nullptr, false);
  if (j.is_discarded() || !j.contains("revision")) return 0;
  return j["revision"].get<uint64_t>();
}

// Fills a write's outcome from its HTTP answer.
void WriteOutcome(const absl::StatusOr<HttpResponse>& r, Operation& op) {
  if (!r.ok()) {
    op.outcome = NeverSent(r.status()) ? Outcome::kFailed : Outcome::kUnknown;
    return;
  }
  switch (r->status) {
    case 200:
      op.outcome = Outcome::kOk;
      op.revision = RevisionOf(*r);
      return;
    case 404:  // A delete of an absent key: nothing changed.
      op.outcome = op.type == OpType::kDelete ? Outcome::kOk : Outcome::kFailed;
      op.found = false;
      return;
    case 412:
      op.outcome = Outcome::kOk;
      op.cas_mismatch = true;
      return;
    case 400:
    case 413:
    case 429:
    case 503:
      op.outcome = Outcome::kFailed;  // Certainly not applied.
      return;
    default:  // 504 outcome unknown, 409 session expired, 500, ...
      op.outcome = Outcome::kUnknown;
      return;
  }
}

void Client(Run& run, int index, uint64_t member, const std::string url) {
  std::mt19937_64 rng(run.args.seed * 7919 + static_cast<uint64_t>(index));
  const uint64_t session = (run.args.seed << 20) + static_cast<uint64_t>(index) + 1;
  std::map<std::string, uint64_t> last_seen;  // Key -> latest revision read.
  uint64_t sequence = 0;
  while (!run.stop_clients) {
    Operation op;
    op.id = run.next_op++;
    op.client = index;
    op.member = member;
    op.key = absl::StrCat("k", rng() % static_cast<uint64_t>(run.args.keys));
    const std::string path = absl::StrCat("/v1/ns/f/kv/", op.key);
    const int dice = static_cast<int>(rng() % 100);
    absl::StatusOr<HttpResponse> r;
    std::map<std::string, std::string> headers;
    if (dice < 45) {
      op.type = OpType::kGet;
      const int kind = static_cast<int>(rng() % 10);
      op.read = kind < 6 ? ReadKind::kLinearizable
                         : (kind < 8 ? ReadKind::kLease : ReadKind::kLocal);
      const char* names[] = {"linearizable", "lease", "local"};
      op.invoke = run.Now();
      r = Http(url, "GET",
               absl::StrCat(path, "?consistency=", names[static_cast<int>(op.read)]), {}, {},
               kHttpTimeout);
      op.complete = run.Now();
      if (r.ok() && r->status == 200) {
        json j = json::parse(r->body, nullptr, false);
        op.outcome = Outcome::kOk;
        op.value = j.value("value", "");
        op.revision = j.value("mod_revision", uint64_t{0});
        last_seen[op.key] = op.revision;
      } else if (r.ok() && r->status == 404) {
        op.outcome = Outcome::kOk;
        op.found = false;
        last_seen[op.key] = 0;
      } else {
        op.outcome = Outcome::kFailed;  // A read that failed changed nothing.
      }
    } else {
      headers["X-Confman-Request"] = absl::StrCat(session, ":", ++sequence);
      std::string target = path;
      std::string method = "PUT";
      if (dice < 75) {
        op.type = OpType::kPut;
      } else if (dice < 90) {
        op.type = OpType::kCompareAndSet;
        op.expected_revision = last_seen.count(op.key) ? last_seen[op.key] : 0;
        absl::StrAppend(&target, "?if_revision=", op.expected_revision);
      } else {
        op.type = OpType::kDelete;
        method = "DELETE";
      }
      if (op.type != OpType::kDelete) op.value = absl::StrCat("c", index, "-", op.id);
      op.invoke = run.Now();
      r = Http(url, method, target, op.value, headers, kHttpTimeout);
      WriteOutcome(r, op);
      if (op.outcome != Outcome::kUnknown) op.complete = run.Now();
    }
    const bool refused = op.outcome == Outcome::kFailed;
    run.Record(std::move(op));
    // A member that is down refuses at once: do not spin on it.
    if (refused) std::this_thread::sleep_for(std::chrono::milliseconds(30));
  }
}

// One member's watch of the whole namespace, reconnecting from the last
// delivered revision whenever the stream ends.
void Watcher(Run& run, int index, uint64_t member, const std::string url) {
  uint64_t last = 0;
  while (!run.stop_watches) {
    auto stream = HttpStream::Open(url, absl::StrCat("/v1/ns/f/watch?from_revision=", last + 1,
                                                     "&progress_ms=500"),
                                   {}, std::chrono::milliseconds(2000));
    if (!stream.ok() || (*stream)->status() != 200) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    WatchStream record;
    record.watcher = index;
    record.member = member;
    record.after_revision = last;
    while (!run.stop_watches) {
      auto line = (*stream)->NextLine(std::chrono::milliseconds(300));
      if (!line.ok()) {
        if (absl::IsDeadlineExceeded(line.status())) continue;
        break;
      }
      json j = json::parse(*line, nullptr, false);
      if (j.is_discarded()) break;
      const std::string type = j.value("type", "");
      if (type == "change") {
        WatchEvent e;
        e.revision = j["revision"].get<uint64_t>();
        e.is_delete = j.value("op", "") == "delete";
        e.key = j.value("key", "");
        last = e.revision;
        record.events.push_back(std::move(e));
      } else if (type == "progress") {
        last = std::max(last, j["revision"].get<uint64_t>());
      } else if (type == "error") {
        break;
      }
    }
    std::lock_guard lock(run.mu);
    run.history.watches.push_back(std::move(record));
  }
}

absl::StatusOr<uint64_t> LeaderOf(const Run& run, ProcessCluster& cluster) {
  for (const auto& [id, url] : run.urls) {
    if (!cluster.running(id)) continue;
    auto r = Http(url, "GET", "/v1/status", {}, {}, std::chrono::milliseconds(500));
    uint64_t leader = 0;
    if (r.ok() && absl::SimpleAtoi(r->header("x-confman-leader"), &leader) && leader != 0 &&
        cluster.running(leader)) {
      return leader;
    }
  }
  return absl::UnavailableError("no running member names a running leader");
}

uint64_t RssMib(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, "VmRSS:")) {
      return std::strtoull(line.c_str() + 6, nullptr, 10) / 1024;
    }
  }
  return 0;
}

struct Nemesis {
  Nemesis(Run& r, ProcessCluster& c, uint64_t seed) : run(r), cluster(c), rng(seed) {}

  Run& run;
  ProcessCluster& cluster;
  std::mt19937_64 rng;
  std::vector<std::string> failures;  // Checks the nemesis itself saw fail.
  std::map<uint64_t, uint64_t> peak_rss_mib;
  int strikes = 0;

  void Sleep(int ms) {
    const auto until = Clock::now() + std::chrono::milliseconds(ms);
    while (Clock::now() < until) {
      SampleAndCheck();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  int Between(int lo, int hi) { return lo + static_cast<int>(rng() % static_cast<uint64_t>(hi - lo + 1)); }

  void SampleAndCheck() {
    for (uint64_t id : cluster.ids()) {
      const pid_t pid = cluster.pid(id);
      if (pid == 0) continue;
      if (!cluster.Alive(id)) {
        failures.push_back(absl::StrCat("member ", id, " ", cluster.exit_description(id),
                                        " without being killed; its log ends:\n",
                                        Tail(cluster.log_text(id))));
        continue;
      }
      peak_rss_mib[id] = std::max(peak_rss_mib[id], RssMib(pid));
    }
  }
  static std::string Tail(const std::string& text) {
    return text.size() > 3000 ? text.substr(text.size() - 3000) : text;
  }

  void Restart(uint64_t id) {
    if (absl::Status s = cluster.Restart(id); !s.ok()) {
      failures.push_back(absl::StrCat("restarting member ", id, ": ", s.ToString()));
    }
  }

  void KillAndRestart(uint64_t id) {
    run.Log(absl::StrCat("kill -9 member ", id));
    (void)cluster.Signal(id, SIGKILL);
    Sleep(Between(1000, 3000));
    run.Log(absl::StrCat("restart member ", id));
    Restart(id);
  }

  // The current members (a removed one is left out).
  std::vector<uint64_t> Active() const {
    std::vector<uint64_t> ids;
    for (const auto& [id, url] : run.urls) ids.push_back(id);
    return ids;
  }

  std::map<std::string, int> struck;  // Strikes by kind.

  void Strike(const std::string& scenario) {
    ++strikes;
    ++struck[scenario];
    auto leader = LeaderOf(run, cluster);
    const std::vector<uint64_t> ids = Active();
    if (scenario == "kill-leader") {
      if (leader.ok()) KillAndRestart(*leader);
    } else if (scenario == "kill-random") {
      KillAndRestart(ids[rng() % ids.size()]);
    } else if (scenario == "pause-leader") {
      if (!leader.ok()) return;
      const int ms = kElectionTimeoutMs * Between(3, 8);
      run.Log(absl::StrCat("SIGSTOP member ", *leader, " for ", ms, " ms"));
      (void)cluster.Signal(*leader, SIGSTOP);
      Sleep(ms);
      run.Log(absl::StrCat("SIGCONT member ", *leader));
      (void)cluster.Signal(*leader, SIGCONT);
    } else if (scenario == "restart-all") {
      run.Log("kill -9 every member");
      for (uint64_t id : ids) (void)cluster.Signal(id, SIGKILL);
      Sleep(Between(200, 1000));
      run.Log("restart every member");
      for (uint64_t id : ids) Restart(id);
    } else if (scenario == "snapshot-kill") {
      if (!leader.ok()) return;
      uint64_t follower = ids[rng() % ids.size()];
      if (follower == *leader) follower = ids[(follower) % ids.size()];
      run.Log(absl::StrCat("kill -9 follower ", follower, " and let the log move on"));
      (void)cluster.Signal(follower, SIGKILL);
      Sleep(2500);
      run.Log(absl::StrCat("restart member ", follower, " (it catches up by snapshot)"));
      Restart(follower);
      Sleep(Between(0, 300));
      const bool kill_sender = rng() % 2 == 0;
      const uint64_t victim = kill_sender ? *leader : follower;
      run.Log(absl::StrCat("kill -9 member ", victim, kill_sender ? " (snapshot sender)"
                                                                  : " (snapshot receiver)"));
      (void)cluster.Signal(victim, SIGKILL);
      Sleep(Between(500, 1500));
      Restart(victim);
    } else if (scenario == "partition-leader") {
      if (!leader.ok()) return;
      run.Log(absl::StrCat("isolate leader ", *leader));
      Net(cluster.Isolate(*leader));
      Sleep(Between(1000, 3000));
      Heal();
    } else if (scenario == "partition-split") {
      std::vector<uint64_t> shuffled = ids;
      std::shuffle(shuffled.begin(), shuffled.end(), rng);
      const size_t minority = (ids.size() - 1) / 2;
      run.Log(absl::StrCat("split off minority ",
                           absl::StrJoin(shuffled.begin(), shuffled.begin() + minority, ",")));
      for (size_t i = 0; i < minority; ++i) {
        for (size_t j = minority; j < shuffled.size(); ++j) {
          Net(cluster.Block(shuffled[i], shuffled[j]));
          Net(cluster.Block(shuffled[j], shuffled[i]));
        }
      }
      Sleep(Between(1000, 3000));
      Heal();
    } else if (scenario == "partition-one-way") {
      if (!leader.ok()) return;
      run.Log(absl::StrCat("drop leader ", *leader, "'s packets at the others (one way)"));
      for (uint64_t id : ids) {
        if (id != *leader) Net(cluster.Block(*leader, id));
      }
      Sleep(Between(1000, 3000));
      Heal();
    } else if (scenario == "partition-bridge") {
      std::vector<uint64_t> shuffled = ids;
      std::shuffle(shuffled.begin(), shuffled.end(), rng);
      // shuffled[0] is the bridge; the rest split in two halves.
      const size_t half = (shuffled.size() - 1) / 2;
      run.Log(absl::StrCat("bridge partition through member ", shuffled[0]));
      for (size_t i = 1; i <= half; ++i) {
        for (size_t j = half + 1; j < shuffled.size(); ++j) {
          Net(cluster.Block(shuffled[i], shuffled[j]));
          Net(cluster.Block(shuffled[j], shuffled[i]));
        }
      }
      Sleep(Between(1500, 3000));
      Heal();
    } else if (scenario == "packet-loss") {
      const int percent = Between(5, 20);
      run.Log(absl::StrCat("drop ", percent, " % of packets at every member"));
      for (uint64_t id : ids) Net(cluster.SetLoss(id, percent));
      Sleep(Between(2000, 4000));
      Heal();
    } else if (scenario == "slow-links") {
      const int kbit = Between(500, 4000);
      run.Log(absl::StrCat("limit every member's sending to ", kbit, " kbit/s"));
      for (uint64_t id : ids) Net(cluster.SetSlowLink(id, kbit));
      Sleep(Between(2000, 4000));
      Heal();
    } else if (scenario == "membership") {
      ChangeMembership(leader);
    } else if (scenario == "disk-full") {
      const uint64_t id = static_cast<uint64_t>(run.args.members);
      if (!run.urls.count(id)) return Strike("kill-random");
      run.Log(absl::StrCat("fill member ", id, "'s disk"));
      Net(cluster.FillDisk(id));
      Sleep(Between(1500, 3000));
      run.Log(absl::StrCat("free member ", id, "'s disk and restart it"));
      Net(cluster.FreeDisk(id));
      (void)cluster.Signal(id, SIGKILL);
      Restart(id);
    }
  }

  // Adds a new member, promotes it and removes the leader.
  bool membership_done = false;
  void ChangeMembership(absl::StatusOr<uint64_t> leader) {
    if (membership_done || !leader.ok()) return Strike("kill-random");
    membership_done = true;
    const std::vector<uint64_t> ids = cluster.ids();
    const uint64_t joiner = *std::max_element(ids.begin(), ids.end()) + 1;
    run.Log(absl::StrCat("start member ", joiner, " from empty and add it as a learner"));
    if (absl::Status s = cluster.StartJoiner(joiner); !s.ok()) return Net(s);
    const std::string via = run.urls.at(*leader);
    auto added = Http(via, "POST", "/v1/cluster/members",
                      json{{"id", joiner}, {"peer_address", cluster.peer_address(joiner)}}.dump(),
                      {{"Content-Type", "application/json"}}, std::chrono::milliseconds(10000));
    if (!added.ok() || added->status != 201) {
      return Net(absl::InternalError(absl::StrCat(
          "adding member ", joiner, ": ", added.ok() ? added->body : added.status().ToString())));
    }
    run.urls[joiner] = cluster.client_url(joiner);
    // Caught up: it has applied what the leader had committed when the
    // learner was added.
    uint64_t target = 0;
    if (auto st = Http(via, "GET", "/v1/status", {}, {}, std::chrono::milliseconds(1000));
        st.ok() && st->status == 200) {
      target = json::parse(st->body, nullptr, false).value("commit_index", uint64_t{0});
    }
    const bool caught_up = Eventually(
        [&] {
          auto r = Http(cluster.client_url(joiner), "GET", "/v1/status", {}, {},
                        std::chrono::milliseconds(500));
          if (!r.ok() || r->status != 200) return false;
          json j = json::parse(r->body, nullptr, false);
          return !j.is_discarded() && target > 0 &&
                 j.value("applied_index", uint64_t{0}) >= target;
        },
        std::chrono::milliseconds(15000));
    if (!caught_up) {
      return Net(absl::DeadlineExceededError(
          absl::StrCat("learner ", joiner, " did not catch up within 15 s")));
    }
    run.Log(absl::StrCat("promote member ", joiner));
    auto promoted = Http(via, "POST", absl::StrCat("/v1/cluster/members/", joiner, "/promote"),
                         "", {}, std::chrono::milliseconds(10000));
    if (!promoted.ok() || promoted->status != 200) {
      return Net(absl::InternalError(
          absl::StrCat("promoting member ", joiner, ": ",
                       promoted.ok() ? promoted->body : promoted.status().ToString())));
    }
    auto current = LeaderOf(run, cluster);
    if (!current.ok()) return Net(current.status());
    run.Log(absl::StrCat("remove the leader, member ", *current));
    auto removed = Http(run.urls.at(joiner), "DELETE",
                        absl::StrCat("/v1/cluster/members/", *current), "", {},
                        std::chrono::milliseconds(10000));
    if (!removed.ok() || removed->status != 200) {
      return Net(absl::InternalError(
          absl::StrCat("removing member ", *current, ": ",
                       removed.ok() ? removed->body : removed.status().ToString())));
    }
    // A removed member serves nobody: stop it and leave it out of the
    // final checks.
    (void)cluster.Signal(*current, SIGKILL);
    run.urls.erase(*current);
    removed_members.push_back(*current);
  }
  std::vector<uint64_t> removed_members;

  void Net(absl::Status s) {
    if (!s.ok()) failures.push_back(absl::StrCat("nemesis: ", s.ToString()));
  }
  void Heal() {
    run.Log("heal the network");
    Net(cluster.HealNetwork());
  }

  void Loop(Clock::time_point quiet_from) {
    while (Clock::now() < quiet_from) {
      Sleep(Between(2000, 4000));
      if (Clock::now() >= quiet_from) break;
      std::string scenario = run.args.scenario;
      if (scenario == "mixed") {
        do {
          scenario = kScenarios[rng() % kStrikeKinds];
        } while (scenario == "partition-bridge" && Active().size() < 5);
      }
      Strike(scenario);
    }
    // Heal: the network whole, every member running and none paused.
    Net(cluster.HealNetwork());
    for (uint64_t id : Active()) {
      if (cluster.running(id)) {
        (void)cluster.Signal(id, SIGCONT);
      } else {
        Restart(id);
      }
    }
    run.Log("healed");
  }
};

// The namespace as one member holds it, read locally: key -> value@revision.
absl::StatusOr<std::string> StateOf(const std::string& url) {
  std::string state;
  std::string token;
  for (int page = 0; page < 100; ++page) {
    std::string target = "/v1/ns/f/kv?consistency=local&limit=1000";
    if (!token.empty()) absl::StrAppend(&target, "&page_token=", token);
    auto r = Http(url, "GET", target, {}, {}, std::chrono::milliseconds(3000));
    if (!r.ok()) return r.status();
    if (r->status != 200) return absl::UnavailableError(r->body);
    json j = json::parse(r->body, nullptr, false);
    if (j.is_discarded()) return absl::DataLossError("list answer is not JSON");
    for (const json& item : j["items"]) {
      absl::StrAppend(&state, item.value("key", ""), "=", item.value("value", ""), "@",
                      item.value("mod_revision", uint64_t{0}), ";");
    }
    token = j.value("next_page_token", "");
    if (token.empty()) break;
  }
  return state;
}

int Main(const Args& args) {
  ProcessClusterOptions options{
      .members = args.members,
      // Small log retention, so a member that was down a few seconds
      // catches up by snapshot.
      .extra_flags = {"--request-timeout-ms", "2000", "--log-keep-entries", "64",
                      "--log-compact-every", "32"},
      .network_namespaces = true,
      .small_disk_members = {static_cast<uint64_t>(args.members)},
  };
  if (!args.testing_fault.empty()) {
    options.environment["CONFMAN_TESTING_FAULT"] = args.testing_fault;
  }
  auto started = ProcessCluster::Start(options);
  if (!started.ok()) {
    std::fprintf(stderr, "the cluster did not start: %s\n", started.status().ToString().c_str());
    return 2;
  }
  ProcessCluster& cluster = **started;
  Run run;
  run.args = args;
  for (uint64_t id : cluster.ids()) run.urls[id] = cluster.client_url(id);

  std::vector<std::thread> threads;
  for (int c = 0; c < args.clients; ++c) {
    const uint64_t member = cluster.ids()[static_cast<size_t>(c) % cluster.ids().size()];
    threads.emplace_back(Client, std::ref(run), c, member, run.urls.at(member));
  }
  std::vector<std::thread> watchers;
  for (size_t w = 0; w < cluster.ids().size(); ++w) {
    const uint64_t member = cluster.ids()[w];
    watchers.emplace_back(Watcher, std::ref(run), static_cast<int>(w), member,
                          run.urls.at(member));
  }

  Nemesis nemesis(run, cluster, args.seed);
  const auto end = run.start + std::chrono::seconds(args.seconds);
  nemesis.Loop(end - std::chrono::seconds(std::min(8, args.seconds / 3)));

  // Recovery: the first write acknowledged after the heal.
  const auto healed = Clock::now();
  std::optional<double> recovery_ms;
  while (Clock::now() - healed < std::chrono::seconds(20)) {
    auto leader = LeaderOf(run, cluster);
    if (leader.ok()) {
      auto r = Http(run.urls[*leader], "PUT", "/v1/ns/probe/kv/recovered", "1", {},
                    std::chrono::milliseconds(2000));
      if (r.ok() && r->status == 200) {
        recovery_ms = std::chrono::duration<double, std::milli>(Clock::now() - healed).count();
        break;
      }
    }
    nemesis.Sleep(100);
  }
  if (!recovery_ms) {
    nemesis.failures.push_back("no write was acknowledged within 20 s of the last heal");
  } else if (*recovery_ms > 10000) {
    nemesis.failures.push_back(
        absl::StrCat("the first write after the last heal took ", *recovery_ms, " ms (bound 10 s)"));
  }
  while (Clock::now() < end) nemesis.Sleep(100);
  run.stop_clients = true;
  for (auto& t : threads) t.join();

  // Final linearizable reads of every key on every member.
  for (const auto& [id, url] : run.urls) {
    for (int k = 0; k < args.keys; ++k) {
      Operation op;
      op.id = run.next_op++;
      op.client = 1000 + static_cast<int>(id);
      op.member = id;
      op.type = OpType::kGet;
      op.key = absl::StrCat("k", k);
      op.invoke = run.Now();
      auto r = Http(url, "GET", absl::StrCat("/v1/ns/f/kv/", op.key), {}, {}, kHttpTimeout);
      op.complete = run.Now();
      if (r.ok() && r->status == 200) {
        json j = json::parse(r->body, nullptr, false);
        op.outcome = Outcome::kOk;
        op.value = j.value("value", "");
        op.revision = j.value("mod_revision", uint64_t{0});
      } else if (r.ok() && r->status == 404) {
        op.outcome = Outcome::kOk;
        op.found = false;
      } else {
        op.outcome = Outcome::kFailed;
        nemesis.failures.push_back(absl::StrCat(
            "final read of ", op.key, " on member ", id, " failed: ",
            r.ok() ? absl::StrCat(r->status, " ", r->body) : r.status().ToString()));
      }
      run.Record(std::move(op));
    }
  }
  // Let the watches drain what the last writes produced.
  nemesis.Sleep(1500);
  run.stop_watches = true;
  for (auto& t : watchers) t.join();

  // Identical state once every member has applied as far as the others.
  std::map<uint64_t, std::string> states;
  const bool converged = Eventually(
      [&] {
        states.clear();
        for (const auto& [id, url] : run.urls) {
          auto s = StateOf(url);
          if (!s.ok()) return false;
          states[id] = *s;
        }
        for (const auto& [id, s] : states) {
          if (s != states.begin()->second) return false;
        }
        return true;
      },
      std::chrono::milliseconds(10000));
  if (!converged) {
    nemesis.failures.push_back("members' states still differ 10 s after the run");
    for (const auto& [id, s] : states) {
      nemesis.failures.push_back(absl::StrCat("member ", id, ": ", s.substr(0, 400)));
    }
  }
  for (const auto& [id, mib] : nemesis.peak_rss_mib) {
    if (mib > args.rss_budget_mib) {
      nemesis.failures.push_back(absl::StrCat("member ", id, " peaked at ", mib,
                                              " MiB resident (budget ", args.rss_budget_mib,
                                              " MiB)"));
    }
  }
  nemesis.SampleAndCheck();

  fault::CheckResult check = fault::CheckHistory(run.history);
  uint64_t ok = 0, failed = 0, unknown = 0;
  for (const Operation& op : run.history.operations) {
    ok += op.outcome == Outcome::kOk;
    failed += op.outcome == Outcome::kFailed;
    unknown += op.outcome == Outcome::kUnknown;
  }
  for (const std::string& v : check.violations) std::printf("violation: %s\n", v.c_str());
  for (const std::string& f : nemesis.failures) std::printf("failed check: %s\n", f.c_str());
  const bool violated = !check.ok || !nemesis.failures.empty();
  if (violated && !args.expect_violation) {
    std::printf("reproduce: %s --seed %llu --seconds %d --scenario %s --verbose\n",
                "confman_process_faults", static_cast<unsigned long long>(args.seed),
                args.seconds, args.scenario.c_str());
    std::lock_guard lock(run.mu);
    for (const std::string& line : run.log) std::printf("nemesis: %s\n", line.c_str());
  }
  uint64_t max_rss = 0;
  for (const auto& [id, mib] : nemesis.peak_rss_mib) max_rss = std::max(max_rss, mib);
  json summary = {
      {"seed", args.seed},
      {"scenario", args.scenario},
      {"seconds", args.seconds},
      {"strikes", nemesis.strikes},
      {"faults", nemesis.struck},
      {"operations", run.history.operations.size()},
      {"ok", ok},
      {"failed", failed},
      {"unknown", unknown},
      {"checked", check.operations_checked},
      {"watch_streams", run.history.watches.size()},
      {"watch_events_checked", check.watch_events_checked},
      {"violations", check.violations.size()},
      {"failed_checks", nemesis.failures.size()},
      {"recovery_ms", recovery_ms ? *recovery_ms : -1.0},
      {"peak_rss_mib", max_rss},
      {"testing_fault", args.testing_fault},
      {"expect_violation", args.expect_violation},
  };
  std::printf("%s\n", summary.dump().c_str());
  if (args.expect_violation) return violated ? 0 : 1;
  if (check.gave_up && nemesis.failures.empty() && check.violations.size() == 1) return 3;
  return violated ? 1 : 0;
}

}  // namespace
}  // namespace confman::process_test

int main(int argc, char** argv) {
  auto args = confman::process_test::ParseArgs(argc, argv);
  if (!args) {
    std::fprintf(stderr,
                 "usage: confman_process_faults --seed S --seconds T --scenario "
                 "NAME (see the file's head) [--members N] "
                 "[--clients N] [--keys N] [--testing-fault NAME] [--expect-violation] "
                 "[--rss-budget-mib M] [--verbose]\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  if (absl::Status s = confman::process_test::EnterPrivateNetwork(); !s.ok()) {
    std::fprintf(stderr, "cannot set up the private network: %s\n", s.ToString().c_str());
    return 2;
  }
  return confman::process_test::Main(*args);
}
