// Watches: each has a thread that pages through the state machine's change
// history from its cursor and sleeps until the revision moves. Reading the
// history (rather than hooking apply) is what makes a watch resumable and
// keeps it from missing, repeating or reordering changes across leader
// changes: the history is the replicated, ordered record itself.
#include <pthread.h>

#include "absl/strings/str_cat.h"
#include "node_impl.h"

namespace confman::node_internal {
namespace {

constexpr uint32_t kChangesPerPage = 1000;
// Upper bound on one wait, so a stop request is seen even without a wakeup.
constexpr auto kMaxIdleWait = std::chrono::milliseconds(200);

bool Matches(const WatchRequest& request, const kv::Change& change) {
  return change.ns == request.ns &&
         change.key.compare(0, request.prefix.size(), request.prefix) == 0;
}

}  // namespace

class WatchImpl final : public WatchHandle {
 public:
  WatchImpl(NodeImpl* node, WatchRequest request, WatchCallback callback)
      : node_(node), request_(std::move(request)), callback_(std::move(callback)) {}

  ~WatchImpl() override { Cancel(); }

  void Start() {
    thread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "confman-watch");
      Run();
    });
  }

  void Cancel() override {
    Stop();
    if (NodeImpl* node = node_.exchange(nullptr)) node->Unregister(this);
  }

  // Stops delivery and waits for the thread, unless called from it. The
  // handle's owner and a closing Node may both call it at once.
  void Stop() {
    stop_ = true;
    std::lock_guard lock(join_mu_);
    if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) {
      thread_.join();
    }
  }

  // The Node is gone: never touch it again.
  void Detach() { node_ = nullptr; }

 private:
  void Run() {
    NodeImpl* node = node_.load();
    uint64_t cursor = request_.after_revision;
    while (!stop_) {
      absl::StatusOr<kv::ChangePage> page =
          node->state_machine().Changes(cursor, kChangesPerPage);
      if (!page.ok()) {
        if (!stop_) callback_(page.status());
        return;
      }
      for (const kv::Change& change : page->changes) {
        if (stop_) return;
        if (Matches(request_, change)) callback_(change);
        cursor = change.revision;
      }
      if (page->changes.empty()) {
        cursor = std::max(cursor, page->revision);
        node->WaitForRevision(cursor, stop_, kMaxIdleWait);
      }
    }
  }

  std::atomic<NodeImpl*> node_;
  const WatchRequest request_;
  const WatchCallback callback_;
  std::atomic<bool> stop_{false};
  std::mutex join_mu_;  // Serializes joins of thread_.
  std::thread thread_;
};

void StopWatch(WatchImpl* watch) {
  watch->Stop();
  watch->Detach();
}

absl::StatusOr<std::unique_ptr<WatchHandle>> NodeImpl::Watch(
    const WatchRequest& request, WatchCallback callback) {
  if (closing_) {
    return absl::UnavailableError("the node is closing; watch another member");
  }
  if (absl::Status halted = HaltedError(); !halted.ok()) return halted;
  if (request.ns.empty()) {
    return absl::InvalidArgumentError("a watch needs a namespace (WatchRequest::ns)");
  }
  if (!callback) {
    return absl::InvalidArgumentError("a watch needs a callback");
  }
  auto watch = std::make_unique<WatchImpl>(this, request, std::move(callback));
  {
    std::lock_guard lock(watches_mu_);
    watches_.insert(watch.get());
  }
  watch->Start();
  return std::unique_ptr<WatchHandle>(std::move(watch));
}

void NodeImpl::Unregister(WatchImpl* watch) {
  std::lock_guard lock(watches_mu_);
  watches_.erase(watch);
}

void NodeImpl::WaitForRevision(uint64_t revision, const std::atomic<bool>& stop,
                               std::chrono::milliseconds timeout) {
  std::unique_lock lock(revision_mu_);
  revision_cv_.wait_for(lock, timeout, [&] {
    return stop || closing_ || sm_->Revision() > revision;
  });
}

}  // namespace confman::node_internal
