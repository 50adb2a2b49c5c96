// The config store's snapshot stream: every record of every table, framed
// and cut into checksummed chunks.
//
// Stream bytes: "CMSNAP02", index u64, term u64, membership (u32 length +
// raft::EncodeMembership bytes); then records [table u8][key length u32]
// [value length u32][key][value], tables in kStreamedTables order, keys
// ascending; then the end marker 0xFF. Chunk boundaries fall anywhere, even
// inside a record. "CMSNAP01" streams (written before the session table
// existed) have the same layout without Table::kSessions records; they are
// still accepted.
#pragma once

#include <functional>
#include <memory>

#include "confman/entry_archive.h"
#include "confman/state_machine.h"
#include "kv_backend.h"

namespace confman::kv {

// Streams `reader` (which pins one version) in chunks of `chunk_bytes`.
// Values left in the log are read through `archive` and streamed inline.
// `on_close` runs when the source is destroyed.
std::unique_ptr<SnapshotSource> NewSnapshotSource(
    std::unique_ptr<TableReader> reader, raft::SnapshotMeta meta,
    uint64_t chunk_bytes, const EntryArchive* archive,
    std::function<void()> on_close);

// Parses a stream into `target`, refusing records above `max_record_bytes`
// and key records that point into a log.
// `on_commit` runs after the target committed (to reload cached state).
std::unique_ptr<SnapshotSink> NewSnapshotSink(
    std::unique_ptr<RestoreTarget> target, raft::SnapshotMeta expected,
    uint64_t max_record_bytes, std::function<absl::Status()> on_commit);

}  // namespace confman::kv
