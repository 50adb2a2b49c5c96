// The exactly-once session table (Raft thesis §6.3): what lets a write that
// is retried after a leader change return its first answer instead of
// taking effect twice.
//
// Everything here is a function of applied entries only — the store clock
// is the largest time stamp a proposer wrote into a command — so every
// member, and every replay of the log, keeps the same table.
//
// Layout in Table::kSessions (one ordered table, three key kinds):
//   'c' client(be64)            -> ClientRecord
//   'r' client(be64) seq(be64)  -> recorded outcome: code u8, revision u64,
//                                  message (the rest)
//   'a' time(be64, sign-flipped) client(be64) -> "" : clients by last
//                                  activity, ties by id; the front is what
//                                  expires or is evicted first
// The clock, the eviction watermark and the client count live in kMeta
// (MetaState), which each batch reads and writes whole.
//
// Why a refused retry is never a write applied twice. A write W of client c
// that was applied left the result (c, seq) in c's record, which is then
// removed in one of three ways, each leaving a trace the check consults:
//   - forgotten within the record (lowest_unanswered, or the per-client
//     cap): the record's floor rises above seq, and seq < floor is refused;
//   - the record expired: c's last activity L >= W's stamp t, and L fell
//     below clock - ttl. The clock only grows, so t < clock - ttl from then
//     on, which is refused;
//   - the record was evicted for count: t <= L <= watermark, refused.
// A record created after such a removal stores the horizon in force when it
// was created (max(clock - ttl, watermark + 1)); writes stamped before it
// are refused, so a new record never vouches for an older one's writes.
#pragma once

#include <cstdint>
#include <optional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "confman/kv/command.h"
#include "confman/state_machine.h"
#include "kv_backend.h"
#include "records.h"

namespace confman::kv {

// The bounds from KvStateMachineOptions; identical on every member.
struct SessionLimits {
  uint64_t max_sessions = 0;
  int64_t ttl_micros = 0;
  uint64_t max_results_per_client = 0;
};

// Moves the store clock to `time` if that is later, then drops every client
// whose last activity is older than clock - ttl. Runs for every decoded
// command, sessions or not. O(expired clients and their results).
[[nodiscard]] absl::Status AdvanceSessionClock(TableWriter& writer,
                                               MetaState& meta, int64_t time,
                                               const SessionLimits& limits);

// For a command with client_id != 0: the result to return instead of
// applying it — the recorded one for a duplicate, Aborted for a write whose
// record may have been forgotten — or nullopt if it is new and must apply.
// Changes nothing.
[[nodiscard]] absl::StatusOr<std::optional<ApplyResult>> CheckSession(
    const TableReader& reader, const MetaState& meta, raft::Index index,
    const CommandView& command, const SessionLimits& limits);

// After a new command with client_id != 0 applied with `result`: records
// it, moves the client's last activity, forgets results below
// lowest_unanswered and beyond the per-client cap, and evicts the least
// recently active clients beyond max_sessions.
[[nodiscard]] absl::Status RecordSession(TableWriter& writer, MetaState& meta,
                                         const CommandView& command,
                                         const ApplyResult& result,
                                         const SessionLimits& limits);

}  // namespace confman::kv
