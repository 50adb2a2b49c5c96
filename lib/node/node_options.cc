// NodeOptions::Validate: every rule node_options.h states, checked before
// anything is opened, each failure naming its field. The frame-size rules
// follow the wire limits (wire_limits.h), whatever transport is used.
#include "absl/strings/str_cat.h"
#include "confman/kv/kv_state_machine.h"
#include "confman/kv/model.h"
#include "confman/metrics.h"
#include "confman/node_options.h"
#include "confman/wire_limits.h"

namespace confman {
namespace {

// Room a command needs beside its value: namespace, key, content type,
// actor and the FlatBuffers framing around them.
constexpr uint64_t kCommandOverheadBytes = 4096;

[[nodiscard]] absl::Status Invalid(const std::string& field, const std::string& rule) {
  return absl::InvalidArgumentError(
      absl::StrCat("NodeOptions.", field, ": ", rule));
}

[[nodiscard]] absl::Status ValidateIdentity(const NodeOptions& o) {
  if (o.id == raft::kNoMember) return Invalid("id", "must be non-zero");
  if (o.cluster_id.empty()) return Invalid("cluster_id", "is required");
  if (o.shared_secret.size() < wire_limits::kMinSharedSecretBytes) {
    return Invalid("shared_secret", "must be at least 16 bytes");
  }
  if (o.listen_address.rfind(':') == std::string::npos) {
    return Invalid("listen_address", "must be \"host:port\" (port 0 picks one)");
  }
  if (!o.join && !o.initial_members.empty()) {
    bool self = false;
    for (const PeerAddress& p : o.initial_members) self |= p.id == o.id;
    if (!self) {
      return Invalid("initial_members",
                     "must include this member when founding a cluster");
    }
  }
  if (!o.join && o.initial_members.empty()) {
    return Invalid("initial_members",
                   "is required to found a cluster (or set join = true)");
  }
  return absl::OkStatus();
}

[[nodiscard]] absl::Status ValidateTiming(const NodeOptions& o) {
  if (o.tick_interval.count() <= 0) return Invalid("tick_interval", "must be positive");
  if (o.heartbeat_interval < o.tick_interval) {
    return Invalid("heartbeat_interval", "must be at least one tick_interval");
  }
  if (o.election_timeout < o.heartbeat_interval * 3) {
    return Invalid("election_timeout",
                   "must be at least three heartbeat_intervals (default "
                   "150 ms vs 30 ms)");
  }
  if (o.election_timeout / o.tick_interval < 5) {
    return Invalid("election_timeout", "must span at least 5 ticks");
  }
  if (o.request_timeout < o.election_timeout * 2) {
    return Invalid("request_timeout",
                   "must be at least two election_timeouts, so a write "
                   "outlives a failover (default 5 s)");
  }
  return absl::OkStatus();
}

[[nodiscard]] absl::Status ValidateSizes(const NodeOptions& o) {
  if (o.max_value_bytes == 0) return Invalid("max_value_bytes", "must be positive");
  if (o.max_value_bytes + kCommandOverheadBytes > o.max_append_bytes) {
    return Invalid("max_value_bytes", absl::StrCat(
        "plus ", kCommandOverheadBytes, " bytes of command overhead must not "
        "exceed max_append_bytes (", o.max_append_bytes, ")"));
  }
  const uint64_t append_frame =
      wire_limits::FrameBytesFor(o.max_append_bytes, 1024);
  if (append_frame > o.max_frame_bytes) {
    return Invalid("max_append_bytes", absl::StrCat(
        "needs frames of ", append_frame, " bytes, above max_frame_bytes (",
        o.max_frame_bytes, ")"));
  }
  if (o.max_frame_bytes > wire_limits::kMaxFrameBytes ||
      o.max_frame_bytes < wire_limits::kMinFrameBytes) {
    return Invalid("max_frame_bytes", "must be within [64 KiB, 1 GiB]");
  }
  if (o.snapshot_chunk_bytes == 0 ||
      wire_limits::FrameBytesFor(o.snapshot_chunk_bytes, 1) >
          o.max_frame_bytes) {
    return Invalid("snapshot_chunk_bytes",
                   "must be positive and fit one frame (max_frame_bytes)");
  }
  if (o.max_uncommitted_bytes < o.max_append_bytes) {
    return Invalid("max_uncommitted_bytes", "must be at least max_append_bytes");
  }
  if (o.log_compact_every == 0) return Invalid("log_compact_every", "must be at least 1");
  if (o.history_retention == 0)
    return Invalid("history_retention", "must be at least 1");
  if (o.session_max_clients == 0 || o.session_max_clients > kv::kMaxSessionsLimit) {
    return Invalid("session_max_clients", "must be within [1, 1,000,000]");
  }
  if (o.session_ttl < std::chrono::seconds(1)) {
    return Invalid("session_ttl", "must be at least 1 s (default 10 minutes)");
  }
  if (o.session_max_results < 2 ||
      o.session_max_results > kv::kMaxResultsPerClientLimit) {
    return Invalid("session_max_results", "must be within [2, 65,536]");
  }
  return absl::OkStatus();
}

[[nodiscard]] absl::Status ValidateWatches(const NodeOptions& o) {
  if (o.watch_threads < 1 || o.watch_threads > 64) {
    return Invalid("watch_threads", "must be within [1, 64] (default 2)");
  }
  if (o.watch_queue_events < 1 || o.watch_queue_events > 10000000) {
    return Invalid("watch_queue_events",
                   "must be within [1, 10,000,000] events (default 10,000)");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status NodeOptions::Validate() const {
  if (absl::Status s = ValidateIdentity(*this); !s.ok()) return s;
  if (absl::Status s = ValidateTiming(*this); !s.ok()) return s;
  if (absl::Status s = ValidateWatches(*this); !s.ok()) return s;
  return ValidateSizes(*this);
}

const char* LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "DEBUG";
    case LogLevel::kInfo: return "INFO";
    case LogLevel::kWarning: return "WARNING";
    case LogLevel::kError: return "ERROR";
  }
  return "UNKNOWN";
}

}  // namespace confman
