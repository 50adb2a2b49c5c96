// The log store every member of a fault run gets (through
// NodeOptions::log_store_factory): the LMDB store a Node would open itself,
// behind a FaultInjectingLogStore, with an adjustable delay before each
// write is reported durable (a slow fsync). The wrapper owns the store it
// wraps, so the Node's ownership of its log works as usual.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "confman/storage/lmdb.h"
#include "confman/testing/fault_injecting_log_store.h"

namespace confman::fault {

class HarnessLogStore final : public LogStore {
 public:
  // Opens an LmdbLogStore in `dir` retaining entries of at least
  // `retain_entries_from_bytes`, as Node::Open would.
  static absl::StatusOr<std::unique_ptr<HarnessLogStore>> Open(
      const std::string& dir, uint64_t retain_entries_from_bytes);
  ~HarnessLogStore() override;

  // The next `count` writes fail with `status` (FaultInjectingLogStore).
  void FailNextWrites(int count, absl::Status status);
  // Every write from now on is reported durable no sooner than `delay`
  // after it was submitted (0: no delay). The wait runs on the store's
  // writer thread, so it holds back the writes queued behind it too, and
  // the writes of one group commit share it, as they would share a slow
  // fsync.
  void SetWriteDelay(std::chrono::milliseconds delay);

  raft::Index FirstIndex() const override;
  raft::Index LastIndex() const override;
  absl::StatusOr<raft::Term> TermAt(raft::Index index) const override;
  absl::StatusOr<std::vector<raft::Entry>> Entries(
      raft::Index lo, raft::Index hi, uint64_t max_bytes) const override;
  void Write(LogWrite write, WriteDone done) override;
  absl::StatusOr<raft::HardState> LoadHardState() const override;
  absl::Status CompactPrefix(raft::Index through) override;
  absl::Status ResetToSnapshot(raft::Index index, raft::Term term) override;
  bool RetainsEntry(const raft::Entry& entry) const override;
  absl::StatusOr<std::string> ReadEntryData(raft::Index index) const override;
  absl::StatusOr<std::vector<raft::Index>> RetainedIndexes(
      raft::Index after, size_t limit) const override;
  absl::Status DropRetained(std::vector<raft::Index> indexes) override;

 private:
  explicit HarnessLogStore(std::unique_ptr<LogStore> base);

  // Declared first so it is destroyed last: faults_ points into it.
  std::unique_ptr<LogStore> base_;
  FaultInjectingLogStore faults_;
  std::atomic<int64_t> write_delay_ms_{0};
};

}  // namespace confman::fault
