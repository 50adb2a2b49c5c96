// Value types shared by the Raft core, its drivers, storage and transport.
//
// These are plain aggregates with no behaviour beyond comparison: the core
// produces and consumes them, storage persists them and the transport
// encodes them. Nothing here allocates beyond the std containers it holds
// and an entry's shared payload.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "confman/raft/payload.h"

namespace confman::raft {

// A cluster member's identity. 0 is reserved for "none" (no vote, no known
// leader); real members use any other value, chosen by the host.
using MemberId = uint64_t;
inline constexpr MemberId kNoMember = 0;

// A Raft term. Starts at 0 for a brand-new member; elections increment it.
using Term = uint64_t;

// A log position. Index 0 is the empty log's "previous entry"; the first real
// entry is at index 1.
using Index = uint64_t;

enum class EntryType : uint8_t {
  // Opaque application bytes (for confman, an encoded config command).
  kNormal = 0,
  // The empty entry a new leader appends at the start of its term; a leader
  // serves ReadIndex only once this entry has committed (thesis §6.4).
  kNoop = 1,
  // An encoded Membership (see EncodeMembership in membership.h). Takes
  // effect in the core when it hands the committed entry out for applying.
  kMembership = 2,
};

struct Entry {
  Term term = 0;
  Index index = 0;
  EntryType type = EntryType::kNormal;
  // Shared between the copies of an entry, never copied (payload.h).
  Payload data;

  friend bool operator==(const Entry&, const Entry&) = default;
};

// The state a member must make durable before it answers messages that
// depend on it (thesis §3.8, Figure 3.1 "persistent state").
struct HardState {
  Term term = 0;
  MemberId vote = kNoMember;  // Whom this member voted for in `term`.
  Index commit = 0;           // Known-committed index (an optimisation).

  friend bool operator==(const HardState&, const HardState&) = default;
};

// A cluster configuration. While `voters_outgoing` is non-empty the cluster
// is in a joint configuration (thesis §4.3): elections and commitment need a
// majority of `voters` AND a majority of `voters_outgoing`.
//
// Invariant: the three lists are each sorted and free of duplicates, and
// `learners` shares no member with `voters` or `voters_outgoing`.
struct Membership {
  std::vector<MemberId> voters;
  std::vector<MemberId> voters_outgoing;
  std::vector<MemberId> learners;

  bool joint() const { return !voters_outgoing.empty(); }
  friend bool operator==(const Membership&, const Membership&) = default;
};

// Describes a state-machine snapshot: the state after applying every entry
// through `index` (whose term is `term`), under `membership`.
struct SnapshotMeta {
  Index index = 0;
  Term term = 0;
  Membership membership;

  friend bool operator==(const SnapshotMeta&, const SnapshotMeta&) = default;
};

enum class MessageType : uint8_t {
  kPreVote = 0,  // "Would you vote for me?" without a term bump.
  kPreVoteResponse = 1,
  kVote = 2,  // RequestVote.
  kVoteResponse = 3,
  kAppend = 4,  // AppendEntries carrying entries.
  kAppendResponse = 5,
  kHeartbeat = 6,  // Entry-less AppendEntries: liveness, commit, reads.
  kHeartbeatResponse = 7,
  kSnapshot = 8,    // "A snapshot for you is installed/staged".
  kTimeoutNow = 9,  // Leadership transfer: campaign immediately.
  kReadIndex = 10,  // A follower asks the leader for a read index.
  kReadIndexResponse = 11,
};

// One Raft message. Which fields carry meaning depends on `type`:
//
//   kPreVote/kVote:     log_index/log_term = candidate's last entry;
//                       `transfer` = campaign triggered by TimeoutNow.
//   k*VoteResponse:     reject.
//   kAppend:            log_index/log_term = entry preceding `entries`;
//                       commit = leader's commit index.
//   kAppendResponse:    success: log_index = highest index known to match.
//                       reject: log_index = the rejected log_index,
//                       hint_index/hint_term = where the leader should look
//                       next (fast backtracking, thesis §3.5).
//   kHeartbeat:         commit (never beyond the follower's match), round.
//   kHeartbeatResponse: round echoed back.
//   kSnapshot:          snapshot (leader → follower, after the driver has
//                       transferred and staged the data).
//   kReadIndex:         context.
//   kReadIndexResponse: context; log_index = the read index; reject when the
//                       leader cannot serve reads.
struct Message {
  MessageType type = MessageType::kHeartbeat;
  MemberId from = kNoMember;
  MemberId to = kNoMember;
  Term term = 0;
  Index log_index = 0;
  Term log_term = 0;
  Index commit = 0;
  std::vector<Entry> entries;
  bool reject = false;
  Index hint_index = 0;
  Term hint_term = 0;
  uint64_t round = 0;
  bool transfer = false;
  std::string context;
  std::optional<SnapshotMeta> snapshot;

  friend bool operator==(const Message&, const Message&) = default;
};

const char* MessageTypeName(MessageType type);

}  // namespace confman::raft
