// LogRetention: what the Node keeps of its Raft log. Two jobs, on one
// thread (confman-compact) beside the apply thread, since both wait for
// the log writer's queue:
//
//   compaction  drops entries behind the applied index, keeping
//               log_keep_entries for lagging followers and never passing a
//               snapshot being sent (its follower continues from the log);
//   the sweep   drops retained entries (entry_archive.h) whose values no
//               state refers to any more (LogEntryReferences).
//
// Durability order, for both: the state machine's applied state is synced
// before any log entry it covers, or stopped referring to, is dropped, so
// the log always holds what a system crash could undo.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "common/mutex.h"
#include "confman/log_store.h"
#include "confman/metrics.h"
#include "confman/raft/types.h"
#include "confman/state_machine.h"

namespace confman::node_internal {

class LogRetention {
 public:
  struct Options {
    uint64_t keep_entries = 0;   // NodeOptions::log_keep_entries.
    uint64_t compact_every = 1;  // NodeOptions::log_compact_every.
  };
  using LogLine = std::function<void(LogLevel level, const std::string& line)>;
  // The lowest index a snapshot being sent was taken at (compaction stays
  // at or below it); all ones if none. Any thread.
  using SnapshotFloor = std::function<raft::Index()>;

  // Every reference must outlive this object. `state` and `references` are
  // the same state machine, seen through its two interfaces.
  LogRetention(LogStore& log, StateMachine& state,
               const LogEntryReferences& references, Options options,
               LogLine log_line, SnapshotFloor snapshot_floor);
  ~LogRetention();
  LogRetention(const LogRetention&) = delete;
  LogRetention& operator=(const LogRetention&) = delete;

  // Starts and stops the thread. Stop waits for a running step to finish;
  // nothing runs after it returns.
  void Start();
  void Stop();

  // Runs the sweep on the calling thread, before Start (a crash between a
  // snapshot install and its cleanup leaves entries no state refers to).
  void SweepNow();

  // Apply thread (or before Start). The log is compacted, or reset to a
  // snapshot, through `index`: later compactions start from there.
  void CompactedThrough(raft::Index index);
  // Apply thread: a snapshot was installed through `index`, which replaced
  // the log before it; sweep what the old state referred to.
  void SnapshotInstalled(raft::Index index);
  // Apply thread: entries through `applied` are applied; compacts once
  // compact_every of them have accumulated past the kept ones.
  void Applied(raft::Index applied);
  // Any thread: asks for a sweep (e.g. a snapshot source closed, so values
  // only it still read can go).
  void RequestSweep();

 private:
  // `through` 0 asks only for a sweep of unreferenced values.
  void Request(raft::Index through);
  void Loop();
  // Drops the log's retained entries whose values no state holds any more.
  void DropUnreferencedValues();
  [[nodiscard]] absl::StatusOr<raft::Index> DropUnreferencedValuesAfter(raft::Index after);

  LogStore& log_;
  StateMachine& state_;
  const LogEntryReferences& references_;
  const Options options_;
  const LogLine log_line_;
  const SnapshotFloor snapshot_floor_;

  // Apply thread only: the point the last compaction was requested through
  // (or the log was compacted or reset to).
  raft::Index last_compaction_requested_ = 0;

  common::Mutex mu_;
  common::CondVar cv_;
  // Requested, not yet started.
  raft::Index compact_through_ ABSL_GUARDED_BY(mu_) = 0;
  bool sweep_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace confman::node_internal
