// TcpTransport: confman's member-to-member transport over Asio TCP.
//
// Connections. Each member dials two outbound connections to every peer: a
// control connection (votes, heartbeats, TimeoutNow, ReadIndex, responses,
// forwarded requests, snapshot chunk acknowledgements) and a bulk
// connection (appends, snapshot notices, snapshot chunks). They are
// separate TCP streams, so a heartbeat never waits behind megabytes of
// entries in a socket buffer. A member only sends
// on connections it dialled and only receives on connections it accepted.
// Broken or refused connections are retried with exponential backoff and
// jitter; messages queued for a peer that cannot be reached are discarded
// and the handler's OnUnreachable is called.
//
// Handshake. Before any Raft message is accepted, both sides exchange the
// protocol version, cluster id and member id, and prove knowledge of the
// shared secret with HMAC-SHA256 over fresh nonces from both sides. A foreign
// cluster, an unknown member, a bad proof or a timeout closes the connection
// with a log line naming the reason.
//
// Input checking. A frame is a 4-byte length prefix and a FlatBuffers body.
// The length is checked against max_frame_bytes before any allocation; the
// body is copied into an aligned buffer, verified with bounded depth and
// table count, and checked semantically (known enums, sender equal to the
// authenticated member, addressee equal to this member). Any failure closes
// that one connection with a log line; the member keeps serving its other
// peers.
//
// Threads. Each transport runs two I/O threads: one for control traffic
// and accepting, one for bulk traffic, so reading, verifying and
// writing megabyte frames never delays a heartbeat in user space either.
// Handler callbacks run on both threads, possibly at the same time (control
// callbacks on one, bulk callbacks on the other; serialising them would let
// a bulk callback, or a preempted bulk thread, hold up heartbeats); see
// TransportHandler for what callbacks may do. The `log` option is called
// under a mutex, from either thread.
//
// TLS (optional, see TcpTransportOptions::tls) encrypts every connection
// and makes both sides present a certificate from the cluster's CA; the
// HMAC handshake still runs inside it. (Before the TLS handshake a dialler
// sends one plain byte naming the channel, so the acceptor can run the
// handshake on that channel's thread; the authenticated hello must agree.)
// Without TLS, frames travel in the clear, authenticated but readable: use
// a trusted network.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "confman/transport.h"

namespace confman {

struct TcpTransportOptions {
  // "host:port" to listen on; host is an IP address (IPv6 in brackets).
  // Port 0 picks a free port (see TcpTransport::listen_port()). Required.
  std::string listen_address = {};

  // This member's id. Required, non-zero.
  raft::MemberId member_id = raft::kNoMember;

  // Names the cluster; a peer presenting another id is refused. Required.
  std::string cluster_id = {};

  // Key for the handshake's HMAC-SHA256. Every member of a cluster uses the
  // same secret. Required, at least kMinSecretBytes bytes.
  std::string shared_secret = {};
  static constexpr size_t kMinSecretBytes = 16;

  // Largest frame body, in bytes, this member sends or accepts. Must exceed
  // the largest message the node produces by kFrameOverheadBytes plus 64
  // bytes per entry (see FrameBytesFor); a larger inbound frame closes the
  // connection, a larger outbound message is refused by Send. Default
  // 64 MiB; allowed range [kMinFrameBytes, kMaxFrameBytes].
  uint32_t max_frame_bytes = 64u << 20;
  static constexpr uint32_t kMinFrameBytes = 64u << 10;
  static constexpr uint32_t kMaxFrameBytes = 1u << 30;
  static constexpr uint32_t kFrameOverheadBytes = 512;

  // Bytes of encoded bulk frames (appends, snapshot chunks) queued per peer.
  // When a new bulk frame would exceed it, the frame is dropped (Raft
  // re-sends) and Send returns ResourceExhausted. An empty queue always
  // accepts one frame, so the most a peer's bulk queue holds is
  // max(max_bulk_queue_bytes, max_frame_bytes). Default 64 MiB; at least
  // kMinFrameBytes.
  size_t max_bulk_queue_bytes = 64u << 20;

  // Bytes of encoded control frames queued per peer (again, an empty queue
  // takes any one frame). Control traffic is
  // never dropped to make room; reaching this bound means the peer stopped
  // reading, so the connection is reset and its queue discarded (and
  // OnUnreachable called). Default 8 MiB; at least 64 KiB.
  size_t max_control_queue_bytes = 8u << 20;

  // Reconnect backoff: the first retry waits about `reconnect_initial`, each
  // failure doubles the wait up to `reconnect_max`, and every wait is
  // randomised by ±`reconnect_jitter` (a fraction in [0, 1)) so members do
  // not reconnect in lockstep. Defaults 50 ms, 2 s, 0.2.
  std::chrono::milliseconds reconnect_initial{50};
  std::chrono::milliseconds reconnect_max{2000};
  double reconnect_jitter = 0.2;

  // Time allowed for connecting plus the handshake, per attempt. Default 5 s.
  std::chrono::milliseconds handshake_timeout{5000};

  // Mutual TLS over every connection (TLS 1.2 or later). Each member
  // presents `certificate_file` (PEM chain) with `private_key_file` (PEM)
  // and requires the peer's certificate to chain to `ca_file` (PEM). A
  // certificate is not matched to a member id or host name: the cluster CA
  // and the shared secret decide who belongs. Every member of a cluster
  // must agree on using TLS. Default: no TLS. Create returns
  // InvalidArgument when a file cannot be loaded.
  struct TlsFiles {
    std::string ca_file = {};
    std::string certificate_file = {};
    std::string private_key_file = {};
  };
  std::optional<TlsFiles> tls = std::nullopt;

  // Receives one line per notable event (connection refused or closed and
  // why). Called on the I/O threads, one call at a time; must not block.
  // Default (empty): lines go to stderr.
  std::function<void(const std::string& line)> log = nullptr;

  // Returns InvalidArgument naming the first field out of range.
  [[nodiscard]] absl::Status Validate() const;

  // Frame bytes needed to carry a message whose entries and context hold
  // `payload_bytes` in total across `entry_count` entries.
  static uint64_t FrameBytesFor(uint64_t payload_bytes, uint64_t entry_count);
};

class TcpTransport final : public Transport {
 public:
  // Validates `options` and binds the listening socket (so listen_port() is
  // known before Start). Returns InvalidArgument for bad options or
  // Unavailable when the address cannot be bound.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<TcpTransport>> Create(
      TcpTransportOptions options);

  ~TcpTransport() override;
  TcpTransport(const TcpTransport&) = delete;
  TcpTransport& operator=(const TcpTransport&) = delete;

  // The port the listener is bound to (the chosen one when 0 was asked).
  uint16_t listen_port() const;

  [[nodiscard]] absl::Status Start(TransportHandler* handler) override;
  void Stop() override;
  [[nodiscard]] absl::Status AddPeer(raft::MemberId id,
                                     const std::string& address) override;
  void RemovePeer(raft::MemberId id) override;
  [[nodiscard]] absl::Status Send(raft::Message message) override;
  [[nodiscard]] absl::Status SendSnapshotChunk(
      raft::MemberId to, TransportSnapshotChunk chunk) override;
  [[nodiscard]] absl::Status SendForward(raft::MemberId to,
                                         ForwardFrame frame) override;
  [[nodiscard]] absl::Status SendSnapshotAck(raft::MemberId to,
                                             TransportSnapshotAck ack) override;

 private:
  class Impl;
  explicit TcpTransport(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace confman
