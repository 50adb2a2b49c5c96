// What one seed simulates: the cluster's settings and how often each fault
// and request happens. Drawn from the run's Rng, so the seed alone picks it.
#pragma once

#include <cstdint>
#include <string>

#include "cluster.h"
#include "rng.h"

namespace confman::sim {

inline constexpr uint32_t kStepsPerTick = 10;
inline constexpr uint32_t kElectionTimeoutTicks = 10;

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
  // its no-op spreads), right after it accepts a proposal, or right after
  // its commit index moves. These build the divergent logs of the thesis's
  // Figure 3.7 quickly.
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

// Each seed draws its own fault intensities and flow-control settings, so
// that one batch of seeds covers calm and hostile networks, entry-at-a-time
// and large append batches, and fast and slow disks. About 40% of seeds are
// storms: frequent short partitions, crashes and reactive isolation.
Scenario DrawScenario(Rng& rng, uint32_t voters, uint32_t spares,
                      uint32_t testing_faults);

// One line naming every drawn setting, for traces.
std::string DescribeScenario(const Scenario& scenario);

}  // namespace confman::sim
