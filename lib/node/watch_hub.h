// WatchHub: every watch of one member, served by a fixed set of threads.
//
// One reader thread (confman-watchrd) pages the state machine's change
// history once per revision advance and hands each change to the watches it
// matches, found through an index by namespace, exact key and prefix, so the
// cost of a change grows with the watches it matches, not with all of them.
// A watch is a cursor, a callback and a bounded queue; a few delivery
// workers (confman-watch) run the callbacks, one watch at a time per
// worker, so a slow callback holds one worker while the others serve every
// other watch.
//
// A watch that starts behind the reader (it resumes from an older revision)
// catches up on its own: a worker pages the history from its cursor, one
// page at a time and only once its queue has drained, until the cursor
// reaches the reader's; then it joins the index. The history, not the apply
// path, is the source of truth, so a watch never misses, repeats or
// reorders a change across leader changes, and resumes from any retained
// revision.
//
// Handles share ownership of the hub and of their watch's state, never of
// the Node: a handle outliving the Node, or destroyed while it closes, only
// touches memory it co-owns.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/mutex.h"
#include "confman/kv/kv_state_machine.h"
#include "confman/node.h"

namespace confman::node_internal {

struct WatchHubOptions {
  uint32_t threads = 2;           // Delivery workers.
  uint64_t queue_events = 10000;  // Per watch, before it is ended.
};

class WatchHub : public std::enable_shared_from_this<WatchHub> {
 public:
  using Clock = std::chrono::steady_clock;

  WatchHub() = default;
  ~WatchHub();
  WatchHub(const WatchHub&) = delete;
  WatchHub& operator=(const WatchHub&) = delete;

  // Registers a validated request. The first call starts the threads, with
  // `sm` (which must stay valid until Stop returns) and `options`.
  // Unavailable once Stop has begun.
  [[nodiscard]] absl::StatusOr<std::unique_ptr<WatchHandle>> Add(
      const kv::KvStateMachine& sm, const WatchHubOptions& options,
      const WatchRequest& request, WatchCallback callback);

  // The state machine's revision moved (apply thread). Cheap, never blocks
  // on delivery.
  void NotifyRevision();

  // Ends every open watch with Unavailable (delivered on a worker after its
  // running callback), then joins the threads. No callback runs after it
  // returns, and the state machine is not read again. Idempotent.
  void Stop();

 private:
  class Handle;
  struct Event {
    std::shared_ptr<const kv::Change> change;  // Null: a progress notice.
    uint64_t revision = 0;
  };
  // FIFO of events. An idle watch holds no allocation (a std::deque holds
  // one even when empty, which 10,000 idle watches would pay for).
  class EventQueue {
   public:
    bool empty() const { return head_ == events_.size(); }
    size_t size() const { return events_.size() - head_; }
    void push_back(Event event) {
      // Drop the consumed front once it is at least half the buffer, so
      // the buffer stays within twice the queue's length.
      if (head_ > 0 && head_ * 2 >= events_.size()) {
        events_.erase(events_.begin(),
                      events_.begin() + static_cast<ptrdiff_t>(head_));
        head_ = 0;
      }
      events_.push_back(std::move(event));
    }
    Event pop_front() {
      Event event = std::move(events_[head_++]);
      if (empty()) Release();
      return event;
    }
    void Release() {
      std::vector<Event>().swap(events_);
      head_ = 0;
    }

   private:
    std::vector<Event> events_;
    size_t head_ = 0;
  };
  enum class End : uint8_t { kNone, kOverflow, kError, kClosing };
  struct Watch {
    Watch(uint64_t id_in, WatchRequest request_in, WatchCallback callback_in)
        : id(id_in),
          request(std::move(request_in)),
          callback(std::move(callback_in)) {}

    const uint64_t id;
    const WatchRequest request;
    const WatchCallback callback;

    common::Mutex mu;
    EventQueue queue ABSL_GUARDED_BY(mu);
    // Every matching change at or below it is queued or delivered.
    uint64_t enqueued_through ABSL_GUARDED_BY(mu) = 0;
    // The revision a resumed watch would continue from: the highest change
    // or progress revision the callbacks have returned from.
    uint64_t delivered_through ABSL_GUARDED_BY(mu) = 0;
    // Behind the reader: a worker pages the history for it.
    bool catching_up ABSL_GUARDED_BY(mu) = false;
    // In the run queue or on a worker; at most one worker runs a watch.
    bool scheduled ABSL_GUARDED_BY(mu) = false;
    bool running ABSL_GUARDED_BY(mu) = false;  // A callback is running.
    // Signalled when a callback returns while a Cancel waits for it.
    common::CondVar idle;
    int cancels_waiting ABSL_GUARDED_BY(mu) = 0;
    std::thread::id running_thread ABSL_GUARDED_BY(mu);
    bool cancelled ABSL_GUARDED_BY(mu) = false;
    // Set when the watch must end; the final callback then reports it.
    End end ABSL_GUARDED_BY(mu) = End::kNone;
    absl::Status error ABSL_GUARDED_BY(mu);     // For End::kError.
    bool finished ABSL_GUARDED_BY(mu) = false;  // Final callback returned.
    Clock::time_point last_event ABSL_GUARDED_BY(mu);
  };
  using WatchPtr = std::shared_ptr<Watch>;
  using Bucket = absl::flat_hash_map<uint64_t, WatchPtr>;
  struct NamespaceIndex {
    absl::flat_hash_map<std::string, Bucket> keys;
    absl::flat_hash_map<std::string, Bucket> prefixes;
    // Distinct prefix lengths in `prefixes`, with their counts: a change's
    // key is looked up once per length.
    std::map<size_t, int> prefix_lengths;
  };
  struct ProgressDue {
    Clock::time_point due;
    std::weak_ptr<Watch> watch;
    bool operator>(const ProgressDue& other) const { return due > other.due; }
  };

  void Cancel(const WatchPtr& watch);
  void ReaderLoop();
  void ReadAndFanOut();
  void WorkerLoop();
  WatchPtr NextReady();
  void RunWatch(const WatchPtr& watch);
  void CatchUp(const WatchPtr& watch);
  void Schedule(std::vector<WatchPtr> watches);
  void ProcessRemovals();
  void SendProgress(Clock::time_point now);
  // Queues `event` for `watch` unless it is filtered, ended or full.
  void Enqueue(const WatchPtr& watch,
               const std::shared_ptr<const kv::Change>& change,
               Clock::time_point now, std::vector<WatchPtr>& to_schedule,
               std::vector<WatchPtr>& ended) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AddToIndex(const WatchPtr& watch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RemoveFromIndex(const Watch& watch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends `watch` with `end` unless it already ended; true if it should be
  // scheduled to deliver its final callback.
  static bool EndWatch(Watch& watch, End end, absl::Status error)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(watch.mu);
  absl::Status FinalStatus(const Watch& watch) const
      ABSL_SHARED_LOCKS_REQUIRED(watch.mu);
  uint32_t PageLimit() const;

  // Lock order: mu_, then one watch's mu, then sched_mu_; removal_mu_ and
  // wake_mu_ are leaves. A watch's mu is never held while calling back.
  mutable common::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  // Set once by the first Add (under mu_), then read-only until Stop.
  const kv::KvStateMachine* sm_ = nullptr;
  WatchHubOptions options_;
  // The reader has handed every change through it to the indexed watches.
  uint64_t read_revision_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  absl::flat_hash_map<uint64_t, WatchPtr> all_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, NamespaceIndex> index_ ABSL_GUARDED_BY(mu_);
  std::priority_queue<ProgressDue, std::vector<ProgressDue>,
                      std::greater<ProgressDue>>
      progress_ ABSL_GUARDED_BY(mu_);

  // Watches ready to run, in order; workers take from the front.
  common::Mutex sched_mu_;
  std::deque<WatchPtr> ready_ ABSL_GUARDED_BY(sched_mu_);
  common::CondVar sched_cv_;
  bool workers_stop_ ABSL_GUARDED_BY(sched_mu_) = false;

  // Cancelled or ended watches for the reader to drop from the index: a
  // cancel then never waits for a fan-out in progress.
  common::Mutex removal_mu_;
  std::vector<uint64_t> removals_ ABSL_GUARDED_BY(removal_mu_);

  // Wakes the reader.
  common::Mutex wake_mu_;
  common::CondVar wake_cv_;
  bool woken_ ABSL_GUARDED_BY(wake_mu_) = false;
  bool reader_stop_ ABSL_GUARDED_BY(wake_mu_) = false;

  // Started under mu_ by the first Add; joined by Stop (serialized by
  // stop_mu_, as Close and the destructor may race).
  common::Mutex stop_mu_;
  std::thread reader_;
  std::vector<std::thread> workers_;
  // The threads run: wakeups and removals are worth recording.
  std::atomic<bool> running_threads_{false};
};

}  // namespace confman::node_internal
