// The fixed-width integer encodings (lib/common/bytes.h): the byte layouts
// the wire and the stores depend on, pinned so that a change to the helpers
// cannot silently change a format.
#include "common/bytes.h"

#include <catch2/catch.hpp>
#include <string>

#include "wire_codec.h"

namespace confman::common {
namespace {

TEST_CASE("little-endian puts the lowest byte first", "[bytes]") {
  unsigned char four[4] = {};
  PutLittleEndian(four, uint32_t{0x01020304});
  CHECK(four[0] == 0x04);
  CHECK(four[3] == 0x01);
  CHECK(GetLittleEndian<uint32_t>(four) == 0x01020304u);

  std::string eight;
  AppendLittleEndian64(eight, 0x0102030405060708);
  CHECK(eight == std::string("\x08\x07\x06\x05\x04\x03\x02\x01", 8));
  CHECK(GetLittleEndian64(eight.data()) == 0x0102030405060708u);
  // Bytes above 0x7f must not sign-extend into the higher ones.
  AppendLittleEndian64(eight, ~uint64_t{0} - 1);
  CHECK(GetLittleEndian64(eight.data() + 8) == ~uint64_t{0} - 1);
}

TEST_CASE("big-endian, for sorted keys, puts the highest byte first",
          "[bytes]") {
  CHECK(BigEndianKey(0x0102030405060708) ==
        std::string("\x01\x02\x03\x04\x05\x06\x07\x08", 8));
  CHECK(BigEndianKey(255) < BigEndianKey(256));
  CHECK(GetBigEndian64(BigEndianKey(0xfedcba9876543210).data()) ==
        0xfedcba9876543210u);
}

TEST_CASE("a frame's length prefix is the body size, little-endian",
          "[bytes]") {
  const wire::EncodedFrame frame = wire::EncodeProof({std::string(32, 'm')});
  const std::string bytes = frame.ToString();
  CHECK(GetLittleEndian<uint32_t>(bytes.data()) == frame.body_size());
  CHECK(wire::ParseFrameLength(frame.header(), 1u << 20).value() ==
        frame.body_size());
}

}  // namespace
}  // namespace confman::common
