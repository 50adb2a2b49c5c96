// The per-link outgoing queue of TcpTransport: its byte bound, what a full
// queue does on each channel, waking a parked writer, batching, and the
// once-per-episode overflow report.
#include "link_queue.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "wire_codec.h"

namespace confman::tcp_internal {
namespace {

constexpr size_t kBound = 64u << 10;

// A frame of a little over `payload_bytes` on the wire.
wire::EncodedFrame FrameOf(size_t payload_bytes, uint64_t id = 1) {
  return wire::EncodeForward(
      {.from = 1,
       .to = 2,
       .frame = {.request_id = id,
                 .response = false,
                 .payload = std::string(payload_bytes, 'x')}});
}

std::vector<uint64_t> IdsOf(const std::vector<wire::EncodedFrame>& batch) {
  std::vector<uint64_t> ids;
  for (const wire::EncodedFrame& frame : batch) {
    auto decoded = wire::DecodeFrameBody(frame.body(), frame.body_size());
    REQUIRE(decoded.ok());
    ids.push_back(std::get<wire::ForwardEnvelope>(*decoded).frame.request_id);
  }
  return ids;
}

TEST_CASE("an empty link queue takes one frame larger than its bound",
          "[link_queue]") {
  LinkQueue queue(wire::Channel::kBulk, kBound);
  CHECK(queue.HasRoomFor(2 * kBound));
  CHECK(queue.Push(FrameOf(2 * kBound)) == LinkQueue::PushResult::kQueued);
  CHECK_FALSE(queue.HasRoomFor(1));
}

TEST_CASE("a full bulk queue refuses the new frame and keeps the rest",
          "[link_queue]") {
  LinkQueue queue(wire::Channel::kBulk, kBound);
  CHECK(queue.Push(FrameOf(40u << 10, 1)) == LinkQueue::PushResult::kQueued);
  CHECK(queue.Push(FrameOf(40u << 10, 2)) == LinkQueue::PushResult::kFull);
  std::vector<wire::EncodedFrame> batch;
  REQUIRE(queue.TakeBatch(batch));
  CHECK(IdsOf(batch) == std::vector<uint64_t>{1});
}

TEST_CASE("a full control queue is discarded whole", "[link_queue]") {
  LinkQueue queue(wire::Channel::kControl, kBound);
  CHECK(queue.Push(FrameOf(40u << 10, 1)) == LinkQueue::PushResult::kQueued);
  CHECK(queue.Push(FrameOf(40u << 10, 2)) == LinkQueue::PushResult::kFull);
  std::vector<wire::EncodedFrame> batch;
  CHECK_FALSE(queue.TakeBatch(batch));
  // The next frame starts a fresh queue.
  CHECK(queue.Push(FrameOf(10, 3)) ==
        LinkQueue::PushResult::kQueuedWakeWriter);
}

TEST_CASE("a push wakes the writer only when it found nothing to take",
          "[link_queue]") {
  LinkQueue queue(wire::Channel::kControl, kBound);
  // The writer has not parked yet: it will find the frame by itself.
  CHECK(queue.Push(FrameOf(10, 1)) == LinkQueue::PushResult::kQueued);
  std::vector<wire::EncodedFrame> batch;
  REQUIRE(queue.TakeBatch(batch));
  CHECK_FALSE(queue.TakeBatch(batch));  // Parks.
  CHECK(queue.Push(FrameOf(10, 2)) ==
        LinkQueue::PushResult::kQueuedWakeWriter);
  CHECK(queue.Push(FrameOf(10, 3)) == LinkQueue::PushResult::kQueued);
  REQUIRE(queue.TakeBatch(batch));
  CHECK(IdsOf(batch) == std::vector<uint64_t>{2, 3});
}

TEST_CASE("a batch stops at kMaxBatchBytes but always holds one frame",
          "[link_queue]") {
  LinkQueue queue(wire::Channel::kBulk, 8u << 20);
  const size_t big = kMaxBatchBytes + 1;
  REQUIRE(queue.Push(FrameOf(big, 1)) == LinkQueue::PushResult::kQueued);
  for (uint64_t id = 2; id <= 5; ++id) {
    REQUIRE(queue.Push(FrameOf(300u << 10, id)) ==
            LinkQueue::PushResult::kQueued);
  }
  std::vector<wire::EncodedFrame> batch;
  REQUIRE(queue.TakeBatch(batch));
  CHECK(IdsOf(batch) == std::vector<uint64_t>{1});
  REQUIRE(queue.TakeBatch(batch));
  CHECK(IdsOf(batch) == std::vector<uint64_t>{2, 3, 4});
  REQUIRE(queue.TakeBatch(batch));
  CHECK(IdsOf(batch) == std::vector<uint64_t>{5});
}

TEST_CASE("an overflow is reported once until the queue drains",
          "[link_queue]") {
  LinkQueue queue(wire::Channel::kBulk, kBound);
  CHECK(queue.MarkOverflow());
  CHECK_FALSE(queue.MarkOverflow());
  std::vector<wire::EncodedFrame> batch;
  CHECK_FALSE(queue.TakeBatch(batch));
  CHECK(queue.MarkOverflow());
}

TEST_CASE("a lost connection discards the queue; a closed link refuses",
          "[link_queue]") {
  LinkQueue queue(wire::Channel::kBulk, kBound);
  std::vector<wire::EncodedFrame> batch;
  CHECK_FALSE(queue.TakeBatch(batch));  // Parked.
  queue.DiscardForReconnect();
  CHECK_FALSE(queue.closed());
  // Reconnecting, not parked: no wake-up needed.
  CHECK(queue.Push(FrameOf(10, 1)) == LinkQueue::PushResult::kQueued);
  queue.DiscardForReconnect();
  CHECK(queue.Push(FrameOf(10, 2)) == LinkQueue::PushResult::kQueued);
  REQUIRE(queue.TakeBatch(batch));
  CHECK(IdsOf(batch) == std::vector<uint64_t>{2});

  queue.Close();
  CHECK(queue.closed());
  CHECK(queue.Push(FrameOf(10, 3)) == LinkQueue::PushResult::kClosed);
  CHECK_FALSE(queue.TakeBatch(batch));
}

}  // namespace
}  // namespace confman::tcp_internal
