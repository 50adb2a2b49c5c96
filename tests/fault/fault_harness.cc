#include "fault_harness.h"

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "confman/node.h"
#include "confman/raft/membership.h"
#include "confman/testing/local_cluster.h"
#include "fault_store.h"
#include "fault_support.h"
#include "fault_values.h"

namespace confman::fault {
namespace {

// Membership bounds the nemesis keeps: a majority of at least three voters
// survives any single fault, and five members are plenty of moving parts.
constexpr size_t kMaxMembers = 5;
constexpr size_t kMinVoters = 3;
// Loops are bounded by count as well as by time, in case time misbehaves.
constexpr uint64_t kMaxOpsPerClient = 1'000'000;
constexpr int kMaxNemesisActions = 100'000;
// The final reads are issued as clients kFinalReadClient + member id.
constexpr int kFinalReadClient = 1000;
// Clients 0 .. kLeaderClients - 1 send everything to the leader; the others
// stay on the member they are pinned to.
constexpr int kLeaderClients = 2;
// How long the members may take to agree once everything is healed. Far
// above what a healthy cluster needs (a second or two), so a miss is a bug.
constexpr auto kConvergenceTimeout = std::chrono::seconds(30);

// ---------------------------------------------------------------------------
// Clients.

struct ListRecord {
  int client = 0;
  MemberId member = raft::kNoMember;
  std::vector<std::pair<std::string, std::string>> items{};  // key, tag
};

struct ClientLog {
  std::vector<Operation> ops{};
  std::vector<ListRecord> lists{};
  std::map<uint64_t, std::string> statuses{};
};

bool IsCasMismatch(const absl::Status& status) {
  // FailedPrecondition also names a member that is not the leader; only
  // the state machine's own refusal says the revision differed.
  return absl::IsFailedPrecondition(status) &&
         status.message().find("revision conflict") != absl::string_view::npos;
}

// node.h's status mapping, turned into what the caller may conclude.
void RecordWriteResult(const absl::StatusOr<uint64_t>& result, Operation& op,
                       ClientLog& log) {
  if (result.ok()) {
    op.outcome = Outcome::kOk;
    op.revision = *result;
    return;
  }
  const absl::Status& status = result.status();
  log.statuses[op.id] = status.ToString();
  if (op.type == OpType::kDelete && absl::IsNotFound(status)) {
    op.outcome = Outcome::kOk;
    op.found = false;
  } else if (op.type == OpType::kCompareAndSet && IsCasMismatch(status)) {
    op.outcome = Outcome::kOk;
    op.cas_mismatch = true;
  } else if (absl::IsInvalidArgument(status) ||
             absl::IsResourceExhausted(status) || absl::IsUnavailable(status)) {
    // Documented as "did not take effect"; the checker holds it to that.
    op.outcome = Outcome::kFailed;
  } else {
    op.outcome = Outcome::kUnknown;
    op.complete = kNever;
  }
}

void RecordReadResult(const absl::StatusOr<kv::KeyValue>& result, Operation& op,
                      ClientLog& log) {
  if (result.ok()) {
    op.outcome = Outcome::kOk;
    op.found = true;
    op.value = TagOfStoredValue(result->value);
    op.revision = result->mod_revision;
    return;
  }
  log.statuses[op.id] = result.status().ToString();
  if (absl::IsNotFound(result.status())) {
    op.outcome = Outcome::kOk;
    op.found = false;
  } else {
    op.outcome = Outcome::kFailed;  // A read that failed changed nothing.
  }
}

size_t DrawValueSize(Rng& rng) {
  const bool large = rng.Chance(0.07);
  const size_t small_size = rng.LogUniform(10, 1024);
  const size_t large_size = rng.LogUniform(size_t{64} << 10, size_t{1} << 20);
  return large ? large_size : small_size;
}

// ---------------------------------------------------------------------------
// The run.

enum class Fate { kRunning, kCrashed, kRemoved };

enum class Action {
  kCrash,
  kSnapshotCrash,
  kPartition,
  kOneWayPartition,
  kTransferLeadership,
  kMembership,
  kStorageFault,
  kSlowDisk,
};

struct ActionWeight {
  Action action;
  int weight;
  bool needs_memory_network;
};

constexpr ActionWeight kActionWeights[] = {
    {Action::kCrash, 18, false},
    {Action::kSnapshotCrash, 12, false},
    {Action::kPartition, 14, true},
    {Action::kOneWayPartition, 10, true},
    {Action::kTransferLeadership, 10, false},
    {Action::kMembership, 14, false},
    {Action::kStorageFault, 12, false},
    {Action::kSlowDisk, 10, false},
};

struct LeaderView {
  MemberId id = raft::kNoMember;
  raft::Term term = 0;
};

class FaultRun {
 public:
  explicit FaultRun(const FaultRunOptions& options)
      : options_(options), log_(clock_, options.verbose), watchers_(log_) {
    for (int k = 0; k < options_.keys; ++k)
      keys_.push_back(absl::StrCat("k", k));
  }

  ~FaultRun() {
    // Watches first: their handles must go before the Nodes.
    watchers_.StopAll();
  }

  absl::Status Start() {
    testing::LocalClusterOptions cluster_options{
        .members = 3,
        .in_memory_network = options_.in_memory_network,
        .customize = [this](NodeOptions& o) { Customize(o); }};
    absl::StatusOr<std::unique_ptr<testing::LocalCluster>> cluster =
        testing::LocalCluster::Start(std::move(cluster_options));
    if (!cluster.ok()) return cluster.status();
    cluster_ = std::move(*cluster);
    for (MemberId id : cluster_->ids()) {
      fates_[id] = Fate::kRunning;
      table_.Publish(id, cluster_->member(id));
      watchers_.AddMember(id, cluster_->member(id));
    }
    if (WaitForLeader(std::chrono::seconds(20)).id == raft::kNoMember) {
      return absl::DeadlineExceededError(
          "the new cluster elected no leader in 20 s");
    }
    return absl::OkStatus();
  }

  // Clients and nemesis, until options.duration has passed.
  void Run() {
    end_ = Clock::now() + options_.duration;
    client_logs_.resize(static_cast<size_t>(options_.clients));
    std::vector<std::thread> clients;
    for (int c = 0; c < options_.clients; ++c) {
      clients.emplace_back(
          [this, c] { RunClient(c, client_logs_[static_cast<size_t>(c)]); });
    }
    RunNemesis();
    for (std::thread& t : clients) t.join();
  }

  // Heals everything, waits for convergence, reads every key through every
  // member and checks what the harness can check by itself.
  void Finish() {
    if (options_.in_memory_network) (void)cluster_->Heal();
    for (MemberId id : RunningIds()) {
      if (HarnessLogStore* store = stores_.Find(id)) {
        store->SetWriteDelay(milliseconds(0));
        store->FailNextWrites(0, absl::OkStatus());
      }
    }
    for (auto& [id, fate] : fates_) {
      for (int attempt = 0; attempt < 5 && fate == Fate::kCrashed; ++attempt) {
        if (!RestartMember(id)) Pause(milliseconds(500));
      }
    }
    if (absl::Status converged = WaitForConvergence(); !converged.ok()) {
      // Final reads and state comparisons would only restate this.
      report_.violations.push_back(absl::StrCat(
          "liveness: ", kConvergenceTimeout.count(),
          " s after every fault was healed the members had not converged: ",
          converged.message()));
    } else {
      FinalReads();
      CompareMemberStates();
    }
    WaitForWatchers();
    watchers_.StopAll();
    CheckLists();
  }

  FaultRunReport TakeReport() {
    for (ClientLog& log : client_logs_) MergeClientLog(log);
    MergeClientLog(final_log_);
    std::sort(
        report_.history.operations.begin(), report_.history.operations.end(),
        [](const Operation& a, const Operation& b) { return a.id < b.id; });
    report_.history.watches = watchers_.Streams();
    report_.snapshots_received = metrics_.snapshots_received;
    report_.snapshots_sent = metrics_.snapshots_sent;
    report_.storage_errors = metrics_.storage_errors;
    report_.recent_log = log_.Recent();
    return std::move(report_);
  }

 private:
  void Customize(NodeOptions& o) {
    // Short timeouts so that faults resolve within a short run; members keep
    // only a few log entries, so one that falls behind (crashed, cut off,
    // new) catches up through a snapshot while writes go on.
    o.election_timeout = milliseconds(600);
    o.heartbeat_interval = milliseconds(60);
    o.request_timeout = milliseconds(4000);
    o.log_keep_entries = 16;
    o.log_compact_every = 16;
    // Small enough that a watcher resuming after a long outage may find its
    // history gone (OutOfRange) and must carry on from a fresh listing.
    o.history_retention = 1000;
    o.metrics = &metrics_;
    o.log = &log_;
    const MemberId id = o.id;
    const uint64_t retain = o.value_in_log_min_bytes;
    o.log_store_factory = [this, id, retain](const std::string& dir)
        -> absl::StatusOr<std::unique_ptr<LogStore>> {
      absl::StatusOr<std::unique_ptr<HarnessLogStore>> store =
          HarnessLogStore::Open(dir, retain);
      if (!store.ok()) return store.status();
      stores_.Register(id, store->get());
      return std::unique_ptr<LogStore>(std::move(*store));
    };
    if (options_.faulty_members.empty() ||
        std::find(options_.faulty_members.begin(),
                  options_.faulty_members.end(),
                  id) != options_.faulty_members.end()) {
      o.testing_faults = options_.testing_faults;
    }
  }

  // --- Clients
  // ----------------------------------------------------------------

  void RunClient(int client, ClientLog& log) {
    Rng rng(MixSeed(options_.seed, 100 + static_cast<uint64_t>(client)));
    MemberId pinned = raft::kNoMember;
    uint64_t seq = 0;
    std::map<std::string, uint64_t> known_revision;
    for (uint64_t n = 0; n < kMaxOpsPerClient && Clock::now() < end_; ++n) {
      // Every draw is made whatever the cluster looks like, so the sequence
      // of operations depends on the seed alone.
      const int64_t op_draw = rng.Between(0, 99);
      const std::string& key = PickFrom(keys_, rng.Next());
      const size_t value_size = DrawValueSize(rng);
      const bool create_only = rng.Chance(0.2);
      const bool repin = rng.Chance(0.02);
      const uint64_t pin_draw = rng.Next();

      const std::vector<MemberId> running = table_.Running();
      if (running.empty()) {
        std::this_thread::sleep_for(milliseconds(20));
        continue;
      }
      if (pinned == raft::kNoMember) {
        pinned = running[static_cast<size_t>(client) % running.size()];
      } else if (repin) {
        pinned = PickFrom(running, pin_draw);
      } else if (!Contains(running, pinned)) {
        auto next = std::upper_bound(running.begin(), running.end(), pinned);
        pinned = next == running.end() ? running.front() : *next;
      }
      std::optional<MemberTable::Lease> lease = table_.Acquire(pinned);
      if (!lease) continue;  // Crashed since Running() was read.
      if (client < kLeaderClients) {
        // Follows the leader its member names, as hosts that route writes
        // to the leader do: whatever is cut off or crashed as the leader
        // has these clients' operations in flight.
        const MemberId leader = lease->node()->GetStatus().leader;
        if (leader != raft::kNoMember && leader != pinned &&
            Contains(running, leader)) {
          lease.reset();
          pinned = leader;
          std::optional<MemberTable::Lease> at_leader = table_.Acquire(pinned);
          if (!at_leader) continue;
          lease.emplace(std::move(*at_leader));
        }
      }
      Node* node = lease->node();

      Operation op{
          .id = next_op_id_++, .client = client, .member = pinned, .key = key};
      if (op_draw < 12) {
        RunList(client, pinned, node, op_draw < 6, log);
        continue;
      }
      if (op_draw < 38) {
        op.type = OpType::kPut;
        op.value = ValueTag(client, ++seq, value_size);
        std::string value = MakeValue(op.value);
        op.invoke = clock_.Now();
        absl::StatusOr<uint64_t> result =
            node->Put(kNamespace, key, std::move(value));
        op.complete = clock_.Now();
        RecordWriteResult(result, op, log);
      } else if (op_draw < 52) {
        op.type = OpType::kCompareAndSet;
        op.value = ValueTag(client, ++seq, value_size);
        op.expected_revision = create_only ? 0 : known_revision[key];
        std::string value = MakeValue(op.value);
        op.invoke = clock_.Now();
        absl::StatusOr<uint64_t> result = node->CompareAndSet(
            kNamespace, key, op.expected_revision, std::move(value));
        op.complete = clock_.Now();
        RecordWriteResult(result, op, log);
      } else if (op_draw < 58) {
        op.type = OpType::kDelete;
        op.invoke = clock_.Now();
        absl::StatusOr<uint64_t> result = node->Delete(kNamespace, key);
        op.complete = clock_.Now();
        RecordWriteResult(result, op, log);
      } else {
        op.type = OpType::kGet;
        ReadConsistency consistency = ReadConsistency::kLinearizable;
        if (op_draw >= 82) {
          op.read = ReadKind::kLease;
          consistency = ReadConsistency::kLease;
        }
        if (op_draw >= 91) {
          op.read = ReadKind::kLocal;
          consistency = ReadConsistency::kLocal;
        }
        op.invoke = clock_.Now();
        absl::StatusOr<kv::KeyValue> result =
            node->Get(kNamespace, key, {consistency});
        op.complete = clock_.Now();
        RecordReadResult(result, op, log);
      }
      if (op.outcome == Outcome::kOk && !op.cas_mismatch) {
        known_revision[key] =
            op.found && op.type != OpType::kDelete ? op.revision : 0;
      }
      const bool failed = op.outcome != Outcome::kOk;
      log.ops.push_back(std::move(op));
      lease.reset();
      // Backs off a little so a leaderless cluster is not spun against.
      if (failed)
        std::this_thread::sleep_for(milliseconds(10 + 5 * (client % 4)));
    }
  }

  void RunList(int client, MemberId member, Node* node, bool linearizable,
               ClientLog& log) {
    absl::StatusOr<kv::ListPage> page =
        node->List({.ns = kNamespace, .limit = 100},
                   {linearizable ? ReadConsistency::kLinearizable
                                 : ReadConsistency::kLocal});
    if (!page.ok()) return;
    ListRecord record{.client = client, .member = member};
    for (const kv::KeyValue& item : page->items) {
      record.items.emplace_back(item.key, TagOfStoredValue(item.value));
    }
    log.lists.push_back(std::move(record));
  }

  // --- Members (nemesis thread, then the finishing thread)
  // --------------------

  std::vector<MemberId> RunningIds() const {
    std::vector<MemberId> ids;
    for (const auto& [id, fate] : fates_) {
      if (fate == Fate::kRunning) ids.push_back(id);
    }
    return ids;
  }

  Node* NodeOf(MemberId id) const { return cluster_->member(id); }

  LeaderView FindLeader() const {
    LeaderView leader;
    for (MemberId id : RunningIds()) {
      const NodeStatus status = NodeOf(id)->GetStatus();
      if (status.role == raft::Role::kLeader && status.term >= leader.term) {
        leader = {id, status.term};
      }
    }
    return leader;
  }

  LeaderView WaitForLeader(milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    LeaderView leader = FindLeader();
    while (leader.id == raft::kNoMember && Clock::now() < deadline) {
      Pause(milliseconds(20));
      leader = FindLeader();
    }
    return leader;
  }

  // The configuration as the leader (or, without one, the member with the
  // highest term) knows it.
  raft::Membership CurrentMembership() const {
    raft::Membership membership;
    raft::Term best = 0;
    bool leader_seen = false;
    for (MemberId id : RunningIds()) {
      const NodeStatus status = NodeOf(id)->GetStatus();
      const bool leads = status.role == raft::Role::kLeader;
      if ((leads && !leader_seen) ||
          (leads == leader_seen && status.term >= best)) {
        membership = status.membership;
        best = status.term;
        leader_seen = leader_seen || leads;
      }
    }
    return membership;
  }

  void CrashMember(MemberId id) {
    watchers_.Stop(id);
    stores_.Forget(id);
    table_.Withdraw(id);
    if (absl::Status s = cluster_->Crash(id); !s.ok()) {
      log_.Note(
          absl::StrCat("crash of member ", id, " failed: ", s.ToString()));
    }
    fates_[id] = Fate::kCrashed;
  }

  bool RestartMember(MemberId id) {
    if (absl::Status s = cluster_->Restart(id); !s.ok()) {
      log_.Note(
          absl::StrCat("restart of member ", id, " failed: ", s.ToString()));
      ++report_.fault_errors["restart"];
      stores_.Forget(id);
      return false;
    }
    fates_[id] = Fate::kRunning;
    table_.Publish(id, NodeOf(id));
    watchers_.Resume(id, NodeOf(id));
    return true;
  }

  void RemovedForGood(MemberId id) {
    if (fates_[id] == Fate::kRunning) CrashMember(id);
    fates_[id] = Fate::kRemoved;
    watchers_.Retire(id);
  }

  // Sleeps, restarting ended watch streams and following the leader.
  void Pause(milliseconds duration) {
    const auto until = Clock::now() + duration;
    while (true) {
      watchers_.Maintain([this](MemberId id) {
        return fates_[id] == Fate::kRunning ? NodeOf(id) : nullptr;
      });
      const LeaderView leader = FindLeader();
      if (leader.id != raft::kNoMember &&
          (leader.id != last_leader_.id || leader.term != last_leader_.term)) {
        if (last_leader_.id != raft::kNoMember) ++report_.leader_changes;
        last_leader_ = leader;
      }
      const auto now = Clock::now();
      if (now >= until) return;
      std::this_thread::sleep_for(
          std::min<Clock::duration>(milliseconds(50), until - now));
    }
  }

  // Each running member's view, for logs and failure reports.
  std::string DescribeMembers() const {
    std::string text;
    for (MemberId id : RunningIds()) {
      const NodeStatus status = NodeOf(id)->GetStatus();
      absl::StrAppend(
          &text, " member ", id, ": ", raft::RoleName(status.role), " term ",
          status.term, " leader ", status.leader, " commit ",
          status.commit_index, " applied ", status.applied_index,
          status.membership.joint() ? " joint" : "",
          raft::IsMember(status.membership, id) ? "" : " not-a-member",
          status.storage_error.ok() ? "" : " storage-failed");
      for (const raft::MemberProgress& p : status.progress) {
        if (p.id == id) continue;
        static constexpr const char* kStates[] = {"probe", "replicate",
                                                  "snapshot"};
        absl::StrAppend(&text, " [", p.id, p.voter ? "" : " learner", " ",
                        kStates[static_cast<int>(p.state)], " match ", p.match,
                        " next ", p.next, p.recently_active ? "" : " inactive",
                        "]");
      }
      absl::StrAppend(&text, ";");
    }
    return text;
  }

  void Count(const std::string& kind, const std::string& detail) {
    ++report_.faults[kind];
    log_.Note(absl::StrCat(kind, ": ", detail));
  }

  void CountError(const std::string& kind, const absl::Status& status) {
    ++report_.fault_errors[kind];
    log_.Note(absl::StrCat(kind, " failed: ", status.ToString()));
  }

  // --- Nemesis
  // ------------------------------------------------------------------

  void RunNemesis() {
    Rng rng(MixSeed(options_.seed, 1));
    int total = 0;
    for (const ActionWeight& a : kActionWeights) {
      if (options_.in_memory_network || !a.needs_memory_network)
        total += a.weight;
    }
    Pause(rng.Millis(500, 1000));
    for (int n = 0; n < kMaxNemesisActions && Clock::now() < end_; ++n) {
      int draw = static_cast<int>(rng.Between(0, total - 1));
      Action action = Action::kCrash;
      for (const ActionWeight& a : kActionWeights) {
        if (!options_.in_memory_network && a.needs_memory_network) continue;
        if (draw < a.weight) {
          action = a.action;
          break;
        }
        draw -= a.weight;
      }
      // Each action draws from its own generator: how many numbers it
      // takes then never shifts the actions after it.
      Rng action_rng(rng.Next());
      RunAction(action, action_rng);
      log_.Note(absl::StrCat("after the action:", DescribeMembers()));
      Pause(rng.Millis(500, 2000));
    }
  }

  void RunAction(Action action, Rng& rng) {
    switch (action) {
      case Action::kCrash:
        return CrashAndRestart(rng);
      case Action::kSnapshotCrash:
        return CrashDuringCatchUp(rng);
      case Action::kPartition:
        return PartitionOne(rng);
      case Action::kOneWayPartition:
        return PartitionOneWay(rng);
      case Action::kTransferLeadership:
        return TransferLeadership(rng);
      case Action::kMembership:
        return ChangeMembership(rng);
      case Action::kStorageFault:
        return FailStorage(rng);
      case Action::kSlowDisk:
        return SlowDisk(rng);
    }
  }

  // A running member: the leader when `prefer_leader` and there is one.
  MemberId PickVictim(bool prefer_leader, uint64_t draw) const {
    const std::vector<MemberId> running = RunningIds();
    if (running.empty()) return raft::kNoMember;
    const MemberId leader = FindLeader().id;
    if (prefer_leader && leader != raft::kNoMember) return leader;
    return PickFrom(running, draw);
  }

  void CrashAndRestart(Rng& rng) {
    const bool prefer_leader = rng.Chance(0.4);
    const uint64_t draw = rng.Next();
    const milliseconds down = rng.Millis(300, 1500);
    const MemberId victim = PickVictim(prefer_leader, draw);
    if (victim == raft::kNoMember) return;
    Count(victim == FindLeader().id ? "crash-leader" : "crash-follower",
          absl::StrCat("member ", victim, " for ", down.count(), " ms"));
    CrashMember(victim);
    Pause(down);
    RestartMember(victim);
  }

  // A member is crashed long enough to fall behind the leader's log, then
  // restarted, and once the leader streams it a snapshot either end of the
  // stream is crashed.
  void CrashDuringCatchUp(Rng& rng) {
    const uint64_t draw = rng.Next();
    const milliseconds behind = rng.Millis(1200, 3000);
    const bool crash_sender = rng.Chance(0.5);
    const milliseconds into_stream = rng.Millis(0, 150);
    const milliseconds down = rng.Millis(300, 1200);
    const MemberId leader = FindLeader().id;
    std::vector<MemberId> followers = RunningIds();
    std::erase(followers, leader);
    if (leader == raft::kNoMember || followers.empty()) return;
    const MemberId victim = PickFrom(followers, draw);
    log_.Note(absl::StrCat("crash member ", victim, " for ", behind.count(),
                           " ms to make it catch up by snapshot"));
    CrashMember(victim);
    Pause(behind);
    const auto restarted = Clock::now();
    if (!RestartMember(victim)) return;
    bool streaming = false;
    for (int i = 0; i < 100 && !streaming; ++i) {
      streaming = log_.LastSnapshotSendTo(victim) >= restarted;
      if (!streaming) Pause(milliseconds(20));
    }
    Pause(into_stream);
    MemberId target = victim;
    if (crash_sender) {
      const MemberId sender = FindLeader().id;
      if (sender != raft::kNoMember && sender != victim) target = sender;
    }
    Count(!streaming         ? "crash-catching-up"
          : target == victim ? "crash-snapshot-receiver"
                             : "crash-snapshot-sender",
          absl::StrCat("member ", target, " for ", down.count(), " ms (member ",
                       victim, " catching up)"));
    CrashMember(target);
    Pause(down);
    RestartMember(target);
  }

  // Partitions last long enough, mostly, for the others to elect a leader
  // (an election timeout is 600 ms to 1.2 s, and a first election can
  // fail), so that a cut-off leader is replaced and its uncommitted entries
  // are overwritten after the heal.
  void PartitionOne(Rng& rng) {
    const bool prefer_leader = rng.Chance(0.6);
    const uint64_t draw = rng.Next();
    const milliseconds span = rng.Millis(1200, 3000);
    const MemberId victim = PickVictim(prefer_leader, draw);
    if (victim == raft::kNoMember) return;
    Count(victim == FindLeader().id ? "partition-leader" : "partition-follower",
          absl::StrCat("member ", victim, " for ", span.count(), " ms"));
    if (absl::Status s = cluster_->Partition(victim); !s.ok()) {
      return CountError("partition", s);
    }
    Pause(span);
    log_.Note(absl::StrCat("before the heal:", DescribeMembers()));
    (void)cluster_->Heal();
  }

  void PartitionOneWay(Rng& rng) {
    const int64_t pattern = rng.Between(0, 2);
    const uint64_t draw = rng.Next();
    const milliseconds span = rng.Millis(1200, 3000);
    const MemberId leader = FindLeader().id;
    std::vector<MemberId> followers = RunningIds();
    std::erase(followers, leader);
    if (leader == raft::kNoMember || followers.empty()) return;
    const MemberId follower = PickFrom(followers, draw);
    const std::vector<MemberId> everyone = cluster_->ids();
    std::string kind;
    if (pattern == 0) {
      // The leader hears everyone but reaches nobody.
      kind = "one-way-leader-mute";
      for (MemberId to : everyone) (void)cluster_->SetLinkUp(leader, to, false);
    } else if (pattern == 1) {
      kind = "one-way-follower-deaf";
      (void)cluster_->SetLinkUp(leader, follower, false);
    } else {
      // The follower hears the leader's heartbeats but cannot answer.
      kind = "one-way-follower-mute";
      for (MemberId to : everyone)
        (void)cluster_->SetLinkUp(follower, to, false);
    }
    Count(kind, absl::StrCat("leader ", leader, ", follower ", follower,
                             " for ", span.count(), " ms"));
    Pause(span);
    (void)cluster_->Heal();
  }

  void TransferLeadership(Rng& rng) {
    const uint64_t draw = rng.Next();
    const MemberId leader = FindLeader().id;
    if (leader == raft::kNoMember) return;
    std::vector<MemberId> candidates;
    for (MemberId id : CurrentMembership().voters) {
      if (id != leader && fates_[id] == Fate::kRunning)
        candidates.push_back(id);
    }
    if (candidates.empty()) return;
    const MemberId target = PickFrom(candidates, draw);
    Count("transfer-leadership", absl::StrCat("from ", leader, " to ", target));
    if (absl::Status s = NodeOf(leader)->TransferLeadership(target); !s.ok()) {
      CountError("transfer-leadership", s);
    }
  }

  void ChangeMembership(Rng& rng) {
    const bool prefer_add = rng.Chance(0.5);
    const uint64_t draw = rng.Next();
    const bool remove_leader = rng.Chance(0.25);
    const milliseconds catch_up = rng.Millis(300, 2500);
    const raft::Membership membership = CurrentMembership();
    if (membership.joint() || FindLeader().id == raft::kNoMember) return;
    if (!membership.learners.empty()) {
      return Promote(PickFrom(membership.learners, draw));
    }
    const size_t size = membership.voters.size() + membership.learners.size();
    const bool can_add = size < kMaxMembers;
    const bool can_remove = membership.voters.size() > kMinVoters;
    if (can_add && (prefer_add || !can_remove)) {
      AddAndPromote(catch_up);
    } else if (can_remove) {
      Remove(membership, remove_leader, draw);
    }
  }

  // A member that starts empty, catches up as a learner while writes go on,
  // and becomes a voter.
  void AddAndPromote(milliseconds catch_up) {
    const std::vector<MemberId> before = cluster_->ids();
    absl::StatusOr<MemberId> added = cluster_->AddMember();
    MemberId id = raft::kNoMember;
    for (MemberId candidate : cluster_->ids()) {
      if (!Contains(before, candidate)) id = candidate;
    }
    if (id == raft::kNoMember) return CountError("add-learner", added.status());
    if (NodeOf(id) == nullptr) {  // It never opened.
      fates_[id] = Fate::kRemoved;
      return CountError("add-learner", added.status());
    }
    fates_[id] = Fate::kRunning;
    table_.Publish(id, NodeOf(id));
    watchers_.AddMember(id, NodeOf(id));
    if (!added.ok()) {
      CountError("add-learner", added.status());
      // The change may still commit; if it does not, the member would sit
      // outside the cluster forever.
      for (int i = 0; i < 30 && !raft::IsMember(CurrentMembership(), id); ++i) {
        Pause(milliseconds(100));
      }
      if (!raft::IsMember(CurrentMembership(), id)) return RemovedForGood(id);
    }
    Count("add-learner", absl::StrCat("member ", id, " from empty"));
    Pause(catch_up);
    Promote(id);
  }

  void Promote(MemberId id) {
    const MemberId leader = FindLeader().id;
    if (leader == raft::kNoMember) return;
    Count("promote", absl::StrCat("member ", id));
    if (absl::Status s = NodeOf(leader)->PromoteToVoter(id); !s.ok()) {
      CountError("promote", s);
    }
  }

  void Remove(const raft::Membership& membership, bool remove_leader,
              uint64_t draw) {
    const MemberId leader = FindLeader().id;
    std::vector<MemberId> others = membership.voters;
    std::erase(others, leader);
    if (leader == raft::kNoMember || others.empty()) return;
    const MemberId victim = remove_leader ? leader : PickFrom(others, draw);
    Count(victim == leader ? "remove-leader" : "remove-member",
          absl::StrCat("member ", victim));
    absl::Status s = NodeOf(leader)->RemoveMember(victim);
    if (!s.ok()) CountError("remove-member", s);
    // Whatever the call said, the configuration decides.
    for (int i = 0; i < 30 && raft::IsMember(CurrentMembership(), victim);
         ++i) {
      Pause(milliseconds(100));
    }
    if (!raft::IsMember(CurrentMembership(), victim)) RemovedForGood(victim);
  }

  // node.h: a member whose log store failed refuses writes until it is
  // reopened. The harness arms a few failing writes, lets the failure show,
  // then crashes the member and reopens it on the same (healthy) directory.
  void FailStorage(Rng& rng) {
    const bool prefer_leader = rng.Chance(0.4);
    const uint64_t draw = rng.Next();
    const int failing_writes = static_cast<int>(rng.Between(1, 3));
    const milliseconds surface = rng.Millis(300, 1200);
    const milliseconds down = rng.Millis(200, 800);
    const MemberId victim = PickVictim(prefer_leader, draw);
    HarnessLogStore* store = stores_.Find(victim);
    if (store == nullptr) return;
    Count(victim == FindLeader().id ? "storage-fault-leader" : "storage-fault",
          absl::StrCat("member ", victim, ": ", failing_writes,
                       " failing writes"));
    store->FailNextWrites(failing_writes,
                          absl::InternalError("injected log write failure"));
    Pause(surface);
    if (NodeOf(victim)->GetStatus().storage_error.ok()) {
      log_.Note(
          absl::StrCat("member ", victim, " reported no storage error yet"));
    }
    CrashMember(victim);
    Pause(down);
    RestartMember(victim);
  }

  void SlowDisk(Rng& rng) {
    const bool prefer_leader = rng.Chance(0.4);
    const uint64_t draw = rng.Next();
    const milliseconds delay = rng.Millis(5, 60);
    const milliseconds span = rng.Millis(1000, 3000);
    const MemberId victim = PickVictim(prefer_leader, draw);
    HarnessLogStore* store = stores_.Find(victim);
    if (store == nullptr) return;
    Count("slow-disk",
          absl::StrCat("member ", victim, ": +", delay.count(),
                       " ms per log write for ", span.count(), " ms"));
    store->SetWriteDelay(delay);
    Pause(span);
    store->SetWriteDelay(milliseconds(0));
  }

  // --- The end of the run
  // -------------------------------------------------------

  absl::Status WaitForConvergence() {
    const auto deadline = Clock::now() + kConvergenceTimeout;
    int stable_rounds = 0;
    raft::Index last_commit = 0;
    std::string why = "no leader";
    while (Clock::now() < deadline) {
      Pause(milliseconds(100));
      const LeaderView leader = FindLeader();
      why = absl::StrCat(leader.id == raft::kNoMember ? "no leader;" : "",
                         DescribeMembers());
      NodeStatus led;
      if (leader.id != raft::kNoMember) led = NodeOf(leader.id)->GetStatus();
      bool agreed = leader.id != raft::kNoMember && !led.membership.joint();
      for (MemberId id : RunningIds()) {
        const NodeStatus status = NodeOf(id)->GetStatus();
        agreed = agreed && raft::IsMember(led.membership, id) &&
                 status.applied_index == led.commit_index &&
                 status.leader == leader.id;
      }
      if (agreed && led.commit_index == last_commit) {
        if (++stable_rounds >= 2) return absl::OkStatus();
      } else {
        stable_rounds = 0;
      }
      last_commit = led.commit_index;
    }
    return absl::DeadlineExceededError(why);
  }

  void FinalReads() {
    // Reads on a converged cluster answer at once; the bound is for one
    // that stops answering.
    const auto deadline = Clock::now() + std::chrono::seconds(30);
    for (const std::string& key : keys_) {
      for (MemberId id : RunningIds()) {
        for (int attempt = 0; attempt < 10 && Clock::now() < deadline;
             ++attempt) {
          Operation op{.id = next_op_id_++,
                       .client = kFinalReadClient + static_cast<int>(id),
                       .member = id,
                       .type = OpType::kGet,
                       .key = key,
                       .read = ReadKind::kLinearizable};
          op.invoke = clock_.Now();
          absl::StatusOr<kv::KeyValue> result =
              NodeOf(id)->Get(kNamespace, key);
          op.complete = clock_.Now();
          RecordReadResult(result, op, final_log_);
          const bool done = op.outcome == Outcome::kOk;
          final_log_.ops.push_back(std::move(op));
          if (done) break;
          Pause(milliseconds(100));
        }
      }
    }
  }

  // After convergence every member must hold the same keys, values and
  // revisions.
  void CompareMemberStates() {
    using State = std::map<std::string, std::pair<std::string, uint64_t>>;
    std::optional<std::pair<MemberId, State>> reference;
    for (MemberId id : RunningIds()) {
      absl::StatusOr<kv::ListPage> page = NodeOf(id)->List(
          {.ns = kNamespace, .limit = 1000}, {ReadConsistency::kLocal});
      if (!page.ok()) {
        report_.violations.push_back(absl::StrCat(
            "member ", id,
            " cannot list its own state: ", page.status().ToString()));
        continue;
      }
      State state;
      for (const kv::KeyValue& item : page->items) {
        state[item.key] = {TagOfStoredValue(item.value), item.mod_revision};
      }
      if (!reference) {
        reference.emplace(id, std::move(state));
        continue;
      }
      if (state == reference->second) continue;
      std::string diff;
      for (const std::string& key : keys_) {
        auto mine = state.find(key);
        auto theirs = reference->second.find(key);
        const std::string a =
            mine == state.end()
                ? "absent"
                : absl::StrCat(mine->second.first, "@", mine->second.second);
        const std::string b = theirs == reference->second.end()
                                  ? "absent"
                                  : absl::StrCat(theirs->second.first, "@",
                                                 theirs->second.second);
        if (a != b) absl::StrAppend(&diff, " ", key, ": ", a, " vs ", b, ";");
      }
      report_.violations.push_back(
          absl::StrCat("converged members hold different states: member ", id,
                       " vs member ", reference->first, ":", diff));
    }
  }

  // Lets the watchers deliver up to the last write before they are stopped,
  // so their streams end where the run did.
  void WaitForWatchers() {
    uint64_t target = 0;
    for (const Operation& op : final_log_.ops) {
      if (op.outcome == Outcome::kOk && op.found)
        target = std::max(target, op.revision);
    }
    const auto deadline = Clock::now() + std::chrono::seconds(5);
    while (watchers_.LowestActiveRevision() < target &&
           Clock::now() < deadline) {
      Pause(milliseconds(50));
    }
  }

  // Lists are not in the history; they are checked here for values that no
  // write could have produced.
  void CheckLists() {
    std::map<std::pair<std::string, std::string>, const Operation*> writes;
    std::vector<const Operation*> all;
    for (const ClientLog& log : client_logs_) {
      for (const Operation& op : log.ops) {
        if (op.type == OpType::kPut || op.type == OpType::kCompareAndSet) {
          writes[{op.key, op.value}] = &op;
        }
        if (op.type == OpType::kGet && op.value.rfind("corrupt:", 0) == 0) {
          report_.violations.push_back(
              absl::StrCat("a read returned bytes no write produced: ",
                           DescribeOperation(op)));
        }
      }
    }
    for (const ClientLog& log : client_logs_) {
      report_.lists += log.lists.size();
      for (const ListRecord& list : log.lists) {
        for (const auto& [key, tag] : list.items) {
          auto it = writes.find({key, tag});
          std::string problem;
          if (it == writes.end()) {
            problem = "which no write of that key carried";
          } else if (it->second->outcome == Outcome::kFailed) {
            problem =
                absl::StrCat("whose write was reported not to take effect (",
                             DescribeOperation(*it->second), ")");
          } else if (it->second->cas_mismatch) {
            problem =
                absl::StrCat("whose compare-and-set was reported a mismatch (",
                             DescribeOperation(*it->second), ")");
          }
          if (problem.empty()) continue;
          report_.violations.push_back(absl::StrCat(
              "client ", list.client, " listed key ", key, " on member ",
              list.member, " with value ", tag, ", ", problem));
        }
      }
    }
  }

  void MergeClientLog(ClientLog& log) {
    for (Operation& op : log.ops)
      report_.history.operations.push_back(std::move(op));
    log.ops.clear();
    report_.statuses.merge(log.statuses);
  }

  const FaultRunOptions options_;
  const RunClock clock_;
  RunMetrics metrics_;
  RunLog log_;
  StoreRegistry stores_;
  MemberTable table_;
  std::vector<std::string> keys_;
  std::atomic<uint64_t> next_op_id_{1};
  Clock::time_point end_{};
  std::vector<ClientLog> client_logs_;  // One per client thread.
  ClientLog final_log_;
  FaultRunReport report_;

  // Nemesis thread while the run lasts, then the finishing thread.
  std::unique_ptr<testing::LocalCluster> cluster_;
  Watchers watchers_;  // Declared after cluster_: destroyed before the Nodes.
  std::map<MemberId, Fate> fates_;
  LeaderView last_leader_;
};

}  // namespace

std::string DescribeOperation(const Operation& op) {
  static constexpr const char* kTypes[] = {"get", "put", "delete", "cas"};
  static constexpr const char* kReads[] = {"linearizable", "lease", "local"};
  static constexpr const char* kOutcomes[] = {"ok", "failed", "unknown"};
  std::string text =
      absl::StrCat("op ", op.id, " client ", op.client, " member ", op.member,
                   " ", kTypes[static_cast<int>(op.type)], " ", op.key);
  if (op.type == OpType::kGet)
    absl::StrAppend(&text, " (", kReads[static_cast<int>(op.read)], ")");
  if (op.type == OpType::kCompareAndSet) {
    absl::StrAppend(&text, " if revision ", op.expected_revision);
  }
  if (op.type == OpType::kPut || op.type == OpType::kCompareAndSet) {
    absl::StrAppend(&text, " = ", op.value);
  }
  absl::StrAppend(
      &text, " [", static_cast<double>(op.invoke) / 1e9, "s, ",
      op.complete == kNever
          ? std::string("never")
          : absl::StrCat(static_cast<double>(op.complete) / 1e9, "s"),
      "] -> ", kOutcomes[static_cast<int>(op.outcome)]);
  if (op.outcome == Outcome::kOk) {
    if (op.cas_mismatch) {
      absl::StrAppend(&text, " revision mismatch");
    } else if (!op.found) {
      absl::StrAppend(&text, " not found");
    } else if (op.type == OpType::kGet) {
      absl::StrAppend(&text, " ", op.value, " @", op.revision);
    } else {
      absl::StrAppend(&text, " @", op.revision);
    }
  }
  return text;
}

absl::StatusOr<FaultRunReport> RunFaults(const FaultRunOptions& options) {
  if (options.clients < 1 || options.clients > 64) {
    return absl::InvalidArgumentError("clients must be within [1, 64]");
  }
  if (options.keys < 1 || options.keys > 100) {
    return absl::InvalidArgumentError("keys must be within [1, 100]");
  }
  if (options.duration.count() < 1) {
    return absl::InvalidArgumentError("the run must last at least 1 s");
  }
  FaultRun run(options);
  if (absl::Status started = run.Start(); !started.ok()) return started;
  run.Run();
  run.Finish();
  return run.TakeReport();
}

}  // namespace confman::fault
