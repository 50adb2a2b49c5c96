// Test ports outside the kernel's ephemeral range; see loopback_port.h for
// why a port from bind(0) is not safe to reuse after a restart.
#include "confman/testing/loopback_port.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <mutex>
#include <string>
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

// Where the per-port lock files live. Every test process on the machine
// uses the same directory, so a lock held by one is seen by all.
std::string LockDirectory() {
  const char* tmp = std::getenv("TMPDIR");
  std::string dir = (tmp != nullptr && *tmp != '\0') ? tmp : "/tmp";
  dir += "/confman-loopback-ports";
  // World-writable and sticky like /tmp itself, so processes of different
  // users share it; a failed mkdir (it exists) is fine.
  if (::mkdir(dir.c_str(), 01777) == 0) ::chmod(dir.c_str(), 01777);
  return dir;
}

// Claims `port` for this process until it exits: an exclusive flock on the
// port's lock file, whose descriptor is never closed. Between processes the
// lock is what keeps a port checked free by one from being handed to
// another before the first binds it; within this process the same lock
// (flock is per open file description) keeps a port from being handed out
// twice. Returns false when another process holds the port, and also when
// the lock file cannot be opened (the caller then tries the next port).
bool ClaimForThisProcess(const std::string& dir, int port) {
  const std::string path = dir + "/" + std::to_string(port);
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0) return false;
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return false;
  }
  return true;  // the descriptor stays open: the claim lasts until exit
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
  static const std::string lock_dir = LockDirectory();
  const int span = hi - lo + 1;
  if (next < 0 || next >= span) {
    next = static_cast<int>((static_cast<unsigned>(::getpid()) * 7919u) % span);
  }
  for (int tried = 0; tried < span; ++tried) {
    const int port = lo + next;
    next = (next + 1) % span;
    if (ClaimForThisProcess(lock_dir, port) && CanBind(port)) {
      return static_cast<uint16_t>(port);
    }
  }
  return absl::UnavailableError(absl::StrCat(
      "no free TCP port on 127.0.0.1 in ", lo, "-", hi,
      " that no other test process has claimed (lock files in ", lock_dir,
      "); stop the processes that hold them, or make that directory "
      "writable"));
}

}  // namespace confman::testing
