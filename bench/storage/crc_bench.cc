// How fast the entry checksum runs: CRC32C over one buffer of --bytes
// (default 1 MiB), repeated for about --seconds (default 1). Prints GB/s
// and ends with one JSON line.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "crc32c.h"

int main(int argc, char** argv) {
  size_t bytes = size_t{1} << 20;
  double seconds = 1.0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--bytes") == 0) {
      bytes = std::strtoull(argv[i + 1], nullptr, 10);
    } else if (std::strcmp(argv[i], "--seconds") == 0) {
      seconds = std::strtod(argv[i + 1], nullptr);
    } else {
      std::fprintf(stderr,
                   "usage: confman_bench_crc [--bytes N] [--seconds S]\n");
      return 2;
    }
  }
  std::string data(bytes, '\0');
  for (size_t i = 0; i < bytes; ++i) data[i] = static_cast<char>(i * 131 + 7);
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration<double>(seconds);
  uint64_t rounds = 0;
  uint64_t sink = 0;  // Printed, so the checksums cannot be optimised away.
  while (Clock::now() < deadline && rounds < 10'000'000) {
    sink = sink * 31 + confman::storage::Crc32c(data);
    ++rounds;
  }
  const double elapsed =
      std::chrono::duration<double>(Clock::now() - start).count();
  const double gb_per_s = static_cast<double>(rounds * bytes) / elapsed / 1e9;
  const double us_per_buffer = elapsed * 1e6 / static_cast<double>(rounds);
  std::printf("crc32c over %zu bytes: %.2f GB/s, %.1f us per buffer\n", bytes,
              gb_per_s, us_per_buffer);
  std::printf(
      "{\"bench\":\"crc32c\",\"bytes\":%zu,\"gb_per_s\":%.2f,"
      "\"us_per_buffer\":%.2f,\"check\":%llu}\n",
      bytes, gb_per_s, us_per_buffer,
      static_cast<unsigned long long>(sink % 1000));
  return 0;
}
