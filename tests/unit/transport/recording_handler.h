// A TransportHandler that records what it receives, for tests.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <utility>
#include <vector>

#include "confman/transport.h"

namespace confman::testing {

class RecordingHandler : public TransportHandler {
 public:
  struct Chunk {
    raft::MemberId from;
    TransportSnapshotChunk chunk;
  };
  struct Forward {
    raft::MemberId from;
    ForwardFrame frame;
  };
  struct Ack {
    raft::MemberId from;
    TransportSnapshotAck ack;
  };

  void OnMessage(raft::Message message) override {
    if (message.type == raft::MessageType::kAppend) {
      std::unique_lock<std::mutex> lock(mu_);
      changed_.wait(lock, [&] { return !hold_appends_; });
    }
    Record([&] { messages_.push_back(std::move(message)); });
  }

  // While held, OnMessage blocks on appends, as a receiver that stopped
  // reading would; this is how tests fill a sender's bulk queue.
  void HoldAppends(bool hold) {
    Record([&] { hold_appends_ = hold; });
  }
  void OnSnapshotChunk(raft::MemberId from,
                       TransportSnapshotChunk chunk) override {
    Record([&] { chunks_.push_back({from, std::move(chunk)}); });
  }
  void OnForward(raft::MemberId from, ForwardFrame frame) override {
    Record([&] { forwards_.push_back({from, std::move(frame)}); });
  }
  void OnSnapshotAck(raft::MemberId from, TransportSnapshotAck ack) override {
    Record([&] { acks_.push_back({from, ack}); });
  }
  void OnUnreachable(raft::MemberId member) override {
    Record([&] { unreachable_.push_back(member); });
  }

  // Waits until `done(*this)` holds or `timeout` passes; returns whether it
  // held.
  template <typename Predicate>
  bool WaitUntil(Predicate done,
                 std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    std::unique_lock<std::mutex> lock(mu_);
    return changed_.wait_for(lock, timeout, [&] { return done(*this); });
  }

  // Accessors copy under the lock; call them from the test thread only when
  // no delivery is racing, or inside WaitUntil's predicate.
  std::vector<raft::Message> messages() { return Copy(messages_); }
  std::vector<Chunk> chunks() { return Copy(chunks_); }
  std::vector<Forward> forwards() { return Copy(forwards_); }
  std::vector<Ack> acks() { return Copy(acks_); }
  std::vector<raft::MemberId> unreachable() { return Copy(unreachable_); }

  // Takes the lock: not for use inside a WaitUntil predicate.
  size_t count_now(raft::MessageType type) {
    std::lock_guard<std::mutex> lock(mu_);
    return count_of(type);
  }

  // For use inside WaitUntil predicates (the lock is already held).
  size_t message_count() const { return messages_.size(); }
  size_t chunk_count() const { return chunks_.size(); }
  size_t forward_count() const { return forwards_.size(); }
  size_t ack_count() const { return acks_.size(); }
  size_t unreachable_count() const { return unreachable_.size(); }
  const std::vector<raft::Message>& messages_locked() const {
    return messages_;
  }
  size_t count_of(raft::MessageType type) const {
    size_t count = 0;
    for (const raft::Message& m : messages_) count += m.type == type;
    return count;
  }

 private:
  template <typename Fn>
  void Record(Fn&& fn) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      fn();
    }
    changed_.notify_all();
  }
  template <typename T>
  std::vector<T> Copy(const std::vector<T>& items) {
    std::lock_guard<std::mutex> lock(mu_);
    return items;
  }

  std::mutex mu_;
  std::condition_variable changed_;
  std::vector<raft::Message> messages_;
  std::vector<Chunk> chunks_;
  std::vector<Forward> forwards_;
  std::vector<Ack> acks_;
  std::vector<raft::MemberId> unreachable_;
  bool hold_appends_ = false;
};

inline raft::Membership MakeMembership(
    std::vector<raft::MemberId> voters,
    std::vector<raft::MemberId> outgoing = {},
    std::vector<raft::MemberId> learners = {}) {
  raft::Membership membership;
  membership.voters = std::move(voters);
  membership.voters_outgoing = std::move(outgoing);
  membership.learners = std::move(learners);
  return membership;
}

// A message of each interesting shape, for round trips.
inline raft::Message Heartbeat(raft::MemberId from, raft::MemberId to,
                               uint64_t round) {
  raft::Message m;
  m.type = raft::MessageType::kHeartbeat;
  m.from = from;
  m.to = to;
  m.term = 3;
  m.commit = 7;
  m.round = round;
  return m;
}

inline raft::Message Append(raft::MemberId from, raft::MemberId to,
                            size_t entry_bytes, int entries = 2) {
  raft::Message m;
  m.type = raft::MessageType::kAppend;
  m.from = from;
  m.to = to;
  m.term = 4;
  m.log_index = 10;
  m.log_term = 3;
  m.commit = 9;
  for (int i = 0; i < entries; ++i) {
    m.entries.push_back(
        {.term = 4,
         .index = 11 + static_cast<uint64_t>(i),
         .type = raft::EntryType::kNormal,
         .data = std::string(entry_bytes, static_cast<char>('a' + i))});
  }
  return m;
}

}  // namespace confman::testing
