// A process-wide pool of large FlatBuffers buffers (see the class comment).
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

#include "flatbuffers/flatbuffers.h"

namespace confman {

// Reuses large FlatBuffers buffers. Encoding a 1 MiB value into freshly
// allocated memory costs more in page faults than in copying, and the C
// allocator tends to hand such blocks back to the system as soon as they
// are freed; wire frames and encoded commands are built and dropped at the
// rate of writes. Sizes are rounded up to a power of two so a returned
// buffer's capacity follows from the size FlatBuffers reports. Thread-safe.
class RecyclingBufferPool final : public flatbuffers::Allocator {
 public:
  RecyclingBufferPool() = default;
  ~RecyclingBufferPool() override {
    for (const Block& block : free_) delete[] block.data;
  }
  RecyclingBufferPool(const RecyclingBufferPool&) = delete;
  RecyclingBufferPool& operator=(const RecyclingBufferPool&) = delete;

  uint8_t* allocate(size_t size) override {
    if (size < kMinPooledBytes || size > kMaxPooledBytes)
      return new uint8_t[size];
    const size_t capacity = std::bit_ceil(size);
    {
      std::lock_guard lock(mu_);
      auto it = std::find_if(free_.begin(), free_.end(), [&](const Block& b) {
        return b.capacity == capacity;
      });
      if (it != free_.end()) {
        uint8_t* buffer = it->data;
        pooled_bytes_ -= capacity;
        free_.erase(it);
        return buffer;
      }
    }
    return new uint8_t[capacity];
  }

  void deallocate(uint8_t* p, size_t size) override {
    if (size >= kMinPooledBytes && size <= kMaxPooledBytes) {
      const size_t capacity = std::bit_ceil(size);
      std::lock_guard lock(mu_);
      if (pooled_bytes_ + capacity <= kMaxPoolBytes) {
        free_.push_back(Block{p, capacity});
        pooled_bytes_ += capacity;
        return;
      }
    }
    delete[] p;
  }

  // Bytes held for reuse right now.
  size_t idle_bytes() {
    std::lock_guard lock(mu_);
    return pooled_bytes_;
  }

  // One pool for the process. Buffers may outlive whatever made them, so
  // it is never destroyed; idle, it holds at most kMaxPoolBytes.
  static RecyclingBufferPool& Get() {
    static RecyclingBufferPool* pool = new RecyclingBufferPool();
    return *pool;
  }

 private:
  static constexpr size_t kMinPooledBytes = size_t{64} << 10;
  static constexpr size_t kMaxPooledBytes = size_t{16} << 20;
  // Memory the pool may hold while idle.
  static constexpr size_t kMaxPoolBytes = size_t{32} << 20;

  struct Block {
    uint8_t* data;
    size_t capacity;
  };
  std::mutex mu_;
  std::vector<Block> free_;
  size_t pooled_bytes_ = 0;
};

}  // namespace confman
