// Behaviour specific to the in-memory network: pumping and fault injection.
#include "confman/transport/in_memory.h"

#include <catch2/catch.hpp>

#include "recording_handler.h"

namespace confman::testing {
namespace {

struct ThreeMembers {
  ThreeMembers() {
    for (raft::MemberId id : {1, 2, 3}) {
      auto transport = network.CreateTransport(id);
      REQUIRE(transport.ok());
      transports.push_back(*std::move(transport));
    }
    for (raft::MemberId a : {1, 2, 3}) {
      for (raft::MemberId b : {1, 2, 3}) {
        if (a != b) REQUIRE(transports[a - 1]->AddPeer(b, "").ok());
      }
      REQUIRE(transports[a - 1]->Start(&handlers[a - 1]).ok());
    }
  }
  InMemoryTransport& member(raft::MemberId id) { return *transports[id - 1]; }
  RecordingHandler& handler(raft::MemberId id) { return handlers[id - 1]; }

  InMemoryNetwork network;
  RecordingHandler handlers[3];
  std::vector<std::unique_ptr<InMemoryTransport>> transports;
};

TEST_CASE("nothing moves until the network is pumped") {
  ThreeMembers m;
  REQUIRE(m.member(1).Send(Heartbeat(1, 2, 1)).ok());
  REQUIRE(m.member(1).Send(Heartbeat(1, 3, 1)).ok());
  CHECK(m.network.queued() == 2);
  CHECK(m.handler(2).messages().empty());
  CHECK(m.network.Pump() == 2);
  CHECK(m.handler(2).messages().size() == 1);
  CHECK(m.handler(3).messages().size() == 1);
  CHECK(m.network.queued() == 0);
}

TEST_CASE("a cut link drops messages and tells the sender") {
  ThreeMembers m;
  m.network.SetLinkUp(1, 2, false);
  REQUIRE(m.member(1).Send(Heartbeat(1, 2, 1)).ok());
  REQUIRE(m.member(2).Send(Heartbeat(2, 1, 1)).ok());  // other direction works
  m.network.PumpUntilIdle();
  CHECK(m.handler(2).messages().empty());
  CHECK(m.handler(1).unreachable() == std::vector<raft::MemberId>{2});
  CHECK(m.handler(1).messages().size() == 1);

  // A link cut while a message is in flight loses that message too.
  m.network.HealAll();
  REQUIRE(m.member(1).Send(Heartbeat(1, 2, 2)).ok());
  m.network.Isolate(2);
  m.network.PumpUntilIdle();
  CHECK(m.handler(2).messages().empty());
  CHECK(m.handler(1).unreachable().size() == 2);

  m.network.HealAll();
  REQUIRE(m.member(1).Send(Heartbeat(1, 2, 3)).ok());
  m.network.PumpUntilIdle();
  REQUIRE(m.handler(2).messages().size() == 1);
  CHECK(m.handler(2).messages()[0].round == 3);
}

TEST_CASE("random drops follow the seed and spare nothing else") {
  ThreeMembers m;
  m.network.SetDropProbability(0.5);
  for (uint64_t round = 0; round < 1000; ++round) {
    REQUIRE(m.member(1).Send(Heartbeat(1, 2, round)).ok());
  }
  m.network.PumpUntilIdle();
  const size_t delivered = m.handler(2).messages().size();
  CHECK(delivered > 400);
  CHECK(delivered < 600);
}

TEST_CASE("the bulk bound counts per link and frees on delivery") {
  InMemoryNetwork network({.max_bulk_queue_bytes = 1u << 20});
  auto one = network.CreateTransport(1);
  auto two = network.CreateTransport(2);
  REQUIRE((one.ok() && two.ok()));
  RecordingHandler h1, h2;
  REQUIRE((*one)->AddPeer(2, "").ok());
  REQUIRE((*one)->Start(&h1).ok());
  REQUIRE((*two)->Start(&h2).ok());
  REQUIRE((*one)->Send(Append(1, 2, 300u << 10, 3)).ok());
  CHECK((*one)->Send(Append(1, 2, 300u << 10, 1)).code() ==
        absl::StatusCode::kResourceExhausted);
  CHECK((*one)->Send(Heartbeat(1, 2, 1)).ok());
  network.PumpUntilIdle();
  CHECK((*one)->Send(Append(1, 2, 300u << 10, 3)).ok());
}

TEST_CASE("a member id can be reused once its transport is gone") {
  InMemoryNetwork network;
  auto first = network.CreateTransport(1);
  REQUIRE(first.ok());
  CHECK(network.CreateTransport(1).status().code() ==
        absl::StatusCode::kAlreadyExists);
  first->reset();
  CHECK(network.CreateTransport(1).ok());
  CHECK(network.CreateTransport(0).status().code() ==
        absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace confman::testing
