// A MetricsSink that keeps every counter, for tests that assert on them.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include "confman/metrics.h"

namespace confman {

class CountingMetrics final : public MetricsSink {
 public:
  void AddCounter(std::string_view name, uint64_t delta) override {
    std::lock_guard lock(mu_);
    counters_[std::string(name)] += delta;
  }
  void RecordHistogram(std::string_view, double) override {}
  uint64_t Get(const std::string& name) {
    std::lock_guard lock(mu_);
    return counters_[name];
  }

 private:
  std::mutex mu_;
  std::map<std::string, uint64_t> counters_;
};

}  // namespace confman
