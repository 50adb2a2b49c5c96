// The checker against small histories whose answer is known: each kind of
// violation must be caught and named, each legal subtlety (concurrency,
// unknown outcomes, stale local reads) accepted. Then generated histories
// of a correct store, large enough to matter, checked in seconds.
#include "linearizability.h"

#include <catch2/catch.hpp>
#include <chrono>
#include <initializer_list>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace confman::fault {
namespace {

// Builds a history one operation at a time; ids count from 1. Revisions
// of 0 mean the write changed nothing (a CAS mismatch, a delete that found
// no key).
class Recorder {
 public:
  uint64_t Put(std::string key, std::string value, Nanos invoke, Nanos complete,
               uint64_t revision) {
    Operation& op = Add(OpType::kPut, std::move(key), invoke, complete);
    op.value = std::move(value);
    op.revision = revision;
    return op.id;
  }
  uint64_t Cas(std::string key, std::string value, uint64_t expected,
               Nanos invoke, Nanos complete, uint64_t revision) {
    Operation& op =
        Add(OpType::kCompareAndSet, std::move(key), invoke, complete);
    op.value = std::move(value);
    op.expected_revision = expected;
    op.cas_mismatch = revision == 0;
    op.revision = revision;
    return op.id;
  }
  uint64_t Delete(std::string key, Nanos invoke, Nanos complete,
                  uint64_t revision) {
    Operation& op = Add(OpType::kDelete, std::move(key), invoke, complete);
    op.found = revision != 0;
    op.revision = revision;
    return op.id;
  }
  uint64_t Get(std::string key, Nanos invoke, Nanos complete, std::string value,
               uint64_t revision, ReadKind read = ReadKind::kLinearizable) {
    Operation& op = Add(OpType::kGet, std::move(key), invoke, complete);
    op.value = std::move(value);
    op.revision = revision;
    op.read = read;
    return op.id;
  }
  uint64_t GetAbsent(std::string key, Nanos invoke, Nanos complete,
                     ReadKind read = ReadKind::kLinearizable) {
    Operation& op = Add(OpType::kGet, std::move(key), invoke, complete);
    op.found = false;
    op.read = read;
    return op.id;
  }
  // A write whose caller never learned what happened.
  uint64_t Unknown(OpType type, std::string key, std::string value,
                   Nanos invoke, uint64_t expected = 0) {
    Operation& op = Add(type, std::move(key), invoke, kNever);
    op.outcome = Outcome::kUnknown;
    op.value = std::move(value);
    op.expected_revision = expected;
    return op.id;
  }
  uint64_t FailedPut(std::string key, std::string value, Nanos invoke,
                     Nanos complete) {
    Operation& op = Add(OpType::kPut, std::move(key), invoke, complete);
    op.outcome = Outcome::kFailed;
    op.value = std::move(value);
    return op.id;
  }
  void Watch(std::string prefix, uint64_t after,
             std::vector<WatchEvent> events) {
    history_.watches.push_back({.watcher = int(history_.watches.size()) + 1,
                                .member = 1,
                                .prefix = std::move(prefix),
                                .after_revision = after,
                                .events = std::move(events)});
  }

  CheckResult Check() const { return CheckHistory(history_); }

 private:
  Operation& Add(OpType type, std::string key, Nanos invoke, Nanos complete) {
    Operation& op = history_.operations.emplace_back();
    op.id = history_.operations.size();
    op.client = int(op.id);
    op.member = 1;
    op.type = type;
    op.key = std::move(key);
    op.invoke = invoke;
    op.complete = complete;
    op.outcome = Outcome::kOk;
    return op;
  }

  History history_;
};

WatchEvent PutEvent(uint64_t revision, std::string key) {
  return {.revision = revision, .is_delete = false, .key = std::move(key)};
}
WatchEvent DeleteEvent(uint64_t revision, std::string key) {
  return {.revision = revision, .is_delete = true, .key = std::move(key)};
}

std::string Report(const CheckResult& result) {
  std::string out;
  for (const std::string& v : result.violations) out += v + "\n";
  return out;
}

// How an operation is named in a report.
std::string Id(uint64_t id) { return "#" + std::to_string(id) + " "; }

void ExpectPass(const CheckResult& result) {
  INFO(Report(result));
  CHECK(result.ok);
  CHECK_FALSE(result.gave_up);
  CHECK(result.violations.empty());
}

// Fails unless the check failed with one violation whose summary (its
// first line: the history excerpt below it names every nearby operation)
// mentions every part: operation ids, the key, what is wrong.
void ExpectViolation(const CheckResult& result,
                     std::initializer_list<std::string> parts) {
  INFO(Report(result));
  REQUIRE_FALSE(result.ok);
  CHECK_FALSE(result.gave_up);
  bool named = false;
  for (const std::string& v : result.violations) {
    const std::string summary = v.substr(0, v.find('\n'));
    bool all = true;
    for (const std::string& part : parts) {
      all = all && summary.find(part) != std::string::npos;
    }
    named = named || all;
  }
  CHECK(named);
}

TEST_CASE("a sequential history passes", "[lincheck]") {
  Recorder r;
  r.GetAbsent("a", 0, 5);
  r.Put("a", "v1", 10, 20, 1);
  r.Get("a", 30, 40, "v1", 1);
  r.Cas("a", "v2", 1, 50, 60, 2);
  r.Cas("a", "v3", 1, 70, 80, 0);  // mismatch: the revision is 2 now
  r.Put("b", "w1", 90, 100, 3);
  r.Delete("a", 110, 120, 4);
  r.GetAbsent("a", 130, 140);
  r.Delete("a", 150, 160, 0);
  r.Cas("a", "v4", 0, 170, 180, 5);  // create only
  r.Cas("a", "v5", 0, 190, 200, 0);  // create only, but it exists
  r.Get("a", 210, 220, "v4", 5, ReadKind::kLease);
  r.Get("b", 230, 240, "w1", 3);
  const CheckResult result = r.Check();
  ExpectPass(result);
  CHECK(result.operations_checked == 13);
  CHECK(result.keys == 2);
}

TEST_CASE("concurrent operations that can be ordered pass", "[lincheck]") {
  Recorder r;
  // v1 is invoked first but takes effect first only because revisions say
  // so; v2 completes before v1 does.
  r.Put("a", "v1", 0, 100, 1);
  r.Put("a", "v2", 10, 50, 2);
  r.GetAbsent("a", 5, 105);     // before both
  r.Get("a", 20, 30, "v1", 1);  // between them
  r.Get("a", 60, 70, "v2", 2);  // v1 still running: it went first
  r.Get("a", 110, 120, "v2", 2);
  // Two concurrent writes whose revisions run against their invocations.
  r.Put("a", "v3", 200, 300, 4);
  r.Put("a", "v4", 210, 290, 3);
  r.Get("a", 220, 230, "v4", 3);
  r.Get("a", 310, 320, "v3", 4);
  // A mismatch overlapping the write that caused it.
  r.Cas("a", "v5", 4, 400, 500, 5);
  r.Cas("a", "v6", 4, 410, 420, 0);
  r.Get("a", 510, 520, "v5", 5);
  ExpectPass(r.Check());
}

TEST_CASE("a stale read fails", "[lincheck]") {
  Recorder r;
  const uint64_t first = r.Put("a", "v1", 0, 10, 1);
  const uint64_t second = r.Put("a", "v2", 20, 30, 2);
  const uint64_t stale = r.Get("a", 40, 50, "v1", 1);
  ExpectViolation(r.Check(), {"key \"a\"", "not linearizable", Id(stale),
                              Id(first), Id(second)});
}

TEST_CASE("a lost acknowledged write fails", "[lincheck]") {
  Recorder r;
  const uint64_t lost = r.Put("a", "v1", 0, 10, 1);
  SECTION("later reads find nothing") {
    const uint64_t read = r.GetAbsent("a", 20, 30);
    r.GetAbsent("a", 40, 50);
    ExpectViolation(r.Check(), {"not linearizable", Id(read), Id(lost)});
  }
  SECTION("later reads find the value before it") {
    const uint64_t kept = r.Put("a", "v2", 20, 30, 2);
    const uint64_t lost2 = r.Put("a", "v3", 40, 50, 3);
    const uint64_t read = r.Get("a", 60, 70, "v2", 2);
    r.Get("a", 80, 90, "v2", 2);
    ExpectViolation(r.Check(),
                    {"not linearizable", Id(read), Id(kept), Id(lost2)});
  }
}

TEST_CASE("a compare-and-set applied twice fails", "[lincheck]") {
  Recorder r;
  r.Put("a", "v1", 0, 10, 1);
  SECTION("two CAS on the same revision both succeed") {
    r.Cas("a", "v2", 1, 20, 30, 2);
    const uint64_t twice = r.Cas("a", "v3", 1, 40, 50, 3);
    ExpectViolation(r.Check(), {"not linearizable", Id(twice),
                                "expected revision did not hold"});
  }
  SECTION("one value is seen at two revisions") {
    const uint64_t cas = r.Cas("a", "v2", 1, 20, 30, 2);
    r.Get("a", 40, 50, "v2", 2);
    r.Put("a", "v3", 60, 70, 3);
    const uint64_t again = r.Get("a", 80, 90, "v2", 4);
    ExpectViolation(r.Check(), {Id(again), Id(cas), "another revision"});
  }
}

TEST_CASE("revisions out of real-time order fail", "[lincheck]") {
  Recorder r;
  const uint64_t early = r.Put("a", "v1", 0, 10, 5);
  const uint64_t late = r.Put("a", "v2", 20, 30, 3);
  ExpectViolation(r.Check(), {"not linearizable", Id(early), Id(late),
                              "had to take effect before it"});
}

TEST_CASE("a duplicate revision fails", "[lincheck]") {
  Recorder r;
  const uint64_t one = r.Put("a", "v1", 0, 10, 3);
  SECTION("on two keys") {
    const uint64_t two = r.Put("b", "w1", 20, 30, 3);
    ExpectViolation(r.Check(), {Id(one), Id(two), "also assigned"});
  }
  SECTION("on one key, concurrently") {
    const uint64_t two = r.Cas("a", "v2", 0, 5, 30, 3);
    ExpectViolation(r.Check(), {Id(one), Id(two), "also assigned"});
  }
}

TEST_CASE("writes of unknown outcome", "[lincheck]") {
  Recorder r;
  r.Put("a", "v1", 0, 10, 1);
  SECTION("one a later read sees passes") {
    r.Unknown(OpType::kPut, "a", "v2", 20);
    r.Get("a", 30, 40, "v2", 2);
    r.Put("a", "v3", 50, 60, 3);
    r.Get("a", 70, 80, "v3", 3);
    ExpectPass(r.Check());
  }
  SECTION("once seen, it has taken effect for good") {
    const uint64_t unknown = r.Unknown(OpType::kPut, "a", "v2", 20);
    r.Get("a", 30, 40, "v2", 2);
    const uint64_t back = r.Get("a", 50, 60, "v1", 1);
    ExpectViolation(r.Check(), {"not linearizable", Id(back), Id(unknown)});
  }
  SECTION("one nobody sees passes") {
    r.Unknown(OpType::kPut, "a", "v2", 20);
    r.Unknown(OpType::kCompareAndSet, "a", "v3", 25, 1);
    r.Get("a", 30, 40, "v1", 1);
    r.Put("a", "v4", 50, 60, 5);
    r.Get("a", 70, 80, "v4", 5);
    ExpectPass(r.Check());
  }
  SECTION("an unseen delete explains a key found absent") {
    r.Unknown(OpType::kDelete, "a", "", 20);
    r.GetAbsent("a", 30, 40);
    r.Cas("a", "v2", 0, 50, 60, 7);
    ExpectPass(r.Check());
  }
  SECTION("two unseen writes explain a compare-and-set together") {
    // Only a delete and then a create can leave the key at a revision
    // nobody was told of, which the CAS expected.
    r.Unknown(OpType::kDelete, "a", "", 20);
    r.Unknown(OpType::kCompareAndSet, "a", "v2", 25, 0);
    r.Cas("a", "v3", 9, 50, 60, 10);
    ExpectPass(r.Check());
  }
  SECTION("which must both exist") {
    r.Unknown(OpType::kDelete, "a", "", 20);
    const uint64_t cas = r.Cas("a", "v3", 9, 50, 60, 10);
    ExpectViolation(r.Check(), {"not linearizable", Id(cas)});
  }
  SECTION("but not before it was invoked") {
    const uint64_t read = r.GetAbsent("a", 30, 40);
    r.Unknown(OpType::kDelete, "a", "", 50);
    ExpectViolation(r.Check(), {"not linearizable", Id(read)});
  }
  SECTION("one seen at two revisions fails") {
    const uint64_t unknown = r.Unknown(OpType::kPut, "a", "v2", 20);
    const uint64_t seen = r.Get("a", 30, 40, "v2", 2);
    const uint64_t again = r.Get("a", 50, 60, "v2", 4);
    ExpectViolation(r.Check(),
                    {Id(unknown), Id(seen), Id(again), "at revision 2"});
  }
  SECTION("a failed write is never seen") {
    const uint64_t failed = r.FailedPut("a", "v2", 20, 30);
    const uint64_t read = r.Get("a", 40, 50, "v2", 2);
    ExpectViolation(r.Check(),
                    {Id(read), Id(failed), "certainly was not applied"});
  }
}

TEST_CASE("local reads may be stale but not phantom", "[lincheck]") {
  Recorder r;
  r.Put("a", "v1", 0, 10, 1);
  r.Put("a", "v2", 20, 30, 2);
  SECTION("an old value passes") {
    r.Get("a", 40, 50, "v1", 1, ReadKind::kLocal);
    r.GetAbsent("a", 60, 70, ReadKind::kLocal);
    ExpectPass(r.Check());
  }
  SECTION("the same read, linearizable, fails") {
    r.Get("a", 40, 50, "v1", 1);
    CHECK_FALSE(r.Check().ok);
  }
  SECTION("a value nobody wrote fails") {
    const uint64_t phantom = r.Get("a", 40, 50, "ghost", 7, ReadKind::kLocal);
    ExpectViolation(r.Check(), {Id(phantom), "no operation wrote"});
  }
  SECTION("a value at the wrong revision fails") {
    const uint64_t read = r.Get("a", 40, 50, "v1", 2, ReadKind::kLocal);
    ExpectViolation(r.Check(), {Id(read), "another revision"});
  }
  SECTION("a value written only later fails") {
    const uint64_t read = r.Get("a", 40, 50, "v3", 3, ReadKind::kLocal);
    const uint64_t write = r.Put("a", "v3", 60, 70, 3);
    ExpectViolation(r.Check(), {Id(read), Id(write), "only after"});
  }
}

TEST_CASE("watch streams", "[lincheck]") {
  Recorder r;
  r.Put("app/a", "v1", 0, 10, 1);
  r.Put("app/b", "v2", 20, 30, 2);
  r.Delete("app/a", 40, 50, 3);
  r.Put("other/c", "v3", 60, 70, 4);
  const uint64_t last = r.Put("app/b", "v4", 80, 90, 5);
  SECTION("correct streams pass") {
    r.Watch("app/", 0,
            {PutEvent(1, "app/a"), PutEvent(2, "app/b"),
             DeleteEvent(3, "app/a"), PutEvent(5, "app/b")});
    r.Watch("app/", 2, {DeleteEvent(3, "app/a")});  // ended early
    r.Watch("", 3, {PutEvent(4, "other/c"), PutEvent(5, "app/b")});
    const CheckResult result = r.Check();
    ExpectPass(result);
    CHECK(result.watch_events_checked == 7);
  }
  SECTION("a missing event fails") {
    r.Watch(
        "app/", 0,
        {PutEvent(1, "app/a"), DeleteEvent(3, "app/a"), PutEvent(5, "app/b")});
    ExpectViolation(r.Check(), {"watch 1", "skipped revision 2"});
  }
  SECTION("a missing last write does not count as a gap") {
    r.Watch("app/", 0, {PutEvent(1, "app/a"), PutEvent(2, "app/b")});
    ExpectPass(r.Check());
  }
  SECTION("a duplicated event fails") {
    r.Watch("app/", 0,
            {PutEvent(1, "app/a"), PutEvent(2, "app/b"), PutEvent(2, "app/b"),
             DeleteEvent(3, "app/a")});
    ExpectViolation(r.Check(), {"event 2", "repeats"});
  }
  SECTION("events out of order fail") {
    r.Watch("app/", 0,
            {PutEvent(1, "app/a"), DeleteEvent(3, "app/a"),
             PutEvent(2, "app/b"), PutEvent(5, "app/b")});
    ExpectViolation(r.Check(), {"event 2", "below the previous"});
  }
  SECTION("an event for a write that does not exist fails") {
    r.Watch(
        "app/", 0,
        {PutEvent(1, "app/a"), PutEvent(2, "app/b"), DeleteEvent(3, "app/a"),
         PutEvent(5, "app/b"), PutEvent(6, "app/a")});
    ExpectViolation(r.Check(), {"event 4", "no write"});
  }
  SECTION("an event of the wrong kind fails") {
    r.Watch("app/", 0,
            {PutEvent(1, "app/a"), PutEvent(2, "app/b"), PutEvent(3, "app/a")});
    ExpectViolation(r.Check(), {"event 2", "belongs to"});
  }
  SECTION("an event for another key fails") {
    r.Watch("app/", 4, {PutEvent(5, "app/a")});
    ExpectViolation(r.Check(), {"event 0", "belongs to", Id(last)});
  }
  SECTION("an event outside the prefix fails") {
    r.Watch("app/", 3, {PutEvent(4, "other/c"), PutEvent(5, "app/b")});
    ExpectViolation(r.Check(), {"event 0", "not under"});
  }
  SECTION("an event at or before the start fails") {
    r.Watch("app/", 2, {PutEvent(2, "app/b"), DeleteEvent(3, "app/a")});
    ExpectViolation(r.Check(), {"event 0", "start revision"});
  }
}

TEST_CASE("a watch event proves an unknown write took effect", "[lincheck]") {
  Recorder r;
  r.Put("app/a", "v1", 0, 10, 1);
  r.Unknown(OpType::kDelete, "app/a", "", 20);
  r.Watch("app/", 0, {PutEvent(1, "app/a"), DeleteEvent(2, "app/a")});
  SECTION("consistent reads pass") {
    r.GetAbsent("app/a", 30, 40);
    ExpectPass(r.Check());
  }
  SECTION("a write that ignores it fails") {
    // Without the event the delete could have never happened.
    const uint64_t cas = r.Cas("app/a", "v2", 1, 50, 60, 3);
    ExpectViolation(r.Check(), {"not linearizable", Id(cas)});
  }
  SECTION("an event no unknown write can explain fails") {
    r.Watch("app/", 1, {DeleteEvent(3, "app/a")});  // only one delete
    ExpectViolation(r.Check(), {"watch 2", "no write"});
  }
}

TEST_CASE("a broken history reports its first violations, counting the rest",
          "[lincheck]") {
  Recorder r;
  for (int i = 0; i < 120; ++i) {
    r.Get("a", 10 * i, 10 * i + 5, "ghost" + std::to_string(i), 1);
  }
  const CheckResult result = r.Check();
  CHECK_FALSE(result.ok);
  REQUIRE(result.violations.size() == 51);
  CHECK(result.violations[0].find("no operation wrote") != std::string::npos);
  CHECK(result.violations.back() == "... and 70 more violations");
}

// The definition of linearizability for one key, by exhaustion: some order
// of the operations that respects real time (leaving out any whose outcome
// is unknown, as it may never have taken effect) and that the model
// accepts, with growing revisions. Written independently of the checker,
// for histories of a few operations.
class BruteForce {
 public:
  explicit BruteForce(const History& h) : ops_(h.operations) {
    for (const Operation& op : ops_) {
      if (op.outcome == Outcome::kOk && op.type != OpType::kGet &&
          !op.cas_mismatch && op.found) {
        known_.push_back(op.revision);
      }
      if (op.type == OpType::kCompareAndSet) {
        expected_.push_back(op.expected_revision);
      }
    }
    for (const Operation& read : ops_) {
      if (read.type == OpType::kGet && read.outcome == Outcome::kOk &&
          read.found) {
        known_.push_back(read.revision);
      }
    }
  }

  bool Linearizable() {
    placed_.assign(ops_.size(), false);
    return Search({});
  }

 private:
  struct Cell {
    bool exists = false;
    std::string value;
    uint64_t revision = 0;
    uint64_t highest = 0;  // highest revision assigned so far
  };

  bool Counts(const Operation& op) const {
    return op.outcome != Outcome::kFailed &&
           !(op.type == OpType::kGet && op.outcome != Outcome::kOk);
  }

  bool Search(const Cell& cell) {
    bool done = true;
    for (size_t i = 0; i < ops_.size(); ++i) {
      done = done && (placed_[i] || !Counts(ops_[i]) ||
                      ops_[i].outcome == Outcome::kUnknown);
    }
    if (done) return true;
    for (size_t i = 0; i < ops_.size(); ++i) {
      if (placed_[i] || !Counts(ops_[i])) continue;
      bool ready = true;
      for (size_t j = 0; j < ops_.size(); ++j) {
        ready = ready && (j == i || placed_[j] || !Counts(ops_[j]) ||
                          !(ops_[j].complete < ops_[i].invoke));
      }
      if (!ready) continue;
      placed_[i] = true;
      for (const Cell& next : Steps(ops_[i], cell)) {
        if (Search(next)) return true;
      }
      placed_[i] = false;
    }
    return false;
  }

  // The revisions a write of unknown outcome may have been assigned: the
  // one a read saw, else the lowest free one or any a CAS expected.
  std::vector<uint64_t> UnknownRevisions(const Operation& op,
                                         const Cell& cell) const {
    for (const Operation& read : ops_) {
      if (read.type == OpType::kGet && read.outcome == Outcome::kOk &&
          read.found && read.value == op.value && op.type != OpType::kDelete) {
        return {read.revision};
      }
    }
    std::vector<uint64_t> out = {cell.highest + 1};
    for (uint64_t e : expected_) {
      if (e > cell.highest &&
          std::find(known_.begin(), known_.end(), e) == known_.end()) {
        out.push_back(e);
      }
    }
    return out;
  }

  std::vector<Cell> Steps(const Operation& op, const Cell& cell) const {
    const bool unknown = op.outcome == Outcome::kUnknown;
    const bool holds =
        op.expected_revision == 0
            ? !cell.exists
            : cell.exists && cell.revision == op.expected_revision;
    bool applies = false;
    switch (op.type) {
      case OpType::kGet:
        if (op.found ? cell.exists && cell.value == op.value &&
                           cell.revision == op.revision
                     : !cell.exists) {
          return {cell};
        }
        return {};
      case OpType::kPut:
        applies = true;
        break;
      case OpType::kCompareAndSet:
        if (!unknown && op.cas_mismatch) {
          return holds ? std::vector<Cell>{} : std::vector<Cell>{cell};
        }
        applies = holds;
        break;
      case OpType::kDelete:
        if (!unknown && !op.found) {
          return cell.exists ? std::vector<Cell>{} : std::vector<Cell>{cell};
        }
        applies = cell.exists;
        break;
    }
    if (!applies) {
      return unknown ? std::vector<Cell>{cell} : std::vector<Cell>{};
    }
    std::vector<Cell> out;
    for (uint64_t r :
         unknown ? UnknownRevisions(op, cell) : std::vector{op.revision}) {
      if (r <= cell.highest) continue;
      if (op.type == OpType::kDelete) {
        out.push_back({false, "", 0, r});
      } else {
        out.push_back({true, op.value, r, r});
      }
    }
    return out;
  }

  const std::vector<Operation>& ops_;
  std::vector<uint64_t> known_;
  std::vector<uint64_t> expected_;
  std::vector<bool> placed_;
};

// A few operations on one key from a sequential model with wide overlaps,
// some of unknown outcome or failed; two times in three then broken in one
// random way (which may or may not make it non-linearizable).
History SmallRandomHistory(std::mt19937_64& rng) {
  auto below = [&](uint64_t n) { return rng() % n; };
  bool exists = false;
  std::string value;
  uint64_t mod_revision = 0, revision = 0;
  History h;
  const size_t count = 3 + below(6);
  for (size_t i = 0; i < count; ++i) {
    Operation op;
    op.id = i + 1;
    op.key = "k";
    const Nanos point = Nanos(10 * (i + 1));
    op.invoke = point - Nanos(below(25));
    op.complete = point + Nanos(below(25));
    op.outcome = Outcome::kOk;
    op.value = "v" + std::to_string(op.id);
    const uint64_t dice = below(100);
    bool applies = true;
    if (dice < 35) {
      op.type = OpType::kGet;
      op.found = exists;
      op.value = exists ? value : "";
      op.revision = mod_revision;
      h.operations.push_back(op);
      continue;
    } else if (dice < 60) {
      op.type = OpType::kPut;
    } else if (dice < 85) {
      op.type = OpType::kCompareAndSet;
      op.expected_revision = below(2) ? mod_revision : below(revision + 2);
      applies = op.expected_revision == 0
                    ? !exists
                    : exists && op.expected_revision == mod_revision;
      op.cas_mismatch = !applies;
    } else {
      op.type = OpType::kDelete;
      applies = exists;
      op.found = exists;
    }
    const uint64_t fate = below(100);
    if (fate < 20) {
      op.outcome = Outcome::kUnknown;
      op.complete = kNever;
      op.found = true;
      op.cas_mismatch = false;
      applies = applies && below(2);
    } else if (fate < 25) {
      op.outcome = Outcome::kFailed;
      applies = false;
    }
    if (applies) {
      revision += 1 + below(2);  // other keys' writes leave gaps
      if (op.outcome == Outcome::kOk) op.revision = revision;
      exists = op.type != OpType::kDelete;
      value = exists ? op.value : "";
      mod_revision = exists ? revision : 0;
    }
    h.operations.push_back(op);
  }
  if (below(3) == 0) return h;
  Operation& op = h.operations[below(h.operations.size())];
  const Operation& other = h.operations[below(h.operations.size())];
  switch (below(4)) {
    case 0:  // read something else
      if (op.type == OpType::kGet) {
        op.found =
            other.type == OpType::kPut || other.type == OpType::kCompareAndSet;
        op.value = op.found ? other.value : "";
        op.revision = op.found ? 1 + below(revision + 1) : 0;
      }
      break;
    case 1:  // another revision
      if (op.outcome == Outcome::kOk && op.revision != 0) {
        op.revision = 1 + below(revision + 1);
      }
      break;
    case 2:  // another time
      op.invoke += Nanos(below(60)) - 30;
      if (op.complete != kNever) {
        op.complete = std::max(op.invoke, op.complete + Nanos(below(60)) - 30);
      }
      break;
    case 3:  // the other answer
      if (op.outcome == Outcome::kOk && op.type == OpType::kCompareAndSet) {
        op.cas_mismatch = !op.cas_mismatch;
        op.revision = op.cas_mismatch ? 0 : 1 + below(revision + 1);
      } else if (op.outcome == Outcome::kOk && op.type == OpType::kDelete) {
        op.found = !op.found;
        op.revision = op.found ? 1 + below(revision + 1) : 0;
      }
      break;
  }
  return h;
}

std::string Dump(const History& h) {
  std::string out;
  for (const Operation& op : h.operations) {
    out += std::to_string(op.id) + " type " + std::to_string(int(op.type)) +
           " outcome " + std::to_string(int(op.outcome)) + " value " +
           op.value + " found " + std::to_string(op.found) + " mismatch " +
           std::to_string(op.cas_mismatch) + " expected " +
           std::to_string(op.expected_revision) + " rev " +
           std::to_string(op.revision) + " [" + std::to_string(op.invoke) +
           ", " + std::to_string(op.complete) + "]\n";
  }
  return out;
}

TEST_CASE("agrees with an exhaustive search on small random histories",
          "[lincheck]") {
  std::mt19937_64 rng(20240601);
  int linearizable = 0, not_linearizable = 0;
  for (int i = 0; i < 20000; ++i) {
    const History h = SmallRandomHistory(rng);
    const bool expected = BruteForce(h).Linearizable();
    const CheckResult result = CheckHistory(h);
    INFO("case " << i << "\n" << Dump(h) << Report(result));
    REQUIRE(result.ok == expected);
    (expected ? linearizable : not_linearizable)++;
  }
  // Both answers are well represented, or the comparison proves little.
  INFO(linearizable << " linearizable, " << not_linearizable << " not");
  CHECK(linearizable > 10000);
  CHECK(not_linearizable > 1500);
}

// A history produced by a correct store: operations take effect one at a
// time, each at a moment inside its own [invoke, complete] window, with
// windows overlapping at random (about eight in flight). About
// `unknown_writes` writes end with outcome unknown; half of those took
// effect. One watch stream sees every key, another one key from revision
// 1000.
History LinearizableHistory(uint64_t seed, int count, int keys,
                            int unknown_writes) {
  std::mt19937_64 rng(seed);
  auto below = [&](uint64_t n) { return rng() % n; };
  struct Cell {
    bool exists = false;
    std::string value;
    uint64_t revision = 0;
  };
  std::vector<Cell> cells(keys);
  std::vector<std::vector<Cell>> past(keys);  // for stale local reads
  uint64_t revision = 0;
  History h;
  h.watches.push_back({.watcher = 1, .member = 1, .prefix = "k"});
  h.watches.push_back(
      {.watcher = 2, .member = 2, .prefix = "k1", .after_revision = 1000});
  // Writes are 55% of operations.
  const uint64_t unknown_per_million =
      uint64_t(unknown_writes) * 1'000'000 / (uint64_t(count) * 55 / 100);
  for (int i = 0; i < count; ++i) {
    const int k = int(below(keys));
    Cell& cell = cells[k];
    Operation op;
    op.id = uint64_t(i) + 1;
    op.client = i % 16;
    op.member = 1 + i % 3;
    op.key = "k" + std::to_string(k);
    const Nanos point = Nanos{1000} * (i + 1);  // when it takes effect
    op.invoke = point - Nanos(below(5000));
    op.complete = point + Nanos(below(5000));
    op.outcome = Outcome::kOk;
    const uint64_t dice = below(100);
    if (dice < 45) {
      op.type = OpType::kGet;
      Cell seen = cell;
      if (dice < 5 && !past[k].empty()) {
        op.read = ReadKind::kLocal;
        seen = past[k][below(past[k].size())];
      }
      op.found = seen.exists;
      op.value = seen.value;
      op.revision = seen.revision;
      h.operations.push_back(std::move(op));
      continue;
    }
    op.value = "v" + std::to_string(op.id);
    bool changes = true;
    if (dice < 70) {
      op.type = OpType::kPut;
    } else if (dice < 85) {
      op.type = OpType::kCompareAndSet;
      const uint64_t current = cell.exists ? cell.revision : 0;
      op.expected_revision = current + below(2);
      changes = op.expected_revision == current;
      op.cas_mismatch = !changes;
    } else {
      op.type = OpType::kDelete;
      changes = cell.exists;
      op.found = cell.exists;
    }
    const bool unknown = below(1'000'000) < unknown_per_million;
    if (unknown) {
      op.outcome = Outcome::kUnknown;
      op.complete = kNever;
      op.found = true;
      op.cas_mismatch = false;
    }
    if (changes && (!unknown || below(2) == 0)) {
      past[k].push_back(cell);
      if (past[k].size() > 8) past[k].erase(past[k].begin());
      ++revision;
      if (!unknown) op.revision = revision;
      cell =
          op.type == OpType::kDelete ? Cell{} : Cell{true, op.value, revision};
      for (WatchStream& w : h.watches) {
        if (op.key.starts_with(w.prefix) && revision > w.after_revision) {
          w.events.push_back({.revision = revision,
                              .is_delete = op.type == OpType::kDelete,
                              .key = op.key});
        }
      }
    }
    h.operations.push_back(std::move(op));
  }
  return h;
}

size_t CountUnknown(const History& h) {
  size_t n = 0;
  for (const Operation& op : h.operations) {
    n += op.outcome == Outcome::kUnknown ? 1 : 0;
  }
  return n;
}

TEST_CASE("generated correct histories pass", "[lincheck]") {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    const History h = LinearizableHistory(seed, 3000, 2 + seed % 3, 30);
    const CheckResult result = CheckHistory(h);
    INFO("seed " << seed << "\n" << Report(result));
    REQUIRE(result.ok);
  }
}

TEST_CASE(
    "100k operations over 4 keys with 100 unknown outcomes check in "
    "seconds",
    "[lincheck]") {
  const History h = LinearizableHistory(7, 100'000, 4, 100);
  REQUIRE(CountUnknown(h) > 60);
  REQUIRE(CountUnknown(h) < 140);
  const auto start = std::chrono::steady_clock::now();
  const CheckResult result = CheckHistory(h);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  INFO(Report(result) << "checked in " << seconds << " s");
  REQUIRE(result.ok);
  CHECK(result.operations_checked == 100'000);
  CHECK(result.keys == 4);
  CHECK(result.watch_events_checked ==
        h.watches[0].events.size() + h.watches[1].events.size());
  CHECK(seconds < 10);
}

// Rewrites a late linearizable read to return a value two acknowledged
// writes old, both completed before the read began.
uint64_t PlantStaleRead(History& h) {
  auto& ops = h.operations;
  for (size_t i = ops.size() / 2; i < ops.size(); ++i) {
    Operation& read = ops[i];
    if (read.type != OpType::kGet || read.read != ReadKind::kLinearizable) {
      continue;
    }
    const Operation* newer = nullptr;
    for (size_t j = i; j-- > 0;) {
      const Operation& w = ops[j];
      if (w.key != read.key || w.type != OpType::kPut ||
          w.outcome != Outcome::kOk) {
        continue;
      }
      if (newer == nullptr && w.complete < read.invoke) {
        newer = &w;
      } else if (newer != nullptr && w.complete < newer->invoke) {
        read.found = true;
        read.value = w.value;
        read.revision = w.revision;
        return read.id;
      }
    }
  }
  FAIL("no read to make stale");
  return 0;
}

TEST_CASE("a stale read planted in a large history is found", "[lincheck]") {
  History h = LinearizableHistory(11, 50'000, 4, 50);
  const uint64_t stale = PlantStaleRead(h);
  ExpectViolation(CheckHistory(h), {"not linearizable", Id(stale)});
}

TEST_CASE("the search gives up, saying so, when out of time", "[lincheck]") {
  const History h = LinearizableHistory(3, 20'000, 1, 10);
  const CheckResult result =
      CheckHistory(h, {.timeout_per_key = std::chrono::milliseconds(0)});
  INFO(Report(result));
  CHECK_FALSE(result.ok);
  CHECK(result.gave_up);
  REQUIRE(result.violations.size() == 1);
  CHECK(result.violations[0].starts_with("gave up on key \"k0\""));
}

}  // namespace
}  // namespace confman::fault
