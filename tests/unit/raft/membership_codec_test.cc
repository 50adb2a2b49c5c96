// Membership entry encoding and the membership-change arithmetic.
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "confman/raft/membership.h"

namespace confman::raft {
namespace {

using Kind = MembershipChange::Kind;

Membership Make(std::vector<MemberId> voters, std::vector<MemberId> outgoing,
                std::vector<MemberId> learners) {
  Membership m;
  m.voters = std::move(voters);
  m.voters_outgoing = std::move(outgoing);
  m.learners = std::move(learners);
  return m;
}

TEST_CASE("membership encoding round-trips", "[membership]") {
  const Membership membership = GENERATE(
      Make({1}, {}, {}),
      Make({1, 2, 3}, {}, {4, 5}),
      Make({1, 2, 4}, {1, 2, 3}, {9}),
      // Ids that need multi-byte varints, up to the largest.
      Make({127, 128, 1ull << 35, ~0ull}, {}, {300}));
  auto decoded = DecodeMembership(EncodeMembership(membership));
  REQUIRE(decoded.ok());
  CHECK(*decoded == membership);
}

TEST_CASE("membership decoding rejects malformed bytes", "[membership]") {
  const std::string valid =
      EncodeMembership(Make({1, 2, 300}, {1, 2}, {7}));

  SECTION("every truncation") {
    for (size_t length = 0; length < valid.size(); ++length) {
      INFO("first " << length << " of " << valid.size() << " bytes");
      CHECK(DecodeMembership(valid.substr(0, length)).status().code() ==
            absl::StatusCode::kInvalidArgument);
    }
  }
  SECTION("trailing bytes") {
    CHECK(DecodeMembership(valid + '\0').status().code() ==
          absl::StatusCode::kInvalidArgument);
  }
  SECTION("an unknown format version") {
    std::string bytes = valid;
    bytes[0] = static_cast<char>(bytes[0] + 1);
    CHECK(DecodeMembership(bytes).status().code() ==
          absl::StatusCode::kInvalidArgument);
  }
  SECTION("unsorted or duplicate ids") {
    // The encoder writes what it is given, which lets the test produce
    // well-framed bytes that break the sorted-unique invariant.
    for (const Membership& bad : {Make({2, 1}, {}, {}), Make({1, 1}, {}, {}),
                                  Make({1}, {}, {5, 3})}) {
      CHECK(DecodeMembership(EncodeMembership(bad)).status().code() ==
            absl::StatusCode::kInvalidArgument);
    }
  }
  SECTION("a varint that never ends") {
    std::string bytes = valid.substr(0, 1) + std::string(16, '\xff');
    CHECK(DecodeMembership(bytes).status().code() ==
          absl::StatusCode::kInvalidArgument);
  }
}

TEST_CASE("voter and member predicates cover both halves of a joint "
          "configuration",
          "[membership]") {
  const Membership joint = Make({1, 2, 4}, {1, 2, 3}, {9});
  CHECK(IsVoter(joint, 3));
  CHECK(IsVoter(joint, 4));
  CHECK_FALSE(IsVoter(joint, 9));
  CHECK(IsMember(joint, 9));
  CHECK_FALSE(IsMember(joint, 5));
}

TEST_CASE("ApplyChange computes the target configuration", "[membership]") {
  const Membership current = Make({1, 2, 3}, {}, {4});
  struct Case {
    MembershipChange change;
    Membership expected;
  };
  const Case c = GENERATE_COPY(values<Case>({
      {{Kind::kAddVoter, 5}, Make({1, 2, 3, 5}, {}, {4})},
      {{Kind::kAddVoter, 4}, Make({1, 2, 3, 4}, {}, {})},  // Promotion.
      {{Kind::kAddLearner, 6}, Make({1, 2, 3}, {}, {4, 6})},
      {{Kind::kAddLearner, 4}, current},
      {{Kind::kRemove, 2}, Make({1, 3}, {}, {4})},
      {{Kind::kRemove, 4}, Make({1, 2, 3}, {}, {})},
  }));
  auto target = ApplyChange(current, c.change);
  REQUIRE(target.ok());
  CHECK(*target == c.expected);
}

TEST_CASE("ApplyChange refuses joint inputs and voterless results",
          "[membership]") {
  // A joint configuration is transient: the change is retryable.
  CHECK(ApplyChange(Make({1, 2}, {1, 3}, {}), {Kind::kAddVoter, 4})
            .status()
            .code() == absl::StatusCode::kUnavailable);
  CHECK(ApplyChange(Make({1}, {}, {2}), {Kind::kRemove, 1}).status().code() ==
        absl::StatusCode::kInvalidArgument);
}

TEST_CASE("EnterJoint and LeaveJoint", "[membership]") {
  const Membership current = Make({1, 2, 3}, {}, {});
  const Membership target = Make({1, 2, 3, 4}, {}, {});
  CHECK(EnterJoint(current, target) == Make({1, 2, 3, 4}, {1, 2, 3}, {}));
  CHECK(LeaveJoint(Make({1, 2, 3, 4}, {1, 2, 3}, {})) == target);
  // Only learners change: no joint step is needed.
  const Membership with_learner = Make({1, 2, 3}, {}, {7});
  CHECK(EnterJoint(current, with_learner) == with_learner);
}

}  // namespace
}  // namespace confman::raft
