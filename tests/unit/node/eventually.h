// Eventually: how the node tests wait for something that happens on the
// node's own threads (an election, an apply, a watch callback).
#pragma once

#include <chrono>
#include <functional>
#include <ostream>
#include <thread>

namespace confman::test {

// What Eventually found. Converts to bool; in a failed CHECK or REQUIRE
// Catch prints it, naming the deadline that passed.
struct EventuallyResult {
  bool held = false;
  std::chrono::milliseconds timeout{0};
  explicit operator bool() const { return held; }
};

inline std::ostream& operator<<(std::ostream& out, const EventuallyResult& r) {
  if (r.held) return out << "held";
  return out << "condition did not hold within " << r.timeout.count() << " ms";
}

// Calls `condition` every `poll` until it returns true or `timeout` has
// passed since the first call.
inline EventuallyResult Eventually(
    const std::function<bool()>& condition,
    std::chrono::milliseconds timeout = std::chrono::milliseconds(5000),
    std::chrono::milliseconds poll = std::chrono::milliseconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return {false, timeout};
    std::this_thread::sleep_for(poll);
  }
  return {true, timeout};
}

}  // namespace confman::test
