// Snapshot streams, off the Raft loop. A sender thread per follower reads
// chunks from a state-machine snapshot (one LMDB read transaction) and
// queues them on the transport's bulk path, one chunk in memory at a time.
// The receiver thread writes incoming chunks into a restore sink; when the
// last one is in, the loop steps a kSnapshot message into the core, which
// then asks for the staged state to be installed.
#include <pthread.h>

#include <future>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "node_impl.h"

namespace confman::node_internal {
namespace {

// Incoming chunks queued for the receiver thread, in bytes. Senders keep
// within a window of acknowledged chunks, so this only stops a misbehaving
// peer: beyond it a chunk is dropped, the stream breaks and the leader
// sends a fresh one.
constexpr size_t kMaxReceiveQueueBytes = size_t{128} << 20;
// How long a sender waits before retrying a chunk the transport's full
// bulk queue refused.
constexpr auto kSendRetryDelay = std::chrono::milliseconds(2);
// Chunks a sender may have in flight beyond what the receiver has written:
// the receiver's queue stays within this many chunks, whatever the
// relative speed of network and disk.
constexpr uint64_t kChunkWindow = 8;
// A stream whose receiver acknowledges nothing for this long is abandoned.
constexpr auto kAckTimeout = std::chrono::seconds(30);

}  // namespace

void NodeImpl::StartSnapshotSend(raft::MemberId to) {
  common::MutexLock lock(&snapshot_mu_);
  if (closing_ || sending_.count(to) != 0) return;
  auto previous = senders_.find(to);
  if (previous != senders_.end()) {
    previous->second.join();  // Finished: it left sending_ as its last act.
    senders_.erase(previous);
  }
  sending_.insert(to);
  const uint64_t snapshot_id = next_snapshot_id_++;
  snapshot_acked_[snapshot_id] = OutgoingStream{to, 0};
  senders_[to] = std::thread(&NodeImpl::SendSnapshot, this, to, core_->term(),
                             snapshot_id);
}

void NodeImpl::SendSnapshot(raft::MemberId to, raft::Term term,
                            uint64_t snapshot_id) {
  pthread_setname_np(pthread_self(), "confman-snapsnd");
  bool ok = false;
  raft::Index index = 0;
  absl::StatusOr<std::unique_ptr<SnapshotSource>> source = sm_->OpenSnapshot();
  if (source.ok()) {
    index = (*source)->meta().index;
    {
      // The log keeps what follows the snapshot until `to` has it.
      common::MutexLock lock(&snapshot_mu_);
      snapshot_floors_[to] = index;
    }
    Log(LogLevel::kInfo,
        absl::StrCat("sending snapshot at index ", index, " to member ", to));
    // A stream outlives neither the Node nor the leadership it was started
    // under: a stale one would hold the follower's next stream back.
    while (!closing_ && leading_term_ == term) {
      absl::StatusOr<SnapshotChunk> chunk = (*source)->NextChunk();
      if (!chunk.ok()) break;
      TransportSnapshotChunk wire{.snapshot_id = snapshot_id,
                                  .term = term,
                                  .meta = chunk->seq == 0
                                              ? std::optional((*source)->meta())
                                              : std::nullopt,
                                  .seq = chunk->seq,
                                  .last = chunk->last,
                                  .data = std::move(chunk->data),
                                  .checksum = chunk->checksum};
      if (!WaitForWindow(snapshot_id, wire.seq, term)) break;
      absl::Status sent = transport_->SendSnapshotChunk(to, wire);
      while (absl::IsResourceExhausted(sent) && !closing_) {
        std::this_thread::sleep_for(kSendRetryDelay);
        sent = transport_->SendSnapshotChunk(to, wire);
      }
      if (!sent.ok()) break;
      if (wire.last) {
        ok = true;
        break;
      }
    }
  }
  if (!ok) {
    Log(LogLevel::kWarning,
        absl::StrCat(
            "snapshot to member ", to, " failed: ",
            source.ok() ? "stream interrupted" : source.status().ToString()));
  }
  Count("node.snapshots_sent");
  source = absl::CancelledError();  // Release the read transaction first.
  retention_->RequestSweep();  // Values replaced during the stream can go now.
  {
    // Before the report: the core may ask for the next stream at once, and
    // that request must not find this one still registered.
    common::MutexLock lock(&snapshot_mu_);
    sending_.erase(to);
    snapshot_acked_.erase(snapshot_id);
    if (!ok) snapshot_floors_.erase(to);
  }
  asio::post(loop_, [this, to, ok, index] {
    if (closing_) return;
    core_->ReportSnapshotSent(to, ok, index);
    ProcessReady();
  });
}

// Raft loop: a follower no longer waiting for a snapshot (it acknowledged
// it, or leadership moved) stops holding the log back.
void NodeImpl::ReleaseSnapshotFloors(const raft::CoreStatus& core) {
  common::MutexLock lock(&snapshot_mu_);
  for (auto it = snapshot_floors_.begin(); it != snapshot_floors_.end();) {
    bool waiting = false;
    if (core.role == raft::Role::kLeader) {
      for (const raft::MemberProgress& p : core.progress) {
        waiting |= p.id == it->first &&
                   p.state == raft::MemberProgress::State::kSnapshot;
      }
    }
    it = waiting ? std::next(it) : snapshot_floors_.erase(it);
  }
}

raft::Index NodeImpl::SnapshotFloor() const {
  common::MutexLock lock(&snapshot_mu_);
  raft::Index floor = ~raft::Index{0};
  for (const auto& [member, index] : snapshot_floors_) {
    floor = std::min(floor, index);
  }
  return floor;
}

bool NodeImpl::WaitForWindow(uint64_t snapshot_id, uint64_t seq,
                             raft::Term term) {
  common::MutexLock lock(&snapshot_mu_);
  auto abandoned = [&] { return closing_ || leading_term_ != term; };
  auto ready = [&] {
    return abandoned() ||
           snapshot_acked_[snapshot_id].acked + kChunkWindow > seq;
  };
  const absl::Time give_up = absl::Now() + absl::FromChrono(kAckTimeout);
  while (!ready()) {
    if (snapshot_ack_cv_.WaitWithDeadline(&snapshot_mu_, give_up)) break;
  }
  return ready() && !abandoned();
}

// Sent once, without retrying: acknowledgements travel on the control path,
// which never refuses one for queue space, so a refusal means the sender
// cannot be reached now (not a peer, its connection reset, or this
// transport stopping) and waiting would not change that. False then: the
// stream is given up, and the leader sends a fresh one once its window
// times out.
bool NodeImpl::AckChunk(raft::MemberId to, uint64_t snapshot_id, uint64_t seq) {
  const absl::Status sent = transport_->SendSnapshotAck(
      to, TransportSnapshotAck{.snapshot_id = snapshot_id, .seq = seq});
  if (sent.ok()) return true;
  Log(LogLevel::kWarning,
      absl::StrCat("cannot acknowledge snapshot chunk ", seq, " to member ", to,
                   " (", sent.ToString(),
                   "); dropping the stream, the leader "
                   "will send a new one"));
  return false;
}

// Acknowledgements are cumulative, so one lost among many costs nothing.
void NodeImpl::OnSnapshotAck(raft::MemberId from, TransportSnapshotAck ack) {
  if (closing_) return;
  {
    common::MutexLock lock(&snapshot_mu_);
    auto it = snapshot_acked_.find(ack.snapshot_id);
    // Not a stream we are sending, or not sending to this member: stream
    // ids are small counters another member could guess.
    if (it == snapshot_acked_.end() || it->second.to != from) return;
    it->second.acked = std::max(it->second.acked, ack.seq + 1);
  }
  snapshot_ack_cv_.SignalAll();
}

void NodeImpl::OnSnapshotChunk(raft::MemberId from,
                               TransportSnapshotChunk chunk) {
  if (closing_) return;
  {
    common::MutexLock lock(&snapshot_mu_);
    if (receive_queue_bytes_ + chunk.data.size() > kMaxReceiveQueueBytes) {
      Log(LogLevel::kWarning,
          absl::StrCat("dropped snapshot chunk ", chunk.seq, " from member ",
                       from, ": receive queue full"));
      return;
    }
    receive_queue_bytes_ += chunk.data.size();
    receive_queue_.emplace_back(from, std::move(chunk));
  }
  receive_cv_.Signal();
}

void NodeImpl::ReceiveLoop() {
  snapshot_mu_.Lock();
  while (true) {
    while (!closing_ && receive_queue_.empty()) receive_cv_.Wait(&snapshot_mu_);
    if (closing_) break;
    auto [from, chunk] = std::move(receive_queue_.front());
    receive_queue_.pop_front();
    receive_queue_bytes_ -= chunk.data.size();
    snapshot_mu_.Unlock();
    ReceiveChunk(from, std::move(chunk));
    snapshot_mu_.Lock();
  }
  snapshot_mu_.Unlock();
  incoming_.reset();
}

void NodeImpl::ReceiveChunk(raft::MemberId from, TransportSnapshotChunk chunk) {
  if (chunk.seq == 0) {
    incoming_.reset();  // A new stream replaces any unfinished one.
    if (absl::Status s = BeginIncoming(from, chunk); !s.ok()) {
      Log(LogLevel::kWarning, absl::StrCat("refused snapshot from member ",
                                           from, ": ", s.ToString()));
      return;
    }
  } else if (!incoming_ || incoming_->from != from ||
             incoming_->snapshot_id != chunk.snapshot_id ||
             incoming_->next_seq != chunk.seq) {
    incoming_.reset();  // A gap: chunks were lost; wait for a fresh stream.
    return;
  }
  absl::Status written = incoming_->sink->Write(SnapshotChunk{
      chunk.seq, chunk.last, std::move(chunk.data), chunk.checksum});
  if (!written.ok()) {
    Log(LogLevel::kWarning,
        absl::StrCat("snapshot chunk ", chunk.seq, " from member ", from,
                     " rejected: ", written.ToString()));
    incoming_.reset();
    return;
  }
  ++incoming_->next_seq;
  if (!AckChunk(from, chunk.snapshot_id, chunk.seq)) {
    incoming_.reset();
    return;
  }
  if (chunk.last) FinishIncoming();
}

absl::Status NodeImpl::BeginIncoming(raft::MemberId from,
                                     TransportSnapshotChunk& chunk) {
  if (!chunk.meta) {
    return absl::InvalidArgumentError(
        "the first chunk carries no snapshot metadata");
  }
  // BeginRestore belongs to the apply thread (state_machine.h).
  std::promise<absl::StatusOr<std::unique_ptr<SnapshotSink>>> begun;
  auto future = begun.get_future();
  RunOnApplyThread([this, &begun, meta = *chunk.meta] {
    begun.set_value(sm_->BeginRestore(meta));
  });
  absl::StatusOr<std::unique_ptr<SnapshotSink>> sink = future.get();
  if (!sink.ok()) return sink.status();
  incoming_ = IncomingSnapshot{.from = from,
                               .snapshot_id = chunk.snapshot_id,
                               .term = chunk.term,
                               .meta = *chunk.meta,
                               .sink = std::move(*sink)};
  return absl::OkStatus();
}

void NodeImpl::FinishIncoming() {
  IncomingSnapshot done = std::move(*incoming_);
  incoming_.reset();
  asio::post(
      loop_,
      [this, done = std::make_shared<IncomingSnapshot>(std::move(done))] {
        if (closing_) return;
        staged_sink_ = std::move(done->sink);
        raft::Message notice;
        notice.type = raft::MessageType::kSnapshot;
        notice.from = done->from;
        notice.to = id_;
        notice.term = done->term;
        notice.snapshot = done->meta;
        core_->Step(std::move(notice));
        ProcessReady();
        staged_sink_.reset();  // Not installed: the core found it stale.
      });
}

void NodeImpl::JoinSnapshotThreads() {
  // closing_ is set: passing through the lock orders it before any waiter's
  // next check, so the signals below cannot be missed.
  { common::MutexLock lock(&snapshot_mu_); }
  receive_cv_.SignalAll();
  snapshot_ack_cv_.SignalAll();
  if (receiver_.joinable()) receiver_.join();
  std::map<raft::MemberId, std::thread> senders;
  {
    common::MutexLock lock(&snapshot_mu_);
    senders.swap(senders_);
  }
  for (auto& [to, thread] : senders) thread.join();
}

}  // namespace confman::node_internal
