// Watches: the Node's side. Requests are checked here and served by the
// WatchHub (watch_hub.h), which reads the replicated change history once
// for every watch on a fixed set of threads.
#include "absl/strings/str_cat.h"
#include "node_impl.h"
#include "watch_hub.h"

namespace confman::node_internal {

absl::StatusOr<std::unique_ptr<WatchHandle>> NodeImpl::Watch(
    const WatchRequest& request, WatchCallback callback) {
  if (closing_) {
    return ClosingError("watch another member");
  }
  if (absl::Status halted = HaltedError(); !halted.ok()) return halted;
  if (request.ns.empty()) {
    return absl::InvalidArgumentError(
        "a watch needs a namespace (WatchRequest::ns)");
  }
  if (!request.key.empty() && !request.prefix.empty()) {
    return absl::InvalidArgumentError(
        "a watch takes either one key (WatchRequest::key) or a prefix "
        "(WatchRequest::prefix), not both; leave one empty");
  }
  if (!callback) {
    return absl::InvalidArgumentError("a watch needs a callback");
  }
  if (request.progress_interval.count() < 0) {
    return absl::InvalidArgumentError(
        "WatchRequest::progress_interval must not be negative (0: no progress "
        "notifications)");
  }
  if ((request.progress_interval.count() > 0) !=
      static_cast<bool>(request.on_progress)) {
    return absl::InvalidArgumentError(
        "progress notifications need both WatchRequest::progress_interval "
        "(above 0) and WatchRequest::on_progress; set both or neither");
  }
  // The hub keeps a reference to sm_, which Close destroys only after the
  // hub has stopped and no caller read is in flight.
  if (!EnterCallerRead()) {
    return ClosingError("watch another member");
  }
  absl::StatusOr<std::unique_ptr<WatchHandle>> handle = watch_hub_->Add(
      *sm_,
      WatchHubOptions{.threads = options_.watch_threads,
                      .queue_events = options_.watch_queue_events},
      request, std::move(callback));
  LeaveCallerRead();
  return handle;
}

absl::StatusOr<uint64_t> NodeImpl::CompactedRevision() {
  if (absl::Status halted = HaltedError(); !halted.ok()) return halted;
  if (!EnterCallerRead()) {
    return ClosingError("ask another member");
  }
  // A page read at the latest revision is empty (or nearly so) and carries
  // the history's bounds.
  absl::StatusOr<kv::ChangePage> page = sm_->Changes(sm_->Revision(), 1);
  LeaveCallerRead();
  if (!page.ok()) return page.status();
  return page->compacted_through;
}

void NodeImpl::StopWatches() { watch_hub_->Stop(); }

}  // namespace confman::node_internal
