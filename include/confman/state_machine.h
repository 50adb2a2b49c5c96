// confman::StateMachine — what committed entries are applied to, and what
// a snapshot is taken from and restored into. Generic over the application:
// confman's config store (kv/kv_state_machine.h) is one implementation.
//
// Threads: Apply, BeginRestore and SnapshotSink::Commit are called from one
// thread at a time (the node's apply thread). OpenSnapshot, AppliedIndex,
// CurrentAppliedState and an implementation's read methods may be called from any
// thread, concurrently with Apply. A SnapshotSource or SnapshotSink may be
// handed to another thread, but each is used by one thread at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "confman/raft/types.h"

namespace confman {

// The outcome of one applied entry.
struct ApplyResult {
  raft::Index index = 0;
  // OK if the entry took effect. Otherwise the entry's own, deterministic
  // outcome — identical on every member and NOT a failure of the state
  // machine (its index is still applied):
  //   FailedPrecondition  a precondition did not hold (e.g. a
  //                       compare-and-set saw another revision);
  //   NotFound            the entry addressed something absent;
  //   InvalidArgument     the entry's bytes are not a valid command;
  //   Aborted             a retried write whose first attempt may or may
  //                       not have applied (its session record expired),
  //                       refused so that it never applies twice.
  absl::Status outcome = {};
  // Application-defined; for the config store, the revision the change was
  // stored at (0 when nothing changed).
  uint64_t revision = 0;
};

// What a restarting member needs for raft::BootState and what a snapshot's
// raft::SnapshotMeta holds.
struct AppliedState {
  raft::Index applied_index = 0;
  raft::Term applied_term = 0;
  // The configuration as of applied_index, and the index of the
  // kMembership entry (or snapshot) it came from; 0 if none was applied.
  raft::Membership membership = {};
  raft::Index membership_index = 0;
};

// One piece of a snapshot stream. Plain data so a transport can carry it:
// ALL FOUR fields must reach the receiver unchanged.
struct SnapshotChunk {
  uint64_t seq = 0;     // 0, 1, 2, ... in stream order.
  bool last = false;    // True on the final chunk only.
  std::string data = {};     // At most the source's chunk size; opaque.
  uint32_t checksum = 0;  // SnapshotChunkChecksum(seq, last, data).
};

// CRC32C over seq, last and data: what a sink verifies before using a chunk.
uint32_t SnapshotChunkChecksum(uint64_t seq, bool last, const std::string& data);

// A consistent, read-only view of the state machine as of one applied
// index, streamed as chunks. Opening one is O(1) and blocks neither Apply
// nor readers; it pins that version of the state (for LMDB, one read
// transaction — keep sources short-lived so freed pages can be reused).
// Memory: one chunk at a time.
class SnapshotSource {
 public:
  virtual ~SnapshotSource() = default;

  // The index, term and membership this snapshot captures.
  virtual const raft::SnapshotMeta& meta() const = 0;

  // The next chunk, its checksum filled in. After the chunk with
  // last == true, OutOfRange. An I/O error ends the stream with that status.
  [[nodiscard]] virtual absl::StatusOr<SnapshotChunk> NextChunk() = 0;
};

// Receives a snapshot stream into fresh storage. Nothing is visible until
// Commit succeeds; dropping the sink before (or after a failed Write or
// Commit) discards everything it received and leaves the current state
// untouched. Memory: bounded by a chunk, the largest stored record and the
// implementation's restore batch (KvStateMachineOptions::restore_batch_bytes).
class SnapshotSink {
 public:
  virtual ~SnapshotSink() = default;

  // Takes chunks in order. DataLoss for a checksum mismatch or a stream
  // whose contents do not parse; InvalidArgument for an out-of-order seq or
  // a chunk after the last one; FailedPrecondition once the sink has
  // failed. The sink is unusable after any error: begin a new restore.
  [[nodiscard]] virtual absl::Status Write(const SnapshotChunk& chunk) = 0;

  // Makes the received state the state machine's, atomically and durably:
  // afterwards AppliedIndex() == meta.index. FailedPrecondition if the last
  // chunk has not arrived or the stream's metadata disagrees with the meta
  // given to BeginRestore.
  [[nodiscard]] virtual absl::Status Commit() = 0;
};

class StateMachine {
 public:
  virtual ~StateMachine() = default;

  // Applies committed entries, in order, atomically with the new applied
  // index (a restart never re-applies or skips an entry). Durable no later
  // than the next Apply or Sync: a system crash (not a process crash) may
  // undo the last batch, never part of one, and the log replays it.
  // kNoop entries only advance the index; kMembership entries record the
  // configuration. Entries at or below AppliedIndex() are skipped (no
  // result); the rest must continue it without a gap (InvalidArgument,
  // nothing applied). Returns one result per applied entry. An error status
  // means storage failed and nothing was applied: the member must stop.
  //
  // `results_known`, when set, receives the same results as soon as they
  // are computed, before they are durable or visible to readers, at most
  // once per call. Applying is deterministic, so they are final even if
  // this member then fails: its log replays the same entries to the same
  // results. A driver acknowledges writes from it, keeping the state's
  // commit and fsync out of write latency. It runs on the calling thread
  // while the batch's transaction is open: it must be quick and must not
  // call Apply, Sync or BeginRestore.
  using ResultsKnown = std::function<void(const std::vector<ApplyResult>&)>;
  [[nodiscard]] virtual absl::StatusOr<std::vector<ApplyResult>> Apply(
      std::vector<raft::Entry> committed,
      const ResultsKnown& results_known = {}) = 0;

  // Makes every applied batch durable. A driver calls it before dropping
  // log entries the state machine has applied (log compaction), so the
  // log always covers what a system crash could undo.
  [[nodiscard]] virtual absl::Status Sync() = 0;

  // The index applied through; 0 for a new state machine.
  virtual raft::Index AppliedIndex() const = 0;

  // Applied index and term, and the membership as of it: what a restart
  // boots from, and what the node reads after applying a membership change.
  [[nodiscard]] virtual absl::StatusOr<AppliedState> CurrentAppliedState() const = 0;

  // A snapshot of the current applied state (see SnapshotSource).
  [[nodiscard]] virtual absl::StatusOr<std::unique_ptr<SnapshotSource>> OpenSnapshot() const = 0;

  // Starts receiving the snapshot described by `meta` (from the kSnapshot
  // message). Only one restore at a time; Apply must not run while a sink
  // commits.
  [[nodiscard]] virtual absl::StatusOr<std::unique_ptr<SnapshotSink>> BeginRestore(
      const raft::SnapshotMeta& meta) = 0;
};

// What a state machine that stores references to retained log entries
// (entry_archive.h) instead of copies of their data tells the log's owner,
// so that the owner can drop the retained entries no state needs any more.
//
// The owner may drop a retained entry at index i once, with no snapshot
// source open (OpenSnapshotCount() == 0 both before and after the
// question), ReferencedLogEntries(lo, hi) for a range holding i left i out,
// and the state it answered for is durable (StateMachine::Sync).
// Thread safety: both methods may run on any thread, concurrently with
// Apply.
class LogEntryReferences {
 public:
  virtual ~LogEntryReferences() = default;

  // Log indexes in [lo, hi] whose entries hold data of the current version,
  // ascending. An index in that range absent from the list is never needed
  // again by this version or a later one (later versions only refer to
  // newer entries); open snapshot sources may still need it. At most
  // hi - lo + 1 indexes, so callers bound the memory by the range.
  [[nodiscard]] virtual absl::StatusOr<std::vector<raft::Index>> ReferencedLogEntries(
      raft::Index lo, raft::Index hi) const = 0;

  // Snapshot sources opened and not yet destroyed: each may still read an
  // entry the current version no longer refers to.
  virtual int OpenSnapshotCount() const = 0;
};

}  // namespace confman
