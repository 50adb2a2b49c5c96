// The part of the Transport contract (confman/transport.h) that every
// implementation shares: which messages travel on the control path.
#include "confman/transport.h"

namespace confman {

bool IsControlTraffic(raft::MessageType type) {
  switch (type) {
    case raft::MessageType::kAppend:
    // A snapshot notice must not overtake the chunks it announces, which
    // travel on the bulk path.
    case raft::MessageType::kSnapshot:
      return false;
    default:
      return true;
  }
}

}  // namespace confman
