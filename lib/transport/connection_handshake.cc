// The Hello/Proof exchange on a new connection and its deadline (see
// connection_handshake.h).
#include "connection_handshake.h"

#include <string>
#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"
#include "handshake.h"

namespace confman::tcp_internal {

// ---- HandshakeDeadline ----------------------------------------------------

HandshakeDeadline::HandshakeDeadline(tcp::socket& socket,
                                     std::chrono::milliseconds timeout)
    : timer_(socket.get_executor()),
      timeout_(timeout),
      state_(std::make_shared<State>()) {
  timer_.expires_after(timeout);
  timer_.async_wait([&socket, state = state_](const asio::error_code& ec) {
    if (ec || !state->armed) return;
    state->fired = true;
    asio::error_code ignored;
    socket.close(ignored);
  });
}

HandshakeDeadline::~HandshakeDeadline() {
  state_->armed = false;
  timer_.cancel();
}

absl::Status HandshakeDeadline::Explain(absl::Status status) const {
  if (status.ok() || !state_->fired) return status;
  return absl::DeadlineExceededError(absl::StrCat(
      "connect and handshake not completed within handshake_timeout (",
      timeout_.count(), " ms)"));
}

// ---- Handshaker -----------------------------------------------------------

wire::Hello Handshaker::OwnHello(wire::Channel channel) const {
  wire::Hello hello;
  hello.cluster_id = options_.cluster_id;
  hello.member_id = options_.member_id;
  hello.nonce = wire::MakeNonce();
  hello.channel = channel;
  return hello;
}

wire::EncodedFrame Handshaker::ProofFrame(const wire::Hello& mine,
                                          const wire::Hello& theirs) const {
  wire::Proof proof;
  proof.mac = wire::ComputeProof(options_.shared_secret, mine, theirs);
  return wire::EncodeProof(proof);
}

// Runs before this member sends its proof: a peer that is refused never
// receives an HMAC keyed with the shared secret to test guesses against.
absl::Status Handshaker::CheckHello(const wire::Hello& theirs,
                                    raft::MemberId expected_peer) const {
  if (theirs.cluster_id != options_.cluster_id) {
    return absl::PermissionDeniedError(
        absl::StrCat("peer belongs to cluster '", theirs.cluster_id,
                     "', this member to '", options_.cluster_id, "'"));
  }
  if (theirs.member_id == options_.member_id) {
    return absl::PermissionDeniedError(
        absl::StrCat("peer claims this member's own id ", theirs.member_id));
  }
  if (expected_peer != raft::kNoMember && theirs.member_id != expected_peer) {
    return absl::PermissionDeniedError(
        absl::StrCat("dialled member ", expected_peer, " but member ",
                     theirs.member_id, " answered; check the address book"));
  }
  if (!is_known_peer_(theirs.member_id)) {
    return absl::PermissionDeniedError(
        absl::StrCat("member ", theirs.member_id,
                     " is not a known peer; add it with AddPeer first"));
  }
  return absl::OkStatus();
}

// The dialler (expected_peer != kNoMember) speaks first; the acceptor
// answers on the channel the dialler chose. Then both send and check proofs.
awaitable<absl::StatusOr<wire::Hello>> Handshaker::Run(
    TcpStream& stream, FrameReader& reader, wire::Channel channel,
    raft::MemberId expected_peer) const {
  const bool dialler = expected_peer != raft::kNoMember;
  wire::Hello mine = OwnHello(channel);
  // GCC 12 mishandles temporaries inside co_await expressions (double
  // destruction), so every awaited call here takes named locals only.
  absl::Status sent;
  if (dialler) {
    const wire::EncodedFrame hello = wire::EncodeHello(mine);
    sent = co_await WriteFrame(stream, hello);
    if (!sent.ok()) co_return sent;
  }
  absl::StatusOr<wire::Frame> frame =
      co_await reader.Next(kMaxHandshakeFrameBytes);
  if (!frame.ok()) co_return frame.status();
  auto* theirs = std::get_if<wire::Hello>(&*frame);
  if (theirs == nullptr) {
    co_return absl::InvalidArgumentError("the first frame was not a hello");
  }
  if (absl::Status ok = CheckHello(*theirs, expected_peer); !ok.ok()) {
    co_return ok;
  }
  if (!dialler) {
    mine.channel = theirs->channel;
    const wire::EncodedFrame hello = wire::EncodeHello(mine);
    sent = co_await WriteFrame(stream, hello);
    if (!sent.ok()) co_return sent;
  }
  const wire::EncodedFrame proof = ProofFrame(mine, *theirs);
  sent = co_await WriteFrame(stream, proof);
  if (!sent.ok()) co_return sent;
  wire::Hello peer_hello = std::move(*theirs);
  frame = co_await reader.Next(kMaxHandshakeFrameBytes);
  if (!frame.ok()) co_return frame.status();
  auto* their_proof = std::get_if<wire::Proof>(&*frame);
  if (their_proof == nullptr) {
    co_return absl::InvalidArgumentError("the second frame was not a proof");
  }
  const std::string expected =
      wire::ComputeProof(options_.shared_secret, peer_hello, mine);
  if (!wire::ProofMatches(expected, their_proof->mac)) {
    co_return absl::PermissionDeniedError(absl::StrCat(
        "member ", peer_hello.member_id,
        " failed the shared-secret proof; check that every member uses the "
        "same shared_secret"));
  }
  co_return peer_hello;
}

}  // namespace confman::tcp_internal
