// Membership entries: their stable byte encoding (a version byte, then
// varint-length-prefixed varint id lists) and the arithmetic that turns a
// requested change into the joint and final configurations (thesis §4.3).
#include "confman/raft/membership.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace confman::raft {
namespace {

constexpr uint8_t kMembershipFormatVersion = 1;

void PutVarint(std::string& out, uint64_t value) {
  while (value >= 0x80) {
    out.push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
}

bool GetVarint(std::string_view& in, uint64_t& value) {
  value = 0;
  for (int shift = 0; shift < 64 && !in.empty(); shift += 7) {
    const auto byte = static_cast<uint8_t>(in.front());
    in.remove_prefix(1);
    value |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) return true;
  }
  return false;
}

void PutIds(std::string& out, const std::vector<MemberId>& ids) {
  PutVarint(out, ids.size());
  for (MemberId id : ids) PutVarint(out, id);
}

[[nodiscard]] absl::Status GetIds(std::string_view& in, std::vector<MemberId>& ids,
                    const char* which) {
  uint64_t count = 0;
  // Each id takes at least one byte, which bounds the allocation by input.
  if (!GetVarint(in, count) || count > in.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("membership entry: bad ", which, " count"));
  }
  ids.reserve(count);
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t id = 0;
    if (!GetVarint(in, id) || id == kNoMember) {
      return absl::InvalidArgumentError(
          absl::StrCat("membership entry: bad id in ", which));
    }
    if (!ids.empty() && id <= ids.back()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "membership entry: ", which, " not sorted or has duplicates"));
    }
    ids.push_back(id);
  }
  return absl::OkStatus();
}

bool Contains(const std::vector<MemberId>& ids, MemberId id) {
  return std::binary_search(ids.begin(), ids.end(), id);
}

void Insert(std::vector<MemberId>& ids, MemberId id) {
  auto it = std::lower_bound(ids.begin(), ids.end(), id);
  if (it == ids.end() || *it != id) ids.insert(it, id);
}

void Erase(std::vector<MemberId>& ids, MemberId id) {
  auto it = std::lower_bound(ids.begin(), ids.end(), id);
  if (it != ids.end() && *it == id) ids.erase(it);
}

}  // namespace

std::string EncodeMembership(const Membership& membership) {
  std::string out;
  out.push_back(static_cast<char>(kMembershipFormatVersion));
  PutIds(out, membership.voters);
  PutIds(out, membership.voters_outgoing);
  PutIds(out, membership.learners);
  return out;
}

[[nodiscard]] absl::StatusOr<Membership> DecodeMembership(std::string_view bytes) {
  if (bytes.empty() ||
      static_cast<uint8_t>(bytes.front()) != kMembershipFormatVersion) {
    return absl::InvalidArgumentError(
        "membership entry: unknown format version; was it written by a newer "
        "confman?");
  }
  bytes.remove_prefix(1);
  Membership m;
  if (auto s = GetIds(bytes, m.voters, "voters"); !s.ok()) return s;
  if (auto s = GetIds(bytes, m.voters_outgoing, "outgoing voters"); !s.ok()) {
    return s;
  }
  if (auto s = GetIds(bytes, m.learners, "learners"); !s.ok()) return s;
  if (!bytes.empty()) {
    return absl::InvalidArgumentError("membership entry: trailing bytes");
  }
  for (MemberId learner : m.learners) {
    if (IsVoter(m, learner)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "membership entry: member ", learner, " is both learner and voter"));
    }
  }
  return m;
}

bool IsVoter(const Membership& membership, MemberId id) {
  return Contains(membership.voters, id) ||
         Contains(membership.voters_outgoing, id);
}

bool IsMember(const Membership& membership, MemberId id) {
  return IsVoter(membership, id) || Contains(membership.learners, id);
}

[[nodiscard]] absl::StatusOr<Membership> ApplyChange(const Membership& current,
                                       const MembershipChange& change) {
  if (current.joint()) {
    return absl::UnavailableError(
        "the cluster is in a joint configuration; retry once it has left it");
  }
  if (change.member == kNoMember) {
    return absl::InvalidArgumentError("membership change names member 0");
  }
  Membership next = current;
  switch (change.kind) {
    case MembershipChange::Kind::kAddLearner:
      if (Contains(next.voters, change.member)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "member ", change.member,
            " is a voter; remove it first to make it a learner"));
      }
      Insert(next.learners, change.member);
      break;
    case MembershipChange::Kind::kAddVoter:
      Erase(next.learners, change.member);
      Insert(next.voters, change.member);
      break;
    case MembershipChange::Kind::kRemove:
      Erase(next.learners, change.member);
      Erase(next.voters, change.member);
      if (next.voters.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "removing member ", change.member, " would leave no voter"));
      }
      break;
  }
  return next;
}

Membership EnterJoint(const Membership& current, const Membership& target) {
  if (current.voters == target.voters) return target;
  Membership joint = target;
  joint.voters_outgoing = current.voters;
  return joint;
}

Membership LeaveJoint(const Membership& joint) {
  Membership next = joint;
  next.voters_outgoing.clear();
  return next;
}

}  // namespace confman::raft
