// The per-link outgoing queue and its control/bulk overflow policy (see
// link_queue.h).
#include "link_queue.h"

#include <utility>

namespace confman::tcp_internal {

bool LinkQueue::HasRoomFor(size_t bytes) {
  std::lock_guard lock(mu_);
  return queue_.empty() || queued_bytes_ + bytes <= max_bytes_;
}

LinkQueue::PushResult LinkQueue::Push(wire::EncodedFrame frame) {
  std::lock_guard lock(mu_);
  if (closed_) return PushResult::kClosed;
  if (!queue_.empty() && queued_bytes_ + frame.size() > max_bytes_) {
    if (channel_ == wire::Channel::kControl) DiscardLocked();
    return PushResult::kFull;
  }
  queued_bytes_ += frame.size();
  queue_.push_back(std::move(frame));
  return std::exchange(writer_idle_, false) ? PushResult::kQueuedWakeWriter
                                            : PushResult::kQueued;
}

bool LinkQueue::MarkOverflow() {
  std::lock_guard lock(mu_);
  return !std::exchange(overflow_reported_, true);
}

bool LinkQueue::TakeBatch(std::vector<wire::EncodedFrame>& batch) {
  batch.clear();
  std::lock_guard lock(mu_);
  size_t bytes = 0;
  while (!queue_.empty() &&
         (batch.empty() || bytes + queue_.front().size() <= kMaxBatchBytes)) {
    bytes += queue_.front().size();
    batch.push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
  queued_bytes_ -= bytes;
  if (batch.empty()) {
    writer_idle_ = true;
    // Drained: a later overflow starts a new episode and is reported again.
    overflow_reported_ = false;
  }
  return !batch.empty();
}

void LinkQueue::DiscardForReconnect() {
  std::lock_guard lock(mu_);
  DiscardLocked();
  writer_idle_ = false;
}

void LinkQueue::Close() {
  std::lock_guard lock(mu_);
  closed_ = true;
  DiscardLocked();
}

bool LinkQueue::closed() {
  std::lock_guard lock(mu_);
  return closed_;
}

void LinkQueue::DiscardLocked() {
  queue_.clear();
  queued_bytes_ = 0;
}

}  // namespace confman::tcp_internal
