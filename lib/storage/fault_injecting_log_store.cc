// FaultInjectingLogStore (testing/fault_injecting_log_store.h): passes
// everything to the wrapped store unless a write or read failure is armed.
#include <mutex>

#include "confman/testing/fault_injecting_log_store.h"

namespace confman {

struct FaultInjectingLogStore::Faults {
  mutable std::mutex mu;
  int failing_writes = 0;                   // Guarded by mu.
  absl::Status write_status;                // Guarded by mu.
  std::optional<absl::Status> read_status;  // Guarded by mu.
};

FaultInjectingLogStore::FaultInjectingLogStore(LogStore* wrapped)
    : wrapped_(wrapped), faults_(std::make_unique<Faults>()) {}
FaultInjectingLogStore::~FaultInjectingLogStore() = default;

void FaultInjectingLogStore::FailNextWrites(int count, absl::Status status) {
  std::lock_guard lock(faults_->mu);
  faults_->failing_writes = count;
  faults_->write_status = std::move(status);
}

void FaultInjectingLogStore::FailReads(std::optional<absl::Status> status) {
  std::lock_guard lock(faults_->mu);
  faults_->read_status = std::move(status);
}

std::optional<absl::Status> FaultInjectingLogStore::TakeWriteFault() {
  std::lock_guard lock(faults_->mu);
  if (faults_->failing_writes <= 0) return std::nullopt;
  --faults_->failing_writes;
  return faults_->write_status;
}

raft::Index FaultInjectingLogStore::FirstIndex() const {
  return wrapped_->FirstIndex();
}
raft::Index FaultInjectingLogStore::LastIndex() const {
  return wrapped_->LastIndex();
}

std::optional<absl::Status> FaultInjectingLogStore::ReadFault() const {
  std::lock_guard lock(faults_->mu);
  return faults_->read_status;
}

absl::StatusOr<raft::Term> FaultInjectingLogStore::TermAt(
    raft::Index index) const {
  if (std::optional<absl::Status> fault = ReadFault()) return *fault;
  return wrapped_->TermAt(index);
}

absl::StatusOr<std::vector<raft::Entry>> FaultInjectingLogStore::Entries(
    raft::Index lo, raft::Index hi, uint64_t max_bytes) const {
  if (std::optional<absl::Status> fault = ReadFault()) return *fault;
  return wrapped_->Entries(lo, hi, max_bytes);
}

void FaultInjectingLogStore::Write(LogWrite write, WriteDone done) {
  if (std::optional<absl::Status> fault = TakeWriteFault()) {
    done(*std::move(fault));
    return;
  }
  wrapped_->Write(std::move(write), std::move(done));
}

absl::StatusOr<raft::HardState> FaultInjectingLogStore::LoadHardState() const {
  return wrapped_->LoadHardState();
}

absl::Status FaultInjectingLogStore::CompactPrefix(raft::Index through) {
  if (std::optional<absl::Status> fault = TakeWriteFault()) return *fault;
  return wrapped_->CompactPrefix(through);
}

absl::Status FaultInjectingLogStore::ResetToSnapshot(raft::Index index,
                                                     raft::Term term) {
  if (std::optional<absl::Status> fault = TakeWriteFault()) return *fault;
  return wrapped_->ResetToSnapshot(index, term);
}

bool FaultInjectingLogStore::RetainsEntry(const raft::Entry& entry) const {
  return wrapped_->RetainsEntry(entry);
}

absl::StatusOr<std::string> FaultInjectingLogStore::ReadEntryData(
    raft::Index index) const {
  if (std::optional<absl::Status> fault = ReadFault()) return *fault;
  return wrapped_->ReadEntryData(index);
}

absl::StatusOr<std::vector<raft::Index>>
FaultInjectingLogStore::RetainedIndexes(raft::Index after, size_t limit) const {
  return wrapped_->RetainedIndexes(after, limit);
}

absl::Status FaultInjectingLogStore::DropRetained(
    std::vector<raft::Index> indexes) {
  if (std::optional<absl::Status> fault = TakeWriteFault()) return *fault;
  return wrapped_->DropRetained(std::move(indexes));
}

}  // namespace confman
