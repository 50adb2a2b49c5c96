// The values a fault run writes. Each is unique and identified by a short
// tag ("c<client>.<seq>.<bytes>") at its start; the rest is filler derived
// from the tag alone. The history records only tags, so a run that writes
// a thousand 1 MiB values does not hold a gigabyte of history, and a value
// read back is still checked byte for byte.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace confman::fault {

// The tag of the `seq`-th value of `client`, `bytes` long.
std::string ValueTag(int client, uint64_t seq, size_t bytes);

// The full value for `tag` (as ValueTag made it). Even sequence numbers get
// compressible filler, odd ones random bytes, so both the compressed and
// the raw storage paths run. At least the tag plus one separator long.
std::string MakeValue(std::string_view tag);

// The tag a value read back carries, if its bytes are exactly MakeValue of
// that tag; otherwise "corrupt:" followed by a description, which matches
// no write.
std::string TagOfStoredValue(std::string_view bytes);

}  // namespace confman::fault
