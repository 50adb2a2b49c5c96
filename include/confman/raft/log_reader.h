// The read-only view of the durable log that the Raft core consults.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "confman/raft/types.h"

namespace confman::raft {

// What the core needs to read from the durable log. The driver's log store
// implements it (confman::LogStore does); the core never writes through it —
// writes travel out through Ready and come back as Core::ReportDurable.
//
// The log covers the indexes [FirstIndex(), LastIndex()]. Entries before
// FirstIndex() were compacted; the entry at FirstIndex() - 1 is the
// compaction point, whose term Term() must still return. An empty log that
// was never compacted has FirstIndex() == 1 and LastIndex() == 0, and
// Term(0) == 0.
//
// Thread safety: the core calls these from its own thread only; an
// implementation that is also written to from another thread must make each
// call see a consistent state (an LMDB read transaction does).
//
// Errors: OutOfRange for an index outside [FirstIndex() - 1, LastIndex()]
// (for Entries, outside [FirstIndex(), LastIndex() + 1)); DataLoss for a
// corrupt entry, naming the index. The core treats any other error from a
// read it needs as fatal for the member and surfaces it through Status().
class LogReader {
 public:
  virtual ~LogReader() = default;

  virtual Index FirstIndex() const = 0;
  virtual Index LastIndex() const = 0;

  // The term of the entry at `index`, for FirstIndex() - 1 <= index <=
  // LastIndex().
  [[nodiscard]] virtual absl::StatusOr<Term> TermAt(Index index) const = 0;

  // Entries in [lo, hi), in order, stopping early once their data bytes
  // reach `max_bytes` — but always at least one entry when lo < hi, so a
  // single entry larger than the budget still makes progress.
  [[nodiscard]] virtual absl::StatusOr<std::vector<Entry>> Entries(
      Index lo, Index hi, uint64_t max_bytes) const = 0;
};

}  // namespace confman::raft
