// What every LogStore shares (log_store.h): WriteSync over Write, and the
// EntryArchive default for stores that keep no entries by index.
#include "confman/log_store.h"

#include <future>

#include "absl/strings/str_cat.h"
#include "confman/entry_archive.h"

namespace confman {

absl::StatusOr<std::string> EntryArchive::ReadEntryData(
    raft::Index index) const {
  return absl::NotFoundError(absl::StrCat(
      "log entry ", index,
      " is not stored: this store keeps no entries "
      "readable by index; read the value from the state machine instead"));
}

absl::Status LogStore::WriteSync(LogWrite write) {
  std::promise<absl::Status> durable;
  std::future<absl::Status> result = durable.get_future();
  Write(std::move(write),
        [&durable](absl::Status status) { durable.set_value(std::move(status)); });
  return result.get();
}

}  // namespace confman
