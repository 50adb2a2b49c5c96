// The config store's snapshot stream (snapshot_stream.h): a source that
// walks one read view of every table into checksummed chunks, and a sink
// that parses chunks back into a fresh backend in bounded batches.
#include "snapshot_stream.h"

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/bytes.h"
#include "confman/raft/membership.h"
#include "confman/status_macros.h"
#include "records.h"

namespace confman {
namespace kv {
namespace {

using common::ToAbsl;

// Version 2 added Table::kSessions. Version 1 streams (no sessions) are
// still read: they restore with an empty session table.
constexpr std::string_view kMagic = "CMSNAP02";
constexpr std::string_view kMagicV1 = "CMSNAP01";
static_assert(kMagic.size() == kMagicV1.size());
constexpr char kEndMarker = '\xFF';
constexpr size_t kRecordHeadBytes = 1 + 4 + 4;
// The largest snapshot_chunk_bytes KvStateMachineOptions accepts.
constexpr uint64_t kMaxChunkBytes = uint64_t{64} << 20;
// LMDB's key limit; no table stores longer keys.
constexpr uint32_t kMaxKeyBytes = 511;

std::string EncodeStreamHeader(const raft::SnapshotMeta& meta) {
  std::string out(kMagic);
  common::AppendU64(out, meta.index);
  common::AppendU64(out, meta.term);
  common::AppendBytes(out, raft::EncodeMembership(meta.membership));
  return out;
}

class KvSnapshotSource : public SnapshotSource {
 public:
  KvSnapshotSource(std::unique_ptr<TableReader> reader, raft::SnapshotMeta meta,
                   uint64_t chunk_bytes, const EntryArchive* archive,
                   std::function<void()> on_close)
      : reader_(std::move(reader)),
        meta_(std::move(meta)),
        chunk_bytes_(chunk_bytes),
        archive_(archive),
        on_close_(std::move(on_close)),
        head_(EncodeStreamHeader(meta_)) {}

  ~KvSnapshotSource() override {
    reader_.reset();
    if (on_close_) on_close_();
  }

  const raft::SnapshotMeta& meta() const override { return meta_; }

  [[nodiscard]] absl::StatusOr<SnapshotChunk> NextChunk() override {
    if (done_) {
      return absl::OutOfRangeError(
          "the snapshot stream already ended; open a new snapshot");
    }
    SnapshotChunk chunk;
    chunk.seq = next_seq_++;
    chunk.data.reserve(chunk_bytes_);
    while (chunk.data.size() < chunk_bytes_) {
      if (Drain(chunk.data)) continue;
      if (ended_) break;
      CONFMAN_RETURN_IF_ERROR(FrameNextRecord());
    }
    chunk.last = done_ = ended_ && head_.empty() && value_.empty();
    chunk.checksum = SnapshotChunkChecksum(chunk.seq, chunk.last, chunk.data);
    return chunk;
  }

 private:
  // Moves framed bytes into `out` up to the chunk size; false if none left.
  bool Drain(std::string& out) {
    if (head_.empty() && value_.empty()) return false;
    const size_t room = chunk_bytes_ - out.size();
    const size_t from_head = std::min(room, head_.size());
    out.append(head_, 0, from_head);
    head_.erase(0, from_head);
    const size_t from_value = std::min(room - from_head, value_.size());
    out.append(value_.substr(0, from_value));
    value_.remove_prefix(from_value);
    return true;
  }

  // Frames the record after last_key_ in the current table, moving on to
  // the next table (or the end marker) when this one is done.
  [[nodiscard]] absl::Status FrameNextRecord() {
    while (table_ < kStreamedTableCount) {
      bool found = false;
      absl::Status framed;
      CONFMAN_RETURN_IF_ERROR(
          reader_->Scan(kStreamedTables[table_], last_key_,
                        [&](std::string_view key, std::string_view value) {
                          if (table_started_ && key == last_key_) return true;
                          last_key_.assign(key);
                          framed = FrameRecord(key, value);
                          found = true;
                          return false;
                        }));
      CONFMAN_RETURN_IF_ERROR(framed);
      if (found) {
        table_started_ = true;
        return absl::OkStatus();
      }
      ++table_;
      table_started_ = false;
      last_key_.clear();
    }
    head_.push_back(kEndMarker);
    ended_ = true;
    return absl::OkStatus();
  }

  [[nodiscard]] absl::Status FrameRecord(std::string_view key, std::string_view value) {
    const Table table = kStreamedTables[table_];
    if (table == Table::kKeys) {
      CONFMAN_ASSIGN_OR_RETURN(KeyRecord record, DecodeKeyRecord(value));
      if (record.value_log_index != 0) {
        CONFMAN_ASSIGN_OR_RETURN(LoggedValue logged,
                                 ReadLoggedValue(archive_, record, key));
        record.value_log_index = 0;
        inlined_ = EncodeKeyRecordHead(record);
        inlined_.append(logged.stored);
        value = inlined_;
      }
    }
    head_.push_back(static_cast<char>(table));
    common::AppendU32(head_, static_cast<uint32_t>(key.size()));
    common::AppendU32(head_, static_cast<uint32_t>(value.size()));
    head_.append(key);
    value_ = value;
    reader_->WillRead(value);
    return absl::OkStatus();
  }

  std::unique_ptr<TableReader> reader_;
  const raft::SnapshotMeta meta_;
  const uint64_t chunk_bytes_;
  const EntryArchive* const archive_;
  std::function<void()> on_close_;
  uint64_t next_seq_ = 0;
  // Framed bytes not yet emitted: an owned head, then a value viewed in
  // place (valid while reader_ lives), so a large value is never copied
  // whole; a value read from the log is held in inlined_ instead.
  std::string head_;
  std::string_view value_;
  std::string inlined_;
  uint8_t table_ = 0;  // Position in kStreamedTables.
  bool table_started_ = false;
  std::string last_key_;
  bool ended_ = false;  // The end marker is framed.
  bool done_ = false;   // The last chunk was returned.
};

class KvSnapshotSink : public SnapshotSink {
 public:
  KvSnapshotSink(std::unique_ptr<RestoreTarget> target,
                 raft::SnapshotMeta expected, uint64_t max_record_bytes,
                 std::function<absl::Status()> on_commit)
      : target_(std::move(target)), expected_(std::move(expected)),
        max_record_bytes_(max_record_bytes), on_commit_(std::move(on_commit)) {}

  [[nodiscard]] absl::Status Write(const SnapshotChunk& chunk) override {
    if (!failed_.ok()) return FailedAgain();
    failed_ = Accept(chunk);
    return failed_;
  }

  [[nodiscard]] absl::Status Commit() override {
    if (!failed_.ok()) return FailedAgain();
    if (!last_seen_) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the snapshot stream is incomplete: ", next_seq_,
          " chunks arrived without the last one; keep writing chunks or "
          "begin a new restore"));
    }
    if (streamed_index_ != expected_.index || streamed_term_ != expected_.term ||
        streamed_membership_ != expected_.membership ||
        applied_index_ != expected_.index) {
      failed_ = absl::FailedPreconditionError(absl::StrCat(
          "the snapshot stream holds index ", streamed_index_, " term ",
          streamed_term_, " (applied ", applied_index_,
          ") but the restore expected index ", expected_.index, " term ",
          expected_.term, "; the state is unchanged"));
      return failed_;
    }
    failed_ = target_->Commit();
    if (!failed_.ok()) return failed_;
    failed_ = absl::FailedPreconditionError("this restore was already committed");
    return on_commit_();
  }

 private:
  [[nodiscard]] absl::Status FailedAgain() const {
    return absl::FailedPreconditionError(absl::StrCat(
        "this restore already failed (", failed_.message(),
        "); the state is unchanged: begin a new restore"));
  }

  [[nodiscard]] absl::Status Accept(const SnapshotChunk& chunk) {
    if (last_seen_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "snapshot chunk ", chunk.seq, " arrived after the last chunk"));
    }
    if (chunk.data.size() > kMaxChunkBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "snapshot chunk ", chunk.seq, " holds ", chunk.data.size(),
          " bytes, above the ", kMaxChunkBytes, "-byte limit"));
    }
    if (chunk.seq != next_seq_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "snapshot chunk ", chunk.seq, " arrived out of order; expected ",
          next_seq_, ". Restart the transfer"));
    }
    if (chunk.checksum != SnapshotChunkChecksum(chunk.seq, chunk.last, chunk.data)) {
      return absl::DataLossError(absl::StrCat(
          "snapshot chunk ", chunk.seq, " failed its checksum; the state is "
          "unchanged, restart the transfer"));
    }
    ++next_seq_;
    last_seen_ = chunk.last;
    buffer_.append(chunk.data);
    CONFMAN_RETURN_IF_ERROR(Parse());
    if (last_seen_ && (!ended_ || !buffer_.empty())) {
      return absl::DataLossError(
          "the snapshot stream ended inside a record or has trailing bytes; "
          "the state is unchanged, restart the transfer");
    }
    return absl::OkStatus();
  }

  [[nodiscard]] absl::Status Corrupt(std::string_view what) const {
    return absl::DataLossError(absl::StrCat(
        "the snapshot stream is malformed (", common::ToAbsl(what),
        ") near chunk ", next_seq_ - 1,
        "; the state is unchanged, restart the transfer"));
  }

  // Consumes every complete header/record in buffer_.
  [[nodiscard]] absl::Status Parse() {
    size_t pos = 0;
    absl::Status status = ParseFrom(pos);
    buffer_.erase(0, pos);
    return status;
  }

  [[nodiscard]] absl::Status ParseFrom(size_t& pos) {
    if (!header_done_) {
      const size_t fixed = kMagic.size() + 8 + 8 + 4;
      if (buffer_.size() < fixed) return absl::OkStatus();
      const std::string_view magic =
          std::string_view(buffer_).substr(0, kMagic.size());
      if (magic == kMagicV1) {
        version_ = 1;
      } else if (magic != kMagic) {
        return Corrupt(absl::StrCat(
            "unknown format \"", absl::CHexEscape(ToAbsl(magic)),
            "\"; this member reads CMSNAP01 and CMSNAP02, so it may be older "
            "than the sender: upgrade it"));
      }
      const uint32_t membership_bytes =
          common::GetBigEndian32(buffer_.data() + kMagic.size() + 16);
      if (membership_bytes > max_record_bytes_) return Corrupt("huge header");
      if (buffer_.size() < fixed + membership_bytes) return absl::OkStatus();
      streamed_index_ = common::GetBigEndian64(buffer_.data() + kMagic.size());
      streamed_term_ = common::GetBigEndian64(buffer_.data() + kMagic.size() + 8);
      auto membership = raft::DecodeMembership(
          std::string_view(buffer_).substr(fixed, membership_bytes));
      if (!membership.ok()) return Corrupt("bad membership");
      streamed_membership_ = *std::move(membership);
      header_done_ = true;
      pos = fixed + membership_bytes;
    }
    while (!ended_ && pos < buffer_.size()) {
      if (buffer_[pos] == kEndMarker) {
        ended_ = true;
        ++pos;
        break;
      }
      if (buffer_.size() - pos < kRecordHeadBytes) break;
      const auto table = static_cast<uint8_t>(buffer_[pos]);
      const uint32_t key_size = common::GetBigEndian32(buffer_.data() + pos + 1);
      const uint32_t value_size = common::GetBigEndian32(buffer_.data() + pos + 5);
      if (!Streamed(table)) return Corrupt("unknown table");
      if (key_size == 0 || key_size > kMaxKeyBytes) return Corrupt("bad key size");
      if (value_size > max_record_bytes_) return Corrupt("record above the size limit");
      const size_t total = kRecordHeadBytes + key_size + value_size;
      if (buffer_.size() - pos < total) break;
      std::string_view key(buffer_.data() + pos + kRecordHeadBytes, key_size);
      std::string_view value(buffer_.data() + pos + kRecordHeadBytes + key_size,
                             value_size);
      CONFMAN_RETURN_IF_ERROR(Store(static_cast<Table>(table), key, value));
      pos += total;
    }
    return absl::OkStatus();
  }

  bool Streamed(uint8_t table) const {
    if (version_ == 1 && table == static_cast<uint8_t>(Table::kSessions)) {
      return false;
    }
    return std::find(std::begin(kStreamedTables), std::end(kStreamedTables),
                     static_cast<Table>(table)) != std::end(kStreamedTables);
  }

  [[nodiscard]] absl::Status Store(Table table, std::string_view key, std::string_view value) {
    if (table == Table::kKeys) {
      absl::StatusOr<KeyRecord> record = DecodeKeyRecord(value);
      if (!record.ok()) return Corrupt("bad key record");
      if (record->value_log_index != 0)
        return Corrupt("key record points into a log");
    }
    if (table == Table::kMeta && key == kAppliedMetaKey) {
      absl::StatusOr<raft::Index> applied = DecodeAppliedIndex(value);
      if (!applied.ok()) return Corrupt("bad applied index");
      applied_index_ = *applied;
    }
    return target_->Put(table, key, value);
  }

  std::unique_ptr<RestoreTarget> target_;
  const raft::SnapshotMeta expected_;
  const uint64_t max_record_bytes_;
  std::function<absl::Status()> on_commit_;

  absl::Status failed_;  // Sticky: the first error, or "committed".
  uint64_t next_seq_ = 0;
  bool last_seen_ = false;
  bool header_done_ = false;
  int version_ = 2;  // Of the stream, from its magic.
  bool ended_ = false;
  std::string buffer_;  // Unparsed stream bytes: at most a chunk + a record.
  raft::Index streamed_index_ = 0;
  raft::Term streamed_term_ = 0;
  raft::Membership streamed_membership_;
  raft::Index applied_index_ = 0;
};

}  // namespace

std::unique_ptr<SnapshotSource> NewSnapshotSource(
    std::unique_ptr<TableReader> reader, raft::SnapshotMeta meta,
    uint64_t chunk_bytes, const EntryArchive* archive,
    std::function<void()> on_close) {
  return std::make_unique<KvSnapshotSource>(std::move(reader), std::move(meta),
                                            chunk_bytes, archive,
                                            std::move(on_close));
}

std::unique_ptr<SnapshotSink> NewSnapshotSink(
    std::unique_ptr<RestoreTarget> target, raft::SnapshotMeta expected,
    uint64_t max_record_bytes, std::function<absl::Status()> on_commit) {
  return std::make_unique<KvSnapshotSink>(std::move(target), std::move(expected),
                                          max_record_bytes, std::move(on_commit));
}

}  // namespace kv
}  // namespace confman
