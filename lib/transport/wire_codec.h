// Encoding and decoding of confman's wire frames (schema/wire.fbs).
//
// A frame on the wire is a 4-byte little-endian length followed by the
// body: one FlatBuffers `Frame`, then the data of the entries that travel
// outside it (attachments, see kAttachMinBytes). Decoding never trusts its
// input: the length is checked before anything is allocated, the body is
// verified with explicit depth and table limits, and semantic checks (enum
// ranges, the payload matching `kind`, sorted membership lists) run before
// anything reaches the Raft driver. Every failure is a Status naming what was
// wrong.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "confman/raft/payload.h"
#include "confman/raft/types.h"
#include "confman/transport.h"
#include "flatbuffers/flatbuffers.h"

namespace confman::wire {

// Bumped whenever a change to schema/wire.fbs cannot be read by the
// previous release. Peers must speak the same version.
// Version 2: snapshot chunk acknowledgements are their own frame kind.
// Version 3: large entries travel after the Frame buffer (attached_bytes).
inline constexpr uint32_t kProtocolVersion = 3;
// Entries with at least this many bytes of data are attached: written to
// the socket from the entry's own shared buffer instead of being copied
// into the FlatBuffers body. Below it the copy is cheaper than one more
// buffer per entry: attaching 10 KB entries cost 5-6 % more CPU per write
// than copying them (BENCHMARKS.md, "Attached entries").
inline constexpr size_t kAttachMinBytes = size_t{64} << 10;
inline constexpr size_t kFrameHeaderBytes = 4;
inline constexpr size_t kNonceBytes = 32;
inline constexpr size_t kMacBytes = 32;  // HMAC-SHA256.

// Deepest legal nesting is Frame > RaftMessage > entries > Entry > data,
// five levels; the margin keeps future fields legal without letting a
// hostile buffer recurse.
inline constexpr uint32_t kMaxVerifierDepth = 12;

enum class Channel : uint8_t { kControl = 0, kBulk = 1 };
const char* ChannelName(Channel channel);

struct Hello {
  std::string cluster_id;
  raft::MemberId member_id = raft::kNoMember;
  std::string nonce;  // kNonceBytes bytes.
  Channel channel = Channel::kControl;
};

struct Proof {
  std::string mac;  // kMacBytes bytes.
};

struct ChunkFrame {
  raft::MemberId from = raft::kNoMember;
  raft::MemberId to = raft::kNoMember;
  TransportSnapshotChunk chunk;
};

struct ForwardEnvelope {
  raft::MemberId from = raft::kNoMember;
  raft::MemberId to = raft::kNoMember;
  ForwardFrame frame;
};

struct AckFrame {
  raft::MemberId from = raft::kNoMember;
  raft::MemberId to = raft::kNoMember;
  TransportSnapshotAck ack;
};

using Frame = std::variant<Hello, Proof, raft::Message, ChunkFrame,
                           ForwardEnvelope, AckFrame>;

// A frame ready for the wire: the length prefix, the FlatBuffers body and
// the attached entry data, kept apart so that each is written from where it
// already is (one gathered write) instead of being copied together.
class EncodedFrame {
 public:
  explicit EncodedFrame(flatbuffers::DetachedBuffer body,
                        std::vector<raft::Payload> attachments = {});

  const uint8_t* header() const { return header_; }
  const uint8_t* body() const { return body_.data(); }
  size_t body_size() const { return body_.size(); }
  // Entry data that follows the body on the wire, in order.
  const std::vector<raft::Payload>& attachments() const { return attachments_; }
  // The length the prefix announces: body plus attachments.
  size_t length() const { return body_.size() + attached_bytes_; }
  // Bytes on the wire: prefix, body and attachments.
  size_t size() const { return kFrameHeaderBytes + length(); }
  // The whole frame as one string (tests and the tiny handshake frames).
  std::string ToString() const;

 private:
  uint8_t header_[kFrameHeaderBytes];
  flatbuffers::DetachedBuffer body_;
  std::vector<raft::Payload> attachments_;
  size_t attached_bytes_ = 0;
};

EncodedFrame EncodeHello(const Hello& hello);
EncodedFrame EncodeProof(const Proof& proof);
EncodedFrame EncodeMessage(const raft::Message& message);
EncodedFrame EncodeChunk(const ChunkFrame& chunk);
EncodedFrame EncodeForward(const ForwardEnvelope& forward);
EncodedFrame EncodeSnapshotAck(const AckFrame& ack);

// An upper bound of the encoded size, computed without encoding, so a
// sender can find a full queue before paying for the encoding.
size_t EstimateEncodedBytes(const raft::Message& message);
size_t EstimateEncodedBytes(const TransportSnapshotChunk& chunk);

// Reads a frame header. Returns the body length, or InvalidArgument when it
// is zero or larger than `max_frame_bytes` (so no buffer is allocated for a
// hostile length).
[[nodiscard]] absl::StatusOr<uint32_t> ParseFrameLength(
    const uint8_t* header, uint32_t max_frame_bytes);

// A heap buffer aligned for FlatBuffers' widest scalar (8 bytes), which
// Verifier's alignment checks require. Reused across frames; it shrinks
// back after a large frame so an idle connection holds little memory.
class AlignedBuffer {
 public:
  // Makes room for `size` bytes, discarding the contents.
  uint8_t* Resize(size_t size);
  // Frees a large allocation kept from an earlier frame.
  void ShrinkIfAbove(size_t keep_bytes);
  uint8_t* data() { return reinterpret_cast<uint8_t*>(words_.get()); }
  const uint8_t* data() const {
    return reinterpret_cast<const uint8_t*>(words_.get());
  }
  size_t size() const { return size_; }

 private:
  std::unique_ptr<uint64_t[]> words_;
  size_t capacity_ = 0;
  size_t size_ = 0;
};

// Verifies and decodes one frame body of `size` bytes (the length from its
// prefix: the FlatBuffers buffer and any attachments after it) held in
// `body`, which must come from an AlignedBuffer or be otherwise 8-byte
// aligned. Returns InvalidArgument naming the first problem found.
//
// With an `owner` that keeps `body` alive and unchanged, attached entry
// data is shared from `body` rather than copied (raft::Payload); without
// one, everything decoded is a copy and `body` may be reused at once.
[[nodiscard]] absl::StatusOr<Frame> DecodeFrameBody(
    const uint8_t* body, size_t size,
    std::shared_ptr<const void> owner = nullptr);

// Checks that a decoded post-handshake frame is a Raft message, chunk,
// forward or snapshot acknowledgement sent by `authenticated_peer` to `self`.
// Returns InvalidArgument (or PermissionDenied for a forged sender) otherwise.
[[nodiscard]] absl::Status CheckAddressing(const Frame& frame,
                                           raft::MemberId authenticated_peer,
                                           raft::MemberId self);

}  // namespace confman::wire
