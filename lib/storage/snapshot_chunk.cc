// SnapshotChunkChecksum (state_machine.h): CRC32C over a chunk's sequence
// number, last flag and data, so a reordered or truncated stream fails too.
#include "common/bytes.h"
#include "confman/state_machine.h"
#include "crc32c.h"

namespace confman {

uint32_t SnapshotChunkChecksum(uint64_t seq, bool last,
                               const std::string& data) {
  char head[9];
  common::PutBigEndian64(head, seq);
  head[8] = last ? 1 : 0;
  return storage::Crc32cExtend(storage::Crc32c(std::string_view(head, 9)),
                               data);
}

}  // namespace confman
