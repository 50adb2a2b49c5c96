// Draws a seed's scenario (scenario.h): the cores' options, network and
// disk behaviour, apply window and fault rates, all from the seed's Rng.
#include "scenario.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace confman::sim {
namespace {

template <typename T, size_t N>
T Pick(Rng& rng, const T (&choices)[N]) {
  return choices[rng.Below(N)];
}

void DrawFlowControl(Rng& rng, bool storm, raft::CoreOptions& core) {
  core.max_append_entries =
      storm ? Pick(rng, {1u, 1u, 2u, 64u}) : Pick(rng, {1u, 2u, 8u, 64u});
  core.max_append_bytes = Pick(rng, {uint64_t{48}, uint64_t{4} << 20});
  core.max_inflight_messages = Pick(rng, {1u, 4u, 64u});
  core.max_inflight_bytes = Pick(rng, {uint64_t{64}, uint64_t{32} << 20});
  core.max_uncommitted_bytes = std::max<uint64_t>(
      core.max_append_bytes, Pick(rng, {uint64_t{256}, uint64_t{1} << 16}));
  if (core.max_append_entries * core.max_inflight_messages <= 4 ||
      core.max_inflight_bytes <= 64) {
    // Entry-at-a-time replication is slow by design: a small uncommitted
    // budget keeps the backlog, and so the time to drain it, bounded.
    core.max_append_bytes = 48;
    core.max_uncommitted_bytes = 512;
  }
  core.max_apply_bytes = Pick(rng, {uint64_t{1}, uint64_t{16} << 20});
  core.max_pending_reads = Pick(rng, {4u, 4096u});
}

void DrawElections(Rng& rng, raft::CoreOptions& core) {
  core.election_timeout_ticks = kElectionTimeoutTicks;
  core.heartbeat_interval_ticks = Pick(rng, {1u, 1u, 3u});
  // Pre-vote and check-quorum each keep a disruptive member (a removed one,
  // or one returning from a partition) from deposing a healthy leader; run
  // with both, or with either alone.
  switch (rng.Below(5)) {
    case 0:
      core.pre_vote = false;
      break;
    case 1:
      core.check_quorum = false;
      break;
    default:
      break;
  }
}

void DrawNetworkAndDisk(Rng& rng, ClusterConfig& c) {
  c.network.drop_per_million = Pick(rng, {0u, 10000u, 50000u, 100000u});
  c.network.duplicate_per_million = Pick(rng, {0u, 10000u, 50000u});
  c.network.reorder_per_million = Pick(rng, {0u, 50000u, 200000u});
  c.network.max_delay_steps = Pick(rng, {3u, 8u, 15u});
  c.network.stale_per_million = Pick(rng, {0u, 2000u, 10000u});
  c.disk.max_delay_steps = Pick(rng, {2u, 10u, 30u, 60u});
  c.disk.slow_per_million = 10000;
}

// Most seeds bound what a member holds handed out but not reported applied;
// a small window fits one or two entries (values are up to ~30 bytes, a few
// up to 400, which then go out alone), so a lost or ignored report would
// stall a member and fail the liveness phase. Reports lag the applies by a
// few steps: the window fills, the member waits, and the report drains it.
void DrawApplyWindow(Rng& rng, ClusterConfig& c) {
  c.core.max_unapplied_bytes =
      Pick(rng, {uint64_t{0}, uint64_t{24}, uint64_t{64}, uint64_t{1} << 20});
  if (c.core.max_unapplied_bytes != 0) {
    c.core.max_apply_bytes =
        std::min(c.core.max_apply_bytes, c.core.max_unapplied_bytes);
  }
  c.apply.max_report_delay_steps = Pick(rng, {0u, 3u, 10u});
  // Installs reported late let log writes after a snapshot (its reset
  // included) complete first, as the Node's installer on the apply thread
  // does.
  c.snapshot.max_install_report_delay_steps = Pick(rng, {0u, 30u, 300u});
}

Rates DrawStorm(Rng& rng) {
  Rates r;
  r.quick_restarts = rng.Chance(500000);
  r.crash = r.quick_restarts ? 5000 : 1000;
  r.crash_after_commit = r.quick_restarts ? Pick(rng, {20000u, 100000u}) : 0;
  r.partition = 3000;
  r.min_partition_ticks = Pick(rng, {2u, 10u});
  r.max_partition_ticks = Pick(rng, {20u, 40u});
  r.read = 40000;
  r.transfer = 1000;
  r.isolate_new_leader = Pick(rng, {100000u, 300000u, 500000u});
  r.isolate_after_propose = Pick(rng, {20000u, 100000u, 200000u});
  r.isolate_after_commit = Pick(rng, {0u, 50000u, 200000u});
  return r;
}

}  // namespace

Scenario DrawScenario(Rng& rng, uint32_t voters, uint32_t spares,
                      uint32_t testing_faults) {
  Scenario s;
  s.cluster.voters = voters;
  s.cluster.spares = spares;
  s.cluster.steps_per_tick = kStepsPerTick;
  // Clocks up to 10% apart, within the default lease drift allowance of 2
  // ticks per 10-tick election timeout.
  s.cluster.tick_skew_steps = rng.Below(2);
  s.cluster.core.testing_faults = testing_faults;
  const bool storm = rng.Chance(400000);
  DrawElections(rng, s.cluster.core);
  DrawFlowControl(rng, storm, s.cluster.core);
  DrawNetworkAndDisk(rng, s.cluster);
  DrawApplyWindow(rng, s.cluster);
  if (storm) {
    s.rates = DrawStorm(rng);
  } else {
    s.rates.crash = Pick(rng, {0u, 200u, 600u});
    s.rates.partition = Pick(rng, {0u, 300u, 1000u});
  }
  return s;
}

std::string DescribeScenario(const Scenario& s) {
  const raft::CoreOptions& core = s.cluster.core;
  const NetworkProfile& net = s.cluster.network;
  const Rates& r = s.rates;
  return absl::StrCat(
      "scenario: tick_skew=", s.cluster.tick_skew_steps,
      " pre_vote=", core.pre_vote, " check_quorum=", core.check_quorum,
      " heartbeat=", core.heartbeat_interval_ticks,
      " append_entries=", core.max_append_entries,
      " append_bytes=", core.max_append_bytes,
      " inflight=", core.max_inflight_messages, "/", core.max_inflight_bytes,
      " uncommitted=", core.max_uncommitted_bytes,
      " apply_bytes=", core.max_apply_bytes,
      " unapplied=", core.max_unapplied_bytes,
      " report_delay<=", s.cluster.apply.max_report_delay_steps,
      " install_report_delay<=",
      s.cluster.snapshot.max_install_report_delay_steps,
      " drop=", net.drop_per_million, " dup=", net.duplicate_per_million,
      " reorder=", net.reorder_per_million, " stale=", net.stale_per_million,
      " delay<=", net.max_delay_steps,
      " disk<=", s.cluster.disk.max_delay_steps, " crash=", r.crash,
      r.quick_restarts ? " (quick)" : "",
      " crash_after_commit=", r.crash_after_commit, " partition=", r.partition,
      " ticks=", r.min_partition_ticks, "..", r.max_partition_ticks,
      " isolate new/propose/commit=", r.isolate_new_leader, "/",
      r.isolate_after_propose, "/", r.isolate_after_commit);
}

}  // namespace confman::sim
