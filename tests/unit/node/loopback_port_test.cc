// PickLoopbackPort: ports a restarted test member can bind again, because
// no outgoing connection is ever given one as its source port.
#include "confman/testing/loopback_port.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <set>
#include <vector>

namespace confman::testing {
namespace {

bool Binds(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok =
      ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

TEST_CASE(
    "loopback ports lie outside the ephemeral range, are free and never "
    "repeat") {
  std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range");
  int ephemeral_lo = 0, ephemeral_hi = 0;
  REQUIRE(range >> ephemeral_lo >> ephemeral_hi);
  std::set<uint16_t> seen;
  for (int i = 0; i < 200; ++i) {
    absl::StatusOr<uint16_t> port = PickLoopbackPort();
    REQUIRE(port.ok());
    INFO("port " << *port << ", ephemeral range " << ephemeral_lo << "-"
                 << ephemeral_hi);
    CHECK((*port < ephemeral_lo || *port > ephemeral_hi));
    CHECK(*port >= 10000);
    CHECK(seen.insert(*port).second);
    CHECK(Binds(*port));
  }
}

// Test processes run in parallel (ctest --parallel) and each starts members
// on ports it picked; a port checked free by one process must not be handed
// to another before the first binds it. Children forked after the parent
// has picked a port start from the same state, the worst case for any
// scheme that only spreads processes apart.
TEST_CASE(
    "processes picking loopback ports at the same time get distinct ones") {
  absl::StatusOr<uint16_t> parent_port = PickLoopbackPort();
  REQUIRE(parent_port.ok());
  constexpr int kChildren = 4;
  constexpr int kPortsPerChild = 25;
  std::vector<std::pair<pid_t, int>> children;  // pid, read end of its pipe
  for (int c = 0; c < kChildren; ++c) {
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(fds[0]);
      uint16_t ports[kPortsPerChild] = {};
      for (uint16_t& port : ports) {
        absl::StatusOr<uint16_t> picked = PickLoopbackPort();
        port = picked.ok() ? *picked : 0;
      }
      const bool written = ::write(fds[1], ports, sizeof(ports)) ==
                           static_cast<ssize_t>(sizeof(ports));
      // Hold the ports until every child has picked: a member would hold
      // its port for as long as it runs.
      ::usleep(300 * 1000);
      ::_exit(written ? 0 : 1);
    }
    ::close(fds[1]);
    children.emplace_back(pid, fds[0]);
  }
  std::set<uint16_t> seen = {*parent_port};
  for (auto [pid, fd] : children) {
    uint16_t ports[kPortsPerChild] = {};
    size_t got = 0;
    while (got < sizeof(ports)) {
      const ssize_t n =
          ::read(fd, reinterpret_cast<char*>(ports) + got, sizeof(ports) - got);
      if (n <= 0) break;
      got += static_cast<size_t>(n);
    }
    ::close(fd);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(got == sizeof(ports));
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
    for (uint16_t port : ports) {
      INFO("port " << port << " from child " << pid);
      CHECK(port != 0);
      CHECK(seen.insert(port).second);
    }
  }
  CHECK(seen.size() == 1 + kChildren * kPortsPerChild);
}

int OpenDescriptors() {
  int n = 0;
  for ([[maybe_unused]] const auto& entry :
       std::filesystem::directory_iterator("/proc/self/fd")) {
    ++n;
  }
  return n;
}

// A host's test binary may start hundreds of clusters; the claims must not
// cost a file descriptor each, or it would run out of them (the soft limit
// is often 1,024).
TEST_CASE("claiming many loopback ports holds a bounded number of files open") {
  REQUIRE(PickLoopbackPort().ok());  // whatever the first claim sets up
  const int before = OpenDescriptors();
  for (int i = 0; i < 300; ++i) REQUIRE(PickLoopbackPort().ok());
  CHECK(OpenDescriptors() - before <= 2);
}

}  // namespace
}  // namespace confman::testing
