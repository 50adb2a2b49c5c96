// Quorum arithmetic (quorum.h): the value a majority has reached and the
// outcome of a vote, for one voter set and for both halves of a joint
// configuration (thesis §4.3).
#include "quorum.h"

#include <algorithm>
#include <limits>

namespace confman::raft::quorum {

Index MajorityValue(const std::vector<MemberId>& voters,
                    absl::FunctionRef<Index(MemberId)> value_of) {
  if (voters.empty()) return std::numeric_limits<Index>::max();
  std::vector<Index> values;
  values.reserve(voters.size());
  for (MemberId id : voters) values.push_back(value_of(id));
  // Sorted descending, the value at position (n/2) is held by n/2 + 1
  // members — a majority.
  std::sort(values.begin(), values.end(), std::greater<Index>());
  return values[voters.size() / 2];
}

Index JointValue(const Membership& membership,
                 absl::FunctionRef<Index(MemberId)> value_of) {
  return std::min(MajorityValue(membership.voters, value_of),
                  MajorityValue(membership.voters_outgoing, value_of));
}

VoteOutcome MajorityVote(
    const std::vector<MemberId>& voters,
    absl::FunctionRef<std::optional<bool>(MemberId)> vote_of) {
  if (voters.empty()) return VoteOutcome::kWon;
  size_t granted = 0;
  size_t missing = 0;
  for (MemberId id : voters) {
    std::optional<bool> vote = vote_of(id);
    if (!vote.has_value()) {
      ++missing;
    } else if (*vote) {
      ++granted;
    }
  }
  const size_t majority = voters.size() / 2 + 1;
  if (granted >= majority) return VoteOutcome::kWon;
  if (granted + missing >= majority) return VoteOutcome::kPending;
  return VoteOutcome::kLost;
}

VoteOutcome JointVote(const Membership& membership,
                      absl::FunctionRef<std::optional<bool>(MemberId)> vote_of) {
  const VoteOutcome incoming = MajorityVote(membership.voters, vote_of);
  const VoteOutcome outgoing = MajorityVote(membership.voters_outgoing, vote_of);
  if (incoming == VoteOutcome::kLost || outgoing == VoteOutcome::kLost) {
    return VoteOutcome::kLost;
  }
  if (incoming == VoteOutcome::kWon && outgoing == VoteOutcome::kWon) {
    return VoteOutcome::kWon;
  }
  return VoteOutcome::kPending;
}

}  // namespace confman::raft::quorum
