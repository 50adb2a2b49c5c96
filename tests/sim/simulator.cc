#include "simulator.h"

#include <algorithm>
#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "checker.h"
#include "cluster.h"
#include "confman/raft/core.h"
#include "rng.h"

namespace confman::sim {
namespace {

using raft::MemberId;

constexpr uint32_t kStepsPerTick = 10;
constexpr uint32_t kElectionTimeoutTicks = 10;
constexpr uint32_t kMinVoters = 3;
constexpr uint32_t kMaxVoters = 5;
constexpr uint32_t kSpares = 2;
// Per step, in parts per million: the leader compacts every 10 ticks or so.
constexpr uint32_t kLivenessCompactRate = 10000;

// How often each kind of event starts, per step, in parts per million.
struct Rates {
  uint32_t propose = 30000;
  uint32_t read = 15000;
  uint32_t membership = 800;
  uint32_t transfer = 400;
  uint32_t crash = 300;
  uint32_t partition = 500;
  uint32_t compact = 2000;
  // Reactive faults: isolate a member the moment it becomes leader (before
  // its no-op spreads), or right after it accepts a proposal. These build
  // the divergent logs of the thesis's Figure 3.7 quickly.
  uint32_t isolate_new_leader = 0;
  uint32_t isolate_after_propose = 0;
  uint32_t isolate_after_commit = 0;
  // Crash a random member when the leader's commit index moves: members
  // that have just acknowledged entries lose what they had not flushed.
  uint32_t crash_after_commit = 0;
  uint32_t min_partition_ticks = 5;
  uint32_t max_partition_ticks = 80;
  // Quick restarts come back within an election timeout. Lease reads
  // assume a member that granted a lease stays away longer than that
  // (thesis §6.4.1), so seeds with quick restarts read by ReadIndex only.
  bool quick_restarts = false;
};

struct Scenario {
  ClusterConfig cluster;
  Rates rates;
};

template <typename T, size_t N>
T Pick(Rng& rng, const T (&choices)[N]) {
  return choices[rng.Below(N)];
}

// Each seed draws its own fault intensities and flow-control settings, so
// that one batch of seeds covers calm and hostile networks, tiny and large
// append batches, and fast and slow disks.
Scenario DrawScenario(Rng& rng, const SimOptions& options) {
  Scenario s;
  ClusterConfig& c = s.cluster;
  c.voters = options.members;
  c.spares = kSpares;
  c.steps_per_tick = kStepsPerTick;
  c.core.election_timeout_ticks = kElectionTimeoutTicks;
  // Pre-vote and check-quorum each keep a disruptive member (a removed one,
  // or one returning from a partition) from deposing a healthy leader; run
  // with both, or with either alone.
  switch (rng.Below(5)) {
    case 0: c.core.pre_vote = false; break;
    case 1: c.core.check_quorum = false; break;
    default: break;
  }
  c.core.max_append_entries = Pick(rng, {1u, 2u, 8u, 64u});
  c.core.max_append_bytes = Pick(rng, {uint64_t{48}, uint64_t{4} << 20});
  c.core.max_inflight_messages = Pick(rng, {1u, 4u, 64u});
  c.core.max_inflight_bytes = Pick(rng, {uint64_t{64}, uint64_t{32} << 20});
  c.core.max_uncommitted_bytes = std::max<uint64_t>(
      c.core.max_append_bytes, Pick(rng, {uint64_t{256}, uint64_t{1} << 16}));
  if (c.core.max_append_entries * c.core.max_inflight_messages <= 4) {
    // Entry-at-a-time replication is slow by design: a small uncommitted
    // budget keeps the backlog, and so the time to drain it, bounded.
    c.core.max_append_bytes = 48;
    c.core.max_uncommitted_bytes = 512;
  }
  c.core.max_apply_bytes = Pick(rng, {uint64_t{1}, uint64_t{16} << 20});
  c.core.max_pending_reads = Pick(rng, {4u, 4096u});
  c.core.heartbeat_interval_ticks = Pick(rng, {1u, 1u, 3u});
  c.core.testing_faults = options.testing_faults;
  c.network.drop_per_million = Pick(rng, {0u, 10000u, 50000u, 100000u});
  c.network.duplicate_per_million = Pick(rng, {0u, 10000u, 50000u});
  c.network.reorder_per_million = Pick(rng, {0u, 50000u, 200000u});
  c.network.max_delay_steps = Pick(rng, {3u, 8u, 15u});
  c.network.stale_per_million = Pick(rng, {0u, 2000u, 10000u});
  c.disk.max_delay_steps = Pick(rng, {2u, 10u, 30u, 60u});
  c.disk.slow_per_million = 10000;
  Rates& r = s.rates;
  if (rng.Chance(400000)) {  // A storm: short, frequent, targeted faults.
    r.quick_restarts = rng.Chance(500000);
    r.crash = r.quick_restarts ? 5000 : 1000;
    r.crash_after_commit = r.quick_restarts ? Pick(rng, {20000u, 100000u}) : 0;
    r.partition = 3000;
    r.min_partition_ticks = Pick(rng, {2u, 10u});
    r.max_partition_ticks = Pick(rng, {20u, 40u});
    r.read = 40000;
    r.isolate_new_leader = Pick(rng, {100000u, 300000u, 500000u});
    r.isolate_after_propose = Pick(rng, {20000u, 100000u, 200000u});
    r.isolate_after_commit = Pick(rng, {0u, 50000u, 200000u});
    c.core.max_append_entries = Pick(rng, {1u, 1u, 2u, 64u});
    r.transfer = 1000;
  } else {
    r.crash = Pick(rng, {0u, 200u, 600u});
    r.partition = Pick(rng, {0u, 300u, 1000u});
  }
  return s;
}

const char* ProgressStateName(raft::MemberProgress::State state) {
  switch (state) {
    case raft::MemberProgress::State::kProbe: return "probe";
    case raft::MemberProgress::State::kReplicate: return "replicate";
    case raft::MemberProgress::State::kSnapshot: return "snapshot";
  }
  return "unknown";
}

// One run: the fault phase, then the liveness phase.
class Run {
 public:
  explicit Run(const SimOptions& options)
      : options_(options),
        rng_(options.seed),
        scenario_(DrawScenario(rng_, options)),
        cluster_(scenario_.cluster, rng_, checker_, options.trace) {}

  RunReport Execute() {
    if (options_.trace != nullptr) *options_.trace << DescribeScenario() << "\n";
    cluster_.Boot();
    for (step_ = 0; step_ < options_.steps && !checker_.failed(); ++step_) {
      cluster_.Advance(step_);
      InjectFaults();
      DriveWorkload();
      cluster_.FinishStep();
    }
    if (!checker_.failed()) CheckLiveness();
    return Report();
  }

 private:
  RunReport Report() const {
    RunReport report;
    report.options = options_;
    report.options.trace = nullptr;
    if (checker_.failed()) {
      report.violation = checker_.violation();
      report.violation_step = step_;
    }
    const ClusterStats& c = cluster_.stats();
    report.stats.leaders = checker_.leaders_observed();
    report.stats.applied = checker_.applied_max();
    report.stats.proposals = proposals_;
    report.stats.reads_checked = c.reads_checked;
    report.stats.crashes = c.crashes;
    report.stats.snapshots_installed = c.snapshots_installed;
    report.stats.membership_applied = c.membership_applied;
    report.stats.transfers = transfers_;
    report.stats.liveness_ticks = liveness_ticks_;
    return report;
  }

  std::string DescribeScenario() const {
    const ClusterConfig& c = scenario_.cluster;
    const Rates& r = scenario_.rates;
    return absl::StrCat(
        "scenario: pre_vote=", c.core.pre_vote, " check_quorum=", c.core.check_quorum,
        " heartbeat=", c.core.heartbeat_interval_ticks,
        " append_entries=", c.core.max_append_entries,
        " append_bytes=", c.core.max_append_bytes,
        " inflight=", c.core.max_inflight_messages, "/", c.core.max_inflight_bytes,
        " uncommitted=", c.core.max_uncommitted_bytes,
        " apply_bytes=", c.core.max_apply_bytes, " drop=", c.network.drop_per_million,
        " dup=", c.network.duplicate_per_million,
        " reorder=", c.network.reorder_per_million,
        " stale=", c.network.stale_per_million,
        " delay<=", c.network.max_delay_steps, " disk<=", c.disk.max_delay_steps,
        " crash=", r.crash, r.quick_restarts ? " (quick)" : "",
        " crash after commit=", r.crash_after_commit,
        " partition=", r.partition, " ticks=", r.min_partition_ticks, "..",
        r.max_partition_ticks, " isolate new/propose/commit=",
        r.isolate_new_leader, "/", r.isolate_after_propose, "/",
        r.isolate_after_commit);
  }

  MemberId RandomMember() {
    return static_cast<MemberId>(rng_.Between(1, cluster_.size()));
  }

  // ---- faults ----

  void InjectFaults() {
    const Rates& rates = scenario_.rates;
    if (partitioned_ && step_ >= heal_at_) {
      cluster_.HealAll();
      partitioned_ = false;
    }
    if (!partitioned_ && rng_.Chance(rates.partition)) Partition();
    if (rng_.Chance(rates.crash)) CrashOne();
    if (rng_.Chance(rates.compact)) cluster_.CompactSome(RandomMember());
    std::optional<MemberId> leader = cluster_.Leader();
    if (!leader) return;
    const raft::Core& core = *cluster_.core(*leader);
    if (core.term() != last_leader_term_) {
      last_leader_term_ = core.term();
      last_leader_commit_ = core.CommitIndex();
      if (rng_.Chance(rates.isolate_new_leader)) Isolate(*leader);
    } else if (core.CommitIndex() != last_leader_commit_) {
      last_leader_commit_ = core.CommitIndex();
      if (rng_.Chance(rates.isolate_after_commit)) Isolate(*leader);
      if (rng_.Chance(rates.crash_after_commit)) Crash(RandomMember());
    }
  }

  void Isolate(MemberId victim) {
    cluster_.HealAll();
    for (MemberId other = 1; other <= cluster_.size(); ++other) {
      if (other == victim) continue;
      cluster_.Block(victim, other);
      cluster_.Block(other, victim);
    }
    partitioned_ = true;
    heal_at_ = step_ + PartitionSteps();
  }

  uint64_t PartitionSteps() {
    return rng_.Between(scenario_.rates.min_partition_ticks,
                        scenario_.rates.max_partition_ticks) *
           kStepsPerTick;
  }

  void Partition() {
    const uint32_t n = cluster_.size();
    switch (rng_.Below(4)) {
      case 0: {  // Isolate one member, often the leader.
        std::optional<MemberId> leader = cluster_.Leader();
        const MemberId victim =
            leader && rng_.Chance(500000) ? *leader : RandomMember();
        for (MemberId other = 1; other <= n; ++other) {
          if (other == victim) continue;
          cluster_.Block(victim, other);
          cluster_.Block(other, victim);
        }
        break;
      }
      case 1: {  // Split into two random sides.
        const uint64_t side = rng_.Next();
        for (MemberId a = 1; a <= n; ++a) {
          for (MemberId b = 1; b <= n; ++b) {
            if (((side >> a) & 1) != ((side >> b) & 1)) cluster_.Block(a, b);
          }
        }
        break;
      }
      case 2: {  // One-way: a member can send but not hear, or the reverse.
        const MemberId victim = RandomMember();
        const bool deaf = rng_.Chance(500000);
        for (MemberId other = 1; other <= n; ++other) {
          if (other == victim) continue;
          deaf ? cluster_.Block(other, victim) : cluster_.Block(victim, other);
        }
        break;
      }
      default:  // Random one-way link cuts.
        for (MemberId a = 1; a <= n; ++a) {
          for (MemberId b = 1; b <= n; ++b) {
            if (a != b && rng_.Chance(250000)) cluster_.Block(a, b);
          }
        }
    }
    partitioned_ = true;
    heal_at_ = step_ + PartitionSteps();
  }

  void CrashOne() {
    std::optional<MemberId> leader = cluster_.Leader();
    Crash(leader && rng_.Chance(500000) ? *leader : RandomMember());
  }

  void Crash(MemberId victim) {
    if (cluster_.down_count() >= 2) return;
    // Unless restarts are quick, a crashed member stays down for more than
    // an election timeout: lease reads rely on a restarted member not voting
    // while a lease it granted may still be held (thesis §6.4.1).
    const uint64_t down_ticks =
        scenario_.rates.quick_restarts
            ? rng_.Between(0, kElectionTimeoutTicks)
            : rng_.Between(kElectionTimeoutTicks + 2, 4 * kElectionTimeoutTicks);
    cluster_.Crash(victim, step_ + down_ticks * kStepsPerTick);
  }

  // ---- workload ----

  void DriveWorkload() {
    const Rates& rates = scenario_.rates;
    if (rng_.Chance(rates.propose)) Propose();
    if (rng_.Chance(rates.read)) {
      const MemberId id = PreferLeader();
      const bool lease = !scenario_.rates.quick_restarts && rng_.Chance(500000);
      cluster_.Read(id, lease ? raft::ReadMode::kLease : raft::ReadMode::kReadIndex);
    }
    if (rng_.Chance(rates.membership)) ChangeMembership();
    if (rng_.Chance(rates.transfer)) Transfer();
  }

  // Usually a member that believes it leads (a stale leader as likely as
  // the current one), sometimes anyone.
  MemberId PreferLeader() {
    const std::vector<MemberId> leaders = cluster_.Leaders();
    if (leaders.empty() || rng_.Chance(300000)) return RandomMember();
    return leaders[rng_.Below(leaders.size())];
  }

  std::string NextValue() {
    std::string value = absl::StrCat("v", ++values_);
    value.resize(value.size() + rng_.Below(24), '.');
    return value;
  }

  void Propose() {
    std::vector<std::string> data(rng_.Between(1, 3));
    for (std::string& value : data) value = NextValue();
    const MemberId id = PreferLeader();
    const std::optional<raft::ProposalPosition> position =
        cluster_.Propose(id, std::move(data));
    Accepted(position);
    if (position && rng_.Chance(scenario_.rates.isolate_after_propose)) Isolate(id);
  }

  void Accepted(const std::optional<raft::ProposalPosition>& position) {
    if (!position) return;
    ++proposals_;
    max_accepted_last_ = std::max(max_accepted_last_, position->last);
  }

  void ChangeMembership() {
    std::optional<MemberId> leader = cluster_.Leader();
    if (!leader) return;
    const raft::Membership& config = cluster_.core(*leader)->membership();
    if (config.joint()) return;
    std::vector<raft::MembershipChange> options;
    using Kind = raft::MembershipChange::Kind;
    for (MemberId id = 1; id <= cluster_.size(); ++id) {
      const bool voter = std::count(config.voters.begin(), config.voters.end(), id);
      const bool learner =
          std::count(config.learners.begin(), config.learners.end(), id);
      if (!voter && !learner) options.push_back({Kind::kAddLearner, id});
      if (learner && config.voters.size() < kMaxVoters) {
        options.push_back({Kind::kAddVoter, id});
      }
      if (learner || (voter && config.voters.size() > kMinVoters)) {
        options.push_back({Kind::kRemove, id});
      }
    }
    if (options.empty()) return;
    cluster_.ChangeMembership(*leader, options[rng_.Below(options.size())]);
  }

  void Transfer() {
    std::optional<MemberId> leader = cluster_.Leader();
    if (!leader) return;
    const std::vector<MemberId>& voters = cluster_.core(*leader)->membership().voters;
    const MemberId to = voters[rng_.Below(voters.size())];
    if (to != *leader && cluster_.TransferLeadership(*leader, to)) ++transfers_;
  }

  // ---- liveness ----

  // Faults stop and the network heals (crashed members come back at their
  // scheduled time); then a leader must commit a probe, every accepted
  // proposal must be settled (applied or overwritten), and every member of
  // the leader's configuration must apply through the probe.
  void CheckLiveness() {
    cluster_.HealAll();
    NetworkProfile calm = cluster_.network();
    calm.drop_per_million = 0;
    calm.duplicate_per_million = 0;
    calm.stale_per_million = 0;
    cluster_.set_network(calm);
    const uint64_t start = step_;
    const uint64_t limit = start + uint64_t{options_.liveness_ticks} * kStepsPerTick;
    for (; step_ < limit && !checker_.failed(); ++step_) {
      cluster_.Advance(step_);
      // Compaction is routine, not a fault: it keeps going (on the leader,
      // about once per ten ticks), so a member far behind catches up by
      // snapshot rather than entry by entry.
      std::optional<MemberId> leader = cluster_.Leader();
      if (leader && rng_.Chance(kLivenessCompactRate)) cluster_.CompactSome(*leader);
      const bool settled = step_ % kStepsPerTick == 0 && LivenessReached();
      cluster_.FinishStep();
      if (settled) {
        liveness_ticks_ = (step_ - start) / kStepsPerTick;
        return;
      }
    }
    if (checker_.failed()) return;
    checker_.Fail(absl::StrCat("liveness: ", options_.liveness_ticks,
                               " ticks after the faults stopped, ",
                               DescribeLivenessState()));
  }

  bool LivenessReached() {
    std::optional<MemberId> leader = cluster_.Leader();
    if (!leader) return false;
    const raft::Core& core = *cluster_.core(*leader);
    if (probe_ && probe_->term != core.term()) probe_.reset();
    if (!probe_) {
      ProposeProbe(*leader);
      return false;
    }
    if (checker_.applied_max() < probe_->last) return false;
    if (checker_.AppliedTermAt(probe_->last) != probe_->term ||
        checker_.applied_max() < max_accepted_last_) {
      probe_.reset();
      return false;
    }
    return ConfigurationApplied(core.membership(), probe_->last);
  }

  void ProposeProbe(MemberId leader) {
    const raft::Index last = cluster_.core(leader)->Status().last_index;
    const uint64_t count =
        max_accepted_last_ > last ? std::min<uint64_t>(max_accepted_last_ - last, 64) : 1;
    std::vector<std::string> data(count);
    for (std::string& value : data) value = absl::StrCat("probe-", NextValue());
    probe_ = cluster_.Propose(leader, std::move(data));
    Accepted(probe_);
  }

  bool ConfigurationApplied(const raft::Membership& config, raft::Index index) {
    for (const auto* list : {&config.voters, &config.voters_outgoing, &config.learners}) {
      for (MemberId id : *list) {
        if (!cluster_.up(id) || cluster_.state_machine(id).applied < index) {
          return false;
        }
      }
    }
    return true;
  }

  std::string DescribeLivenessState() const {
    std::string out = absl::StrCat("no probe settled (highest applied ",
                                   checker_.applied_max(), ", highest accepted ",
                                   max_accepted_last_, "); members:");
    for (MemberId id = 1; id <= cluster_.size(); ++id) {
      const raft::Core* core = cluster_.core(id);
      if (core == nullptr) {
        absl::StrAppend(&out, " m", id, "=down");
        continue;
      }
      const raft::CoreStatus status = core->Status();
      absl::StrAppend(&out, " m", id, "=", raft::RoleName(status.role), "/t",
                      status.term, "/commit ", status.commit, "/applied ",
                      cluster_.state_machine(id).applied, "/last ",
                      status.last_index,
                      status.storage_error.ok()
                          ? ""
                          : absl::StrCat("/error ", status.storage_error.ToString()));
      for (const raft::MemberProgress& p : status.progress) {
        absl::StrAppend(&out, " [m", p.id, (p.voter ? " voter " : " learner "),
                        ProgressStateName(p.state), " match ", p.match, " next ",
                        p.next, " inflight ", p.inflight_messages, "]");
      }
    }
    return out;
  }

  const SimOptions options_;
  Rng rng_;
  Scenario scenario_;
  SafetyChecker checker_;
  Cluster cluster_;
  uint64_t step_ = 0;
  bool partitioned_ = false;
  raft::Term last_leader_term_ = 0;
  raft::Index last_leader_commit_ = 0;
  uint64_t heal_at_ = 0;
  uint64_t values_ = 0;
  uint64_t proposals_ = 0;
  uint64_t transfers_ = 0;
  uint64_t liveness_ticks_ = 0;
  raft::Index max_accepted_last_ = 0;
  std::optional<raft::ProposalPosition> probe_;
};

struct FaultName {
  raft::TestingFault fault;
  const char* name;
};

constexpr FaultName kFaultNames[] = {
    {raft::TestingFault::kCommitOldTermEntries, "commit-old-term-entries"},
    {raft::TestingFault::kGrantTwoVotesPerTerm, "grant-two-votes-per-term"},
    {raft::TestingFault::kSkipConsistencyCheck, "skip-consistency-check"},
    {raft::TestingFault::kReadBeforeNoopCommit, "read-before-noop-commit"},
    {raft::TestingFault::kLeaseWithoutQuorum, "lease-without-quorum"},
};

}  // namespace

absl::Status SimOptions::Validate() const {
  if (members != 3 && members != 5) {
    return absl::InvalidArgumentError(absl::StrCat(
        "members is ", members, "; the simulator runs 3- or 5-member clusters"));
  }
  if (steps == 0) {
    return absl::InvalidArgumentError("steps is 0; give at least one step");
  }
  if (liveness_ticks < 5 * kElectionTimeoutTicks) {
    return absl::InvalidArgumentError(absl::StrCat(
        "liveness_ticks is ", liveness_ticks, "; allow at least ",
        5 * kElectionTimeoutTicks, " ticks (five election timeouts)"));
  }
  return absl::OkStatus();
}

RunStats& RunStats::operator+=(const RunStats& o) {
  leaders += o.leaders;
  applied += o.applied;
  proposals += o.proposals;
  reads_checked += o.reads_checked;
  crashes += o.crashes;
  snapshots_installed += o.snapshots_installed;
  membership_applied += o.membership_applied;
  transfers += o.transfers;
  liveness_ticks = std::max(liveness_ticks, o.liveness_ticks);
  return *this;
}

RunReport RunSeed(const SimOptions& options) {
  Run run(options);
  return run.Execute();
}

uint32_t MembersForSeed(uint64_t seed) { return seed % 2 == 1 ? 3 : 5; }

std::vector<RunReport> RunSeeds(uint64_t first_seed, uint64_t count,
                                const SimOptions& base,
                                std::optional<uint32_t> members, uint32_t jobs) {
  std::vector<RunReport> reports(count);
  std::atomic<uint64_t> next{0};
  auto worker = [&] {
    for (uint64_t i = next++; i < count; i = next++) {
      SimOptions options = base;
      options.seed = first_seed + i;
      options.members = members ? *members : MembersForSeed(options.seed);
      reports[i] = RunSeed(options);
    }
  };
  std::vector<std::thread> threads;
  for (uint32_t j = 1; j < std::max<uint32_t>(jobs, 1); ++j) threads.emplace_back(worker);
  worker();
  for (std::thread& t : threads) t.join();
  return reports;
}

std::string ReproduceCommand(const SimOptions& options) {
  std::string command =
      absl::StrCat("confman_sim --seed ", options.seed, " --steps ", options.steps,
                   " --members ", options.members);
  if (options.testing_faults != 0) {
    absl::StrAppend(&command, " --fault ", TestingFaultNames(options.testing_faults));
  }
  if (options.liveness_ticks != SimOptions().liveness_ticks) {
    absl::StrAppend(&command, " --liveness-ticks ", options.liveness_ticks);
  }
  return command;
}

std::optional<uint32_t> TestingFaultByName(std::string_view names) {
  uint32_t faults = 0;
  while (!names.empty()) {
    const size_t comma = std::min(names.find(','), names.size());
    const std::string_view name = names.substr(0, comma);
    names.remove_prefix(std::min(comma + 1, names.size()));
    const FaultName* found = nullptr;
    for (const FaultName& f : kFaultNames) {
      if (name == f.name) found = &f;
    }
    if (found == nullptr) return std::nullopt;
    faults |= static_cast<uint32_t>(found->fault);
  }
  return faults;
}

std::string TestingFaultNames(uint32_t faults) {
  std::vector<std::string> names;
  for (const FaultName& f : kFaultNames) {
    if (faults & static_cast<uint32_t>(f.fault)) names.push_back(f.name);
  }
  return absl::StrJoin(names, ",");
}

const std::vector<std::string>& AllTestingFaultNames() {
  static const auto* names = [] {
    auto* v = new std::vector<std::string>;
    for (const FaultName& f : kFaultNames) v->push_back(f.name);
    return v;
  }();
  return *names;
}

}  // namespace confman::sim
