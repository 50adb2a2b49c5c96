// NodeImpl's opening and closing, and the public API that runs on the
// caller's thread: storage and core set-up (aligning the log with a state
// that a crash left ahead of it), the close sequence and its ordering,
// reads at a read point, and membership changes.
#include "node_impl.h"

#include <pthread.h>

#include <cstdio>
#include <filesystem>
#include <future>
#include <utility>

#include "absl/strings/str_cat.h"
#include "confman/status_macros.h"
#include "confman/storage/lmdb.h"
#include "confman/storage/memory.h"
#include "confman/testing/node_faults.h"

namespace confman {

Node::~Node() = default;

std::future<absl::StatusOr<uint64_t>> Node::WriteFuture(
    kv::Command command, const WriteOptions& options) {
  auto promise = std::make_unique<std::promise<absl::StatusOr<uint64_t>>>();
  auto future = promise->get_future();
  WriteAsync(std::move(command), options,
             [p = promise.release()](absl::StatusOr<uint64_t> result) {
               std::unique_ptr<std::promise<absl::StatusOr<uint64_t>>> owned(p);
               owned->set_value(std::move(result));
             });
  return future;
}

namespace node_internal {
namespace {

// Waits on a future for at most `timeout` past the request deadline, so a
// call never hangs even if a callback were lost.
template <typename T>
[[nodiscard]] absl::StatusOr<T> Await(std::future<absl::StatusOr<T>> future,
                        std::chrono::milliseconds timeout) {
  if (future.wait_for(timeout + std::chrono::seconds(1)) !=
      std::future_status::ready) {
    return absl::DeadlineExceededError(
        "no answer within the request timeout; the operation may still take "
        "effect");
  }
  return future.get();
}

// A callback that fulfils a promise, and the future to wait on.
template <typename T>
std::pair<std::function<void(absl::StatusOr<T>)>,
          std::future<absl::StatusOr<T>>>
MakeCompletion() {
  auto promise = std::make_shared<std::promise<absl::StatusOr<T>>>();
  auto future = promise->get_future();
  return {[promise](absl::StatusOr<T> v) { promise->set_value(std::move(v)); },
          std::move(future)};
}

}  // namespace

NodeImpl::NodeImpl(NodeOptions options, DefaultTransportMaker default_transport)
    : options_(std::move(options)),
      id_(options_.id),
      default_transport_(default_transport) {
  common::MutexLock lock(&session_mu_);
  session_id_ = NewSessionId();
}

absl::StatusOr<std::unique_ptr<NodeImpl>> NodeImpl::Open(
    NodeOptions options, DefaultTransportMaker default_transport) {
  CONFMAN_RETURN_IF_ERROR(options.Validate());
  std::unique_ptr<NodeImpl> node(
      new NodeImpl(std::move(options), default_transport));
  CONFMAN_RETURN_IF_ERROR(node->OpenStorage());
  CONFMAN_RETURN_IF_ERROR(node->OpenCore());
  CONFMAN_RETURN_IF_ERROR(node->OpenTransport());
  node->StartThreads();
  return node;
}

absl::Status NodeImpl::OpenStorage() {
  kv::KvStateMachineOptions sm_options;
  sm_options.snapshot_chunk_bytes = options_.snapshot_chunk_bytes;
  sm_options.max_value_bytes = options_.max_value_bytes;
  sm_options.history_retention = options_.history_retention;
  sm_options.max_sessions = options_.session_max_clients;
  sm_options.session_ttl = options_.session_ttl;
  sm_options.max_results_per_client = options_.session_max_results;
  sm_options.value_archive = nullptr;  // Set once the log is open.
  if (options_.data_dir.empty()) {
    CONFMAN_RETURN_IF_ERROR(OpenLogStore(""));
    sm_options.value_archive = log_.get();
    CONFMAN_ASSIGN_OR_RETURN(sm_, kv::KvStateMachine::CreateInMemory(sm_options));
    CreateLogRetention();
    return absl::OkStatus();
  }
  const std::filesystem::path dir(options_.data_dir);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::InternalError(absl::StrCat(
        "cannot create data_dir '", options_.data_dir, "': ", ec.message(),
        "; check the path and its permissions"));
  }
  CONFMAN_RETURN_IF_ERROR(OpenLogStore((dir / "log").string()));
  sm_options.dir = dir / "state";
  sm_options.value_archive = log_.get();
  CONFMAN_ASSIGN_OR_RETURN(sm_, kv::KvStateMachine::OpenLmdb(sm_options));
  CreateLogRetention();
  // A crash between a snapshot install and its cleanup leaves entries no
  // state refers to.
  retention_->SweepNow();
  return absl::OkStatus();
}

void NodeImpl::CreateLogRetention() {
  retention_ = std::make_unique<LogRetention>(
      *log_, *sm_, *sm_,
      LogRetention::Options{.keep_entries = options_.log_keep_entries,
                            .compact_every = options_.log_compact_every},
      [this](LogLevel level, const std::string& line) { Log(level, line); },
      [this] { return SnapshotFloor(); });
}

absl::Status NodeImpl::OpenLogStore(const std::string& dir) {
  if (options_.log_store_factory) {
    CONFMAN_ASSIGN_OR_RETURN(log_, options_.log_store_factory(dir));
    if (log_ == nullptr) {
      return absl::InvalidArgumentError(
          "NodeOptions.log_store_factory returned no log store; return a "
          "store or an error");
    }
    return absl::OkStatus();
  }
  if (dir.empty()) {
    log_ = std::make_unique<MemoryLogStore>(options_.value_in_log_min_bytes);
    return absl::OkStatus();
  }
  CONFMAN_ASSIGN_OR_RETURN(
      log_, LmdbLogStore::Open(LmdbLogStoreOptions{
                .dir = dir,
                .retain_entries_from_bytes = options_.value_in_log_min_bytes}));
  return absl::OkStatus();
}

absl::Status NodeImpl::OpenCore() {
  CONFMAN_ASSIGN_OR_RETURN(raft::HardState hard_state, log_->LoadHardState());
  CONFMAN_ASSIGN_OR_RETURN(AppliedState applied, sm_->CurrentAppliedState());
  CONFMAN_RETURN_IF_ERROR(AlignLogWithState(applied));
  raft::BootState boot{.hard_state = hard_state,
                       .membership = applied.membership,
                       .membership_index = applied.membership_index,
                       .applied = applied.applied_index};
  // Until a configuration change is applied, the founding membership exists
  // only in the options: storage has none to recover.
  const bool founding =
      applied.membership_index == 0 && applied.membership == raft::Membership{};
  if (founding && !options_.join) {
    for (const PeerAddress& peer : options_.initial_members) {
      boot.membership.voters.push_back(peer.id);
    }
    std::sort(boot.membership.voters.begin(), boot.membership.voters.end());
  }
  // The state machine may be ahead of the log's commit after a snapshot
  // install that the hard state has not caught up with yet.
  boot.hard_state.commit = std::max(boot.hard_state.commit, boot.applied);
  const auto tick = options_.tick_interval.count();
  raft::CoreOptions core_options{
      .id = id_,
      .election_timeout_ticks =
          static_cast<uint32_t>(options_.election_timeout.count() / tick),
      .heartbeat_interval_ticks = static_cast<uint32_t>(
          std::max<int64_t>(1, options_.heartbeat_interval.count() / tick)),
      .max_append_bytes = options_.max_append_bytes,
      .max_uncommitted_bytes = options_.max_uncommitted_bytes,
      .max_apply_bytes = std::min(raft::CoreOptions{}.max_apply_bytes,
                                  options_.max_uncommitted_bytes),
      // Committed entries waiting for the apply thread stay in the log, not
      // in memory, beyond the same budget (on followers too).
      .max_unapplied_bytes = options_.max_uncommitted_bytes,
      .random_seed =
          id_ * 0x9E3779B97F4A7C15ull ^
          static_cast<uint64_t>(Clock::now().time_since_epoch().count()),
  };
  CONFMAN_ASSIGN_OR_RETURN(core_,
                           raft::Core::Create(core_options, boot, log_.get()));
  applied_ = applied.applied_index;
  retention_->CompactedThrough(log_->FirstIndex() - 1);
  return absl::OkStatus();
}

// A crash after a snapshot install committed and before the log's reset
// was written leaves the state ahead of the log (or the log holding other
// entries at the state's index). The log then restarts where the state is:
// entries it holds past a mismatch cannot be committed, and the state holds
// every committed entry up to its index.
absl::Status NodeImpl::AlignLogWithState(const AppliedState& applied) {
  const raft::Index first = log_->FirstIndex();
  if (applied.applied_index + 1 < first) {
    return absl::DataLossError(absl::StrCat(
        "the state is applied through index ", applied.applied_index,
        " but the log starts at ", first, ", so entries in between are "
        "missing; remove this member's data directory and add it again"));
  }
  if (applied.applied_index == 0) return absl::OkStatus();
  absl::StatusOr<raft::Term> term = log_->TermAt(applied.applied_index);
  if (term.ok() && *term == applied.applied_term) return absl::OkStatus();
  if (!term.ok() && !absl::IsOutOfRange(term.status())) return term.status();
  Log(LogLevel::kInfo,
      absl::StrCat("log reset to the installed snapshot at index ",
                   applied.applied_index));
  return log_->ResetToSnapshot(applied.applied_index, applied.applied_term);
}

absl::Status NodeImpl::OpenTransport() {
  if (options_.transport_factory) {
    CONFMAN_ASSIGN_OR_RETURN(transport_, options_.transport_factory(id_));
    listen_address_ = options_.listen_address;
  } else if (default_transport_ != nullptr) {
    CONFMAN_ASSIGN_OR_RETURN(
        DefaultTransport created,
        default_transport_(options_, [this](const std::string& line) {
          Log(LogLevel::kInfo, line);
        }));
    listen_address_ = std::move(created.listen_address);
    transport_ = std::move(created.transport);
  } else {
    return absl::InvalidArgumentError(
        "NodeOptions.transport_factory is empty and no default transport is "
        "linked; set a factory or link confman::node");
  }
  for (const PeerAddress& peer : options_.initial_members) {
    if (peer.id == id_) continue;
    CONFMAN_RETURN_IF_ERROR(transport_->AddPeer(peer.id, peer.address));
    common::MutexLock lock(&peers_mu_);
    addresses_[peer.id] = peer.address;
  }
  {
    common::MutexLock lock(&peers_mu_);
    addresses_[id_] = listen_address_;
  }
  RefreshPeers(nullptr);
  return transport_->Start(this);
}

void NodeImpl::StartThreads() {
  loop_work_.emplace(loop_.get_executor());
  tick_timer_ = std::make_unique<asio::steady_timer>(loop_);
  // Named for operators: top -H and debuggers show which stage is busy.
  apply_thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "confman-apply");
    ApplyLoop();
  });
  receiver_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "confman-snap");
    ReceiveLoop();
  });
  asio::post(loop_, [this] {
    RefreshStatusCache();
    ScheduleTick();
  });
  retention_->Start();
  loop_thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "confman-raft");
    loop_.run();
  });
}

NodeImpl::~NodeImpl() { Close(); }

void NodeImpl::Close() {
  common::MutexLock close_lock(&close_mu_);
  if (closed_) return;
  closing_ = true;
  const absl::Status closing = ClosingError();
  // A write proposed here or forwarded to the leader may still commit
  // through the other members: "did not take effect" (Unavailable) would
  // misstate it.
  const absl::Status closing_in_flight = absl::DeadlineExceededError(
      "the node closed before the write's outcome was known; it may still "
      "take effect");
  StopLoop(closing, closing_in_flight);
  DrainApply(closing_in_flight);
  if (retention_) retention_->Stop();
  StopWatches();
  if (transport_) transport_->Stop();
  core_.reset();
  while (caller_reads_ > 0) std::this_thread::yield();
  retention_.reset();
  sm_.reset();
  log_.reset();
  closed_ = true;
}

void NodeImpl::StopLoop(const absl::Status& closing,
                        const absl::Status& closing_in_flight) {
  std::promise<void> loop_quiet;
  asio::post(loop_, [&] {
    if (tick_timer_) tick_timer_->cancel();
    FailLoopRequests(closing, closing_in_flight);
    loop_quiet.set_value();
  });
  if (loop_thread_.joinable()) loop_quiet.get_future().wait();
  JoinSnapshotThreads();
  loop_work_.reset();
  loop_.stop();
  if (loop_thread_.joinable()) loop_thread_.join();
}

// Applies what is queued, then fails whatever still waits.
void NodeImpl::DrainApply(const absl::Status& closing_in_flight) {
  {
    common::MutexLock lock(&apply_mu_);
    apply_stop_ = true;
  }
  apply_cv_.SignalAll();
  if (apply_thread_.joinable()) apply_thread_.join();
  std::deque<ApplyTask> leftovers;  // Only when Open failed before the thread.
  {
    common::MutexLock lock(&apply_mu_);
    apply_exited_ = true;
    leftovers.swap(apply_queue_);
  }
  for (ApplyTask& task : leftovers) {
    if (auto* fn = std::get_if<std::function<void()>>(&task)) (*fn)();
  }
  FailPendingWrites(closing_in_flight, /*only_expired=*/false);
  for (auto& [index, read] : waiting_reads_) read();  // Reads fail on closing_.
  waiting_reads_.clear();
}

void NodeImpl::Log(LogLevel level, const std::string& line) const {
  const std::string text = absl::StrCat("member ", id_, ": ", line);
  if (options_.log != nullptr) {
    options_.log->Log(level, text);
  } else if (level >= LogLevel::kWarning) {
    std::fprintf(stderr, "confman %s %s\n", LogLevelName(level), text.c_str());
  }
}

void NodeImpl::Count(std::string_view name, uint64_t delta) const {
  if (options_.metrics != nullptr) options_.metrics->AddCounter(name, delta);
}

void NodeImpl::Sample(std::string_view name, double value) const {
  if (options_.metrics != nullptr) options_.metrics->RecordHistogram(name, value);
}

Clock::time_point NodeImpl::Deadline() const {
  return Clock::now() + options_.request_timeout;
}

std::string NodeImpl::DefaultActor() const { return absl::StrCat("member-", id_); }

absl::Status NodeImpl::NotLeaderError(raft::MemberId leader,
                                      const char* what) const {
  if (leader == raft::kNoMember) {
    return absl::UnavailableError(absl::StrCat(
        what, " needs the leader, and member ", id_,
        " knows of none (an election may be running); retry shortly"));
  }
  return absl::FailedPreconditionError(absl::StrCat(
      what, " must be sent to the leader: member ", leader, " at ",
      AddressOf(leader), "; member ", id_, " is not the leader"));
}

NodeStatus NodeImpl::GetStatus() const {
  NodeStatus status;
  {
    common::MutexLock lock(&status_mu_);
    status = status_;
    status.applied_index = applied_;
    status.commit_index = std::max(status.commit_index, commit_index_.load());
    status.leader_changes = leader_changes_;
    status.storage_error = storage_error_;
    status.halted = halted_error_;
  }
  // The state machine is gone once Close has finished; a closed member
  // reports zero here. Only an atomic load: GetStatus is called per request
  // by hosts (and per write by LocalCluster::leader_id), so it does no I/O.
  if (EnterCallerRead()) {
    status.revision = sm_->Revision();
    LeaveCallerRead();
  }
  return status;
}

std::string NodeImpl::listen_address() const { return listen_address_; }

// ---------------------------------------------------------------------------
// Writes.

absl::Status NodeImpl::CheckWritable(const std::string& ns) const {
  if (ns.rfind(kReservedPrefix, 0) == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "namespace '", ns, "' is reserved for confman's own records (prefix '",
        kReservedPrefix, "'); choose another namespace"));
  }
  return absl::OkStatus();
}

void NodeImpl::WriteAsync(kv::Command command, const WriteOptions& options,
                          WriteCallback done) {
  if (closing_) {
    return done(ClosingError());
  }
  if (absl::Status s = CheckWritable(command.ns); !s.ok()) return done(s);
  if (command.kind == kv::Command::Kind::kPut) {
    command.content_type = options.content_type;
  }
  const std::string& actor = options.actor.empty() ? DefaultActor() : options.actor;
  kv::EncodeOptions encode{.max_value_bytes = options_.max_value_bytes};
  const bool own_session = command.client_id == 0;
  StampSession(command);
  // Once answered, the state machine may forget this sequence's result.
  auto answered = [this, own_session, client_id = command.client_id,
                   sequence = command.sequence] {
    if (own_session) SessionAnswered(client_id, sequence);
  };
  // Never stamped before the store clock: a member whose clock runs behind
  // would otherwise see its writes taken for stale retries. A retry reuses
  // these bytes, stamp included.
  int64_t stamp = std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  if (EnterCallerRead()) {
    stamp = std::max(stamp, sm_->ClockMicros());
    LeaveCallerRead();
  }
  absl::StatusOr<std::string> bytes =
      kv::EncodeCommand(command, actor, stamp, encode);
  if (!bytes.ok()) {
    answered();
    return done(bytes.status());
  }
  const auto start = Clock::now();
  auto answer = std::make_shared<WriteAnswer>();
  answer->done = [this, start, answered,
                  done = std::move(done)](absl::StatusOr<uint64_t> r) {
    answered();
    Sample("node.write_ms",
           std::chrono::duration<double, std::milli>(Clock::now() - start).count());
    if (!r.ok()) Count("node.proposals_failed");
    done(std::move(r));
  };
  Count("node.proposals");
  asio::post(loop_, [this, b = std::move(*bytes), answer = std::move(answer),
                     deadline = Deadline()]() mutable {
    StartWrite(std::move(b), std::move(answer), deadline);
  });
}

absl::StatusOr<uint64_t> NodeImpl::WaitWrite(kv::Command command,
                                             const WriteOptions& options) {
  auto [done, future] = MakeCompletion<uint64_t>();
  WriteAsync(std::move(command), options, std::move(done));
  return Await(std::move(future), options_.request_timeout);
}

absl::StatusOr<uint64_t> NodeImpl::Put(const std::string& ns,
                                       const std::string& key, std::string value,
                                       const WriteOptions& options) {
  return WaitWrite(kv::Command{.kind = kv::Command::Kind::kPut,
                               .ns = ns,
                               .key = key,
                               .value = std::move(value)},
                   options);
}

absl::StatusOr<uint64_t> NodeImpl::Delete(const std::string& ns,
                                          const std::string& key,
                                          const WriteOptions& options) {
  return WaitWrite(
      kv::Command{.kind = kv::Command::Kind::kDelete, .ns = ns, .key = key},
      options);
}

absl::StatusOr<uint64_t> NodeImpl::CompareAndSet(const std::string& ns,
                                                 const std::string& key,
                                                 uint64_t expected_revision,
                                                 std::string value,
                                                 const WriteOptions& options) {
  return WaitWrite(kv::Command{.kind = kv::Command::Kind::kPut,
                               .ns = ns,
                               .key = key,
                               .value = std::move(value),
                               .expected_revision = expected_revision},
                   options);
}

// ---------------------------------------------------------------------------
// Reads.

// Counted before closing_ is read, so either Close sees the read and waits
// for it before destroying the state machine, or the read sees closing_.
bool NodeImpl::EnterCallerRead() const {
  ++caller_reads_;
  if (!closing_) return true;
  LeaveCallerRead();
  return false;
}

void NodeImpl::LeaveCallerRead() const { --caller_reads_; }

void NodeImpl::AtReadPoint(const ReadOptions& options, std::function<void()> read,
                           std::function<void(absl::Status)> fail) {
  Count("node.reads");
  if (closing_) {
    return fail(ClosingError());
  }
  if (absl::Status halted = HaltedError(); !halted.ok()) return fail(halted);
  // TEST ONLY (NodeTestingFault::kLocalLinearizableReads): every read is
  // served as kLocal, the stale-read bug the fault harness must catch.
  if (options.consistency == ReadConsistency::kLocal ||
      testing::HasTestingFault(
          options_.testing_faults,
          testing::NodeTestingFault::kLocalLinearizableReads)) {
    if (!EnterCallerRead()) {
      return fail(ClosingError());
    }
    read();
    LeaveCallerRead();
    return;
  }
  const raft::ReadMode mode = options.consistency == ReadConsistency::kLease
                                  ? raft::ReadMode::kLease
                                  : raft::ReadMode::kReadIndex;
  ReadAt at = [this, read = std::move(read),
               fail = std::move(fail)](absl::StatusOr<raft::Index> index) mutable {
    if (!index.ok()) return RunOnApplyThread([fail, s = index.status()] { fail(s); });
    // Runs on the apply thread once `index` is applied.
    AddWaitingRead(*index, [this, read = std::move(read), fail = std::move(fail)] {
      if (closing_ && closed_) return;
      if (closing_) {
        return fail(ClosingError());
      }
      read();
    });
  };
  asio::post(loop_, [this, mode, at = std::move(at), deadline = Deadline()]() mutable {
    StartRead(mode, std::move(at), deadline);
  });
}

void NodeImpl::GetAsync(const std::string& ns, const std::string& key,
                        const ReadOptions& options, GetCallback done) {
  auto shared_done = std::make_shared<GetCallback>(std::move(done));
  AtReadPoint(
      options, [this, ns, key, shared_done] { (*shared_done)(sm_->Get(ns, key)); },
      [shared_done](absl::Status s) { (*shared_done)(std::move(s)); });
}

absl::StatusOr<kv::KeyValue> NodeImpl::Get(const std::string& ns,
                                           const std::string& key,
                                           const ReadOptions& options) {
  if (options.consistency == ReadConsistency::kLocal && !halted_ &&
      EnterCallerRead()) {
    absl::StatusOr<kv::KeyValue> value = sm_->Get(ns, key);
    LeaveCallerRead();
    return value;
  }
  auto [done, future] = MakeCompletion<kv::KeyValue>();
  GetAsync(ns, key, options, std::move(done));
  return Await(std::move(future), options_.request_timeout);
}

absl::StatusOr<kv::ListPage> NodeImpl::List(const kv::ListRequest& request,
                                            const ReadOptions& options) {
  if (options.consistency == ReadConsistency::kLocal && !halted_ &&
      EnterCallerRead()) {
    absl::StatusOr<kv::ListPage> page = sm_->List(request);
    LeaveCallerRead();
    return page;
  }
  auto [done, future] = MakeCompletion<kv::ListPage>();
  auto shared_done = std::make_shared<decltype(done)>(std::move(done));
  AtReadPoint(
      options, [this, request, shared_done] { (*shared_done)(sm_->List(request)); },
      [shared_done](absl::Status s) { (*shared_done)(std::move(s)); });
  return Await(std::move(future), options_.request_timeout);
}

absl::StatusOr<kv::ChangePage> NodeImpl::History(uint64_t after_revision,
                                                uint32_t limit,
                                                const ReadOptions& options) {
  if (options.consistency == ReadConsistency::kLocal && !halted_ &&
      EnterCallerRead()) {
    absl::StatusOr<kv::ChangePage> page = sm_->Changes(after_revision, limit);
    LeaveCallerRead();
    return page;
  }
  auto [done, future] = MakeCompletion<kv::ChangePage>();
  auto shared_done = std::make_shared<decltype(done)>(std::move(done));
  AtReadPoint(
      options,
      [this, after_revision, limit, shared_done] {
        (*shared_done)(sm_->Changes(after_revision, limit));
      },
      [shared_done](absl::Status s) { (*shared_done)(std::move(s)); });
  return Await(std::move(future), options_.request_timeout);
}

// ---------------------------------------------------------------------------
// Membership.

absl::Status NodeImpl::ProposeMembershipOnce(raft::MembershipChange change) {
  auto [done, future] = MakeCompletion<uint64_t>();
  asio::post(loop_, [this, change, done = std::move(done),
                     deadline = Deadline()]() mutable {
    if (closing_) return done(ClosingError(""));
    if (absl::Status halted = HaltedError(); !halted.ok()) return done(halted);
    if (core_->role() != raft::Role::kLeader) {
      return done(NotLeaderError(core_->LeaderId(), "a membership change"));
    }
    absl::StatusOr<raft::ProposalPosition> pos =
        core_->ProposeMembershipChange(change);
    if (!pos.ok()) return done(pos.status());
    {
      common::MutexLock lock(&writes_mu_);
      pending_writes_[pos->last] = PendingWrite{pos->term, std::move(done), deadline};
    }
    ProcessReady();
  });
  return Await(std::move(future), options_.request_timeout).status();
}

// Changes are serialised by the core (one at a time, none while joint), so
// a change waits for the previous one, and returns only once the cluster
// has left any joint configuration it entered: the caller can make the
// next change at once.
absl::Status NodeImpl::ProposeMembership(raft::MembershipChange change) {
  const auto deadline = Deadline();
  absl::Status status = ProposeMembershipOnce(change);
  while (absl::IsUnavailable(status) && !closing_ && Clock::now() < deadline) {
    std::this_thread::sleep_for(options_.tick_interval * 5);
    status = ProposeMembershipOnce(change);
  }
  if (!status.ok()) return status;
  while (Clock::now() < deadline) {
    if (!GetStatus().membership.joint()) return absl::OkStatus();
    std::this_thread::sleep_for(options_.tick_interval);
  }
  return absl::DeadlineExceededError(
      "the membership change committed, but the cluster did not leave the "
      "joint configuration within the request timeout; check that a quorum "
      "of the new voters is reachable");
}

absl::Status NodeImpl::AddLearner(raft::MemberId id, const std::string& address) {
  if (id == raft::kNoMember) {
    return absl::InvalidArgumentError("member id 0 is reserved; pick a non-zero id");
  }
  const NodeStatus status = GetStatus();
  if (status.role != raft::Role::kLeader) {
    return NotLeaderError(status.leader, "AddLearner");
  }
  CONFMAN_RETURN_IF_ERROR(transport_->AddPeer(id, address));
  {
    common::MutexLock lock(&peers_mu_);
    addresses_[id] = address;
  }
  // Recorded before the member joins, so every member (and the new one,
  // through its snapshot) can reach it.
  auto [done, future] = MakeCompletion<uint64_t>();
  kv::EncodeOptions encode{.max_value_bytes = options_.max_value_bytes};
  CONFMAN_ASSIGN_OR_RETURN(
      std::string bytes,
      kv::EncodeCommandNow(kv::Command{.kind = kv::Command::Kind::kPut,
                                       .ns = kMembersNamespace,
                                       .key = std::to_string(id),
                                       .value = address},
                           DefaultActor(), encode));
  asio::post(loop_, [this, b = std::move(bytes), done = std::move(done),
                     deadline = Deadline()]() mutable {
    ProposeLocal(std::move(b), std::move(done), deadline);
  });
  CONFMAN_RETURN_IF_ERROR(Await(std::move(future), options_.request_timeout).status());
  return ProposeMembership({raft::MembershipChange::Kind::kAddLearner, id});
}

absl::Status NodeImpl::PromoteToVoter(raft::MemberId id) {
  return ProposeMembership({raft::MembershipChange::Kind::kAddVoter, id});
}

absl::Status NodeImpl::RemoveMember(raft::MemberId id) {
  return ProposeMembership({raft::MembershipChange::Kind::kRemove, id});
}

absl::Status NodeImpl::TransferLeadership(raft::MemberId id) {
  auto [done, future] = MakeCompletion<uint64_t>();
  asio::post(loop_, [this, id, done = std::move(done)]() mutable {
    if (closing_) return done(ClosingError(""));
    if (absl::Status halted = HaltedError(); !halted.ok()) return done(halted);
    if (core_->role() != raft::Role::kLeader) {
      return done(NotLeaderError(core_->LeaderId(), "TransferLeadership"));
    }
    absl::Status s = core_->TransferLeadership(id);
    ProcessReady();
    if (!s.ok()) return done(s);
    done(uint64_t{0});
  });
  CONFMAN_RETURN_IF_ERROR(Await(std::move(future), options_.request_timeout).status());
  const auto deadline = Deadline();
  while (Clock::now() < deadline) {
    if (GetStatus().leader == id) return absl::OkStatus();
    std::this_thread::sleep_for(options_.tick_interval);
  }
  return absl::DeadlineExceededError(absl::StrCat(
      "member ", id, " did not take over leadership within the request "
      "timeout; check that it is reachable and caught up, then retry"));
}

}  // namespace node_internal
}  // namespace confman
