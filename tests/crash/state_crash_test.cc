// Kills a process applying config commands to the LMDB state machine with
// SIGKILL at random points and checks after every kill that the applied
// index and the data moved together: exactly the commands through the
// applied index took effect (a restart never re-applies or skips one), and
// every batch whose Apply returned before the kill is included.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <random>

#include "confman/kv/command.h"
#include "confman/kv/kv_state_machine.h"
#include "kill_child.h"
#include "test_dir.h"

namespace confman::kv {
namespace {

constexpr int kKills = 100;
constexpr uint64_t kKeys = 20;

std::string KeyFor(raft::Index index) {
  return "k" + std::to_string(index % kKeys);
}
std::string ValueFor(raft::Index index) {
  return "value-" + std::to_string(index) + std::string(index % 3000, 'v');
}

raft::Entry PutEntry(raft::Index index) {
  Command command;
  command.ns = "crash";
  command.key = KeyFor(index);
  command.value = ValueFor(index);
  auto bytes = EncodeCommand(command, "crash", static_cast<int64_t>(index));
  if (!bytes.ok()) _exit(7);
  return raft::Entry{.term = 1,
                     .index = index,
                     .type = raft::EntryType::kNormal,
                     .data = *std::move(bytes)};
}

[[noreturn]] void RunChild(const std::string& dir, int ack_fd, uint64_t seed) {
  auto opened = KvStateMachine::OpenLmdb({.dir = dir});
  if (!opened.ok()) _exit(2);
  std::unique_ptr<KvStateMachine> sm = *std::move(opened);
  std::mt19937_64 rng(seed);
  raft::Index next = sm->AppliedIndex() + 1;
  const char ready = 'R';
  if (write(ack_fd, &ready, 1) != 1) _exit(3);
  while (true) {
    std::vector<raft::Entry> batch;
    const uint64_t size = 1 + rng() % 16;
    for (uint64_t i = 0; i < size; ++i) batch.push_back(PutEntry(next++));
    if (!sm->Apply(std::move(batch)).ok()) _exit(4);
    const raft::Index applied = next - 1;
    if (write(ack_fd, &applied, sizeof applied) != sizeof applied) _exit(5);
  }
}

raft::Index LastAck(const std::string& reported) {
  REQUIRE(reported.size() % sizeof(raft::Index) == 0);
  raft::Index last = 0;
  if (!reported.empty()) {
    std::memcpy(&last, reported.data() + reported.size() - sizeof last,
                sizeof last);
  }
  return last;
}

void CheckState(const std::string& dir, raft::Index acked) {
  auto sm = KvStateMachine::OpenLmdb({.dir = dir}).value();
  const raft::Index applied = sm->AppliedIndex();
  INFO("applied " << applied << ", acknowledged " << acked);
  REQUIRE(applied >= acked);
  REQUIRE(sm->Revision() == applied);  // One revision per applied put.
  for (raft::Index residue = 0; residue < kKeys; ++residue) {
    // The newest index <= applied that wrote this residue's key.
    if (applied < residue) continue;
    const raft::Index last = applied - ((applied - residue) % kKeys);
    if (last == 0) continue;
    auto kv = sm->Get("crash", KeyFor(last));
    REQUIRE(kv.ok());
    REQUIRE(kv->value == ValueFor(last));
    REQUIRE(kv->mod_revision == last);
  }
  if (applied == 0) return;
  const ChangePage page =
      sm->Changes(applied > 5 ? applied - 5 : 0, 10).value();
  REQUIRE(!page.changes.empty());
  REQUIRE(page.changes.back().revision == applied);
  REQUIRE(page.changes.back().time_unix_micros ==
          static_cast<int64_t>(applied));
}

TEST_CASE("the LMDB state machine survives SIGKILL at random points",
          "[crash]") {
  confman::testing::TempDir root;
  const std::string dir = root.path() + "/state";
  std::mt19937_64 rng(Catch::rngSeed() + 2);
  for (int kill_count = 0; kill_count < kKills; ++kill_count) {
    const uint64_t child_seed = rng();
    const raft::Index acked = LastAck(testing::RunUntilKilled(
        rng, [&](int fd) { RunChild(dir, fd, child_seed); }));
    CheckState(dir, acked);
  }
}

}  // namespace
}  // namespace confman::kv
