#include <mutex>

#include "confman/log_store.h"
#include "confman/raft/memory_log.h"

namespace confman {

struct MemoryLogStore::State {
  mutable std::mutex mu;
  raft::MemoryLog log;  // Guarded by mu.
};

MemoryLogStore::MemoryLogStore() : state_(std::make_unique<State>()) {}
MemoryLogStore::~MemoryLogStore() = default;

raft::Index MemoryLogStore::FirstIndex() const {
  std::lock_guard lock(state_->mu);
  return state_->log.FirstIndex();
}

raft::Index MemoryLogStore::LastIndex() const {
  std::lock_guard lock(state_->mu);
  return state_->log.LastIndex();
}

absl::StatusOr<raft::Term> MemoryLogStore::TermAt(raft::Index index) const {
  std::lock_guard lock(state_->mu);
  return state_->log.TermAt(index);
}

absl::StatusOr<std::vector<raft::Entry>> MemoryLogStore::Entries(
    raft::Index lo, raft::Index hi, uint64_t max_bytes) const {
  std::lock_guard lock(state_->mu);
  return state_->log.Entries(lo, hi, max_bytes);
}

void MemoryLogStore::Write(LogWrite write, WriteDone done) {
  absl::Status status;
  {
    std::lock_guard lock(state_->mu);
    status = state_->log.Append(write.entries);
    if (status.ok() && write.hard_state) {
      state_->log.set_hard_state(*write.hard_state);
    }
  }
  done(std::move(status));
}

absl::StatusOr<raft::HardState> MemoryLogStore::LoadHardState() const {
  std::lock_guard lock(state_->mu);
  return state_->log.hard_state();
}

absl::Status MemoryLogStore::CompactPrefix(raft::Index through) {
  std::lock_guard lock(state_->mu);
  return state_->log.Compact(through);
}

absl::Status MemoryLogStore::ResetToSnapshot(raft::Index index, raft::Term term) {
  std::lock_guard lock(state_->mu);
  state_->log.ResetToSnapshot(index, term);
  return absl::OkStatus();
}

}  // namespace confman
