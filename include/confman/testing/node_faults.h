// Test-only switches that make a Node break one of its guarantees on
// purpose (NodeOptions::testing_faults). A test harness turns one on and
// must then report a violation: a checker that never fails proves nothing
// (DESIGN.md, "Proven in layers").
//
// Never set these outside tests. With testing_faults == 0 (the default) a
// Node behaves exactly as documented, and each switch costs one branch on
// an integer where it would act.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace confman::testing {

enum class NodeTestingFault : uint32_t {
  // Linearizable and lease reads are served from this member's applied
  // state at once, without a read index or a lease: a follower that lags or
  // is cut off answers with stale values.
  kLocalLinearizableReads = 1u << 0,
  // The leader acknowledges a write as soon as it has appended the entry
  // to its own log, before any other member has it, with the revision it
  // predicts: one above the last it handed out or applied (as if every
  // write changed something). Writes a failed leader never replicated are
  // acknowledged all the same, and predictions miss whenever a write
  // changes nothing (a compare-and-set that does not match, a delete of an
  // absent key).
  kAckBeforeCommit = 1u << 1,
  // The member skips applying some committed entries: every
  // kSkipApplyInterval-th unconditional put outside confman's reserved
  // namespaces that it applies after Open has no effect on its state. Set
  // it on one member only. Unconditional puts always change the state, so
  // each skip is a divergence; and it recurs, because a snapshot from a
  // healthy member repairs the state it had.
  kSkipApplies = 1u << 2,
  // The member's invariant check reports a broken invariant once it has
  // committed kBreakInvariantAtCommit entries, as a bug in the core would:
  // the member must halt and serve nothing more.
  kBreakInvariant = 1u << 3,
};

// When kBreakInvariant strikes: the commit index it waits for.
inline constexpr uint64_t kBreakInvariantAtCommit = 20;

// Which puts kSkipApplies skips: the multiples of this, counting from 1
// after Open. Late enough that a test's workload runs first, early enough
// for a short run.
inline constexpr uint64_t kSkipApplyInterval = 200;

constexpr uint32_t FaultBit(NodeTestingFault fault) {
  return static_cast<uint32_t>(fault);
}

constexpr bool HasTestingFault(uint32_t faults, NodeTestingFault fault) {
  return (faults & FaultBit(fault)) != 0;
}

// The name used on command lines ("local-linearizable-reads",
// "ack-before-commit", "skip-applies", "break-invariant"), or nullopt.
inline std::optional<NodeTestingFault> NodeTestingFaultFromName(
    std::string_view name) {
  if (name == "local-linearizable-reads") {
    return NodeTestingFault::kLocalLinearizableReads;
  }
  if (name == "ack-before-commit") return NodeTestingFault::kAckBeforeCommit;
  if (name == "skip-applies") return NodeTestingFault::kSkipApplies;
  if (name == "break-invariant") return NodeTestingFault::kBreakInvariant;
  return std::nullopt;
}

}  // namespace confman::testing
