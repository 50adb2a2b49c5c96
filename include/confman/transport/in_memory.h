// An in-process Transport for tests: members of one InMemoryNetwork reach
// each other without sockets, and the test decides when messages move and
// which links are broken.
//
// Delivery. Sends append to the network's single FIFO queue (so messages
// between two members keep their order). Nothing is delivered until either
//   - the test calls Pump(), which delivers on the calling thread, or
//   - StartDeliveryThread() runs a thread that pumps whenever the queue is
//     not empty (for tests that want the network to run by itself).
// Both may be used with the same network; callbacks for one member are
// never concurrent (a stricter promise than Transport makes).
//
// Faults. A link (one direction between two members) can be cut; messages
// on a cut link are dropped when sent or when about to be delivered, and the
// sender's handler gets OnUnreachable. A drop probability drops messages at
// random from a seeded generator, so runs are repeatable.
//
// Bounds mirror TcpTransport: bulk traffic (appends, snapshot chunks) queued
// from one member to another is bounded in bytes and dropped when full;
// control traffic is never dropped for space.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "confman/transport.h"

namespace confman {

struct InMemoryNetworkOptions {
  // Payload bytes of bulk traffic queued from one member to another. A bulk
  // send beyond it is dropped with ResourceExhausted. Default 64 MiB; must
  // be positive.
  size_t max_bulk_queue_bytes = 64u << 20;

  // Seed for the random drops of SetDropProbability.
  uint64_t seed = 1;

  // Returns InvalidArgument naming the first field out of range.
  [[nodiscard]] absl::Status Validate() const;
};

class InMemoryTransport;
namespace internal {
class InMemoryNetworkState;
class InMemoryEndpoint;
}  // namespace internal

// Thread safety: every method may be called from any thread, except Pump
// and StopDeliveryThread, which must not be called from a handler callback.
// The network must outlive every transport it created.
class InMemoryNetwork {
 public:
  // Aborts on invalid options: tests construct networks with literal options.
  explicit InMemoryNetwork(InMemoryNetworkOptions options = {});
  ~InMemoryNetwork();
  InMemoryNetwork(const InMemoryNetwork&) = delete;
  InMemoryNetwork& operator=(const InMemoryNetwork&) = delete;

  // A transport for member `id`. Returns InvalidArgument for id 0, or
  // AlreadyExists while another live transport uses `id` (a member may be
  // recreated after its previous transport is destroyed).
  [[nodiscard]] absl::StatusOr<std::unique_ptr<InMemoryTransport>>
  CreateTransport(raft::MemberId id);

  // Delivers the items queued when Pump was called (not those queued by the
  // callbacks it runs) and returns how many were delivered or dropped.
  size_t Pump();
  // Pumps until the queue stays empty, at most `max_rounds` times. Returns
  // the number of items processed.
  size_t PumpUntilIdle(int max_rounds = 1000);

  // Starts (or stops and joins) a thread that pumps continuously.
  void StartDeliveryThread();
  void StopDeliveryThread();

  // Cuts or restores the link from `from` to `to` (one direction).
  void SetLinkUp(raft::MemberId from, raft::MemberId to, bool up);
  // Cuts every link to and from `member`.
  void Isolate(raft::MemberId member);
  // Restores every link and sets the drop probability back to 0.
  void HealAll();
  // Drops each message with probability `p` in [0, 1].
  void SetDropProbability(double p);

  // Items waiting for delivery.
  size_t queued() const;

 private:
  std::unique_ptr<internal::InMemoryNetworkState> state_;
};

// A member's endpoint on an InMemoryNetwork. Contract as Transport; the
// address given to AddPeer is ignored.
class InMemoryTransport final : public Transport {
 public:
  ~InMemoryTransport() override;

  [[nodiscard]] absl::Status Start(TransportHandler* handler) override;
  void Stop() override;
  [[nodiscard]] absl::Status AddPeer(raft::MemberId id,
                                     const std::string& address) override;
  void RemovePeer(raft::MemberId id) override;
  [[nodiscard]] absl::Status Send(raft::Message message) override;
  [[nodiscard]] absl::Status SendSnapshotChunk(
      raft::MemberId to, TransportSnapshotChunk chunk) override;
  [[nodiscard]] absl::Status SendForward(raft::MemberId to,
                                         ForwardFrame frame) override;
  [[nodiscard]] absl::Status SendSnapshotAck(raft::MemberId to,
                                             TransportSnapshotAck ack) override;

 private:
  friend class InMemoryNetwork;
  InMemoryTransport(internal::InMemoryNetworkState& network,
                    internal::InMemoryEndpoint& endpoint);
  template <typename Item>
  [[nodiscard]] absl::Status Enqueue(raft::MemberId to, Item item,
                                     size_t bulk_bytes);

  internal::InMemoryNetworkState& network_;
  internal::InMemoryEndpoint& endpoint_;
};

}  // namespace confman
