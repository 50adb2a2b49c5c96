// Test ports outside the kernel's ephemeral range; see loopback_port.h for
// why a port from bind(0) is not safe to reuse after a restart.
#include "confman/testing/loopback_port.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <mutex>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace confman::testing {
namespace {

constexpr int kLowestPort = 10000;
constexpr int kMinimumSpan = 2000;

std::pair<int, int> EphemeralRange() {
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  int lo = 0, hi = 0;
  // Linux's default when the file cannot be read.
  if (!(in >> lo >> hi) || lo > hi) return {32768, 60999};
  return {lo, hi};
}

bool CanBind(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool free =
      ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return free;
}

}  // namespace

absl::StatusOr<uint16_t> PickLoopbackPort() {
  const auto [ephemeral_lo, ephemeral_hi] = EphemeralRange();
  int lo = kLowestPort, hi = ephemeral_lo - 1;
  if (ephemeral_hi < 65535 && 65535 - ephemeral_hi > hi - lo) {
    lo = ephemeral_hi + 1;
    hi = 65535;
  }
  if (hi - lo + 1 < kMinimumSpan) {
    return absl::UnavailableError(absl::StrCat(
        "the ephemeral port range ", ephemeral_lo, "-", ephemeral_hi,
        " leaves fewer than ", kMinimumSpan,
        " ports for test members; narrow net.ipv4.ip_local_port_range"));
  }
  static std::mutex mu;
  static int next = -1;  // offset into [lo, hi] of the next port to try
  std::lock_guard<std::mutex> lock(mu);
  const int span = hi - lo + 1;
  if (next < 0 || next >= span) {
    next = static_cast<int>((static_cast<unsigned>(::getpid()) * 7919u) % span);
  }
  for (int tried = 0; tried < span; ++tried) {
    const int port = lo + next;
    next = (next + 1) % span;
    if (CanBind(port)) return static_cast<uint16_t>(port);
  }
  return absl::UnavailableError(
      absl::StrCat("no free TCP port on 127.0.0.1 in ", lo, "-", hi,
                   "; stop the processes that hold them"));
}

}  // namespace confman::testing
