// NodeImpl: the threads and queues behind confman::Node (see node.h for the
// thread layout). Split across files by thread:
//   node_impl.cc      open, close and the public API (caller threads)
//   node_loop.cc      the Raft loop: ticks, Ready handling, transport input
//   node_write.cc     host writes, their retries and forwarding
//   node_apply.cc     the apply thread: applying, completing, serving reads
//   node_peers.cc     the peer directory, refreshed from the applied state
//   node_snapshot.cc  snapshot streams in both directions
//   node_watch.cc     watches
// and, in classes of their own, log_retention.h (compaction and the sweep
// of retained values, on their own thread) and watch_hub.h.
#pragma once

#include <asio.hpp>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <variant>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "closing_error.h"
#include "common/mutex.h"
#include "confman/default_transport.h"
#include "confman/kv/command.h"
#include "confman/kv/kv_state_machine.h"
#include "confman/log_store.h"
#include "confman/node.h"
#include "confman/raft/core.h"
#include "confman/raft/membership.h"
#include "confman/transport.h"
#include "log_retention.h"
#include "watch_hub.h"

namespace confman::node_internal {

using Clock = std::chrono::steady_clock;

// Where internal bookkeeping lives; hosts cannot write here.
inline constexpr char kReservedPrefix[] = "confman.";
inline constexpr char kMembersNamespace[] = "confman.members";

// A random non-zero client id for a member's exactly-once session.
uint64_t NewSessionId();

class NodeImpl final : public Node, public TransportHandler {
 public:
  // `default_transport` builds the transport when options.transport_factory
  // is empty (null: such options are refused).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<NodeImpl>> Open(
      NodeOptions options, DefaultTransportMaker default_transport);
  ~NodeImpl() override;

  // Node.
  void Close() override;
  NodeStatus GetStatus() const override;
  std::string listen_address() const override;
  [[nodiscard]] absl::StatusOr<uint64_t> Put(
      const std::string& ns, const std::string& key, std::string value,
      const WriteOptions& options) override;
  [[nodiscard]] absl::StatusOr<uint64_t> Delete(
      const std::string& ns, const std::string& key,
      const WriteOptions& options) override;
  [[nodiscard]] absl::StatusOr<uint64_t> CompareAndSet(
      const std::string& ns, const std::string& key, uint64_t expected_revision,
      std::string value, const WriteOptions& options) override;
  void WriteAsync(kv::Command command, const WriteOptions& options,
                  WriteCallback done) override;
  [[nodiscard]] absl::StatusOr<kv::KeyValue> Get(
      const std::string& ns, const std::string& key,
      const ReadOptions& options) override;
  void GetAsync(const std::string& ns, const std::string& key,
                const ReadOptions& options, GetCallback done) override;
  [[nodiscard]] absl::StatusOr<kv::ChangePage> History(
      uint64_t after_revision, uint32_t limit,
      const ReadOptions& options) override;
  [[nodiscard]] absl::StatusOr<kv::ListPage> List(
      const kv::ListRequest& request, const ReadOptions& options) override;
  [[nodiscard]] absl::StatusOr<std::unique_ptr<WatchHandle>> Watch(
      const WatchRequest& request, WatchCallback callback) override;
  [[nodiscard]] absl::StatusOr<uint64_t> CompactedRevision() override;
  [[nodiscard]] absl::Status AddLearner(raft::MemberId id,
                                        const std::string& address) override;
  [[nodiscard]] absl::Status PromoteToVoter(raft::MemberId id) override;
  [[nodiscard]] absl::Status RemoveMember(raft::MemberId id) override;
  [[nodiscard]] absl::Status TransferLeadership(raft::MemberId id) override;

  // TransportHandler (transport thread): hand everything to other threads.
  void OnMessage(raft::Message message) override;
  void OnSnapshotChunk(raft::MemberId from,
                       TransportSnapshotChunk chunk) override;
  void OnForward(raft::MemberId from, ForwardFrame frame) override;
  void OnSnapshotAck(raft::MemberId from, TransportSnapshotAck ack) override;
  void OnUnreachable(raft::MemberId member) override;

 private:
  // A write waiting for its entry to be applied (keyed by log index).
  struct PendingWrite {
    raft::Term term = 0;
    WriteCallback done;
    Clock::time_point deadline;
  };
  // A write to propose here, waiting for the rest of the Raft loop's queue
  // to run: the writes that arrive together go to the core in one call, so
  // they share one log write and one Append per follower.
  struct QueuedProposal {
    std::string command;
    WriteCallback done;
    Clock::time_point deadline;
  };
  // A read waiting for its read index (Raft loop only).
  using ReadAt = std::function<void(absl::StatusOr<raft::Index>)>;
  struct PendingRead {
    ReadAt done;
    Clock::time_point deadline;
  };
  // Answers a host's write once, whichever of its attempts answers first
  // (shared by the Raft loop and the apply thread).
  struct WriteAnswer {
    WriteCallback done;
    std::atomic<bool> answered{false};
    // The attempt whose refusal may start another (see OriginWrite).
    std::atomic<uint32_t> current_attempt{0};
    // False if the write was answered already.
    bool Answer(absl::StatusOr<uint64_t> result) {
      if (answered.exchange(true)) return false;
      done(std::move(result));
      return true;
    }
  };
  // A write this member accepted from its host, until the host has its
  // answer (Raft loop only). Its bytes are kept so that, when the member it
  // was sent to stops leading or cannot be reached, it is sent again under
  // the same session id to whoever leads next: the state machine applies a
  // (client, sequence) once and answers a repeat with the first result.
  struct OriginWrite {
    std::string command;
    std::shared_ptr<WriteAnswer> answer;
    Clock::time_point deadline;
    uint32_t attempt = 0;  // Attempts made; the latest is the current one.
    // Where the current attempt went (id_: proposed here); kNoMember while
    // it waits for a leader.
    raft::MemberId target = raft::kNoMember;
    // Who refused or lost the last attempt; retried at once only through
    // another member, otherwise after a heartbeat interval.
    raft::MemberId failed_at = raft::kNoMember;
    Clock::time_point waiting_since;
    // Some attempt left this member: if unanswered, its outcome is unknown.
    bool sent = false;
  };
  // Work for the apply thread, in order.
  struct CommittedBatch {
    std::vector<raft::Entry> entries;
  };
  struct InstallSnapshot {
    std::unique_ptr<SnapshotSink> sink;
    raft::SnapshotMeta meta;
    uint64_t number = 0;  // installs_started_ when it was queued.
  };
  using ApplyTask =
      std::variant<CommittedBatch, InstallSnapshot, std::function<void()>>;
  // The messages that may go only once one log write (in flight or held)
  // is durable.
  struct PendingSends {
    std::vector<raft::Message> messages;
  };
  // A log write that may not reach the log store yet: it resets the log to
  // a snapshot, or follows such a write, and that snapshot's install has
  // not yet committed. The state is thus never behind the log's first entry
  // after a crash.
  struct HeldLogWrite {
    uint64_t after_install = 0;  // Waits until installs_done_ reaches it.
    LogWrite write;
    raft::Index index = 0;  // What to report durable (0: nothing).
    raft::Term term = 0;
  };
  // An incoming snapshot stream (receiver thread only).
  struct IncomingSnapshot {
    raft::MemberId from = raft::kNoMember;
    uint64_t snapshot_id = 0;
    raft::Term term = 0;
    raft::SnapshotMeta meta;
    uint64_t next_seq = 0;
    std::unique_ptr<SnapshotSink> sink;
  };

  NodeImpl(NodeOptions options, DefaultTransportMaker default_transport);
  [[nodiscard]] absl::Status OpenStorage();
  // The factory's store, or the default for `dir` (empty: in memory).
  [[nodiscard]] absl::Status OpenLogStore(const std::string& dir);
  // Once log_ and sm_ are open.
  void CreateLogRetention();
  [[nodiscard]] absl::Status OpenCore();
  [[nodiscard]] absl::Status AlignLogWithState(const AppliedState& applied);
  [[nodiscard]] absl::Status OpenTransport();
  void StartThreads();
  // `closing` fails what certainly did not take effect (reads, new work);
  // `closing_in_flight` the writes that may still commit elsewhere.
  void StopLoop(const absl::Status& closing,
                const absl::Status& closing_in_flight);
  void DrainApply(const absl::Status& closing_in_flight);
  void StopWatches();
  void Log(LogLevel level, const std::string& line) const;
  void Count(std::string_view name, uint64_t delta = 1) const;
  void Sample(std::string_view name, double value) const;
  Clock::time_point Deadline() const;
  std::string DefaultActor() const;
  [[nodiscard]] absl::Status CheckWritable(const std::string& ns) const;
  [[nodiscard]] absl::StatusOr<uint64_t> WaitWrite(kv::Command command,
                                                   const WriteOptions& options);
  [[nodiscard]] absl::Status NotLeaderError(raft::MemberId leader,
                                            const char* what) const;
  std::string AddressOf(raft::MemberId id) const;
  [[nodiscard]] absl::Status ProposeMembershipOnce(
      raft::MembershipChange change);
  [[nodiscard]] absl::Status ProposeMembership(raft::MembershipChange change);
  // Runs `read` once a read point for `options` is applied (or at once for
  // kLocal); `fail` receives the error otherwise. On the apply thread.
  void AtReadPoint(const ReadOptions& options, std::function<void()> read,
                   std::function<void(absl::Status)> fail);
  // A read served from sm_ on the caller's thread: false (not entered) once
  // the node is closing; otherwise pair with LeaveCallerRead.
  bool EnterCallerRead() const;
  void LeaveCallerRead() const;

  // Raft loop (node_loop.cc).
  void ScheduleTick();
  void OnTick();
  void ProcessReady();
  void HandleReady(raft::Ready ready);
  void SendMessages(std::vector<raft::Message> messages);
  void SubmitLogWrite(raft::Ready& ready);
  void WriteLog(LogWrite write, raft::Index index, raft::Term term);
  void ReleaseHeldLogWrites();
  void OnLogWriteDone(absl::Status status, raft::Index index, raft::Term term);
  void HandleReadStates(std::vector<raft::ReadState> states);
  void HandleFailedReads(const std::vector<std::string>& contexts);
  // Queues a write to propose (see QueuedProposal) and schedules the pass
  // that proposes it.
  void ProposeLocal(std::string command, WriteCallback done,
                    Clock::time_point deadline);
  // Proposes every queued write, in as few core calls as max_append_bytes
  // allows.
  void ProposeQueued();
  // Runs ProposeQueued and ProcessReady once the handlers already queued on
  // the loop have run, so that the inputs arriving together (proposals,
  // messages, log and apply reports) yield one Ready instead of one each.
  void ProcessReadySoon();

  // Host writes (node_write.cc), on the Raft loop unless noted.
  // Stamps this member's session on `command` unless the host set its own
  // (any thread).
  void StampSession(kv::Command& command);
  // The host has the answer to a write of this member's session.
  void SessionAnswered(uint64_t client_id, uint64_t sequence);
  void StartWrite(std::string command, std::shared_ptr<WriteAnswer> answer,
                  Clock::time_point deadline);
  // Sends the write's next attempt to the leader (proposes it here when this
  // member leads), or leaves it waiting for one.
  void SendAttempt(uint64_t request_id, OriginWrite& write);
  // What an attempt's answer does (any thread): the final answer, or a
  // retry of a write that was not applied or whose outcome is unknown.
  WriteCallback AttemptDone(uint64_t request_id, uint32_t attempt,
                            std::shared_ptr<WriteAnswer> answer);
  void OnAttemptRefused(uint64_t request_id, uint32_t attempt,
                        const absl::Status& status);
  // Writes whose current attempt went to a member that no longer leads (or
  // that cannot be reached) are sent again to the leader, if one is known.
  void RedirectWrites(raft::MemberId unreachable = raft::kNoMember);
  void RetryWaitingWrites();
  void ExpireWrites(Clock::time_point now);
  void FailWrites(const absl::Status& unsent, const absl::Status& sent);
  void ForgetAnsweredWrites();
  void HandleForwardRequest(raft::MemberId from, ForwardFrame frame);
  void HandleForwardResponse(raft::MemberId from, ForwardFrame frame);
  void StartRead(raft::ReadMode mode, ReadAt done, Clock::time_point deadline);
  void ExpireRequests();
  void RefreshStatusCache();
  void FailStorage(const absl::Status& status);
  void HandOffLeadership();
  // Unavailable naming the storage failure (and the leader), or OK.
  [[nodiscard]] absl::Status StorageFailedError() const;
  // Reads and unsent writes get `reads`; writes sent somewhere `writes`.
  void FailLoopRequests(const absl::Status& reads, const absl::Status& writes);
  // A broken invariant: stop for good (Raft loop).
  void Halt(const absl::Status& cause);
  // Internal naming why the member halted, or OK.
  [[nodiscard]] absl::Status HaltedError() const;
  [[nodiscard]] absl::Status CheckCoreInvariants() const;

  // Apply thread (node_apply.cc).
  void EnqueueApply(ApplyTask task);
  void RunOnApplyThread(std::function<void()> task);
  void ApplyLoop();
  void RunApplyTask(ApplyTask& task);
  void ApplyBatch(std::vector<raft::Entry> entries);
  void CompleteWrites(const std::vector<ApplyResult>& results,
                      const std::map<raft::Index, raft::Term>& terms);
  void FailPendingWrites(const absl::Status& status, bool only_expired);
  void InstallStaged(InstallSnapshot install);
  // TEST ONLY: NodeTestingFault::kSkipApplies.
  void SkipAppliesForTesting(std::vector<raft::Entry>& entries);
  void ServeReadsUpTo(raft::Index applied);
  void AddWaitingRead(raft::Index index, std::function<void()> read);

  // Peer directory (node_peers.cc): tells the transport about members
  // recorded in the applied state, and forgets those that left since
  // `previous` (null: add only). Apply thread, or Open.
  void RefreshPeers(const raft::Membership* previous);
  std::optional<raft::Membership> AppliedMembership();

  // Snapshots (node_snapshot.cc).
  void StartSnapshotSend(raft::MemberId to);
  void SendSnapshot(raft::MemberId to, raft::Term term, uint64_t snapshot_id);
  void ReceiveLoop();
  void ReceiveChunk(raft::MemberId from, TransportSnapshotChunk chunk);
  [[nodiscard]] absl::Status BeginIncoming(raft::MemberId from,
                                           TransportSnapshotChunk& chunk);
  void FinishIncoming();
  bool AckChunk(raft::MemberId to, uint64_t snapshot_id, uint64_t seq);
  // Waits until fewer than a window of chunks through `seq` are
  // unacknowledged. False on timeout, close, or once this member no longer
  // leads in `term`.
  bool WaitForWindow(uint64_t snapshot_id, uint64_t seq, raft::Term term);
  void JoinSnapshotThreads();
  void ReleaseSnapshotFloors(const raft::CoreStatus& core);
  // The lowest index a snapshot being sent (or awaiting its follower's
  // acknowledgement) was taken at; compaction stays below it. All ones if
  // none.
  raft::Index SnapshotFloor() const;

  // Concurrency. Each field below says who owns it: a thread (only that
  // thread touches it), a lock (ABSL_GUARDED_BY), or atomic. Threads are
  // listed in node.h.
  //
  // Locks are common::Mutex. Lock order: close_mu_ is held for the whole of
  // Close and taken before any other; apart from it, no lock is taken while
  // another is held, and none is held while host code runs. (watch_hub_ has
  // locks of its own, ordered in watch_hub.h; no NodeImpl lock is held
  // while calling into it, and it calls nothing back in NodeImpl.)
  //
  // Set by Open, then read-only on every thread until the destructor.
  NodeOptions options_;
  raft::MemberId id_;
  DefaultTransportMaker default_transport_;
  std::unique_ptr<LogStore> log_;
  // The config store. The node applies to it and snapshots it through
  // StateMachine, and serves reads and watches through its kv interface.
  std::unique_ptr<kv::KvStateMachine> sm_;
  // Compaction and the sweep of retained values: uses log_ and sm_ (as
  // StateMachine and LogEntryReferences only); created with them.
  std::unique_ptr<LogRetention> retention_;
  std::unique_ptr<Transport> transport_;
  std::string listen_address_;
  std::atomic<bool> closing_{false};
  // Reads inside sm_ on callers' threads; Close waits for none before it
  // destroys sm_.
  mutable std::atomic<int> caller_reads_{0};
  std::atomic<bool> closed_{false};
  common::Mutex close_mu_;  // Serializes Close().

  // Raft loop thread (confman-raft) only, from here to pending_writes_.

  asio::io_context loop_;  // Thread-safe: other threads post to it.
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>>
      loop_work_;
  std::unique_ptr<asio::steady_timer> tick_timer_;
  std::thread loop_thread_;
  std::unique_ptr<raft::Core> core_;
  // One per log write submitted or held, in Ready order.
  std::deque<PendingSends> pending_sends_;
  std::deque<HeldLogWrite> held_log_writes_;
  uint64_t installs_started_ = 0;  // Snapshots handed to the apply thread.
  uint64_t installs_done_ = 0;     // Of those, committed (reported back).
  std::unordered_map<uint64_t, PendingRead> pending_reads_;
  std::map<uint64_t, OriginWrite> origin_writes_;  // By request id.
  uint64_t origin_write_bytes_ = 0;                // Their commands' bytes.
  // Where this member's writes go now: id_ when it leads, else the leader.
  raft::MemberId write_target_ = raft::kNoMember;
  bool writes_waiting_ = false;  // Some write may wait for a leader.
  uint64_t next_request_id_ = 1;
  std::vector<QueuedProposal> queued_proposals_;
  bool ready_pass_posted_ = false;  // A ProcessReadySoon pass is queued.
  std::unique_ptr<SnapshotSink> staged_sink_;  // Awaiting snapshot_to_install.
  raft::MemberId last_leader_ = raft::kNoMember;
  raft::Role last_role_ = raft::Role::kFollower;
  raft::Term last_term_ = 0;
  raft::Membership last_membership_;
  uint64_t ticks_ = 0;
  // The last revision NodeTestingFault::kAckBeforeCommit handed out.
  uint64_t testing_predicted_revision_ = 0;

  // This member's exactly-once session: the client id stamped on its
  // hosts' writes and their sequence numbers; per session (the current one
  // and older ones with writes still out), the sequences not yet answered.
  // The lowest tells the state machine which results it may forget; when
  // it falls half of session_max_results behind, a new session starts, so
  // the state machine never forgets a result this member may still ask for.
  common::Mutex session_mu_;
  uint64_t session_id_ ABSL_GUARDED_BY(session_mu_);
  uint64_t next_sequence_ ABSL_GUARDED_BY(session_mu_) = 1;
  std::map<uint64_t, std::set<uint64_t>> unanswered_sequences_
      ABSL_GUARDED_BY(session_mu_);
  // Request ids of writes answered off the loop, for the loop to forget.
  common::Mutex answered_mu_;
  std::vector<uint64_t> answered_writes_ ABSL_GUARDED_BY(answered_mu_);

  // Inserted on the loop, completed on the apply thread.
  common::Mutex writes_mu_;
  std::map<raft::Index, PendingWrite> pending_writes_
      ABSL_GUARDED_BY(writes_mu_);

  // The apply thread's queue: any thread enqueues.
  common::Mutex apply_mu_;
  common::CondVar apply_cv_;
  std::deque<ApplyTask> apply_queue_ ABSL_GUARDED_BY(apply_mu_);
  bool apply_stop_ ABSL_GUARDED_BY(apply_mu_) = false;
  // The thread returned; run tasks inline.
  bool apply_exited_ ABSL_GUARDED_BY(apply_mu_) = false;
  std::thread apply_thread_;  // Started by Open, joined by Close.
  // Apply thread (confman-apply) only.
  std::multimap<raft::Index, std::function<void()>> waiting_reads_;
  // Unconditional puts in host namespaces applied since Open; counted only
  // while NodeTestingFault::kSkipApplies is set.
  uint64_t testing_host_puts_applied_ = 0;

  std::atomic<raft::Index> applied_{0};
  // Entry bytes committed but not yet applied. The leader refuses new
  // writes while it exceeds max_uncommitted_bytes, so a slow state machine
  // bounds memory instead of queueing without limit.
  std::atomic<uint64_t> apply_backlog_bytes_{0};

  // Every watch (thread-safe; node_watch.cc). The apply thread tells it
  // when the revision moves; Close stops it before destroying sm_. Shared
  // with the watch handles, which may outlive this Node.
  const std::shared_ptr<WatchHub> watch_hub_ = std::make_shared<WatchHub>();

  // Snapshot streams: the loop starts senders, sender threads
  // (confman-snapsnd) stream, the receiver thread (confman-snap) writes
  // what the transport thread queues.
  mutable common::Mutex snapshot_mu_;
  // Per follower being sent a snapshot: its index.
  std::map<raft::MemberId, raft::Index> snapshot_floors_
      ABSL_GUARDED_BY(snapshot_mu_);
  std::map<raft::MemberId, std::thread> senders_ ABSL_GUARDED_BY(snapshot_mu_);
  std::set<raft::MemberId> sending_ ABSL_GUARDED_BY(snapshot_mu_);
  common::CondVar receive_cv_;
  std::deque<std::pair<raft::MemberId, TransportSnapshotChunk>> receive_queue_
      ABSL_GUARDED_BY(snapshot_mu_);
  size_t receive_queue_bytes_ ABSL_GUARDED_BY(snapshot_mu_) = 0;
  std::thread receiver_;
  std::optional<IncomingSnapshot> incoming_;  // Receiver thread only.
  std::atomic<uint64_t> next_snapshot_id_{1};
  // The term this member leads in, 0 while it does not (set by the loop):
  // senders give up a stream started under another leadership.
  std::atomic<raft::Term> leading_term_{0};
  // Per outgoing stream: its receiver, and the chunks the receiver has
  // written (seq + 1), so a sender keeps a bounded window in flight. Only
  // the receiver's acknowledgements count.
  struct OutgoingStream {
    raft::MemberId to = raft::kNoMember;
    uint64_t acked = 0;
  };
  std::map<uint64_t, OutgoingStream> snapshot_acked_
      ABSL_GUARDED_BY(snapshot_mu_);
  common::CondVar snapshot_ack_cv_;

  // Peer addresses known to this member (options plus replicated ones).
  mutable common::Mutex peers_mu_;
  std::map<raft::MemberId, std::string> addresses_ ABSL_GUARDED_BY(peers_mu_);

  // GetStatus() cache, refreshed by the loop.
  mutable common::Mutex status_mu_;
  NodeStatus status_ ABSL_GUARDED_BY(status_mu_);
  std::atomic<uint64_t> leader_changes_{0};
  // Fresher than status_: updated after every Ready.
  std::atomic<raft::Index> commit_index_{0};
  absl::Status storage_error_ ABSL_GUARDED_BY(status_mu_);
  absl::Status halted_error_ ABSL_GUARDED_BY(status_mu_);
  // Halt ran: every entry point refuses work without taking status_mu_.
  std::atomic<bool> halted_{false};
  // FailStorage ran (on the loop or the apply thread); storage_error_ says
  // why. Lets the loop check without taking status_mu_ every tick.
  std::atomic<bool> storage_failed_{false};
};

}  // namespace confman::node_internal
