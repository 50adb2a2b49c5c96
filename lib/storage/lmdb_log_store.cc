// LmdbLogStore (storage/lmdb.h): the Raft log in its own LMDB environment.
//
// Layout: two databases. "entries" maps the big-endian index to a
// checksummed entry record, so LMDB's byte order is index order and appends
// can use MDB_APPEND; "meta" holds the hard state and the compaction point.
//
// One writer thread (confman-log) owns every write. It takes whatever has
// queued since its last commit (up to max_group_bytes), applies it in one
// write transaction and commits once: the group shares one fsync, with no
// flush interval to tune. Readers never wait for the writer: they use the
// extent (Bounds) published after each commit and their own read
// transactions, so they see all of a group or none of it.
//
// Ordering: ops are applied to the transaction in queue order and their
// callbacks run only after the commit returns, so a write's `done` never
// runs before the write is on disk, and no write is durable without every
// write queued before it.
#include <pthread.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/bytes.h"
#include "common/lmdb_env.h"
#include "confman/status_macros.h"
#include "confman/storage/lmdb.h"
#include "crc32c.h"

namespace confman {
namespace {

using common::LmdbEnv;
using common::ReadTxn;
using raft::Entry;
using raft::EntryType;
using raft::HardState;
using raft::Index;
using raft::Term;
using storage::Crc32c;

// The databases, in the order LmdbEnv::Open is given them; both meta
// records carry their own checksum (EncodeMeta).
enum Database : size_t { kEntriesDb = 0, kMetaDb = 1 };
constexpr std::string_view kHardStateKey = "hard_state";
constexpr std::string_view kCompactedKey = "compacted";

// Stored entry: [header crc 4][term 8][type 1][data crc 4][data]. The
// header crc covers the index (so a record under the wrong key is caught),
// term, type, data crc and data length: TermAt checks it without reading
// the data; Entries checks both.
constexpr size_t kEntryHeaderBytes = 4 + 8 + 1 + 4;

// The index is covered although it is the key: a record that ends up under
// the wrong key fails its check instead of serving another entry's term.
// Runs for every entry written and read back: no heap allocation.
uint32_t EntryHeaderCrc(Index index, Term term, uint8_t type, uint32_t data_crc,
                        uint64_t data_size) {
  char covered[8 + 8 + 1 + 4 + 8];
  common::PutBigEndian64(covered, index);
  common::PutBigEndian64(covered + 8, term);
  covered[16] = static_cast<char>(type);
  common::PutBigEndian32(covered + 17, data_crc);
  common::PutBigEndian64(covered + 21, data_size);
  return Crc32c(std::string_view(covered, sizeof(covered)));
}

// Fills the space mdb_put reserved (MDB_RESERVE), so a large entry is
// copied once, from the caller's buffer into the map.
void EncodeEntryInto(const Entry& entry, char* out) {
  const uint32_t data_crc = Crc32c(entry.data);
  const auto type = static_cast<uint8_t>(entry.type);
  common::PutBigEndian32(out, EntryHeaderCrc(entry.index, entry.term, type,
                                             data_crc, entry.data.size()));
  common::PutBigEndian64(out + 4, entry.term);
  out[12] = static_cast<char>(type);
  common::PutBigEndian32(out + 13, data_crc);
  if (!entry.data.empty()) {
    std::memcpy(out + kEntryHeaderBytes, entry.data.data(), entry.data.size());
  }
}

[[nodiscard]] absl::Status CorruptEntry(Index index, std::string_view what) {
  return absl::DataLossError(
      absl::StrCat("log entry ", index, " is corrupt (", common::ToAbsl(what),
                   "); this member's log is damaged: restore it from a peer"));
}

// Checks the header and returns the entry with its data left empty.
// The data checksum is not verified here: TermAt must not pull a large
// entry's data pages into memory just to learn its term.
[[nodiscard]] absl::StatusOr<Entry> DecodeEntryHeader(Index index,
                                                      std::string_view stored) {
  if (stored.size() < kEntryHeaderBytes)
    return CorruptEntry(index, "truncated");
  Entry entry;
  entry.index = index;
  entry.term = common::GetBigEndian64(stored.data() + 4);
  const auto type = static_cast<uint8_t>(stored[12]);
  const uint32_t data_crc = common::GetBigEndian32(stored.data() + 13);
  if (common::GetBigEndian32(stored.data()) !=
      EntryHeaderCrc(index, entry.term, type, data_crc,
                     stored.size() - kEntryHeaderBytes)) {
    return CorruptEntry(index, "header checksum mismatch");
  }
  if (type > static_cast<uint8_t>(EntryType::kMembership)) {
    return CorruptEntry(index, "unknown entry type");
  }
  entry.type = static_cast<EntryType>(type);
  return entry;
}

[[nodiscard]] absl::StatusOr<Entry> DecodeEntry(Index index,
                                                std::string_view stored) {
  CONFMAN_ASSIGN_OR_RETURN(Entry entry, DecodeEntryHeader(index, stored));
  std::string_view data = stored.substr(kEntryHeaderBytes);
  if (Crc32c(data) != common::GetBigEndian32(stored.data() + 13)) {
    return CorruptEntry(index, "data checksum mismatch");
  }
  entry.data = raft::Payload(data);
  return entry;
}

// A small checksummed record of u64 fields (hard state, compaction point).
std::string EncodeMeta(std::initializer_list<uint64_t> fields) {
  std::string body;
  for (uint64_t f : fields) common::AppendU64(body, f);
  std::string out;
  common::AppendU32(out, Crc32c(body));
  return out + body;
}

// Any size mismatch is corruption: the records have a fixed size, and a
// hard state read short could forget a vote this member already gave.
[[nodiscard]] absl::StatusOr<std::vector<uint64_t>> DecodeMeta(
    std::string_view key, std::string_view stored, size_t fields) {
  if (stored.size() != 4 + 8 * fields ||
      common::GetBigEndian32(stored.data()) != Crc32c(stored.substr(4))) {
    return absl::DataLossError(
        absl::StrCat("the log's ", common::ToAbsl(key),
                     " record is corrupt; restore this member's log "
                     "from a peer"));
  }
  std::vector<uint64_t> out(fields);
  for (size_t i = 0; i < fields; ++i) {
    out[i] = common::GetBigEndian64(stored.data() + 4 + 8 * i);
  }
  return out;
}

[[nodiscard]] absl::Status PutRecord(MDB_txn* txn, MDB_dbi dbi,
                                     std::string_view key,
                                     std::string_view value) {
  MDB_val k = common::ToVal(key);
  MDB_val v = common::ToVal(value);
  const int rc = mdb_put(txn, dbi, &k, &v, 0);
  if (rc != 0) return common::LmdbError(rc, "writing log metadata");
  return absl::OkStatus();
}

// The log's extent. Invariant: entries (compacted_index, last_index] are
// stored, plus retained entries at or below compacted_index and nothing
// else; compacted_term is the term at compacted_index.
struct Bounds {
  Index compacted_index = 0;
  Term compacted_term = 0;
  Index last_index = 0;
};

// One op for the writer thread. Compactions, resets and drops share the
// writes' queue, so they take effect in submission order relative to them
// (the ordering log_store.h promises).
struct PendingOp {
  enum class Kind { kWrite, kCompact, kReset, kDropRetained };
  Kind kind = Kind::kWrite;
  LogWrite write;
  Index index = 0;
  Term term = 0;
  std::vector<Index> indexes = {};  // kDropRetained only.
  LogStore::WriteDone done;

  // What counts toward max_group_bytes: entry bytes, which are what make
  // a group's dirty pages.
  uint64_t bytes() const {
    uint64_t total = 0;
    for (const Entry& e : write.entries)
      total += e.data.size() + kEntryHeaderBytes;
    return total;
  }
};

// Checked against the extent as the group has moved it so far, not the
// published one. A rejected op touches nothing, so the rest of its group
// still commits.
[[nodiscard]] absl::Status ValidateWrite(const LogWrite& write, Bounds b) {
  if (write.reset) {
    b = Bounds{.compacted_index = write.reset->index,
               .compacted_term = write.reset->term,
               .last_index = write.reset->index};
  }
  if (write.entries.empty()) return absl::OkStatus();
  const Index first = write.entries.front().index;
  if (first <= b.compacted_index || first > b.last_index + 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("append at index ", first,
                     " would leave a gap or rewrite compacted "
                     "entries; the log holds [",
                     b.compacted_index + 1, ", ", b.last_index, "]"));
  }
  for (size_t i = 1; i < write.entries.size(); ++i) {
    if (write.entries[i].index != first + i) {
      return absl::InvalidArgumentError(absl::StrCat(
          "appended entries are not consecutive at index ",
          write.entries[i].index, "; pass indexes first, first+1, ..."));
    }
  }
  return absl::OkStatus();
}

[[nodiscard]] absl::Status Validate(const PendingOp& op, const Bounds& b) {
  switch (op.kind) {
    case PendingOp::Kind::kWrite:
      return ValidateWrite(op.write, b);
    case PendingOp::Kind::kCompact:
      if (op.index > b.last_index) {
        return absl::InvalidArgumentError(
            absl::StrCat("cannot compact through index ", op.index,
                         ": the log ends at ", b.last_index));
      }
      return absl::OkStatus();
    case PendingOp::Kind::kReset:
    case PendingOp::Kind::kDropRetained:
      return absl::OkStatus();
  }
  return absl::OkStatus();
}

// The retention rule depends on the entry alone (EntryArchive::RetainsEntry),
// so it answers the same at append, at compaction and at reset: a value the
// state machine left in an entry is never released behind its back.
bool RetainsKind(uint64_t retain_from_bytes, EntryType type,
                 uint64_t data_bytes) {
  return retain_from_bytes > 0 && type == EntryType::kNormal &&
         data_bytes >= retain_from_bytes;
}

// Deleting from index + 1 at this index would wrap to 0 and delete the
// whole log, so a reset there skips it.
constexpr Index kLastPossibleIndex = ~Index{0};

[[nodiscard]] absl::Status KeyIsNotAnIndex() {
  return absl::DataLossError(
      "the log holds a key that is not an index; "
      "restore this member's log from a peer");
}

// What a walk does with the entry it visits.
enum class Visit { kKeep, kDelete, kStop };
using EntryVisitor = std::function<Visit(Index index, const MDB_val& stored)>;

// Visits the stored entries lo <= index <= hi in index order. The visitor
// sees the value's size and location; the data pages are read only if it
// dereferences them.
[[nodiscard]] absl::Status WalkEntries(MDB_txn* txn, MDB_dbi dbi, Index lo,
                                       Index hi, const EntryVisitor& visit) {
  MDB_cursor* cursor = nullptr;
  int rc = mdb_cursor_open(txn, dbi, &cursor);
  if (rc != 0) return common::LmdbError(rc, "opening a log cursor");
  std::string start = common::BigEndianKey(lo);
  MDB_val k = common::ToVal(start), v;
  absl::Status status;
  rc = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
  while (rc == 0) {
    if (k.mv_size != 8) {
      status = KeyIsNotAnIndex();
      break;
    }
    const Index index =
        common::GetBigEndian64(static_cast<const char*>(k.mv_data));
    if (index > hi) break;
    const Visit action = visit(index, v);
    if (action == Visit::kStop) break;
    if (action == Visit::kDelete && (rc = mdb_cursor_del(cursor, 0)) != 0)
      break;
    rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT);
  }
  mdb_cursor_close(cursor);
  if (rc != 0 && rc != MDB_NOTFOUND) {
    return common::LmdbError(rc, "walking the log entries");
  }
  return status;
}

}  // namespace

absl::Status LmdbLogStoreOptions::Validate() const {
  if (dir.empty()) {
    return absl::InvalidArgumentError(
        "LmdbLogStoreOptions.dir is empty; name the log's directory");
  }
  if (initial_map_bytes < (uint64_t{1} << 20)) {
    return absl::InvalidArgumentError(
        "LmdbLogStoreOptions.initial_map_bytes must be at least 1 MiB");
  }
  if (max_map_bytes < initial_map_bytes) {
    return absl::InvalidArgumentError(
        "LmdbLogStoreOptions.max_map_bytes must be >= initial_map_bytes");
  }
  if (max_group_bytes == 0) {
    return absl::InvalidArgumentError(
        "LmdbLogStoreOptions.max_group_bytes must be positive");
  }
  return absl::OkStatus();
}

class LmdbLogStore::Impl {
 public:
  Impl(const LmdbLogStoreOptions& options, std::unique_ptr<LmdbEnv> env,
       Bounds bounds)
      : options_(options), env_(std::move(env)), bounds_(bounds) {
    // Nothing else ever opens a write transaction on env_.
    writer_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "confman-log");
      WriterLoop();
    });
  }

  ~Impl() {
    // The queue drains first, callbacks included: TakeGroup returns an
    // empty group only once stopping and empty.
    {
      std::lock_guard lock(queue_mu_);
      stopping_ = true;
    }
    queue_cv_.notify_all();
    writer_.join();
  }

  [[nodiscard]] static absl::StatusOr<Bounds> LoadBounds(const LmdbEnv& env) {
    // Read once at open; from then on the writer keeps bounds_ in step with
    // each commit.
    CONFMAN_ASSIGN_OR_RETURN(ReadTxn txn, env.BeginRead());
    CONFMAN_ASSIGN_OR_RETURN(Bounds b, CompactionPoint(txn, env));
    CONFMAN_ASSIGN_OR_RETURN(std::optional<Index> last,
                             LastStoredIndex(txn.get(), env.db(kEntriesDb)));
    // A retained entry may be the last stored one when the log is empty.
    if (last && *last > b.last_index) b.last_index = *last;
    return b;
  }

  bool RetainsEntry(const Entry& entry) const {
    return RetainsKind(options_.retain_entries_from_bytes, entry.type,
                       entry.data.size());
  }

  [[nodiscard]] absl::StatusOr<std::string> ReadEntryData(Index index) const {
    // No bounds check: entries retained below the log are served too, which
    // is what the archive is for.
    CONFMAN_ASSIGN_OR_RETURN(ReadTxn txn, env_->BeginRead());
    absl::StatusOr<std::string_view> stored =
        txn.Get(env_->db(kEntriesDb), common::BigEndianKey(index));
    if (absl::IsNotFound(stored.status())) {
      return absl::NotFoundError(
          absl::StrCat("log entry ", index,
                       " is not stored (dropped, or never retained: "
                       "retain_entries_from_bytes is ",
                       options_.retain_entries_from_bytes,
                       "); its value must come from a snapshot"));
    }
    if (!stored.ok()) return stored.status();
    LmdbEnv::Prefetch(*stored);
    CONFMAN_ASSIGN_OR_RETURN(Entry entry, DecodeEntry(index, *stored));
    return std::move(entry.data).Release();
  }

  // Read from one transaction, so the list and the compaction point agree.
  [[nodiscard]] absl::StatusOr<std::vector<Index>> RetainedIndexes(
      Index after, size_t limit) const {
    CONFMAN_ASSIGN_OR_RETURN(ReadTxn txn, env_->BeginRead());
    CONFMAN_ASSIGN_OR_RETURN(Bounds b, CompactionPoint(txn, *env_));
    std::vector<Index> indexes;
    if (after >= b.compacted_index || limit == 0) return indexes;
    CONFMAN_RETURN_IF_ERROR(WalkEntries(txn.get(), env_->db(kEntriesDb),
                                        after + 1, b.compacted_index,
                                        [&](Index index, const MDB_val&) {
                                          if (indexes.size() == limit)
                                            return Visit::kStop;
                                          indexes.push_back(index);
                                          return Visit::kKeep;
                                        }));
    return indexes;
  }

  // A short lock of its own, never the queue's: a long group commit does
  // not delay TermAt or the Raft loop's other reads.
  Bounds bounds() const {
    std::lock_guard lock(bounds_mu_);
    return bounds_;
  }

  [[nodiscard]] absl::StatusOr<Term> TermAt(Index index) const {
    // The compaction point's term comes from meta: its entry may be gone.
    const Bounds b = bounds();
    if (index == b.compacted_index) return b.compacted_term;
    if (index < b.compacted_index || index > b.last_index) {
      return absl::OutOfRangeError(
          absl::StrCat("log index ", index, " is outside the stored range [",
                       b.compacted_index, ", ", b.last_index, "]"));
    }
    CONFMAN_ASSIGN_OR_RETURN(ReadTxn txn, env_->BeginRead());
    CONFMAN_ASSIGN_OR_RETURN(std::string_view stored, GetEntry(txn, index));
    CONFMAN_ASSIGN_OR_RETURN(Entry entry, DecodeEntryHeader(index, stored));
    return entry.term;
  }

  [[nodiscard]] absl::StatusOr<std::vector<Entry>> Entries(
      Index lo, Index hi, uint64_t max_bytes) const {
    const Bounds b = bounds();
    if (lo <= b.compacted_index || hi > b.last_index + 1 || lo > hi) {
      return absl::OutOfRangeError(absl::StrCat(
          "log range [", lo, ", ", hi, ") is outside the stored range [",
          b.compacted_index + 1, ", ", b.last_index + 1, ")"));
    }
    std::vector<Entry> out;
    if (lo == hi) return out;
    // The extent was read before this transaction began: an entry compacted
    // in between reads as OutOfRange (GetEntry), never as a silent gap. The
    // first entry is returned whatever its size, so one entry above
    // max_bytes can still be replicated.
    CONFMAN_ASSIGN_OR_RETURN(ReadTxn txn, env_->BeginRead());
    uint64_t bytes = 0;
    for (Index i = lo; i < hi; ++i) {
      CONFMAN_ASSIGN_OR_RETURN(std::string_view stored, GetEntry(txn, i));
      const uint64_t size =
          stored.size() - std::min(stored.size(), kEntryHeaderBytes);
      if (!out.empty() && bytes + size > max_bytes) break;
      LmdbEnv::Prefetch(stored);
      CONFMAN_ASSIGN_OR_RETURN(Entry entry, DecodeEntry(i, stored));
      bytes += size;
      out.push_back(std::move(entry));
    }
    return out;
  }

  [[nodiscard]] absl::StatusOr<HardState> LoadHardState() const {
    CONFMAN_ASSIGN_OR_RETURN(ReadTxn txn, env_->BeginRead());
    absl::StatusOr<std::string_view> stored =
        txn.Get(env_->db(kMetaDb), kHardStateKey);
    // No record yet is a new log: the zero hard state.
    if (absl::IsNotFound(stored.status())) return HardState{};
    if (!stored.ok()) return stored.status();
    CONFMAN_ASSIGN_OR_RETURN(auto fields,
                             DecodeMeta(kHardStateKey, *stored, 3));
    return HardState{.term = fields[0], .vote = fields[1], .commit = fields[2]};
  }

  void Enqueue(PendingOp op) {
    {
      std::lock_guard lock(queue_mu_);
      queue_.push_back(std::move(op));
    }
    queue_cv_.notify_one();
  }

  [[nodiscard]] absl::Status RunAndWait(PendingOp op) {
    // Synchronous for the caller, yet still ordered behind every op queued
    // before it.
    std::mutex mu;
    std::condition_variable cv;
    std::optional<absl::Status> result;
    op.done = [&](absl::Status status) {
      std::lock_guard lock(mu);
      result = std::move(status);
      cv.notify_one();
    };
    Enqueue(std::move(op));
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return result.has_value(); });
    return *result;
  }

  LogStoreStats Stats() const {
    std::lock_guard lock(bounds_mu_);
    LogStoreStats stats = stats_;
    stats.map_bytes = env_->map_bytes();
    stats.file_bytes = env_->FileBytes();
    return stats;
  }

 private:
  // The stored compaction point, as Bounds of an empty log.
  [[nodiscard]] static absl::StatusOr<Bounds> CompactionPoint(
      const ReadTxn& txn, const LmdbEnv& env) {
    Bounds b;
    absl::StatusOr<std::string_view> compacted =
        txn.Get(env.db(kMetaDb), kCompactedKey);
    if (compacted.ok()) {
      CONFMAN_ASSIGN_OR_RETURN(auto fields,
                               DecodeMeta(kCompactedKey, *compacted, 2));
      b.compacted_index = fields[0];
      b.compacted_term = fields[1];
    } else if (!absl::IsNotFound(compacted.status())) {
      return compacted.status();
    }
    b.last_index = b.compacted_index;
    return b;
  }

  [[nodiscard]] static absl::StatusOr<std::optional<Index>> LastStoredIndex(
      MDB_txn* txn, MDB_dbi dbi) {
    MDB_cursor* cursor = nullptr;
    int rc = mdb_cursor_open(txn, dbi, &cursor);
    if (rc != 0) return common::LmdbError(rc, "opening a log cursor");
    MDB_val k, v;
    rc = mdb_cursor_get(cursor, &k, &v, MDB_LAST);
    mdb_cursor_close(cursor);
    if (rc == MDB_NOTFOUND) return std::optional<Index>();
    if (rc != 0) return common::LmdbError(rc, "finding the last log entry");
    if (k.mv_size != 8) return KeyIsNotAnIndex();
    return std::optional<Index>(
        common::GetBigEndian64(static_cast<const char*>(k.mv_data)));
  }

  [[nodiscard]] absl::StatusOr<std::string_view> GetEntry(const ReadTxn& txn,
                                                          Index index) const {
    absl::StatusOr<std::string_view> stored =
        txn.Get(env_->db(kEntriesDb), common::BigEndianKey(index));
    if (absl::IsNotFound(stored.status())) {
      return absl::OutOfRangeError(
          absl::StrCat("log entry ", index,
                       " is no longer stored (compacted meanwhile); "
                       "re-read FirstIndex()"));
    }
    return stored;
  }

  [[nodiscard]] absl::Status DeleteFrom(MDB_txn* txn, Index from) {
    return WalkEntries(txn, env_->db(kEntriesDb), from, kLastPossibleIndex,
                       [](Index, const MDB_val&) { return Visit::kDelete; });
  }

  // Deletes the entries lo <= index <= through that are not retained.
  [[nodiscard]] absl::Status ReleaseRange(MDB_txn* txn, Index lo,
                                          Index through) {
    return WalkEntries(txn, env_->db(kEntriesDb), lo, through,
                       [this](Index index, const MDB_val& stored) {
                         return RetainsStored(index, stored) ? Visit::kKeep
                                                             : Visit::kDelete;
                       });
  }

  // Decides from the record's size and header alone, so releasing entries
  // never reads a large entry's data pages. A large record whose header
  // fails its checksum is kept: deleted, its loss would read as NotFound;
  // kept, ReadEntryData reports it as DataLoss.
  bool RetainsStored(Index index, const MDB_val& stored) const {
    const uint64_t from = options_.retain_entries_from_bytes;
    if (from == 0 || stored.mv_size < kEntryHeaderBytes + from) return false;
    absl::StatusOr<Entry> header =
        DecodeEntryHeader(index, common::ToView(stored));
    return !header.ok() ||
           RetainsKind(from, header->type, stored.mv_size - kEntryHeaderBytes);
  }

  [[nodiscard]] absl::Status PutCompacted(MDB_txn* txn, const Bounds& b) {
    return PutRecord(txn, env_->db(kMetaDb), kCompactedKey,
                     EncodeMeta({b.compacted_index, b.compacted_term}));
  }

  [[nodiscard]] absl::Status ApplyWrite(MDB_txn* txn, const LogWrite& write,
                                        Bounds& b) {
    if (write.reset) {
      CONFMAN_RETURN_IF_ERROR(
          ApplyReset(txn, write.reset->index, write.reset->term, b));
    }
    if (write.hard_state) {
      const HardState& hs = *write.hard_state;
      CONFMAN_RETURN_IF_ERROR(
          PutRecord(txn, env_->db(kMetaDb), kHardStateKey,
                    EncodeMeta({hs.term, hs.vote, hs.commit})));
    }
    // Reset, hard state and entries share the group's transaction: they
    // become durable together, as LogWrite promises. A replaced suffix is
    // deleted first, so every remaining key is below `first` and
    // MDB_APPEND holds.
    if (write.entries.empty()) return absl::OkStatus();
    const Index first = write.entries.front().index;
    if (first <= b.last_index) {
      CONFMAN_RETURN_IF_ERROR(DeleteFrom(txn, first));
    }
    for (const Entry& entry : write.entries) {
      std::string key = common::BigEndianKey(entry.index);
      MDB_val k = common::ToVal(key);
      MDB_val v{kEntryHeaderBytes + entry.data.size(), nullptr};
      const int rc =
          mdb_put(txn, env_->db(kEntriesDb), &k, &v, MDB_APPEND | MDB_RESERVE);
      if (rc != 0) {
        return common::LmdbError(
            rc, absl::StrCat("appending log entry ", entry.index));
      }
      EncodeEntryInto(entry, static_cast<char*>(v.mv_data));
    }
    b.last_index = write.entries.back().index;
    return absl::OkStatus();
  }

  [[nodiscard]] absl::Status ApplyCompact(MDB_txn* txn, Index through,
                                          Bounds& b) {
    // The term at the new compaction point is read before its entry is
    // released and stored with the point: TermAt(through) keeps answering.
    if (through <= b.compacted_index) return absl::OkStatus();
    std::string key = common::BigEndianKey(through);
    MDB_val k = common::ToVal(key), v;
    const int rc = mdb_get(txn, env_->db(kEntriesDb), &k, &v);
    if (rc != 0) return common::LmdbError(rc, "reading the compaction point");
    CONFMAN_ASSIGN_OR_RETURN(Entry entry,
                             DecodeEntryHeader(through, common::ToView(v)));
    CONFMAN_RETURN_IF_ERROR(ReleaseRange(txn, b.compacted_index + 1, through));
    b.compacted_index = through;
    b.compacted_term = entry.term;
    return PutCompacted(txn, b);
  }

  // Entries above `index`, retained or not, are dropped; log entries at
  // or below it are released like a compaction's.
  [[nodiscard]] absl::Status ApplyReset(MDB_txn* txn, Index index, Term term,
                                        Bounds& b) {
    if (index < kLastPossibleIndex) {
      CONFMAN_RETURN_IF_ERROR(DeleteFrom(txn, index + 1));
    }
    CONFMAN_RETURN_IF_ERROR(ReleaseRange(txn, b.compacted_index + 1, index));
    b = Bounds{
        .compacted_index = index, .compacted_term = term, .last_index = index};
    return PutCompacted(txn, b);
  }

  [[nodiscard]] absl::Status ApplyDropRetained(
      MDB_txn* txn, const std::vector<Index>& indexes, const Bounds& b) {
    // Only below the compaction point: an index inside the log is a live
    // entry, whatever the caller believes.
    for (Index index : indexes) {
      if (index > b.compacted_index) continue;  // In the log, or never stored.
      std::string key = common::BigEndianKey(index);
      MDB_val k = common::ToVal(key);
      const int rc = mdb_del(txn, env_->db(kEntriesDb), &k, nullptr);
      if (rc != 0 && rc != MDB_NOTFOUND) {
        return common::LmdbError(
            rc, absl::StrCat("dropping retained log entry ", index));
      }
    }
    return absl::OkStatus();
  }

  [[nodiscard]] absl::Status Apply(MDB_txn* txn, const PendingOp& op,
                                   Bounds& b) {
    switch (op.kind) {
      case PendingOp::Kind::kWrite:
        return ApplyWrite(txn, op.write, b);
      case PendingOp::Kind::kCompact:
        return ApplyCompact(txn, op.index, b);
      case PendingOp::Kind::kReset:
        return ApplyReset(txn, op.index, op.term, b);
      case PendingOp::Kind::kDropRetained:
        return ApplyDropRetained(txn, op.indexes, b);
    }
    return absl::OkStatus();
  }

  std::vector<PendingOp> TakeGroup() {
    std::unique_lock lock(queue_mu_);
    queue_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    // The first op always goes, however large, so one oversized write
    // cannot stall the queue.
    std::vector<PendingOp> group;
    uint64_t bytes = 0;
    while (!queue_.empty() &&
           (group.empty() ||
            bytes + queue_.front().bytes() <= options_.max_group_bytes)) {
      bytes += queue_.front().bytes();
      group.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    return group;
  }

  // One transaction for the whole group: rejected ops are skipped, an
  // LMDB failure fails them all.
  void CommitGroup(std::vector<PendingOp>& group) {
    std::vector<absl::Status> results(group.size());
    Bounds b;
    absl::Status status = failed_;
    if (status.ok()) {
      // `b` starts from the published extent inside the body: LmdbEnv runs
      // the body again after growing a full map.
      status = env_->RunWrite([&](MDB_txn* txn) -> absl::Status {
        b = bounds();
        for (size_t i = 0; i < group.size(); ++i) {
          results[i] = Validate(group[i], b);
          if (results[i].ok()) CONFMAN_RETURN_IF_ERROR(Apply(txn, group[i], b));
        }
        return absl::OkStatus();
      });
    }
    // Published only after the commit returned: readers never see entries
    // a crash could still take back.
    if (status.ok()) {
      std::lock_guard lock(bounds_mu_);
      bounds_ = b;
      ++stats_.commits;
      for (size_t i = 0; i < group.size(); ++i) {
        if (!results[i].ok() || group[i].kind != PendingOp::Kind::kWrite)
          continue;
        ++stats_.writes;
        stats_.entries_written += group[i].write.entries.size();
      }
    } else {
      // A full map is not sticky (a later, smaller write may fit). Any other
      // failure is: after an I/O error LMDB's view of the file is unknown.
      if (failed_.ok() && !absl::IsResourceExhausted(status)) {
        failed_ = absl::FailedPreconditionError(absl::StrCat(
            "the log store stopped accepting writes after an I/O error (",
            status.message(), "); reopen it"));
      }
      for (absl::Status& r : results) r = status;
    }
    for (size_t i = 0; i < group.size(); ++i)
      group[i].done(std::move(results[i]));
  }

  void WriterLoop() {
    while (true) {
      std::vector<PendingOp> group = TakeGroup();
      if (group.empty()) return;  // Stopping and drained.
      CommitGroup(group);
    }
  }

  const LmdbLogStoreOptions options_;
  std::unique_ptr<LmdbEnv> env_;

  mutable std::mutex bounds_mu_;
  Bounds bounds_;        // Guarded by bounds_mu_; the durable extent.
  LogStoreStats stats_;  // Guarded by bounds_mu_.

  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::deque<PendingOp> queue_;  // Guarded by queue_mu_.
  bool stopping_ = false;        // Guarded by queue_mu_.

  absl::Status failed_;  // Writer thread only: sticky I/O failure.
  std::thread writer_;
};

absl::StatusOr<std::unique_ptr<LmdbLogStore>> LmdbLogStore::Open(
    const LmdbLogStoreOptions& options) {
  CONFMAN_RETURN_IF_ERROR(options.Validate());
  CONFMAN_ASSIGN_OR_RETURN(
      std::unique_ptr<LmdbEnv> env,
      LmdbEnv::Open({.dir = options.dir,
                     .map_bytes = options.initial_map_bytes,
                     .max_map_bytes = options.max_map_bytes,
                     .databases = {"entries", "meta"}}));
  CONFMAN_ASSIGN_OR_RETURN(Bounds bounds, Impl::LoadBounds(*env));
  return std::unique_ptr<LmdbLogStore>(new LmdbLogStore(
      std::make_unique<Impl>(options, std::move(env), bounds)));
}

LmdbLogStore::LmdbLogStore(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}
LmdbLogStore::~LmdbLogStore() = default;

raft::Index LmdbLogStore::FirstIndex() const {
  return impl_->bounds().compacted_index + 1;
}
raft::Index LmdbLogStore::LastIndex() const {
  return impl_->bounds().last_index;
}

absl::StatusOr<raft::Term> LmdbLogStore::TermAt(raft::Index index) const {
  return impl_->TermAt(index);
}

absl::StatusOr<std::vector<raft::Entry>> LmdbLogStore::Entries(
    raft::Index lo, raft::Index hi, uint64_t max_bytes) const {
  return impl_->Entries(lo, hi, max_bytes);
}

void LmdbLogStore::Write(LogWrite write, WriteDone done) {
  impl_->Enqueue({.kind = PendingOp::Kind::kWrite,
                  .write = std::move(write),
                  .done = std::move(done)});
}

absl::StatusOr<raft::HardState> LmdbLogStore::LoadHardState() const {
  return impl_->LoadHardState();
}

absl::Status LmdbLogStore::CompactPrefix(raft::Index through) {
  PendingOp op;
  op.kind = PendingOp::Kind::kCompact;
  op.index = through;
  return impl_->RunAndWait(std::move(op));
}

absl::Status LmdbLogStore::ResetToSnapshot(raft::Index index, raft::Term term) {
  PendingOp op;
  op.kind = PendingOp::Kind::kReset;
  op.index = index;
  op.term = term;
  return impl_->RunAndWait(std::move(op));
}

bool LmdbLogStore::RetainsEntry(const raft::Entry& entry) const {
  return impl_->RetainsEntry(entry);
}

absl::StatusOr<std::string> LmdbLogStore::ReadEntryData(
    raft::Index index) const {
  return impl_->ReadEntryData(index);
}

absl::StatusOr<std::vector<raft::Index>> LmdbLogStore::RetainedIndexes(
    raft::Index after, size_t limit) const {
  return impl_->RetainedIndexes(after, limit);
}

absl::Status LmdbLogStore::DropRetained(std::vector<raft::Index> indexes) {
  PendingOp op;
  op.kind = PendingOp::Kind::kDropRetained;
  op.indexes = std::move(indexes);
  return impl_->RunAndWait(std::move(op));
}

LogStoreStats LmdbLogStore::Stats() const { return impl_->Stats(); }

}  // namespace confman
