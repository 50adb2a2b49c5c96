// The simulator's safety checks (checker.h): election safety, one vote
// per term, log matching, leader completeness, state-machine safety and
// linearizable reads, judged against what members made durable, applied
// and answered.
#include "checker.h"

#include "absl/strings/str_cat.h"
#include "confman/raft/core.h"

namespace confman::sim {
namespace {

uint64_t Mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  return x ^ (x >> 33);
}

const char* EntryTypeName(raft::EntryType type) {
  switch (type) {
    case raft::EntryType::kNormal:
      return "normal";
    case raft::EntryType::kNoop:
      return "noop";
    case raft::EntryType::kMembership:
      return "membership";
  }
  return "unknown";
}

}  // namespace

uint64_t ChainDigest(uint64_t digest, const raft::Entry& entry) {
  uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a over the data bytes.
  for (unsigned char c : entry.data.view()) h = (h ^ c) * 0x100000001b3ULL;
  h = Mix(h ^ (entry.index * 0x9e3779b97f4a7c15ULL));
  h = Mix(h ^ entry.term ^ (static_cast<uint64_t>(entry.type) << 56));
  return Mix(digest ^ h);
}

void SafetyChecker::Fail(std::string what) {
  if (!violation_) violation_ = std::move(what);
}

std::string SafetyChecker::DescribeApplied(raft::Index index) const {
  const AppliedEntry& e = applied_[index - 1];
  return absl::StrCat("(index ", index, ", term ", e.term, ", ",
                      EntryTypeName(e.type), " '", e.data, "')");
}

void SafetyChecker::ObserveLeader(raft::MemberId id, raft::Term term,
                                  raft::Index first_index,
                                  const TermLookup& term_at) {
  auto [it, inserted] = leader_by_term_.emplace(term, id);
  if (!inserted) {
    if (it->second != id) {
      Fail(absl::StrCat("election safety: members ", it->second, " and ", id,
                        " are both leader of term ", term));
    }
    return;
  }
  const LeaderView leader{id, term, first_index, term_at};
  for (raft::Index i = std::max<raft::Index>(first_index, 1);
       i <= applied_max() && !failed(); ++i) {
    CheckLeaderHolds(leader, i);
  }
}

void SafetyChecker::CheckLeaderHolds(const LeaderView& leader,
                                     raft::Index index) {
  const AppliedEntry& e = applied_[index - 1];
  // Only entries committed before the leader's term must be in its log; the
  // recorded commit term is an upper bound, so this never over-reports.
  if (e.commit_term_bound >= leader.term || index < leader.first_index) return;
  const std::optional<raft::Term> held = leader.term_at(index);
  if (held == e.term) return;
  Fail(absl::StrCat(
      "leader completeness: leader ", leader.id, " of term ", leader.term,
      " lacks applied entry ", DescribeApplied(index), "; its log has ",
      held ? absl::StrCat("term ", *held) : std::string("nothing"), " there"));
}

void SafetyChecker::CheckNewlyApplied(const std::vector<LeaderView>& leaders) {
  for (raft::Index i = checked_for_leaders_ + 1; i <= applied_max(); ++i) {
    for (const LeaderView& leader : leaders) CheckLeaderHolds(leader, i);
  }
  checked_for_leaders_ = applied_max();
}

void SafetyChecker::ObserveDurableEntries(
    raft::MemberId id, const std::vector<raft::Entry>& entries,
    raft::Term prev_term) {
  for (const raft::Entry& e : entries) {
    LoggedEntry logged{prev_term, e.type, std::string(e.data.view())};
    prev_term = e.term;
    auto [it, inserted] = logged_.try_emplace({e.index, e.term}, logged);
    if (inserted) continue;
    const LoggedEntry& first = it->second;
    if (first.prev_term != logged.prev_term) {
      Fail(absl::StrCat("log matching: member ", id, " stored (index ", e.index,
                        ", term ", e.term, ") after an entry of term ",
                        logged.prev_term, ", another log holds it after term ",
                        first.prev_term));
      return;
    }
    if (first.type != logged.type || first.data != logged.data) {
      Fail(absl::StrCat("log matching: member ", id, " stored (index ", e.index,
                        ", term ", e.term, ") as ", EntryTypeName(e.type), " '",
                        std::string(e.data.view()), "', another log holds ",
                        EntryTypeName(first.type), " '", first.data, "'"));
      return;
    }
  }
}

void SafetyChecker::ObserveDurableHardState(raft::MemberId id,
                                            const raft::HardState& previous,
                                            const raft::HardState& next) {
  if (next.term < previous.term) {
    Fail(absl::StrCat("member ", id, " durably moved back from term ",
                      previous.term, " to ", next.term));
    return;
  }
  if (next.term == previous.term && previous.vote != raft::kNoMember &&
      next.vote != previous.vote) {
    Fail(absl::StrCat("one vote per term: member ", id,
                      " durably changed its "
                      "vote in term ",
                      next.term, " from ", previous.vote, " to ", next.vote));
    return;
  }
  if (next.vote != raft::kNoMember)
    ObserveVoteGranted(id, next.term, next.vote);
}

void SafetyChecker::ObserveVoteGranted(raft::MemberId voter, raft::Term term,
                                       raft::MemberId candidate) {
  auto [it, inserted] = votes_.try_emplace({voter, term}, candidate);
  if (inserted || it->second == candidate) return;
  Fail(absl::StrCat("one vote per term: member ", voter, " voted for both ",
                    it->second, " and ", candidate, " in term ", term));
}

void SafetyChecker::ObserveApply(raft::MemberId id, const StateMachine& before,
                                 const raft::Entry& entry,
                                 raft::Term member_term) {
  if (entry.index != before.applied + 1) {
    Fail(absl::StrCat("member ", id, " was handed entry ", entry.index,
                      " to apply after applying through ", before.applied));
    return;
  }
  const uint64_t digest = ChainDigest(before.digest, entry);
  if (entry.index > applied_max()) {
    applied_.push_back({entry.term, entry.type, std::string(entry.data.view()),
                        member_term, digest});
    return;
  }
  const AppliedEntry& first = applied_[entry.index - 1];
  if (first.term != entry.term || first.type != entry.type ||
      first.data != entry.data || first.digest != digest) {
    Fail(absl::StrCat(
        "state machine safety: member ", id, " applied (index ", entry.index,
        ", term ", entry.term, ", ", EntryTypeName(entry.type), " '",
        std::string(entry.data.view()), "'), another member applied ",
        DescribeApplied(entry.index),
        first.digest != digest && first.term == entry.term
            ? " after a different prefix"
            : ""));
  }
}

void SafetyChecker::ObserveSnapshotInstalled(raft::MemberId id,
                                             const StateMachine& installed) {
  if (installed.applied == 0) return;
  if (installed.applied > applied_max() ||
      applied_[installed.applied - 1].digest != installed.digest ||
      applied_[installed.applied - 1].term != installed.applied_term) {
    Fail(absl::StrCat("state machine safety: member ", id,
                      " installed a snapshot through index ", installed.applied,
                      " (term ", installed.applied_term,
                      ") that differs from the sequence applied elsewhere"));
  }
}

void SafetyChecker::ObserveReadState(raft::MemberId id,
                                     const std::string& context,
                                     raft::Index required, raft::Index index) {
  if (index >= required) return;
  Fail(absl::StrCat("linearizable read: read '", context, "' on member ", id,
                    " got read index ", index, ", but entry ", required,
                    " was applied before the read began"));
}

}  // namespace confman::sim
