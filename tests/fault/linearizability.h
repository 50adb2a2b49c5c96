// Checks a fault run's History (history.h) against the config model:
// per-key linearizability of the operations, the revision rules, and every
// watch stream. The store is assumed empty when the history starts.
//
// What is checked:
//  - Revisions: every write that took effect has its own revision, unique
//    across the history. Written values are unique, so a read names the
//    write it saw: that write must exist on the read's key, must not have
//    failed, and must be seen at one revision only. A read (or a watch
//    event) that sees a write of unknown outcome proves that it took effect,
//    at that revision.
//  - Linearizability, key by key (keys are independent objects, so a history
//    is linearizable iff each key's sub-history is): Wing & Gong's search as
//    refined by Lowe, remembering visited (linearized set, model state)
//    configurations. Linearizable and lease reads take part; local reads may
//    be stale and are only checked for reading a real write (or nothing).
//    Failed operations are ignored; an operation of unknown outcome may take
//    effect at any moment after its invocation, or never.
//  - Watch streams: events strictly increasing in revision; each one is a
//    write on that key, at that revision, of that kind (put or compare-and-
//    set vs delete), under the stream's prefix and after its start; and no
//    gaps: every write known to have taken effect under the prefix with a
//    revision in (after_revision, last delivered revision] was delivered.
//
// The model, per key: absent, or a value with its mod revision. A put sets
// it; a delete needs the key present (one that found nothing needs it
// absent); a compare-and-set applies iff (expected 0 and absent) or
// (present and mod revision == expected), and one that reported a mismatch
// needs that false; a read needs exactly what it returned. Every write that
// takes effect gets a revision above all earlier ones on its key; that of a
// write of unknown outcome nobody observed is unknown, but not one another
// write holds. A watch event proves a write of unknown outcome took effect
// only when exactly one such write, on that key and of that kind, can be
// the one.
//
// Thread safety: CheckHistory is a pure function of its arguments.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "history.h"

namespace confman::fault {

struct CheckOptions {
  // The search for one key's linearization stops after this long; the
  // result then says it gave up on that key (neither pass nor violation).
  std::chrono::milliseconds timeout_per_key{30000};
};

struct CheckResult {
  // No violation was found and no search gave up.
  bool ok = true;
  // The search for at least one key hit timeout_per_key: that key's
  // linearizability is unknown. Other checks still ran.
  bool gave_up = false;
  // One entry per violation: the key, the operation ids and times, what is
  // wrong, and the nearby history. A key given up on also gets an entry,
  // starting with "gave up", so that printing this list explains !ok. At
  // most 50 entries, then one counting the rest.
  std::vector<std::string> violations{};
  // Operations taking part in some check (failed operations and reads of
  // unknown outcome teach nothing and are not counted).
  uint64_t operations_checked = 0;
  uint64_t keys = 0;
  uint64_t watch_events_checked = 0;
};

CheckResult CheckHistory(const History& history,
                         const CheckOptions& options = {});

}  // namespace confman::fault
