// Round trips and hostile input for the frame codec (lib/transport).
#include "wire_codec.h"

#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "flatbuffers/flatbuffers.h"
#include "handshake.h"
#include "recording_handler.h"
#include "wire_generated.h"

namespace confman::wire {
namespace {

using confman::testing::Append;
using confman::testing::Heartbeat;
using confman::testing::MakeMembership;

absl::StatusOr<Frame> Decode(const std::string& frame);

// Decodes what a receiver reads after the length prefix (the body and any
// attachments), from an aligned copy.
absl::StatusOr<Frame> Decode(const EncodedFrame& frame) {
  return Decode(frame.ToString());
}

// Every `step`-th cut of a valid frame's body fails to decode, cleanly.
void ExpectTruncationsRefused(const std::string& frame, size_t step) {
  AlignedBuffer buffer;
  for (size_t cut = kFrameHeaderBytes; cut < frame.size(); cut += step) {
    const size_t body = cut - kFrameHeaderBytes;
    uint8_t* into = buffer.Resize(body);
    if (body > 0) std::memcpy(into, frame.data() + kFrameHeaderBytes, body);
    CHECK_FALSE(DecodeFrameBody(buffer.data(), body).ok());
  }
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

TEST_CASE("snapshot acknowledgements round-trip with their addressing") {
  for (const TransportSnapshotAck ack :
       {TransportSnapshotAck{.snapshot_id = 0, .seq = 0},
        TransportSnapshotAck{.snapshot_id = 17, .seq = 3},
        TransportSnapshotAck{.snapshot_id = ~uint64_t{0},
        .seq = 0x0102030405060708}}) {
    auto decoded = Decode(EncodeSnapshotAck({.from = 2, .to = 5, .ack = ack}));
    REQUIRE(decoded.ok());
    REQUIRE(std::holds_alternative<AckFrame>(*decoded));
    const auto& back = std::get<AckFrame>(*decoded);
    CHECK(back.from == 2);
    CHECK(back.to == 5);
    CHECK(back.ack == ack);
    CHECK(CheckAddressing(*decoded, 2, 5).ok());
    CHECK(CheckAddressing(*decoded, 3, 5).code() ==
          absl::StatusCode::kPermissionDenied);
    CHECK(CheckAddressing(*decoded, 2, 4).code() ==
          absl::StatusCode::kInvalidArgument);
  }
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
  ExpectTruncationsRefused(frame, 7);
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
        absl::StrCat("bad frame: protocol version ", kProtocolVersion + 1,
                     ", this member speaks ", kProtocolVersion));
}

TEST_CASE("malformed snapshot acknowledgement frames are rejected") {
  using namespace schema;
  auto no_payload = BuildFrame([](flatbuffers::FlatBufferBuilder& b) {
    return CreateFrame(b, kProtocolVersion, FrameKind::SnapshotAck, 2, 1);
  });
  auto decoded = Decode(no_payload);
  REQUIRE_FALSE(decoded.ok());
  CHECK(decoded.status().message() ==
        "bad frame: a frame must carry exactly one payload");

  auto wrong_kind = BuildFrame([](flatbuffers::FlatBufferBuilder& b) {
    auto ack = CreateSnapshotAck(b, 4, 1);
    return CreateFrame(b, kProtocolVersion, FrameKind::Forward, 2, 1, 0, 0, 0,
                       0, 0, ack);
  });
  decoded = Decode(wrong_kind);
  REQUIRE_FALSE(decoded.ok());
  CHECK(decoded.status().message() ==
        "bad frame: frame kind 4 does not match its payload");

  auto forward_as_ack = BuildFrame([](flatbuffers::FlatBufferBuilder& b) {
    auto forward = CreateForwardFrame(b, 0);
    return CreateFrame(b, kProtocolVersion, FrameKind::SnapshotAck, 2, 1, 0, 0,
                       0, 0, forward);
  });
  decoded = Decode(forward_as_ack);
  REQUIRE_FALSE(decoded.ok());
  CHECK(decoded.status().message() ==
        "bad frame: frame kind 5 does not match its payload");

  auto ack_and_forward = BuildFrame([](flatbuffers::FlatBufferBuilder& b) {
    auto forward = CreateForwardFrame(b, 1);
    auto ack = CreateSnapshotAck(b, 4, 1);
    return CreateFrame(b, kProtocolVersion, FrameKind::SnapshotAck, 2, 1, 0, 0,
                       0, 0, forward, ack);
  });
  decoded = Decode(ack_and_forward);
  REQUIRE_FALSE(decoded.ok());
  CHECK(decoded.status().message() ==
        "bad frame: a frame must carry exactly one payload");

  // A member of the previous protocol never sends this kind; one that
  // claims to is refused on its version before the kind is looked at.
  auto previous_version = BuildFrame([](flatbuffers::FlatBufferBuilder& b) {
    auto ack = CreateSnapshotAck(b, 4, 1);
    return CreateFrame(b, 1, FrameKind::SnapshotAck, 2, 1, 0, 0, 0, 0, 0, ack);
  });
  decoded = Decode(previous_version);
  REQUIRE_FALSE(decoded.ok());
  CHECK(decoded.status().message() ==
        absl::StrCat("bad frame: protocol version 1, this member speaks ",
                     kProtocolVersion));

  // Every truncation of a valid acknowledgement fails cleanly.
  const std::string frame =
      EncodeSnapshotAck(
          {.from = 2, .to = 1, .ack = {.snapshot_id = 9, .seq = 8}})
          .ToString();
  ExpectTruncationsRefused(frame, 1);
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

TEST_CASE(
    "large entries travel after the buffer, shared with the entry, and "
    "round-trip") {
  raft::Message m = Append(1, 2, 100, 1);
  m.entries.push_back(
      {.term = 4, .index = 12, .data = std::string(kAttachMinBytes, 'x')});
  m.entries.push_back({.term = 4, .index = 13, .data = std::string(10, 'y')});
  m.entries.push_back(
      {.term = 4, .index = 14, .data = std::string(1 << 20, 'z')});
  const EncodedFrame frame = EncodeMessage(m);
  REQUIRE(frame.attachments().size() == 2);
  // Written from the entries' own buffers: nothing was copied.
  CHECK(frame.attachments()[0].data() == m.entries[1].data.data());
  CHECK(frame.attachments()[1].data() == m.entries[3].data.data());
  CHECK(frame.body_size() < 1024);
  CHECK(frame.length() == frame.body_size() + kAttachMinBytes + (1 << 20));
  CHECK(frame.size() == frame.ToString().size());
  uint32_t prefix = 0;
  std::memcpy(&prefix, frame.header(), sizeof(prefix));
  CHECK(prefix == frame.length());
  absl::StatusOr<Frame> decoded = Decode(frame);
  REQUIRE(decoded.ok());
  CHECK(std::get<raft::Message>(*decoded) == m);
  // Given the body's owner, the decoded entries share the body's bytes.
  const std::string bytes = frame.ToString().substr(kFrameHeaderBytes);
  auto owned = std::make_shared<AlignedBuffer>();
  std::memcpy(owned->Resize(bytes.size()), bytes.data(), bytes.size());
  const std::weak_ptr<AlignedBuffer> watch = owned;
  absl::StatusOr<Frame> shared =
      DecodeFrameBody(owned->data(), bytes.size(), owned);
  REQUIRE(shared.ok());
  const auto* received = reinterpret_cast<const char*>(owned->data());
  owned.reset();
  const raft::Message& got = std::get<raft::Message>(*shared);
  CHECK(got == m);
  CHECK(got.entries[3].data.data() == received + bytes.size() - (1 << 20));
  CHECK_FALSE(watch.expired());
  // Below the threshold an entry stays inside the buffer.
  CHECK(EncodeMessage(Append(1, 2, kAttachMinBytes - 1, 3))
            .attachments()
            .empty());
}

TEST_CASE("attached bytes that do not match the entries are rejected") {
  using namespace schema;
  // A Raft message whose entries claim `claimed` attached bytes, in a frame
  // announcing `announced` and carrying `carried`.
  auto frame = [](uint64_t claimed, uint64_t announced, size_t carried,
                  bool inline_data = false, FrameKind kind = FrameKind::Raft) {
    std::string out = BuildFrame([&](flatbuffers::FlatBufferBuilder& b) {
      auto data = inline_data ? b.CreateVector(std::vector<uint8_t>{1}) : 0;
      std::vector<flatbuffers::Offset<schema::Entry>> entries{
          CreateEntry(b, 1, 1, EntryType::Normal, data, claimed)};
      auto raft = CreateRaftMessage(b, MessageType::Append, 1, 2, 0, 0, 0, 0,
                                    b.CreateVector(entries));
      if (kind != FrameKind::Raft) {
        auto forward = CreateForwardFrame(b, 1);
        return CreateFrame(b, kProtocolVersion, kind, 1, 2, 0, 0, 0, 0, forward,
                           0, announced);
      }
      return CreateFrame(b, kProtocolVersion, kind, 0, 0, 0, 0, raft, 0, 0, 0,
                         announced);
    });
    out.append(carried, 'q');
    const uint32_t length =
        static_cast<uint32_t>(out.size() - kFrameHeaderBytes);
    std::memcpy(out.data(), &length, sizeof(length));
    return out;
  };
  auto message = [](const std::string& f) {
    absl::StatusOr<wire::Frame> decoded = Decode(f);
    return decoded.ok() ? std::string("ok")
                        : std::string(decoded.status().message());
  };
  CHECK(message(frame(5000, 5000, 5000)) == "ok");
  CHECK(message(frame(4000, 5000, 5000)) ==
        "bad frame: 1000 attached bytes belong to no entry");
  CHECK(message(frame(6000, 5000, 5000)) ==
        "bad frame: an entry claims 6000 attached bytes, 5000 are left in the "
        "frame");
  CHECK(
      message(frame(100, 0, 0)) ==
      "bad frame: an entry claims 100 attached bytes, 0 are left in the frame");
  CHECK(message(frame(5000, 5000, 5000, true)) ==
        "bad frame: entry 1 has both data and attached bytes");
  CHECK(absl::StartsWith(message(frame(5000, 1u << 30, 5000)),
                         "bad frame: frame of "));
  // Announcing more than is carried makes the buffer part too short.
  CHECK(message(frame(5000, 5001, 5000)) ==
        "bad frame: FlatBuffers verification failed for the buffer before the "
        "attachments");
  CHECK(message(frame(0, 10, 10, false, FrameKind::Forward)) ==
        "bad frame: only Raft messages carry attached bytes");
}

// The fuzz target starts from tests/fuzz/corpus; seeds of an older protocol
// are refused on their version before anything else is looked at, and a
// seed that is not a frame at all (a hex dump, say) is refused on its
// length, so either would exercise nothing.
TEST_CASE("the fuzz seed corpus speaks the current protocol version") {
  // Seeds whose point is a length prefix no frame can have.
  const std::set<std::string> malformed_on_purpose = {"huge_length"};
  int frames = 0;
  for (const auto& seed :
       std::filesystem::directory_iterator(CONFMAN_WIRE_FUZZ_CORPUS)) {
    std::ifstream in(seed.path(), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)),
                            std::istreambuf_iterator<char>());
    const std::string name = seed.path().filename().string();
    if (!malformed_on_purpose.count(name)) {
      absl::StatusOr<uint32_t> first =
          bytes.size() >= kFrameHeaderBytes
              ? ParseFrameLength(reinterpret_cast<const uint8_t*>(bytes.data()),
                                 1u << 20)
              : absl::StatusOr<uint32_t>(absl::InvalidArgumentError("short"));
      INFO(name << " must start with a whole frame: "
                << first.status().ToString() << ", " << bytes.size()
                << " bytes");
      CHECK((first.ok() && bytes.size() - kFrameHeaderBytes >= *first));
    }
    size_t offset = 0;
    while (bytes.size() - offset >= kFrameHeaderBytes) {
      absl::StatusOr<uint32_t> length = ParseFrameLength(
          reinterpret_cast<const uint8_t*>(bytes.data() + offset), 1u << 20);
      if (!length.ok() || bytes.size() - offset - kFrameHeaderBytes < *length) {
        break;
      }
      absl::StatusOr<Frame> frame =
          Decode(bytes.substr(offset, kFrameHeaderBytes + *length));
      INFO(seed.path().filename().string()
           << ": " << frame.status().ToString());
      CHECK_FALSE(
          absl::StrContains(frame.status().message(), "protocol version"));
      frames += frame.ok() ? 1 : 0;
      offset += kFrameHeaderBytes + *length;
    }
  }
  CHECK(frames >= 10);
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
