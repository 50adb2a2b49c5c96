// Round trips and hostile input for the frame codec (lib/transport).
#include "wire_codec.h"

#include <catch2/catch.hpp>
#include <cstring>
#include <random>

#include "flatbuffers/flatbuffers.h"
#include "handshake.h"
#include "recording_handler.h"
#include "wire_generated.h"

namespace confman::wire {
namespace {

using confman::testing::Append;
using confman::testing::Heartbeat;
using confman::testing::MakeMembership;

// Strips the length prefix and decodes the body from an aligned copy.
absl::StatusOr<Frame> Decode(const EncodedFrame& frame) {
  AlignedBuffer buffer;
  std::memcpy(buffer.Resize(frame.body_size()), frame.body(),
              frame.body_size());
  return DecodeFrameBody(buffer.data(), frame.body_size());
}

absl::StatusOr<Frame> Decode(const std::string& frame) {
  AlignedBuffer buffer;
  const size_t body = frame.size() - kFrameHeaderBytes;
  std::memcpy(buffer.Resize(body), frame.data() + kFrameHeaderBytes, body);
  return DecodeFrameBody(buffer.data(), body);
}

raft::Message RoundTrip(const raft::Message& message) {
  absl::StatusOr<Frame> frame = Decode(EncodeMessage(message));
  REQUIRE(frame.ok());
  REQUIRE(std::holds_alternative<raft::Message>(*frame));
  return std::get<raft::Message>(*frame);
}

std::string BuildFrame(const std::function<flatbuffers::Offset<schema::Frame>(
                           flatbuffers::FlatBufferBuilder&)>& build) {
  flatbuffers::FlatBufferBuilder builder;
  builder.Finish(build(builder));
  std::string out(kFrameHeaderBytes, '\0');
  const uint32_t size = builder.GetSize();
  std::memcpy(out.data(), &size, sizeof(size));
  out.append(reinterpret_cast<const char*>(builder.GetBufferPointer()), size);
  return out;
}

TEST_CASE("every Raft message type round-trips with all its fields") {
  for (int type = 0;
       type <= static_cast<int>(raft::MessageType::kReadIndexResponse);
       ++type) {
    raft::Message m = Append(5, 9, 100, 3);
    m.type = static_cast<raft::MessageType>(type);
    m.reject = type % 2 == 1;
    m.hint_index = 42;
    m.hint_term = 2;
    m.round = 77 + type;
    m.transfer = true;
    m.context = std::string("ctx\0bytes", 9);
    m.entries[1].type = raft::EntryType::kMembership;
    m.entries[2].type = raft::EntryType::kNoop;
    m.snapshot = raft::SnapshotMeta{
        .index = 100,
        .term = 3,
        .membership = MakeMembership({1, 2, 3}, {1, 4}, {7})};
    CHECK(RoundTrip(m) == m);
  }
}

TEST_CASE("a message without optional parts round-trips") {
  const raft::Message m = Heartbeat(1, 2, 5);
  const raft::Message back = RoundTrip(m);
  CHECK(back == m);
  CHECK_FALSE(back.snapshot.has_value());
}

TEST_CASE("snapshot chunks and forward frames round-trip") {
  ChunkFrame chunk{.from = 1, .to = 2, .chunk = {}};
  chunk.chunk = {
      .snapshot_id = 9,
      .term = 4,
      .meta = raft::SnapshotMeta{.index = 50,
                                 .term = 4,
                                 .membership =
                                     confman::testing::MakeMembership({1, 2})},
      .seq = 0,
      .last = false,
      .data = std::string(1000, 'z'),
      .checksum = 0xdeadbeef};
  auto decoded = Decode(EncodeChunk(chunk));
  REQUIRE(decoded.ok());
  const auto& back = std::get<ChunkFrame>(*decoded);
  CHECK(back.from == 1);
  CHECK(back.to == 2);
  CHECK(back.chunk == chunk.chunk);

  ForwardEnvelope forward{
      .from = 3,
      .to = 1,
      .frame = {.request_id = 12, .response = true, .payload = "result"}};
  decoded = Decode(EncodeForward(forward));
  REQUIRE(decoded.ok());
  CHECK(std::get<ForwardEnvelope>(*decoded).frame == forward.frame);
  CHECK(std::get<ForwardEnvelope>(*decoded).from == 3);
}

TEST_CASE("hello and proof frames round-trip") {
  Hello hello{.cluster_id = "prod",
              .member_id = 4,
              .nonce = MakeNonce(),
              .channel = Channel::kBulk};
  auto decoded = Decode(EncodeHello(hello));
  REQUIRE(decoded.ok());
  const auto& back = std::get<Hello>(*decoded);
  CHECK(back.cluster_id == "prod");
  CHECK(back.member_id == 4);
  CHECK(back.nonce == hello.nonce);
  CHECK(back.channel == Channel::kBulk);

  decoded = Decode(EncodeProof({std::string(kMacBytes, 'm')}));
  REQUIRE(decoded.ok());
  CHECK(std::get<Proof>(*decoded).mac == std::string(kMacBytes, 'm'));
}

TEST_CASE("frame lengths are checked before anything is allocated") {
  const uint8_t max_length[] = {0xff, 0xff, 0xff, 0xff};
  auto length = ParseFrameLength(max_length, 64u << 20);
  REQUIRE_FALSE(length.ok());
  CHECK(length.status().message() ==
        "bad frame: frame length 4294967295 exceeds max_frame_bytes 67108864");

  const uint8_t zero[] = {0, 0, 0, 0};
  CHECK_FALSE(ParseFrameLength(zero, 100).ok());

  const uint8_t hundred[] = {100, 0, 0, 0};
  CHECK(ParseFrameLength(hundred, 100).value() == 100);
  CHECK_FALSE(ParseFrameLength(hundred, 99).ok());
}

TEST_CASE("garbage and truncated bodies are rejected, never crash") {
  std::mt19937 random(7);
  AlignedBuffer buffer;
  for (int round = 0; round < 2000; ++round) {
    const size_t size = random() % 300;
    uint8_t* data = buffer.Resize(size);
    for (size_t i = 0; i < size; ++i) data[i] = static_cast<uint8_t>(random());
    CHECK_FALSE(DecodeFrameBody(data, size).ok());
  }
  const std::string frame = EncodeMessage(Append(1, 2, 64)).ToString();
  for (size_t cut = kFrameHeaderBytes; cut < frame.size(); cut += 7) {
    const size_t body = cut - kFrameHeaderBytes;
    std::memcpy(buffer.Resize(body), frame.data() + kFrameHeaderBytes, body);
    CHECK_FALSE(DecodeFrameBody(buffer.data(), body).ok());
  }
}

TEST_CASE("flipped bytes either fail cleanly or decode to a valid frame") {
  const std::string frame = EncodeMessage(Append(1, 2, 16, 3)).ToString();
  AlignedBuffer buffer;
  const size_t body = frame.size() - kFrameHeaderBytes;
  int rejected = 0;
  for (size_t i = 0; i < body; ++i) {
    uint8_t* data = buffer.Resize(body);
    std::memcpy(data, frame.data() + kFrameHeaderBytes, body);
    data[i] ^= 0xa5;
    rejected += DecodeFrameBody(data, body).ok() ? 0 : 1;
  }
  CHECK(rejected > 0);
}

TEST_CASE("out-of-range enums and mismatched payloads are rejected") {
  using namespace schema;
  auto bad_type = BuildFrame([](flatbuffers::FlatBufferBuilder& b) {
    auto raft = CreateRaftMessage(b, static_cast<MessageType>(12), 1, 2);
    return CreateFrame(b, kProtocolVersion, FrameKind::Raft, 0, 0, 0, 0, raft);
  });
  auto decoded = Decode(bad_type);
  REQUIRE_FALSE(decoded.ok());
  CHECK(decoded.status().message() ==
        "bad frame: unknown Raft message type 12");

  auto bad_entry = BuildFrame([](flatbuffers::FlatBufferBuilder& b) {
    std::vector<flatbuffers::Offset<schema::Entry>> entries{
        CreateEntry(b, 1, 1, static_cast<EntryType>(3))};
    auto raft = CreateRaftMessage(b, MessageType::Append, 1, 2, 0, 0, 0, 0,
                                  b.CreateVector(entries));
    return CreateFrame(b, kProtocolVersion, FrameKind::Raft, 0, 0, 0, 0, raft);
  });
  decoded = Decode(bad_entry);
  REQUIRE_FALSE(decoded.ok());
  CHECK(decoded.status().message() == "bad frame: unknown entry type 3");

  auto mismatch = BuildFrame([](flatbuffers::FlatBufferBuilder& b) {
    auto raft = CreateRaftMessage(b, MessageType::Heartbeat, 1, 2);
    return CreateFrame(b, kProtocolVersion, FrameKind::Forward, 0, 0, 0, 0,
                       raft);
  });
  decoded = Decode(mismatch);
  REQUIRE_FALSE(decoded.ok());
  CHECK(decoded.status().message() ==
        "bad frame: frame kind 4 does not match its payload");

  auto two_payloads = BuildFrame([](flatbuffers::FlatBufferBuilder& b) {
    auto raft = CreateRaftMessage(b, MessageType::Heartbeat, 1, 2);
    auto forward = CreateForwardFrame(b, 1);
    return CreateFrame(b, kProtocolVersion, FrameKind::Raft, 0, 0, 0, 0, raft,
                       0, forward);
  });
  CHECK_FALSE(Decode(two_payloads).ok());

  auto old_version = BuildFrame([](flatbuffers::FlatBufferBuilder& b) {
    auto raft = CreateRaftMessage(b, MessageType::Heartbeat, 1, 2);
    return CreateFrame(b, kProtocolVersion + 1, FrameKind::Raft, 0, 0, 0, 0,
                       raft);
  });
  decoded = Decode(old_version);
  REQUIRE_FALSE(decoded.ok());
  CHECK(decoded.status().message() ==
        "bad frame: protocol version 2, this member speaks 1");
}

TEST_CASE("membership lists must be sorted, unique and disjoint") {
  raft::Message m = Heartbeat(1, 2, 1);
  m.type = raft::MessageType::kSnapshot;
  m.snapshot = raft::SnapshotMeta{
      .index = 1, .term = 1, .membership = MakeMembership({3, 1})};
  CHECK_FALSE(Decode(EncodeMessage(m)).ok());
  m.snapshot->membership = MakeMembership({1, 1});
  CHECK_FALSE(Decode(EncodeMessage(m)).ok());
  m.snapshot->membership = MakeMembership({1, 2}, {}, {2});
  CHECK_FALSE(Decode(EncodeMessage(m)).ok());
  m.snapshot->membership = MakeMembership({0, 2});
  CHECK_FALSE(Decode(EncodeMessage(m)).ok());
  m.snapshot->membership = MakeMembership({1, 2}, {}, {3});
  CHECK(Decode(EncodeMessage(m)).ok());
}

TEST_CASE("a deeply nested or table-heavy buffer is bounded by the verifier") {
  // Many entries, each a table: allowed as long as the bytes carry them.
  raft::Message m = Append(1, 2, 0, 5000);
  CHECK(RoundTrip(m).entries.size() == 5000);
}

TEST_CASE("addressing must match the authenticated peer and this member") {
  Frame frame = Heartbeat(2, 1, 1);
  CHECK(CheckAddressing(frame, 2, 1).ok());
  absl::Status forged = CheckAddressing(frame, 3, 1);
  CHECK(forged.code() == absl::StatusCode::kPermissionDenied);
  CHECK(forged.message() ==
        "bad frame: claims sender 2 on a connection authenticated as 3");
  CHECK_FALSE(CheckAddressing(frame, 2, 5).ok());
  CHECK_FALSE(CheckAddressing(Frame(Proof{}), 2, 1).ok());
}

TEST_CASE("handshake proofs bind both nonces and both identities") {
  Hello a{.cluster_id = "c", .member_id = 1, .nonce = MakeNonce()};
  Hello b{.cluster_id = "c", .member_id = 2, .nonce = MakeNonce()};
  const std::string secret = "0123456789abcdef";
  const std::string proof = ComputeProof(secret, a, b);
  CHECK(proof.size() == kMacBytes);
  CHECK(ProofMatches(ComputeProof(secret, a, b), proof));
  CHECK_FALSE(ProofMatches(ComputeProof(secret, b, a), proof));
  CHECK_FALSE(ProofMatches(ComputeProof("another-secret-1", a, b), proof));
  Hello replay = b;
  replay.nonce = MakeNonce();
  CHECK_FALSE(ProofMatches(ComputeProof(secret, a, replay), proof));
  CHECK(MakeNonce() != MakeNonce());
}

TEST_CASE("size estimates bound the encoded size from above") {
  for (int entries : {0, 1, 7, 300}) {
    for (size_t bytes : {size_t{0}, size_t{1}, size_t{100}, size_t{1} << 16}) {
      raft::Message m = confman::testing::Append(1, 2, bytes, entries);
      m.context = std::string(bytes, 'c');
      m.snapshot =
          raft::SnapshotMeta{.index = 1,
                             .term = 1,
                             .membership = confman::testing::MakeMembership(
                                 {1, 2, 3}, {4, 5}, {6})};
      CHECK(EstimateEncodedBytes(m) >= EncodeMessage(m).size());
    }
  }
  TransportSnapshotChunk chunk;
  chunk.data = std::string(12345, 'd');
  chunk.meta = raft::SnapshotMeta{
      .index = 1,
      .term = 1,
      .membership = confman::testing::MakeMembership({1, 2})};
  CHECK(EstimateEncodedBytes(chunk) >=
        EncodeChunk({.from = 1, .to = 2, .chunk = chunk}).size());
}

}  // namespace
}  // namespace confman::wire
