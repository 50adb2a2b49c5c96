// confman_bench_watch: many watches on one follower of a three-member
// cluster (TCP on 127.0.0.1, LMDB), while writes go on through the leader.
//
//   confman_bench_watch [--watches N] [--seconds S] [--rate W]
//                       [--watch-threads T] [--dir PARENT]
//
// Defaults: 10,000 watches, 10 s of writes at 1,000 writes/s, the default
// watch_threads. Watches are a mix on namespace "svc": 1% the whole
// namespace, 10% one key each ("appP/kK"), the rest one of 100 prefixes
// ("appP/"). Writes go to random keys of "svc" (90%) and of another
// namespace no watch matches (10%).
//
// Reports the process's threads (before any watch, with one, with all),
// the anonymous memory the watches add (RssAnon), delivery latency from
// commit (the leader acknowledging the write) and from submission (the
// change's time stamp) to the callback, changes lost or duplicated per
// watch, the time to cancel every watch while writes go on, and the time to
// close a member holding every watch. Ends with one JSON line.
#include <dirent.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "confman/node.h"
#include "confman/testing/local_cluster.h"

namespace {

using Clock = std::chrono::steady_clock;
using confman::Node;
using confman::kv::Change;

constexpr int kPrefixes = 100;
constexpr int kKeysPerPrefix = 10;
constexpr char kNamespace[] = "svc";

int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             Clock::now().time_since_epoch())
      .count();
}

int64_t WallMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A /proc/self/status field, in kB.
uint64_t StatusKib(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field, 0) == 0) {
      return std::strtoull(line.c_str() + field.size(), nullptr, 10);
    }
  }
  return 0;
}

int Threads() {
  int count = 0;
  if (DIR* dir = opendir("/proc/self/task")) {
    while (dirent* entry = readdir(dir)) {
      if (entry->d_name[0] != '.') ++count;
    }
    closedir(dir);
  }
  return count;
}

// Samples RssAnon every 20 ms and keeps the peak.
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
      peak_ = std::max<uint64_t>(peak_, StatusKib("RssAnon:"));
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> peak_{0};
  std::thread thread_;
};

// Latencies in 10 us buckets up to 2 s (one overflow bucket), lock-free.
class Histogram {
 public:
  static constexpr int64_t kBucketMicros = 10;
  static constexpr size_t kBuckets = 200000;
  Histogram() : buckets_(kBuckets + 1) {}
  void Add(int64_t micros) {
    micros = std::max<int64_t>(micros, 0);
    const size_t bucket =
        std::min<size_t>(static_cast<size_t>(micros / kBucketMicros), kBuckets);
    buckets_[bucket].fetch_add(1, std::memory_order_relaxed);
    int64_t max = max_.load(std::memory_order_relaxed);
    while (micros > max && !max_.compare_exchange_weak(
                               max, micros, std::memory_order_relaxed)) {
    }
  }
  uint64_t count() const {
    uint64_t n = 0;
    for (const auto& b : buckets_) n += b.load(std::memory_order_relaxed);
    return n;
  }
  double PercentileMs(double p) const {
    const uint64_t total = count();
    if (total == 0) return 0;
    const uint64_t rank = static_cast<uint64_t>(p * static_cast<double>(total));
    uint64_t seen = 0;
    for (size_t i = 0; i < buckets_.size(); ++i) {
      seen += buckets_[i].load(std::memory_order_relaxed);
      if (seen > rank)
        return static_cast<double>((i + 1) * kBucketMicros) / 1000.0;
    }
    return MaxMs();
  }
  double MaxMs() const { return static_cast<double>(max_.load()) / 1000.0; }

 private:
  std::vector<std::atomic<uint64_t>> buckets_;
  std::atomic<int64_t> max_{0};
};

// What one watch matches and what it received. Its callbacks run one at a
// time, so only the main thread's reads need the atomics.
struct WatchStat {
  enum class Kind : uint8_t { kNamespace, kPrefix, kKey };
  Kind kind = Kind::kPrefix;
  int prefix = 0;
  int key = 0;
  std::atomic<uint64_t> last{0};
  std::atomic<uint64_t> received{0};
  std::atomic<uint64_t> duplicated{0};
  std::atomic<uint64_t> errors{0};
};

struct Shared {
  uint64_t base_revision = 0;  // Writes' revisions are above it.
  std::vector<std::atomic<int64_t>> ack_micros;  // By revision - base.
  Histogram from_commit;
  Histogram from_submit;
  explicit Shared(size_t revisions) : ack_micros(revisions) {}
};

confman::WatchRequest RequestFor(const WatchStat& stat, uint64_t after) {
  confman::WatchRequest request{.ns = kNamespace, .after_revision = after};
  if (stat.kind == WatchStat::Kind::kPrefix) {
    request.prefix = absl::StrCat("app", stat.prefix, "/");
  } else if (stat.kind == WatchStat::Kind::kKey) {
    request.key = absl::StrCat("app", stat.prefix, "/k", stat.key);
  }
  return request;
}

confman::WatchCallback CallbackFor(WatchStat* stat, Shared* shared) {
  return [stat, shared](absl::StatusOr<Change> change) {
    if (!change.ok()) {
      stat->errors.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    const int64_t now = NowMicros();
    shared->from_submit.Add(WallMicros() - change->time_unix_micros);
    const uint64_t slot = change->revision - shared->base_revision;
    if (change->revision > shared->base_revision &&
        slot < shared->ack_micros.size()) {
      const int64_t ack =
          shared->ack_micros[slot].load(std::memory_order_acquire);
      // Delivered before the writer heard of the commit: no delay at all.
      shared->from_commit.Add(ack == 0 ? 0 : now - ack);
    }
    if (change->revision <= stat->last.load(std::memory_order_relaxed)) {
      stat->duplicated.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    stat->last.store(change->revision, std::memory_order_relaxed);
    stat->received.fetch_add(1, std::memory_order_relaxed);
  };
}

// Paced writes through the leader; successful ones are counted by what
// they match.
class Writer {
 public:
  Writer(Node* leader, Shared& shared, int rate)
      : leader_(leader), shared_(shared), rate_(rate) {}
  ~Writer() { Stop(); }

  void Start() {
    stop_ = false;
    thread_ = std::thread([this] { Run(); });
  }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    while (outstanding_ > 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }

  // Matching counts, read once the writer has stopped.
  uint64_t namespace_writes() const { return namespace_writes_; }
  uint64_t prefix_writes(int p) const { return prefix_writes_[p]; }
  uint64_t key_writes(int p, int k) const {
    return key_writes_[p * kKeysPerPrefix + k];
  }
  uint64_t submitted() const { return submitted_; }
  uint64_t failed() const { return failed_; }
  std::string first_error() {
    std::lock_guard lock(mu_);
    return first_error_;
  }

 private:
  void Run() {
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    const auto tick = std::chrono::milliseconds(10);
    const int per_tick = std::max(1, rate_ / 100);
    auto next = Clock::now();
    while (!stop_) {
      for (int i = 0; i < per_tick; ++i) {
        if (outstanding_ > 5000) break;  // Never queue without bound.
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        const uint64_t r = rng * 0x2545F4914F6CDD1Dull;
        const int p = static_cast<int>((r >> 8) % kPrefixes);
        const int k = static_cast<int>((r >> 20) % kKeysPerPrefix);
        const bool elsewhere = (r >> 40) % 10 == 0;
        ++outstanding_;
        ++submitted_;
        leader_->WriteAsync(
            confman::kv::Command{.kind = confman::kv::Command::Kind::kPut,
                                 .ns = elsewhere ? "other" : kNamespace,
                                 .key = absl::StrCat("app", p, "/k", k),
                                 .value = std::string(100, 'v')},
            {}, [this, p, k, elsewhere](absl::StatusOr<uint64_t> revision) {
              if (revision.ok()) {
                const uint64_t slot = *revision - shared_.base_revision;
                if (*revision > shared_.base_revision &&
                    slot < shared_.ack_micros.size()) {
                  shared_.ack_micros[slot].store(NowMicros(),
                                                 std::memory_order_release);
                }
                if (!elsewhere) {
                  ++namespace_writes_;
                  ++prefix_writes_[p];
                  ++key_writes_[p * kKeysPerPrefix + k];
                }
              } else {
                std::lock_guard lock(mu_);
                if (failed_++ == 0) first_error_ = revision.status().ToString();
              }
              --outstanding_;
            });
      }
      next += tick;
      std::this_thread::sleep_until(next);
    }
  }

  Node* const leader_;
  Shared& shared_;
  const int rate_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int> outstanding_{0};
  std::atomic<uint64_t> submitted_{0};
  // Written on the leader's apply thread only, read after Stop.
  uint64_t namespace_writes_ = 0;
  uint64_t prefix_writes_[kPrefixes] = {};
  uint64_t key_writes_[kPrefixes * kKeysPerPrefix] = {};
  std::mutex mu_;
  uint64_t failed_ = 0;  // Guarded by mu_.
  std::string first_error_;
};

uint64_t Expected(const WatchStat& stat, const Writer& writer) {
  switch (stat.kind) {
    case WatchStat::Kind::kNamespace:
      return writer.namespace_writes();
    case WatchStat::Kind::kPrefix:
      return writer.prefix_writes(stat.prefix);
    case WatchStat::Kind::kKey:
      return writer.key_writes(stat.prefix, stat.key);
  }
  return 0;
}

int Usage() {
  std::fprintf(stderr,
               "usage: confman_bench_watch [--watches N] [--seconds S] "
               "[--rate W] [--watch-threads T] [--dir PARENT]\n");
  return 2;
}

double Mib(uint64_t kib) { return static_cast<double>(kib) / 1024.0; }

double MsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start)
      .count();
}

}  // namespace

int main(int argc, char** argv) {
  int watches = 10000;
  int seconds = 10;
  int rate = 1000;
  uint32_t watch_threads = 0;  // 0: the default.
  std::string parent;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) return Usage();
    if (arg == "--watches") {
      watches = std::atoi(argv[++i]);
    } else if (arg == "--seconds") {
      seconds = std::atoi(argv[++i]);
    } else if (arg == "--rate") {
      rate = std::atoi(argv[++i]);
    } else if (arg == "--watch-threads") {
      watch_threads = static_cast<uint32_t>(std::atoi(argv[++i]));
    } else if (arg == "--dir") {
      parent = argv[++i];
    } else {
      return Usage();
    }
  }
  if (watches < 1 || seconds < 1 || rate < 100) return Usage();

  auto started = confman::testing::LocalCluster::Start(
      {.members = 3,
       .temp_root = parent,
       .customize = [&](confman::NodeOptions& o) {
         if (watch_threads != 0) o.watch_threads = watch_threads;
       }});
  if (!started.ok()) {
    std::fprintf(stderr, "cannot start the cluster: %s\n",
                 started.status().ToString().c_str());
    return 1;
  }
  confman::testing::LocalCluster& cluster = **started;
  auto leader_or = cluster.WaitForLeader();
  if (!leader_or.ok()) {
    std::fprintf(stderr, "no leader within 10 s\n");
    return 1;
  }
  Node* leader = *leader_or;
  const confman::raft::MemberId leader_id = cluster.leader_id();
  confman::raft::MemberId follower_id = 0;
  for (auto id : cluster.ids()) {
    if (id != leader_id) follower_id = id;
  }
  Node* follower = cluster.member(follower_id);

  auto page = leader->List({.ns = kNamespace, .limit = 1, .keys_only = true});
  if (!page.ok()) {
    std::fprintf(stderr, "cannot read the revision: %s\n",
                 page.status().ToString().c_str());
    return 1;
  }
  // Room for every write's revision (twice the writes, for the cancel phase).
  auto shared = std::make_unique<Shared>(
      static_cast<size_t>(rate) * seconds * 3 + 100000);
  shared->base_revision = page->revision;
  if (!cluster.WaitForApplied(leader->GetStatus().applied_index).ok()) {
    std::fprintf(stderr, "members did not catch up\n");
    return 1;
  }
  std::vector<std::unique_ptr<WatchStat>> stats;
  for (int i = 0; i < watches; ++i) {
    auto stat = std::make_unique<WatchStat>();
    stat->prefix = (i / 10) % kPrefixes;
    if (i % 100 == 0) {
      stat->kind = WatchStat::Kind::kNamespace;
    } else if (i % 10 == 1) {
      stat->kind = WatchStat::Kind::kKey;
      stat->key = (i / 1000) % kKeysPerPrefix;
    }
    stats.push_back(std::move(stat));
  }
  std::vector<std::unique_ptr<confman::WatchHandle>> handles;
  handles.reserve(static_cast<size_t>(watches));

  const int threads_before = Threads();
  auto open_watch = [&](int i, uint64_t after) -> bool {
    auto handle = follower->Watch(RequestFor(*stats[i], after),
                                  CallbackFor(stats[i].get(), shared.get()));
    if (!handle.ok()) {
      std::fprintf(stderr, "watch %d: %s\n", i,
                   handle.status().ToString().c_str());
      return false;
    }
    handles.push_back(std::move(*handle));
    return true;
  };
  if (!open_watch(0, shared->base_revision)) return 1;
  const int threads_one_watch = Threads();
  const uint64_t rss_before = StatusKib("RssAnon:");
  const auto create_start = Clock::now();
  for (int i = 1; i < watches; ++i) {
    if (!open_watch(i, shared->base_revision)) return 1;
  }
  const double create_ms = MsSince(create_start);
  const int threads_all = Threads();
  const uint64_t rss_created = StatusKib("RssAnon:");

  // Writes, then every watch must have exactly what matched.
  Writer writer(leader, *shared, rate);
  int threads_during = 0;
  double write_seconds = 0;
  uint64_t rss_peak = 0;
  {
    RssSampler sampler;
    const auto half = std::chrono::milliseconds(seconds * 1000) / 2;
    const auto writes_start = Clock::now();
    writer.Start();
    std::this_thread::sleep_for(half);
    threads_during = Threads() - 2;  // Less the sampler and the writer.
    std::this_thread::sleep_until(writes_start + 2 * half);
    writer.Stop();
    write_seconds = MsSince(writes_start) / 1000.0;
    rss_peak = sampler.peak_kib();
  }
  const uint64_t writes_submitted = writer.submitted();
  const uint64_t writes_failed = writer.failed();
  const std::string first_error = writer.first_error();
  uint64_t expected_total = 0;
  for (const auto& stat : stats) expected_total += Expected(*stat, writer);
  auto received_total = [&] {
    uint64_t n = 0;
    for (const auto& stat : stats) n += stat->received.load();
    return n;
  };
  const auto drain_start = Clock::now();
  while (received_total() < expected_total && MsSince(drain_start) < 30000) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // Late extras.
  uint64_t lost = 0;
  uint64_t extra = 0;
  uint64_t duplicated = 0;
  uint64_t ended = 0;
  for (const auto& stat : stats) {
    const uint64_t want = Expected(*stat, writer);
    const uint64_t got = stat->received.load();
    lost += want > got ? want - got : 0;
    extra += got > want ? got - want : 0;
    duplicated += stat->duplicated.load();
    ended += stat->errors.load();
  }
  const uint64_t deliveries = received_total();

  // Cancel every watch while writes go on.
  writer.Start();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  double slowest_cancel_us = 0;
  const auto cancel_start = Clock::now();
  for (auto& handle : handles) {
    const auto one = Clock::now();
    handle.reset();
    slowest_cancel_us = std::max(
        slowest_cancel_us,
        std::chrono::duration<double, std::micro>(Clock::now() - one).count());
  }
  const double cancel_ms = MsSince(cancel_start);
  handles.clear();
  writer.Stop();

  // Close the member while it holds every watch (from its latest revision:
  // replaying the history for each would only measure catch-up).
  auto now_page =
      follower->List({.ns = kNamespace, .limit = 1, .keys_only = true},
                     {confman::ReadConsistency::kLocal});
  if (!now_page.ok()) return 1;
  for (int i = 0; i < watches; ++i) {
    if (!open_watch(i, now_page->revision)) return 1;
  }
  const auto close_start = Clock::now();
  (void)cluster.Crash(follower_id);
  const double close_ms = MsSince(close_start);
  handles.clear();

  const double commit_p50 = shared->from_commit.PercentileMs(0.50);
  const double commit_p99 = shared->from_commit.PercentileMs(0.99);
  const double commit_max = shared->from_commit.MaxMs();
  const double submit_p50 = shared->from_submit.PercentileMs(0.50);
  const double submit_p99 = shared->from_submit.PercentileMs(0.99);
  const double submit_max = shared->from_submit.MaxMs();
  const uint64_t writes_ok = writes_submitted - writes_failed;

  std::printf(
      "watches: %d on member %llu (1%% namespace, 10%% single key, 89%% "
      "one of %d prefixes), created in %.0f ms\n",
      watches, static_cast<unsigned long long>(follower_id), kPrefixes,
      create_ms);
  std::printf(
      "threads: %d before any watch, %d with one, %d with all, %d during "
      "writes\n",
      threads_before, threads_one_watch, threads_all, threads_during);
  std::printf(
      "RssAnon added: %.1f MiB by creating the watches, peak %.1f MiB "
      "during writes\n",
      Mib(rss_created - rss_before),
      Mib(rss_peak > rss_before ? rss_peak - rss_before : 0));
  std::printf(
      "writes: %llu submitted over %.1f s (%.0f/s; %llu failed%s%s), %llu "
      "events delivered (%.0f/s)\n",
      static_cast<unsigned long long>(writes_submitted), write_seconds,
      static_cast<double>(writes_submitted) / write_seconds,
      static_cast<unsigned long long>(writes_failed),
      writes_failed ? "; first: " : "", first_error.c_str(),
      static_cast<unsigned long long>(deliveries),
      static_cast<double>(deliveries) / write_seconds);
  std::printf(
      "delivery latency from commit: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
      commit_p50, commit_p99, commit_max);
  std::printf(
      "delivery latency from submission: p50 %.2f ms, p99 %.2f ms, max "
      "%.2f ms\n",
      submit_p50, submit_p99, submit_max);
  std::printf(
      "lost %llu, duplicated %llu, unexpected %llu, watches ended %llu\n",
      static_cast<unsigned long long>(lost),
      static_cast<unsigned long long>(duplicated),
      static_cast<unsigned long long>(extra),
      static_cast<unsigned long long>(ended));
  std::printf(
      "cancel all under writes: %.1f ms (slowest one %.0f us); close with "
      "all open: %.1f ms\n",
      cancel_ms, slowest_cancel_us, close_ms);
  std::printf(
      "{\"bench\":\"watch\",\"watches\":%d,\"seconds\":%d,\"rate\":%d,"
      "\"writes_ok\":%llu,\"writes_failed\":%llu,\"deliveries\":%llu,"
      "\"threads_before\":%d,\"threads_one_watch\":%d,\"threads_all_watches\":%"
      "d,"
      "\"threads_during_writes\":%d,\"rss_anon_added_mib\":%.1f,"
      "\"rss_anon_peak_added_mib\":%.1f,\"latency_commit_p50_ms\":%.2f,"
      "\"latency_commit_p99_ms\":%.2f,\"latency_commit_max_ms\":%.2f,"
      "\"latency_submit_p50_ms\":%.2f,\"latency_submit_p99_ms\":%.2f,"
      "\"latency_submit_max_ms\":%.2f,\"lost\":%llu,\"duplicated\":%llu,"
      "\"unexpected\":%llu,\"ended\":%llu,\"cancel_all_ms\":%.1f,"
      "\"slowest_cancel_us\":%.0f,\"close_with_watches_ms\":%.1f}\n",
      watches, seconds, rate, static_cast<unsigned long long>(writes_ok),
      static_cast<unsigned long long>(writes_failed),
      static_cast<unsigned long long>(deliveries), threads_before,
      threads_one_watch, threads_all, threads_during,
      Mib(rss_created - rss_before),
      Mib(rss_peak > rss_before ? rss_peak - rss_before : 0), commit_p50,
      commit_p99, commit_max, submit_p50, submit_p99, submit_max,
      static_cast<unsigned long long>(lost),
      static_cast<unsigned long long>(duplicated),
      static_cast<unsigned long long>(extra),
      static_cast<unsigned long long>(ended), cancel_ms, slowest_cancel_us,
      close_ms);
  return lost == 0 && duplicated == 0 && extra == 0 ? 0 : 1;
}
