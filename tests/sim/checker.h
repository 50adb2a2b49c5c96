// The simulator's safety checks (Raft thesis §3.6.3, Figure 3.2).
//
// The cluster reports what it observes — leaders, durable writes, granted
// votes, applied entries, read points — and the checker compares each
// observation against everything seen before in the run. It keeps only the
// first violation: once one property is broken, later observations are
// consequences of it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "confman/raft/types.h"

namespace confman::sim {

// A member's state machine: the applied sequence, summarised by a digest
// chained over every applied (index, term, type, data), plus what a
// restarting member's BootState needs. Applying is durable at once.
struct StateMachine {
  raft::Index applied = 0;
  raft::Term applied_term = 0;
  uint64_t digest = 0;
  raft::Membership membership;
  raft::Index membership_index = 0;
};

// Folds one applied entry into a state machine digest.
uint64_t ChainDigest(uint64_t digest, const raft::Entry& entry);

// The term a member's log holds at an index, or nullopt when the log does
// not cover it (compacted, or beyond its end).
using TermLookup = std::function<std::optional<raft::Term>(raft::Index)>;

class SafetyChecker {
 public:
  bool failed() const { return violation_.has_value(); }
  const std::string& violation() const { return *violation_; }
  // Records a violation found by the cluster itself (a broken Ready
  // contract, a failed write). Keeps the first one only.
  void Fail(std::string what);

  // At most one leader per term; on a member's first leadership of `term`,
  // leader completeness: its log (indexes >= first_index) holds every entry
  // applied anywhere that was committed in an earlier term.
  void ObserveLeader(raft::MemberId id, raft::Term term,
                     raft::Index first_index, const TermLookup& term_at);

  // Log matching, checked as entries become durable: every (index, term)
  // names one entry, preceded by one term, in every log that holds it
  // (by induction, the whole prefixes are then identical).
  void ObserveDurableEntries(raft::MemberId id,
                             const std::vector<raft::Entry>& entries,
                             raft::Term prev_term);

  // One vote per member per term, whether seen as a durable hard state or
  // as a granted vote on the wire; a durable term never goes backwards.
  void ObserveDurableHardState(raft::MemberId id, const raft::HardState& previous,
                               const raft::HardState& next);
  void ObserveVoteGranted(raft::MemberId voter, raft::Term term,
                          raft::MemberId candidate);

  // State machine safety: `entry` is applied by `id` right after `before`
  // (whose applied index must be entry.index - 1), and must equal what
  // every other member applied at that index. `member_term` is the
  // applier's current term, an upper bound on the term the entry was
  // committed in.
  void ObserveApply(raft::MemberId id, const StateMachine& before,
                    const raft::Entry& entry, raft::Term member_term);
  // A snapshot replaced `id`'s state machine: it must be a prefix of the
  // sequence applied elsewhere.
  void ObserveSnapshotInstalled(raft::MemberId id, const StateMachine& installed);

  // The highest index applied anywhere so far; every later read must see it.
  raft::Index applied_max() const { return applied_.size(); }
  // The term of the entry applied at `index` (1 <= index <= applied_max()).
  raft::Term AppliedTermAt(raft::Index index) const {
    return applied_[index - 1].term;
  }

  // A read that began when applied_max() was `required` received read
  // index `index`: applying through `index` must reveal every write that
  // completed before the read began.
  void ObserveReadState(raft::MemberId id, const std::string& context,
                        raft::Index required, raft::Index index);

  // Leader completeness for entries first applied since the last call,
  // against the leaders alive now: each (id, term, first_index, term_at).
  struct LeaderView {
    raft::MemberId id;
    raft::Term term;
    raft::Index first_index;
    TermLookup term_at;
  };
  void CheckNewlyApplied(const std::vector<LeaderView>& leaders);

  uint64_t leaders_observed() const { return leader_by_term_.size(); }

 private:
  struct LoggedEntry {
    raft::Term prev_term;
    raft::EntryType type;
    std::string data;
  };
  struct AppliedEntry {
    raft::Term term;
    raft::EntryType type;
    std::string data;
    raft::Term commit_term_bound;
    uint64_t digest;  // State machine digest after applying this entry.
  };

  void CheckLeaderHolds(const LeaderView& leader, raft::Index index);
  std::string DescribeApplied(raft::Index index) const;

  std::optional<std::string> violation_;
  std::map<raft::Term, raft::MemberId> leader_by_term_;
  absl::flat_hash_map<std::pair<raft::Index, raft::Term>, LoggedEntry> logged_;
  absl::flat_hash_map<std::pair<raft::MemberId, raft::Term>, raft::MemberId>
      votes_;
  // applied_[i] is the entry at index i + 1.
  std::vector<AppliedEntry> applied_;
  raft::Index checked_for_leaders_ = 0;
};

}  // namespace confman::sim
