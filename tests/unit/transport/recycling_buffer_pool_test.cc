// The pool that keeps large encode buffers: reuse by size class, small and
// huge buffers left to the C allocator, and a bound on what it keeps idle.
#include "recycling_buffer_pool.h"

#include <catch2/catch.hpp>
#include <vector>

namespace confman {
namespace {

constexpr size_t kKiB = 1024;
constexpr size_t kMiB = 1024 * kKiB;

TEST_CASE("a returned large buffer serves the next request of its size class",
          "[pool]") {
  RecyclingBufferPool pool;
  uint8_t* first = pool.allocate(600 * kKiB);
  first[600 * kKiB - 1] = 1;  // The whole requested size is usable.
  pool.deallocate(first, 600 * kKiB);
  // 1000 KiB rounds to the same 1 MiB class as 600 KiB.
  uint8_t* second = pool.allocate(1000 * kKiB);
  CHECK(second == first);
  second[1000 * kKiB - 1] = 2;
  // A different class gets a different buffer.
  uint8_t* other = pool.allocate(2 * kMiB + 1);
  CHECK(other != first);
  pool.deallocate(second, 1000 * kKiB);
  pool.deallocate(other, 2 * kMiB + 1);
}

TEST_CASE("the pool keeps a bounded amount of memory", "[pool]") {
  RecyclingBufferPool pool;
  // Sixty-four 1 MiB buffers returned; at most 32 MiB of them are kept.
  std::vector<uint8_t*> buffers;
  for (int i = 0; i < 64; ++i) buffers.push_back(pool.allocate(kMiB));
  for (uint8_t* b : buffers) pool.deallocate(b, kMiB);
  CHECK(pool.idle_bytes() == 32 * kMiB);
  std::vector<uint8_t*> again;
  for (int i = 0; i < 40; ++i) again.push_back(pool.allocate(kMiB));
  CHECK(pool.idle_bytes() == 0);
  for (uint8_t* b : again) pool.deallocate(b, kMiB);
  CHECK(pool.idle_bytes() == 32 * kMiB);
}

TEST_CASE("small buffers are not pooled", "[pool]") {
  RecyclingBufferPool pool;
  uint8_t* small = pool.allocate(100);
  pool.deallocate(small, 100);
  uint8_t* large = pool.allocate(64 * kKiB);
  CHECK(large != small);
  pool.deallocate(large, 64 * kKiB);
}

}  // namespace
}  // namespace confman
