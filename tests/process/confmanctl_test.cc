// confmanctl against a cluster of real confman-node processes: every
// command, its output formats and its exit codes (0 ok, 2 usage, 3
// revision mismatch, 4 not found, 5 unavailable, 6 outcome unknown), a
// watch that runs a command per change across a kill -9 of the member it
// streams from, and a learner added, caught up and promoted.
#include <signal.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "process_cluster.h"

namespace confman::process_test {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

std::unique_ptr<ProcessCluster> StartCluster(ProcessClusterOptions options = {}) {
  auto cluster = ProcessCluster::Start(std::move(options));
  if (!cluster.ok()) FAIL(cluster.status().ToString());
  return std::move(*cluster);
}

// confmanctl with `args` after the global --endpoints.
CommandResult Ctl(const std::string& endpoints, std::vector<std::string> args, const std::string& input = {},
                  std::chrono::milliseconds timeout = std::chrono::milliseconds(60000)) {
  std::vector<std::string> argv = {CtlBinary(), "--endpoints", endpoints};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, {}, input, timeout);
}

// Runs `result` once (it is usually the command itself).
#define CHECK_EXIT(result, code)                                     \
  do {                                                               \
    const CommandResult& checked_ = (result);                        \
    INFO("stdout: " << checked_.out << "\nstderr: " << checked_.err); \
    CHECK(checked_.exit_code == (code));                             \
  } while (false)

json LastJsonLine(const std::string& out) {
  std::vector<std::string> lines = absl::StrSplit(out, '\n', absl::SkipEmpty());
  if (lines.empty()) FAIL("no output");
  json j = json::parse(lines.back(), nullptr, false);
  if (j.is_discarded()) FAIL("not JSON: " << lines.back());
  return j;
}

std::string ReadAll(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

size_t Lines(const std::string& text) { return static_cast<size_t>(std::count(text.begin(), text.end(), '\n')); }

std::string DeadEndpoint() {
  auto port = FreePort();
  REQUIRE(port.ok());
  return absl::StrCat("http://127.0.0.1:", *port);
}

TEST_CASE("confmanctl: keys, values, listing, audit, formats and exit codes") {
  auto cluster = StartCluster();
  const std::string eps = cluster->endpoints();

  CommandResult put = Ctl(eps, {"put", "app", "db/url", "postgres://db", "--actor", "alice"});
  CHECK_EXIT(put, 0);
  CHECK(put.out.rfind("OK revision=", 0) == 0);

  // stdin with '-' and with no value; the content type is kept.
  CHECK_EXIT(Ctl(eps, {"put", "app", "blob", "-", "--content-type", "application/x-test"}, std::string("a\0b\n", 4)),
             0);
  CHECK_EXIT(Ctl(eps, {"-n", "app", "put", "from-stdin"}, "piped"), 0);

  CommandResult get = Ctl(eps, {"get", "app", "db/url"});
  CHECK_EXIT(get, 0);
  CHECK(get.out == "postgres://db\n");
  CommandResult raw = Ctl(eps, {"get", "app", "blob", "--raw"});
  CHECK_EXIT(raw, 0);
  CHECK(raw.out == std::string("a\0b\n", 4));
  CHECK(Ctl(eps, {"-n", "app", "get", "from-stdin", "--consistency", "local"}).out == "piped\n");

  CommandResult get_json = Ctl(eps, {"-w", "json", "get", "app", "db/url"});
  CHECK_EXIT(get_json, 0);
  json item = LastJsonLine(get_json.out);
  CHECK(item["value"] == "postgres://db");
  const uint64_t mod = item["mod_revision"].get<uint64_t>();
  CHECK(mod > 0);
  CommandResult get_table = Ctl(eps, {"-w", "table", "get", "app", "db/url"});
  CHECK(get_table.out.find("| db/url ") != std::string::npos);
  CHECK(get_table.out.find("MOD-REV") != std::string::npos);

  SECTION("compare-and-set: 3 on a mismatch, 0 on a match") {
    CommandResult mismatch = Ctl(eps, {"cas", "app", "db/url", "other", "--if-revision", std::to_string(mod + 100)});
    CHECK_EXIT(mismatch, 3);
    CHECK(mismatch.err.find("Error:") != std::string::npos);
    CHECK_EXIT(Ctl(eps, {"cas", "app", "db/url", "next", "--if-revision", std::to_string(mod)}), 0);
    CHECK(Ctl(eps, {"get", "app", "db/url"}).out == "next\n");
    CHECK_EXIT(Ctl(eps, {"cas", "app", "fresh", "v", "--if-revision", "0"}), 0);
    CHECK_EXIT(Ctl(eps, {"cas", "app", "fresh", "v", "--if-revision", "0"}), 3);
  }

  SECTION("not found: 4, in json mode also as JSON on stderr") {
    CHECK_EXIT(Ctl(eps, {"get", "app", "missing"}), 4);
    CHECK_EXIT(Ctl(eps, {"del", "app", "missing"}), 4);
    CommandResult j = Ctl(eps, {"-w", "json", "get", "app", "missing"});
    CHECK_EXIT(j, 4);
    CHECK(j.out.empty());
    json err = LastJsonLine(j.err);
    CHECK(err["error"]["code"] == "not_found");
    CHECK(err["error"]["exit_code"] == 4);
    CHECK_EXIT(Ctl(eps, {"del", "app", "db/url"}), 0);
    CHECK_EXIT(Ctl(eps, {"get", "app", "db/url"}), 4);
  }

  SECTION("usage errors: 2; a refused request: 1") {
    CHECK_EXIT(Ctl(eps, {"get"}), 2);
    CHECK_EXIT(Ctl(eps, {"get", "app", "k", "extra"}), 2);
    CHECK_EXIT(Ctl(eps, {"frobnicate"}), 2);
    CHECK_EXIT(Ctl(eps, {"-w", "yaml", "get", "app", "k"}), 2);
    CHECK_EXIT(Ctl(eps, {"cas", "app", "k", "v"}), 2);  // --if-revision is required
    CHECK_EXIT(Ctl("ftp://127.0.0.1:1", {"get", "app", "k"}), 2);
    CHECK_EXIT(Ctl(eps, {"member", "promote", "not-a-number"}), 2);
    CHECK_EXIT(Ctl(eps, {"put", "confman.reserved", "k", "v"}), 1);
    CHECK_EXIT(Ctl(eps, {"--help"}), 0);
  }

  SECTION("unavailable: 5 when no endpoint answers; a dead endpoint first is skipped") {
    CommandResult dead = Ctl(DeadEndpoint() + "," + DeadEndpoint(), {"get", "app", "db/url"});
    CHECK_EXIT(dead, 5);
    CHECK(dead.err.find("cannot connect") != std::string::npos);
    CommandResult skip = Ctl(DeadEndpoint() + "," + eps, {"get", "app", "db/url"});
    CHECK_EXIT(skip, 0);
    CHECK(skip.out == "postgres://db\n");
    CommandResult health = Ctl(DeadEndpoint() + "," + eps, {"health"});
    CHECK_EXIT(health, 5);
    CHECK(health.out.find("unhealthy") != std::string::npos);
  }

  SECTION("list follows page tokens; audit names the actor") {
    for (int i = 0; i < 7; ++i) {
      CHECK_EXIT(Ctl(eps, {"-n", "paged", "put", absl::StrCat("k/", i), absl::StrCat("v", i), "--actor", "bob"}), 0);
    }
    CommandResult keys = Ctl(eps, {"-n", "paged", "list", "--keys-only", "--page-size", "2"});
    CHECK_EXIT(keys, 0);
    CHECK(keys.out == "k/0\nk/1\nk/2\nk/3\nk/4\nk/5\nk/6\n");
    CommandResult limited = Ctl(eps, {"-w", "json", "list", "paged", "--prefix", "k/", "--limit", "3",
                                      "--page-size", "2"});
    json page = LastJsonLine(limited.out);
    REQUIRE(page["items"].size() == 3);
    CHECK(page["items"][2]["value"] == "v2");
    CommandResult table = Ctl(eps, {"-w", "table", "list", "paged"});
    CHECK(table.out.find("| k/6 ") != std::string::npos);

    CommandResult audit = Ctl(eps, {"-w", "json", "audit", "paged", "--key", "k/3"});
    CHECK_EXIT(audit, 0);
    json trail = LastJsonLine(audit.out);
    REQUIRE(trail["changes"].size() == 1);
    CHECK(trail["changes"][0]["actor"] == "bob");
    CHECK(trail["changes"][0]["op"] == "put");
    CommandResult all = Ctl(eps, {"-w", "json", "audit", "paged"});
    CHECK(LastJsonLine(all.out)["changes"].size() == 7);
    CommandResult two = Ctl(eps, {"audit", "paged", "--limit", "2"});
    CHECK(Lines(two.out) == 2);
    CHECK(two.out.find(" bob ") != std::string::npos);
  }

  SECTION("export and import round-trip a namespace, '/' as directories") {
    CHECK_EXIT(Ctl(eps, {"put", "tree", "a/b/c", "deep"}), 0);
    CHECK_EXIT(Ctl(eps, {"put", "tree", "top", "level"}), 0);
    CHECK_EXIT(Ctl(eps, {"put", "tree", "bin", "-"}, std::string("\x00\xff\x01", 3)), 0);
    const fs::path dir = fs::path(cluster->dir()) / "export";
    CommandResult exported = Ctl(eps, {"export", "tree", dir.string()});
    CHECK_EXIT(exported, 0);
    CHECK(ReadAll(dir / "a" / "b" / "c") == "deep");
    CHECK(ReadAll(dir / "top") == "level");
    CHECK(ReadAll(dir / "bin") == std::string("\x00\xff\x01", 3));
    CommandResult imported = Ctl(eps, {"-w", "json", "-n", "tree2", "import", dir.string()});
    CHECK_EXIT(imported, 0);
    CHECK(LastJsonLine(imported.out)["keys"] == 3);
    CHECK(Ctl(eps, {"get", "tree2", "a/b/c"}).out == "deep\n");
    CHECK(Ctl(eps, {"get", "tree2", "bin", "--raw"}).out == std::string("\x00\xff\x01", 3));
  }

  SECTION("status, health and member list cover every member") {
    CommandResult status = Ctl(eps, {"-w", "json", "status"});
    CHECK_EXIT(status, 0);
    json members = LastJsonLine(status.out)["members"];
    CHECK(members.size() == 3);
    int leaders = 0;
    for (const json& m : members) leaders += m.value("role", "") == "leader";
    CHECK(leaders == 1);
    CHECK(Ctl(eps, {"-w", "table", "status"}).out.find("leader") != std::string::npos);
    CommandResult health = Ctl(eps, {"health"});
    CHECK_EXIT(health, 0);
    CHECK(Lines(health.out) == 3);
    CommandResult list = Ctl(eps, {"member", "list"});
    CHECK_EXIT(list, 0);
    CHECK(Lines(list.out) == 3);
    CHECK(list.out.find(" leader") != std::string::npos);
  }

  SECTION("bench: a tiny run ends in one JSON line") {
    CommandResult bench = Ctl(eps, {"bench", "--workload", "a", "--writes", "200", "--writers", "4"});
    CHECK_EXIT(bench, 0);
    json result = LastJsonLine(bench.out);
    CHECK(result["workload"] == "a");
    CHECK(result["writes"] == 200);
    CHECK(result["errors"] == 0);
    CHECK(result["ops_per_s"].get<double>() > 0);
    CHECK(result["p99_ms"].get<double>() >= result["p50_ms"].get<double>());
    CommandResult rr = Ctl(eps, {"-w", "json", "bench", "--workload", "b", "--writes", "20", "--round-robin"});
    CHECK_EXIT(rr, 0);
    CHECK(LastJsonLine(rr.out)["errors"] == 0);
  }
}

TEST_CASE("confmanctl: watch runs a command per change, once each, across a kill -9 of its member") {
  auto cluster = StartCluster();
  auto leader = cluster->WaitForLeader();
  REQUIRE(leader.ok());
  // The watch streams from the leader first, so killing it cuts the stream.
  std::string watch_eps = cluster->client_url(*leader);
  for (uint64_t id : cluster->ids()) {
    if (id != *leader) watch_eps += "," + cluster->client_url(id);
  }
  CommandResult marker = Ctl(cluster->endpoints(), {"-w", "json", "put", "w", "marker", "x"});
  REQUIRE(marker.exit_code == 0);
  const uint64_t from = LastJsonLine(marker.out)["revision"].get<uint64_t>() + 1;
  const std::string log = (fs::path(cluster->dir()) / "changes.log").string();

  CommandResult watch;
  std::thread watcher([&] {
    watch = Ctl(watch_eps,
                {"watch", "w", "--prefix", "k", "--from-revision", std::to_string(from), "--count", "6",
                 "--progress-ms", "200", "--", "sh", "-c",
                 "echo \"$CONFMAN_NS $CONFMAN_OP $CONFMAN_KEY $CONFMAN_REVISION\" >> " + log},
                {}, std::chrono::milliseconds(90000));
  });
  for (int i = 1; i <= 3; ++i) {
    CHECK_EXIT(Ctl(cluster->endpoints(), {"put", "w", absl::StrCat("k", i), "v"}), 0);
  }
  // Let the watch deliver the first three before its member dies.
  CHECK(Eventually([&] { return Lines(ReadAll(log)) >= 3; }, std::chrono::milliseconds(10000)));
  REQUIRE(cluster->Signal(*leader, SIGKILL).ok());
  CHECK_EXIT(Ctl(cluster->endpoints(), {"--timeout", "20", "del", "w", "k1"}), 0);
  for (int i = 4; i <= 5; ++i) {
    CHECK_EXIT(Ctl(cluster->endpoints(), {"--timeout", "20", "put", "w", absl::StrCat("k", i), "v"}), 0);
  }
  watcher.join();
  CHECK_EXIT(watch, 0);
  std::vector<std::string> lines = absl::StrSplit(ReadAll(log), '\n', absl::SkipEmpty());
  INFO(ReadAll(log) << "\nwatch stderr: " << watch.err);
  REQUIRE(lines.size() == 6);
  const std::vector<std::string> expected = {"put k1", "put k2", "put k3", "delete k1", "put k4", "put k5"};
  uint64_t previous = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    std::vector<std::string> f = absl::StrSplit(lines[i], ' ');
    REQUIRE(f.size() == 4);
    CHECK(f[0] == "w");
    CHECK(f[1] + " " + f[2] == expected[i]);
    uint64_t rev = std::stoull(f[3]);
    CHECK(rev > previous);
    previous = rev;
  }
}

TEST_CASE("confmanctl: members join, lead and leave; a token guards the API; a stuck write exits 6") {
  ProcessClusterOptions options;
  options.client_token = "s3cret-token";
  auto cluster = StartCluster(options);
  const std::string token_file = (fs::path(cluster->dir()) / "ctl-token").string();
  std::ofstream(token_file) << "s3cret-token\n";
  const std::string eps = cluster->endpoints();
  auto ctl = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"--token-file", token_file});
    return Ctl(eps, args);
  };

  CHECK_EXIT(Ctl(eps, {"put", "app", "k", "v"}), 1);  // 401 without the token
  CHECK_EXIT(ctl({"put", "app", "k", "v"}), 0);
  CHECK(ctl({"get", "app", "k"}).out == "v\n");

  SECTION("member add --wait --promote, move-leader, member remove") {
    for (int i = 0; i < 20; ++i) CHECK_EXIT(ctl({"put", "fill", absl::StrCat("k", i), std::string(1000, 'x')}), 0);
    REQUIRE(cluster->StartJoiner(4).ok());
    CommandResult add = ctl({"--timeout", "20", "-w", "json", "member", "add", "4", cluster->peer_address(4),
                             "--promote", "--wait-timeout", "60"});
    CHECK_EXIT(add, 0);
    json added = LastJsonLine(add.out);
    CHECK(added["promoted"] == true);
    CHECK(added["caught_up"] == true);
    json members = LastJsonLine(ctl({"-w", "json", "member", "list"}).out);
    bool four_votes = false;
    for (const json& m : members["members"]) {
      if (m["id"] == 4) four_votes = m["voter"].get<bool>();
    }
    CHECK(four_votes);

    CommandResult move = ctl({"--timeout", "20", "move-leader", "4"});
    CHECK_EXIT(move, 0);
    CHECK(move.out == "Leader is now 4\n");
    CHECK(Eventually(
        [&] {
          CommandResult s = ctl({"-w", "json", "member", "list"});
          return s.exit_code == 0 && LastJsonLine(s.out)["leader"] == 4;
        },
        std::chrono::milliseconds(10000)));
    CommandResult status = ctl({"-w", "json", "status"});
    CHECK_EXIT(status, 0);
    INFO("status: " << status.out);
    bool four_leads = false;
    const json status_json = LastJsonLine(status.out);
    for (const json& m : status_json["members"]) {
      if (m.value("id", 0) == 4) four_leads = m.value("role", "") == "leader";
    }
    CHECK(four_leads);
    CHECK_EXIT(ctl({"--timeout", "20", "move-leader", "1"}), 0);
    CommandResult removed = ctl({"--timeout", "20", "member", "remove", "4"});
    CHECK_EXIT(removed, 0);
    CHECK(removed.out == "Member 4 removed\n");
    CHECK(Lines(ctl({"member", "list"}).out) == 3);
    CHECK_EXIT(ctl({"member", "remove", "99"}), 4);
  }

  SECTION("a write the cluster cannot commit within --timeout exits 6; the cluster then serves again") {
    auto leader = cluster->WaitForLeader();
    REQUIRE(leader.ok());
    std::vector<uint64_t> followers;
    for (uint64_t id : cluster->ids()) {
      if (id != *leader) followers.push_back(id);
    }
    for (uint64_t id : followers) REQUIRE(cluster->Signal(id, SIGSTOP).ok());
    CommandResult stuck =
        Ctl(cluster->client_url(*leader), {"--token-file", token_file, "--timeout", "1", "put", "app", "stuck", "v"});
    CHECK_EXIT(stuck, 6);
    CHECK(stuck.err.find("unknown") != std::string::npos);
    for (uint64_t id : followers) REQUIRE(cluster->Signal(id, SIGCONT).ok());
    CHECK_EXIT(ctl({"--timeout", "20", "put", "app", "after", "v"}), 0);
    CommandResult trail = ctl({"-w", "json", "audit", "app", "--key", "after"});
    CHECK(LastJsonLine(trail.out)["changes"].size() == 1);
  }
}

}  // namespace
}  // namespace confman::process_test
