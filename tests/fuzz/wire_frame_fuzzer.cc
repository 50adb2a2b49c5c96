// libFuzzer target over everything an unauthenticated or authenticated peer
// can make a member parse: the input is read as a connection's byte stream
// (length prefix, body, length prefix, body, ...) and each frame goes
// through the same length check, aligned copy, verification, semantic and
// addressing checks as on a live connection. A frame that decodes must
// re-encode to a frame that decodes to the same value.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <variant>

#include "wire_codec.h"

namespace {

using namespace confman;

// Small enough that the fuzzer explores many frames per input, large enough
// for multi-entry appends.
constexpr uint32_t kFuzzMaxFrameBytes = 1u << 20;

[[noreturn]] void Fail(const char* what, const absl::Status& status) {
  std::fprintf(stderr, "wire frame fuzzer: %s (re-decoding: %s)\n", what,
               status.ToString().c_str());
  std::abort();
}

// What a receiver reads after the length prefix: the body and any
// attachments.
absl::StatusOr<wire::Frame> Redecode(const wire::EncodedFrame& encoded) {
  const std::string bytes = encoded.ToString().substr(wire::kFrameHeaderBytes);
  wire::AlignedBuffer buffer;
  std::memcpy(buffer.Resize(bytes.size()), bytes.data(), bytes.size());
  return wire::DecodeFrameBody(buffer.data(), bytes.size());
}

void CheckRoundTrip(const wire::Frame& frame) {
  if (const auto* message = std::get_if<raft::Message>(&frame)) {
    auto again = Redecode(wire::EncodeMessage(*message));
    if (!again.ok() || std::get<raft::Message>(*again) != *message) {
      Fail("a decoded Raft message does not survive re-encoding",
           again.status());
    }
  } else if (const auto* chunk = std::get_if<wire::ChunkFrame>(&frame)) {
    auto again = Redecode(wire::EncodeChunk(*chunk));
    if (!again.ok() ||
        std::get<wire::ChunkFrame>(*again).chunk != chunk->chunk) {
      Fail("a decoded snapshot chunk does not survive re-encoding",
           again.status());
    }
  } else if (const auto* forward = std::get_if<wire::ForwardEnvelope>(&frame)) {
    auto again = Redecode(wire::EncodeForward(*forward));
    if (!again.ok() ||
        std::get<wire::ForwardEnvelope>(*again).frame != forward->frame) {
      Fail("a decoded forward frame does not survive re-encoding",
           again.status());
    }
  } else if (const auto* ack = std::get_if<wire::AckFrame>(&frame)) {
    auto again = Redecode(wire::EncodeSnapshotAck(*ack));
    if (!again.ok() || std::get<wire::AckFrame>(*again).ack != ack->ack) {
      Fail("a decoded snapshot acknowledgement does not survive re-encoding",
           again.status());
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  wire::AlignedBuffer buffer;
  size_t offset = 0;
  while (size - offset >= wire::kFrameHeaderBytes) {
    auto length = wire::ParseFrameLength(data + offset, kFuzzMaxFrameBytes);
    if (!length.ok()) break;
    offset += wire::kFrameHeaderBytes;
    if (size - offset < *length) break;  // Truncated: the connection waits.
    std::memcpy(buffer.Resize(*length), data + offset, *length);
    offset += *length;
    absl::StatusOr<wire::Frame> frame =
        wire::DecodeFrameBody(buffer.data(), *length);
    if (!frame.ok()) break;  // The connection would close here.
    (void)wire::CheckAddressing(*frame, /*authenticated_peer=*/2, /*self=*/1);
    CheckRoundTrip(*frame);
  }
  return 0;
}
