// Shared helpers for the config state machine tests.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "confman/kv/command.h"
#include "confman/kv/kv_state_machine.h"
#include "test_dir.h"

namespace confman::kv::testing {

inline raft::Entry CommandEntry(raft::Index index, const Command& command,
                                std::string actor = "tester",
                                int64_t time = 1700000000000000) {
  auto bytes = EncodeCommand(command, actor, time);
  REQUIRE(bytes.ok());
  return raft::Entry{.term = 1, .index = index, .type = raft::EntryType::kNormal,
                     .data = *std::move(bytes)};
}

inline Command Put(std::string ns, std::string key, std::string value,
                   std::optional<uint64_t> expected = std::nullopt) {
  Command c;
  c.kind = Command::Kind::kPut;
  c.ns = std::move(ns);
  c.key = std::move(key);
  c.value = std::move(value);
  c.content_type = "text/plain";
  c.expected_revision = expected;
  return c;
}

inline Command Delete(std::string ns, std::string key,
                      std::optional<uint64_t> expected = std::nullopt) {
  Command c;
  c.kind = Command::Kind::kDelete;
  c.ns = std::move(ns);
  c.key = std::move(key);
  c.expected_revision = expected;
  return c;
}

struct MemoryMachine {
  static constexpr bool kDurable = false;
  KvStateMachineOptions options;
  std::unique_ptr<KvStateMachine> Open() {
    auto sm = KvStateMachine::CreateInMemory(options);
    REQUIRE(sm.ok());
    return *std::move(sm);
  }
};

struct LmdbMachine {
  static constexpr bool kDurable = true;
  confman::testing::TempDir dir;
  KvStateMachineOptions options;
  std::unique_ptr<KvStateMachine> Open() {
    options.dir = dir.path() + "/state";
    auto sm = KvStateMachine::OpenLmdb(options);
    REQUIRE(sm.ok());
    return *std::move(sm);
  }
};

// Deterministic incompressible bytes (zstd cannot shrink them).
inline std::string NoiseBytes(size_t size, uint64_t seed) {
  std::string out(size, '\0');
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (char& c : out) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c = static_cast<char>(x);
  }
  return out;
}

// Applies `entries` and returns the results, requiring storage success.
inline std::vector<ApplyResult> MustApply(StateMachine& sm,
                                          std::vector<raft::Entry> entries) {
  auto results = sm.Apply(std::move(entries));
  REQUIRE(results.ok());
  return *std::move(results);
}

// Streams a whole snapshot into `sink`.
inline absl::Status Transfer(SnapshotSource& source, SnapshotSink& sink) {
  while (true) {
    auto chunk = source.NextChunk();
    if (!chunk.ok()) return chunk.status();
    if (absl::Status s = sink.Write(*chunk); !s.ok()) return s;
    if (chunk->last) return sink.Commit();
  }
}

}  // namespace confman::kv::testing
