// Per-follower replication progress and flow control, as the leader tracks
// it (thesis §3.5 and §10.2.1 on pipelining). Pure bookkeeping: no messages
// are built here.
#pragma once

#include <cstdint>
#include <deque>

#include "confman/raft/member_progress.h"
#include "confman/raft/types.h"

namespace confman::raft {

// The AppendEntries messages sent to one follower and not yet acknowledged,
// each remembered by the last index it carried and its data bytes.
class Inflights {
 public:
  void Add(Index last_index, uint64_t bytes);
  // Forgets every message whose last index is <= `index` (acknowledged).
  void FreeThrough(Index index);
  // Forgets the oldest message: it was probably lost, and freeing its slot
  // lets one more append go out, whose answer tells the truth.
  void FreeOldest();
  void Clear();
  bool Full(uint32_t max_messages, uint64_t max_bytes) const;
  uint32_t count() const { return static_cast<uint32_t>(sent_.size()); }
  uint64_t bytes() const { return bytes_; }

 private:
  struct Sent {
    Index last_index;
    uint64_t bytes;
  };
  // Invariant: last_index strictly increases front to back, and bytes_ is
  // the sum of their bytes.
  std::deque<Sent> sent_;
  uint64_t bytes_ = 0;
};

// Invariant: match < next. In kProbe at most one append is outstanding
// (probe_sent); in kReplicate appends are pipelined optimistically (next
// advances as they are sent, bounded by `inflights`); in kSnapshot nothing
// is sent until the follower acknowledges the snapshot (or the driver
// reports that the stream failed, or the acknowledgement is overdue).
struct Progress {
  using State = MemberProgress::State;

  State state = State::kProbe;
  Index match = 0;
  Index next = 1;
  bool probe_sent = false;
  uint64_t last_heard_tick = 0;  // When the leader last heard from it.
  uint64_t acked_round = 0;      // Highest heartbeat round acknowledged.
  // In kSnapshot, once the driver reported the stream complete: the index
  // of the snapshot sent (0 before), awaited until snapshot_deadline_tick.
  Index sent_snapshot_index = 0;
  uint64_t snapshot_deadline_tick = 0;
  Inflights inflights;

  void BecomeProbe();
  void BecomeReplicate();
  void BecomeSnapshot();

  // Records an acknowledgement that the follower's log matches through
  // `index`. Returns false for a stale acknowledgement.
  bool AcknowledgeMatch(Index index);

  // Handles a rejection of the append whose preceding index was `rejected`;
  // `retry_from` is where the leader should probe next (already computed
  // from the follower's hint). Returns true when the leader should send
  // again now; false when the rejection is stale or cannot move `next`.
  bool Reject(Index rejected, Index retry_from);

  // Records an append carrying entries up to `last_index` (bytes of data).
  void SentEntries(Index last_index, uint64_t bytes);

  // Whether the leader should hold further appends back.
  bool Paused(uint32_t max_inflight_messages, uint64_t max_inflight_bytes) const;
};

}  // namespace confman::raft
