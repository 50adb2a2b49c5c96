// Quorum arithmetic: pure functions over a configuration and per-member
// values. Kept free of protocol state so it can be tested by table.
#pragma once

#include <optional>
#include <vector>

#include "absl/functional/function_ref.h"
#include "confman/raft/types.h"

namespace confman::raft::quorum {

// The largest value v such that a majority of `voters` report >= v.
// Commitment (thesis §3.6) and quorum-acknowledged heartbeat rounds are both
// this computation. An empty voter set imposes no constraint: it returns the
// largest Index, so a joint configuration's empty half never holds back the
// other.
Index MajorityValue(const std::vector<MemberId>& voters,
                    absl::FunctionRef<Index(MemberId)> value_of);

// MajorityValue under joint consensus (thesis §4.3): the smaller of the two
// halves' values.
Index JointValue(const Membership& membership,
                 absl::FunctionRef<Index(MemberId)> value_of);

enum class VoteOutcome { kPending, kWon, kLost };

// `vote_of` returns true (granted), false (rejected) or nullopt (no answer
// yet). Won when a majority granted; lost when a majority can no longer be
// reached.
VoteOutcome MajorityVote(
    const std::vector<MemberId>& voters,
    absl::FunctionRef<std::optional<bool>(MemberId)> vote_of);

// Joint: won only when both halves are won; lost when either is lost.
VoteOutcome JointVote(const Membership& membership,
                      absl::FunctionRef<std::optional<bool>(MemberId)> vote_of);

}  // namespace confman::raft::quorum
