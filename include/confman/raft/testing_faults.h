// Test-only switches that make the Raft core break one of its safety rules
// on purpose (CoreOptions::testing_faults). The simulator's non-vacuity
// tests turn one on and must then see a violation reported: a checker that
// never fails proves nothing.
//
// Never set these outside tests. With testing_faults == 0 (the default) the
// core behaves exactly as documented in core.h; each switch costs one test
// of an integer where it would act. core.h does not include this header, so
// a driver that never names a fault never sees them.
#pragma once

#include <cstdint>

namespace confman::raft {

enum class TestingFault : uint32_t {
  kNone = 0,
  kCommitOldTermEntries = 1u << 0,  // Count earlier terms' entries (Fig. 8).
  kGrantTwoVotesPerTerm = 1u << 1,  // Ignore the vote already cast.
  kSkipConsistencyCheck = 1u << 2,  // Accept appends whatever prev term.
  kReadBeforeNoopCommit = 1u << 3,  // Serve ReadIndex before the no-op.
  kLeaseWithoutQuorum = 1u << 4,    // Serve lease reads with no quorum ack.
};

// The bit CoreOptions::testing_faults uses for `fault`.
constexpr uint32_t FaultBit(TestingFault fault) {
  return static_cast<uint32_t>(fault);
}

// True if `faults` (a CoreOptions::testing_faults value) has `fault` set.
constexpr bool HasTestingFault(uint32_t faults, TestingFault fault) {
  return (faults & FaultBit(fault)) != 0;
}

}  // namespace confman::raft
