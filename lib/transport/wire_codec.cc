// Encoding and decoding of confman's wire frames (see wire_codec.h and
// schema/wire.fbs). Decoding is the input boundary between members: a
// frame is verified structurally by FlatBuffers and then semantically here
// (enum ranges, one payload matching `kind`, sorted membership lists)
// before anything is handed to the Raft driver, so the core never sees a
// value it could not have produced itself. Compiled without Asio so the
// fuzz target (tests/fuzz) can build it with coverage.
#include "wire_codec.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/bytes.h"
#include "flatbuffers/flatbuffers.h"
#include "recycling_buffer_pool.h"
#include "wire_generated.h"

namespace confman::wire {
namespace {

namespace fb = ::flatbuffers;
namespace gen = ::confman::wire::schema;

// ---- encoding -------------------------------------------------------------

fb::Offset<fb::Vector<uint8_t>> Bytes(fb::FlatBufferBuilder& builder,
                                      std::string_view bytes) {
  return builder.CreateVector(reinterpret_cast<const uint8_t*>(bytes.data()),
                              bytes.size());
}

fb::Offset<gen::SnapshotMeta> BuildMeta(fb::FlatBufferBuilder& builder,
                                        const raft::SnapshotMeta& meta) {
  const raft::Membership& m = meta.membership;
  auto membership =
      gen::CreateMembership(builder, builder.CreateVector(m.voters),
                            builder.CreateVector(m.voters_outgoing),
                            builder.CreateVector(m.learners));
  return gen::CreateSnapshotMeta(builder, meta.index, meta.term, membership);
}

EncodedFrame FinishFrame(fb::FlatBufferBuilder& builder,
                         fb::Offset<gen::Frame> frame,
                         std::vector<raft::Payload> attachments = {}) {
  builder.Finish(frame);
  return EncodedFrame(builder.Release(), std::move(attachments));
}

// Starts a Frame table; the caller adds its payload field and finishes it.
gen::FrameBuilder StartFrame(fb::FlatBufferBuilder& builder,
                             gen::FrameKind kind) {
  gen::FrameBuilder frame(builder);
  frame.add_protocol_version(kProtocolVersion);
  frame.add_kind(kind);
  return frame;
}

// Large entries' data goes to `attachments` (shared, not copied) and the
// entry table records only its size.
fb::Offset<gen::RaftMessage> BuildMessage(
    fb::FlatBufferBuilder& builder, const raft::Message& m,
    std::vector<raft::Payload>& attachments) {
  std::vector<fb::Offset<gen::Entry>> entries;
  entries.reserve(m.entries.size());
  for (const raft::Entry& e : m.entries) {
    const auto type = static_cast<gen::EntryType>(e.type);
    if (e.data.size() >= kAttachMinBytes) {
      entries.push_back(
          gen::CreateEntry(builder, e.term, e.index, type, 0, e.data.size()));
      attachments.push_back(e.data);
    } else {
      entries.push_back(gen::CreateEntry(builder, e.term, e.index, type,
                                         Bytes(builder, e.data)));
    }
  }
  auto entries_vec = builder.CreateVector(entries);
  auto context = Bytes(builder, m.context);
  fb::Offset<gen::SnapshotMeta> snapshot;
  if (m.snapshot) snapshot = BuildMeta(builder, *m.snapshot);
  gen::RaftMessageBuilder b(builder);
  b.add_type(static_cast<gen::MessageType>(m.type));
  b.add_from(m.from);
  b.add_to(m.to);
  b.add_term(m.term);
  b.add_log_index(m.log_index);
  b.add_log_term(m.log_term);
  b.add_commit(m.commit);
  b.add_entries(entries_vec);
  b.add_reject(m.reject);
  b.add_hint_index(m.hint_index);
  b.add_hint_term(m.hint_term);
  b.add_round(m.round);
  b.add_transfer(m.transfer);
  b.add_context(context);
  if (m.snapshot) b.add_snapshot(snapshot);
  return b.Finish();
}

// ---- decoding -------------------------------------------------------------

[[nodiscard]] absl::Status Invalid(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("bad frame: ", what));
}

std::string ToString(const fb::Vector<uint8_t>* bytes) {
  if (bytes == nullptr) return {};
  return std::string(reinterpret_cast<const char*>(bytes->data()),
                     bytes->size());
}

// Raft relies on these lists being sorted and duplicate-free, so a peer
// cannot be allowed to hand the core anything else.
[[nodiscard]] absl::StatusOr<std::vector<raft::MemberId>> DecodeIds(
    const fb::Vector<uint64_t>* ids, absl::string_view field) {
  std::vector<raft::MemberId> out;
  if (ids == nullptr) return out;
  // The Verifier checks a vector's length prefix alignment but not its
  // elements'; a crafted buffer can place 8-byte ids at a 4-byte boundary.
  // (The builder does not align empty vectors, which hold nothing to read.)
  if (ids->size() > 0 &&
      reinterpret_cast<uintptr_t>(ids->Data()) % alignof(uint64_t) != 0) {
    return Invalid(absl::StrCat("membership list ", field, " is misaligned"));
  }
  out.assign(ids->begin(), ids->end());
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == raft::kNoMember || (i > 0 && out[i - 1] >= out[i])) {
      return Invalid(absl::StrCat(
          "membership list ", field,
          " must hold non-zero member ids in strictly increasing order"));
    }
  }
  return out;
}

bool Shares(const std::vector<raft::MemberId>& a,
            const std::vector<raft::MemberId>& b) {
  auto it = a.begin();
  for (raft::MemberId id : b) {
    it = std::lower_bound(it, a.end(), id);
    if (it != a.end() && *it == id) return true;
  }
  return false;
}

[[nodiscard]] absl::StatusOr<raft::SnapshotMeta> DecodeMeta(
    const gen::SnapshotMeta& in) {
  raft::SnapshotMeta meta;
  meta.index = in.index();
  meta.term = in.term();
  if (const gen::Membership* m = in.membership()) {
    auto voters = DecodeIds(m->voters(), "voters");
    if (!voters.ok()) return voters.status();
    auto outgoing = DecodeIds(m->voters_outgoing(), "voters_outgoing");
    if (!outgoing.ok()) return outgoing.status();
    auto learners = DecodeIds(m->learners(), "learners");
    if (!learners.ok()) return learners.status();
    if (Shares(*voters, *learners) || Shares(*outgoing, *learners)) {
      return Invalid("a learner is also listed as a voter");
    }
    meta.membership.voters = *std::move(voters);
    meta.membership.voters_outgoing = *std::move(outgoing);
    meta.membership.learners = *std::move(learners);
  }
  return meta;
}

// FlatBuffers does not check enum values; a peer may send any byte.
template <typename Enum, typename WireEnum>
[[nodiscard]] absl::StatusOr<Enum> CheckedEnum(WireEnum value, Enum last,
                                               absl::string_view what) {
  const auto raw = static_cast<uint8_t>(value);
  if (raw > static_cast<uint8_t>(last)) {
    return Invalid(absl::StrCat("unknown ", what, " ", raw));
  }
  return static_cast<Enum>(raw);
}

// The bytes after a frame's FlatBuffers buffer, handed out to the entries
// that claim them, in order.
// Shared from the receive buffer when its owner is known, copied otherwise.
class Attachments {
 public:
  Attachments(std::string_view bytes, std::shared_ptr<const void> owner)
      : rest_(bytes), owner_(std::move(owner)) {}

  [[nodiscard]] absl::StatusOr<raft::Payload> Take(uint64_t size) {
    if (size > rest_.size()) {
      return Invalid(absl::StrCat("an entry claims ", size, " attached bytes, ",
                                  rest_.size(), " are left in the frame"));
    }
    const std::string_view bytes = rest_.substr(0, size);
    rest_.remove_prefix(size);
    if (owner_) return raft::Payload(owner_, bytes);
    return raft::Payload(std::string(bytes));
  }
  // Every attached byte belongs to some entry: a frame whose entries claim
  // fewer was not written by a confman member.
  [[nodiscard]] absl::Status CheckAllTaken() const {
    if (rest_.empty()) return absl::OkStatus();
    return Invalid(
        absl::StrCat(rest_.size(), " attached bytes belong to no entry"));
  }

 private:
  std::string_view rest_;
  std::shared_ptr<const void> owner_;
};

[[nodiscard]] absl::StatusOr<raft::Entry> DecodeEntry(
    const gen::Entry& in, Attachments& attachments) {
  auto type =
      CheckedEnum(in.type(), raft::EntryType::kMembership, "entry type");
  if (!type.ok()) return type.status();
  raft::Entry entry;
  entry.term = in.term();
  entry.index = in.index();
  entry.type = *type;
  if (in.attached_bytes() == 0) {
    entry.data = ToString(in.data());
    return entry;
  }
  if (in.data() != nullptr) {
    return Invalid(absl::StrCat("entry ", entry.index,
                                " has both data and attached bytes"));
  }
  absl::StatusOr<raft::Payload> data = attachments.Take(in.attached_bytes());
  if (!data.ok()) return data.status();
  entry.data = *std::move(data);
  return entry;
}

[[nodiscard]] absl::StatusOr<raft::Message> DecodeMessage(
    const gen::RaftMessage& in, Attachments& attachments) {
  auto type = CheckedEnum(in.type(), raft::MessageType::kReadIndexResponse,
                          "Raft message type");
  if (!type.ok()) return type.status();
  raft::Message m;
  m.type = *type;
  m.from = in.from();
  m.to = in.to();
  m.term = in.term();
  m.log_index = in.log_index();
  m.log_term = in.log_term();
  m.commit = in.commit();
  m.reject = in.reject();
  m.hint_index = in.hint_index();
  m.hint_term = in.hint_term();
  m.round = in.round();
  m.transfer = in.transfer();
  m.context = ToString(in.context());
  if (const auto* entries = in.entries()) {
    m.entries.reserve(entries->size());
    for (const gen::Entry* e : *entries) {
      auto entry = DecodeEntry(*e, attachments);
      if (!entry.ok()) return entry.status();
      m.entries.push_back(*std::move(entry));
    }
  }
  if (const gen::SnapshotMeta* snapshot = in.snapshot()) {
    auto meta = DecodeMeta(*snapshot);
    if (!meta.ok()) return meta.status();
    m.snapshot = *std::move(meta);
  }
  return m;
}

[[nodiscard]] absl::StatusOr<Frame> DecodeHello(const gen::Hello& in) {
  auto channel = CheckedEnum(in.channel(), Channel::kBulk, "channel");
  if (!channel.ok()) return channel.status();
  if (in.nonce() == nullptr || in.nonce()->size() != kNonceBytes) {
    return Invalid(absl::StrCat("hello nonce must be ", kNonceBytes, " bytes"));
  }
  Hello hello;
  hello.cluster_id = in.cluster_id() ? in.cluster_id()->str() : "";
  hello.member_id = in.member_id();
  hello.nonce = ToString(in.nonce());
  hello.channel = *channel;
  return hello;
}

[[nodiscard]] absl::StatusOr<Frame> DecodeProof(const gen::Proof& in) {
  if (in.mac() == nullptr || in.mac()->size() != kMacBytes) {
    return Invalid(absl::StrCat("proof must be ", kMacBytes, " bytes"));
  }
  return Proof{ToString(in.mac())};
}

[[nodiscard]] absl::StatusOr<Frame> DecodeChunk(const gen::Frame& frame,
                                                const gen::SnapshotChunk& in) {
  ChunkFrame out{.from = frame.from(), .to = frame.to(), .chunk = {}};
  TransportSnapshotChunk& chunk = out.chunk;
  chunk.snapshot_id = in.snapshot_id();
  chunk.term = in.term();
  chunk.seq = in.seq();
  chunk.last = in.last();
  chunk.data = ToString(in.data());
  chunk.checksum = in.checksum();
  if (const gen::SnapshotMeta* meta = in.meta()) {
    auto decoded = DecodeMeta(*meta);
    if (!decoded.ok()) return decoded.status();
    chunk.meta = *std::move(decoded);
  }
  return out;
}

[[nodiscard]] absl::StatusOr<Frame> DecodeForward(const gen::Frame& frame,
                                                  const gen::ForwardFrame& in) {
  return ForwardEnvelope{.from = frame.from(),
                         .to = frame.to(),
                         .frame = {.request_id = in.request_id(),
                                   .response = in.response(),
                                   .payload = ToString(in.payload())}};
}

[[nodiscard]] absl::StatusOr<Frame> DecodeSnapshotAck(
    const gen::Frame& frame, const gen::SnapshotAck& in) {
  return AckFrame{.from = frame.from(),
                  .to = frame.to(),
                  .ack = {.snapshot_id = in.snapshot_id(), .seq = in.seq()}};
}

int PayloadCount(const gen::Frame& f) {
  return (f.hello() != nullptr) + (f.proof() != nullptr) +
         (f.raft() != nullptr) + (f.chunk() != nullptr) +
         (f.forward() != nullptr) + (f.snapshot_ack() != nullptr);
}

[[nodiscard]] absl::StatusOr<Frame> DecodePayload(
    const gen::Frame& f, std::string_view attached,
    std::shared_ptr<const void> owner) {
  if (!attached.empty() && f.kind() != gen::FrameKind::Raft) {
    return Invalid("only Raft messages carry attached bytes");
  }
  if (PayloadCount(f) != 1) {
    return Invalid("a frame must carry exactly one payload");
  }
  switch (f.kind()) {
    case gen::FrameKind::Hello:
      if (f.hello()) return DecodeHello(*f.hello());
      break;
    case gen::FrameKind::Proof:
      if (f.proof()) return DecodeProof(*f.proof());
      break;
    case gen::FrameKind::Raft:
      if (f.raft()) {
        Attachments attachments(attached, std::move(owner));
        auto m = DecodeMessage(*f.raft(), attachments);
        if (!m.ok()) return m.status();
        if (absl::Status all = attachments.CheckAllTaken(); !all.ok())
          return all;
        return Frame(*std::move(m));
      }
      break;
    case gen::FrameKind::SnapshotChunk:
      if (f.chunk()) return DecodeChunk(f, *f.chunk());
      break;
    case gen::FrameKind::Forward:
      if (f.forward()) return DecodeForward(f, *f.forward());
      break;
    case gen::FrameKind::SnapshotAck:
      if (f.snapshot_ack()) return DecodeSnapshotAck(f, *f.snapshot_ack());
      break;
    default:
      return Invalid(
          absl::StrCat("unknown frame kind ", static_cast<int>(f.kind())));
  }
  return Invalid(absl::StrCat("frame kind ", static_cast<int>(f.kind()),
                              " does not match its payload"));
}

}  // namespace

const char* ChannelName(Channel channel) {
  return channel == Channel::kControl ? "control" : "bulk";
}

static_assert(kFrameHeaderBytes == sizeof(uint32_t));

EncodedFrame::EncodedFrame(fb::DetachedBuffer body,
                           std::vector<raft::Payload> attachments)
    : body_(std::move(body)), attachments_(std::move(attachments)) {
  for (const raft::Payload& a : attachments_) attached_bytes_ += a.size();
  // The prefix holds 32 bits; senders refuse frames above max_frame_bytes
  // (at most 4 GiB - 1) before they reach a socket, so a larger length is
  // never written.
  common::PutLittleEndian(header_, static_cast<uint32_t>(length()));
}

std::string EncodedFrame::ToString() const {
  std::string out(reinterpret_cast<const char*>(header_), kFrameHeaderBytes);
  out.append(reinterpret_cast<const char*>(body()), body_size());
  for (const raft::Payload& a : attachments_) out.append(a.view());
  return out;
}

// Each entry costs its table, vtable, offsets and vector prefix (well under
// 64 bytes); the fixed part covers the frame, message and snapshot tables.
size_t EstimateEncodedBytes(const raft::Message& m) {
  size_t bytes = 512 + m.context.size();
  if (m.snapshot) {
    const raft::Membership& ms = m.snapshot->membership;
    bytes +=
        8 * (ms.voters.size() + ms.voters_outgoing.size() + ms.learners.size());
  }
  for (const raft::Entry& e : m.entries) bytes += 64 + e.data.size();
  return bytes;
}

size_t EstimateEncodedBytes(const TransportSnapshotChunk& chunk) {
  size_t bytes = 512 + chunk.data.size();
  if (chunk.meta) {
    const raft::Membership& ms = chunk.meta->membership;
    bytes +=
        8 * (ms.voters.size() + ms.voters_outgoing.size() + ms.learners.size());
  }
  return bytes;
}

EncodedFrame EncodeHello(const Hello& hello) {
  fb::FlatBufferBuilder builder(128);
  auto body = gen::CreateHello(builder, builder.CreateString(hello.cluster_id),
                               hello.member_id, Bytes(builder, hello.nonce),
                               static_cast<gen::Channel>(hello.channel));
  auto frame = StartFrame(builder, gen::FrameKind::Hello);
  frame.add_hello(body);
  return FinishFrame(builder, frame.Finish());
}

EncodedFrame EncodeProof(const Proof& proof) {
  fb::FlatBufferBuilder builder(96);
  auto body = gen::CreateProof(builder, Bytes(builder, proof.mac));
  auto frame = StartFrame(builder, gen::FrameKind::Proof);
  frame.add_proof(body);
  return FinishFrame(builder, frame.Finish());
}

EncodedFrame EncodeMessage(const raft::Message& message) {
  size_t attached_bytes = 0;
  for (const raft::Entry& e : message.entries) {
    if (e.data.size() >= kAttachMinBytes) attached_bytes += e.data.size();
  }
  fb::FlatBufferBuilder builder(EstimateEncodedBytes(message) - attached_bytes,
                                &RecyclingBufferPool::Get());
  std::vector<raft::Payload> attachments;
  auto body = BuildMessage(builder, message, attachments);
  auto frame = StartFrame(builder, gen::FrameKind::Raft);
  frame.add_raft(body);
  if (attached_bytes > 0) frame.add_attached_bytes(attached_bytes);
  return FinishFrame(builder, frame.Finish(), std::move(attachments));
}

EncodedFrame EncodeChunk(const ChunkFrame& in) {
  const TransportSnapshotChunk& c = in.chunk;
  fb::FlatBufferBuilder builder(EstimateEncodedBytes(c),
                                &RecyclingBufferPool::Get());
  auto data = Bytes(builder, c.data);
  fb::Offset<gen::SnapshotMeta> meta;
  if (c.meta) meta = BuildMeta(builder, *c.meta);
  gen::SnapshotChunkBuilder chunk(builder);
  chunk.add_snapshot_id(c.snapshot_id);
  chunk.add_term(c.term);
  if (c.meta) chunk.add_meta(meta);
  chunk.add_seq(c.seq);
  chunk.add_last(c.last);
  chunk.add_data(data);
  chunk.add_checksum(c.checksum);
  auto body = chunk.Finish();
  auto frame = StartFrame(builder, gen::FrameKind::SnapshotChunk);
  frame.add_from(in.from);
  frame.add_to(in.to);
  frame.add_chunk(body);
  return FinishFrame(builder, frame.Finish());
}

EncodedFrame EncodeForward(const ForwardEnvelope& in) {
  fb::FlatBufferBuilder builder(128 + in.frame.payload.size());
  auto body =
      gen::CreateForwardFrame(builder, in.frame.request_id, in.frame.response,
                              Bytes(builder, in.frame.payload));
  auto frame = StartFrame(builder, gen::FrameKind::Forward);
  frame.add_from(in.from);
  frame.add_to(in.to);
  frame.add_forward(body);
  return FinishFrame(builder, frame.Finish());
}

EncodedFrame EncodeSnapshotAck(const AckFrame& in) {
  fb::FlatBufferBuilder builder(96);
  auto body = gen::CreateSnapshotAck(builder, in.ack.snapshot_id, in.ack.seq);
  auto frame = StartFrame(builder, gen::FrameKind::SnapshotAck);
  frame.add_from(in.from);
  frame.add_to(in.to);
  frame.add_snapshot_ack(body);
  return FinishFrame(builder, frame.Finish());
}

[[nodiscard]] absl::StatusOr<uint32_t> ParseFrameLength(
    const uint8_t* header, uint32_t max_frame_bytes) {
  const uint32_t length = common::GetLittleEndian<uint32_t>(header);
  if (length == 0) return Invalid("frame length 0");
  if (length > max_frame_bytes) {
    return Invalid(absl::StrCat("frame length ", length,
                                " exceeds max_frame_bytes ", max_frame_bytes));
  }
  return length;
}

uint8_t* AlignedBuffer::Resize(size_t size) {
  if (size > capacity_) {
    const size_t words = (size + sizeof(uint64_t) - 1) / sizeof(uint64_t);
    words_ = std::make_unique_for_overwrite<uint64_t[]>(words);
    capacity_ = words * sizeof(uint64_t);
  }
  size_ = size;
  return data();
}

void AlignedBuffer::ShrinkIfAbove(size_t keep_bytes) {
  if (capacity_ <= keep_bytes) return;
  words_.reset();
  capacity_ = 0;
  size_ = 0;
}

[[nodiscard]] absl::StatusOr<Frame> DecodeFrameBody(
    const uint8_t* body, size_t size, std::shared_ptr<const void> owner) {
  if (size < sizeof(fb::uoffset_t) ||
      size >= static_cast<size_t>(FLATBUFFERS_MAX_BUFFER_SIZE)) {
    return Invalid(absl::StrCat("frame body of ", size, " bytes"));
  }
  fb::Verifier::Options options;
  options.max_depth = kMaxVerifierDepth;
  // Every table costs at least 8 bytes (its vtable offset plus the offset
  // pointing at it), so this bound only rejects buffers that reuse tables to
  // make verification cost more than reading the bytes once.
  options.max_tables = static_cast<fb::uoffset_t>(size / 8 + 16);
  options.check_alignment = true;
  fb::Verifier verifier(body, size, options);
  if (!verifier.VerifyBuffer<gen::Frame>(nullptr)) {
    return Invalid("FlatBuffers verification failed");
  }
  const gen::Frame* frame = fb::GetRoot<gen::Frame>(body);
  if (frame->protocol_version() != kProtocolVersion) {
    return Invalid(absl::StrCat("protocol version ", frame->protocol_version(),
                                ", this member speaks ", kProtocolVersion));
  }
  const uint64_t attached = frame->attached_bytes();
  if (attached == 0) return DecodePayload(*frame, {}, nullptr);
  if (attached > size - sizeof(fb::uoffset_t)) {
    return Invalid(absl::StrCat("frame of ", size, " bytes claims ", attached,
                                " attached bytes"));
  }
  // Verified again over the buffer alone, so that nothing in it points
  // into the attachments.
  const size_t buffer_size = size - attached;
  fb::Verifier inner(body, buffer_size, options);
  if (!inner.VerifyBuffer<gen::Frame>(nullptr)) {
    return Invalid(
        "FlatBuffers verification failed for the buffer before the "
        "attachments");
  }
  return DecodePayload(
      *frame,
      std::string_view(reinterpret_cast<const char*>(body) + buffer_size,
                       attached),
      std::move(owner));
}

[[nodiscard]] absl::Status CheckAddressing(const Frame& frame,
                                           raft::MemberId authenticated_peer,
                                           raft::MemberId self) {
  raft::MemberId from = raft::kNoMember;
  raft::MemberId to = raft::kNoMember;
  if (const auto* m = std::get_if<raft::Message>(&frame)) {
    from = m->from;
    to = m->to;
  } else if (const auto* c = std::get_if<ChunkFrame>(&frame)) {
    from = c->from;
    to = c->to;
  } else if (const auto* f = std::get_if<ForwardEnvelope>(&frame)) {
    from = f->from;
    to = f->to;
  } else if (const auto* a = std::get_if<AckFrame>(&frame)) {
    from = a->from;
    to = a->to;
  } else {
    return Invalid("handshake frame after the handshake completed");
  }
  if (from != authenticated_peer) {
    return absl::PermissionDeniedError(
        absl::StrCat("bad frame: claims sender ", from,
                     " on a connection authenticated as ", authenticated_peer));
  }
  if (to != self) {
    return Invalid(
        absl::StrCat("addressed to member ", to, ", this member is ", self));
  }
  return absl::OkStatus();
}

}  // namespace confman::wire
