#include "fault_store.h"

#include <thread>
#include <utility>

namespace confman::fault {

absl::StatusOr<std::unique_ptr<HarnessLogStore>> HarnessLogStore::Open(
    const std::string& dir, uint64_t retain_entries_from_bytes) {
  absl::StatusOr<std::unique_ptr<LmdbLogStore>> base = LmdbLogStore::Open(
      {.dir = dir, .retain_entries_from_bytes = retain_entries_from_bytes});
  if (!base.ok()) return base.status();
  return std::unique_ptr<HarnessLogStore>(
      new HarnessLogStore(std::move(*base)));
}

HarnessLogStore::HarnessLogStore(std::unique_ptr<LogStore> base)
    : base_(std::move(base)), faults_(base_.get()) {}

HarnessLogStore::~HarnessLogStore() = default;

void HarnessLogStore::FailNextWrites(int count, absl::Status status) {
  faults_.FailNextWrites(count, std::move(status));
}

void HarnessLogStore::SetWriteDelay(std::chrono::milliseconds delay) {
  write_delay_ms_ = delay.count();
}

raft::Index HarnessLogStore::FirstIndex() const { return faults_.FirstIndex(); }
raft::Index HarnessLogStore::LastIndex() const { return faults_.LastIndex(); }

absl::StatusOr<raft::Term> HarnessLogStore::TermAt(raft::Index index) const {
  return faults_.TermAt(index);
}

absl::StatusOr<std::vector<raft::Entry>> HarnessLogStore::Entries(
    raft::Index lo, raft::Index hi, uint64_t max_bytes) const {
  return faults_.Entries(lo, hi, max_bytes);
}

void HarnessLogStore::Write(LogWrite write, WriteDone done) {
  const auto delay = std::chrono::milliseconds(write_delay_ms_.load());
  if (delay.count() <= 0)
    return faults_.Write(std::move(write), std::move(done));
  // Read at submission: the callback may run while the wrapped store's
  // destructor drains its queue, after this object's other members are gone.
  // A slow disk makes each write take `delay` from its submission; the
  // writes of one group commit share that wait, as they share an fsync.
  // (Sleeping `delay` per write would turn the store into one that takes
  // 1/delay writes a second, and a backlog of thousands of writes.)
  const auto ready = std::chrono::steady_clock::now() + delay;
  faults_.Write(std::move(write),
                [ready, done = std::move(done)](absl::Status status) {
                  std::this_thread::sleep_until(ready);
                  done(std::move(status));
                });
}

absl::StatusOr<raft::HardState> HarnessLogStore::LoadHardState() const {
  return faults_.LoadHardState();
}

absl::Status HarnessLogStore::CompactPrefix(raft::Index through) {
  return faults_.CompactPrefix(through);
}

absl::Status HarnessLogStore::ResetToSnapshot(raft::Index index,
                                              raft::Term term) {
  return faults_.ResetToSnapshot(index, term);
}

bool HarnessLogStore::RetainsEntry(const raft::Entry& entry) const {
  return faults_.RetainsEntry(entry);
}

absl::StatusOr<std::string> HarnessLogStore::ReadEntryData(
    raft::Index index) const {
  return faults_.ReadEntryData(index);
}

absl::StatusOr<std::vector<raft::Index>> HarnessLogStore::RetainedIndexes(
    raft::Index after, size_t limit) const {
  return faults_.RetainedIndexes(after, limit);
}

absl::Status HarnessLogStore::DropRetained(std::vector<raft::Index> indexes) {
  return faults_.DropRetained(std::move(indexes));
}

}  // namespace confman::fault
