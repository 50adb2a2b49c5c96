// The config store's record layouts (records.h): key records, changes and
// the metadata row, plus reading a value back from the log entry that holds
// it, checked against the record that points there.
#include "records.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/bytes.h"
#include "confman/status_macros.h"
#include "kv_backend.h"

namespace confman::kv {
namespace {

using common::AppendBytes;
using common::AppendU64;
using common::RecordReader;

constexpr std::string_view kRevisionKey = "revision";
constexpr std::string_view kCompactedKey = "compacted";
constexpr std::string_view kMembershipKey = "membership";
// Absent in stores written before sessions existed: no clock, no sessions.
constexpr std::string_view kSessionsKey = "sessions";

[[nodiscard]] absl::Status Corrupt(std::string_view what) {
  return absl::DataLossError(absl::StrCat(
      "the config store's ", common::ToAbsl(what),
      " record is corrupt; restore this member from a peer snapshot"));
}

[[nodiscard]] absl::StatusOr<std::optional<RecordReader>> ReadMeta(
    const TableReader& reader, std::string_view key) {
  CONFMAN_ASSIGN_OR_RETURN(std::optional<std::string_view> stored,
                           reader.Get(Table::kMeta, key));
  if (!stored) return std::optional<RecordReader>();
  return std::optional<RecordReader>(RecordReader(*stored));
}

}  // namespace

std::string KeysTableKey(std::string_view ns, std::string_view key) {
  std::string out;
  out.reserve(ns.size() + 1 + key.size());
  out.append(ns);
  out.push_back('\0');
  out.append(key);
  return out;
}

std::string DescribeTableKey(std::string_view table_key) {
  const size_t nul = table_key.find('\0');
  if (nul == std::string_view::npos) {
    // Not a KeysTableKey result; still printed without raw bytes.
    return absl::StrCat("table key \"",
                        absl::CEscape(common::ToAbsl(table_key)), "\"");
  }
  return absl::StrCat(
      "namespace \"", absl::CEscape(common::ToAbsl(table_key.substr(0, nul))),
      "\", key \"", absl::CEscape(common::ToAbsl(table_key.substr(nul + 1))),
      "\"");
}

std::string EncodeKeyRecordHead(const KeyRecord& r) {
  std::string out;
  AppendU64(out, r.create_revision);
  AppendU64(out, r.mod_revision);
  AppendU64(out, r.version);
  out.push_back(static_cast<char>(r.encoding));
  AppendU64(out, r.raw_size);
  AppendBytes(out, r.content_type);
  AppendU64(out, r.value_log_index);
  AppendU64(out, r.stored_bytes);
  return out;
}

[[nodiscard]] absl::StatusOr<KeyRecord> DecodeKeyRecord(
    std::string_view stored) {
  RecordReader in(stored);
  KeyRecord r;
  r.create_revision = in.U64();
  r.mod_revision = in.U64();
  r.version = in.U64();
  const uint8_t encoding = in.U8();
  r.raw_size = in.U64();
  r.content_type = in.Bytes();
  r.value_log_index = in.U64();
  r.stored_bytes = in.U64();
  r.stored_value = in.Rest();
  const uint64_t inline_bytes = r.value_log_index == 0 ? r.stored_bytes : 0;
  if (!in.ok() || encoding > static_cast<uint8_t>(ValueEncoding::kZstd) ||
      r.stored_value.size() != inline_bytes) {
    return Corrupt("key");
  }
  r.encoding = static_cast<ValueEncoding>(encoding);
  return r;
}

[[nodiscard]] absl::StatusOr<LoggedValue> ReadLoggedValue(
    const EntryArchive* archive, const KeyRecord& record,
    std::string_view table_key) {
  if (archive == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the value of ", DescribeTableKey(table_key), " is kept in log entry ",
        record.value_log_index,
        " but the config store was opened without "
        "its log; open it with KvStateMachineOptions.value_archive"));
  }
  LoggedValue out;
  CONFMAN_ASSIGN_OR_RETURN(out.entry_data,
                           archive->ReadEntryData(record.value_log_index));
  absl::StatusOr<CommandView> command = DecodeCommand(out.entry_data);
  if (!command.ok() || command->kind != Command::Kind::kPut ||
      KeysTableKey(command->ns, command->key) != table_key ||
      command->stored_value.size() != record.stored_bytes) {
    return absl::DataLossError(absl::StrCat(
        "log entry ", record.value_log_index, " is not the put of ",
        DescribeTableKey(table_key),
        " that the config store refers to; the "
        "store is damaged: restore this member from a peer snapshot"));
  }
  out.stored = command->stored_value;
  return out;
}

std::string EncodeChange(const Change& c) {
  std::string out;
  out.push_back(static_cast<char>(c.op));
  AppendU64(out, c.old_revision);
  AppendU64(out, c.new_revision);
  AppendU64(out, static_cast<uint64_t>(c.time_unix_micros));
  AppendBytes(out, c.ns);
  AppendBytes(out, c.key);
  AppendBytes(out, c.actor);
  return out;
}

[[nodiscard]] absl::StatusOr<Change> DecodeChange(uint64_t revision,
                                                  std::string_view stored) {
  RecordReader in(stored);
  Change c;
  c.revision = revision;
  const uint8_t op = in.U8();
  c.old_revision = in.U64();
  c.new_revision = in.U64();
  c.time_unix_micros = static_cast<int64_t>(in.U64());
  c.ns = std::string(in.Bytes());
  c.key = std::string(in.Bytes());
  c.actor = std::string(in.Bytes());
  if (!in.done() || op > static_cast<uint8_t>(ChangeOp::kDelete)) {
    return Corrupt("change history");
  }
  c.op = static_cast<ChangeOp>(op);
  return c;
}

[[nodiscard]] absl::StatusOr<MetaState> LoadMeta(const TableReader& reader) {
  MetaState meta;
  CONFMAN_ASSIGN_OR_RETURN(auto applied, ReadMeta(reader, kAppliedMetaKey));
  if (applied) {
    meta.applied_index = applied->U64();
    meta.applied_term = applied->U64();
    if (!applied->done()) return Corrupt("applied index");
  }
  CONFMAN_ASSIGN_OR_RETURN(auto revision, ReadMeta(reader, kRevisionKey));
  if (revision) {
    meta.revision = revision->U64();
    if (!revision->done()) return Corrupt("revision");
  }
  CONFMAN_ASSIGN_OR_RETURN(auto compacted, ReadMeta(reader, kCompactedKey));
  if (compacted) {
    meta.compacted_through = compacted->U64();
    if (!compacted->done()) return Corrupt("history compaction");
  }
  CONFMAN_ASSIGN_OR_RETURN(auto membership, ReadMeta(reader, kMembershipKey));
  if (membership) {
    meta.membership_index = membership->U64();
    meta.membership = std::string(membership->Rest());
    if (!membership->ok()) return Corrupt("membership");
  }
  CONFMAN_ASSIGN_OR_RETURN(auto sessions, ReadMeta(reader, kSessionsKey));
  if (sessions) {
    meta.clock = static_cast<int64_t>(sessions->U64());
    meta.session_watermark = static_cast<int64_t>(sessions->U64());
    meta.session_count = sessions->U64();
    if (!sessions->done()) return Corrupt("session table summary");
  }
  return meta;
}

[[nodiscard]] absl::Status SaveMeta(TableWriter& writer,
                                    const MetaState& meta) {
  std::string applied, revision, compacted, membership_index;
  AppendU64(applied, meta.applied_index);
  AppendU64(applied, meta.applied_term);
  AppendU64(revision, meta.revision);
  AppendU64(compacted, meta.compacted_through);
  AppendU64(membership_index, meta.membership_index);
  CONFMAN_RETURN_IF_ERROR(writer.Put(Table::kMeta, kAppliedMetaKey, {applied}));
  CONFMAN_RETURN_IF_ERROR(writer.Put(Table::kMeta, kRevisionKey, {revision}));
  CONFMAN_RETURN_IF_ERROR(writer.Put(Table::kMeta, kCompactedKey, {compacted}));
  if (meta.clock != kNoTime || meta.session_count != 0 ||
      meta.session_watermark != kNoTime) {
    std::string sessions;
    AppendU64(sessions, static_cast<uint64_t>(meta.clock));
    AppendU64(sessions, static_cast<uint64_t>(meta.session_watermark));
    AppendU64(sessions, meta.session_count);
    CONFMAN_RETURN_IF_ERROR(writer.Put(Table::kMeta, kSessionsKey, {sessions}));
  }
  if (meta.membership_index == 0) return absl::OkStatus();
  return writer.Put(Table::kMeta, kMembershipKey,
                    {membership_index, meta.membership});
}

[[nodiscard]] absl::StatusOr<raft::Index> DecodeAppliedIndex(
    std::string_view stored) {
  RecordReader in(stored);
  const raft::Index index = in.U64();
  in.U64();
  if (!in.done()) return Corrupt("applied index");
  return index;
}

}  // namespace confman::kv
