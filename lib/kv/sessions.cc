// The exactly-once session table (sessions.h): recording each session
// write's outcome, answering retries from it, and forgetting records by
// age, count and the client's lowest unanswered sequence, all from entry
// contents only so that every member decides alike.
#include "sessions.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/bytes.h"
#include "confman/status_macros.h"

namespace confman::kv {
namespace {

using common::AppendU64;
using common::GetBigEndian64;
using common::RecordReader;
using common::ToAbsl;

constexpr char kClientTag = 'c';
constexpr char kResultTag = 'r';
constexpr char kActivityTag = 'a';
constexpr uint64_t kSignBit = uint64_t{1} << 63;

// Flipping the sign bit makes big-endian bytes order like signed times.
uint64_t OrderedTime(int64_t t) { return static_cast<uint64_t>(t) ^ kSignBit; }
int64_t TimeFromOrdered(uint64_t v) {
  return static_cast<int64_t>(v ^ kSignBit);
}

std::string Tagged(char tag, uint64_t a) {
  std::string key(1, tag);
  AppendU64(key, a);
  return key;
}
std::string Tagged(char tag, uint64_t a, uint64_t b) {
  std::string key = Tagged(tag, a);
  AppendU64(key, b);
  return key;
}

std::string ClientKey(uint64_t client) { return Tagged(kClientTag, client); }
std::string ResultPrefix(uint64_t client) { return Tagged(kResultTag, client); }
std::string ResultKey(uint64_t client, uint64_t sequence) {
  return Tagged(kResultTag, client, sequence);
}
std::string ActivityKey(int64_t time, uint64_t client) {
  return Tagged(kActivityTag, OrderedTime(time), client);
}
constexpr size_t kPairKeyBytes = 1 + 8 + 8;

struct ClientRecord {
  int64_t last_active = kNoTime;  // Max time stamp of its applied writes.
  // Results of sequences below this may have been forgotten.
  uint64_t floor = 0;
  uint64_t results = 0;  // Result records held.
  // Writes stamped before this may have been applied under an earlier,
  // forgotten record of the same client.
  int64_t horizon = kNoTime;
};

std::string EncodeClient(const ClientRecord& r) {
  std::string out;
  AppendU64(out, static_cast<uint64_t>(r.last_active));
  AppendU64(out, r.floor);
  AppendU64(out, r.results);
  AppendU64(out, static_cast<uint64_t>(r.horizon));
  return out;
}

[[nodiscard]] absl::Status Corrupt(std::string_view what) {
  return absl::DataLossError(absl::StrCat(
      "the config store's session table has a corrupt ", ToAbsl(what),
      " record; restore this member from a peer snapshot"));
}

[[nodiscard]] absl::StatusOr<std::optional<ClientRecord>> LoadClient(
    const TableReader& reader, uint64_t client) {
  CONFMAN_ASSIGN_OR_RETURN(std::optional<std::string_view> stored,
                           reader.Get(Table::kSessions, ClientKey(client)));
  if (!stored) return std::optional<ClientRecord>();
  RecordReader in(*stored);
  ClientRecord r;
  r.last_active = static_cast<int64_t>(in.U64());
  r.floor = in.U64();
  r.results = in.U64();
  r.horizon = static_cast<int64_t>(in.U64());
  if (!in.done()) return Corrupt("client");
  return std::optional<ClientRecord>(r);
}

std::string EncodeResult(const ApplyResult& result) {
  std::string out;
  out.push_back(static_cast<char>(result.outcome.code()));
  AppendU64(out, result.revision);
  out.append(result.outcome.message().data(), result.outcome.message().size());
  return out;
}

[[nodiscard]] absl::StatusOr<ApplyResult> DecodeResult(
    raft::Index index, std::string_view stored) {
  RecordReader in(stored);
  const uint8_t code = in.U8();
  const uint64_t revision = in.U64();
  const std::string_view message = in.Rest();
  if (!in.ok() ||
      code > static_cast<uint8_t>(absl::StatusCode::kUnauthenticated)) {
    return Corrupt("result");
  }
  return ApplyResult{.index = index,
                     .outcome = absl::Status(
                         static_cast<absl::StatusCode>(code), ToAbsl(message)),
                     .revision = revision};
}

int64_t SaturatingSub(int64_t a, int64_t b) {
  int64_t out = 0;
  if (__builtin_sub_overflow(a, b, &out)) return b > 0 ? INT64_MIN : INT64_MAX;
  return out;
}

// The earliest stamp a write may carry when no record of its client exists:
// anything older may have been applied under a record that is gone.
int64_t Horizon(const MetaState& meta, const SessionLimits& limits) {
  int64_t horizon = SaturatingSub(meta.clock, limits.ttl_micros);
  if (meta.session_watermark != kNoTime &&
      meta.session_watermark != INT64_MAX) {
    horizon = std::max(horizon, meta.session_watermark + 1);
  }
  return horizon;
}

// The (time, client) pairs at the front of the activity index: clients in
// the order they expire or are evicted, while `take` accepts them.
template <typename Take>
[[nodiscard]] absl::Status ScanActivity(const TableReader& reader, Take take) {
  absl::Status status;
  CONFMAN_RETURN_IF_ERROR(
      reader.Scan(Table::kSessions, std::string(1, kActivityTag),
                  [&](std::string_view key, std::string_view) {
                    if (key.empty() || key[0] != kActivityTag) return false;
                    if (key.size() != kPairKeyBytes) {
                      status = Corrupt("activity index");
                      return false;
                    }
                    return take(TimeFromOrdered(GetBigEndian64(key.data() + 1)),
                                GetBigEndian64(key.data() + 9));
                  }));
  return status;
}

// The client's result sequences in ascending order while `take` accepts
// them (bounded by max_results_per_client plus one).
template <typename Take>
[[nodiscard]] absl::Status ScanResults(const TableReader& reader,
                                       uint64_t client, Take take) {
  const std::string prefix = ResultPrefix(client);
  absl::Status status;
  CONFMAN_RETURN_IF_ERROR(reader.Scan(
      Table::kSessions, prefix, [&](std::string_view key, std::string_view) {
        if (key.substr(0, prefix.size()) != prefix) return false;
        if (key.size() != kPairKeyBytes) {
          status = Corrupt("result key");
          return false;
        }
        return take(GetBigEndian64(key.data() + 9));
      }));
  return status;
}

// Removes a client's record, its results and its activity entry.
[[nodiscard]] absl::Status DropClient(TableWriter& writer, MetaState& meta,
                                      int64_t last_active, uint64_t client) {
  std::vector<uint64_t> sequences;
  CONFMAN_RETURN_IF_ERROR(ScanResults(writer, client, [&](uint64_t sequence) {
    sequences.push_back(sequence);
    return true;
  }));
  for (uint64_t sequence : sequences) {
    CONFMAN_RETURN_IF_ERROR(
        writer.Delete(Table::kSessions, ResultKey(client, sequence)));
  }
  CONFMAN_RETURN_IF_ERROR(writer.Delete(Table::kSessions, ClientKey(client)));
  CONFMAN_RETURN_IF_ERROR(
      writer.Delete(Table::kSessions, ActivityKey(last_active, client)));
  if (meta.session_count == 0) return Corrupt("session count");
  --meta.session_count;
  return absl::OkStatus();
}

// Evicts the least recently active client (ties: the smallest id).
[[nodiscard]] absl::Status EvictLeastActive(TableWriter& writer,
                                            MetaState& meta) {
  std::optional<std::pair<int64_t, uint64_t>> front;
  CONFMAN_RETURN_IF_ERROR(
      ScanActivity(writer, [&](int64_t time, uint64_t client) {
        front.emplace(time, client);
        return false;
      }));
  if (!front) return Corrupt("session count");
  meta.session_watermark = std::max(meta.session_watermark, front->first);
  return DropClient(writer, meta, front->first, front->second);
}

ApplyResult Refused(raft::Index index, const CommandView& command,
                    std::string_view reason) {
  return ApplyResult{
      .index = index,
      .outcome = absl::AbortedError(absl::StrCat(
          "write ", command.client_id, "/", command.sequence, " on ",
          ToAbsl(command.ns), "/", ToAbsl(command.key),
          " was retried after its session record expired (", ToAbsl(reason),
          "); it may or may not have taken effect: read the key and decide")),
      .revision = 0};
}

}  // namespace

absl::Status AdvanceSessionClock(TableWriter& writer, MetaState& meta,
                                 int64_t time, const SessionLimits& limits) {
  // Last activities only grow and a new record starts at or after the
  // horizon, so nothing can newly expire unless the clock moves.
  if (time <= meta.clock) return absl::OkStatus();
  meta.clock = time;
  if (meta.session_count == 0) return absl::OkStatus();
  const int64_t expire_below = SaturatingSub(meta.clock, limits.ttl_micros);
  std::vector<std::pair<int64_t, uint64_t>> expired;
  CONFMAN_RETURN_IF_ERROR(
      ScanActivity(writer, [&](int64_t last, uint64_t client) {
        if (last >= expire_below) return false;
        expired.emplace_back(last, client);
        return true;
      }));
  for (const auto& [last, client] : expired) {
    CONFMAN_RETURN_IF_ERROR(DropClient(writer, meta, last, client));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<ApplyResult>> CheckSession(
    const TableReader& reader, const MetaState& meta, raft::Index index,
    const CommandView& command, const SessionLimits& limits) {
  CONFMAN_ASSIGN_OR_RETURN(std::optional<ClientRecord> client,
                           LoadClient(reader, command.client_id));
  const int64_t stamp = command.time_unix_micros;
  if (!client) {
    const int64_t horizon = Horizon(meta, limits);
    if (stamp >= horizon) return std::optional<ApplyResult>();
    return std::optional<ApplyResult>(Refused(
        index, command,
        absl::StrCat("no record of client ", command.client_id,
                     " is held, and the write is stamped ", stamp,
                     " us, before ", horizon,
                     " us: the session TTL or the session count limit may "
                     "have dropped it since")));
  }
  CONFMAN_ASSIGN_OR_RETURN(
      std::optional<std::string_view> recorded,
      reader.Get(Table::kSessions,
                 ResultKey(command.client_id, command.sequence)));
  if (recorded) {
    CONFMAN_ASSIGN_OR_RETURN(ApplyResult result,
                             DecodeResult(index, *recorded));
    return std::optional<ApplyResult>(std::move(result));
  }
  if (command.sequence < client->floor) {
    return std::optional<ApplyResult>(
        Refused(index, command,
                absl::StrCat("results below sequence ", client->floor,
                             " of client ", command.client_id,
                             " were forgotten: the client declared "
                             "them answered, or held more than ",
                             limits.max_results_per_client, " unanswered")));
  }
  if (stamp < client->horizon) {
    return std::optional<ApplyResult>(Refused(
        index, command,
        absl::StrCat("client ", command.client_id,
                     "'s session was renewed "
                     "after an earlier one was dropped, and the write is "
                     "stamped ",
                     stamp, " us, before the renewal's horizon ",
                     client->horizon, " us")));
  }
  return std::optional<ApplyResult>();
}

absl::Status RecordSession(TableWriter& writer, MetaState& meta,
                           const CommandView& command,
                           const ApplyResult& result,
                           const SessionLimits& limits) {
  const uint64_t id = command.client_id;
  const int64_t stamp = command.time_unix_micros;
  CONFMAN_ASSIGN_OR_RETURN(std::optional<ClientRecord> loaded,
                           LoadClient(writer, id));
  ClientRecord client;
  if (loaded) {
    client = *loaded;
  } else {
    // The horizon CheckSession just applied, before evictions raise it.
    client.horizon = Horizon(meta, limits);
    while (meta.session_count >= limits.max_sessions) {
      CONFMAN_RETURN_IF_ERROR(EvictLeastActive(writer, meta));
    }
    ++meta.session_count;
  }

  const int64_t last_active = std::max(client.last_active, stamp);
  if (!loaded || last_active != client.last_active) {
    if (loaded) {
      CONFMAN_RETURN_IF_ERROR(
          writer.Delete(Table::kSessions, ActivityKey(client.last_active, id)));
    }
    CONFMAN_RETURN_IF_ERROR(
        writer.Put(Table::kSessions, ActivityKey(last_active, id), {}));
    client.last_active = last_active;
  }

  CONFMAN_RETURN_IF_ERROR(writer.Put(Table::kSessions,
                                     ResultKey(id, command.sequence),
                                     {EncodeResult(result)}));
  ++client.results;

  // Forget what the client no longer needs, then whatever exceeds the cap,
  // smallest sequences first; the floor records that they are gone.
  client.floor = std::max(client.floor, command.lowest_unanswered);
  std::vector<uint64_t> forget;
  CONFMAN_RETURN_IF_ERROR(ScanResults(writer, id, [&](uint64_t sequence) {
    if (sequence < client.floor) {
      forget.push_back(sequence);
      return true;
    }
    if (client.results - forget.size() > limits.max_results_per_client) {
      forget.push_back(sequence);
      client.floor = std::max(client.floor, sequence + (sequence < UINT64_MAX));
      return true;
    }
    return false;
  }));
  for (uint64_t sequence : forget) {
    CONFMAN_RETURN_IF_ERROR(
        writer.Delete(Table::kSessions, ResultKey(id, sequence)));
  }
  if (forget.size() > client.results) return Corrupt("client");
  client.results -= forget.size();
  return writer.Put(Table::kSessions, ClientKey(id), {EncodeClient(client)});
}

}  // namespace confman::kv
