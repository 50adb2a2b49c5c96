// InMemoryTransport and InMemoryNetwork (confman/transport/in_memory.h):
// the transport tests use instead of sockets. Every member of a network
// shares one FIFO queue, so order between two members is kept without
// per-link machinery. A cut link is checked when a message is sent and
// again when it is delivered, so a link cut while a message is in flight
// loses it, as a broken connection would. Bulk bytes are counted with
// TcpTransport's size estimate so that both transports start dropping at
// the same point and tests of backpressure carry over.
#include <pthread.h>

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <utility>
#include <variant>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "confman/transport/in_memory.h"
#include "wire_codec.h"

namespace confman {
namespace internal {
namespace {

using Link = std::pair<raft::MemberId, raft::MemberId>;

// Tells the member the envelope is addressed to that `member` is unreachable.
struct UnreachableNotice {
  raft::MemberId member = raft::kNoMember;
};

struct Envelope {
  raft::MemberId from = raft::kNoMember;
  raft::MemberId to = raft::kNoMember;
  std::variant<raft::Message, TransportSnapshotChunk, ForwardFrame,
               TransportSnapshotAck, UnreachableNotice>
      item;
  // Counted against the link's bulk bound (the size TcpTransport would
  // encode, so both transports drop at the same point); 0 for control.
  size_t bulk_bytes = 0;
};

}  // namespace

class InMemoryEndpoint {
 public:
  enum class State { kCreated, kRunning, kStopped };

  explicit InMemoryEndpoint(raft::MemberId member) : id(member) {}

  // Runs `deliver` with the handler unless the member is not running.
  // Holding callback_mu_ serialises callbacks and lets Stop wait for one in
  // progress.
  template <typename Fn>
  void WithHandler(Fn&& deliver) {
    std::lock_guard<std::mutex> lock(callback_mu_);
    if (handler_ != nullptr) deliver(*handler_);
  }
  void SetHandler(TransportHandler* handler) {
    std::lock_guard<std::mutex> lock(callback_mu_);
    handler_ = handler;
  }

  const raft::MemberId id;
  // Guarded by InMemoryNetworkState::mu_.
  bool attached = false;
  State state = State::kCreated;
  absl::flat_hash_set<raft::MemberId> peers;

 private:
  std::mutex callback_mu_;
  TransportHandler* handler_ = nullptr;
};

class InMemoryNetworkState {
 public:
  explicit InMemoryNetworkState(InMemoryNetworkOptions options)
      : options_(options), random_(options.seed) {}

  std::mutex mu;
  absl::flat_hash_map<raft::MemberId, std::unique_ptr<InMemoryEndpoint>>
      endpoints;  // Guarded by mu.

  [[nodiscard]] absl::Status Enqueue(Envelope envelope);
  size_t Pump();
  void DropQueuedFrom(raft::MemberId member);
  void RunDeliveryThread();

  const InMemoryNetworkOptions options_;
  std::deque<Envelope> queue;                    // Guarded by mu.
  absl::flat_hash_map<Link, size_t> bulk_bytes;  // Guarded by mu.
  std::set<Link> cut;                            // Guarded by mu.
  double drop_probability = 0;                   // Guarded by mu.
  std::mt19937_64 random_;                       // Guarded by mu.
  bool stop_delivery = false;                    // Guarded by mu.
  // Signalled when the queue gains an item or stop_delivery is set.
  std::condition_variable queue_changed;
  std::thread delivery_thread;

 private:
  bool ShouldDrop();  // Requires mu.
  void Deliver(Envelope envelope);
};

bool InMemoryNetworkState::ShouldDrop() {
  if (drop_probability <= 0) return false;
  return std::uniform_real_distribution<double>(0, 1)(random_) <
         drop_probability;
}

absl::Status InMemoryNetworkState::Enqueue(Envelope envelope) {
  std::lock_guard lock(mu);
  InMemoryEndpoint& sender = *endpoints.at(envelope.from);
  if (sender.state != InMemoryEndpoint::State::kRunning) {
    return absl::FailedPreconditionError(
        "the transport is not running; call Start first (or it was stopped)");
  }
  if (!sender.peers.contains(envelope.to)) {
    return absl::NotFoundError(absl::StrCat(
        "member ", envelope.to, " is not a known peer; add it with AddPeer"));
  }
  const Link link{envelope.from, envelope.to};
  size_t& queued = bulk_bytes[link];
  if (envelope.bulk_bytes > 0 &&
      queued + envelope.bulk_bytes > options_.max_bulk_queue_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "bulk queue to member ", envelope.to, " is full (max_bulk_queue_bytes ",
        options_.max_bulk_queue_bytes,
        "); the message was dropped, Raft will resend"));
  }
  if (cut.contains(link)) {
    queue.push_back({.from = envelope.to,
                     .to = envelope.from,
                     .item = UnreachableNotice{envelope.to},
                     .bulk_bytes = 0});
    queue_changed.notify_one();
    return absl::OkStatus();
  }
  if (ShouldDrop()) return absl::OkStatus();
  queued += envelope.bulk_bytes;
  queue.push_back(std::move(envelope));
  queue_changed.notify_one();
  return absl::OkStatus();
}

size_t InMemoryNetworkState::Pump() {
  size_t count = 0;
  {
    std::lock_guard lock(mu);
    count = queue.size();
  }
  size_t processed = 0;
  for (; processed < count; ++processed) {
    Envelope envelope;
    {
      std::lock_guard lock(mu);
      if (queue.empty()) break;
      envelope = std::move(queue.front());
      queue.pop_front();
      bulk_bytes[{envelope.from, envelope.to}] -= envelope.bulk_bytes;
    }
    Deliver(std::move(envelope));
  }
  return processed;
}

void InMemoryNetworkState::Deliver(Envelope envelope) {
  InMemoryEndpoint* target = nullptr;
  InMemoryEndpoint* sender = nullptr;
  {
    std::lock_guard lock(mu);
    auto it = endpoints.find(envelope.to);
    if (it == endpoints.end()) return;
    target = it->second.get();
    const bool notice =
        std::holds_alternative<UnreachableNotice>(envelope.item);
    if (!notice && cut.contains({envelope.from, envelope.to})) {
      // The link broke while the message was in flight.
      sender = endpoints.at(envelope.from).get();
    }
  }
  if (sender != nullptr) {
    sender->WithHandler(
        [&](TransportHandler& h) { h.OnUnreachable(envelope.to); });
    return;
  }
  target->WithHandler([&](TransportHandler& handler) {
    std::visit(
        [&](auto& item) {
          using T = std::decay_t<decltype(item)>;
          if constexpr (std::is_same_v<T, raft::Message>) {
            handler.OnMessage(std::move(item));
          } else if constexpr (std::is_same_v<T, TransportSnapshotChunk>) {
            handler.OnSnapshotChunk(envelope.from, std::move(item));
          } else if constexpr (std::is_same_v<T, ForwardFrame>) {
            handler.OnForward(envelope.from, std::move(item));
          } else if constexpr (std::is_same_v<T, TransportSnapshotAck>) {
            handler.OnSnapshotAck(envelope.from, item);
          } else {
            handler.OnUnreachable(item.member);
          }
        },
        envelope.item);
  });
}

void InMemoryNetworkState::DropQueuedFrom(raft::MemberId member) {
  std::lock_guard lock(mu);
  std::erase_if(queue, [&](const Envelope& envelope) {
    if (envelope.from != member) return false;
    bulk_bytes[{envelope.from, envelope.to}] -= envelope.bulk_bytes;
    return true;
  });
}

void InMemoryNetworkState::RunDeliveryThread() {
  while (true) {
    {
      std::unique_lock lock(mu);
      queue_changed.wait(lock,
                         [this] { return stop_delivery || !queue.empty(); });
      if (stop_delivery) return;
    }
    Pump();
  }
}

}  // namespace internal

// ---- options and network --------------------------------------------------

absl::Status InMemoryNetworkOptions::Validate() const {
  if (max_bulk_queue_bytes == 0) {
    return absl::InvalidArgumentError(
        "InMemoryNetworkOptions: max_bulk_queue_bytes must be positive");
  }
  return absl::OkStatus();
}

InMemoryNetwork::InMemoryNetwork(InMemoryNetworkOptions options) {
  if (absl::Status valid = options.Validate(); !valid.ok()) {
    std::fprintf(stderr, "%s\n", valid.ToString().c_str());
    std::abort();
  }
  state_ = std::make_unique<internal::InMemoryNetworkState>(options);
}

InMemoryNetwork::~InMemoryNetwork() { StopDeliveryThread(); }

absl::StatusOr<std::unique_ptr<InMemoryTransport>>
InMemoryNetwork::CreateTransport(raft::MemberId id) {
  if (id == raft::kNoMember) {
    return absl::InvalidArgumentError("member id 0 is reserved");
  }
  std::lock_guard lock(state_->mu);
  auto& endpoint = state_->endpoints[id];
  if (endpoint == nullptr) {
    endpoint = std::make_unique<internal::InMemoryEndpoint>(id);
  } else if (endpoint->attached) {
    return absl::AlreadyExistsError(absl::StrCat(
        "member ", id, " already has a transport on this network"));
  }
  endpoint->attached = true;
  endpoint->state = internal::InMemoryEndpoint::State::kCreated;
  endpoint->peers.clear();
  return std::unique_ptr<InMemoryTransport>(
      new InMemoryTransport(*state_, *endpoint));
}

size_t InMemoryNetwork::Pump() { return state_->Pump(); }

size_t InMemoryNetwork::PumpUntilIdle(int max_rounds) {
  size_t total = 0;
  for (int round = 0; round < max_rounds; ++round) {
    const size_t processed = state_->Pump();
    if (processed == 0) break;
    total += processed;
  }
  return total;
}

void InMemoryNetwork::StartDeliveryThread() {
  if (state_->delivery_thread.joinable()) return;
  {
    std::lock_guard lock(state_->mu);
    state_->stop_delivery = false;
  }
  state_->delivery_thread = std::thread([this] {
    pthread_setname_np(pthread_self(), "confman-memnet");
    state_->RunDeliveryThread();
  });
}

void InMemoryNetwork::StopDeliveryThread() {
  if (!state_->delivery_thread.joinable()) return;
  {
    std::lock_guard lock(state_->mu);
    state_->stop_delivery = true;
  }
  state_->queue_changed.notify_all();
  state_->delivery_thread.join();
}

void InMemoryNetwork::SetLinkUp(raft::MemberId from, raft::MemberId to,
                                bool up) {
  std::lock_guard lock(state_->mu);
  if (up) {
    state_->cut.erase({from, to});
  } else {
    state_->cut.insert({from, to});
  }
}

void InMemoryNetwork::Isolate(raft::MemberId member) {
  std::lock_guard lock(state_->mu);
  for (const auto& [other, endpoint] : state_->endpoints) {
    if (other == member) continue;
    state_->cut.insert({member, other});
    state_->cut.insert({other, member});
  }
}

void InMemoryNetwork::HealAll() {
  std::lock_guard lock(state_->mu);
  state_->cut.clear();
  state_->drop_probability = 0;
}

void InMemoryNetwork::SetDropProbability(double p) {
  std::lock_guard lock(state_->mu);
  state_->drop_probability = std::clamp(p, 0.0, 1.0);
}

size_t InMemoryNetwork::queued() const {
  std::lock_guard lock(state_->mu);
  return state_->queue.size();
}

// ---- transport ------------------------------------------------------------

InMemoryTransport::InMemoryTransport(internal::InMemoryNetworkState& network,
                                     internal::InMemoryEndpoint& endpoint)
    : network_(network), endpoint_(endpoint) {}

InMemoryTransport::~InMemoryTransport() {
  Stop();
  std::lock_guard lock(network_.mu);
  endpoint_.attached = false;
}

absl::Status InMemoryTransport::Start(TransportHandler* handler) {
  if (handler == nullptr) {
    return absl::InvalidArgumentError("Start needs a non-null handler");
  }
  std::lock_guard lock(network_.mu);
  if (endpoint_.state != internal::InMemoryEndpoint::State::kCreated) {
    return absl::FailedPreconditionError(
        "the transport was already started; create a new one instead");
  }
  endpoint_.SetHandler(handler);
  endpoint_.state = internal::InMemoryEndpoint::State::kRunning;
  return absl::OkStatus();
}

void InMemoryTransport::Stop() {
  {
    std::lock_guard lock(network_.mu);
    endpoint_.state = internal::InMemoryEndpoint::State::kStopped;
  }
  // Waits for a callback in progress, then blocks all later ones.
  endpoint_.SetHandler(nullptr);
  network_.DropQueuedFrom(endpoint_.id);
}

absl::Status InMemoryTransport::AddPeer(raft::MemberId id,
                                        const std::string& /*address*/) {
  if (id == raft::kNoMember || id == endpoint_.id) {
    return absl::InvalidArgumentError(absl::StrCat(
        "AddPeer: member id ", id, " is 0 or this member's own id"));
  }
  std::lock_guard lock(network_.mu);
  endpoint_.peers.insert(id);
  return absl::OkStatus();
}

void InMemoryTransport::RemovePeer(raft::MemberId id) {
  std::lock_guard lock(network_.mu);
  endpoint_.peers.erase(id);
}

absl::Status InMemoryTransport::Send(raft::Message message) {
  if (message.from != endpoint_.id) {
    return absl::InvalidArgumentError(
        absl::StrCat("message from member ", message.from,
                     " sent through member ", endpoint_.id, "'s transport"));
  }
  const size_t bulk =
      IsControlTraffic(message.type) ? 0 : wire::EstimateEncodedBytes(message);
  const raft::MemberId to = message.to;
  return Enqueue(to, std::move(message), bulk);
}

absl::Status InMemoryTransport::SendSnapshotChunk(
    raft::MemberId to, TransportSnapshotChunk chunk) {
  const size_t bulk = wire::EstimateEncodedBytes(chunk);
  return Enqueue(to, std::move(chunk), bulk);
}

absl::Status InMemoryTransport::SendForward(raft::MemberId to,
                                            ForwardFrame frame) {
  return Enqueue(to, std::move(frame), 0);
}

absl::Status InMemoryTransport::SendSnapshotAck(raft::MemberId to,
                                                TransportSnapshotAck ack) {
  return Enqueue(to, ack, 0);
}

template <typename Item>
absl::Status InMemoryTransport::Enqueue(raft::MemberId to, Item item,
                                        size_t bulk_bytes) {
  return network_.Enqueue({.from = endpoint_.id,
                           .to = to,
                           .item = std::move(item),
                           .bulk_bytes = bulk_bytes});
}

}  // namespace confman
