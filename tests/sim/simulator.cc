// One simulator run (simulator.h): a fault phase over a drawn scenario,
// then a liveness phase with faults healed, checking safety after every
// step; and running many seeds over threads.
#include "simulator.h"

#include <algorithm>
#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "checker.h"
#include "cluster.h"
#include "confman/raft/core.h"
#include "confman/raft/testing_faults.h"
#include "rng.h"
#include "scenario.h"

namespace confman::sim {
namespace {

using raft::MemberId;

constexpr uint32_t kMinVoters = 3;
constexpr uint32_t kMaxVoters = 5;
constexpr uint32_t kSpares = 2;
// The liveness bound grows by this many ticks per entry of backlog.
constexpr uint64_t kLivenessTicksPerBacklogEntry = 2;
// Per step, in parts per million: the leader compacts every 10 ticks or so.
constexpr uint32_t kLivenessCompactRate = 10000;

const char* ProgressStateName(raft::MemberProgress::State state) {
  switch (state) {
    case raft::MemberProgress::State::kProbe:
      return "probe";
    case raft::MemberProgress::State::kReplicate:
      return "replicate";
    case raft::MemberProgress::State::kSnapshot:
      return "snapshot";
  }
  return "unknown";
}

Scenario DrawRunScenario(Rng& rng, const SimOptions& options) {
  Scenario scenario =
      DrawScenario(rng, options.members, kSpares, options.testing_faults);
  scenario.cluster.apply.lose_reports = options.lose_apply_reports;
  return scenario;
}

// One run: the fault phase, then the liveness phase.
class Run {
 public:
  explicit Run(const SimOptions& options)
      : options_(options),
        rng_(options.seed),
        scenario_(DrawRunScenario(rng_, options)),
        cluster_(scenario_.cluster, rng_, checker_, options.trace) {}

  RunReport Execute() {
    if (options_.trace != nullptr) {
      *options_.trace << DescribeScenario(scenario_) << "\n";
    }
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
    const bool windowed = scenario_.cluster.core.max_unapplied_bytes != 0;
    report.stats.windowed_seeds = windowed ? 1 : 0;
    report.stats.apply_reports = c.apply_reports;
    report.stats.max_unreported_bytes = windowed ? c.max_unreported_bytes : 0;
    return report;
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

  // Replaces any partition with one that isolates `victim`.
  void Isolate(MemberId victim) {
    cluster_.HealAll();
    CutOff(victim);
    partitioned_ = true;
    heal_at_ = step_ + PartitionSteps();
  }

  void CutOff(MemberId victim) {
    for (MemberId other = 1; other <= cluster_.size(); ++other) {
      if (other == victim) continue;
      cluster_.Block(victim, other);
      cluster_.Block(other, victim);
    }
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
        CutOff(leader && rng_.Chance(500000) ? *leader : RandomMember());
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
    const uint64_t down_ticks = scenario_.rates.quick_restarts
                                    ? rng_.Between(0, kElectionTimeoutTicks)
                                    : rng_.Between(kElectionTimeoutTicks + 2,
                                                   4 * kElectionTimeoutTicks);
    cluster_.Crash(victim, step_ + down_ticks * kStepsPerTick);
  }

  // ---- workload ----

  void DriveWorkload() {
    const Rates& rates = scenario_.rates;
    if (rng_.Chance(rates.propose)) Propose();
    if (rng_.Chance(rates.read)) {
      const MemberId id = PreferLeader();
      const bool lease = !scenario_.rates.quick_restarts && rng_.Chance(500000);
      cluster_.Read(
          id, lease ? raft::ReadMode::kLease : raft::ReadMode::kReadIndex);
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

  // Mostly small values; now and then one larger than the smallest append
  // and in-flight byte limits, which must still travel alone.
  std::string NextValue() {
    std::string value = absl::StrCat("v", ++values_);
    const uint64_t padding =
        rng_.Chance(20000) ? rng_.Between(100, 400) : rng_.Below(24);
    value.resize(value.size() + padding, '.');
    return value;
  }

  void Propose() {
    std::vector<std::string> data(rng_.Between(1, 3));
    for (std::string& value : data) value = NextValue();
    const MemberId id = PreferLeader();
    const absl::StatusOr<raft::ProposalPosition> position =
        cluster_.Propose(id, std::move(data));
    if (!position.ok()) return;
    Accepted(*position);
    if (rng_.Chance(scenario_.rates.isolate_after_propose)) Isolate(id);
  }

  void Accepted(const raft::ProposalPosition& position) {
    ++proposals_;
    max_accepted_last_ = std::max(max_accepted_last_, position.last);
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
    // Now and then a request the core must refuse or treat as a no-op: a
    // random kind for a random id, including the reserved id 0.
    if (rng_.Chance(100000)) {
      options.push_back(
          {static_cast<Kind>(rng_.Below(3)),
           static_cast<MemberId>(rng_.Below(cluster_.size() + 1))});
    }
    if (options.empty()) return;
    cluster_.ChangeMembership(*leader, options[rng_.Below(options.size())]);
  }

  void Transfer() {
    std::optional<MemberId> leader = cluster_.Leader();
    if (!leader) return;
    const std::vector<MemberId>& voters = cluster_.core(*leader)->membership().voters;
    MemberId to = voters[rng_.Below(voters.size())];
    // Now and then a target the core must refuse: itself, a learner, a
    // spare, or the reserved id 0.
    if (rng_.Chance(100000)) to = rng_.Below(cluster_.size() + 1);
    if (cluster_.TransferLeadership(*leader, to)) ++transfers_;
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
    const uint64_t bound_ticks =
        options_.liveness_ticks + kLivenessTicksPerBacklogEntry * Backlog();
    const uint64_t limit = start + bound_ticks * kStepsPerTick;
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
    checker_.Fail(absl::StrCat("liveness: ", bound_ticks,
                               " ticks after the faults stopped, ",
                               DescribeLivenessState()));
  }

  // Entries some member holds beyond everything applied: replicating them
  // may need one round trip each when the flow-control windows are tiny.
  uint64_t Backlog() const {
    raft::Index longest = 0;
    for (MemberId id = 1; id <= cluster_.size(); ++id) {
      if (const raft::Core* core = cluster_.core(id)) {
        longest = std::max(longest, core->Status().last_index);
      }
    }
    return longest > checker_.applied_max() ? longest - checker_.applied_max()
                                            : 0;
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

  // Proposes enough entries to fill the leader's log up to the highest
  // index any proposal was accepted at (so that proposal is settled), in
  // batches the uncommitted budget admits.
  void ProposeProbe(MemberId leader) {
    const raft::Index last = cluster_.core(leader)->Status().last_index;
    const uint64_t wanted =
        max_accepted_last_ > last ? max_accepted_last_ - last : 1;
    std::vector<std::string> data(std::min(wanted, probe_batch_));
    for (std::string& value : data) value = absl::StrCat("p", ++values_);
    absl::StatusOr<raft::ProposalPosition> position =
        cluster_.Propose(leader, std::move(data));
    if (position.ok()) {
      Accepted(*position);
      probe_ = *position;
    } else if (absl::IsResourceExhausted(position.status())) {
      probe_batch_ = std::max<uint64_t>(probe_batch_ / 2, 1);
    }
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
                        ProgressStateName(p.state), " match ", p.match,
                        " next ", p.next, " inflight ", p.inflight_messages,
                        "]");
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
  uint64_t probe_batch_ = 64;
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
  windowed_seeds += o.windowed_seeds;
  apply_reports += o.apply_reports;
  max_unreported_bytes = std::max(max_unreported_bytes, o.max_unreported_bytes);
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
  if (options.lose_apply_reports)
    absl::StrAppend(&command, " --lose-apply-reports");
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
    faults |= raft::FaultBit(found->fault);
  }
  return faults;
}

std::string TestingFaultNames(uint32_t faults) {
  std::vector<std::string> names;
  for (const FaultName& f : kFaultNames) {
    if (raft::HasTestingFault(faults, f.fault)) names.push_back(f.name);
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
