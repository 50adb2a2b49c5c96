// confman::Node — one member of a replicated config cluster, embedded in
// the host process.
//
// A Node wires the Raft core (raft/core.h), a durable log (log_store.h), the
// config state machine (kv/) and a transport (transport.h) together on its
// own threads:
//
//   confman-raft     the Raft loop: one thread running the core (ticks,
//                    messages, proposals). Nothing slow runs here, so
//                    heartbeats and votes are answered within milliseconds
//                    whatever the payload size.
//   confman-log      the LMDB log store's group-commit thread; a durable
//                    write reports back to the Raft loop.
//   confman-apply    applies committed entries and installs snapshots,
//                    completes writes, serves reads once their read index
//                    is applied, runs every write and read callback.
//   confman-compact  log compaction and the sweep of replaced large values
//                    (both wait on the log writer's queue).
//   confman-snap     receives the incoming snapshot stream into a sink.
//   confman-snapsnd  one per outgoing snapshot stream, while it runs.
//   confman-watchrd  reads the change history once for all of the
//                    member's watches and hands each change to the
//                    watches it matches (started by the first Watch).
//   confman-watch    NodeOptions::watch_threads of them (default 2),
//                    shared by every watch: they run the watch callbacks.
//                    Neither count grows with the number of watches.
//   confman-netctl,  the TCP transport's I/O threads: control traffic
//   confman-netbulk  (votes, heartbeats, small appends) and bulk traffic
//                    (large appends, snapshot chunks), so bulk never
//                    delays a heartbeat.
//
// Thread safety: every public method may be called from any thread,
// concurrently. Callbacks (async forms, watches) run on the Node's apply or
// watch threads: they must not block and must not call the synchronous
// methods of the same Node (that would wait on the thread running them).
//
// Status mapping (every call):
//   InvalidArgument     the request itself is wrong (empty key, value above
//                       NodeOptions::max_value_bytes, reserved namespace).
//   NotFound            Get of an absent key; Delete of an absent key.
//   FailedPrecondition  a compare-and-set saw another revision (the message
//                       names both); or a membership call on a non-leader
//                       (the message names the leader and its address).
//   Unavailable         certainly not applied: a write that found no
//                       leader within request_timeout (it waits for one,
//                       it does not fail at once), this member's storage
//                       failed (see below), or the Node is closing. For a
//                       read: leadership changed while a linearizable or
//                       lease read waited for its read point (it fails at
//                       once, not at the timeout). Retry, ideally after a
//                       short backoff. Messages name the leader's address
//                       when it is known.
//   DeadlineExceeded    outcome unknown: no answer within
//                       NodeOptions::request_timeout, or the Node closed
//                       while a write it had sent to the leader was in
//                       flight. The write may still take effect later.
//   Aborted             outcome unknown: a write was sent again after its
//                       session's record had expired (see "Exactly once"),
//                       so the state machine could not tell whether the
//                       first attempt took effect, and refused it. Read the
//                       key and decide.
//   ResourceExhausted   the leader holds too many uncommitted or unapplied
//                       bytes (NodeOptions::max_uncommitted_bytes); retry
//                       shortly. For a watch: its callback fell more than
//                       NodeOptions::watch_queue_events behind and the
//                       watch ended (see WatchCallback); resume it.
//   OutOfRange          Watch from a revision whose history was compacted
//                       (see Node::CompactedRevision).
//   DataLoss/Internal   storage could not be opened or read.
// Exactly once: every write carries a session (kv::Command::client_id and
// sequence); the state machine applies a (client_id, sequence) once and
// answers a repeat with the first result (revision, or the compare-and-set
// outcome). The Node stamps its own session on writes that carry none. So
// when the member a write went to stops leading or cannot be reached, the
// Node sends the write again to the next leader, within request_timeout,
// and the caller sees one effect and one answer; a failover costs a write
// about one election, never the whole request_timeout. Session records
// expire by count and age (kv::KvStateMachineOptions), driven by the
// entries' own time stamps, so every member expires the same ones.
// Broken invariant: the member checks its Raft state after every input;
// if it is ever inconsistent (a bug) the member halts for good rather than
// serve from a state it cannot trust: GetStatus().halted says why, every
// request fails with Internal, and it drops out of the cluster, which goes
// on without it.
// Storage failure: when the log store fails a write (disk full, I/O
// error), the member counts node.storage_errors, records the first failure
// in GetStatus().storage_error, refuses every later write with Unavailable
// naming that failure, hands leadership to another voter if it leads, and
// keeps running (kLocal reads of what it applied still work). Reopen it on
// healthy storage to recover.
//
// Addresses: each member's transport address is replicated in the reserved
// namespace "confman.members" (key = decimal member id). AddLearner writes
// it before adding the member, so every member — and a later joiner, via
// its snapshot — learns every address. Hosts cannot write names under
// "confman.".
//
// Metrics (MetricsSink names): counters node.proposals, node.proposals_failed,
// node.forwarded, node.reads, node.applied_entries, node.leader_changes,
// node.snapshots_sent, node.snapshots_received, node.storage_errors;
// histograms node.write_ms, node.read_ms, node.apply_batch_entries,
// node.proposal_batch_entries (writes the leader proposes in one call to
// the Raft core, which share one AppendEntries per follower),
// node.log_write_ms.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "confman/kv/command.h"
#include "confman/kv/model.h"
#include "confman/node_options.h"
#include "confman/raft/member_progress.h"
#include "confman/raft/types.h"

namespace confman {

enum class ReadConsistency : uint8_t {
  // ReadIndex (thesis §6.4): the leader confirms with a quorum, then the
  // serving member waits until it has applied that far. Works on followers.
  kLinearizable,
  // The leader serves from its lease without a quorum round (thesis §6.4.1).
  // Safe under bounded clock drift; on a follower it falls back to
  // kLinearizable.
  kLease,
  // This member's applied state, possibly stale. Never waits for the
  // leader; works during partitions.
  kLocal,
};

struct ReadOptions {
  ReadConsistency consistency = ReadConsistency::kLinearizable;
};

struct WriteOptions {
  // Recorded in the audit trail (kv::Change::actor). Default: "member-<id>".
  std::string actor{};
  // Stored with a put's value, e.g. "application/json". Default empty.
  std::string content_type{};
};

// What GetStatus() reports.
struct NodeStatus {
  raft::MemberId id = raft::kNoMember;
  raft::Role role = raft::Role::kFollower;
  raft::Term term = 0;
  raft::MemberId leader = raft::kNoMember;
  std::string leader_address{};  // Empty when no leader is known.
  raft::Index commit_index = 0;
  raft::Index applied_index = 0;
  raft::Membership membership{};
  std::vector<raft::MemberProgress> progress{};  // On the leader only.
  uint64_t leader_changes = 0;  // Leader changes seen since Open.
  // This member's store revision: the revision of the latest change it has
  // applied (0 before the first).
  uint64_t revision = 0;
  // Highest index in this member's log (durable or not yet).
  raft::Index last_index = 0;
  // The first storage failure; while set, writes are refused.
  absl::Status storage_error{};
  // Set (Internal, naming the invariant) when this member found its Raft
  // state inconsistent: a bug. The member has halted: it sends nothing,
  // persists nothing, applies nothing and refuses every request, reads
  // included. Reopen it (and report the message).
  absl::Status halted{};
};

// An active watch. Cancel() or destroying the handle stops delivery: once
// either returns, no callback of this watch runs again. They return within
// microseconds unless a callback of this watch is running on another
// thread, which they wait for (so keep callbacks short). Called from inside
// this watch's own callback they return at once, and no callback runs
// after the current one. Do not cancel two watches from each other's
// callbacks (each would wait for the other). Safe from any thread, at any
// time, also while or after the Node closes; calling Cancel again is a
// no-op.
class WatchHandle {
 public:
  virtual ~WatchHandle() = default;
  virtual void Cancel() = 0;
};

struct WatchRequest {
  std::string ns{};      // Required.
  std::string prefix{};  // Only keys starting with this; empty for all.
  // Deliver changes with revision > after_revision. Resume a watch by
  // passing the last revision it delivered (a change's revision, a
  // progress revision, or the one its ending status names): no change is
  // missed or delivered twice. Watches that start behind the member's
  // latest revision catch up from the retained history first; 0 replays
  // all of it, so a watch that only wants new changes passes the revision
  // of a List (ListPage::revision) it has just read.
  uint64_t after_revision = 0;
  // Only this one key (exact match); empty for a prefix watch. Setting both
  // key and prefix is InvalidArgument.
  std::string key{};
  // Progress notifications: when the watch has had no change to deliver
  // for progress_interval, on_progress receives a revision R such that
  // every matching change through R has been delivered (R is this member's
  // applied revision for a watch that has caught up). It then repeats
  // every interval while nothing changes, so a client knows its stream is
  // alive and how far it is; R is a valid resume point. Runs like the
  // callback: on a watch thread, never concurrently with it, in order with
  // the changes. Set both fields, or neither (default: none). Notices are
  // sent on time to within a few milliseconds; at least 1 ms.
  std::chrono::milliseconds progress_interval{0};
  std::function<void(uint64_t revision)> on_progress{};
};

// Receives each change in revision order, on a watch thread (shared with
// other watches, see NodeOptions::watch_threads). Callbacks of one watch
// run one at a time; different watches' callbacks may run in parallel.
// A callback must not block: while it runs it holds one of the watch
// threads. A non-OK status is the last callback of the watch:
//   OutOfRange         after_revision (or the member's position, after a
//                      snapshot carried it forward) was compacted from the
//                      history: re-list and watch from the list's revision.
//   ResourceExhausted  the watch fell more than
//                      NodeOptions::watch_queue_events changes behind (its
//                      callback is slower than the change rate); the
//                      undelivered changes were dropped. The message names
//                      the last revision delivered: resume from it.
//   Unavailable        the Node is closing; the message names the revision
//                      to resume from on another member.
//   others             the history could not be read (storage error).
// Cancelled watches get no final status.
using WatchCallback = std::function<void(absl::StatusOr<kv::Change> change)>;

using WriteCallback = std::function<void(absl::StatusOr<uint64_t> revision)>;
using GetCallback = std::function<void(absl::StatusOr<kv::KeyValue> value)>;

class Node {
 public:
  // Opens (or creates) this member's storage, starts the transport and the
  // threads. Returns InvalidArgument for bad options, or the storage or
  // transport error that prevented opening.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Node>> Open(
      NodeOptions options);

  // Calls Close().
  virtual ~Node();

  // Stops in order: refuse new work (Unavailable), drain the apply queue,
  // stop the transport, close storage. Pending reads complete with
  // Unavailable; pending writes already proposed or forwarded to the leader
  // complete with DeadlineExceeded (they may still commit through the other
  // members). Open watches get Unavailable as their last callback. No
  // callback runs after Close returns. Idempotent.
  virtual void Close() = 0;

  virtual NodeStatus GetStatus() const = 0;

  // "host:port" the transport listens on (the chosen port for port 0).
  virtual std::string listen_address() const = 0;

  // --- Writes: each returns the revision the change was stored at. ---------

  [[nodiscard]] virtual absl::StatusOr<uint64_t> Put(
      const std::string& ns, const std::string& key, std::string value,
      const WriteOptions& options = {}) = 0;
  [[nodiscard]] virtual absl::StatusOr<uint64_t> Delete(
      const std::string& ns, const std::string& key,
      const WriteOptions& options = {}) = 0;
  // Writes only if the key's mod_revision equals `expected_revision` (0:
  // the key must not exist); FailedPrecondition otherwise.
  [[nodiscard]] virtual absl::StatusOr<uint64_t> CompareAndSet(
      const std::string& ns, const std::string& key, uint64_t expected_revision,
      std::string value, const WriteOptions& options = {}) = 0;

  // Asynchronous form of every write: `done` runs once, on the apply thread
  // (or the caller's thread for an immediate error). A command with
  // client_id 0 gets this member's session; a host that retries writes
  // itself (across members or restarts) sets client_id, sequence and
  // lowest_unanswered (kv/command.h) and reuses them for each retry.
  virtual void WriteAsync(kv::Command command, const WriteOptions& options,
                          WriteCallback done) = 0;
  // The same, as a future.
  std::future<absl::StatusOr<uint64_t>> WriteFuture(
      kv::Command command, const WriteOptions& options = {});

  // --- Reads
  // ------------------------------------------------------------------

  [[nodiscard]] virtual absl::StatusOr<kv::KeyValue> Get(
      const std::string& ns, const std::string& key,
      const ReadOptions& options = {}) = 0;
  virtual void GetAsync(const std::string& ns, const std::string& key,
                        const ReadOptions& options, GetCallback done) = 0;
  [[nodiscard]] virtual absl::StatusOr<kv::ListPage> List(
      const kv::ListRequest& request, const ReadOptions& options = {}) = 0;

  // Delivers changes under ns/prefix (or to ns/key) after
  // request.after_revision, then every new one, until cancelled, ended
  // (see WatchCallback) or Close(). InvalidArgument for a bad request,
  // Unavailable while closing.
  [[nodiscard]] virtual absl::StatusOr<std::unique_ptr<WatchHandle>> Watch(
      const WatchRequest& request, WatchCallback callback) = 0;

  // Changes at or below this revision were dropped from this member's
  // history (NodeOptions::history_retention); the oldest change still kept
  // is CompactedRevision() + 1. A Watch with after_revision >= it misses
  // nothing; an older one gets OutOfRange. 0 while nothing was dropped.
  [[nodiscard]] virtual absl::StatusOr<uint64_t> CompactedRevision() = 0;

  // The change history, which is also the audit trail: up to `limit`
  // (1..10000) changes with revision > after_revision, oldest first, each
  // naming its actor and time. Reads at options.consistency, like List.
  // OutOfRange when changes after after_revision were already dropped
  // (NodeOptions::history_retention): start again from
  // CompactedRevision(). Resume with the last change's revision, or with
  // ChangePage::revision when the page is empty.
  [[nodiscard]] virtual absl::StatusOr<kv::ChangePage> History(
      uint64_t after_revision, uint32_t limit,
      const ReadOptions& options = {}) = 0;

  // --- Membership (leader only; FailedPrecondition naming the leader)
  // -----------

  // Records `address` for `id` and adds it as a learner: it receives the
  // log (or a snapshot) but does not vote. Returns once the change commits.
  [[nodiscard]] virtual absl::Status AddLearner(raft::MemberId id,
                                                const std::string& address) = 0;
  // Makes a learner a voter (joint consensus). Returns once committed.
  [[nodiscard]] virtual absl::Status PromoteToVoter(raft::MemberId id) = 0;
  // Removes a voter or learner. Returns once committed.
  [[nodiscard]] virtual absl::Status RemoveMember(raft::MemberId id) = 0;
  // Hands leadership to `id`; returns once `id` leads, or DeadlineExceeded.
  [[nodiscard]] virtual absl::Status TransferLeadership(raft::MemberId id) = 0;

 protected:
  Node() = default;
};

}  // namespace confman
