// MemoryLogStore (storage/memory.h): raft::MemoryLog behind a mutex, plus
// the retained entries below the log, for tests and in-memory nodes.
#include <map>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "confman/raft/memory_log.h"
#include "confman/storage/memory.h"

namespace confman {

struct MemoryLogStore::State {
  explicit State(uint64_t retain_from)
      : retain_entries_from_bytes(retain_from) {}

  const uint64_t retain_entries_from_bytes;
  mutable std::mutex mu;
  raft::MemoryLog log;  // Guarded by mu.
  // Entries kept after they left `log`, all below log.FirstIndex().
  std::map<raft::Index, raft::Entry> retained;  // Guarded by mu.

  bool Retains(const raft::Entry& entry) const {
    return retain_entries_from_bytes > 0 &&
           entry.type == raft::EntryType::kNormal &&
           entry.data.size() >= retain_entries_from_bytes;
  }

  // Copies the retained kind of log entries [log.FirstIndex(), through]
  // aside, one at a time, before the log drops them. Requires mu.
  void RetainThrough(raft::Index through) {
    const raft::Index last = std::min(through, log.LastIndex());
    for (raft::Index i = log.FirstIndex(); i <= last; ++i) {
      absl::StatusOr<std::vector<raft::Entry>> one = log.Entries(i, i + 1, 0);
      if (one.ok() && Retains(one->front()))
        retained[i] = std::move(one->front());
    }
  }
};

MemoryLogStore::MemoryLogStore(uint64_t retain_entries_from_bytes)
    : state_(std::make_unique<State>(retain_entries_from_bytes)) {}
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
    // Checked against the log after the reset, before changing anything.
    raft::MemoryLog after_reset;
    const raft::MemoryLog* target = &state_->log;
    if (write.reset) {
      after_reset.ResetToSnapshot(write.reset->index, write.reset->term);
      target = &after_reset;
    }
    status = target->CheckAppend(write.entries);
    if (status.ok() && write.reset) {
      ResetLocked(write.reset->index, write.reset->term);
    }
    if (status.ok()) status = state_->log.Append(write.entries);
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
  if (through > state_->log.LastIndex()) return state_->log.Compact(through);
  state_->RetainThrough(through);
  return state_->log.Compact(through);
}

absl::Status MemoryLogStore::ResetToSnapshot(raft::Index index,
                                             raft::Term term) {
  std::lock_guard lock(state_->mu);
  ResetLocked(index, term);
  return absl::OkStatus();
}

void MemoryLogStore::ResetLocked(raft::Index index, raft::Term term) {
  state_->retained.erase(state_->retained.upper_bound(index),
                         state_->retained.end());
  state_->RetainThrough(index);
  state_->log.ResetToSnapshot(index, term);
}

bool MemoryLogStore::RetainsEntry(const raft::Entry& entry) const {
  return state_->Retains(entry);
}

absl::StatusOr<std::string> MemoryLogStore::ReadEntryData(
    raft::Index index) const {
  std::lock_guard lock(state_->mu);
  const raft::MemoryLog& log = state_->log;
  if (index >= log.FirstIndex() && index <= log.LastIndex()) {
    absl::StatusOr<std::vector<raft::Entry>> one =
        log.Entries(index, index + 1, 0);
    if (!one.ok()) return one.status();
    return std::move(one->front().data).Release();
  }
  auto it = state_->retained.find(index);
  if (it == state_->retained.end()) {
    return absl::NotFoundError(
        absl::StrCat("log entry ", index,
                     " is not stored (dropped, or never retained); "
                     "its value must come from a snapshot"));
  }
  return std::string(it->second.data.view());
}

absl::StatusOr<std::vector<raft::Index>> MemoryLogStore::RetainedIndexes(
    raft::Index after, size_t limit) const {
  std::lock_guard lock(state_->mu);
  std::vector<raft::Index> indexes;
  for (auto it = state_->retained.upper_bound(after);
       it != state_->retained.end() && indexes.size() < limit; ++it) {
    indexes.push_back(it->first);
  }
  return indexes;
}

absl::Status MemoryLogStore::DropRetained(std::vector<raft::Index> indexes) {
  std::lock_guard lock(state_->mu);
  for (raft::Index index : indexes) state_->retained.erase(index);
  return absl::OkStatus();
}

}  // namespace confman
