// Two started members, 1 and 2, on either transport implementation, so one
// conformance suite runs against both.
#pragma once

#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "confman/transport/in_memory.h"
#include "confman/transport/tcp.h"
#include "recording_handler.h"
#include "test_certificates.h"

namespace confman::testing {

inline constexpr size_t kTestBulkQueueBytes = 8u << 20;

class InMemoryPair {
 public:
  InMemoryPair() : network_({.max_bulk_queue_bytes = kTestBulkQueueBytes}) {
    for (raft::MemberId id : {1, 2}) {
      auto transport = network_.CreateTransport(id);
      REQUIRE(transport.ok());
      transports_.push_back(*std::move(transport));
    }
    REQUIRE(transports_[0]->AddPeer(2, "").ok());
    REQUIRE(transports_[1]->AddPeer(1, "").ok());
    REQUIRE(transports_[0]->Start(&handlers_[0]).ok());
    REQUIRE(transports_[1]->Start(&handlers_[1]).ok());
    network_.StartDeliveryThread();
  }
  ~InMemoryPair() {
    for (auto& transport : transports_) transport->Stop();
    network_.StopDeliveryThread();
  }

  Transport& member(raft::MemberId id) { return *transports_[id - 1]; }
  RecordingHandler& handler(raft::MemberId id) { return handlers_[id - 1]; }

 private:
  InMemoryNetwork network_;
  RecordingHandler handlers_[2];
  std::vector<std::unique_ptr<InMemoryTransport>> transports_;
};

inline TcpTransportOptions TestTcpOptions(raft::MemberId id) {
  return {.listen_address = "127.0.0.1:0",
          .member_id = id,
          .cluster_id = "test-cluster",
          .shared_secret = "test-secret-0123456789",
          .max_frame_bytes = 2u << 20,
          .max_bulk_queue_bytes = kTestBulkQueueBytes,
          .reconnect_initial = std::chrono::milliseconds(10),
          .reconnect_max = std::chrono::milliseconds(200),
          .log = [](const std::string&) {}};
}

inline std::string Loopback(uint16_t port) {
  return absl::StrCat("127.0.0.1:", port);
}

// Two TcpTransports; with `kTls`, over mutual TLS.
template <bool kTls>
class TcpPairOf {
 public:
  TcpPairOf() {
    for (raft::MemberId id : {1, 2}) {
      TcpTransportOptions options = TestTcpOptions(id);
      if (kTls) options.tls = SharedTestPki().member;
      auto transport = TcpTransport::Create(options);
      REQUIRE(transport.ok());
      transports_.push_back(*std::move(transport));
    }
    REQUIRE(transports_[0]
                ->AddPeer(2, Loopback(transports_[1]->listen_port()))
                .ok());
    REQUIRE(transports_[1]
                ->AddPeer(1, Loopback(transports_[0]->listen_port()))
                .ok());
    REQUIRE(transports_[0]->Start(&handlers_[0]).ok());
    REQUIRE(transports_[1]->Start(&handlers_[1]).ok());
  }
  ~TcpPairOf() {
    for (auto& transport : transports_) transport->Stop();
  }

  Transport& member(raft::MemberId id) { return *transports_[id - 1]; }
  RecordingHandler& handler(raft::MemberId id) { return handlers_[id - 1]; }

 private:
  RecordingHandler handlers_[2];
  std::vector<std::unique_ptr<TcpTransport>> transports_;
};

using TcpPair = TcpPairOf<false>;
using TlsPair = TcpPairOf<true>;

}  // namespace confman::testing
