#include "fault_values.h"

#include <algorithm>
#include <charconv>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace confman::fault {
namespace {

constexpr char kSeparator = '|';
// A tag is far shorter; anything longer is not one of ours.
constexpr size_t kMaxTagBytes = 64;

struct ParsedTag {
  uint64_t seq = 0;
  size_t bytes = 0;
};

bool ParseNumber(std::string_view& text, uint64_t& out) {
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, out);
  if (ec != std::errc() || ptr == text.data()) return false;
  text.remove_prefix(static_cast<size_t>(ptr - text.data()));
  return true;
}

bool ParseTag(std::string_view tag, ParsedTag& parsed) {
  uint64_t client = 0;
  uint64_t bytes = 0;
  if (tag.empty() || tag.front() != 'c') return false;
  tag.remove_prefix(1);
  if (!ParseNumber(tag, client) || tag.empty() || tag.front() != '.')
    return false;
  tag.remove_prefix(1);
  if (!ParseNumber(tag, parsed.seq) || tag.empty() || tag.front() != '.')
    return false;
  tag.remove_prefix(1);
  if (!ParseNumber(tag, bytes) || !tag.empty()) return false;
  parsed.bytes = static_cast<size_t>(bytes);
  return true;
}

// Debian's Abseil has its own string_view, which StrCat takes.
absl::string_view ToAbsl(std::string_view text) {
  return absl::string_view(text.data(), text.size());
}

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t Fnv1a(std::string_view text) {
  uint64_t hash = 1469598103934665603ull;
  for (unsigned char c : text) hash = (hash ^ c) * 1099511628211ull;
  return hash;
}

void FillAfterTag(std::string_view tag, uint64_t seq, std::string& value) {
  const size_t start = tag.size() + 1;
  if (seq % 2 == 0) {
    // Text that repeats every few dozen bytes: zstd shrinks it a lot.
    const std::string unit = absl::StrCat(ToAbsl(tag), "-filler;");
    for (size_t i = start; i < value.size(); ++i) {
      value[i] = unit[(i - start) % unit.size()];
    }
    return;
  }
  uint64_t state = Fnv1a(tag);
  size_t i = start;
  for (; i + 8 <= value.size(); i += 8) {
    const uint64_t word = SplitMix64(state);
    std::memcpy(&value[i], &word, 8);
  }
  for (uint64_t word = SplitMix64(state); i < value.size(); ++i, word >>= 8) {
    value[i] = static_cast<char>(word);
  }
}

}  // namespace

std::string ValueTag(int client, uint64_t seq, size_t bytes) {
  return absl::StrCat("c", client, ".", seq, ".", bytes);
}

std::string MakeValue(std::string_view tag) {
  ParsedTag parsed;
  if (!ParseTag(tag, parsed)) return std::string(tag);
  std::string value(std::max(parsed.bytes, tag.size() + 1), '\0');
  std::memcpy(value.data(), tag.data(), tag.size());
  value[tag.size()] = kSeparator;
  FillAfterTag(tag, parsed.seq, value);
  return value;
}

std::string TagOfStoredValue(std::string_view bytes) {
  const size_t separator = bytes.substr(0, kMaxTagBytes).find(kSeparator);
  if (separator == std::string_view::npos) {
    return absl::StrCat("corrupt:no tag in ", bytes.size(), " bytes");
  }
  const std::string_view tag = bytes.substr(0, separator);
  ParsedTag parsed;
  if (!ParseTag(tag, parsed)) {
    return absl::StrCat("corrupt:bad tag '", ToAbsl(tag), "'");
  }
  if (MakeValue(tag) != bytes) {
    return absl::StrCat("corrupt:", ToAbsl(tag), " read back as ", bytes.size(),
                        " different bytes");
  }
  return std::string(tag);
}

}  // namespace confman::fault
