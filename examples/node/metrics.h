// The Prometheus side of confman-node: a MetricsSink that aggregates the
// Node's counters and histograms (and the HTTP layer's own) and renders
// them as Prometheus text format 0.0.4 for GET /metrics.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "confman/metrics.h"

namespace confman::server {

class PrometheusMetrics final : public MetricsSink {
 public:
  void AddCounter(std::string_view name, uint64_t delta) override;
  void RecordHistogram(std::string_view name, double value) override;

  // A counter with one label, e.g. http.requests{code="200"}.
  void AddLabeledCounter(std::string_view name, std::string_view label,
                         std::string_view label_value, uint64_t delta);

  // A gauge sampled at render time: name (dotted, as for counters) and value.
  using Gauge = std::pair<std::string, double>;
  std::string Render(const std::vector<Gauge>& gauges) const;

  // "node.write_ms" -> "confman_node_write_seconds" and friends.
  static std::string CounterName(std::string_view name);
  static std::string HistogramName(std::string_view name);
  static std::string GaugeName(std::string_view name);

 private:
  struct Histogram {
    std::vector<double> bounds;  // Upper bounds in base units.
    std::vector<uint64_t> counts;  // Per bucket (not cumulative).
    uint64_t count = 0;
    double sum = 0;
    double scale = 1;  // Multiplies a sample into base units.
  };

  // The lock is held for a map lookup and an add: short enough for the
  // Node's latency-sensitive threads.
  mutable std::mutex mu_;
  // Prometheus name -> (label text, e.g. `code="200"` or empty) -> value.
  std::map<std::string, std::map<std::string, uint64_t>> counters_;
  std::map<std::string, Histogram> histograms_;
};

}  // namespace confman::server
