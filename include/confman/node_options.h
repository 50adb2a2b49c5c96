// NodeOptions: everything a host decides when it opens a confman::Node.
//
// An aggregate: build it with designated initializers and leave every field
// you do not care about at its default. Node::Open calls Validate() and
// refuses options that break a rule below, naming the field.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "confman/log_store.h"
#include "confman/metrics.h"
#include "confman/raft/types.h"
#include "confman/transport.h"

namespace confman {

// A cluster member and where its transport listens ("host:port", host an IP
// address).
struct PeerAddress {
  raft::MemberId id = raft::kNoMember;
  std::string address{};

  friend bool operator==(const PeerAddress&, const PeerAddress&) = default;
};

struct NodeOptions {
  // --- Identity -----------------------------------------------------------

  // This member's id: non-zero, unique in the cluster, never reused for a
  // different data directory. Required.
  raft::MemberId id = raft::kNoMember;

  // Names the cluster; members presenting another id are refused. Required.
  std::string cluster_id{};

  // Shared by every member; proves membership during the transport
  // handshake. Required, at least 16 bytes.
  std::string shared_secret{};

  // "host:port" this member listens on. Port 0 picks a free port
  // (Node::listen_address() tells which). Required.
  std::string listen_address{};

  // --- Bootstrap ------------------------------------------------------------

  // The founding voters of a brand-new cluster, this member included, with
  // their addresses. A member uses it as its configuration until its
  // storage has recorded a configuration change (then storage wins), so
  // pass the same list on every restart.
  // Every member's address is also recorded in the replicated state (see
  // node.h, "Addresses"), so members added later need not be listed.
  std::vector<PeerAddress> initial_members{};

  // Join an existing cluster instead of founding one: the member starts
  // with no membership and waits until a leader adds it (Node::AddLearner)
  // and sends it a snapshot. initial_members then lists the existing
  // members' addresses only, so this member can answer them. Default false.
  bool join = false;

  // --- Storage --------------------------------------------------------------

  // Directory for the member's durable state (two LMDB environments: the
  // Raft log and the config state). Created if missing. Empty: keep all
  // state in memory (tests only; a restart forgets everything).
  std::string data_dir{};

  // --- Timing ---------------------------------------------------------------

  // The Raft loop's clock resolution. Every other duration below is rounded
  // to whole ticks. Default 10 ms.
  std::chrono::milliseconds tick_interval{10};
  // A follower that hears from no leader for a random time in
  // [election_timeout, 2 * election_timeout) starts an election, and a
  // leader that hears from no quorum for election_timeout steps down. So a
  // leader's crash costs writes between one and two election timeouts.
  // Default 150 ms: within one datacenter (round trips well under 1 ms) a
  // failover then takes about 200 ms, and a 1 MiB write load on two cores
  // holds leadership steady, since heartbeats never queue behind bulk
  // traffic. Rule for other networks: at least 10 round trips between
  // members, and at least 5 tick_intervals (checked). Raise it if the host
  // can stall its threads for that long.
  std::chrono::milliseconds election_timeout{150};
  // How often a leader sends heartbeats. Default 30 ms; at most a third of
  // election_timeout (checked), so that one lost heartbeat never starts an
  // election.
  std::chrono::milliseconds heartbeat_interval{30};
  // How long a call waits for its result before returning DeadlineExceeded
  // (the operation may still take effect). Writes whose leader is lost go
  // again to the next one within this time. Default 5 s; at least two
  // election timeouts (checked), so a write outlives a failover.
  std::chrono::milliseconds request_timeout{5000};

  // --- Size budget ------------------------------------------------------------
  // One chain, checked at open: max_value_bytes <= max_append_bytes <=
  // max_frame_bytes, and snapshot_chunk_bytes <= max_frame_bytes.

  // Largest value a write may carry, in bytes (before compression).
  // Larger writes fail with InvalidArgument. Default 4 MiB.
  uint64_t max_value_bytes = uint64_t{4} << 20;
  // Entry bytes per AppendEntries message (one larger entry still goes
  // alone). Default 8 MiB.
  uint64_t max_append_bytes = uint64_t{8} << 20;
  // Largest frame the transport sends or accepts. Default 64 MiB.
  uint64_t max_frame_bytes = uint64_t{64} << 20;
  // Snapshot data bytes per chunk on the wire. Default 1 MiB.
  uint64_t snapshot_chunk_bytes = uint64_t{1} << 20;
  // Proposed but not yet committed entry bytes the leader holds before new
  // writes fail with ResourceExhausted. Every member also holds at most
  // this many bytes of committed entries waiting to be applied; the rest
  // wait in the log on disk. Default 64 MiB; at least max_append_bytes.
  uint64_t max_uncommitted_bytes = uint64_t{64} << 20;

  // Changes kept for Watch and the audit trail; older ones are dropped as
  // new ones arrive, and a watch resuming before them gets OutOfRange.
  // Default 100,000.
  uint64_t history_retention = 100000;

  // --- Exactly-once sessions (node.h, "Exactly once") ------------------------
  // These decide which writes apply, so they MUST be the same on every
  // member and across restarts (members that disagree diverge).

  // Clients (session ids) remembered at once; the least recently active
  // is forgotten first. 1..1,000,000. Default 10,000.
  uint64_t session_max_clients = 10000;
  // A client with no write for this long, by the entries' own time stamps,
  // is forgotten. At least 1 s, and longer than any client retries a
  // write plus the clock skew between members. Default 10 minutes.
  std::chrono::seconds session_ttl{600};
  // Results remembered per client, 2..65,536. The Node keeps its own
  // session within half of it: when its oldest unanswered write falls that
  // far behind, new writes start a fresh session. Default 65,536 (about
  // 2.5 MiB of records per client at most).
  uint64_t session_max_results = 65536;

  // --- Log compaction -------------------------------------------------------

  // Entries kept in the log behind the applied index, so a briefly lagging
  // follower catches up from the log instead of a snapshot. Default 256.
  uint64_t log_keep_entries = 256;
  // Compaction runs after this many entries have been applied since the
  // last one. Default 128; at least 1.
  uint64_t log_compact_every = 128;
  // A value whose write entry is at least this many bytes (value plus about
  // 100 bytes of key and metadata, after compression) is stored once: it
  // stays in its Raft log entry, which the log keeps after compaction until
  // the key changes, and the state machine records where it is. Smaller
  // values are copied into the state machine, where many of them share
  // pages. 0 copies every value. Keep it the same across restarts of a
  // member. Default 64 KiB.
  uint64_t value_in_log_min_bytes = uint64_t{64} << 10;

  // --- Watches --------------------------------------------------------------

  // Threads that run watch callbacks (named confman-watch), shared by every
  // watch of this member, plus one that reads the history for all of them.
  // Callbacks of one watch run one at a time; callbacks of different
  // watches run on up to this many threads at once, so a slow callback
  // delays only its own watch while it leaves one free. Default 2; 1..64.
  uint32_t watch_threads = 2;
  // Events (changes and progress notices) one watch may have waiting for
  // its callback. A watch whose callback falls further behind ends with
  // ResourceExhausted naming the last revision it delivered, from which it
  // can resume. Bounds a stalled watch's memory at about 16 bytes per event
  // (changes are shared between watches). Default 10,000; 1..10,000,000.
  uint64_t watch_queue_events = 10000;

  // --- Hooks ----------------------------------------------------------------

  // Optional; both must outlive the Node. Null: metrics are dropped and log
  // lines go to stderr at kWarning and above.
  MetricsSink* metrics = nullptr;
  LogSink* log = nullptr;

  // Builds the member's transport instead of the default TcpTransport
  // (e.g. an InMemoryTransport in tests). Called once by Node::Open with
  // this member's id; listen_address is then reported as given.
  std::function<absl::StatusOr<std::unique_ptr<Transport>>(raft::MemberId)>
      transport_factory{};

  // For tests and hosts with their own log storage (e.g. a
  // FaultInjectingLogStore around a real store, to exercise disk failure).
  // Builds the member's Raft log instead of the default: an LmdbLogStore in
  // `dir`, or a MemoryLogStore when data_dir is empty. Called once by
  // Node::Open, on the calling thread, with data_dir + "/log" (empty when
  // data_dir is empty; the directory may not exist yet); an error, or a
  // null store (InvalidArgument), fails the Open.
  // Ownership: the Node owns the returned store and destroys it in Close or
  // its destructor. Anything the store refers to without owning it (e.g.
  // the store a FaultInjectingLogStore wraps) must outlive the Node; a
  // caller keeping a raw pointer to the returned store may use it only
  // while the Node is open.
  std::function<absl::StatusOr<std::unique_ptr<LogStore>>(
      const std::string& dir)>
      log_store_factory{};

  // TEST ONLY. A bitwise OR of confman::testing::NodeTestingFault values
  // (confman/testing/node_faults.h), each making this member break one of
  // its guarantees on purpose so a fault harness can prove it notices.
  // Default 0: none. Never set it in production.
  uint32_t testing_faults = 0;

  // Returns InvalidArgument naming the first field that breaks its rule.
  [[nodiscard]] absl::Status Validate() const;
};

}  // namespace confman
