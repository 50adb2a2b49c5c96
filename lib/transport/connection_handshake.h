// confman's handshake run over a new connection: the Hello and Proof
// exchange that decides which member is on the other end, and the deadline
// that bounds how long anyone may take to finish it.
//
// What is authenticated when. A TLS handshake (when configured) comes
// first and proves only that the peer holds a certificate from the cluster
// CA. The exchange here then proves that the peer knows the cluster's
// shared secret, and binds the connection to one member id and one channel.
// Until it succeeds the peer is a stranger: it may send only Hello and
// Proof frames of at most kMaxHandshakeFrameBytes, within
// handshake_timeout. Afterwards every frame's sender must be the member the
// connection authenticated as (wire::CheckAddressing).
//
// The proof itself (nonces, transcript, HMAC) is in handshake.h, which has
// no Asio in it so the fuzz target can compile it; this file does the I/O.
//
// Private to the TCP transport (see tcp_transport.cc for the whole layout).
#pragma once

#include <asio.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "confman/raft/types.h"
#include "confman/transport/tcp.h"
#include "frame_io.h"
#include "tcp_stream.h"
#include "wire_codec.h"

namespace confman::tcp_internal {

// Hello and Proof frames are tiny; an unauthenticated peer never makes this
// member allocate more than this.
inline constexpr uint32_t kMaxHandshakeFrameBytes = 4096;

// Closes a socket unless disarmed (destroyed) first: bounds how long an
// unresponsive peer can hold a connection before it is authenticated. The
// flag is shared with the timer's handler because that handler may run
// after the HandshakeDeadline is gone.
class HandshakeDeadline {
 public:
  HandshakeDeadline(tcp::socket& socket, std::chrono::milliseconds timeout);
  ~HandshakeDeadline();
  HandshakeDeadline(const HandshakeDeadline&) = delete;
  HandshakeDeadline& operator=(const HandshakeDeadline&) = delete;

  // Replaces the socket error a timeout caused with the real reason.
  [[nodiscard]] absl::Status Explain(absl::Status status) const;

 private:
  struct State {
    bool armed = true;
    bool fired = false;
  };
  asio::steady_timer timer_;
  const std::chrono::milliseconds timeout_;
  std::shared_ptr<State> state_;
};

// This member's side of the Hello/Proof exchange.
class Handshaker {
 public:
  // `options` supplies the cluster id, member id and shared secret and must
  // outlive the Handshaker. `is_known_peer` says whether a member id is in
  // the current address book; it is called on the I/O threads.
  Handshaker(const TcpTransportOptions& options,
             std::function<bool(raft::MemberId)> is_known_peer)
      : options_(options), is_known_peer_(std::move(is_known_peer)) {}

  // Runs the exchange on `stream`, reading through `reader`. The dialler
  // passes the member it meant to reach as `expected_peer` and the channel
  // it is opening; the acceptor passes raft::kNoMember and answers on the
  // channel the dialler's Hello names. Returns the peer's Hello once its
  // proof checks out, or why the connection must be closed.
  awaitable<absl::StatusOr<wire::Hello>> Run(TcpStream& stream,
                                             FrameReader& reader,
                                             wire::Channel channel,
                                             raft::MemberId expected_peer) const;

 private:
  wire::Hello OwnHello(wire::Channel channel) const;
  wire::EncodedFrame ProofFrame(const wire::Hello& mine,
                                const wire::Hello& theirs) const;
  [[nodiscard]] absl::Status CheckHello(const wire::Hello& theirs,
                                        raft::MemberId expected_peer) const;

  const TcpTransportOptions& options_;
  const std::function<bool(raft::MemberId)> is_known_peer_;
};

}  // namespace confman::tcp_internal
