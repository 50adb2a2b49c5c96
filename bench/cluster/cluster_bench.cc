// confman_bench_cluster: write throughput and latency of a three-member
// cluster in one process, over real TCP on 127.0.0.1 and LMDB, with default
// options, through the embedded API.
//
//   confman_bench_cluster --workload a|b|c|d|e [--dir PARENT] [--via-followers]
//                         [--storage lmdb|memory] [--log-keep N]
//                         [--compact-every N]
//
//   a  256 B values,   20,000 writes, 32 writers
//   b  10 KB values,    1,000 writes, 10 writers
//   c  100 KB values,   1,000 writes, 10 writers
//   d  1 MiB values,    1,000 writes, 10 writers
//   e  1 MiB values,      200 writes,  1 writer
//
// Values are random (incompressible). Writers put to the leader unless
// --via-followers. `--storage memory` keeps the log and state in memory
// (no disk), for comparison with in-memory Raft libraries. Ends with one
// JSON line; cpu_ms_per_write (the whole process's CPU time, all three
// members and the writers, divided by the writes) and
// context_switches_per_write are steadier than writes/s on a shared machine.
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "confman/testing/local_cluster.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Workload {
  char name;
  uint64_t value_bytes;
  uint64_t writes;
  int writers;
};

constexpr Workload kWorkloads[] = {
    {'a', 256, 20000, 32},       {'b', 10 * 1000, 1000, 10},
    {'c', 100 * 1000, 1000, 10}, {'d', 1 << 20, 1000, 10},
    {'e', 1 << 20, 200, 1},
};

// A value of `bytes` random bytes.
// Refills `value` with incompressible bytes in place. xorshift64* is
// random enough for zstd to find nothing and cheap enough that the
// writers' own CPU stays out of the figures.
void FillRandom(uint64_t& state, std::string& value) {
  for (size_t i = 0; i < value.size(); i += 8) {
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    const uint64_t word = state * 0x2545F4914F6CDD1Dull;
    std::memcpy(value.data() + i, &word, std::min<size_t>(8, value.size() - i));
  }
}

// A /proc/self field in kB ("RssAnon:", "write_bytes:" in bytes).
uint64_t ProcField(const char* file, const std::string& field) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field, 0) == 0) {
      return std::strtoull(line.c_str() + field.size(), nullptr, 10);
    }
  }
  return 0;
}

// Samples the process's anonymous RSS every 20 ms and keeps the peak.
class RssSampler {
 public:
  RssSampler() : thread_([this] { Run(); }) {}
  ~RssSampler() {
    stop_ = true;
    thread_.join();
  }
  uint64_t peak_kib() const { return peak_; }

 private:
  void Run() {
    while (!stop_) {
      peak_ =
          std::max<uint64_t>(peak_, ProcField("/proc/self/status", "RssAnon:"));
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> peak_{0};
  std::thread thread_;
};

// CPU time (user + system) and context switches (voluntary + involuntary)
// of the whole process so far.
struct CpuUsage {
  double cpu_ms = 0;
  uint64_t context_switches = 0;
};

CpuUsage ProcessCpu() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto ms = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) * 1e3 +
           static_cast<double>(t.tv_usec) / 1e3;
  };
  return {ms(ru.ru_utime) + ms(ru.ru_stime),
          static_cast<uint64_t>(ru.ru_nvcsw + ru.ru_nivcsw)};
}

double Percentile(std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  const size_t i =
      std::min(sorted.size() - 1,
               static_cast<size_t>(p * static_cast<double>(sorted.size())));
  return sorted[i];
}

struct Results {
  std::mutex mu;
  std::vector<double> latencies_ms;
  std::atomic<uint64_t> failed{0};
  std::string first_error;
};

void Writer(confman::testing::LocalCluster& cluster, const Workload& w,
            int index, bool via_followers, Results& results) {
  uint64_t rng =
      0x5eed0000u + static_cast<uint64_t>(index) * 0x9E3779B97F4A7C15ull + 1;
  std::string value(w.value_bytes, '\0');
  const uint64_t count =
      w.writes / w.writers +
      (static_cast<uint64_t>(index) < w.writes % w.writers ? 1 : 0);
  std::vector<double> mine;
  // Looked up again only after a refusal: a host does not ask who leads
  // before every write, and the lookup (a status of every member) would
  // count against the writes.
  confman::raft::MemberId leader = confman::raft::kNoMember;
  for (uint64_t i = 0; i < count; ++i) {
    FillRandom(rng, value);
    const std::string key = absl::StrCat("w", index, "-", i);
    const auto start = Clock::now();
    absl::Status status;
    // Bounded retries while an election runs.
    for (int attempt = 0; attempt < 50; ++attempt) {
      if (leader == confman::raft::kNoMember) leader = cluster.leader_id();
      auto target = via_followers ? (leader % 3) + 1 : leader;
      confman::Node* node = cluster.member(target == 0 ? 1 : target);
      status = node->Put("bench", key, value).status();
      if (!absl::IsUnavailable(status) && !absl::IsResourceExhausted(status))
        break;
      leader = confman::raft::kNoMember;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    mine.push_back(
        std::chrono::duration<double, std::milli>(Clock::now() - start)
            .count());
    if (!status.ok()) {
      std::lock_guard lock(results.mu);
      if (results.failed++ == 0) results.first_error = status.ToString();
    }
  }
  std::lock_guard lock(results.mu);
  results.latencies_ms.insert(results.latencies_ms.end(), mine.begin(),
                              mine.end());
}

int Usage() {
  std::fprintf(
      stderr,
      "usage: confman_bench_cluster --workload a|b|c|d|e [--dir PARENT] "
      "[--via-followers] [--storage lmdb|memory] [--log-keep N] "
      "[--compact-every N] [--value-in-log-min-bytes N]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  const Workload* workload = nullptr;
  std::string parent;
  bool via_followers = false;
  bool in_memory = false;
  // Non-default log compaction, for experiments (0: keep the default).
  uint64_t log_keep = 0;
  uint64_t compact_every = 0;
  std::optional<uint64_t> value_in_log_min_bytes;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--workload" && i + 1 < argc) {
      const char name = argv[++i][0];
      for (const Workload& w : kWorkloads) {
        if (w.name == name) workload = &w;
      }
    } else if (arg == "--dir" && i + 1 < argc) {
      parent = argv[++i];
    } else if (arg == "--log-keep" && i + 1 < argc) {
      log_keep = std::strtoull(argv[++i], nullptr, 10);
    } else if (arg == "--compact-every" && i + 1 < argc) {
      compact_every = std::strtoull(argv[++i], nullptr, 10);
    } else if (arg == "--value-in-log-min-bytes" && i + 1 < argc) {
      value_in_log_min_bytes = std::strtoull(argv[++i], nullptr, 10);
    } else if (arg == "--storage" && i + 1 < argc) {
      const std::string storage = argv[++i];
      if (storage != "lmdb" && storage != "memory") return Usage();
      in_memory = storage == "memory";
    } else if (arg == "--via-followers") {
      via_followers = true;
    } else {
      return Usage();
    }
  }
  if (workload == nullptr) return Usage();
  const Workload& w = *workload;
  constexpr int kMembers = 3;

  auto cluster = confman::testing::LocalCluster::Start(
      {.members = kMembers,
       .in_memory_storage = in_memory,
       .temp_root = parent,
       .customize = [&](confman::NodeOptions& o) {
         if (log_keep != 0) o.log_keep_entries = log_keep;
         if (compact_every != 0) o.log_compact_every = compact_every;
         if (value_in_log_min_bytes)
           o.value_in_log_min_bytes = *value_in_log_min_bytes;
       }});
  if (!cluster.ok()) {
    std::fprintf(stderr, "cannot start the cluster: %s\n",
                 cluster.status().ToString().c_str());
    return 1;
  }
  if (!(*cluster)->WaitForLeader().ok()) {
    std::fprintf(stderr, "no leader within 10 s\n");
    return 1;
  }
  uint64_t changes_before = 0;
  for (auto id : (*cluster)->ids()) {
    changes_before += (*cluster)->member(id)->GetStatus().leader_changes;
  }
  const uint64_t written_before = ProcField("/proc/self/io", "write_bytes:");
  Results results;
  RssSampler rss;
  const CpuUsage cpu_before = ProcessCpu();
  const auto start = Clock::now();
  {
    std::vector<std::thread> writers;
    for (int i = 0; i < w.writers; ++i) {
      writers.emplace_back(Writer, std::ref(**cluster), std::cref(w), i,
                           via_followers, std::ref(results));
    }
    for (auto& t : writers) t.join();
  }
  const double seconds =
      std::chrono::duration<double>(Clock::now() - start).count();
  const CpuUsage cpu_after = ProcessCpu();
  const double writes = static_cast<double>(w.writes);
  const double cpu_ms_per_write =
      (cpu_after.cpu_ms - cpu_before.cpu_ms) / writes;
  const double switches_per_write =
      static_cast<double>(cpu_after.context_switches -
                          cpu_before.context_switches) /
      writes;
  const uint64_t written =
      ProcField("/proc/self/io", "write_bytes:") - written_before;
  uint64_t leader_changes = 0;
  for (auto id : (*cluster)->ids()) {
    leader_changes = std::max<uint64_t>(
        leader_changes, (*cluster)->member(id)->GetStatus().leader_changes);
  }
  (void)changes_before;
  std::sort(results.latencies_ms.begin(), results.latencies_ms.end());
  const uint64_t ok = w.writes - results.failed;
  const double ops = static_cast<double>(ok) / seconds;
  std::printf(
      "workload %c: %llu x %llu B, %d writers: %.1f writes/s, %.2f MB/s, "
      "p50 %.2f ms, p99 %.2f ms, max %.2f ms, %.3f CPU ms and %.1f "
      "context switches per write, %llu failed%s%s\n",
      w.name, static_cast<unsigned long long>(w.writes),
      static_cast<unsigned long long>(w.value_bytes), w.writers, ops,
      ops * static_cast<double>(w.value_bytes) / 1e6,
      Percentile(results.latencies_ms, 0.50),
      Percentile(results.latencies_ms, 0.99),
      results.latencies_ms.empty() ? 0.0 : results.latencies_ms.back(),
      cpu_ms_per_write, switches_per_write,
      static_cast<unsigned long long>(results.failed.load()),
      results.first_error.empty() ? "" : "; first error: ",
      results.first_error.c_str());
  std::printf(
      "{\"workload\":\"%c\",\"writes\":%llu,\"value_bytes\":%llu,\"writers\":%"
      "d,"
      "\"failed\":%llu,\"ops_per_s\":%.1f,\"mb_per_s\":%.2f,\"p50_ms\":%.2f,"
      "\"p99_ms\":%.2f,\"max_ms\":%.2f,\"leader_changes\":%llu,"
      "\"peak_rss_anon_mib\":%.1f,\"disk_bytes_written_per_member\":%llu,"
      "\"cpu_ms_per_write\":%.4f,\"context_switches_per_write\":%.2f,"
      "\"storage\":\"%s\",\"seconds\":%.2f}\n",
      w.name, static_cast<unsigned long long>(w.writes),
      static_cast<unsigned long long>(w.value_bytes), w.writers,
      static_cast<unsigned long long>(results.failed.load()), ops,
      ops * static_cast<double>(w.value_bytes) / 1e6,
      Percentile(results.latencies_ms, 0.50),
      Percentile(results.latencies_ms, 0.99),
      results.latencies_ms.empty() ? 0.0 : results.latencies_ms.back(),
      static_cast<unsigned long long>(leader_changes),
      static_cast<double>(rss.peak_kib()) / 1024.0 / kMembers,
      static_cast<unsigned long long>(written / kMembers), cpu_ms_per_write,
      switches_per_write, in_memory ? "memory" : "lmdb", seconds);
  return results.failed == 0 ? 0 : 1;
}
