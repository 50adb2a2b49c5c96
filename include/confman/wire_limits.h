// confman::wire_limits — the bounds of confman's member-to-member frames
// that NodeOptions::Validate checks a Node's options against, whichever
// transport ends up carrying them: a cluster's members may use different
// transports over time, and an option that only works on one of them must
// be refused at Open, not at the first large write.
//
// TcpTransportOptions (transport/tcp.h) enforces the same numbers; the
// default transport library (default_transport.h) checks at compile time
// that they agree.
#pragma once

#include <cstddef>
#include <cstdint>

namespace confman::wire_limits {

// Shortest shared secret the handshake accepts.
inline constexpr size_t kMinSharedSecretBytes = 16;
// Allowed range of max_frame_bytes.
inline constexpr uint32_t kMinFrameBytes = 64u << 10;
inline constexpr uint32_t kMaxFrameBytes = 1u << 30;
// Frame bytes beyond the payload: a fixed envelope plus a per-entry cost.
inline constexpr uint64_t kFrameOverheadBytes = 512;
inline constexpr uint64_t kFrameBytesPerEntry = 64;

// Frame bytes needed to carry a message whose entries and context hold
// `payload_bytes` in total across `entry_count` entries.
constexpr uint64_t FrameBytesFor(uint64_t payload_bytes, uint64_t entry_count) {
  return kFrameOverheadBytes + payload_bytes + kFrameBytesPerEntry * entry_count;
}

}  // namespace confman::wire_limits
