// confman::EntryArchive — read access to Raft log entries that outlive the
// log.
//
// A large config value arrives inside a log entry that every member has
// already written durably. Copying it again into the state machine doubles
// the disk traffic of every write. Instead, a log store may *retain* large
// entries after compaction or a snapshot reset, and a state machine may store
// a reference to the entry (its index) in place of the value. The retained
// entry is dropped only when the state machine no longer references it
// (LogStore::DropRetained), so each value is written to disk once per member.
//
// Thread safety: every method may be called from any thread, concurrently
// with the store's writes.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "confman/raft/types.h"

namespace confman {

class EntryArchive {
 public:
  virtual ~EntryArchive() = default;

  // True if the store keeps `entry` once it leaves the log (by compaction or
  // a snapshot reset) until DropRetained removes it. The answer depends on
  // the entry alone and on options fixed when the store was opened, so it
  // is the same every time it is asked about the same entry. Default: never.
  virtual bool RetainsEntry(const raft::Entry& entry) const {
    (void)entry;
    return false;
  }

  // The data of stored entry `index`, its checksum verified: an entry of
  // the log or a retained one below it. NotFound if the store holds no entry
  // at `index` (never retained, or dropped); DataLoss on a checksum
  // mismatch; Internal for an I/O error.
  [[nodiscard]] virtual absl::StatusOr<std::string> ReadEntryData(raft::Index index) const;
};

}  // namespace confman
