// confman::CreateDefaultTransport — the transport a Node builds when
// NodeOptions::transport_factory is empty: a TcpTransport (transport/tcp.h)
// configured from the node's options.
//
// It is its own library (confman::default_transport), so that the Node
// itself (confman::node_core) depends only on the Transport interface and
// never on Asio's TCP stack or OpenSSL. confman::node, the target hosts
// link, is the core plus this library: Node::Open with no factory works as
// documented in node_options.h.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "confman/node_options.h"
#include "confman/transport.h"

namespace confman {

// A started-up transport, not yet Start()ed, and the address it listens on
// ("host:port" with the port it actually bound when the options asked for
// port 0).
struct DefaultTransport {
  std::unique_ptr<Transport> transport{};
  std::string listen_address{};
};

// Receives the transport's own log lines (connections refused, closed).
using TransportLogLine = std::function<void(const std::string& line)>;

// Builds the TCP transport for `options` (listen_address, id, cluster_id,
// shared_secret, max_frame_bytes and election_timeout are used). Errors as
// TcpTransport::Create: InvalidArgument for bad options, Unavailable when
// the address cannot be bound.
[[nodiscard]] absl::StatusOr<DefaultTransport> CreateDefaultTransport(
    const NodeOptions& options, TransportLogLine log);

// What the Node core calls when it needs the default; CreateDefaultTransport
// is the one confman::node passes.
using DefaultTransportMaker = absl::StatusOr<DefaultTransport> (*)(
    const NodeOptions& options, TransportLogLine log);

}  // namespace confman
