// Config commands: what a proposer puts into a Raft entry.
//
// A command is encoded once, where it is proposed: a value above the
// compression threshold is compressed with zstd there, and the proposer
// stamps its actor and clock into the command. The same bytes are then
// replicated, logged, applied and stored by every member, so every member
// records the same audit trail; only reads decompress.
//
// The wire form is a FlatBuffer (schema/command.fbs) verified before use.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace confman::kv {

struct Command {
  enum class Kind : uint8_t {
    kPut = 0,             // Create or replace ns/key.
    kDelete = 1,          // Remove ns/key (NotFound outcome if absent).
    kCompactHistory = 2,  // Drop changes through compact_through.
  };
  Kind kind = Kind::kPut;
  std::string ns = {};
  std::string key = {};
  std::string value = {};         // kPut only; raw (uncompressed) bytes.
  std::string content_type = {};  // kPut only.
  // Compare-and-set: when present, the command only takes effect if the
  // key's mod_revision equals it; 0 means "the key must not exist".
  // Otherwise the outcome is FailedPrecondition naming both revisions.
  std::optional<uint64_t> expected_revision = {};
  uint64_t compact_through = 0;  // kCompactHistory only.

  // Exactly-once (Raft thesis §6.3): a put or delete with client_id != 0
  // takes effect at most once per (client_id, sequence); a retry of the
  // same pair returns the first attempt's outcome and revision (see
  // KvStateMachine for how long the store remembers). kCompactHistory
  // ignores these fields.
  uint64_t client_id = 0;  // 0: no session; applied each time proposed.
  // >= 1 when client_id != 0, and unique per client: a new write takes a
  // new sequence, a retry reuses its write's.
  uint64_t sequence = 0;
  // The client holds answers for every sequence below this one, so the
  // store may forget their results. 0 or 1: forget nothing.
  uint64_t lowest_unanswered = 0;
};

struct EncodeOptions {
  // Values larger than this many bytes are stored zstd-compressed (when
  // compression makes them smaller). Default 4 KiB.
  uint64_t compress_above_bytes = 4096;
  // zstd level, 1..19. Default 3: fast, and most config compresses well.
  int zstd_level = 3;
  // Larger values are refused with InvalidArgument. Default 8 MiB.
  uint64_t max_value_bytes = uint64_t{8} << 20;

  [[nodiscard]] absl::Status Validate() const;
};

// Encodes `command` for proposal, stamping `actor` and `time_unix_micros`
// (microseconds since the Unix epoch). InvalidArgument for an empty or
// over-long namespace/key/content type, a NUL byte in the namespace, a
// value above max_value_bytes, or client_id != 0 with sequence 0. The
// time stamp also drives session expiry (KvStateMachineOptions::session_ttl),
// so proposers should stamp a clock close to real time.
[[nodiscard]] absl::StatusOr<std::string> EncodeCommand(const Command& command,
                                          std::string_view actor,
                                          int64_t time_unix_micros,
                                          const EncodeOptions& options = {});

// The same, stamped with the system clock now.
[[nodiscard]] absl::StatusOr<std::string> EncodeCommandNow(const Command& command,
                                             std::string_view actor,
                                             const EncodeOptions& options = {});

enum class ValueEncoding : uint8_t { kRaw = 0, kZstd = 1 };

// A verified command. The views point into the encoded bytes and are valid
// as long as they are.
struct CommandView {
  Command::Kind kind = Command::Kind::kPut;
  std::string_view ns = {};
  std::string_view key = {};
  std::string_view stored_value = {};  // As encoded: compressed if kZstd.
  ValueEncoding encoding = ValueEncoding::kRaw;
  uint64_t raw_size = 0;          // The value's decompressed size.
  std::string_view content_type = {};
  std::optional<uint64_t> expected_revision = {};
  uint64_t compact_through = 0;
  std::string_view actor = {};
  int64_t time_unix_micros = 0;
  // As in Command; commands encoded before these fields existed, and
  // kCompactHistory commands, read as client_id 0.
  uint64_t client_id = 0;
  uint64_t sequence = 0;
  uint64_t lowest_unanswered = 0;
};

// Verifies and reads an encoded command (untrusted bytes welcome).
// InvalidArgument naming what is wrong; `bytes` must stay alive while the
// view is used.
[[nodiscard]] absl::StatusOr<CommandView> DecodeCommand(std::string_view bytes);

// Decompresses a stored value. DataLoss if the bytes do not decompress to
// exactly `raw_size` bytes.
[[nodiscard]] absl::StatusOr<std::string> DecodeValue(std::string_view stored,
                                        ValueEncoding encoding,
                                        uint64_t raw_size);

}  // namespace confman::kv
