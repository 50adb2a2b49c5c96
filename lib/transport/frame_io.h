// Moving length-prefixed frames (wire_codec.h) over a TcpStream: writing
// one frame or a batch in one gathered write, and reading the next frame
// with the length checked before anything is allocated and the body
// verified before it is decoded.
//
// Private to the TCP transport (see tcp_transport.cc for the whole layout).
#pragma once

#include <asio.hpp>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tcp_stream.h"
#include "wire_codec.h"

namespace confman::tcp_internal {

// Writes one frame (prefix and body).
awaitable<absl::Status> WriteFrame(TcpStream& stream,
                                   const wire::EncodedFrame& frame);

// Writes `frames` back to back in one gathered write, straight from their
// encoded buffers. `scratch` holds the buffer list; passing the same vector
// each time saves reallocating it.
awaitable<absl::Status> WriteFrames(
    TcpStream& stream, const std::vector<wire::EncodedFrame>& frames,
    std::vector<asio::const_buffer>& scratch);

// Reads the frames of one connection. Small frames are parsed out of a
// staging buffer filled by large reads, so a stream of small messages costs
// one system call per fill instead of two per frame; the rest of a large
// body is read straight into an aligned buffer (its own when the frame is
// large). Either way the body ends up in the aligned buffer that
// verification needs.
class FrameReader {
 public:
  explicit FrameReader(TcpStream& stream)
      : stream_(&stream), staging_(kStagingBytes) {}

  // Continues on `stream` (the connection moved to another I/O thread),
  // keeping bytes already staged.
  void Attach(TcpStream& stream) { stream_ = &stream; }

  // Reads, length-checks, verifies and decodes the next frame. A length
  // above `max_frame_bytes` fails before any buffer is sized for it, which
  // is what keeps an unauthenticated peer's allocations small during the
  // handshake.
  awaitable<absl::StatusOr<wire::Frame>> Next(uint32_t max_frame_bytes);
  // Frees a large body buffer kept from the last frame.
  void ReleaseLargeBuffer() { body_.ShrinkIfAbove(kKeptReceiveBufferBytes); }

 private:
  static constexpr size_t kStagingBytes = 64u << 10;
  // Frames of at least this many bytes are read into a buffer of their own,
  // which the entries decoded from it share (wire::DecodeFrameBody with an
  // owner): a large value is then copied once, from the socket, instead of
  // twice. Smaller frames reuse body_.
  static constexpr size_t kSharedBodyMinBytes = 256u << 10;
  // A reused receive buffer larger than this is released after its frame.
  static constexpr size_t kKeptReceiveBufferBytes = kSharedBodyMinBytes;

  size_t staged() const { return end_ - begin_; }
  awaitable<asio::error_code> Fill();

  TcpStream* stream_;
  std::vector<uint8_t> staging_;
  size_t begin_ = 0;  // First unread byte in staging_.
  size_t end_ = 0;    // One past the last byte read into staging_.
  wire::AlignedBuffer body_;
};

}  // namespace confman::tcp_internal
