// The config model's value types: what a read returns and what a change
// records. Plain aggregates; see kv_state_machine.h for the operations.
//
// Namespaces hold keys. A value is bytes with a content type. Every change
// (put or delete) gets the next cluster-wide revision, a number that only
// grows; each key remembers the revision that created it and the one that
// last modified it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace confman::kv {

// Size limits, enforced where a command is encoded and again where it is
// applied. A namespace and key together form one LMDB key (at most 511
// bytes), which is why they are bounded.
inline constexpr size_t kMaxNamespaceBytes = 64;
inline constexpr size_t kMaxKeyBytes = 400;
inline constexpr size_t kMaxContentTypeBytes = 128;

struct KeyValue {
  std::string ns = {};
  std::string key = {};
  std::string value = {};         // Decompressed; empty for keys-only listings.
  std::string content_type = {};  // As given by the writer, e.g. "application/json".
  uint64_t create_revision = 0;  // Revision of the put that created the key.
  uint64_t mod_revision = 0;     // Revision of the latest put.
  uint64_t version = 0;          // Puts since creation: 1 for a new key.
  uint64_t stored_bytes = 0;     // Size as stored (compressed, if it was).
};

enum class ChangeOp : uint8_t { kPut = 0, kDelete = 1 };

// One change: the watch history entry and the audit record at once.
struct Change {
  uint64_t revision = 0;  // The change's own revision.
  ChangeOp op = ChangeOp::kPut;
  std::string ns = {};
  std::string key = {};
  uint64_t old_revision = 0;  // The key's mod_revision before; 0 if absent.
  uint64_t new_revision = 0;  // Its mod_revision after; 0 after a delete.
  std::string actor = {};          // Who proposed it (stamped by the proposer).
  int64_t time_unix_micros = 0;  // When it was proposed (proposer's clock).
};

// A page of keys in one namespace, in key order.
struct ListRequest {
  std::string ns = {};          // Required.
  std::string prefix = {};      // Only keys starting with this; empty for all.
  std::string start_after = {};  // Resume after this key (a page's next_start_after).
  uint32_t limit = 100;    // Keys per page, 1..10000.
  // Stops the page early once values reach this many (decompressed) bytes;
  // a page always holds at least one key.
  uint64_t max_bytes = uint64_t{4} << 20;
  bool keys_only = false;  // Leave values out (metadata only).
};

struct ListPage {
  std::vector<KeyValue> items = {};
  bool more = false;             // More keys match after this page.
  std::string next_start_after = {};  // Pass as start_after for the next page.
  uint64_t revision = 0;         // The store's revision the page was read at.
};

// Changes after a revision, oldest first.
struct ChangePage {
  std::vector<Change> changes = {};
  // The store's revision the page was read at. Resume with
  // after_revision = changes.back().revision (or this when empty).
  uint64_t revision = 0;
  // Changes at or below this revision were compacted away.
  uint64_t compacted_through = 0;
};

}  // namespace confman::kv
