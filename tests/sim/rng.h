// The simulator's only source of randomness.
//
// A run must be a pure function of its seed, so nothing in the simulator may
// read std::random_device, a clock or any global generator: every decision
// draws from one Rng owned by the run. xoshiro256** (Blackman & Vigna) has a
// four-word state and passes the usual statistical batteries; splitmix64
// spreads a small seed over that state.
#pragma once

#include <cstdint>

namespace confman::sim {

class Rng {
 public:
  explicit Rng(uint64_t seed) {
    uint64_t x = seed;
    for (uint64_t& word : state_) word = SplitMix64(x);
  }

  uint64_t Next() {
    const uint64_t result = RotateLeft(state_[1] * 5, 7) * 9;
    const uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = RotateLeft(state_[3], 45);
    return result;
  }

  // Uniform in [0, bound). The modulo bias is below 2^-40 for the small
  // bounds the simulator uses. `bound` must be positive.
  uint64_t Below(uint64_t bound) { return Next() % bound; }

  // Uniform in [lo, hi], inclusive; lo <= hi.
  uint64_t Between(uint64_t lo, uint64_t hi) { return lo + Below(hi - lo + 1); }

  // True with probability per_million / 1e6.
  bool Chance(uint32_t per_million) { return Below(1000000) < per_million; }

  // Advances `x` and returns the next splitmix64 output; also used to derive
  // independent sub-seeds (per-member core seeds) from one value.
  static uint64_t SplitMix64(uint64_t& x) {
    uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

 private:
  static uint64_t RotateLeft(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
  }

  uint64_t state_[4];
};

}  // namespace confman::sim
