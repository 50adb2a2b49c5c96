// Quorum arithmetic (lib/raft/quorum.h), by table.
#include "quorum.h"

#include <limits>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

namespace confman::raft {
namespace {

using quorum::VoteOutcome;

std::vector<MemberId> Ids(size_t count) {
  std::vector<MemberId> ids;
  for (size_t i = 1; i <= count; ++i) ids.push_back(i);
  return ids;
}

// Member i (1-based) reports values[i - 1].
Index Majority(const std::vector<Index>& values) {
  return quorum::MajorityValue(Ids(values.size()), [&](MemberId id) {
    return values[id - 1];
  });
}

TEST_CASE("MajorityValue is the highest value a majority has reached",
          "[quorum]") {
  struct Row {
    std::vector<Index> values;
    Index expected;
  };
  const Row row = GENERATE(values<Row>({
      {{7}, 7},
      {{5, 9}, 5},           // Two voters: both are needed.
      {{3, 8, 5}, 5},
      {{1, 1, 9}, 1},
      {{4, 6, 2, 8}, 4},     // Four voters: three are needed.
      {{10, 10, 10, 0}, 10},
      {{2, 9, 4, 7, 1}, 4},
      {{0, 0, 5, 5, 5}, 5},
      {{0, 0, 0, 5, 5}, 0},
  }));
  INFO("values in member order: " << ::Catch::Detail::stringify(row.values));
  CHECK(Majority(row.values) == row.expected);
}

TEST_CASE("an empty voter set never holds a joint value back", "[quorum]") {
  const auto value_of = [](MemberId) -> Index { return 3; };
  CHECK(quorum::MajorityValue({}, value_of) == std::numeric_limits<Index>::max());
  Membership plain;
  plain.voters = {1, 2, 3};
  CHECK(quorum::JointValue(plain, value_of) == 3);
}

TEST_CASE("JointValue is the lower of the two halves' majorities",
          "[quorum]") {
  Membership joint;
  joint.voters = {1, 2, 3};
  joint.voters_outgoing = {1, 4, 5};
  std::map<MemberId, Index> match = {{1, 9}, {2, 8}, {3, 7}, {4, 2}, {5, 1}};
  const auto value_of = [&](MemberId id) { return match.at(id); };
  CHECK(quorum::JointValue(joint, value_of) == 2);  // Outgoing holds back.
  match = {{1, 9}, {2, 1}, {3, 2}, {4, 8}, {5, 7}};
  CHECK(quorum::JointValue(joint, value_of) == 2);  // Incoming holds back.
  match = {{1, 9}, {2, 6}, {3, 1}, {4, 1}, {5, 6}};
  CHECK(quorum::JointValue(joint, value_of) == 6);
}

// Votes in member order: 'y' granted, 'n' rejected, '?' not yet answered.
std::function<std::optional<bool>(MemberId)> Ballots(std::string letters) {
  return [letters = std::move(letters)](MemberId id) -> std::optional<bool> {
    const char vote = letters.at(id - 1);
    if (vote == '?') return std::nullopt;
    return vote == 'y';
  };
}

TEST_CASE("MajorityVote wins, loses or waits", "[quorum]") {
  struct Row {
    std::string votes;
    VoteOutcome expected;
  };
  const Row row = GENERATE(values<Row>({
      {"y", VoteOutcome::kWon},
      {"?", VoteOutcome::kPending},
      {"n", VoteOutcome::kLost},
      {"yyn", VoteOutcome::kWon},
      {"y??", VoteOutcome::kPending},
      {"ynn", VoteOutcome::kLost},
      {"yy??", VoteOutcome::kPending},  // Four voters need three.
      {"yyn?", VoteOutcome::kPending},
      {"yynn", VoteOutcome::kLost},
      {"yyy?", VoteOutcome::kWon},
      {"yy???", VoteOutcome::kPending},
      {"yyynn", VoteOutcome::kWon},
      {"y?nnn", VoteOutcome::kLost},
  }));
  INFO("votes " << row.votes);
  CHECK(quorum::MajorityVote(Ids(row.votes.size()), Ballots(row.votes)) ==
        row.expected);
}

TEST_CASE("JointVote needs both halves", "[quorum]") {
  Membership joint;
  joint.voters = {1, 2, 3};
  joint.voters_outgoing = {1, 4, 5};
  const auto outcome = [&joint](const std::string& letters) {
    return quorum::JointVote(joint, Ballots(letters));
  };
  CHECK(outcome("yyy??") == VoteOutcome::kPending);  // Outgoing undecided.
  CHECK(outcome("yyynn") == VoteOutcome::kLost);     // Outgoing lost.
  CHECK(outcome("y??yy") == VoteOutcome::kPending);  // Incoming undecided.
  CHECK(outcome("ynnyy") == VoteOutcome::kLost);     // Incoming lost.
  CHECK(outcome("yy?y?") == VoteOutcome::kWon);
  Membership plain;
  plain.voters = {1, 2, 3};
  CHECK(quorum::JointVote(plain, [](MemberId id) -> std::optional<bool> {
          return id != 3;
        }) == VoteOutcome::kWon);
}

}  // namespace
}  // namespace confman::raft
