// CRC32C (Castagnoli), the checksum on every stored log entry and snapshot
// chunk. Uses the SSE4.2 instruction when the CPU has it, a table otherwise;
// both give identical results.
#pragma once

#include <cstdint>
#include <string_view>

namespace confman::storage {

// Extends `crc` (the value returned for the preceding bytes; 0 to start)
// over `data`.
uint32_t Crc32cExtend(uint32_t crc, std::string_view data);

inline uint32_t Crc32c(std::string_view data) { return Crc32cExtend(0, data); }

// The table version Crc32cExtend falls back to without SSE4.2; tests hold
// the two against each other.
uint32_t Crc32cExtendPortable(uint32_t crc, std::string_view data);

}  // namespace confman::storage
