// A member's role and, on the leader, each other member's replication
// progress, as Core::Status() reports them. Kept apart from core.h so that
// code which only displays a member's status (confman::NodeStatus) need not
// see the core's interface.
#pragma once

#include <cstdint>

#include "confman/raft/types.h"

namespace confman::raft {

enum class Role : uint8_t { kFollower, kPreCandidate, kCandidate, kLeader };
const char* RoleName(Role role);

// Replication progress of one member, as the leader sees it.
struct MemberProgress {
  enum class State : uint8_t { kProbe, kReplicate, kSnapshot };
  MemberId id = kNoMember;
  bool voter = false;
  State state = State::kProbe;
  Index match = 0;  // Highest index known to be replicated there.
  Index next = 0;   // Next index to send.
  uint32_t inflight_messages = 0;
  uint64_t inflight_bytes = 0;
  bool recently_active = false;  // Heard from within an election timeout.
};

}  // namespace confman::raft
