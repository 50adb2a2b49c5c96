// CRC32C: known checksums, and the hardware path (three streams joined for
// long inputs) against the table, across lengths around every block edge
// and inputs checksummed in pieces.
#include "crc32c.h"

#include <catch2/catch.hpp>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>

namespace confman::storage {
namespace {

std::string RandomBytes(size_t n, std::mt19937_64& rng) {
  std::string bytes(n, '\0');
  for (char& c : bytes) c = static_cast<char>(rng());
  return bytes;
}

TEST_CASE("CRC32C gives the published check values") {
  // RFC 3720 (iSCSI), appendix B.4, and the catalogue's "123456789".
  CHECK(Crc32c("123456789") == 0xE3069283u);
  CHECK(Crc32c(std::string(32, '\0')) == 0x8A9136AAu);
  CHECK(Crc32c(std::string(32, '\xff')) == 0x62A8AB43u);
  std::string ascending(32, '\0');
  for (int i = 0; i < 32; ++i) ascending[i] = static_cast<char>(i);
  CHECK(Crc32c(ascending) == 0x46DD794Eu);
  CHECK(Crc32c("") == 0u);
  CHECK(Crc32cExtendPortable(0, "123456789") == 0xE3069283u);
}

TEST_CASE(
    "CRC32C agrees with the table at every length around the block edges") {
  std::mt19937_64 rng(7);
  const std::string data = RandomBytes(5 * 3072 + 64, rng);
  for (size_t n = 0; n <= data.size(); ++n) {
    // Every length up to a few rounds of three 1 KiB streams, with an
    // unaligned start as well as an aligned one.
    const std::string_view aligned(data.data(), n);
    INFO("length " << n);
    REQUIRE(Crc32c(aligned) == Crc32cExtendPortable(0, aligned));
    if (n + 3 <= data.size()) {
      const std::string_view shifted(data.data() + 3, n);
      REQUIRE(Crc32c(shifted) == Crc32cExtendPortable(0, shifted));
    }
  }
}

TEST_CASE("CRC32C of a large input equals the table's, whole or in pieces") {
  std::mt19937_64 rng(11);
  const std::string data = RandomBytes((1u << 20) + 13, rng);
  const uint32_t whole = Crc32cExtendPortable(0, data);
  CHECK(Crc32c(data) == whole);
  for (int trial = 0; trial < 20; ++trial) {
    const size_t cut = rng() % data.size();
    const uint32_t first = Crc32c(std::string_view(data).substr(0, cut));
    CHECK(Crc32cExtend(first, std::string_view(data).substr(cut)) == whole);
  }
  // A changed bit anywhere changes the checksum.
  std::string flipped = data;
  flipped[data.size() / 2] ^= 0x10;
  CHECK(Crc32c(flipped) != whole);
}

}  // namespace
}  // namespace confman::storage
