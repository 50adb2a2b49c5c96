// Formats confman-node's log lines (logfmt or JSON) and writes them to
// stderr, one write per line.
#include "log_sink.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>

#include "json_util.h"

namespace confman::server {
namespace {

std::string Timestamp() {
  const auto now = std::chrono::system_clock::now();
  const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(
                          now.time_since_epoch())
                          .count();
  const std::time_t secs = static_cast<std::time_t>(micros / 1000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                tm.tm_min, tm.tm_sec, static_cast<int>((micros / 1000) % 1000));
  return buf;
}

const char* LevelWord(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarning: return "warning";
    case LogLevel::kError: return "error";
  }
  return "info";
}

// logfmt values are bare unless they hold a space, quote, '=' or control
// character; then they are quoted with backslash escapes, so a line always
// splits back into the same fields.
void AppendLogfmtValue(std::string* out, std::string_view value) {
  bool quote = value.empty();
  for (char c : value) {
    if (c == ' ' || c == '"' || c == '=' || static_cast<unsigned char>(c) < 0x20) {
      quote = true;
      break;
    }
  }
  if (!quote) {
    out->append(value);
    return;
  }
  out->push_back('"');
  for (char c : value) {
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char hex[8];
          std::snprintf(hex, sizeof(hex), "\\x%02x", static_cast<unsigned char>(c));
          out->append(hex);
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

}  // namespace

bool ParseLogLevel(std::string_view name, LogLevel* level) {
  if (name == "debug") *level = LogLevel::kDebug;
  else if (name == "info") *level = LogLevel::kInfo;
  else if (name == "warning" || name == "warn") *level = LogLevel::kWarning;
  else if (name == "error") *level = LogLevel::kError;
  else return false;
  return true;
}

std::string Logger::Format(LogLevel level, std::string_view component,
                           std::string_view msg,
                           std::initializer_list<LogField> fields) const {
  if (format_ == LogFormat::kJson) {
    Json line = Json::object();
    line["ts"] = Timestamp();
    line["level"] = LevelWord(level);
    line["component"] = std::string(component);
    line["msg"] = std::string(msg);
    for (const auto& [key, value] : fields) line[std::string(key)] = value;
    return DumpJson(line) + "\n";
  }
  std::string out;
  out.reserve(96 + msg.size());
  out.append("ts=").append(Timestamp());
  out.append(" level=").append(LevelWord(level));
  out.append(" component=");
  AppendLogfmtValue(&out, component);
  out.append(" msg=");
  AppendLogfmtValue(&out, msg);
  for (const auto& [key, value] : fields) {
    out.push_back(' ');
    out.append(key);
    out.push_back('=');
    AppendLogfmtValue(&out, value);
  }
  out.push_back('\n');
  return out;
}

void Logger::Log(LogLevel level, std::string_view line) {
  Event(level, "node", line);
}

void Logger::Event(LogLevel level, std::string_view component,
                   std::string_view msg, std::initializer_list<LogField> fields) {
  if (!Enabled(level)) return;
  const std::string line = Format(level, component, msg, fields);
  std::lock_guard<std::mutex> lock(mu_);
  size_t written = 0;
  while (written < line.size()) {
    const ssize_t n = ::write(STDERR_FILENO, line.data() + written, line.size() - written);
    if (n <= 0) break;  // Nowhere left to report a broken stderr.
    written += static_cast<size_t>(n);
  }
}

}  // namespace confman::server
