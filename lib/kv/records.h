// How the config store lays out its records in the backend tables.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "confman/entry_archive.h"
#include "confman/kv/command.h"
#include "confman/kv/model.h"
#include "confman/raft/types.h"

namespace confman::kv {

// The kKeys table's key for ns/key: the namespace, a NUL, the key
// (namespaces hold no NUL, so a namespace's keys are one contiguous, ordered
// range). Not for messages, which would print the NUL: use DescribeTableKey.
std::string KeysTableKey(std::string_view ns, std::string_view key);

// How an error message names the key a KeysTableKey result stands for:
// namespace "ns", key "k", with unprintable bytes of either escaped.
std::string DescribeTableKey(std::string_view table_key);

// A kKeys value: metadata, then the value bytes as stored.
struct KeyRecord {
  uint64_t create_revision = 0;
  uint64_t mod_revision = 0;
  uint64_t version = 0;
  ValueEncoding encoding = ValueEncoding::kRaw;
  uint64_t raw_size = 0;
  std::string_view content_type;
  // Non-zero when the value was left in the Raft log entry at this index
  // (entry_archive.h) instead of being copied here; stored_value is then
  // empty and the value is read back from that entry's command.
  raft::Index value_log_index = 0;
  // Size of the value as stored (after compression), wherever it lives.
  uint64_t stored_bytes = 0;
  std::string_view stored_value;
};
// The record without its value (the value is written as a second part, or
// not at all when it stays in the log).
std::string EncodeKeyRecordHead(const KeyRecord& record);
[[nodiscard]] absl::StatusOr<KeyRecord> DecodeKeyRecord(
    std::string_view stored);

// kChanges key: the big-endian revision. Value: the rest of the Change.
std::string EncodeChange(const Change& change);
[[nodiscard]] absl::StatusOr<Change> DecodeChange(uint64_t revision,
                                                  std::string_view stored);

// A time stamp before every real one.
inline constexpr int64_t kNoTime = INT64_MIN;

// Everything in kMeta, read and written as a whole by each apply batch.
struct MetaState {
  raft::Index applied_index = 0;
  raft::Term applied_term = 0;
  uint64_t revision = 0;
  uint64_t compacted_through = 0;  // History at or below is gone.
  raft::Index membership_index = 0;
  std::string membership;  // raft::EncodeMembership bytes; empty if none.

  // Exactly-once sessions (sessions.h). kNoTime until set.
  // The store clock: the largest time_unix_micros of any applied command.
  // Entries alone move it, so it is the same on every member.
  int64_t clock = kNoTime;
  // The latest last-activity time of any client evicted for count: a write
  // stamped at or before it may have been applied under a forgotten record.
  int64_t session_watermark = kNoTime;
  uint64_t session_count = 0;  // Client records in Table::kSessions.
};

// A value left in the log, read back: the entry's bytes and, inside them,
// the value as stored (compressed if the record says so).
struct LoggedValue {
  std::string entry_data;
  std::string_view stored;
};
// Reads the value of `record` (value_log_index != 0), stored under
// `table_key`, from the
// log entry it names, checking that the entry is that key's put of that
// size. NotFound if the log no longer holds the entry (the key changed
// since the record was read: read it again); DataLoss if the entry is not
// the put the record describes; FailedPrecondition without an archive.
[[nodiscard]] absl::StatusOr<LoggedValue> ReadLoggedValue(
    const EntryArchive* archive, const KeyRecord& record,
    std::string_view table_key);

class TableReader;
class TableWriter;
[[nodiscard]] absl::StatusOr<MetaState> LoadMeta(const TableReader& reader);
[[nodiscard]] absl::Status SaveMeta(TableWriter& writer, const MetaState& meta);

// The kMeta key holding the applied index and term (checked by restores).
inline constexpr std::string_view kAppliedMetaKey = "applied";
[[nodiscard]] absl::StatusOr<raft::Index> DecodeAppliedIndex(
    std::string_view stored);

}  // namespace confman::kv
