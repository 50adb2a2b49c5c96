// confman::kv::KvStateMachine — the replicated config store.
//
// Applies encoded commands (kv/command.h) and serves reads. Two storage
// backends behind one class:
//
//   OpenLmdb        its own LMDB environment (separate from the log's).
//                   The applied index is written in the same transaction as
//                   the data. A snapshot is one LMDB read transaction,
//                   streamed record by record in bounded chunks; a restore
//                   fills a fresh environment and swaps it in atomically.
//   CreateInMemory  the same semantics in memory, for tests and the
//                   simulator. Each Apply batch copies the key index (values
//                   are shared) so open snapshots and readers keep an
//                   unchanging version: O(keys) per batch.
//
// Thread safety: as StateMachine (state_machine.h). Get, List, Changes and
// Revision are const and may run on any thread concurrently with Apply;
// each reads one consistent version.
//
// Read statuses: InvalidArgument for a malformed request, NotFound for a
// missing key, OutOfRange for history that was compacted, DataLoss if a
// stored value does not decompress, and the backend's I/O errors.
//
// Exactly-once writes (Raft thesis §6.3). A put or delete whose command has
// client_id != 0 (command.h) takes effect at most once per (client_id,
// sequence). The store keeps, per client, the outcome (status code and
// message) and revision of each of its writes, and the client's last
// activity: the latest time stamp among its applied writes. The store clock
// is the latest time stamp of any applied command. Both come from entries
// only, never a local clock, so every member keeps the same table. Applying
// such a command gives, as its ApplyResult:
//   - a duplicate of a recorded write: the first attempt's outcome and
//     revision, unchanged — including FailedPrecondition of a
//     compare-and-set or NotFound of a delete. Nothing else changes: no new
//     revision, history entry, watch event or key change (the applied
//     index still advances);
//   - a write whose record may have been forgotten: outcome Aborted
//     ("write <client>/<seq> on <ns>/<key> was retried after its session
//     record expired (<why>); it may or may not have taken effect: read the
//     key and decide"), nothing changed. That is: its sequence is below
//     the client's lowest_unanswered or was dropped by the per-client cap;
//     or no record of its client exists (or the client's record was
//     created after an earlier one was dropped) and its time stamp is
//     older than store clock - session_ttl or no later than the last
//     activity of a client evicted for count. A first attempt applied
//     earlier would have left a record that such a time stamp shows has
//     since gone, so a refusal never hides a second application, and an
//     accepted write is never one applied before;
//   - otherwise the write applies as usual and its result is recorded.
// Results below the command's lowest_unanswered are then forgotten.
// Commands with client_id 0 apply every time they are proposed.
//
// Session memory: the table lives in the backend, in the same transaction
// as the data, survives restarts and travels in snapshots. An apply reads
// a few records of it, plus O(records it drops); nothing is cached. It
// holds at most max_sessions x (max_results_per_client + 2) small records
// (a result is ~40 bytes plus its outcome message, at most ~600 bytes);
// the in-memory backend holds them in RAM.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "confman/entry_archive.h"
#include "confman/kv/model.h"
#include "confman/state_machine.h"

namespace confman::kv {

// Upper bounds of the session options below.
inline constexpr uint64_t kMaxSessionsLimit = 1000000;
inline constexpr uint64_t kMaxResultsPerClientLimit = 65536;

struct KvStateMachineOptions {
  // Directory for the LMDB backend (required there, ignored in memory).
  // It holds one environment per generation (state-<n>/) and a CURRENT
  // file naming the live one; a restore writes the next generation.
  std::string dir = {};
  // LMDB map: initial size and ceiling, in bytes. The map is address space,
  // not disk; it doubles on MDB_MAP_FULL (waiting for open snapshots to
  // close) up to max_map_bytes, then writes fail with ResourceExhausted.
  uint64_t initial_map_bytes = uint64_t{1} << 30;  // 1 GiB
  uint64_t max_map_bytes = uint64_t{1} << 40;      // 1 TiB
  // Snapshot chunk size in bytes. Default 1 MiB.
  uint64_t snapshot_chunk_bytes = uint64_t{1} << 20;
  // A restore commits to its fresh environment every this many bytes, which
  // bounds its memory. Default 8 MiB.
  uint64_t restore_batch_bytes = uint64_t{8} << 20;
  // Changes (watch history and audit) kept; older ones are dropped as new
  // ones arrive. Default 100,000.
  uint64_t history_retention = 100000;
  // Largest decompressed value a read will produce, and largest stored
  // record a restore accepts. Match EncodeOptions::max_value_bytes.
  uint64_t max_value_bytes = uint64_t{8} << 20;

  // The Raft log this state machine's entries come from, as an archive of
  // retained entries (entry_archive.h). When set, a put whose entry the
  // archive retains stores a reference to that entry instead of a second
  // copy of the value, and reads fetch the value from it; snapshots still
  // carry values inline. Not owned; it must outlive the state machine and
  // every snapshot source it opens, and must be the same log across
  // restarts. The owner drops retained entries only as LogEntryReferences
  // (state_machine.h) allows. Default none: every value is stored here.
  const EntryArchive* value_archive = nullptr;

  // Exactly-once sessions (see "Exactly-once writes" below). These three
  // decide which writes apply, so they MUST be identical on every member
  // of a cluster, and across restarts: members that disagree diverge.
  //
  // Clients (distinct client ids) remembered at once, 1..1,000,000. When a
  // new client would exceed it, the least recently active client (ties:
  // smallest id) is forgotten, and from then on session writes stamped no
  // later than that client's last write are refused (Aborted), so keep it
  // above the number of clients writing within session_ttl. Default 10,000.
  uint64_t max_sessions = 10000;
  // A client whose last write is stamped more than this before the store
  // clock is forgotten. At least 1 s; it must outlast any client's retries
  // and the clock skew between proposers (see ClockMicros). Default 10
  // minutes.
  std::chrono::microseconds session_ttl = std::chrono::minutes(10);
  // Results remembered per client, 1..65,536: beyond it the smallest
  // sequences are forgotten (their retries are refused with Aborted), so a
  // client should keep fewer writes than this unanswered. Default 1,024.
  uint64_t max_results_per_client = 1024;

  // InvalidArgument naming the first bad field. (dir is checked by
  // OpenLmdb only.)
  [[nodiscard]] absl::Status Validate() const;
};

class KvStateMachine final : public StateMachine, public LogEntryReferences {
 public:
  // Opens or creates the store in options.dir, clearing stale LMDB readers
  // and any half-finished restore. Not fork-safe (see LmdbLogStore).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<KvStateMachine>> OpenLmdb(
      const KvStateMachineOptions& options);
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<KvStateMachine>> CreateInMemory(
      const KvStateMachineOptions& options = {});

  ~KvStateMachine() override;

  // StateMachine. Normal entries must hold EncodeCommand output; anything
  // else is applied as an InvalidArgument outcome.
  [[nodiscard]] absl::StatusOr<std::vector<ApplyResult>> Apply(
      std::vector<raft::Entry> committed,
      const ResultsKnown& results_known = {}) override;
  [[nodiscard]] absl::Status Sync() override;
  raft::Index AppliedIndex() const override;
  [[nodiscard]] absl::StatusOr<AppliedState> CurrentAppliedState() const override;
  [[nodiscard]] absl::StatusOr<std::unique_ptr<SnapshotSource>> OpenSnapshot() const override;
  [[nodiscard]] absl::StatusOr<std::unique_ptr<SnapshotSink>> BeginRestore(
      const raft::SnapshotMeta& meta) override;

  // The value of ns/key, decompressed.
  [[nodiscard]] absl::StatusOr<KeyValue> Get(std::string_view ns, std::string_view key) const;

  // A page of ns's keys (see ListRequest).
  [[nodiscard]] absl::StatusOr<ListPage> List(const ListRequest& request) const;

  // Up to `limit` (1..10000) changes with revision > after_revision.
  // OutOfRange if some of them were compacted: resume from a full List.
  [[nodiscard]] absl::StatusOr<ChangePage> Changes(uint64_t after_revision,
                                     uint32_t limit) const;

  // The latest revision (0 before the first change).
  uint64_t Revision() const;

  // The store clock: the latest time_unix_micros of any applied command,
  // in microseconds since the Unix epoch; INT64_MIN before the first. A
  // proposer stamps new commands with max(its clock, this), so that a
  // member whose clock runs behind a proposer's that ran ahead does not
  // stamp writes the session checks would find too old.
  int64_t ClockMicros() const;

  // Bytes of the live LMDB environment's data file (0 in memory).
  uint64_t StorageBytes() const;

  // LogEntryReferences (state_machine.h): the entries of value_archive
  // whose values keys of the current version hold.
  [[nodiscard]] absl::StatusOr<std::vector<raft::Index>> ReferencedLogEntries(
      raft::Index lo, raft::Index hi) const override;
  int OpenSnapshotCount() const override;

 private:
  class Impl;
  explicit KvStateMachine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace confman::kv
