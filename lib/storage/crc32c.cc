// CRC32C (crc32c.h): the SSE4.2 instruction when the CPU has it (asked
// once), a byte-at-a-time table otherwise; both give the same checksums.
//
// The instruction takes three cycles before its result can feed the next
// one but can start one every cycle, so one dependent chain leaves two
// thirds of it idle. Long inputs are therefore checksummed as three
// independent streams over adjacent blocks, and the three registers are
// joined afterwards. The register is linear over GF(2): running it over
// A then B from state s gives (s shifted past |B| bytes) xor (B run from
// 0), and "shifted past n bytes" is a multiplication by x^(8n) modulo the
// polynomial. That join costs two multiplications per three blocks.
#include "crc32c.h"

#include <array>
#include <cstring>

namespace confman::storage {
namespace {

constexpr uint32_t kPolynomial = 0x82F63B78u;  // Reflected Castagnoli.

constexpr std::array<uint32_t, 256> MakeTable() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t crc = i;
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc >> 1) ^ ((crc & 1u) ? kPolynomial : 0u);
    }
    table[i] = crc;
  }
  return table;
}

constexpr std::array<uint32_t, 256> kTable = MakeTable();

uint32_t ExtendPortable(uint32_t crc, const unsigned char* p, size_t n) {
  for (size_t i = 0; i < n; ++i)
    crc = kTable[(crc ^ p[i]) & 0xFFu] ^ (crc >> 8);
  return crc;
}

// Polynomials below are 32-bit words in the reflected order CRC32C uses:
// bit 31 holds the coefficient of x^0 and bit 0 that of x^31, so
// multiplying by x is a right shift, reduced when x^32 appears.
constexpr uint32_t kOne = 0x80000000u;

constexpr uint32_t TimesX(uint32_t a) {
  return (a & 1u) ? (a >> 1) ^ kPolynomial : a >> 1;
}

// a * b modulo the polynomial.
constexpr uint32_t MultiplyModP(uint32_t a, uint32_t b) {
  uint32_t product = 0;
  for (int degree = 0; degree < 32; ++degree) {
    if (a & (kOne >> degree)) product ^= b;
    b = TimesX(b);
  }
  return product;
}

// x^(8 * bytes) modulo the polynomial, by repeated squaring.
constexpr uint32_t ShiftFactor(uint64_t bytes) {
  uint32_t result = kOne;
  uint32_t square = kOne >> 8;  // x^8: one byte.
  for (; bytes != 0; bytes >>= 1) {
    if (bytes & 1u) result = MultiplyModP(result, square);
    square = MultiplyModP(square, square);
  }
  return result;
}

// Each of the three streams covers this many bytes per round: long enough
// that the join is noise, short enough that inputs of a few pages use it.
constexpr size_t kStreamBytes = 1024;
constexpr uint32_t kShiftOneStream = ShiftFactor(kStreamBytes);
constexpr uint32_t kShiftTwoStreams = ShiftFactor(2 * kStreamBytes);

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) inline uint64_t Word(uint64_t c,
                                                       const unsigned char* p) {
  uint64_t word;
  std::memcpy(&word, p, 8);
  return __builtin_ia32_crc32di(c, word);
}

__attribute__((target("sse4.2"))) uint32_t ExtendHardware(
    uint32_t crc, const unsigned char* p, size_t n) {
  uint64_t c = crc;
  for (; n >= 3 * kStreamBytes; n -= 3 * kStreamBytes, p += 3 * kStreamBytes) {
    uint64_t c1 = 0;
    uint64_t c2 = 0;
    for (size_t i = 0; i < kStreamBytes; i += 8) {
      c = Word(c, p + i);
      c1 = Word(c1, p + kStreamBytes + i);
      c2 = Word(c2, p + 2 * kStreamBytes + i);
    }
    c = MultiplyModP(static_cast<uint32_t>(c), kShiftTwoStreams) ^
        MultiplyModP(static_cast<uint32_t>(c1), kShiftOneStream) ^
        static_cast<uint32_t>(c2);
  }
  for (; n >= 8; n -= 8, p += 8) c = Word(c, p);
  uint32_t c32 = static_cast<uint32_t>(c);
  for (; n > 0; --n, ++p) c32 = __builtin_ia32_crc32qi(c32, *p);
  return c32;
}

bool HasHardwareCrc() {
  static const bool has = __builtin_cpu_supports("sse4.2");
  return has;
}
#endif

}  // namespace

uint32_t Crc32cExtend(uint32_t crc, std::string_view data) {
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  crc = ~crc;
#if defined(__x86_64__)
  if (HasHardwareCrc()) return ~ExtendHardware(crc, p, data.size());
#endif
  return ~ExtendPortable(crc, p, data.size());
}

uint32_t Crc32cExtendPortable(uint32_t crc, std::string_view data) {
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  return ~ExtendPortable(~crc, p, data.size());
}

}  // namespace confman::storage
