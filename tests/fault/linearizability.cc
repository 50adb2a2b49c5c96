// The checker runs in three passes: pin every revision down from what the
// history says (acknowledgements, reads, watch events), check the watch
// streams against those revisions, then search each key for a
// linearization. The first two passes turn unknown outcomes into facts
// wherever anyone observed them, which is what keeps the search small.
#include "linearizability.h"

#include <algorithm>
#include <array>
#include <functional>
#include <map>
#include <optional>
#include <string_view>
#include <tuple>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace confman::fault {
namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kNone = static_cast<size_t>(-1);

std::string Quote(std::string_view text) {
  constexpr size_t kShown = 24;  // values may be megabytes
  const std::string shown = absl::CHexEscape(
      absl::string_view(text.data(), std::min(text.size(), kShown)));
  if (text.size() <= kShown) return absl::StrCat("\"", shown, "\"");
  return absl::StrCat("\"", shown, "...\" (", text.size(), " bytes)");
}

std::string TimeText(Nanos t) {
  return t == kNever ? "never" : absl::StrCat(t);
}

// With outcome kOk: whether the operation changed its key (and so was
// assigned a revision).
bool Applied(const Operation& op) {
  switch (op.type) {
    case OpType::kGet:
      return false;
    case OpType::kPut:
      return true;
    case OpType::kDelete:
      return op.found;
    case OpType::kCompareAndSet:
      return !op.cas_mismatch;
  }
  return false;
}

std::string Describe(const Operation& op) {
  std::string what;
  switch (op.type) {
    case OpType::kGet:
      what = op.read == ReadKind::kLocal   ? "get(local)"
             : op.read == ReadKind::kLease ? "get(lease)"
                                           : "get";
      break;
    case OpType::kPut:
      what = absl::StrCat("put ", Quote(op.value));
      break;
    case OpType::kDelete:
      what = "delete";
      break;
    case OpType::kCompareAndSet:
      what = absl::StrCat("cas(expect ", op.expected_revision, ") ",
                          Quote(op.value));
      break;
  }
  std::string result = op.outcome == Outcome::kFailed ? "failed" : "unknown";
  if (op.outcome == Outcome::kOk) {
    if (op.type == OpType::kGet) {
      result = op.found ? absl::StrCat(Quote(op.value), " @", op.revision)
                        : "absent";
    } else if (!Applied(op)) {
      result = op.type == OpType::kDelete ? "absent" : "mismatch";
    } else {
      result = absl::StrCat("rev ", op.revision);
    }
  }
  return absl::StrFormat("#%d %s -> %s [%s, %s] client %d member %d", op.id,
                         what, result, TimeText(op.invoke),
                         TimeText(op.complete), op.client, op.member);
}

std::string EventText(const WatchEvent& event) {
  return absl::StrCat(event.is_delete ? "delete " : "put ", Quote(event.key),
                      " @", event.revision);
}

// ---- The model one key's search runs ----

enum class Kind : uint8_t {
  kRead,          // found a value
  kReadAbsent,    // found nothing
  kPut,           // applied
  kCas,           // applied
  kCasMismatch,   // reported that the key's revision differed
  kDelete,        // applied
  kDeleteAbsent,  // found nothing to delete
};

bool Mutates(Kind kind) {
  return kind == Kind::kPut || kind == Kind::kCas || kind == Kind::kDelete;
}

struct SearchOp {
  size_t source = 0;  // index in History::operations
  Kind kind = Kind::kRead;
  Nanos invoke = 0;
  Nanos complete = kNever;
  uint64_t revision = 0;  // assigned, or read
  uint64_t expected = 0;  // compare-and-set
  int64_t writer = -1;    // source of the value read or written
  int chain = -1;         // writes: position in the key's revision order
};

// Writes of unknown outcome that nobody observed, grouped so that members
// of a class are interchangeable: their values are never read, they never
// return, so only when each became available differs. The search therefore
// always takes the earliest unused member, and a class's used members are
// a prefix of `invokes` (sorted).
struct PoolClass {
  Kind kind = Kind::kPut;  // kPut, kCas or kDelete
  uint64_t expected = 0;
  std::vector<Nanos> invokes{};
};

struct State {
  bool exists = false;
  int64_t value = -1;         // source of the write it holds; -1: unobserved
  uint64_t mod_revision = 0;  // 0 when unknown (an unobserved write)
  // A lower bound of the highest revision assigned to the key so far: a
  // write must be assigned more.
  uint64_t floor = 0;
  bool operator==(const State&) const = default;
};

// A configuration of the search (less the unobserved writes used): the
// model state and the linearized set, exactly: everything below the first
// unlinearized operation `low`, then the bitset words from low's word up to
// the highest linearized operation. Since operations are numbered in
// invocation order the words span only the ops in flight, so a key of 100k
// operations does not need a 100k-bit copy per configuration.
struct Configuration {
  State state;
  std::vector<uint64_t> set;  // low, then bitset words
  bool operator==(const Configuration&) const = default;
  template <typename H>
  friend H AbslHashValue(H h, const Configuration& c) {
    return H::combine(std::move(h), c.state.exists, c.state.value,
                      c.state.mod_revision, c.state.floor, c.set);
  }
};

// Wing & Gong's search over one key as refined by Lowe: depth first over a
// list of call and return entries in time order, remembering visited
// configurations. Three reductions keep it near linear on correct
// histories, all exact:
//  - writes whose revision is known take effect in revision order (the
//    model demands growing revisions), so only the next one is tried;
//  - an operation that leaves the state unchanged and is legal now is
//    linearized now with no alternative tried: any linearization placing it
//    later stays one with it moved here;
//  - unobserved writes of unknown outcome are not entries: one or two are
//    applied just before an operation that is illegal without them (any
//    linearization can be rewritten so that they sit only there, or
//    nowhere), drawn from interchangeable pools (PoolClass).
class KeySearch {
 public:
  enum class Verdict { kLinearizable, kViolation, kGaveUp };

  KeySearch(std::vector<SearchOp> ops, std::vector<PoolClass> pool,
            const absl::flat_hash_map<uint64_t, size_t>& revisions)
      : ops_(std::move(ops)), pool_(std::move(pool)), revisions_(revisions) {
    const size_t n = ops_.size();
    std::vector<std::tuple<Nanos, bool, size_t>> order;
    for (size_t i = 0; i < n; ++i) {
      order.emplace_back(ops_[i].invoke, false, i);
      order.emplace_back(ops_[i].complete, true, i);
      if (Mutates(ops_[i].kind)) chain_.push_back(i);
    }
    // At equal times calls come first: the operations count as concurrent.
    std::sort(order.begin(), order.end());
    std::sort(chain_.begin(), chain_.end(), [&](size_t a, size_t b) {
      return ops_[a].revision < ops_[b].revision;
    });
    for (size_t i = 0; i < chain_.size(); ++i) ops_[chain_[i]].chain = int(i);
    tail_ = order.size() + 1;
    entry_op_.assign(tail_ + 1, kNone);
    is_return_.assign(tail_ + 1, false);
    entry_time_.assign(tail_ + 1, kNever);
    next_.resize(tail_ + 1);
    prev_.resize(tail_ + 1);
    return_entry_.resize(n);
    for (size_t e = 0; e <= tail_; ++e) {
      next_[e] = e + 1;
      prev_[e] = e == 0 ? 0 : e - 1;
    }
    for (size_t k = 0; k < order.size(); ++k) {
      const auto& [time, is_return, op] = order[k];
      entry_op_[k + 1] = op;
      is_return_[k + 1] = is_return;
      entry_time_[k + 1] = time;
      if (is_return) return_entry_[op] = k + 1;
    }
    bits_.assign((n + 63) / 64, 0);
    used_.assign(pool_.size(), 0);
  }

  Verdict Run(Clock::time_point deadline) {
    Cursor at{next_[kHead], 0, kUnchanging};
    uint64_t iterations = 0;
    while (next_[kHead] != tail_) {
      if ((++iterations & 1023) == 0 && Clock::now() > deadline) {
        return Verdict::kGaveUp;
      }
      if (!is_return_[at.entry]) {
        switch (TryLinearize(at)) {
          case Step::kLinearized:
            at = {next_[kHead], 0, kUnchanging};
            continue;
          case Step::kNotNow:
            at = {next_[at.entry], 0, at.pass};
            continue;
          case Step::kDeadEnd:
            break;
        }
      } else if (at.pass != kHelped) {
        at = {next_[kHead], 0, Pass(int(at.pass) + 1)};
        continue;
      } else {
        NoteDeadEnd(at.entry);
      }
      if (!Backtrack(at)) return Verdict::kViolation;
    }
    return Verdict::kLinearizable;
  }

  // After kViolation: the deepest dead end, where an operation's return was
  // reached before it could take effect.
  const SearchOp& blocked() const { return ops_[blocked_]; }
  const State& blocked_state() const { return blocked_state_; }
  // The write that had to take effect before `blocked` (if it is a write
  // waiting for its turn in revision order), else null.
  const SearchOp* awaited_write() const {
    const SearchOp& b = blocked();
    if (b.chain < 0 || size_t(b.chain) == blocked_chain_next_) return nullptr;
    return &ops_[chain_[blocked_chain_next_]];
  }
  const SearchOp* last_linearized() const {
    return blocked_last_ == kNone ? nullptr : &ops_[blocked_last_];
  }
  size_t deepest() const { return deepest_; }
  // The most operations ever linearized at once.
  size_t reached() const { return reached_; }
  size_t size() const { return ops_.size(); }

 private:
  enum class Step { kLinearized, kNotNow, kDeadEnd };
  static constexpr size_t kHead = 0;

  struct Option {
    State next;
    std::array<int, 2> helper;  // pool classes applied first, -1 = none
  };
  // Each configuration's moves are tried in three passes over the entry
  // list: operations that leave the state unchanged, then those that change
  // it, then those that need unobserved writes to help. Reads thus go before
  // the write that would make them stale, and the first order found uses few
  // unobserved writes; other orders then mostly use more, and are cut short
  // by Visit.
  enum Pass { kUnchanging, kChanging, kHelped };
  // Where the search stands: at `entry`, its alternative `alt`, in `pass`.
  struct Cursor {
    size_t entry;
    size_t alt;
    Pass pass;
  };
  struct Frame {
    Cursor at;
    bool forced;
    State state;
    size_t low;
    size_t high;  // highest linearized op + 1
    size_t chain_next;
    std::array<int, 2> helper;
  };

  static State Written(const SearchOp& op) {
    return State{true, op.writer, op.revision, op.revision};
  }

  // Whether a compare-and-set expecting `expected` may find its condition
  // true. An unobserved write's revision is unknown: at least `floor`, and
  // none that another write is known to hold.
  bool CasMayHold(const State& s, uint64_t expected) const {
    if (expected == 0) return !s.exists;
    if (!s.exists) return false;
    if (s.mod_revision != 0) return s.mod_revision == expected;
    return expected >= s.floor && !revisions_.contains(expected);
  }

  std::optional<State> Apply(const SearchOp& op, const State& s) const {
    switch (op.kind) {
      case Kind::kRead:
        if (s.exists && s.value == op.writer && s.mod_revision == op.revision)
          return s;
        return std::nullopt;
      case Kind::kReadAbsent:
      case Kind::kDeleteAbsent:
        if (!s.exists) return s;
        return std::nullopt;
      case Kind::kPut:
        if (op.revision > s.floor) return Written(op);
        return std::nullopt;
      case Kind::kCas: {
        if (!CasMayHold(s, op.expected)) return std::nullopt;
        const uint64_t floor = s.exists && s.mod_revision == 0
                                   ? std::max(s.floor, op.expected)
                                   : s.floor;
        if (op.revision > floor) return Written(op);
        return std::nullopt;
      }
      case Kind::kCasMismatch:
        if (op.expected == 0 ? s.exists
                             : !s.exists || s.mod_revision != op.expected)
          return s;
        return std::nullopt;
      case Kind::kDelete:
        if (s.exists && op.revision > s.floor)
          return State{false, -1, 0, op.revision};
        return std::nullopt;
    }
    return std::nullopt;
  }

  // An unobserved write's effect, or nullopt when it would change nothing
  // the search can use.
  std::optional<State> ApplyPool(size_t c, const State& s) const {
    const PoolClass& p = pool_[c];
    const State unobserved{true, -1, 0, s.floor + 1};
    switch (p.kind) {
      case Kind::kPut:
        return unobserved;
      case Kind::kDelete:
        if (s.exists) return State{false, -1, 0, s.floor + 1};
        return std::nullopt;
      case Kind::kCas:
        if (p.expected == 0 ? !s.exists
                            : s.exists && s.mod_revision == p.expected)
          return unobserved;
        return std::nullopt;
      default:
        return std::nullopt;
    }
  }

  bool Available(size_t c, size_t skip, Nanos horizon) const {
    const size_t k = used_[c] + skip;
    return k < pool_[c].invokes.size() && pool_[c].invokes[k] <= horizon;
  }

  // Every entry before `entry` is a call, so the first return at or after
  // it bounds when anything linearized now can have happened.
  Nanos Horizon(size_t entry) const {
    for (size_t e = entry; e != tail_; e = next_[e]) {
      if (is_return_[e]) return entry_time_[e];
    }
    return kNever;
  }

  // The ways `op` can take effect now: directly, or else after one or two
  // unobserved writes (never more: a delete, then a create, reaches every
  // state they can). Only minimal runs are tried: a run with a write that is
  // not needed, or that uses more than another run reaching the same state,
  // cannot lead anywhere the other does not.
  void Options(const SearchOp& op, Cursor at) {
    options_.clear();
    if (auto s = Apply(op, state_)) {
      if (at.pass == (Mutates(op.kind) ? kChanging : kUnchanging)) {
        options_.push_back({*s, {-1, -1}});
      }
      return;
    }
    if (at.pass != kHelped) return;
    // A value-carrying read or a put can never be helped by an unobserved
    // write: the value would be wrong, the revision floor only higher.
    if (pool_.empty() || op.kind == Kind::kRead || op.kind == Kind::kPut) {
      return;
    }
    const Nanos horizon = Horizon(at.entry);
    helps_alone_.assign(pool_.size(), false);
    for (size_t c = 0; c < pool_.size(); ++c) {
      if (!Available(c, 0, horizon)) continue;
      if (const std::optional<State> s1 = ApplyPool(c, state_)) {
        if (auto s = Apply(op, *s1)) {
          helps_alone_[c] = true;
          AddOption(*s, {int(c), -1});
        }
      }
    }
    for (size_t c1 = 0; c1 < pool_.size(); ++c1) {
      if (helps_alone_[c1] || !Available(c1, 0, horizon)) continue;
      const std::optional<State> s1 = ApplyPool(c1, state_);
      if (!s1) continue;
      for (size_t c2 = 0; c2 < pool_.size(); ++c2) {
        if (helps_alone_[c2] || !Available(c2, c2 == c1 ? 1 : 0, horizon)) {
          continue;
        }
        if (const std::optional<State> s2 = ApplyPool(c2, *s1)) {
          if (auto s = Apply(op, *s2)) AddOption(*s, {int(c1), int(c2)});
        }
      }
    }
  }

  void AddOption(const State& next, const std::array<int, 2>& helpers) {
    for (const Option& o : options_) {
      if (o.next == next && Spares(o.helper, helpers)) return;
    }
    std::erase_if(options_, [&](const Option& o) {
      return o.next == next && Spares(helpers, o.helper);
    });
    options_.push_back({next, helpers});
  }

  // Whether using helpers `a` leaves all that using `b` does: each of a's
  // matches a distinct one of b's of its class, or is a compare-and-set
  // matching a put (a put fits wherever a compare-and-set does, with the
  // same effect, so it is the one to keep for later).
  bool Spares(const std::array<int, 2>& a, const std::array<int, 2>& b) const {
    std::array<bool, 2> taken = {false, false};
    std::array<bool, 2> matched = {a[0] < 0, a[1] < 0};
    for (bool exact : {true, false}) {
      for (size_t i = 0; i < 2; ++i) {
        for (size_t k = 0; k < 2 && !matched[i]; ++k) {
          if (b[k] < 0 || taken[k]) continue;
          if (exact ? a[i] == b[k]
                    : pool_[a[i]].kind == Kind::kCas &&
                          pool_[b[k]].kind == Kind::kPut) {
            taken[k] = matched[i] = true;
          }
        }
      }
    }
    return matched[0] && matched[1];
  }

  bool Linearized(size_t op) const { return bits_[op / 64] >> (op % 64) & 1; }

  Configuration Current() const {
    Configuration c{state_, {}};
    c.set.push_back(low_);
    if (high_ > low_) {
      c.set.insert(c.set.end(), bits_.begin() + low_ / 64,
                   bits_.begin() + (high_ - 1) / 64 + 1);
    }
    return c;
  }

  // Records the current configuration; false when it, or one that had used
  // no more of each pool class, was visited before. Such a configuration
  // failed: it is not an ancestor of this one (they have the same set), and
  // a success would have ended the search. With more unobserved writes
  // left it could do all this one can.
  bool Visit() {
    auto [it, fresh] = visited_.try_emplace(Current());
    std::vector<uint64_t>& uses = it->second;  // one used_ per visit
    if (!fresh) {
      if (used_.empty()) return false;
      for (auto at = uses.begin(); at != uses.end(); at += used_.size()) {
        if (std::equal(at, at + used_.size(), used_.begin(),
                       std::less_equal<>())) {
          return false;
        }
      }
    }
    uses.insert(uses.end(), used_.begin(), used_.end());
    return true;
  }

  Step TryLinearize(Cursor at) {
    const size_t op = entry_op_[at.entry];
    const SearchOp& o = ops_[op];
    if (o.chain >= 0 && size_t(o.chain) != chain_next_) return Step::kNotNow;
    Options(o, at);
    const bool forced =
        !options_.empty() && !Mutates(o.kind) && options_[0].helper[0] < 0;
    for (; at.alt < options_.size(); ++at.alt) {
      const Option& option = options_[at.alt];
      const Frame frame{at,    forced,      state_,       low_,
                        high_, chain_next_, option.helper};
      for (int c : option.helper) {
        if (c >= 0) ++used_[c];
      }
      bits_[op / 64] |= uint64_t{1} << (op % 64);
      while (low_ < ops_.size() && Linearized(low_)) ++low_;
      high_ = std::max(high_, op + 1);
      if (o.chain >= 0) ++chain_next_;
      state_ = option.next;
      if (Visit()) {
        Unlink(at.entry);
        Unlink(return_entry_[op]);
        stack_.push_back(frame);
        reached_ = std::max(reached_, stack_.size());
        return Step::kLinearized;
      }
      Undo(frame);
      // Seen before, so it led nowhere; and being forced, neither does
      // anything else from here.
      if (forced) return Step::kDeadEnd;
    }
    return Step::kNotNow;
  }

  void Undo(const Frame& f) {
    const size_t op = entry_op_[f.at.entry];
    bits_[op / 64] &= ~(uint64_t{1} << (op % 64));
    for (int c : f.helper) {
      if (c >= 0) --used_[c];
    }
    state_ = f.state;
    low_ = f.low;
    high_ = f.high;
    chain_next_ = f.chain_next;
  }

  // Pops to the latest choice that has alternatives left; false when none.
  bool Backtrack(Cursor& at) {
    while (!stack_.empty()) {
      const Frame f = stack_.back();
      stack_.pop_back();
      // Relinked in the reverse order of unlinking (dancing links).
      Relink(return_entry_[entry_op_[f.at.entry]]);
      Relink(f.at.entry);
      Undo(f);
      if (!f.forced) {
        at = {f.at.entry, f.at.alt + 1, f.at.pass};
        return true;
      }
    }
    return false;
  }

  void NoteDeadEnd(size_t entry) {
    if (stack_.size() + 1 <= deepest_) return;
    deepest_ = stack_.size() + 1;
    blocked_ = entry_op_[entry];
    blocked_state_ = state_;
    blocked_chain_next_ = chain_next_;
    blocked_last_ = stack_.empty() ? kNone : entry_op_[stack_.back().at.entry];
  }

  void Unlink(size_t e) {
    next_[prev_[e]] = next_[e];
    prev_[next_[e]] = prev_[e];
  }
  void Relink(size_t e) {
    next_[prev_[e]] = e;
    prev_[next_[e]] = e;
  }

  std::vector<SearchOp> ops_;  // in invocation order
  std::vector<PoolClass> pool_;
  const absl::flat_hash_map<uint64_t, size_t>& revisions_;
  std::vector<size_t> chain_;  // ops that write, in revision order

  // The entry list: 0 is the head, tail_ the tail.
  size_t tail_ = 0;
  std::vector<size_t> entry_op_, next_, prev_, return_entry_;
  std::vector<bool> is_return_;
  std::vector<Nanos> entry_time_;

  // The current configuration.
  State state_;
  std::vector<uint64_t> bits_;
  std::vector<uint64_t> used_;
  size_t low_ = 0, high_ = 0, chain_next_ = 0;

  std::vector<Frame> stack_;
  std::vector<Option> options_;
  std::vector<bool> helps_alone_;
  absl::flat_hash_map<Configuration, std::vector<uint64_t>> visited_;

  size_t reached_ = 0;
  size_t deepest_ = 0, blocked_ = 0, blocked_chain_next_ = 0;
  size_t blocked_last_ = kNone;
  State blocked_state_;
};

// ---- The passes over the whole history ----

class Checker {
 public:
  Checker(const History& history, const CheckOptions& options)
      : history_(history),
        options_(options),
        proven_revision_(history.operations.size(), 0),
        excluded_(history.operations.size(), false) {}

  CheckResult Run() {
    IndexOperations();
    CheckReads();
    CheckWatches();
    SearchKeys();
    if (unreported_ > 0) {
      result_.violations.push_back(
          absl::StrCat("... and ", unreported_, " more violations"));
    }
    result_.ok = result_.violations.empty();
    return std::move(result_);
  }

 private:
  const Operation& op(size_t i) const { return history_.operations[i]; }

  // The ops of `key` around op `center`, in invocation order.
  std::string Window(std::string_view key, size_t center) const {
    constexpr ptrdiff_t kAround = 5;
    const std::vector<size_t>& ops = by_key_.at(key);
    const auto from =
        std::lower_bound(ops.begin(), ops.end(), op(center).invoke,
                         [&](size_t i, Nanos t) { return op(i).invoke < t; });
    const ptrdiff_t at = std::find(from, ops.end(), center) - ops.begin();
    std::string out = "\n  history of the key around it:";
    for (ptrdiff_t i = std::max<ptrdiff_t>(0, at - kAround);
         i < std::min<ptrdiff_t>(ops.size(), at + kAround + 1); ++i) {
      absl::StrAppend(&out, "\n    ", Describe(op(ops[i])),
                      i == at ? "   <--" : "");
    }
    return out;
  }

  // A broken store can break thousands of operations; the first few
  // reports say what the rest would.
  void Report(std::string violation) {
    constexpr size_t kMaxReports = 50;
    if (result_.violations.size() < kMaxReports) {
      result_.violations.push_back(std::move(violation));
    } else {
      ++unreported_;
    }
  }

  void Violation(size_t i, const std::string& what) {
    excluded_[i] = true;
    Report(absl::StrCat("key ", Quote(op(i).key), ": ", Describe(op(i)), ": ",
                        what, Window(op(i).key, i)));
  }

  // Records that write `w` took effect at `revision`. A revision names one
  // write; when another already holds it, both keys' histories are broken
  // beyond what the search could say, and the holder is returned.
  size_t Claim(size_t w, uint64_t revision) {
    auto [it, fresh] = write_at_revision_.emplace(revision, w);
    if (fresh || it->second == w) return kNone;
    untrusted_keys_.insert(op(it->second).key);
    untrusted_keys_.insert(op(w).key);
    return it->second;
  }

  void Prove(size_t w, uint64_t revision, std::string by) {
    proven_revision_[w] = revision;
    proven_by_[w] = std::move(by);
  }

  void IndexOperations() {
    for (size_t i = 0; i < history_.operations.size(); ++i) {
      by_key_[op(i).key].push_back(i);
    }
    for (auto& [key, ops] : by_key_) {
      std::stable_sort(ops.begin(), ops.end(), [&](size_t a, size_t b) {
        return op(a).invoke < op(b).invoke;
      });
    }
    result_.keys = by_key_.size();
    for (size_t i = 0; i < history_.operations.size(); ++i) {
      const Operation& o = op(i);
      if (o.type == OpType::kPut || o.type == OpType::kCompareAndSet) {
        auto [it, fresh] = writer_of_value_.emplace(o.value, i);
        if (!fresh) {
          untrusted_keys_.insert(o.key);
          Violation(i, absl::StrCat("its value was also written by ",
                                    Describe(op(it->second)),
                                    " (written values must be unique)"));
        }
      }
      if (o.outcome == Outcome::kFailed ||
          (o.type == OpType::kGet && o.outcome != Outcome::kOk)) {
        continue;
      }
      ++result_.operations_checked;
      if (o.outcome == Outcome::kOk && o.complete < o.invoke) {
        untrusted_keys_.insert(o.key);
        Violation(i, "it completes before it was invoked");
        continue;
      }
      if (o.type != OpType::kGet && o.outcome == Outcome::kUnknown) {
        unknown_writes_[o.key].push_back(i);
      }
      if (o.outcome == Outcome::kOk && Applied(o)) {
        if (o.revision == 0) {
          untrusted_keys_.insert(o.key);
          Violation(i, "it was acknowledged without a revision");
        } else if (const size_t other = Claim(i, o.revision); other != kNone) {
          Violation(i, absl::StrCat("its revision was also assigned to ",
                                    Describe(op(other))));
        }
      }
    }
  }

  // A read names the write it saw; that write must be able to have been
  // seen, at this revision.
  void CheckReads() {
    for (size_t i = 0; i < history_.operations.size(); ++i) {
      const Operation& r = op(i);
      if (r.type != OpType::kGet || r.outcome != Outcome::kOk || !r.found ||
          excluded_[i]) {
        continue;
      }
      const auto it = writer_of_value_.find(r.value);
      if (it == writer_of_value_.end()) {
        Violation(i, "it read a value no operation wrote");
        continue;
      }
      const size_t w = it->second;
      const Operation& write = op(w);
      if (write.key != r.key) {
        Violation(i, absl::StrCat("it read the value that ", Describe(write),
                                  " wrote to key ", Quote(write.key)));
      } else if (write.outcome == Outcome::kFailed) {
        Violation(i, absl::StrCat("it read the value of ", Describe(write),
                                  ", which certainly was not applied"));
      } else if (write.outcome == Outcome::kOk && !Applied(write)) {
        Violation(i, absl::StrCat("it read the value of ", Describe(write),
                                  ", which reported a revision mismatch"));
      } else if (r.read == ReadKind::kLocal && write.invoke > r.complete) {
        Violation(i, absl::StrCat("it read the value of ", Describe(write),
                                  ", invoked only after this read completed"));
      } else if (write.outcome == Outcome::kOk) {
        if (write.revision != r.revision) {
          Violation(i, absl::StrCat("it read the value of ", Describe(write),
                                    " at another revision (applied twice?)"));
        }
      } else if (proven_revision_[w] == 0) {
        if (r.revision == 0) {
          Violation(i, "it read a value at revision 0");
        } else if (const size_t other = Claim(w, r.revision); other != kNone) {
          Violation(i,
                    absl::StrCat("it read the value of ", Describe(write),
                                 " at the revision of ", Describe(op(other))));
        } else {
          Prove(w, r.revision, Describe(r));
        }
      } else if (proven_revision_[w] != r.revision) {
        Violation(i, absl::StrCat("it read the value of ", Describe(write),
                                  ", which ", proven_by_[w], " read at ",
                                  "revision ", proven_revision_[w]));
      }
    }
  }

  void CheckWatches() {
    // Events no acknowledged or read write accounts for, keyed by what
    // they say (the first stream to deliver it is named).
    std::map<std::tuple<std::string_view, uint64_t, bool>,
             std::pair<size_t, size_t>>
        unexplained;
    for (size_t s = 0; s < history_.watches.size(); ++s) {
      const WatchStream& stream = history_.watches[s];
      for (size_t j = 0; j < stream.events.size(); ++j) {
        ++result_.watch_events_checked;
        const WatchEvent& e = stream.events[j];
        if (!absl::StartsWith(e.key, stream.prefix)) {
          WatchViolation(s, j, "its key is not under the stream's prefix");
        }
        if (e.revision <= stream.after_revision) {
          WatchViolation(s, j, "it is not after the stream's start revision");
        }
        if (j > 0 && e.revision <= stream.events[j - 1].revision) {
          WatchViolation(s, j,
                         e.revision == stream.events[j - 1].revision
                             ? "it repeats the previous event's revision"
                             : "its revision is below the previous event's");
        }
        if (write_at_revision_.contains(e.revision)) {
          CheckEventMatches(s, j);
        } else {
          unexplained.try_emplace({e.key, e.revision, e.is_delete}, s, j);
        }
      }
    }
    // An event no known write explains proves that a write of unknown
    // outcome took effect; when only one such write could be it, it is. Each
    // proof can leave another event a single candidate, hence the rounds.
    for (bool progress = true; progress;) {
      progress = false;
      for (auto it = unexplained.begin(); it != unexplained.end();) {
        const auto& [key, revision, is_delete] = it->first;
        const auto [s, j] = it->second;
        if (write_at_revision_.contains(revision)) {
          CheckEventMatches(s, j);
          it = unexplained.erase(it);
          continue;
        }
        size_t candidate = kNone, count = 0;
        if (auto u = unknown_writes_.find(key); u != unknown_writes_.end()) {
          for (size_t w : u->second) {
            if (proven_revision_[w] == 0 &&
                (op(w).type == OpType::kDelete) == is_delete) {
              candidate = w;
              ++count;
            }
          }
        }
        if (count == 1) {
          Claim(candidate, revision);  // free: checked above
          Prove(candidate, revision,
                absl::StrCat("watch ", history_.watches[s].watcher));
          progress = true;
        } else if (count == 0) {
          WatchViolation(s, j,
                         "no write of that kind to that key can have "
                         "taken effect at that revision");
        } else {
          ++it;  // several could be it: accepted, proving none
          continue;
        }
        it = unexplained.erase(it);
      }
    }
    CheckNoGaps();
  }

  void CheckEventMatches(size_t s, size_t j) {
    const WatchEvent& e = history_.watches[s].events[j];
    const Operation& w = op(write_at_revision_.at(e.revision));
    if (w.key != e.key || (w.type == OpType::kDelete) != e.is_delete) {
      WatchViolation(s, j,
                     absl::StrCat("that revision belongs to ", Describe(w)));
    }
  }

  void CheckNoGaps() {
    std::vector<std::pair<uint64_t, size_t>> writes(write_at_revision_.begin(),
                                                    write_at_revision_.end());
    std::sort(writes.begin(), writes.end());
    for (size_t s = 0; s < history_.watches.size(); ++s) {
      const WatchStream& stream = history_.watches[s];
      if (stream.events.empty()) continue;
      absl::flat_hash_set<uint64_t> delivered;
      uint64_t last = 0;
      for (const WatchEvent& e : stream.events) {
        delivered.insert(e.revision);
        last = std::max(last, e.revision);
      }
      size_t missed = 0, first = kNone;
      uint64_t revision = 0;
      for (auto it =
               std::upper_bound(writes.begin(), writes.end(),
                                std::make_pair(stream.after_revision, kNone));
           it != writes.end() && it->first <= last; ++it) {
        if (absl::StartsWith(op(it->second).key, stream.prefix) &&
            !delivered.contains(it->first) && missed++ == 0) {
          first = it->second;
          revision = it->first;
        }
      }
      if (missed == 0) continue;
      const size_t before =
          std::lower_bound(
              stream.events.begin(), stream.events.end(), revision,
              [](const WatchEvent& e, uint64_t r) { return e.revision < r; }) -
          stream.events.begin();
      WatchViolation(
          s, std::min(before, stream.events.size() - 1),
          absl::StrCat("the stream skipped revision ", revision, " before it (",
                       Describe(op(first)), "; ", missed,
                       " writes missed in all, up to revision ", last, ")"));
    }
  }

  void WatchViolation(size_t s, size_t j, const std::string& what) {
    const WatchStream& stream = history_.watches[s];
    std::string out = absl::StrCat(
        "watch ", stream.watcher, " on member ", stream.member, " (prefix ",
        Quote(stream.prefix), ", after revision ", stream.after_revision,
        "): event ", j, " (", EventText(stream.events[j]), "): ", what,
        "\n  events around it:");
    for (size_t k = j < 3 ? 0 : j - 3;
         k < std::min(stream.events.size(), j + 4); ++k) {
      absl::StrAppend(&out, "\n    ", k, ": ", EventText(stream.events[k]),
                      k == j ? "   <--" : "");
    }
    Report(std::move(out));
  }

  void SearchKeys() {
    for (const auto& [key, indexes] : by_key_) {
      // A key whose writes already broke the revision rules would only
      // restate that violation here.
      if (untrusted_keys_.contains(key)) continue;
      std::vector<SearchOp> ops;
      std::vector<PoolClass> pool;
      for (size_t i : indexes) {
        const Operation& o = op(i);
        if (o.outcome == Outcome::kFailed || excluded_[i]) continue;
        SearchOp s{.source = i, .invoke = o.invoke, .complete = o.complete};
        if (o.type == OpType::kGet) {
          // Local reads may be stale; CheckReads did all there is to do.
          if (o.outcome != Outcome::kOk || o.read == ReadKind::kLocal) continue;
          s.kind = o.found ? Kind::kRead : Kind::kReadAbsent;
          s.revision = o.revision;
          if (o.found) s.writer = int64_t(writer_of_value_.at(o.value));
          ops.push_back(s);
          continue;
        }
        s.writer = int64_t(i);
        s.expected = o.expected_revision;
        s.kind = o.type == OpType::kPut      ? Kind::kPut
                 : o.type == OpType::kDelete ? Kind::kDelete
                                             : Kind::kCas;
        if (o.outcome == Outcome::kOk) {
          s.revision = o.revision;
          if (!Applied(o)) {
            s.kind = s.kind == Kind::kDelete ? Kind::kDeleteAbsent
                                             : Kind::kCasMismatch;
          }
        } else if (proven_revision_[i] != 0) {
          s.revision = proven_revision_[i];
          s.complete = kNever;
        } else {
          auto c =
              std::find_if(pool.begin(), pool.end(), [&](const PoolClass& p) {
                return p.kind == s.kind &&
                       (s.kind != Kind::kCas || p.expected == s.expected);
              });
          if (c == pool.end()) {
            c = pool.insert(pool.end(), PoolClass{s.kind, s.expected, {}});
          }
          c->invokes.push_back(o.invoke);
          continue;
        }
        ops.push_back(s);
      }
      for (PoolClass& p : pool) std::sort(p.invokes.begin(), p.invokes.end());

      KeySearch search(std::move(ops), std::move(pool), write_at_revision_);
      switch (search.Run(Clock::now() + options_.timeout_per_key)) {
        case KeySearch::Verdict::kLinearizable:
          break;
        case KeySearch::Verdict::kGaveUp:
          result_.gave_up = true;
          Report(absl::StrCat(
              "gave up on key ", Quote(key), " after ",
              options_.timeout_per_key.count(), " ms (", search.size(),
              " operations, up to ", search.reached(),
              " in a consistent order): ", "its linearizability is unknown"));
          break;
        case KeySearch::Verdict::kViolation:
          ReportSearchFailure(key, search);
          break;
      }
    }
  }

  std::string StateText(const State& s) const {
    if (!s.exists) return "the key was absent";
    if (s.value < 0) return "the key held a value nobody observed";
    return absl::StrCat("the key held the value of ", Describe(op(s.value)));
  }

  void ReportSearchFailure(std::string_view key, const KeySearch& search) {
    const SearchOp& b = search.blocked();
    const State& s = search.blocked_state();
    std::string why;
    if (const SearchOp* first = search.awaited_write()) {
      why = absl::StrCat("its revision is ", b.revision, ", so ",
                         Describe(op(first->source)),
                         " had to take effect before it, and had not");
    } else {
      switch (b.kind) {
        case Kind::kRead:
          why = absl::StrCat("it read the value of ", Describe(op(b.writer)),
                             ", but ", StateText(s));
          break;
        case Kind::kReadAbsent:
        case Kind::kDeleteAbsent:
          why = absl::StrCat("it found no value, but ", StateText(s));
          break;
        case Kind::kCasMismatch:
          why = absl::StrCat("it reported a revision mismatch, but ",
                             StateText(s), ", matching what it expected");
          break;
        case Kind::kCas:
          why = absl::StrCat("its expected revision did not hold: ",
                             StateText(s));
          break;
        case Kind::kDelete:
          if (!s.exists) {
            why = absl::StrCat("it deleted the key, but ", StateText(s));
            break;
          }
          [[fallthrough]];
        case Kind::kPut:
          why = absl::StrCat("its revision is not above ", s.floor,
                             ", already assigned to the key");
          break;
      }
    }
    const SearchOp* last = search.last_linearized();
    Report(absl::StrCat(
        "key ", Quote(key), ": not linearizable: ", Describe(op(b.source)),
        " cannot take effect before it completes: ", why,
        ". (The deepest consistent order took ", search.deepest() - 1, " of ",
        search.size(), " operations",
        last ? absl::StrCat(", the last being #", op(last->source).id) : "",
        ".)", Window(key, b.source)));
  }

  const History& history_;
  const CheckOptions options_;
  CheckResult result_;

  std::map<std::string_view, std::vector<size_t>> by_key_;  // by invocation
  absl::flat_hash_map<std::string_view, std::vector<size_t>> unknown_writes_;
  absl::flat_hash_map<std::string_view, size_t> writer_of_value_;
  // Every write known to have taken effect, by revision.
  absl::flat_hash_map<uint64_t, size_t> write_at_revision_;
  // Writes of unknown outcome that someone observed: the revision they took
  // effect at, and who saw it.
  std::vector<uint64_t> proven_revision_;
  absl::flat_hash_map<size_t, std::string> proven_by_;
  std::vector<bool> excluded_;  // reported already; left out of the search
  absl::flat_hash_set<std::string_view> untrusted_keys_;
  size_t unreported_ = 0;
};

}  // namespace

CheckResult CheckHistory(const History& history, const CheckOptions& options) {
  return Checker(history, options).Run();
}

}  // namespace confman::fault
