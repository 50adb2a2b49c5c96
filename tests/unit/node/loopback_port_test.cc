// PickLoopbackPort: ports a restarted test member can bind again, because
// no outgoing connection is ever given one as its source port.
#include "confman/testing/loopback_port.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <set>

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

}  // namespace
}  // namespace confman::testing
