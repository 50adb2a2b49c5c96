// Encoding of a forwarded write's answer and of request ids
// (forward_codec.h): fixed little-endian integers and the status text, so
// a follower can hand its host exactly the outcome the leader saw.
#include "forward_codec.h"

#include "absl/strings/str_cat.h"
#include "common/bytes.h"

namespace confman::node_internal {
namespace {

using common::AppendLittleEndian64;
using common::GetLittleEndian64;

constexpr size_t kHeaderBytes = 9;
constexpr int kMaxStatusCode = 16;  // absl::StatusCode::kUnauthenticated.

}  // namespace

std::string EncodeForwardResult(const absl::StatusOr<uint64_t>& result) {
  std::string out;
  out.push_back(static_cast<char>(result.status().code()));
  AppendLittleEndian64(out, result.ok() ? *result : 0);
  const absl::string_view message = result.status().message();
  out.append(message.data(), message.size());
  return out;
}

[[nodiscard]] absl::StatusOr<uint64_t> DecodeForwardResult(
    std::string_view bytes) {
  if (bytes.size() < kHeaderBytes ||
      static_cast<uint8_t>(bytes[0]) > kMaxStatusCode) {
    return absl::InternalError(absl::StrCat(
        "the leader's answer to a forwarded write is malformed (", bytes.size(),
        " bytes); check that every member runs the same confman version"));
  }
  const auto code = static_cast<absl::StatusCode>(bytes[0]);
  if (code == absl::StatusCode::kOk) return GetLittleEndian64(bytes.data() + 1);
  const std::string_view message = bytes.substr(kHeaderBytes);
  return absl::Status(code, absl::string_view(message.data(), message.size()));
}

std::string EncodeRequestId(uint64_t id) {
  std::string out;
  AppendLittleEndian64(out, id);
  return out;
}

uint64_t DecodeRequestId(std::string_view bytes) {
  return bytes.size() == 8 ? GetLittleEndian64(bytes.data()) : 0;
}

}  // namespace confman::node_internal
