// Node::Open as hosts link it (confman::node): the Node core with the
// default TCP transport (confman/default_transport.h) for options that name
// no transport factory. The core itself never refers to the TCP transport.
#include <memory>
#include <utility>

#include "confman/default_transport.h"
#include "confman/node.h"
#include "confman/status_macros.h"
#include "node_impl.h"

namespace confman {

absl::StatusOr<std::unique_ptr<Node>> Node::Open(NodeOptions options) {
  CONFMAN_ASSIGN_OR_RETURN(
      auto impl,
      node_internal::NodeImpl::Open(std::move(options), &CreateDefaultTransport));
  return std::unique_ptr<Node>(std::move(impl));
}

}  // namespace confman
