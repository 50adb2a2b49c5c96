// A one-line progress bar on stderr, drawn only when stderr is a terminal
// so that scripts and logs never see carriage returns.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace confmanctl {

class ProgressBar {
 public:
  // total 0: unknown, only the count is shown.
  ProgressBar(std::string label, uint64_t total);
  ~ProgressBar();

  void set_total(uint64_t total) { total_ = total; }
  void set_label(std::string label) { label_ = std::move(label); }
  // Redraws at most ten times a second unless `force`.
  void Update(uint64_t done, const std::string& note = "", bool force = false);
  // Draws the final state and ends the line.
  void Finish(const std::string& note = "");

  bool enabled() const { return enabled_; }

 private:
  std::string label_;
  uint64_t total_;
  bool enabled_;
  bool drawn_ = false;
  bool finished_ = false;
  uint64_t last_done_ = 0;
  std::chrono::steady_clock::time_point last_draw_{};
  std::chrono::steady_clock::time_point start_;
};

}  // namespace confmanctl
