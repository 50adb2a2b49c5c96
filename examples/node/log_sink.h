// Structured log lines on stderr for confman-node: one line per event, in
// logfmt or JSON, each with a timestamp and a level. The Node's own log
// lines (NodeOptions::log) and the transport's come through here too, so an
// operator reads one consistent stream.
#pragma once

#include <atomic>
#include <initializer_list>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include "confman/metrics.h"

namespace confman::server {

enum class LogFormat { kLogfmt, kJson };

// A key and its value, as text; the formatter quotes as the format needs.
using LogField = std::pair<std::string_view, std::string>;

class Logger final : public LogSink {
 public:
  Logger(LogFormat format, LogLevel min_level)
      : format_(format), min_level_(min_level) {}

  // Lines from the Node and its transport: the text becomes `msg`.
  void Log(LogLevel level, std::string_view line) override;

  // An event of the server itself, with extra fields after `msg`.
  void Event(LogLevel level, std::string_view component, std::string_view msg,
             std::initializer_list<LogField> fields = {});

  bool Enabled(LogLevel level) const { return level >= min_level_; }

 private:
  std::string Format(LogLevel level, std::string_view component,
                     std::string_view msg,
                     std::initializer_list<LogField> fields) const;

  const LogFormat format_;
  const LogLevel min_level_;
  // One write per line under the lock keeps lines from different threads
  // whole, even when stderr is a pipe shared with other writers.
  std::mutex mu_;
};

// Parses "debug|info|warning|error"; false when the name is unknown.
bool ParseLogLevel(std::string_view name, LogLevel* level);

}  // namespace confman::server
