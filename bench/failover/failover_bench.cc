// confman_bench_failover: how long a leader's crash costs writers, with
// default options, over real TCP on 127.0.0.1 and LMDB.
//
//   confman_bench_failover [--members N] [--trials N] [--writers N]
//                          [--dir PARENT] [--seed S]
//
// One cluster of --members (default 5). Each trial: writers keep writing
// small values through every member but the leader (--writers per member,
// default 2); at a random moment 100-400 ms in, the leader is crashed. The
// trial measures the time from the crash to
//   - a new leader (the first survivor to report leading in a newer term),
//   - the first write committed after the crash through each survivor: the
//     first write sent after the crash that is answered OK. (A write in
//     flight at the crash may have committed just before it; the writer's
//     next write cannot have.)
// Then the crashed member restarts and catches up, and the next trial
// crashes whoever leads. Ends with one JSON line.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "confman/testing/local_cluster.h"

namespace {

using Clock = std::chrono::steady_clock;
using confman::Node;
using confman::raft::MemberId;
using std::chrono::milliseconds;

constexpr char kNamespace[] = "failover";

double Ms(Clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

// Writes through one member until stopped; remembers, per write answered
// OK, when it was sent and when answered.
class Writer {
 public:
  Writer(Node* node, std::string prefix)
      : node_(node), prefix_(std::move(prefix)) {
    thread_ = std::thread([this] { Run(); });
  }
  ~Writer() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  // When the first write sent at or after `after` was answered OK, if any
  // was (after Stop).
  std::optional<Clock::time_point> FirstCommitted(Clock::time_point after) const {
    for (const auto& [sent, answered] : done_) {
      if (sent >= after) return answered;
    }
    return std::nullopt;
  }
  uint64_t failed() const { return failed_; }

 private:
  void Run() {
    const auto give_up = Clock::now() + std::chrono::seconds(30);
    for (uint64_t i = 0; !stop_ && Clock::now() < give_up; ++i) {
      const auto sent = Clock::now();
      absl::StatusOr<uint64_t> put =
          node_->Put(kNamespace, prefix_ + std::to_string(i % 128),
                     "value-" + std::to_string(i));
      if (put.ok()) {
        done_.emplace_back(sent, Clock::now());
      } else {
        ++failed_;
        std::this_thread::sleep_for(milliseconds(5));
      }
    }
  }

  Node* node_;
  const std::string prefix_;
  std::atomic<bool> stop_{false};
  std::vector<std::pair<Clock::time_point, Clock::time_point>> done_;
  std::atomic<uint64_t> failed_{0};
  std::thread thread_;
};

struct Summary {
  double median = 0, p90 = 0, max = 0;
};

Summary Summarize(std::vector<double> v) {
  Summary s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.median = v[v.size() / 2];
  s.p90 = v[std::min(v.size() - 1, v.size() * 9 / 10)];
  s.max = v.back();
  return s;
}

int Fail(const std::string& what) {
  std::fprintf(stderr, "confman_bench_failover: %s\n", what.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  int members = 5;
  int trials = 100;
  int writers_per_member = 2;
  uint64_t seed = 1;
  std::string dir;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto next = [&]() -> std::string {
      return i + 1 < argc ? argv[++i] : std::string();
    };
    if (arg == "--members") members = std::atoi(next().c_str());
    else if (arg == "--trials") trials = std::atoi(next().c_str());
    else if (arg == "--writers") writers_per_member = std::atoi(next().c_str());
    else if (arg == "--seed") seed = std::strtoull(next().c_str(), nullptr, 10);
    else if (arg == "--dir") dir = next();
    else return Fail("unknown argument " + arg + " (see the file's header)");
  }
  if (members < 3 || members > 9 || trials < 1 || writers_per_member < 1) {
    return Fail("need 3..9 members, at least one trial and one writer");
  }

  auto started = confman::testing::LocalCluster::Start(
      {.members = members, .temp_root = dir});
  if (!started.ok()) return Fail(started.status().ToString());
  confman::testing::LocalCluster& cluster = **started;
  std::mt19937_64 rng(seed);

  std::vector<double> to_leader_ms;
  std::vector<double> to_write_ms;      // Per (trial, surviving member).
  std::vector<double> all_members_ms;  // Per trial: the slowest member.
  uint64_t failed_writes = 0;
  int trials_without_write = 0;
  for (int trial = 0; trial < trials; ++trial) {
    absl::StatusOr<Node*> leader = cluster.WaitForLeader(std::chrono::seconds(10));
    if (!leader.ok()) return Fail("no leader: " + leader.status().ToString());
    const MemberId crashed = cluster.leader_id();
    const uint64_t old_term = (*leader)->GetStatus().term;

    std::map<MemberId, std::vector<std::unique_ptr<Writer>>> writers;
    for (MemberId id : cluster.ids()) {
      if (id == crashed || cluster.member(id) == nullptr) continue;
      for (int w = 0; w < writers_per_member; ++w) {
        writers[id].push_back(std::make_unique<Writer>(
            cluster.member(id), absl::StrCat("m", id, "w", w, "-")));
      }
    }
    std::this_thread::sleep_for(
        milliseconds(std::uniform_int_distribution<int>(100, 400)(rng)));

    const auto crash = Clock::now();
    if (absl::Status s = cluster.Crash(crashed); !s.ok()) return Fail(s.ToString());

    std::optional<Clock::time_point> elected;
    const auto watch_until = crash + std::chrono::seconds(3);
    while (!elected && Clock::now() < watch_until) {
      for (MemberId id : cluster.ids()) {
        Node* node = cluster.member(id);
        if (node == nullptr) continue;
        const confman::NodeStatus status = node->GetStatus();
        if (status.role == confman::raft::Role::kLeader && status.term > old_term) {
          elected = Clock::now();
          break;
        }
      }
      if (!elected) std::this_thread::sleep_for(milliseconds(1));
    }
    // What every survivor believes 400 ms in, printed for a slow trial.
    std::this_thread::sleep_until(crash + milliseconds(400));
    std::string at_400ms;
    for (MemberId id : cluster.ids()) {
      Node* node = cluster.member(id);
      if (node == nullptr) continue;
      const confman::NodeStatus status = node->GetStatus();
      absl::StrAppend(&at_400ms, " [member ", id, " role ",
                      static_cast<int>(status.role), " term ", status.term,
                      " leader ", status.leader, " commit ",
                      status.commit_index, "]");
    }
    // Give every member's writers time to get a write through.
    std::this_thread::sleep_until(crash + milliseconds(1900));
    for (auto& [id, list] : writers) {
      for (auto& writer : list) writer->Stop();
    }
    if (elected) to_leader_ms.push_back(Ms(*elected - crash));
    double slowest = 0;
    for (auto& [id, list] : writers) {
      std::optional<Clock::time_point> first;
      for (auto& writer : list) {
        failed_writes += writer->failed();
        auto at = writer->FirstCommitted(crash);
        if (at && (!first || *at < *first)) first = at;
      }
      if (!first) {
        ++trials_without_write;
        continue;
      }
      to_write_ms.push_back(Ms(*first - crash));
      slowest = std::max(slowest, Ms(*first - crash));
      if (Ms(*first - crash) > 400) {
        std::printf("  slow: member %llu's first write after %.0f ms; at 400 ms:%s\n",
                    static_cast<unsigned long long>(id), Ms(*first - crash),
                    at_400ms.c_str());
      }
    }
    all_members_ms.push_back(slowest);
    std::printf("trial %3d: crashed member %llu, new leader after %.0f ms, "
                "every member wrote after %.0f ms\n",
                trial, static_cast<unsigned long long>(crashed),
                elected ? Ms(*elected - crash) : -1.0, slowest);
    std::fflush(stdout);

    writers.clear();
    if (absl::Status s = cluster.Restart(crashed); !s.ok()) return Fail(s.ToString());
    absl::StatusOr<Node*> settled = cluster.WaitForLeader(std::chrono::seconds(10));
    if (!settled.ok()) return Fail("no leader after restart");
    const uint64_t commit = (*settled)->GetStatus().commit_index;
    if (absl::Status s = cluster.WaitForApplied(commit); !s.ok()) {
      return Fail("restarted member did not catch up: " + s.ToString());
    }
  }

  const Summary leader = Summarize(to_leader_ms);
  const Summary write = Summarize(to_write_ms);
  const Summary every = Summarize(all_members_ms);
  std::printf("crash -> new leader:              median %.0f  p90 %.0f  max %.0f ms\n",
              leader.median, leader.p90, leader.max);
  std::printf("crash -> first write via a member: median %.0f  p90 %.0f  max %.0f ms\n",
              write.median, write.p90, write.max);
  std::printf("crash -> every member has written: median %.0f  p90 %.0f  max %.0f ms\n",
              every.median, every.p90, every.max);
  std::printf(
      "{\"bench\":\"failover\",\"members\":%d,\"trials\":%d,"
      "\"writers_per_member\":%d,\"leader_elected\":%zu,"
      "\"to_leader_ms_median\":%.1f,\"to_leader_ms_p90\":%.1f,"
      "\"to_leader_ms_max\":%.1f,\"to_first_write_ms_median\":%.1f,"
      "\"to_first_write_ms_p90\":%.1f,\"to_first_write_ms_max\":%.1f,"
      "\"to_all_members_ms_median\":%.1f,\"to_all_members_ms_p90\":%.1f,"
      "\"to_all_members_ms_max\":%.1f,\"members_without_write\":%d,"
      "\"failed_writes\":%llu}\n",
      members, trials, writers_per_member, to_leader_ms.size(), leader.median,
      leader.p90, leader.max, write.median, write.p90, write.max, every.median,
      every.p90, every.max, trials_without_write,
      static_cast<unsigned long long>(failed_writes));
  return 0;
}
