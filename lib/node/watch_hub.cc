// WatchHub (watch_hub.h): the reader thread that pages the change history
// once per revision advance, the index that routes each change to the
// watches it matches, and the delivery workers that run callbacks.
#include "watch_hub.h"

#include <pthread.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "closing_error.h"

namespace confman::node_internal {
namespace {

// Changes the reader fans out per lock hold: large enough to amortize the
// read transaction, small enough that registering a watch never waits long.
constexpr uint32_t kReaderPage = 1000;
// Events one watch delivers before its worker moves on to the next ready
// watch, so a watch with a deep queue cannot starve the rest.
constexpr int kEventsPerTurn = 64;
// The reader also wakes this often without a notification: it then drops
// cancelled watches from the index even while nothing is written, and a
// missed wakeup could never stall the watches for longer.
constexpr auto kReaderSafetyWake = std::chrono::seconds(1);

bool Matches(const WatchRequest& request, const kv::Change& change) {
  if (change.ns != request.ns) return false;
  if (!request.key.empty()) return change.key == request.key;
  return change.key.compare(0, request.prefix.size(), request.prefix) == 0;
}

std::string Describe(const WatchRequest& request) {
  if (!request.key.empty()) {
    return absl::StrCat("watch on ", request.ns, "/", request.key);
  }
  return absl::StrCat("watch on ", request.ns, "/", request.prefix, "*");
}

void NameThread(const char* name) { pthread_setname_np(pthread_self(), name); }

}  // namespace

class WatchHub::Handle final : public WatchHandle {
 public:
  Handle(std::shared_ptr<WatchHub> hub, WatchPtr watch)
      : hub_(std::move(hub)), watch_(std::move(watch)) {}
  ~Handle() override { Cancel(); }
  void Cancel() override { hub_->Cancel(watch_); }

 private:
  // Co-owned, so the handle stays valid whatever the Node does meanwhile.
  const std::shared_ptr<WatchHub> hub_;
  const WatchPtr watch_;
};

WatchHub::~WatchHub() { Stop(); }

absl::StatusOr<std::unique_ptr<WatchHandle>> WatchHub::Add(
    const kv::KvStateMachine& sm, const WatchHubOptions& options,
    const WatchRequest& request, WatchCallback callback) {
  std::shared_ptr<WatchHub> self = shared_from_this();
  common::MutexLock lock(&mu_);
  if (stopped_) {
    return ClosingError("watch another member");
  }
  if (!started_) {
    started_ = true;
    sm_ = &sm;
    options_ = options;
    read_revision_ = sm.Revision();
    reader_ = std::thread([this] {
      NameThread("confman-watchrd");
      ReaderLoop();
    });
    for (uint32_t i = 0; i < options_.threads; ++i) {
      workers_.emplace_back([this] {
        NameThread("confman-watch");
        WorkerLoop();
      });
    }
    running_threads_.store(true, std::memory_order_release);
  }
  auto watch =
      std::make_shared<Watch>(next_id_++, request, std::move(callback));
  const Clock::time_point now = Clock::now();
  bool catch_up = false;
  {
    common::MutexLock watch_lock(&watch->mu);
    watch->enqueued_through = request.after_revision;
    watch->delivered_through = request.after_revision;
    watch->last_event = now;
    if (request.after_revision >= read_revision_) {
      AddToIndex(watch);
    } else {
      watch->catching_up = true;
      watch->scheduled = true;
      catch_up = true;
    }
  }
  all_.emplace(watch->id, watch);
  if (request.progress_interval.count() > 0) {
    progress_.push(ProgressDue{now + request.progress_interval, watch});
    common::MutexLock wake_lock(&wake_mu_);
    woken_ = true;
    wake_cv_.Signal();
  }
  if (catch_up) Schedule({watch});
  return std::unique_ptr<WatchHandle>(
      new Handle(std::move(self), std::move(watch)));
}

void WatchHub::NotifyRevision() {
  if (!running_threads_.load(std::memory_order_acquire)) return;
  common::MutexLock lock(&wake_mu_);
  if (woken_) return;
  woken_ = true;
  wake_cv_.Signal();
}

void WatchHub::Cancel(const WatchPtr& watch) {
  {
    common::MutexLock lock(&watch->mu);
    const bool first = !watch->cancelled;
    watch->cancelled = true;
    watch->queue.Release();
    // From inside this watch's own callback, waiting would deadlock; the
    // worker checks `cancelled` before every later callback instead.
    if (watch->running && watch->running_thread != std::this_thread::get_id()) {
      ++watch->cancels_waiting;
      while (watch->running) watch->idle.Wait(&watch->mu);
      --watch->cancels_waiting;
    }
    if (!first) return;
  }
  if (!running_threads_.load(std::memory_order_acquire)) return;
  // The reader drops it from the index on its next pass (at the latest
  // kReaderSafetyWake later). Not waking it here keeps a burst of cancels
  // from trading the CPU with the reader once per cancel.
  common::MutexLock lock(&removal_mu_);
  removals_.push_back(watch->id);
}

void WatchHub::Stop() {
  common::MutexLock stop_lock(&stop_mu_);
  std::thread reader;
  std::vector<std::thread> workers;
  {
    common::MutexLock lock(&mu_);
    stopped_ = true;
    reader = std::move(reader_);
    workers = std::move(workers_);
  }
  if (!reader.joinable() && workers.empty()) return;
  {
    common::MutexLock lock(&wake_mu_);
    reader_stop_ = true;
    wake_cv_.Signal();
  }
  reader.join();
  {
    // The reader is gone, so nothing queues changes any more: every open
    // watch gets its final Unavailable, delivered by the workers after
    // whatever callback they are running.
    common::MutexLock lock(&mu_);
    std::vector<WatchPtr> to_schedule;
    for (auto& [id, watch] : all_) {
      common::MutexLock watch_lock(&watch->mu);
      if (EndWatch(*watch, End::kClosing, absl::OkStatus())) {
        to_schedule.push_back(watch);
      }
    }
    all_.clear();
    index_.clear();
    progress_ = {};
    Schedule(std::move(to_schedule));
  }
  {
    common::MutexLock lock(&sched_mu_);
    workers_stop_ = true;
    sched_cv_.SignalAll();
  }
  for (std::thread& worker : workers) worker.join();
  running_threads_.store(false, std::memory_order_release);
}

void WatchHub::ReaderLoop() {
  while (true) {
    ProcessRemovals();
    ReadAndFanOut();
    Clock::time_point wake_at;
    {
      common::MutexLock lock(&mu_);
      const Clock::time_point now = Clock::now();
      SendProgress(now);
      wake_at = now + kReaderSafetyWake;
      if (!progress_.empty()) wake_at = std::min(wake_at, progress_.top().due);
    }
    common::MutexLock lock(&wake_mu_);
    while (!woken_ && !reader_stop_) {
      const Clock::duration left = wake_at - Clock::now();
      if (left <= Clock::duration::zero()) break;
      wake_cv_.WaitWithDeadline(&wake_mu_,
                                absl::Now() + absl::FromChrono(left));
    }
    if (reader_stop_) return;
    woken_ = false;
  }
}

void WatchHub::ReadAndFanOut() {
  uint64_t from;
  {
    common::MutexLock lock(&mu_);
    from = read_revision_;
  }
  while (sm_->Revision() > from) {
    absl::StatusOr<kv::ChangePage> page = sm_->Changes(from, kReaderPage);
    std::vector<WatchPtr> to_schedule;
    std::vector<WatchPtr> ended;
    const Clock::time_point now = Clock::now();
    common::MutexLock lock(&mu_);
    if (!page.ok()) {
      // The history the indexed watches need is gone (a snapshot carried
      // the member past it) or unreadable: each ends with the error and
      // resumes or re-lists as its status says. Watches catching up read
      // for themselves and find out on their own.
      for (auto& [id, watch] : all_) {
        common::MutexLock watch_lock(&watch->mu);
        if (watch->catching_up || watch->cancelled) continue;
        if (EndWatch(*watch, End::kError, page.status())) {
          to_schedule.push_back(watch);
        }
        ended.push_back(watch);
      }
      read_revision_ = std::max(read_revision_, sm_->Revision());
    } else {
      for (kv::Change& change : page->changes) {
        const uint64_t revision = change.revision;
        auto ns = index_.find(change.ns);
        if (ns != index_.end()) {
          auto shared = std::make_shared<const kv::Change>(std::move(change));
          NamespaceIndex& index = ns->second;
          if (!index.keys.empty()) {
            auto bucket = index.keys.find(shared->key);
            if (bucket != index.keys.end()) {
              for (auto& [id, watch] : bucket->second) {
                Enqueue(watch, shared, now, to_schedule, ended);
              }
            }
          }
          for (const auto& [length, count] : index.prefix_lengths) {
            if (length > shared->key.size()) break;
            auto bucket = index.prefixes.find(
                absl::string_view(shared->key.data(), length));
            if (bucket == index.prefixes.end()) continue;
            for (auto& [id, watch] : bucket->second) {
              Enqueue(watch, shared, now, to_schedule, ended);
            }
          }
        }
        read_revision_ = std::max(read_revision_, revision);
      }
      if (page->changes.size() < kReaderPage) {
        read_revision_ = std::max(read_revision_, page->revision);
      }
    }
    for (const WatchPtr& watch : ended) {
      RemoveFromIndex(*watch);
      all_.erase(watch->id);
    }
    Schedule(std::move(to_schedule));
    if (read_revision_ == from) return;  // Nothing new was readable.
    from = read_revision_;
  }
}

void WatchHub::Enqueue(const WatchPtr& watch,
                       const std::shared_ptr<const kv::Change>& change,
                       Clock::time_point now,
                       std::vector<WatchPtr>& to_schedule,
                       std::vector<WatchPtr>& ended) {
  common::MutexLock lock(&watch->mu);
  if (watch->cancelled || watch->end != End::kNone ||
      change->revision <= watch->enqueued_through) {
    return;
  }
  if (watch->queue.size() >= options_.queue_events) {
    if (EndWatch(*watch, End::kOverflow, absl::OkStatus())) {
      to_schedule.push_back(watch);
    }
    ended.push_back(watch);
    return;
  }
  watch->queue.push_back(Event{change, change->revision});
  watch->enqueued_through = change->revision;
  watch->last_event = now;
  if (!watch->scheduled) {
    watch->scheduled = true;
    to_schedule.push_back(watch);
  }
}

void WatchHub::SendProgress(Clock::time_point now) {
  std::vector<WatchPtr> to_schedule;
  while (!progress_.empty() && progress_.top().due <= now) {
    ProgressDue due = progress_.top();
    progress_.pop();
    WatchPtr watch = due.watch.lock();
    if (watch == nullptr) continue;
    common::MutexLock lock(&watch->mu);
    if (watch->cancelled || watch->end != End::kNone) continue;
    const Clock::duration interval = watch->request.progress_interval;
    if (watch->last_event + interval > now) {
      progress_.push(ProgressDue{watch->last_event + interval, watch});
      continue;
    }
    // A watch with events still queued is visibly alive; it gets a notice
    // once it has drained and stayed idle for an interval.
    if (watch->queue.empty()) {
      const uint64_t revision =
          watch->catching_up
              ? watch->enqueued_through
              : std::max(read_revision_, watch->enqueued_through);
      watch->queue.push_back(Event{nullptr, revision});
      watch->last_event = now;
      if (!watch->scheduled) {
        watch->scheduled = true;
        to_schedule.push_back(watch);
      }
    }
    progress_.push(ProgressDue{now + interval, watch});
  }
  Schedule(std::move(to_schedule));
}

void WatchHub::ProcessRemovals() {
  std::vector<uint64_t> ids;
  {
    common::MutexLock lock(&removal_mu_);
    ids.swap(removals_);
  }
  if (ids.empty()) return;
  common::MutexLock lock(&mu_);
  for (uint64_t id : ids) {
    auto it = all_.find(id);
    if (it == all_.end()) continue;
    RemoveFromIndex(*it->second);
    all_.erase(it);
  }
}

void WatchHub::AddToIndex(const WatchPtr& watch) {
  NamespaceIndex& index = index_[watch->request.ns];
  if (!watch->request.key.empty()) {
    index.keys[watch->request.key].emplace(watch->id, watch);
    return;
  }
  Bucket& bucket = index.prefixes[watch->request.prefix];
  if (bucket.empty()) ++index.prefix_lengths[watch->request.prefix.size()];
  bucket.emplace(watch->id, watch);
}

void WatchHub::RemoveFromIndex(const Watch& watch) {
  auto ns = index_.find(watch.request.ns);
  if (ns == index_.end()) return;
  NamespaceIndex& index = ns->second;
  if (!watch.request.key.empty()) {
    auto bucket = index.keys.find(watch.request.key);
    if (bucket != index.keys.end() && bucket->second.erase(watch.id) > 0 &&
        bucket->second.empty()) {
      index.keys.erase(bucket);
    }
  } else {
    auto bucket = index.prefixes.find(watch.request.prefix);
    if (bucket != index.prefixes.end() && bucket->second.erase(watch.id) > 0 &&
        bucket->second.empty()) {
      index.prefixes.erase(bucket);
      auto length = index.prefix_lengths.find(watch.request.prefix.size());
      if (length != index.prefix_lengths.end() && --length->second == 0) {
        index.prefix_lengths.erase(length);
      }
    }
  }
  if (index.keys.empty() && index.prefixes.empty()) index_.erase(ns);
}

bool WatchHub::EndWatch(Watch& watch, End end, absl::Status error) {
  if (watch.cancelled || watch.end != End::kNone) return false;
  watch.end = end;
  watch.error = std::move(error);
  watch.catching_up = false;
  watch.queue.Release();
  if (watch.scheduled) return false;  // Its worker delivers the end next.
  watch.scheduled = true;
  return true;
}

absl::Status WatchHub::FinalStatus(const Watch& watch) const {
  const std::string resume = absl::StrCat(
      "resume with WatchRequest::after_revision = ", watch.delivered_through,
      " (the last revision it delivered)");
  switch (watch.end) {
    case End::kOverflow:
      return absl::ResourceExhaustedError(absl::StrCat(
          Describe(watch.request), " ended: its callback fell more than ",
          options_.queue_events,
          " events behind (NodeOptions::watch_queue_events); ", resume));
    case End::kError:
      return absl::Status(
          watch.error.code(),
          absl::StrCat(Describe(watch.request), ": ", watch.error.message()));
    case End::kClosing:
      return ClosingError(absl::StrCat(resume, " on another member"));
    case End::kNone:
      break;
  }
  return absl::InternalError("watch ended without a reason");
}

uint32_t WatchHub::PageLimit() const {
  return static_cast<uint32_t>(
      std::min<uint64_t>(kReaderPage, options_.queue_events));
}

void WatchHub::Schedule(std::vector<WatchPtr> watches) {
  if (watches.empty()) return;
  common::MutexLock lock(&sched_mu_);
  for (WatchPtr& watch : watches) ready_.push_back(std::move(watch));
  if (watches.size() == 1) {
    sched_cv_.Signal();
  } else {
    sched_cv_.SignalAll();
  }
}

WatchHub::WatchPtr WatchHub::NextReady() {
  common::MutexLock lock(&sched_mu_);
  while (ready_.empty() && !workers_stop_) sched_cv_.Wait(&sched_mu_);
  if (ready_.empty()) return nullptr;
  WatchPtr watch = std::move(ready_.front());
  ready_.pop_front();
  return watch;
}

void WatchHub::WorkerLoop() {
  while (WatchPtr watch = NextReady()) RunWatch(watch);
}

void WatchHub::RunWatch(const WatchPtr& watch) {
  enum class Step : uint8_t { kDeliver, kEnd, kCatchUp };
  for (int turn = 0; turn < kEventsPerTurn; ++turn) {
    Step step = Step::kDeliver;
    Event event;
    absl::Status final_status;
    {
      common::MutexLock lock(&watch->mu);
      if (watch->cancelled || watch->finished) {
        watch->scheduled = false;
        return;
      }
      if (watch->end != End::kNone) {
        step = Step::kEnd;
        final_status = FinalStatus(*watch);
      } else if (!watch->queue.empty()) {
        event = watch->queue.pop_front();
      } else if (watch->catching_up) {
        step = Step::kCatchUp;
      } else {
        watch->scheduled = false;
        return;
      }
      if (step != Step::kCatchUp) {
        watch->running = true;
        watch->running_thread = std::this_thread::get_id();
      }
    }
    if (step == Step::kCatchUp) {
      CatchUp(watch);
      continue;
    }
    if (step == Step::kEnd) {
      watch->callback(std::move(final_status));
    } else if (event.change != nullptr) {
      watch->callback(*event.change);
    } else {
      watch->request.on_progress(event.revision);
    }
    common::MutexLock lock(&watch->mu);
    watch->running = false;
    if (watch->cancels_waiting > 0) watch->idle.SignalAll();
    if (step == Step::kEnd) {
      watch->finished = true;
      watch->scheduled = false;
      return;
    }
    watch->delivered_through =
        std::max(watch->delivered_through, event.revision);
  }
  Schedule({watch});
}

void WatchHub::CatchUp(const WatchPtr& watch) {
  uint64_t cursor;
  {
    common::MutexLock lock(&watch->mu);
    cursor = watch->enqueued_through;
  }
  const uint32_t limit = PageLimit();
  absl::StatusOr<kv::ChangePage> page = sm_->Changes(cursor, limit);
  std::vector<Event> events;
  uint64_t through = cursor;
  if (page.ok()) {
    for (kv::Change& change : page->changes) {
      through = change.revision;
      if (Matches(watch->request, change)) {
        events.push_back(Event{
            std::make_shared<const kv::Change>(std::move(change)), through});
      }
    }
    // A short page read everything up to the revision it was read at.
    if (page->changes.size() < limit)
      through = std::max(through, page->revision);
  }
  // Under mu_, so the reader cannot move between the check below and the
  // watch joining the index: every change after `through` then reaches it
  // from the reader, and the ones at or below are filtered out there.
  common::MutexLock lock(&mu_);
  common::MutexLock watch_lock(&watch->mu);
  if (watch->cancelled || watch->end != End::kNone) return;
  if (!page.ok()) {
    EndWatch(*watch, End::kError, page.status());
    all_.erase(watch->id);
    return;
  }
  if (!events.empty()) watch->last_event = Clock::now();
  for (Event& event : events) watch->queue.push_back(std::move(event));
  watch->enqueued_through = through;
  if (through >= read_revision_) {
    watch->catching_up = false;
    AddToIndex(watch);
  }
}

}  // namespace confman::node_internal
