// The default transport of a Node (confman/default_transport.h): the TCP
// transport, configured from NodeOptions. Its own library
// (confman::default_transport) so that the Node core depends on the
// Transport interface only.
#include "confman/default_transport.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "confman/status_macros.h"
#include "confman/transport/tcp.h"
#include "confman/wire_limits.h"

namespace confman {

// NodeOptions::Validate checks options against wire_limits; the TCP
// transport must accept exactly what passes.
static_assert(wire_limits::kMinSharedSecretBytes ==
              TcpTransportOptions::kMinSecretBytes);
static_assert(wire_limits::kMinFrameBytes ==
              TcpTransportOptions::kMinFrameBytes);
static_assert(wire_limits::kMaxFrameBytes ==
              TcpTransportOptions::kMaxFrameBytes);
static_assert(wire_limits::kFrameOverheadBytes ==
              TcpTransportOptions::kFrameOverheadBytes);

absl::StatusOr<DefaultTransport> CreateDefaultTransport(
    const NodeOptions& options, TransportLogLine log) {
  const uint64_t frame = options.max_frame_bytes;
  // Field by field: the transport's options grow over time.
  TcpTransportOptions tcp;
  tcp.listen_address = options.listen_address;
  tcp.member_id = options.id;
  tcp.cluster_id = options.cluster_id;
  tcp.shared_secret = options.shared_secret;
  tcp.max_frame_bytes = static_cast<uint32_t>(frame);
  tcp.max_bulk_queue_bytes =
      static_cast<size_t>(std::max<uint64_t>(frame, uint64_t{64} << 20));
  tcp.log = std::move(log);
  // A member that comes back (a restart, a healed link) is reached again
  // within about an election timeout. With the transport's 2 s backoff, a
  // member that had been trying to reach it while it was down, and then
  // won an election, left it ignorant of the new leader, and its writes
  // waiting, for up to 2 s.
  tcp.reconnect_max =
      std::clamp(std::chrono::duration_cast<std::chrono::milliseconds>(
                     options.election_timeout),
                 tcp.reconnect_initial, tcp.reconnect_max);
  CONFMAN_ASSIGN_OR_RETURN(std::unique_ptr<TcpTransport> created,
                           TcpTransport::Create(std::move(tcp)));
  const std::string host =
      options.listen_address.substr(0, options.listen_address.rfind(':'));
  DefaultTransport result;
  result.listen_address = absl::StrCat(host, ":", created->listen_port());
  result.transport = std::move(created);
  return result;
}

}  // namespace confman
