// Ports for test members on 127.0.0.1 that stay usable across restarts.
//
// A port the kernel picks for bind(0) lies in its ephemeral range, the
// range it also draws the source ports of outgoing connections from. A
// member that is stopped and restarted on the same address (as
// LocalCluster::RestartMember does) can then find its port taken by some
// unrelated connection made while it was down. Ports handed out here lie
// outside that range, so only a process that binds fixed ports of its own
// choosing can collide with them.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"

namespace confman::testing {

// A TCP port on 127.0.0.1 that was free when checked (by binding it and
// closing the socket again). Ports come from 10000 up to the start of the
// ephemeral range (net.ipv4.ip_local_port_range), or above its end when
// that leaves more room. A port handed out is claimed for the calling
// process until it exits, by a write lock (fcntl) on the port's byte of
// $TMPDIR/confman-loopback-ports.lock (default /tmp), one file and one
// descriptor for all of a process's claims. No other process picking
// through this function gets the port, nor does this one again, so parallel
// test processes (ctest --parallel) never race for a port between checking
// and binding it. Child processes do not inherit the claim; the picking
// process keeps it for them. Thread-safe.
// UNAVAILABLE when the lock file cannot be opened, no port in the range is
// free and unclaimed, or the ephemeral range leaves fewer than 2,000 ports
// outside it.
[[nodiscard]] absl::StatusOr<uint16_t> PickLoopbackPort();

}  // namespace confman::testing
