// The bounded queue of encoded frames waiting to go out on one link (one
// peer, one channel). Senders on any thread push; the link's writer on its
// I/O thread takes batches.
//
// The bound is in bytes, and what happens when it is reached is the
// difference between the two channels:
//   - bulk (appends, snapshot chunks): the new frame is dropped and the
//     sender told so (ResourceExhausted). Raft re-sends appends and the
//     snapshot sender retries a refused chunk, so a drop only costs time,
//     and the bound keeps a slow follower from pinning unbounded memory.
//   - control (votes, heartbeats, responses, forwards, snapshot chunk
//     acknowledgements): small, and never dropped one by one to make room.
//     A full control queue means the peer stopped reading altogether, so
//     the whole queue is discarded and the link resets the connection
//     (Unavailable): the peer sees a break and both sides start clean,
//     instead of the peer receiving a control stream with holes in it.
// An empty queue always takes one frame, so any frame within
// max_frame_bytes can be sent whatever the bound.
//
// Private to the TCP transport (see tcp_transport.cc for the whole layout).
#pragma once

#include <cstddef>
#include <deque>
#include <mutex>
#include <vector>

#include "confman/raft/types.h"
#include "wire_codec.h"

namespace confman::tcp_internal {

// Frames are gathered into one write up to this many bytes, so small
// messages share system calls without delaying a large one.
inline constexpr size_t kMaxBatchBytes = 1u << 20;

class LinkQueue {
 public:
  LinkQueue(wire::Channel channel, size_t max_bytes)
      : channel_(channel), max_bytes_(max_bytes) {}
  LinkQueue(const LinkQueue&) = delete;
  LinkQueue& operator=(const LinkQueue&) = delete;

  wire::Channel channel() const { return channel_; }
  size_t max_bytes() const { return max_bytes_; }

  enum class PushResult {
    kQueued,            // Queued; the writer is busy and will find it.
    kQueuedWakeWriter,  // Queued; the writer is parked and must be woken.
    kFull,              // Not queued: no room (a control queue was also
                        // discarded, see above).
    kClosed,            // Not queued: the link was closed.
  };

  // Whether a frame of `bytes` would be queued now. Lets a bulk sender find
  // a full queue before paying for the encoding.
  bool HasRoomFor(size_t bytes);
  // Queues `frame` at the back, or reports why not.
  PushResult Push(wire::EncodedFrame frame);
  // Records an overflow. True for the first one since the queue last
  // drained, so the peer is reported unreachable once per episode rather
  // than once per dropped frame.
  bool MarkOverflow();

  // Writer: moves frames from the front into `batch` (cleared first), up to
  // kMaxBatchBytes but at least one. When there are none, returns false and
  // records that the writer is parked, so the next Push asks for a wake-up.
  bool TakeBatch(std::vector<wire::EncodedFrame>& batch);
  // Writer: the connection was lost. Discards what is queued, which was
  // meant for a connection that no longer exists (Raft re-sends what
  // matters), and marks the writer as not parked while it reconnects.
  void DiscardForReconnect();

  // Discards everything and refuses further frames (the peer was removed
  // or the transport is stopping).
  void Close();
  bool closed();

 private:
  void DiscardLocked();

  const wire::Channel channel_;
  const size_t max_bytes_;

  std::mutex mu_;
  std::deque<wire::EncodedFrame> queue_;  // Guarded by mu_.
  size_t queued_bytes_ = 0;               // Guarded by mu_.
  // The writer is parked waiting for frames.
  bool writer_idle_ = false;        // Guarded by mu_.
  bool closed_ = false;             // Guarded by mu_.
  bool overflow_reported_ = false;  // Guarded by mu_.
};

}  // namespace confman::tcp_internal
