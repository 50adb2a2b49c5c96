// The leader's per-follower bookkeeping (progress.h): the probe,
// replicate and snapshot states and the in-flight window that paces
// AppendEntries to each follower (thesis §3.5, §10.2.1).
#include "progress.h"

#include <algorithm>

namespace confman::raft {

void Inflights::Add(Index last_index, uint64_t bytes) {
  sent_.push_back({last_index, bytes});
  bytes_ += bytes;
}

void Inflights::FreeThrough(Index index) {
  while (!sent_.empty() && sent_.front().last_index <= index) {
    bytes_ -= sent_.front().bytes;
    sent_.pop_front();
  }
}

void Inflights::FreeOldest() {
  if (sent_.empty()) return;
  bytes_ -= sent_.front().bytes;
  sent_.pop_front();
}

void Inflights::Clear() {
  sent_.clear();
  bytes_ = 0;
}

bool Inflights::Full(uint32_t max_messages, uint64_t max_bytes) const {
  return sent_.size() >= max_messages || bytes_ >= max_bytes;
}

void Progress::BecomeProbe() {
  state = State::kProbe;
  next = match + 1;
  probe_sent = false;
  inflights.Clear();
}

void Progress::BecomeReplicate() {
  state = State::kReplicate;
  next = match + 1;
  probe_sent = false;
  inflights.Clear();
}

void Progress::BecomeSnapshot() {
  state = State::kSnapshot;
  probe_sent = false;
  sent_snapshot_index = 0;
  inflights.Clear();
}

bool Progress::AcknowledgeMatch(Index index) {
  // A late acknowledgement may still unblock a probe even if it moves
  // nothing forward.
  probe_sent = false;
  if (index <= match) return false;
  match = index;
  next = std::max(next, index + 1);
  inflights.FreeThrough(index);
  return true;
}

bool Progress::Reject(Index rejected, Index retry_from) {
  if (state == State::kReplicate) {
    // Rejections of appends before the known match are reordered leftovers.
    if (rejected <= match) return false;
    BecomeProbe();
    next = std::max(match + 1, std::min(retry_from, rejected));
    return true;
  }
  // In probe only the rejection of the outstanding probe counts, and only
  // if it moves the probe back: a follower denying what it acknowledged
  // before (failing storage) must not make the leader re-send in a loop;
  // the probe stays outstanding until the next heartbeat answer.
  if (rejected + 1 != next) return false;
  const Index retry = std::max(match + 1, std::min(retry_from, rejected));
  if (retry == next) return false;
  next = retry;
  probe_sent = false;
  return true;
}

void Progress::SentEntries(Index last_index, uint64_t bytes) {
  if (state == State::kReplicate) {
    next = last_index + 1;
    inflights.Add(last_index, bytes);
  } else {
    probe_sent = true;
  }
}

bool Progress::Paused(uint32_t max_inflight_messages,
                      uint64_t max_inflight_bytes) const {
  switch (state) {
    case State::kProbe:
      return probe_sent;
    case State::kReplicate:
      return inflights.Full(max_inflight_messages, max_inflight_bytes);
    case State::kSnapshot:
      return true;
  }
  return true;
}

}  // namespace confman::raft
