// The machinery of a fault run that is not about faults: seeded
// randomness, the run's clock, what the members report (metrics, log
// lines), their log stores, the table through which clients call members
// that the nemesis may crash, and the watchers. Used by fault_harness.cc
// only.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "confman/metrics.h"
#include "confman/node.h"
#include "fault_store.h"
#include "history.h"

namespace confman::fault {

using Clock = std::chrono::steady_clock;
using raft::MemberId;
using std::chrono::milliseconds;

// Every key of a run lives in this namespace.
inline constexpr char kNamespace[] = "fault";
// Member log lines kept for a failure report.
inline constexpr size_t kRecentLogLines = 400;
// Closing a member makes its pending calls return at once; a call that
// stays inside a closed Node this long never will.
inline constexpr auto kCallDrainTimeout = std::chrono::seconds(60);

// ---------------------------------------------------------------------------
// Randomness: one generator per client and one for the nemesis, each seeded
// from the run's seed, so that a seed names one schedule.

inline uint64_t MixSeed(uint64_t seed, uint64_t stream) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + stream + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

class Rng {
 public:
  explicit Rng(uint64_t seed) : engine_(seed) {}
  uint64_t Next() { return engine_(); }
  // Uniform in [lo, hi].
  int64_t Between(int64_t lo, int64_t hi) {
    return lo +
           static_cast<int64_t>(engine_() % static_cast<uint64_t>(hi - lo + 1));
  }
  double Unit() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }
  bool Chance(double p) { return Unit() < p; }
  milliseconds Millis(int64_t lo, int64_t hi) {
    return milliseconds(Between(lo, hi));
  }
  // Log-uniform in [lo, hi]: every octave as likely as the next.
  size_t LogUniform(size_t lo, size_t hi) {
    const double v =
        static_cast<double>(lo) *
        std::pow(static_cast<double>(hi) / static_cast<double>(lo), Unit());
    return std::clamp(static_cast<size_t>(v), lo, hi);
  }

 private:
  std::mt19937_64 engine_;
};

template <typename T>
const T& PickFrom(const std::vector<T>& items, uint64_t draw) {
  return items[draw % items.size()];
}

inline bool Contains(const std::vector<raft::MemberId>& ids,
                     raft::MemberId id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

class RunClock {
 public:
  RunClock() : start_(Clock::now()) {}
  Nanos Now() const {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() -
                                                                start_)
        .count();
  }

 private:
  const Clock::time_point start_;
};

// ---------------------------------------------------------------------------
// What the members report.

class RunMetrics final : public MetricsSink {
 public:
  void AddCounter(std::string_view name, uint64_t delta) override {
    if (name == "node.snapshots_received") {
      snapshots_received += delta;
    } else if (name == "node.snapshots_sent") {
      snapshots_sent += delta;
    } else if (name == "node.storage_errors") {
      storage_errors += delta;
    }
  }
  void RecordHistogram(std::string_view, double) override {}

  std::atomic<uint64_t> snapshots_received{0};
  std::atomic<uint64_t> snapshots_sent{0};
  std::atomic<uint64_t> storage_errors{0};
};

// Member log lines and the nemesis' own notes: printed at once when
// verbose, the last few hundred kept for a failure report. It also tells
// the nemesis when a leader starts streaming a snapshot, so that it can
// crash someone in the middle of one.
class RunLog final : public LogSink {
 public:
  RunLog(const RunClock& clock, bool verbose)
      : clock_(clock), verbose_(verbose) {}

  void Log(LogLevel level, std::string_view line) override {
    Add(absl::StrCat(LogLevelName(level), " ",
                     absl::string_view(line.data(), line.size())));
    constexpr std::string_view kSending = "sending snapshot at index";
    constexpr std::string_view kTo = "to member ";
    const size_t to = line.rfind(kTo);
    if (line.find(kSending) == std::string_view::npos ||
        to == std::string_view::npos) {
      return;
    }
    const MemberId receiver = std::strtoull(
        std::string(line.substr(to + kTo.size())).c_str(), nullptr, 10);
    std::lock_guard lock(mu_);
    snapshot_sends_[receiver] = Clock::now();
  }

  void Note(const std::string& line) { Add(absl::StrCat("NEMESIS ", line)); }

  // When a snapshot stream to `to` last started (the epoch if never).
  Clock::time_point LastSnapshotSendTo(MemberId to) const {
    std::lock_guard lock(mu_);
    auto it = snapshot_sends_.find(to);
    return it == snapshot_sends_.end() ? Clock::time_point() : it->second;
  }

  std::vector<std::string> Recent() const {
    std::lock_guard lock(mu_);
    return {recent_.begin(), recent_.end()};
  }

 private:
  void Add(std::string line) {
    char stamp[32];
    std::snprintf(stamp, sizeof(stamp), "%9.3f ",
                  static_cast<double>(clock_.Now()) / 1e9);
    line.insert(0, stamp);
    if (verbose_) std::fprintf(stderr, "%s\n", line.c_str());
    std::lock_guard lock(mu_);
    recent_.push_back(std::move(line));
    if (recent_.size() > kRecentLogLines) recent_.pop_front();
  }

  const RunClock& clock_;
  const bool verbose_;
  mutable std::mutex mu_;
  std::deque<std::string> recent_;                        // Guarded by mu_.
  std::map<MemberId, Clock::time_point> snapshot_sends_;  // Guarded by mu_.
};

// Each running member's log store, registered by the store factory when
// the member opens. Used by the nemesis thread only, and only while that
// member runs (it is the thread that crashes members).
class StoreRegistry {
 public:
  void Register(MemberId id, HarnessLogStore* store) {
    std::lock_guard lock(mu_);
    stores_[id] = store;
  }
  void Forget(MemberId id) {
    std::lock_guard lock(mu_);
    stores_.erase(id);
  }
  HarnessLogStore* Find(MemberId id) const {
    std::lock_guard lock(mu_);
    auto it = stores_.find(id);
    return it == stores_.end() ? nullptr : it->second;
  }

 private:
  mutable std::mutex mu_;
  std::map<MemberId, HarnessLogStore*> stores_;  // Guarded by mu_.
};

// The members clients may call. A Node must not be destroyed while a
// client thread is inside one of its methods, so clients hold a Lease per
// call and the nemesis withdraws a member (no new calls, Close, wait for
// the calls in flight) before LocalCluster destroys it.
class MemberTable {
 public:
  class Lease {
   public:
    Lease(MemberTable* table, MemberId id, Node* node)
        : table_(table), id_(id), node_(node) {}
    Lease(Lease&& other) noexcept
        : table_(std::exchange(other.table_, nullptr)),
          id_(other.id_),
          node_(other.node_) {}
    Lease& operator=(Lease&&) = delete;
    ~Lease() {
      if (table_ != nullptr) table_->Release(id_);
    }
    Node* node() const { return node_; }

   private:
    MemberTable* table_;
    MemberId id_;
    Node* node_;
  };

  std::optional<Lease> Acquire(MemberId id) {
    std::lock_guard lock(mu_);
    auto it = slots_.find(id);
    if (it == slots_.end() || it->second.node == nullptr) return std::nullopt;
    ++it->second.in_flight;
    return Lease(this, id, it->second.node);
  }

  void Publish(MemberId id, Node* node) {
    std::lock_guard lock(mu_);
    slots_[id].node = node;
  }

  // Returns once no client is inside member `id`'s Node, which is closed.
  void Withdraw(MemberId id) {
    Node* node = nullptr;
    {
      std::lock_guard lock(mu_);
      node = std::exchange(slots_[id].node, nullptr);
    }
    if (node == nullptr) return;
    node->Close();
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, kCallDrainTimeout,
                      [&] { return slots_[id].in_flight == 0; })) {
      // Destroying the Node now would pull it from under a caller.
      std::fprintf(
          stderr,
          "confman_fault: a call into member %llu did not return within "
          "60 s of its Close(); aborting\n",
          static_cast<unsigned long long>(id));
      std::abort();
    }
  }

  std::vector<MemberId> Running() const {
    std::lock_guard lock(mu_);
    std::vector<MemberId> ids;
    for (const auto& [id, slot] : slots_) {
      if (slot.node != nullptr) ids.push_back(id);
    }
    return ids;
  }

 private:
  struct Slot {
    Node* node = nullptr;
    int in_flight = 0;
  };

  void Release(MemberId id) {
    {
      std::lock_guard lock(mu_);
      --slots_[id].in_flight;
    }
    cv_.notify_all();
  }

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<MemberId, Slot> slots_;  // Guarded by mu_.
};

// ---------------------------------------------------------------------------
// Watches. Two watchers follow each member (the whole namespace, and one
// key prefix); a watcher's stream ends when its member is crashed or the
// watch fails, and a new stream resumes from the last revision it got.
// Driven by the nemesis thread; callbacks touch only their stream record.

struct StreamRecord {
  std::mutex mu;
  WatchStream stream;          // Guarded by mu.
  uint64_t last_revision = 0;  // Guarded by mu.
  bool ended = false;          // Guarded by mu.
  absl::Status end_status;     // Guarded by mu.
};

class Watchers {
 public:
  explicit Watchers(RunLog& log) : log_(log) {}

  void AddMember(MemberId id, Node* node) {
    for (const char* prefix : {"", "k1"}) {
      watchers_.push_back(
          Watcher{.id = next_id_++, .member = id, .prefix = prefix});
      Start(watchers_.back(), node);
    }
  }

  // Ends the streams on member `id` (before it is crashed).
  void Stop(MemberId id) {
    for (Watcher& w : watchers_) {
      if (w.member == id) StopStream(w);
    }
  }

  // New streams for member `id`'s watchers (after it restarted).
  void Resume(MemberId id, Node* node) {
    for (Watcher& w : watchers_) {
      if (w.member == id && !w.retired && w.record == nullptr) Start(w, node);
    }
  }

  // Member `id` left the cluster for good.
  void Retire(MemberId id) {
    for (Watcher& w : watchers_) {
      if (w.member != id) continue;
      StopStream(w);
      w.retired = true;
    }
  }

  // Replaces streams that ended by themselves. `running` is the member's
  // Node, or nullptr when it is down.
  void Maintain(const std::function<Node*(MemberId)>& running) {
    for (Watcher& w : watchers_) {
      if (w.retired || w.record == nullptr) continue;
      absl::Status ended;
      {
        std::lock_guard lock(w.record->mu);
        if (!w.record->ended) continue;
        ended = w.record->end_status;
      }
      StopStream(w);
      Node* node = running(w.member);
      if (node == nullptr) continue;
      if (absl::IsOutOfRange(ended)) {
        // The history it needs was compacted: carry on from what the
        // member holds now, as node.h tells a host to.
        absl::StatusOr<kv::ListPage> page =
            node->List({.ns = kNamespace, .limit = 1, .keys_only = true},
                       {ReadConsistency::kLocal});
        if (!page.ok()) continue;
        w.resume_after = page->revision;
      }
      Start(w, node);
    }
  }

  void StopAll() {
    for (Watcher& w : watchers_) StopStream(w);
  }

  // The lowest revision the whole-namespace watchers with a stream have
  // reached.
  uint64_t LowestActiveRevision() {
    uint64_t lowest = UINT64_MAX;
    for (Watcher& w : watchers_) {
      if (w.record == nullptr || !w.prefix.empty()) continue;
      std::lock_guard lock(w.record->mu);
      lowest = std::min(lowest, w.record->last_revision);
    }
    return lowest;
  }

  std::vector<WatchStream> Streams() {
    std::vector<WatchStream> streams;
    for (const auto& record : records_) {
      std::lock_guard lock(record->mu);
      streams.push_back(record->stream);
    }
    return streams;
  }

 private:
  struct Watcher {
    int id = 0;
    MemberId member = raft::kNoMember;
    std::string prefix{};
    uint64_t resume_after = 0;
    bool retired = false;
    std::unique_ptr<WatchHandle> handle{};
    std::shared_ptr<StreamRecord> record{};
  };

  void Start(Watcher& w, Node* node) {
    auto record = std::make_shared<StreamRecord>();
    record->stream = WatchStream{.watcher = w.id,
                                 .member = w.member,
                                 .prefix = w.prefix,
                                 .after_revision = w.resume_after};
    record->last_revision = w.resume_after;
    absl::StatusOr<std::unique_ptr<WatchHandle>> handle =
        node->Watch({.ns = kNamespace,
                     .prefix = w.prefix,
                     .after_revision = w.resume_after},
                    [record](absl::StatusOr<kv::Change> change) {
                      std::lock_guard lock(record->mu);
                      if (record->ended) return;
                      if (!change.ok()) {
                        record->ended = true;
                        record->end_status = change.status();
                        return;
                      }
                      record->stream.events.push_back(WatchEvent{
                          .revision = change->revision,
                          .is_delete = change->op == kv::ChangeOp::kDelete,
                          .key = change->key});
                      record->last_revision = change->revision;
                    });
    if (!handle.ok()) {
      log_.Note(absl::StrCat("watch on member ", w.member,
                             " failed to start: ", handle.status().ToString()));
      return;
    }
    w.handle = std::move(*handle);
    w.record = record;
    records_.push_back(std::move(record));
  }

  void StopStream(Watcher& w) {
    if (w.handle != nullptr) {
      w.handle->Cancel();
      w.handle.reset();
    }
    if (w.record == nullptr) return;
    {
      std::lock_guard lock(w.record->mu);
      w.record->ended = true;
      w.resume_after = w.record->last_revision;
    }
    w.record.reset();
  }

  RunLog& log_;
  int next_id_ = 0;
  std::deque<Watcher> watchers_;  // Stable addresses while growing.
  std::vector<std::shared_ptr<StreamRecord>> records_;
};

}  // namespace confman::fault
