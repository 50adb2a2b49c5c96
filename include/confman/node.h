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
//   confman-watch    one per open watch; runs that watch's callback.
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
//   Unavailable         no leader is known, leadership changed while the
//                       write was in flight (it did not take effect) or
//                       while a linearizable or lease read waited for its
//                       read point (it fails at once, not at the timeout),
//                       this member's storage failed (see below), or the
//                       Node is closing. Retry, ideally after a short
//                       backoff. Messages name the leader's address when
//                       it is known.
//   DeadlineExceeded    no answer within NodeOptions::request_timeout, or
//                       the Node closed while a write it had proposed or
//                       forwarded was in flight. The write may still take
//                       effect later.
//   ResourceExhausted   the leader holds too many uncommitted or unapplied
//                       bytes (NodeOptions::max_uncommitted_bytes); retry
//                       shortly.
//   OutOfRange          Watch from a revision whose history was compacted.
//   DataLoss/Internal   storage could not be opened or read.
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
// node.log_write_ms.
#pragma once

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
#include "confman/raft/core.h"
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
  // The first storage failure; while set, writes are refused.
  absl::Status storage_error{};
  // Set (Internal, naming the invariant) when this member found its Raft
  // state inconsistent: a bug. The member has halted: it sends nothing,
  // persists nothing, applies nothing and refuses every request, reads
  // included. Reopen it (and report the message).
  absl::Status halted{};
};

// An active watch. Destroying it (or calling Cancel) stops delivery; after
// Cancel returns no more events for it are delivered.
class WatchHandle {
 public:
  virtual ~WatchHandle() = default;
  virtual void Cancel() = 0;
};

struct WatchRequest {
  std::string ns{};      // Required.
  std::string prefix{};  // Only keys starting with this; empty for all.
  // Deliver changes with revision > after_revision. Resume a watch by
  // passing the last revision it delivered: no change is missed or
  // delivered twice.
  uint64_t after_revision = 0;
};

// Receives each change in revision order, on the watch's own thread. A
// non-OK status ends the watch (OutOfRange: after_revision was compacted —
// re-list and watch from the list's revision; Unavailable: the Node is
// closing).
using WatchCallback =
    std::function<void(absl::StatusOr<kv::Change> change)>;

using WriteCallback = std::function<void(absl::StatusOr<uint64_t> revision)>;
using GetCallback = std::function<void(absl::StatusOr<kv::KeyValue> value)>;

class Node {
 public:
  // Opens (or creates) this member's storage, starts the transport and the
  // threads. Returns InvalidArgument for bad options, or the storage or
  // transport error that prevented opening.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Node>> Open(NodeOptions options);

  // Calls Close().
  virtual ~Node();

  // Stops in order: refuse new work (Unavailable), drain the apply queue,
  // stop the transport, close storage. Pending reads complete with
  // Unavailable; pending writes already proposed or forwarded to the leader
  // complete with DeadlineExceeded (they may still commit through the other
  // members). No callback runs after Close returns. Idempotent.
  virtual void Close() = 0;

  virtual NodeStatus GetStatus() const = 0;

  // "host:port" the transport listens on (the chosen port for port 0).
  virtual std::string listen_address() const = 0;

  // --- Writes: each returns the revision the change was stored at. ---------

  [[nodiscard]] virtual absl::StatusOr<uint64_t> Put(const std::string& ns,
                                       const std::string& key,
                                       std::string value,
                                       const WriteOptions& options = {}) = 0;
  [[nodiscard]] virtual absl::StatusOr<uint64_t> Delete(const std::string& ns,
                                          const std::string& key,
                                          const WriteOptions& options = {}) = 0;
  // Writes only if the key's mod_revision equals `expected_revision` (0:
  // the key must not exist); FailedPrecondition otherwise.
  [[nodiscard]] virtual absl::StatusOr<uint64_t> CompareAndSet(
      const std::string& ns, const std::string& key,
      uint64_t expected_revision, std::string value,
      const WriteOptions& options = {}) = 0;

  // Asynchronous form of every write: `done` runs once, on the apply thread
  // (or the caller's thread for an immediate error).
  virtual void WriteAsync(kv::Command command, const WriteOptions& options,
                          WriteCallback done) = 0;
  // The same, as a future.
  std::future<absl::StatusOr<uint64_t>> WriteFuture(
      kv::Command command, const WriteOptions& options = {});

  // --- Reads ------------------------------------------------------------------

  [[nodiscard]] virtual absl::StatusOr<kv::KeyValue> Get(const std::string& ns,
                                           const std::string& key,
                                           const ReadOptions& options = {}) = 0;
  virtual void GetAsync(const std::string& ns, const std::string& key,
                        const ReadOptions& options, GetCallback done) = 0;
  [[nodiscard]] virtual absl::StatusOr<kv::ListPage> List(const kv::ListRequest& request,
                                            const ReadOptions& options = {}) = 0;

  // Delivers changes under ns/prefix after request.after_revision, then
  // every new one, until cancelled or Close().
  [[nodiscard]] virtual absl::StatusOr<std::unique_ptr<WatchHandle>> Watch(
      const WatchRequest& request, WatchCallback callback) = 0;

  // --- Membership (leader only; FailedPrecondition naming the leader) -----------

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
