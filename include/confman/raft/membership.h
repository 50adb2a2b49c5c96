// Membership encoding and the membership-change arithmetic.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "confman/raft/core.h"
#include "confman/raft/types.h"

namespace confman::raft {

// The bytes of a kMembership entry. Stable across versions: a one-byte
// format version followed by varint-encoded, length-prefixed id lists.
std::string EncodeMembership(const Membership& membership);

// Parses EncodeMembership's output. InvalidArgument for anything else
// (truncated, trailing bytes, unsorted or duplicate ids).
[[nodiscard]] absl::StatusOr<Membership> DecodeMembership(std::string_view bytes);

// True if `id` is a voter in either half of the configuration.
bool IsVoter(const Membership& membership, MemberId id);
// True if `id` is a voter or a learner.
bool IsMember(const Membership& membership, MemberId id);

// The configuration that applying `change` to the non-joint `current`
// should reach. Unavailable if `current` is joint (retry once it has left);
// InvalidArgument for member 0, for demoting a voter straight to learner,
// or if the result would have no voter.
[[nodiscard]] absl::StatusOr<Membership> ApplyChange(const Membership& current,
                                       const MembershipChange& change);

// The first step from `current` towards `target`: `target` itself when the
// voter sets are equal, otherwise the joint configuration
// (voters = target.voters, voters_outgoing = current.voters).
Membership EnterJoint(const Membership& current, const Membership& target);

// The configuration that ends a joint one.
Membership LeaveJoint(const Membership& joint);

}  // namespace confman::raft
