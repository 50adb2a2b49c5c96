// confman::MemoryLogStore — a LogStore (log_store.h) kept in this
// process's memory, over raft::MemoryLog. For tests, the simulator and
// nodes opened without a data directory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "confman/log_store.h"
#include "confman/raft/types.h"

namespace confman {

// An in-memory LogStore over raft::MemoryLog. Write applies the write and
// runs `done` synchronously, on the caller's thread, before returning.
class MemoryLogStore final : public LogStore {
 public:
  // `retain_entries_from_bytes` as in LmdbLogStoreOptions (0: none).
  explicit MemoryLogStore(uint64_t retain_entries_from_bytes = 0);
  ~MemoryLogStore() override;

  raft::Index FirstIndex() const override;
  raft::Index LastIndex() const override;
  [[nodiscard]] absl::StatusOr<raft::Term> TermAt(raft::Index index) const override;
  [[nodiscard]] absl::StatusOr<std::vector<raft::Entry>> Entries(
      raft::Index lo, raft::Index hi, uint64_t max_bytes) const override;

  void Write(LogWrite write, WriteDone done) override;
  [[nodiscard]] absl::StatusOr<raft::HardState> LoadHardState() const override;
  [[nodiscard]] absl::Status CompactPrefix(raft::Index through) override;
  [[nodiscard]] absl::Status ResetToSnapshot(raft::Index index, raft::Term term) override;

  bool RetainsEntry(const raft::Entry& entry) const override;
  [[nodiscard]] absl::StatusOr<std::string> ReadEntryData(raft::Index index) const override;
  [[nodiscard]] absl::StatusOr<std::vector<raft::Index>> RetainedIndexes(
      raft::Index after, size_t limit) const override;
  [[nodiscard]] absl::Status DropRetained(std::vector<raft::Index> indexes) override;

 private:
  struct State;
  // ResetToSnapshot's effect; requires state_->mu.
  void ResetLocked(raft::Index index, raft::Term term);
  std::unique_ptr<State> state_;
};

}  // namespace confman
