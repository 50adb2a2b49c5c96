// KvStateMachine (kv/kv_state_machine.h): applies config commands to a
// backend (LMDB or memory) and serves reads from consistent versions.
//
// What every apply batch keeps, inside one backend transaction:
//  - the applied index and term in kMeta advance with the data they cover,
//    so a restart neither re-applies nor skips an entry;
//  - a key's record, its kValueRefs row (when its value stays in the log)
//    and its history row change together, and the revision moves once per
//    change;
//  - outcomes depend on the entries alone (no local clock, no local
//    state), so every member computes the same results and may acknowledge
//    them before its own commit (ResultsKnown).
// Readers never block Apply: each read opens a read view of the backend and
// sees one committed version.
#include "confman/kv/kv_state_machine.h"

#include <atomic>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "common/bytes.h"
#include "confman/kv/command.h"
#include "confman/raft/membership.h"
#include "confman/status_macros.h"
#include "kv_backend.h"
#include "records.h"
#include "sessions.h"
#include "snapshot_stream.h"

namespace confman::kv {
namespace {

using common::ToAbsl;

// Largest page List and Changes serve: it bounds one read's memory.
constexpr uint32_t kMaxPageLimit = 10000;
// Room for a key record's metadata and content type next to its value.
constexpr uint64_t kRecordOverheadBytes = 4096;

// An entry's own, deterministic outcome (see ApplyResult); never a failure
// of the store.
ApplyResult Outcome(raft::Index index, absl::Status outcome,
                    uint64_t revision = 0) {
  return ApplyResult{
      .index = index, .outcome = std::move(outcome), .revision = revision};
}

// How messages name a key: "ns/key".
std::string DisplayName(std::string_view ns, std::string_view key) {
  return absl::StrCat(ToAbsl(ns), "/", ToAbsl(key));
}

// FlatBuffers verification requires aligned input. Entry data normally is
// (heap strings are), but the outcome must not depend on where the bytes
// happen to sit, so misaligned input is copied first.
std::string_view Aligned(std::string_view data, std::string& copy) {
  if (reinterpret_cast<uintptr_t>(data.data()) % alignof(std::max_align_t) ==
      0) {
    return data;
  }
  copy.reserve(data.size() + 32);  // Forces heap (aligned) storage.
  copy.assign(data);
  return copy;
}

// One apply batch's view: the writer plus the metadata it advances.
struct Batch {
  TableWriter& writer;
  MetaState& meta;
  const KvStateMachineOptions& options;
  const SessionLimits& sessions;
};

SessionLimits ToSessionLimits(const KvStateMachineOptions& options) {
  return SessionLimits{
      .max_sessions = options.max_sessions,
      .ttl_micros = options.session_ttl.count(),
      .max_results_per_client = options.max_results_per_client};
}

// Inside Apply `reader` is the batch's writer, so an entry sees what the
// entries before it in the same batch changed.
[[nodiscard]] absl::StatusOr<std::optional<KeyRecord>> LoadKey(
    const TableReader& reader, std::string_view table_key) {
  CONFMAN_ASSIGN_OR_RETURN(std::optional<std::string_view> stored,
                           reader.Get(Table::kKeys, table_key));
  if (!stored) return std::optional<KeyRecord>();
  CONFMAN_ASSIGN_OR_RETURN(KeyRecord record, DecodeKeyRecord(*stored));
  return std::optional<KeyRecord>(record);
}

// Drops the oldest changes beyond the retention bound.
// Done by the apply that crosses the bound, so every member drops the same
// revisions at the same index and their history pages agree.
[[nodiscard]] absl::Status TrimHistory(Batch& batch) {
  MetaState& meta = batch.meta;
  while (meta.revision - meta.compacted_through >
         batch.options.history_retention) {
    ++meta.compacted_through;
    CONFMAN_RETURN_IF_ERROR(batch.writer.Delete(
        Table::kChanges, common::BigEndianKey(meta.compacted_through)));
  }
  return absl::OkStatus();
}

// Every change gets a history row at its revision, in the transaction that
// changes the key: a watch resuming after revision r sees every later
// change and no earlier one.
[[nodiscard]] absl::Status RecordChange(Batch& batch,
                                        const CommandView& command, ChangeOp op,
                                        uint64_t old_revision,
                                        uint64_t new_revision) {
  const Change change{.revision = batch.meta.revision,
                      .op = op,
                      .ns = std::string(command.ns),
                      .key = std::string(command.key),
                      .old_revision = old_revision,
                      .new_revision = new_revision,
                      .actor = std::string(command.actor),
                      .time_unix_micros = command.time_unix_micros};
  CONFMAN_RETURN_IF_ERROR(
      batch.writer.Put(Table::kChanges, common::BigEndianKey(change.revision),
                       {EncodeChange(change)}));
  return TrimHistory(batch);
}

// The compare-and-set check; an OK status if the command may proceed.
// An absent key counts as revision 0, so expecting 0 means "create only".
[[nodiscard]] absl::Status CheckExpectedRevision(
    const CommandView& command, const std::optional<KeyRecord>& current) {
  if (!command.expected_revision) return absl::OkStatus();
  const uint64_t actual = current ? current->mod_revision : 0;
  if (actual == *command.expected_revision) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "revision conflict on ", DisplayName(command.ns, command.key),
      ": expected revision ", *command.expected_revision, ", found ", actual,
      actual == 0 ? " (absent)" : "", "; re-read the key and retry"));
}

// Keeps kValueRefs in step with a key's record: drops the reference the old
// record held and adds the new record's.
// kValueRefs is what ReferencedLogEntries reports, and an entry missing
// there may be dropped from the log: a reference is added in the
// transaction that writes the record needing it, and removed only with the
// record that held it.
[[nodiscard]] absl::Status ReplaceValueRef(Batch& batch,
                                           const std::optional<KeyRecord>& old,
                                           raft::Index new_log_index,
                                           std::string_view table_key) {
  if (old && old->value_log_index != 0) {
    CONFMAN_RETURN_IF_ERROR(batch.writer.Delete(
        Table::kValueRefs, common::BigEndianKey(old->value_log_index)));
  }
  if (new_log_index == 0) return absl::OkStatus();
  return batch.writer.Put(Table::kValueRefs,
                          common::BigEndianKey(new_log_index), {table_key});
}

// `in_log`: the log retains this entry, so the value stays there.
[[nodiscard]] absl::StatusOr<ApplyResult> ApplyPut(Batch& batch,
                                                   raft::Index index,
                                                   const CommandView& command,
                                                   bool in_log) {
  // Too large a value is this entry's outcome: the index still advances.
  if (command.raw_size > batch.options.max_value_bytes) {
    return Outcome(index,
                   absl::InvalidArgumentError(absl::StrCat(
                       "the value for ", DisplayName(command.ns, command.key),
                       " is ", command.raw_size,
                       " bytes; the store's "
                       "limit is ",
                       batch.options.max_value_bytes)));
  }
  const std::string table_key = KeysTableKey(command.ns, command.key);
  CONFMAN_ASSIGN_OR_RETURN(std::optional<KeyRecord> current,
                           LoadKey(batch.writer, table_key));
  if (absl::Status check = CheckExpectedRevision(command, current);
      !check.ok()) {
    return Outcome(index, std::move(check));
  }
  // create_revision and version carry over from the current record; a key
  // deleted and put again starts over. A value left in the log is not
  // copied: the record keeps the entry's index and the stored size.
  const uint64_t revision = ++batch.meta.revision;
  const KeyRecord record{
      .create_revision = current ? current->create_revision : revision,
      .mod_revision = revision,
      .version = current ? current->version + 1 : 1,
      .encoding = command.encoding,
      .raw_size = command.raw_size,
      .content_type = command.content_type,
      .value_log_index = in_log ? index : 0,
      .stored_bytes = command.stored_value.size(),
      .stored_value = in_log ? std::string_view() : command.stored_value};
  CONFMAN_RETURN_IF_ERROR(
      batch.writer.Put(Table::kKeys, table_key,
                       {EncodeKeyRecordHead(record), record.stored_value}));
  CONFMAN_RETURN_IF_ERROR(
      ReplaceValueRef(batch, current, record.value_log_index, table_key));
  CONFMAN_RETURN_IF_ERROR(RecordChange(batch, command, ChangeOp::kPut,
                                       current ? current->mod_revision : 0,
                                       revision));
  return Outcome(index, absl::OkStatus(), revision);
}

[[nodiscard]] absl::StatusOr<ApplyResult> ApplyDelete(
    Batch& batch, raft::Index index, const CommandView& command) {
  const std::string table_key = KeysTableKey(command.ns, command.key);
  CONFMAN_ASSIGN_OR_RETURN(std::optional<KeyRecord> current,
                           LoadKey(batch.writer, table_key));
  if (absl::Status check = CheckExpectedRevision(command, current);
      !check.ok()) {
    return Outcome(index, std::move(check));
  }
  // Deleting an absent key changes nothing and takes no revision:
  // revisions count changes, not commands.
  if (!current) {
    return Outcome(index,
                   absl::NotFoundError(absl::StrCat(
                       "cannot delete ", DisplayName(command.ns, command.key),
                       ": no such key")));
  }
  const uint64_t revision = ++batch.meta.revision;
  CONFMAN_RETURN_IF_ERROR(batch.writer.Delete(Table::kKeys, table_key));
  CONFMAN_RETURN_IF_ERROR(ReplaceValueRef(batch, current, 0, table_key));
  CONFMAN_RETURN_IF_ERROR(RecordChange(batch, command, ChangeOp::kDelete,
                                       current->mod_revision, 0));
  return Outcome(index, absl::OkStatus(), revision);
}

[[nodiscard]] absl::StatusOr<ApplyResult> ApplyCompact(
    Batch& batch, raft::Index index, const CommandView& command) {
  // History is compacted by a replicated command, never by a local
  // decision, so every member keeps the same window; never past the
  // current revision.
  MetaState& meta = batch.meta;
  const uint64_t through = std::min(command.compact_through, meta.revision);
  while (meta.compacted_through < through) {
    ++meta.compacted_through;
    CONFMAN_RETURN_IF_ERROR(batch.writer.Delete(
        Table::kChanges, common::BigEndianKey(meta.compacted_through)));
  }
  return Outcome(index, absl::OkStatus());
}

[[nodiscard]] absl::StatusOr<ApplyResult> ApplyCommand(
    Batch& batch, const raft::Entry& entry) {
  std::string copy;
  // Undecodable bytes are the entry's outcome (InvalidArgument): every
  // member holds the same bytes, so every member refuses them alike.
  absl::StatusOr<CommandView> command =
      DecodeCommand(Aligned(entry.data, copy));
  if (!command.ok()) return Outcome(entry.index, command.status());
  // Every decoded command's stamp reaches the store clock, before the
  // session check and whatever the outcome: the clock is a function of the
  // entries seen, not of what they did.
  CONFMAN_RETURN_IF_ERROR(AdvanceSessionClock(
      batch.writer, batch.meta, command->time_unix_micros, batch.sessions));
  if (command->client_id != 0) {
    CONFMAN_ASSIGN_OR_RETURN(std::optional<ApplyResult> answered,
                             CheckSession(batch.writer, batch.meta, entry.index,
                                          *command, batch.sessions));
    if (answered) return *std::move(answered);
  }
  absl::StatusOr<ApplyResult> result;
  switch (command->kind) {
    // Whether a put's value stays in the log depends on RetainsEntry, a
    // function of the entry alone: every member with the same retention
    // setting decides alike.
    case Command::Kind::kPut:
      result = ApplyPut(batch, entry.index, *command,
                        batch.options.value_archive != nullptr &&
                            batch.options.value_archive->RetainsEntry(entry));
      break;
    case Command::Kind::kDelete:
      result = ApplyDelete(batch, entry.index, *command);
      break;
    case Command::Kind::kCompactHistory:
      result = ApplyCompact(batch, entry.index, *command);
      break;
    default:
      result = Outcome(entry.index,
                       absl::InvalidArgumentError("unknown command kind"));
  }
  // Recorded only once the command ran; a duplicate answered above returned
  // its first outcome without recording it again.
  if (result.ok() && command->client_id != 0) {
    CONFMAN_RETURN_IF_ERROR(RecordSession(batch.writer, batch.meta, *command,
                                          *result, batch.sessions));
  }
  return result;
}

[[nodiscard]] absl::StatusOr<ApplyResult> ApplyEntry(Batch& batch,
                                                     const raft::Entry& entry) {
  absl::StatusOr<ApplyResult> result = Outcome(entry.index, absl::OkStatus());
  switch (entry.type) {
    case raft::EntryType::kNoop:
      break;
    // Recorded although the core already acts on it: the state is what a
    // restart and a snapshot recover the configuration from.
    case raft::EntryType::kMembership:
      if (absl::StatusOr<raft::Membership> m =
              raft::DecodeMembership(entry.data);
          !m.ok()) {
        result = Outcome(entry.index, m.status());
      } else {
        batch.meta.membership = std::string(entry.data.view());
        batch.meta.membership_index = entry.index;
      }
      break;
    case raft::EntryType::kNormal:
      result = ApplyCommand(batch, entry);
      break;
  }
  // A storage error (not an outcome) fails the whole batch, which then
  // commits nothing.
  if (result.ok()) {
    batch.meta.applied_index = entry.index;
    batch.meta.applied_term = entry.term;
  }
  return result;
}

// A stored membership that does not decode is DataLoss, never read as an
// empty configuration.
[[nodiscard]] absl::StatusOr<AppliedState> ToAppliedState(
    const MetaState& meta) {
  AppliedState state{.applied_index = meta.applied_index,
                     .applied_term = meta.applied_term,
                     .membership = {},
                     .membership_index = meta.membership_index};
  if (!meta.membership.empty()) {
    absl::StatusOr<raft::Membership> membership =
        raft::DecodeMembership(meta.membership);
    if (!membership.ok()) {
      return absl::DataLossError(
          absl::StrCat("the stored membership does not decode (",
                       membership.status().message(),
                       "); restore this member from a peer snapshot"));
    }
    state.membership = *std::move(membership);
  }
  return state;
}

// The decompressed value of `record`, from the record or from the log.
// Aborted if the log dropped the entry since the record was read: the key
// changed meanwhile, and a fresh read sees its new record.
[[nodiscard]] absl::StatusOr<std::string> ReadValue(
    std::string_view table_key, const KeyRecord& record,
    const EntryArchive* archive) {
  if (record.value_log_index == 0) {
    return DecodeValue(record.stored_value, record.encoding, record.raw_size);
  }
  absl::StatusOr<LoggedValue> logged =
      ReadLoggedValue(archive, record, table_key);
  if (absl::IsNotFound(logged.status())) {
    return absl::AbortedError(
        absl::StrCat("the value of ", DescribeTableKey(table_key),
                     " changed while it was being read (",
                     logged.status().message(), "); retry the read"));
  }
  if (!logged.ok()) return logged.status();
  return DecodeValue(logged->stored, record.encoding, record.raw_size);
}

// Reads that find their value gone from the log (Aborted) are retried this
// many times in all; each retry sees a newer version, so only a key
// rewritten continuously can exhaust them.
constexpr int kReadAttempts = 4;

template <typename ReadFn>
auto RetryAborted(ReadFn read) -> decltype(read()) {
  for (int attempt = 1;; ++attempt) {
    auto result = read();
    if (!absl::IsAborted(result.status()) || attempt == kReadAttempts) {
      return result;
    }
  }
}

[[nodiscard]] absl::StatusOr<KeyValue> ToKeyValue(
    std::string_view table_key, const KeyRecord& record, bool with_value,
    const KvStateMachineOptions& options) {
  const size_t nul = table_key.find('\0');
  KeyValue kv{.ns = std::string(table_key.substr(0, nul)),
              .key = std::string(table_key.substr(nul + 1)),
              .value = {},
              .content_type = std::string(record.content_type),
              .create_revision = record.create_revision,
              .mod_revision = record.mod_revision,
              .version = record.version,
              .stored_bytes = record.stored_bytes};
  if (!with_value) return kv;
  // The limit held when the record was applied, so a larger claim is
  // damage: refused before anything is allocated for it.
  if (record.raw_size > options.max_value_bytes) {
    return absl::DataLossError(absl::StrCat(
        "the stored value of ", DisplayName(kv.ns, kv.key), " claims ",
        record.raw_size, " bytes, above the limit; the store is damaged"));
  }
  CONFMAN_ASSIGN_OR_RETURN(kv.value,
                           ReadValue(table_key, record, options.value_archive));
  return kv;
}

[[nodiscard]] absl::Status ValidateList(const ListRequest& request) {
  if (request.ns.empty() || request.ns.size() > kMaxNamespaceBytes ||
      request.ns.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(
        "ListRequest.ns must be a non-empty namespace of at most 64 bytes "
        "without NUL");
  }
  if (request.limit == 0 || request.limit > kMaxPageLimit) {
    return absl::InvalidArgumentError("ListRequest.limit must be 1..10000");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status KvStateMachineOptions::Validate() const {
  if (initial_map_bytes < (uint64_t{1} << 20) ||
      max_map_bytes < initial_map_bytes) {
    return absl::InvalidArgumentError(
        "KvStateMachineOptions: initial_map_bytes must be >= 1 MiB and "
        "<= max_map_bytes");
  }
  if (snapshot_chunk_bytes < 4096 ||
      snapshot_chunk_bytes > (uint64_t{64} << 20)) {
    return absl::InvalidArgumentError(
        "KvStateMachineOptions.snapshot_chunk_bytes must be 4 KiB..64 MiB");
  }
  if (restore_batch_bytes == 0) {
    return absl::InvalidArgumentError(
        "KvStateMachineOptions.restore_batch_bytes must be positive");
  }
  if (history_retention == 0) {
    return absl::InvalidArgumentError(
        "KvStateMachineOptions.history_retention must be at least 1");
  }
  if (max_value_bytes == 0) {
    return absl::InvalidArgumentError(
        "KvStateMachineOptions.max_value_bytes must be positive");
  }
  if (max_sessions < 1 || max_sessions > kMaxSessionsLimit) {
    return absl::InvalidArgumentError(absl::StrCat(
        "KvStateMachineOptions.max_sessions must be 1..", kMaxSessionsLimit));
  }
  if (session_ttl < std::chrono::seconds(1)) {
    return absl::InvalidArgumentError(
        "KvStateMachineOptions.session_ttl must be at least 1 second (it "
        "must outlast a write's retries)");
  }
  if (max_results_per_client < 1 ||
      max_results_per_client > kMaxResultsPerClientLimit) {
    return absl::InvalidArgumentError(
        absl::StrCat("KvStateMachineOptions.max_results_per_client must be 1..",
                     kMaxResultsPerClientLimit));
  }
  return absl::OkStatus();
}

class KvStateMachine::Impl {
 public:
  Impl(const KvStateMachineOptions& options, std::unique_ptr<KvBackend> backend)
      : options_(options), backend_(std::move(backend)) {}

  [[nodiscard]] absl::Status ReloadMeta() {
    CONFMAN_ASSIGN_OR_RETURN(std::unique_ptr<TableReader> reader,
                             backend_->BeginRead());
    CONFMAN_ASSIGN_OR_RETURN(MetaState meta, LoadMeta(*reader));
    Publish(meta);
    return absl::OkStatus();
  }

  [[nodiscard]] absl::StatusOr<std::vector<ApplyResult>> Apply(
      std::vector<raft::Entry> entries, const ResultsKnown& results_known) {
    // Entries at or below the applied index are a replay (a restart, a
    // re-delivered batch) and are skipped.
    const raft::Index applied = applied_index_.load();
    std::erase_if(entries,
                  [&](const raft::Entry& e) { return e.index <= applied; });
    for (size_t i = 0; i < entries.size(); ++i) {
      if (entries[i].index != applied + 1 + i) {
        return absl::InvalidArgumentError(
            absl::StrCat("committed entry ", entries[i].index,
                         " does not follow applied "
                         "index ",
                         applied + i, "; apply entries in order without gaps"));
      }
    }
    if (entries.empty()) return std::vector<ApplyResult>();
    std::vector<ApplyResult> results;
    MetaState meta;
    bool reported = false;
    // The body may run again after the backend grows its map, so results
    // and meta are rebuilt from the transaction each time.
    CONFMAN_RETURN_IF_ERROR(backend_->Update([&](TableWriter& writer) {
      results.clear();
      CONFMAN_ASSIGN_OR_RETURN(meta, LoadMeta(writer));
      Batch batch{writer, meta, options_, sessions_};
      for (const raft::Entry& entry : entries) {
        CONFMAN_ASSIGN_OR_RETURN(ApplyResult result, ApplyEntry(batch, entry));
        results.push_back(std::move(result));
      }
      CONFMAN_RETURN_IF_ERROR(SaveMeta(writer, meta));
      // A rerun after map growth computes the same results again.
      if (results_known && !reported) {
        reported = true;
        results_known(results);
      }
      return absl::OkStatus();
    }));
    // Published after the commit: AppliedIndex and Revision never run
    // ahead of what readers can see.
    Publish(meta);
    return results;
  }

  raft::Index AppliedIndex() const { return applied_index_.load(); }
  [[nodiscard]] absl::Status Sync() { return backend_->Sync(); }
  uint64_t Revision() const { return revision_.load(); }
  int64_t ClockMicros() const { return clock_.load(); }

  [[nodiscard]] absl::StatusOr<AppliedState> CurrentAppliedState() const {
    CONFMAN_ASSIGN_OR_RETURN(std::unique_ptr<TableReader> reader,
                             backend_->BeginRead());
    CONFMAN_ASSIGN_OR_RETURN(MetaState meta, LoadMeta(*reader));
    return ToAppliedState(meta);
  }

  [[nodiscard]] absl::StatusOr<std::unique_ptr<SnapshotSource>> OpenSnapshot()
      const {
    CONFMAN_ASSIGN_OR_RETURN(std::unique_ptr<TableReader> reader,
                             backend_->BeginRead());
    CONFMAN_ASSIGN_OR_RETURN(MetaState meta, LoadMeta(*reader));
    CONFMAN_ASSIGN_OR_RETURN(AppliedState state, ToAppliedState(meta));
    raft::SnapshotMeta snapshot{.index = state.applied_index,
                                .term = state.applied_term,
                                .membership = std::move(state.membership)};
    // Counted before the source exists, uncounted when it is destroyed: the
    // log's sweep must not drop an entry an open source may still stream.
    open_snapshots_->fetch_add(1);
    return NewSnapshotSource(std::move(reader), std::move(snapshot),
                             options_.snapshot_chunk_bytes,
                             options_.value_archive,
                             [open = open_snapshots_] { open->fetch_sub(1); });
  }

  int OpenSnapshotCount() const { return open_snapshots_->load(); }

  [[nodiscard]] absl::StatusOr<std::vector<raft::Index>> ReferencedLogEntries(
      raft::Index lo, raft::Index hi) const {
    // One read view: the list belongs to one version, as
    // LogEntryReferences requires.
    CONFMAN_ASSIGN_OR_RETURN(std::unique_ptr<TableReader> reader,
                             backend_->BeginRead());
    std::vector<raft::Index> out;
    CONFMAN_RETURN_IF_ERROR(reader->Scan(
        Table::kValueRefs, common::BigEndianKey(lo),
        [&](std::string_view key, std::string_view) {
          if (key.size() != 8) return true;
          const raft::Index index = common::GetBigEndian64(key.data());
          if (index > hi) return false;
          out.push_back(index);
          return true;
        }));
    return out;
  }

  [[nodiscard]] absl::StatusOr<std::unique_ptr<SnapshotSink>> BeginRestore(
      const raft::SnapshotMeta& meta) {
    CONFMAN_ASSIGN_OR_RETURN(std::unique_ptr<RestoreTarget> target,
                             backend_->BeginRestore());
    // The sink reloads the published meta once it commits, so AppliedIndex
    // and Revision then describe the restored state.
    return NewSnapshotSink(std::move(target), meta,
                           options_.max_value_bytes + kRecordOverheadBytes,
                           [this] { return ReloadMeta(); });
  }

  [[nodiscard]] absl::StatusOr<KeyValue> Get(std::string_view ns,
                                             std::string_view key) const {
    return RetryAborted([&] { return GetOnce(ns, key); });
  }

  [[nodiscard]] absl::StatusOr<ListPage> List(
      const ListRequest& request) const {
    CONFMAN_RETURN_IF_ERROR(ValidateList(request));
    return RetryAborted([&] { return ListOnce(request); });
  }

  [[nodiscard]] absl::StatusOr<KeyValue> GetOnce(std::string_view ns,
                                                 std::string_view key) const {
    CONFMAN_ASSIGN_OR_RETURN(std::unique_ptr<TableReader> reader,
                             backend_->BeginRead());
    CONFMAN_ASSIGN_OR_RETURN(std::optional<KeyRecord> record,
                             LoadKey(*reader, KeysTableKey(ns, key)));
    if (!record) {
      return absl::NotFoundError(absl::StrCat("no key ", DisplayName(ns, key)));
    }
    reader->WillRead(record->stored_value);
    return ToKeyValue(KeysTableKey(ns, key), *record, true, options_);
  }

  [[nodiscard]] absl::StatusOr<ListPage> ListOnce(
      const ListRequest& request) const {
    CONFMAN_ASSIGN_OR_RETURN(std::unique_ptr<TableReader> reader,
                             backend_->BeginRead());
    CONFMAN_ASSIGN_OR_RETURN(MetaState meta, LoadMeta(*reader));
    // The page carries the revision of the view it was read from, so a
    // caller can watch from exactly there. Keys sit after their namespace
    // and a NUL, so the scan of ns, NUL, prefix stays inside ns.
    ListPage page{.items = {},
                  .more = false,
                  .next_start_after = {},
                  .revision = meta.revision};
    const std::string prefix = KeysTableKey(request.ns, request.prefix);
    const std::string after = KeysTableKey(request.ns, request.start_after);
    const std::string& from = after > prefix ? after : prefix;
    uint64_t bytes = 0;
    absl::Status status;
    CONFMAN_RETURN_IF_ERROR(reader->Scan(
        Table::kKeys, from,
        [&](std::string_view table_key, std::string_view stored) {
          if (table_key.substr(0, prefix.size()) != prefix) return false;
          if (!request.start_after.empty() && table_key == after) return true;
          if (page.items.size() >= request.limit ||
              (!page.items.empty() && bytes >= request.max_bytes)) {
            page.more = true;
            return false;
          }
          absl::StatusOr<KeyValue> item =
              DecodeListed(table_key, stored, request);
          if (!item.ok()) {
            status = item.status();
            return false;
          }
          bytes += item->value.size();
          page.items.push_back(*std::move(item));
          return true;
        }));
    CONFMAN_RETURN_IF_ERROR(status);
    if (page.more) page.next_start_after = page.items.back().key;
    return page;
  }

  [[nodiscard]] absl::StatusOr<ChangePage> Changes(uint64_t after_revision,
                                                   uint32_t limit) const {
    if (limit == 0 || limit > kMaxPageLimit) {
      return absl::InvalidArgumentError("Changes: limit must be 1..10000");
    }
    CONFMAN_ASSIGN_OR_RETURN(std::unique_ptr<TableReader> reader,
                             backend_->BeginRead());
    CONFMAN_ASSIGN_OR_RETURN(MetaState meta, LoadMeta(*reader));
    // Checked against the same view that is then scanned: a page never
    // silently skips compacted changes.
    if (after_revision < meta.compacted_through) {
      return absl::OutOfRangeError(
          absl::StrCat("changes after revision ", after_revision,
                       " were compacted through ", meta.compacted_through,
                       "; re-list the namespace and watch from "
                       "its revision"));
    }
    ChangePage page{.changes = {},
                    .revision = meta.revision,
                    .compacted_through = meta.compacted_through};
    absl::Status status;
    CONFMAN_RETURN_IF_ERROR(reader->Scan(
        Table::kChanges, common::BigEndianKey(after_revision + 1),
        [&](std::string_view key, std::string_view stored) {
          if (page.changes.size() >= limit) return false;
          absl::StatusOr<Change> change = DecodeChange(
              key.size() == 8 ? common::GetBigEndian64(key.data()) : 0, stored);
          if (!change.ok()) {
            status = change.status();
            return false;
          }
          page.changes.push_back(*std::move(change));
          return true;
        }));
    CONFMAN_RETURN_IF_ERROR(status);
    return page;
  }

  uint64_t StorageBytes() const { return backend_->StorageBytes(); }

 private:
  [[nodiscard]] absl::StatusOr<KeyValue> DecodeListed(
      std::string_view table_key, std::string_view stored,
      const ListRequest& request) const {
    CONFMAN_ASSIGN_OR_RETURN(KeyRecord record, DecodeKeyRecord(stored));
    return ToKeyValue(table_key, record, !request.keys_only, options_);
  }

  void Publish(const MetaState& meta) {
    applied_index_.store(meta.applied_index);
    revision_.store(meta.revision);
    clock_.store(meta.clock);
  }

  const KvStateMachineOptions options_;
  const SessionLimits sessions_ = ToSessionLimits(options_);
  std::unique_ptr<KvBackend> backend_;
  // Copies of the last committed meta, for lock-free AppliedIndex/Revision.
  std::atomic<raft::Index> applied_index_{0};
  std::atomic<uint64_t> revision_{0};
  std::atomic<int64_t> clock_{kNoTime};
  // Snapshot sources not yet destroyed; shared with them, as a source may
  // outlive the state machine.
  std::shared_ptr<std::atomic<int>> open_snapshots_ =
      std::make_shared<std::atomic<int>>(0);
};

absl::StatusOr<std::unique_ptr<KvStateMachine>> KvStateMachine::OpenLmdb(
    const KvStateMachineOptions& options) {
  CONFMAN_RETURN_IF_ERROR(options.Validate());
  if (options.dir.empty()) {
    return absl::InvalidArgumentError(
        "KvStateMachineOptions.dir is empty; name the state directory");
  }
  CONFMAN_ASSIGN_OR_RETURN(
      std::unique_ptr<KvBackend> backend,
      OpenLmdbBackend({.dir = options.dir,
                       .initial_map_bytes = options.initial_map_bytes,
                       .max_map_bytes = options.max_map_bytes,
                       .restore_batch_bytes = options.restore_batch_bytes}));
  auto impl = std::make_unique<Impl>(options, std::move(backend));
  CONFMAN_RETURN_IF_ERROR(impl->ReloadMeta());
  return std::unique_ptr<KvStateMachine>(new KvStateMachine(std::move(impl)));
}

absl::StatusOr<std::unique_ptr<KvStateMachine>> KvStateMachine::CreateInMemory(
    const KvStateMachineOptions& options) {
  CONFMAN_RETURN_IF_ERROR(options.Validate());
  auto impl = std::make_unique<Impl>(options, NewMemoryBackend());
  return std::unique_ptr<KvStateMachine>(new KvStateMachine(std::move(impl)));
}

KvStateMachine::KvStateMachine(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}
KvStateMachine::~KvStateMachine() = default;

absl::StatusOr<std::vector<ApplyResult>> KvStateMachine::Apply(
    std::vector<raft::Entry> committed, const ResultsKnown& results_known) {
  return impl_->Apply(std::move(committed), results_known);
}
raft::Index KvStateMachine::AppliedIndex() const {
  return impl_->AppliedIndex();
}
absl::Status KvStateMachine::Sync() { return impl_->Sync(); }
absl::StatusOr<AppliedState> KvStateMachine::CurrentAppliedState() const {
  return impl_->CurrentAppliedState();
}
absl::StatusOr<std::unique_ptr<SnapshotSource>> KvStateMachine::OpenSnapshot()
    const {
  return impl_->OpenSnapshot();
}
absl::StatusOr<std::unique_ptr<SnapshotSink>> KvStateMachine::BeginRestore(
    const raft::SnapshotMeta& meta) {
  return impl_->BeginRestore(meta);
}
absl::StatusOr<KeyValue> KvStateMachine::Get(std::string_view ns,
                                             std::string_view key) const {
  return impl_->Get(ns, key);
}
absl::StatusOr<ListPage> KvStateMachine::List(
    const ListRequest& request) const {
  return impl_->List(request);
}
absl::StatusOr<ChangePage> KvStateMachine::Changes(uint64_t after_revision,
                                                   uint32_t limit) const {
  return impl_->Changes(after_revision, limit);
}
uint64_t KvStateMachine::Revision() const { return impl_->Revision(); }
int64_t KvStateMachine::ClockMicros() const { return impl_->ClockMicros(); }
int KvStateMachine::OpenSnapshotCount() const {
  return impl_->OpenSnapshotCount();
}
absl::StatusOr<std::vector<raft::Index>> KvStateMachine::ReferencedLogEntries(
    raft::Index lo, raft::Index hi) const {
  return impl_->ReferencedLogEntries(lo, hi);
}
uint64_t KvStateMachine::StorageBytes() const { return impl_->StorageBytes(); }

}  // namespace confman::kv
