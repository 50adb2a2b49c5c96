// Hooks through which a Node reports what it is doing, so the host can feed
// its own monitoring and logging without confman forcing a library on it.
#pragma once

#include <cstdint>
#include <string_view>

namespace confman {

// Receives counters and histogram samples. Names are stable, dot-separated
// and documented where they are produced (see node.h, "Metrics").
//
// Thread safety: methods are called from several Node threads at once (the
// Raft loop, the apply thread, client threads); an implementation must be
// thread-safe and must not block, because it runs on latency-critical paths.
// It must outlive the Node.
class MetricsSink {
 public:
  virtual ~MetricsSink() = default;

  // Adds `delta` to the monotonic counter `name`.
  virtual void AddCounter(std::string_view name, uint64_t delta) = 0;

  // Records one sample of the histogram `name`; the unit is part of the
  // name (`..._ms`, `..._bytes`).
  virtual void RecordHistogram(std::string_view name, double value) = 0;
};

enum class LogLevel : uint8_t { kDebug, kInfo, kWarning, kError };
const char* LogLevelName(LogLevel level);

// Receives human-readable event lines (elections, storage failures, peers
// unreachable). Same threading rules as MetricsSink.
class LogSink {
 public:
  virtual ~LogSink() = default;
  virtual void Log(LogLevel level, std::string_view line) = 0;
};

}  // namespace confman
