// The record of a fault run: every client operation with its invoke and
// complete times and what the caller was told, plus every watch stream.
// The fault harness writes it; the linearizability checker reads it.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace confman::fault {

// Nanoseconds on one steady clock, from the start of the run.
using Nanos = int64_t;
inline constexpr Nanos kNever = std::numeric_limits<Nanos>::max();

enum class OpType : uint8_t { kGet, kPut, kDelete, kCompareAndSet };

// What the caller learned. kFailed means certainly not applied (the op is
// then ignored by the checker); kUnknown means it may or may not have taken
// effect, at any moment after its invocation.
enum class Outcome : uint8_t { kOk, kFailed, kUnknown };

enum class ReadKind : uint8_t { kLinearizable, kLease, kLocal };

struct Operation {
  uint64_t id = 0;      // Unique within the history.
  int client = 0;       // A client issues one operation at a time.
  uint64_t member = 0;  // The member it was sent to.
  OpType type = OpType::kGet;
  std::string key{};
  // kPut / kCompareAndSet: the value written, unique within the history so
  // a read identifies the write it sees. kGet with outcome kOk and found:
  // the value read.
  std::string value{};
  uint64_t expected_revision = 0;  // kCompareAndSet: 0 = create only.
  ReadKind read = ReadKind::kLinearizable;  // kGet only.
  Nanos invoke = 0;
  Nanos complete = kNever;  // kNever while unknown.
  Outcome outcome = Outcome::kUnknown;
  // With outcome kOk:
  //   kGet: found, and when found value + revision (the key's mod_revision).
  //   kPut, kCompareAndSet applied, kDelete applied: revision assigned.
  //   kDelete of an absent key: found = false (nothing changed).
  //   kCompareAndSet that saw another revision: cas_mismatch = true
  //     (nothing changed; it observed that the key's revision differed).
  bool found = true;
  bool cas_mismatch = false;
  uint64_t revision = 0;
};

// One change delivered to a watcher, as delivered.
struct WatchEvent {
  uint64_t revision = 0;
  bool is_delete = false;
  std::string key{};
  // kv::Change carries no value, so the harness leaves this empty; a
  // checker matches events to writes by revision, key and kind.
  std::string value{};
};

// One watch stream: changes under `prefix` after `after_revision`, in the
// order the callback received them, until it ended (cancel, crash, error).
struct WatchStream {
  int watcher = 0;
  uint64_t member = 0;
  std::string prefix{};
  uint64_t after_revision = 0;
  std::vector<WatchEvent> events{};
};

struct History {
  std::vector<Operation> operations{};
  std::vector<WatchStream> watches{};
};

}  // namespace confman::fault
