// Aggregation and Prometheus text rendering for PrometheusMetrics.
#include "metrics.h"

#include <algorithm>
#include <charconv>
#include <cstdio>

namespace confman::server {
namespace {

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::string Sanitize(std::string_view name) {
  std::string out = "confman_";
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    (c >= '0' && c <= '9') || c == '_';
    out.push_back(ok ? c : '_');
  }
  return out;
}

// Shortest text that reads back as the same double ("0.0005", not
// "0.00050000000000000001").
std::string FormatNumber(double v) {
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  if (ec != std::errc()) return "NaN";
  return std::string(buf, end);
}

// Label values are quoted; backslash, quote and newline are escaped.
std::string LabelValue(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') out.push_back('\\');
    if (c == '\n') {
      out.append("\\n");
      continue;
    }
    out.push_back(c);
  }
  return out;
}

}  // namespace

std::string PrometheusMetrics::CounterName(std::string_view name) {
  std::string out = Sanitize(name);
  if (!EndsWith(out, "_total")) out.append("_total");
  return out;
}

std::string PrometheusMetrics::HistogramName(std::string_view name) {
  std::string out = Sanitize(name);
  if (EndsWith(out, "_ms")) out = out.substr(0, out.size() - 3) + "_seconds";
  return out;
}

std::string PrometheusMetrics::GaugeName(std::string_view name) { return Sanitize(name); }

void PrometheusMetrics::AddCounter(std::string_view name, uint64_t delta) {
  const std::string key = CounterName(name);
  std::lock_guard<std::mutex> lock(mu_);
  counters_[key][""] += delta;
}

void PrometheusMetrics::AddLabeledCounter(std::string_view name,
                                          std::string_view label,
                                          std::string_view label_value,
                                          uint64_t delta) {
  const std::string key = CounterName(name);
  std::string labels(label);
  labels.append("=\"").append(LabelValue(label_value)).append("\"");
  std::lock_guard<std::mutex> lock(mu_);
  counters_[key][labels] += delta;
}

void PrometheusMetrics::RecordHistogram(std::string_view name, double value) {
  const std::string key = HistogramName(name);
  std::lock_guard<std::mutex> lock(mu_);
  auto [it, inserted] = histograms_.try_emplace(key);
  Histogram& h = it->second;
  if (inserted) {
    if (EndsWith(name, "_ms")) {
      h.scale = 0.001;
      h.bounds = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                  0.1,    0.25,  0.5,    1,     2.5,  5,     10};
    } else if (EndsWith(name, "_bytes")) {
      for (double b = 256; b <= double(uint64_t{1} << 30); b *= 4) h.bounds.push_back(b);
    } else {
      h.bounds = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 100000};
    }
    h.counts.assign(h.bounds.size() + 1, 0);
  }
  const double v = value * h.scale;
  const size_t bucket = static_cast<size_t>(
      std::lower_bound(h.bounds.begin(), h.bounds.end(), v) - h.bounds.begin());
  ++h.counts[bucket];
  ++h.count;
  h.sum += v;
}

std::string PrometheusMetrics::Render(const std::vector<Gauge>& gauges) const {
  std::string out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [name, series] : counters_) {
    out.append("# TYPE ").append(name).append(" counter\n");
    for (const auto& [labels, value] : series) {
      out.append(name);
      if (!labels.empty()) out.append("{").append(labels).append("}");
      out.append(" ").append(std::to_string(value)).append("\n");
    }
  }
  for (const auto& [name, h] : histograms_) {
    out.append("# TYPE ").append(name).append(" histogram\n");
    uint64_t cumulative = 0;
    for (size_t i = 0; i < h.bounds.size(); ++i) {
      cumulative += h.counts[i];
      out.append(name).append("_bucket{le=\"").append(FormatNumber(h.bounds[i]))
          .append("\"} ").append(std::to_string(cumulative)).append("\n");
    }
    out.append(name).append("_bucket{le=\"+Inf\"} ").append(std::to_string(h.count)).append("\n");
    out.append(name).append("_sum ").append(FormatNumber(h.sum)).append("\n");
    out.append(name).append("_count ").append(std::to_string(h.count)).append("\n");
  }
  for (const auto& [dotted, value] : gauges) {
    const std::string name = GaugeName(dotted);
    out.append("# TYPE ").append(name).append(" gauge\n");
    out.append(name).append(" ").append(FormatNumber(value)).append("\n");
  }
  return out;
}

}  // namespace confman::server
