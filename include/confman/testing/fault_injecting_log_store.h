// confman::FaultInjectingLogStore — a LogStore (log_store.h) wrapper that
// fails writes and reads on demand, to test how a driver copes with a
// failing disk. Install it through NodeOptions::log_store_factory.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "confman/log_store.h"
#include "confman/raft/types.h"

namespace confman {

// Wraps a LogStore and fails operations on demand, for testing how a
// driver copes with a failing disk. Thread-safe; the wrapped store must
// outlive the wrapper. By default it passes everything through.
class FaultInjectingLogStore final : public LogStore {
 public:
  explicit FaultInjectingLogStore(LogStore* wrapped);
  ~FaultInjectingLogStore() override;

  // The next `count` writes (Write, WriteSync, CompactPrefix,
  // ResetToSnapshot, DropRetained) fail with `status` without reaching the
  // wrapped store.
  void FailNextWrites(int count, absl::Status status);
  // While set, TermAt, Entries and ReadEntryData fail with `status` (e.g.
  // DataLoss).
  void FailReads(std::optional<absl::Status> status);

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
  struct Faults;
  // The injected failure for the next write, if one is armed.
  std::optional<absl::Status> TakeWriteFault();
  // The armed read failure, if any.
  std::optional<absl::Status> ReadFault() const;

  LogStore* wrapped_;
  std::unique_ptr<Faults> faults_;
};

}  // namespace confman
