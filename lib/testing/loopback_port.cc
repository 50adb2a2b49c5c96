// Test ports outside the kernel's ephemeral range; see loopback_port.h for
// why a port from bind(0) is not safe to reuse after a restart.
#include "confman/testing/loopback_port.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <set>
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

// The file whose byte at offset `port` stands for that port. Every test
// process on the machine uses the same file, so a lock held by one is seen
// by all.
std::string LockFilePath() {
  const char* tmp = std::getenv("TMPDIR");
  const std::string dir = (tmp != nullptr && *tmp != '\0') ? tmp : "/tmp";
  return dir + "/confman-loopback-ports.lock";
}

// One descriptor for every claim this process makes, opened on first use
// and never closed: closing any descriptor of the file would drop all of
// this process's record locks on it. -1 if the file cannot be opened.
int LockFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  // Readable and writable by every user whatever the umask, so that test
  // processes of different users share the claims.
  if (fd >= 0) ::fchmod(fd, 0666);
  return fd;
}

// Claims `port` for this process until it exits: a write lock (fcntl) on
// the port's byte of the lock file. Another process that has claimed it
// holds that lock, so this returns false; a child forked from this process
// does not inherit the lock and so cannot claim the parent's ports either.
// Record locks never conflict within one process: the caller keeps this
// process from handing out a port twice.
bool SetLock(int lock_fd, int port, short type) {
  struct flock range {};
  range.l_type = type;
  range.l_whence = SEEK_SET;
  range.l_start = port;
  range.l_len = 1;
  return ::fcntl(lock_fd, F_SETLK, &range) == 0;
}
bool ClaimForThisProcess(int lock_fd, int port) {
  return SetLock(lock_fd, port, F_WRLCK);
}
void Release(int lock_fd, int port) { SetLock(lock_fd, port, F_UNLCK); }

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
  static std::set<int> handed_out;  // by this process
  std::lock_guard<std::mutex> lock(mu);
  static const std::string lock_path = LockFilePath();
  static const int lock_fd = LockFile(lock_path);
  static const int open_errno = lock_fd < 0 ? errno : 0;
  if (lock_fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot open ", lock_path,
                     ", where test processes claim their "
                     "ports: ",
                     std::strerror(open_errno),
                     "; make it readable and "
                     "writable for every user, or point TMPDIR elsewhere"));
  }
  const int span = hi - lo + 1;
  if (next < 0 || next >= span) {
    next = static_cast<int>((static_cast<unsigned>(::getpid()) * 7919u) % span);
  }
  for (int tried = 0; tried < span; ++tried) {
    const int port = lo + next;
    next = (next + 1) % span;
    if (handed_out.count(port) != 0) continue;
    if (!ClaimForThisProcess(lock_fd, port)) continue;
    if (CanBind(port)) {
      handed_out.insert(port);
      return static_cast<uint16_t>(port);
    }
    Release(lock_fd, port);  // taken by something else; leave it be
  }
  return absl::UnavailableError(
      absl::StrCat("no free TCP port on 127.0.0.1 in ", lo, "-", hi,
                   " that no other test process has claimed (in ", lock_path,
                   "); stop the processes that hold them"));
}

}  // namespace confman::testing
