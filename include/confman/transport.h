// The Transport moves Raft messages, snapshot chunks (and their
// acknowledgements) and forwarded client requests between the members of
// one cluster.
//
// Two implementations ship with confman:
//   - TcpTransport (confman/transport/tcp.h): framed, verified and
//     authenticated Asio TCP, for real deployments.
//   - InMemoryTransport (confman/transport/in_memory.h): an in-process
//     network with partitions and drops, for tests.
//
// Delivery is best effort, as Raft expects: a message may be lost (a peer is
// down, a queue is full, a connection breaks) but is never corrupted,
// duplicated by the transport, or delivered to the wrong member. Messages on
// one priority class (see IsControlTraffic) from one sender to one receiver
// arrive in the order they were sent.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "confman/raft/types.h"

namespace confman {

// One piece of a snapshot on its way from the leader to a follower. The
// storage layer produces `data` and `checksum`; the node fills the rest.
struct TransportSnapshotChunk {
  // Identifies one snapshot transfer, so a receiver can tell a fresh stream
  // from a stale one after the leader restarts a send.
  uint64_t snapshot_id = 0;
  // The leader's term when it started the transfer.
  raft::Term term = 0;
  // The snapshot's metadata. Present on the first chunk (seq 0) only.
  std::optional<raft::SnapshotMeta> meta = std::nullopt;
  // Position of this chunk in the stream: 0, 1, 2, ...
  uint64_t seq = 0;
  // True on the final chunk of the stream.
  bool last = false;
  // Opaque bytes, at most the storage layer's chunk size.
  std::string data = {};
  // The storage layer's checksum of `data`; the transport carries it
  // unchanged and does not check it.
  uint32_t checksum = 0;

  friend bool operator==(const TransportSnapshotChunk&,
                         const TransportSnapshotChunk&) = default;
};

// An opaque client request forwarded from a follower to the leader, or the
// leader's response to it. The transport does not look inside `payload`.
struct ForwardFrame {
  // Chosen by the forwarding member; echoed back in the response.
  uint64_t request_id = 0;
  // False for a request, true for the response to one.
  bool response = false;
  std::string payload = {};

  friend bool operator==(const ForwardFrame&, const ForwardFrame&) = default;
};

// A snapshot receiver's progress report to the member streaming to it: it
// has written chunk `seq` of stream `snapshot_id`, and so every chunk
// before it. The sender keeps a bounded window of chunks beyond the last
// acknowledged one. Acknowledgements are cumulative, so losing one costs
// nothing once a later one arrives.
struct TransportSnapshotAck {
  // The TransportSnapshotChunk::snapshot_id of the stream.
  uint64_t snapshot_id = 0;
  // The TransportSnapshotChunk::seq of the latest chunk written.
  uint64_t seq = 0;

  friend bool operator==(const TransportSnapshotAck&,
                         const TransportSnapshotAck&) = default;
};

// Receives what the transport delivers.
//
// Threading: every callback runs on a thread owned by the transport, never
// on the thread that called Send, and callbacks may run concurrently with
// each other: a transport may deliver control traffic on one thread while
// another delivers bulk data, so that a heartbeat never waits for a
// snapshot chunk's callback. Messages of one priority class from one sender
// are delivered one at a time, in order. A callback must not block (no disk
// I/O, no waiting on locks held across I/O, no waiting for another message):
// hand the work to another thread and return. A slow callback delays every
// message behind it. A callback must not call Transport::Stop().
class TransportHandler {
 public:
  virtual ~TransportHandler() = default;

  // A Raft message addressed to this member. `message.from` is the member
  // the connection authenticated as, so it can be trusted.
  virtual void OnMessage(raft::Message message) = 0;

  // A snapshot chunk sent by member `from`.
  virtual void OnSnapshotChunk(raft::MemberId from,
                               TransportSnapshotChunk chunk) = 0;

  // A forwarded request or response sent by member `from`.
  virtual void OnForward(raft::MemberId from, ForwardFrame frame) = 0;

  // A snapshot chunk acknowledgement sent by member `from`, a receiver of a
  // stream this member is sending. Arrives on the control path, so it never
  // waits behind the chunks it acknowledges.
  virtual void OnSnapshotAck(raft::MemberId from, TransportSnapshotAck ack) = 0;

  // Messages to `member` are being lost: it could not be reached, its
  // connection broke, or its send queue overflowed. The Raft driver reports
  // this to the core (Core::ReportUnreachable) so it stops pipelining.
  // Called at most about once per failure episode, not once per message.
  virtual void OnUnreachable(raft::MemberId member) = 0;
};

// Whether a message travels on the control path: small, latency-critical
// traffic (votes, heartbeats, TimeoutNow, ReadIndex, all responses) that is
// never dropped for lack of queue space and never waits behind bulk data.
// Everything else (appends, snapshot notices) is bulk and may be dropped
// when the member's bulk queue is full; Raft re-sends it.
bool IsControlTraffic(raft::MessageType type);

// Sends and receives for one member.
//
// Lifecycle: construct, AddPeer for each known member (before or after
// Start), Start(handler) once, Send*/AddPeer/RemovePeer any number of times,
// Stop() once. The destructor calls Stop() if needed.
//
// Thread safety: every method may be called from any thread concurrently,
// except that Start and Stop must not race each other. Sends never block on
// the network: they encode (or copy) the data into the member's bounded
// queue and return.
class Transport {
 public:
  virtual ~Transport() = default;

  // Begins accepting connections and delivering to `handler`, which must
  // outlive Stop(). Returns FailedPrecondition if already started or
  // stopped, or the reason the listener could not be opened.
  [[nodiscard]] virtual absl::Status Start(TransportHandler* handler) = 0;

  // Closes every connection and joins the transport's threads. No callback
  // runs after Stop returns, and messages still queued are discarded.
  // Idempotent. Must not be called from a handler callback.
  virtual void Stop() = 0;

  // Adds member `id` reachable at `address` ("host:port" for TCP; the
  // in-memory network ignores it), or updates its address (used from the
  // next reconnect on). Returns InvalidArgument for id 0, this member's own
  // id, or an address that does not parse.
  [[nodiscard]] virtual absl::Status AddPeer(raft::MemberId id,
                                             const std::string& address) = 0;

  // Forgets member `id`: its queued messages are discarded, its outbound
  // connections closed, and new connections from it refused. Unknown ids
  // are ignored.
  virtual void RemovePeer(raft::MemberId id) = 0;

  // Queues `message` for `message.to`. `message.from` must be this member.
  // Returns:
  //   OK                  queued (delivery is still best effort);
  //   NotFound            `message.to` is not a known peer;
  //   ResourceExhausted   a bulk message was dropped because the peer's
  //                       bulk queue is full (control traffic is never
  //                       dropped this way);
  //   Unavailable         the peer stopped reading long enough to fill a
  //                       control queue; its connection is reset and
  //                       queued messages are lost (TcpTransport);
  //   InvalidArgument     `from` is not this member, or the message is
  //                       larger than the transport's frame limit;
  //   FailedPrecondition  the transport is not running.
  [[nodiscard]] virtual absl::Status Send(raft::Message message) = 0;

  // Queues a snapshot chunk for member `to` on the bulk path. Same statuses
  // as Send.
  [[nodiscard]] virtual absl::Status SendSnapshotChunk(
      raft::MemberId to, TransportSnapshotChunk chunk) = 0;

  // Queues a forwarded request or response for member `to` on the control
  // path. Same statuses as Send, except that it is never dropped for queue
  // space: callers bound the number of outstanding forwards themselves.
  [[nodiscard]] virtual absl::Status SendForward(raft::MemberId to,
                                                 ForwardFrame frame) = 0;

  // Queues a snapshot chunk acknowledgement for member `to`, the sender of
  // the stream, on the control path. Same statuses as SendForward: never
  // dropped for queue space (a receiver sends at most one per chunk it
  // receives, and the sender's window bounds those).
  [[nodiscard]] virtual absl::Status SendSnapshotAck(
      raft::MemberId to, TransportSnapshotAck ack) = 0;
};

}  // namespace confman
