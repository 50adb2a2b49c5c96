// Encoding and verified decoding of config commands (kv/command.h): names
// checked, values compressed once at the proposer, FlatBuffers verified
// before any field is read, since entry bytes come from other members.
#include "confman/kv/command.h"

#include <zstd.h>
#include <zstd_errors.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "command_generated.h"
#include "common/recycling_buffer_pool.h"
#include "confman/kv/model.h"
#include "confman/status_macros.h"

namespace confman::kv {
namespace {

absl::string_view ToAbsl(std::string_view s) { return {s.data(), s.size()}; }

const uint8_t* Bytes(std::string_view s) {
  return reinterpret_cast<const uint8_t*>(s.data());
}

std::string_view View(const flatbuffers::String* s) {
  return s == nullptr ? std::string_view() : std::string_view(s->data(), s->size());
}

std::string_view View(const flatbuffers::Vector<uint8_t>* v) {
  if (v == nullptr) return {};
  return {reinterpret_cast<const char*>(v->data()), v->size()};
}

[[nodiscard]] absl::Status CheckName(std::string_view what, std::string_view name,
                       size_t max_bytes) {
  if (name.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(ToAbsl(what), " is empty"));
  }
  if (name.size() > max_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        ToAbsl(what), " is ", name.size(), " bytes; the limit is ", max_bytes));
  }
  return absl::OkStatus();
}

// The limits both the encoder and the applier enforce.
[[nodiscard]] absl::Status CheckAddress(std::string_view ns, std::string_view key) {
  CONFMAN_RETURN_IF_ERROR(CheckName("the namespace", ns, kMaxNamespaceBytes));
  if (ns.find('\0') != std::string_view::npos) {
    return absl::InvalidArgumentError("the namespace contains a NUL byte");
  }
  return CheckName("the key", key, kMaxKeyBytes);
}

// A large value is first judged by compressing this much of its start:
// media, ciphertext and other random-looking data then costs one small
// compression instead of a full pass that saves nothing.
constexpr size_t kCompressionProbeBytes = 64 * 1024;
// The probe must shrink to below this fraction of its size (15/16).
constexpr size_t kProbeGainNumerator = 15;
constexpr size_t kProbeGainDenominator = 16;

// Compresses `input` into `out`, which holds at most `limit` bytes. Returns
// false when the result would not fit (the input does not compress enough).
[[nodiscard]] absl::StatusOr<bool> CompressInto(std::string_view input, size_t limit,
                                  int level, std::string& out) {
  out.resize(limit);
  const size_t size =
      ZSTD_compress(out.data(), out.size(), input.data(), input.size(), level);
  if (ZSTD_isError(size)) {
    if (ZSTD_getErrorCode(size) == ZSTD_error_dstSize_tooSmall) return false;
    return absl::InternalError(absl::StrCat("zstd compression failed: ",
                                            ZSTD_getErrorName(size)));
  }
  out.resize(size);
  return true;
}

// How `value` is stored: kZstd with the bytes in `compressed`, or kRaw
// (the value itself, uncopied) when compression would not make it smaller.
[[nodiscard]] absl::StatusOr<fb::ValueEncoding> Compress(const std::string& value,
                                           const EncodeOptions& options,
                                           std::string& compressed) {
  if (value.size() <= options.compress_above_bytes)
    return fb::ValueEncoding_Raw;
  if (value.size() > 2 * kCompressionProbeBytes) {
    const std::string_view probe(value.data(), kCompressionProbeBytes);
    CONFMAN_ASSIGN_OR_RETURN(
        bool shrinks,
        CompressInto(probe,
                     probe.size() * kProbeGainNumerator / kProbeGainDenominator,
                     options.zstd_level, compressed));
    if (!shrinks) return fb::ValueEncoding_Raw;
  }
  CONFMAN_ASSIGN_OR_RETURN(
      bool shrinks,
      CompressInto(value, value.size() - 1, options.zstd_level, compressed));
  return shrinks ? fb::ValueEncoding_Zstd : fb::ValueEncoding_Raw;
}

[[nodiscard]] absl::Status CheckCommand(const Command& command, const EncodeOptions& options) {
  if (command.kind == Command::Kind::kCompactHistory) return absl::OkStatus();
  CONFMAN_RETURN_IF_ERROR(CheckAddress(command.ns, command.key));
  if (command.client_id != 0 && command.sequence == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("client ", command.client_id,
                     " sent sequence 0; number a client's "
                     "writes from 1 (or set client_id 0 for no session)"));
  }
  if (command.content_type.size() > kMaxContentTypeBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the content type is ", command.content_type.size(),
        " bytes; the limit is ", kMaxContentTypeBytes));
  }
  if (command.value.size() > options.max_value_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the value is ", command.value.size(), " bytes; the limit is ",
        options.max_value_bytes, " (EncodeOptions.max_value_bytes)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status EncodeOptions::Validate() const {
  if (zstd_level < 1 || zstd_level > 19) {
    return absl::InvalidArgumentError("EncodeOptions.zstd_level must be 1..19");
  }
  if (max_value_bytes == 0) {
    return absl::InvalidArgumentError("EncodeOptions.max_value_bytes must be positive");
  }
  return absl::OkStatus();
}

[[nodiscard]] absl::StatusOr<std::string> EncodeCommand(const Command& command,
                                          std::string_view actor,
                                          int64_t time_unix_micros,
                                          const EncodeOptions& options) {
  CONFMAN_RETURN_IF_ERROR(options.Validate());
  CONFMAN_RETURN_IF_ERROR(CheckCommand(command, options));
  std::string compressed;
  CONFMAN_ASSIGN_OR_RETURN(fb::ValueEncoding encoding,
                           Compress(command.value, options, compressed));
  const std::string_view stored =
      encoding == fb::ValueEncoding_Zstd ? compressed : command.value;
  flatbuffers::FlatBufferBuilder builder(stored.size() + 1024,
                                         &RecyclingBufferPool::Get());
  const auto ns = builder.CreateString(command.ns);
  const auto key = builder.CreateVector(Bytes(command.key), command.key.size());
  const auto value = builder.CreateVector(Bytes(stored), stored.size());
  const auto content_type = builder.CreateString(command.content_type);
  const auto actor_offset = builder.CreateString(actor.data(), actor.size());
  fb::CommandBuilder cb(builder);
  cb.add_kind(static_cast<fb::CommandKind>(command.kind));
  cb.add_ns(ns);
  cb.add_key(key);
  cb.add_value(value);
  cb.add_encoding(encoding);
  cb.add_raw_size(command.value.size());
  cb.add_content_type(content_type);
  cb.add_has_expected_revision(command.expected_revision.has_value());
  cb.add_expected_revision(command.expected_revision.value_or(0));
  cb.add_compact_through(command.compact_through);
  cb.add_actor(actor_offset);
  cb.add_time_unix_micros(time_unix_micros);
  // A compaction is not a client's write: it carries no session.
  if (command.kind != Command::Kind::kCompactHistory &&
      command.client_id != 0) {
    cb.add_client_id(command.client_id);
    cb.add_sequence(command.sequence);
    cb.add_lowest_unanswered(command.lowest_unanswered);
  }
  fb::FinishCommandBuffer(builder, cb.Finish());
  return std::string(reinterpret_cast<const char*>(builder.GetBufferPointer()),
                     builder.GetSize());
}

[[nodiscard]] absl::StatusOr<std::string> EncodeCommandNow(const Command& command,
                                             std::string_view actor,
                                             const EncodeOptions& options) {
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  return EncodeCommand(
      command, actor,
      std::chrono::duration_cast<std::chrono::microseconds>(now).count(),
      options);
}

[[nodiscard]] absl::StatusOr<CommandView> DecodeCommand(std::string_view bytes) {
  flatbuffers::Verifier verifier(Bytes(bytes), bytes.size());
  if (bytes.size() < 8 || !fb::CommandBufferHasIdentifier(bytes.data()) ||
      !fb::VerifyCommandBuffer(verifier)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a ", bytes.size(), "-byte entry is not a valid config command "
        "(failed FlatBuffers verification); encode commands with "
        "EncodeCommand"));
  }
  const fb::Command* c = fb::GetCommand(bytes.data());
  CommandView view;
  if (c->kind() > fb::CommandKind_MAX || c->encoding() > fb::ValueEncoding_MAX) {
    return absl::InvalidArgumentError(
        "the command has an unknown kind or value encoding");
  }
  view.kind = static_cast<Command::Kind>(c->kind());
  view.ns = View(c->ns());
  view.key = View(c->key());
  view.stored_value = View(c->value());
  view.encoding = static_cast<ValueEncoding>(c->encoding());
  view.raw_size = c->raw_size();
  view.content_type = View(c->content_type());
  if (c->has_expected_revision()) view.expected_revision = c->expected_revision();
  view.compact_through = c->compact_through();
  view.actor = View(c->actor());
  view.time_unix_micros = c->time_unix_micros();
  if (view.kind != Command::Kind::kCompactHistory) {
    CONFMAN_RETURN_IF_ERROR(CheckAddress(view.ns, view.key));
    view.client_id = c->client_id();
    view.sequence = c->sequence();
    view.lowest_unanswered = c->lowest_unanswered();
    if (view.client_id != 0 && view.sequence == 0) {
      return absl::InvalidArgumentError(
          "the command names a client session with sequence 0");
    }
  }
  if (view.content_type.size() > kMaxContentTypeBytes) {
    return absl::InvalidArgumentError("the command's content type is too long");
  }
  if (view.encoding == ValueEncoding::kRaw &&
      view.raw_size != view.stored_value.size()) {
    return absl::InvalidArgumentError(
        "the command's raw_size disagrees with its uncompressed value");
  }
  return view;
}

[[nodiscard]] absl::StatusOr<std::string> DecodeValue(std::string_view stored,
                                        ValueEncoding encoding,
                                        uint64_t raw_size) {
  if (encoding == ValueEncoding::kRaw) return std::string(stored);
  std::string out(raw_size, '\0');
  const size_t size =
      ZSTD_decompress(out.data(), out.size(), stored.data(), stored.size());
  if (ZSTD_isError(size) || size != raw_size) {
    return absl::DataLossError(absl::StrCat(
        "a stored value does not decompress to its recorded ", raw_size,
        " bytes (", ZSTD_isError(size) ? ZSTD_getErrorName(size) : "size mismatch",
        "); the store is damaged: restore it from a peer snapshot"));
  }
  return out;
}

}  // namespace confman::kv
