// The bytes of a forwarded write's answer. A follower forwards the encoded
// command itself (kv::EncodeCommand output) as the request payload; the
// leader answers with the outcome encoded here.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace confman::node_internal {

// One byte status code, eight bytes little-endian revision, then the
// status message.
std::string EncodeForwardResult(const absl::StatusOr<uint64_t>& result);

// Internal if the bytes are not EncodeForwardResult output (a peer running
// another version).
[[nodiscard]] absl::StatusOr<uint64_t> DecodeForwardResult(std::string_view bytes);

// The context bytes of a ReadIndex request: the request id, little-endian.
std::string EncodeRequestId(uint64_t id);
// 0 if `bytes` is not an EncodeRequestId result.
uint64_t DecodeRequestId(std::string_view bytes);

}  // namespace confman::node_internal
