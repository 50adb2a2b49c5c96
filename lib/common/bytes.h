// Fixed-width integer encodings: the one place confman turns integers into
// bytes and back.
//
// Big-endian for what confman stores: keys must sort numerically under
// LMDB's default byte-wise comparison (and MDB_APPEND works on ascending
// indexes); records use the same helpers so the files have one byte order.
// Little-endian for what travels between members outside FlatBuffers (the
// frame length prefix, a forwarded write's answer, a ReadIndex request id),
// matching FlatBuffers' own byte order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

#include "absl/strings/string_view.h"

namespace confman::common {

template <typename T>
void PutBigEndian(char* out, T v) {
  for (int i = static_cast<int>(sizeof(T)) - 1; i >= 0; --i) {
    out[i] = static_cast<char>(v & 0xFFu);
    v >>= 8;
  }
}

template <typename T>
T GetBigEndian(const char* in) {
  T v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) {
    v = static_cast<T>((v << 8) | static_cast<unsigned char>(in[i]));
  }
  return v;
}

inline void PutBigEndian64(char* out, uint64_t v) { PutBigEndian(out, v); }
inline uint64_t GetBigEndian64(const char* in) {
  return GetBigEndian<uint64_t>(in);
}
inline void PutBigEndian32(char* out, uint32_t v) { PutBigEndian(out, v); }
inline uint32_t GetBigEndian32(const char* in) {
  return GetBigEndian<uint32_t>(in);
}

inline std::string BigEndianKey(uint64_t v) {
  std::string key(8, '\0');
  PutBigEndian64(key.data(), v);
  return key;
}

template <typename T>
void PutLittleEndian(unsigned char* out, T v) {
  static_assert(std::is_unsigned_v<T>);
  for (size_t i = 0; i < sizeof(T); ++i) {
    out[i] = static_cast<unsigned char>(v & 0xFFu);
    v = static_cast<T>(v >> 8);
  }
}
template <typename T>
void PutLittleEndian(char* out, T v) {
  PutLittleEndian(reinterpret_cast<unsigned char*>(out), v);
}

template <typename T>
T GetLittleEndian(const unsigned char* in) {
  static_assert(std::is_unsigned_v<T>);
  T v = 0;
  for (size_t i = sizeof(T); i > 0; --i) {
    v = static_cast<T>((v << 8) | in[i - 1]);
  }
  return v;
}
template <typename T>
T GetLittleEndian(const char* in) {
  return GetLittleEndian<T>(reinterpret_cast<const unsigned char*>(in));
}

inline void AppendLittleEndian64(std::string& out, uint64_t v) {
  char buf[8];
  PutLittleEndian(buf, v);
  out.append(buf, 8);
}
inline uint64_t GetLittleEndian64(const char* in) {
  return GetLittleEndian<uint64_t>(in);
}

// Appends to a growing record.
inline void AppendU64(std::string& out, uint64_t v) {
  char buf[8];
  PutBigEndian64(buf, v);
  out.append(buf, 8);
}
inline void AppendU32(std::string& out, uint32_t v) {
  char buf[4];
  PutBigEndian32(buf, v);
  out.append(buf, 4);
}
// A length-prefixed byte string.
inline void AppendBytes(std::string& out, std::string_view bytes) {
  AppendU32(out, static_cast<uint32_t>(bytes.size()));
  out.append(bytes);
}

// Reads a record written with the Append* helpers. Every read checks the
// remaining length; `ok()` turns false on the first short read and stays so,
// which lets callers decode a whole record and check once.
class RecordReader {
 public:
  explicit RecordReader(std::string_view data) : rest_(data) {}

  uint64_t U64() { return Fixed<uint64_t, 8>(&GetBigEndian64); }
  uint32_t U32() { return Fixed<uint32_t, 4>(&GetBigEndian32); }
  uint8_t U8() {
    if (!Take(1)) return 0;
    return static_cast<uint8_t>(taken_[0]);
  }
  std::string_view Bytes() {
    const uint32_t size = U32();
    if (!Take(size)) return {};
    return taken_;
  }
  std::string_view Rest() {
    std::string_view rest = rest_;
    rest_ = {};
    return rest;
  }

  bool ok() const { return ok_; }
  bool done() const { return ok_ && rest_.empty(); }

 private:
  template <typename T, size_t N>
  T Fixed(T (*get)(const char*)) {
    if (!Take(N)) return 0;
    return get(taken_.data());
  }
  bool Take(size_t n) {
    if (!ok_ || rest_.size() < n) {
      ok_ = false;
      return false;
    }
    taken_ = rest_.substr(0, n);
    rest_.remove_prefix(n);
    return true;
  }

  std::string_view rest_;
  std::string_view taken_;
  bool ok_ = true;
};

}  // namespace confman::common

namespace confman::common {

// Debian's Abseil has its own string_view type; StrCat needs it.
inline absl::string_view ToAbsl(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

}  // namespace confman::common
