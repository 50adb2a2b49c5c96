// confman-node's HTTP API, checked against a cluster of real processes on
// 127.0.0.1: every route, the error contract for bad input, the limits,
// a watch stream across a kill -9 of the leader, a fourth member joining,
// SIGTERM, and the status page rendered by a real browser.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "process_cluster.h"

namespace confman::process_test {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

std::unique_ptr<ProcessCluster> StartCluster(ProcessClusterOptions options = {}) {
  auto cluster = ProcessCluster::Start(std::move(options));
  if (!cluster.ok()) FAIL(cluster.status().ToString());
  return std::move(*cluster);
}

uint64_t AFollower(const ProcessCluster& cluster) {
  auto leader = cluster.WaitForLeader();
  REQUIRE(leader.ok());
  for (uint64_t id : cluster.ids()) {
    if (id != *leader && cluster.running(id)) return id;
  }
  FAIL("no follower is running");
  return 0;
}

HttpResponse Must(absl::StatusOr<HttpResponse> r) {
  if (!r.ok()) FAIL(r.status().ToString());
  return std::move(*r);
}

json Body(const HttpResponse& r) {
  json j = json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) FAIL("not JSON (status " << r.status << "): " << r.body);
  return j;
}

// The error contract: JSON {"error":{"code","message"}} with a message.
void CheckError(const HttpResponse& r, int status, const std::string& code) {
  INFO("body: " << r.body);
  CHECK(r.status == status);
  json j = Body(r);
  REQUIRE(j.contains("error"));
  CHECK(j["error"]["code"] == code);
  CHECK(j["error"]["message"].get<std::string>().size() > 10);
}

TEST_CASE("HTTP API: keys and values through a follower") {
  auto cluster = StartCluster();
  const std::string url = cluster->client_url(AFollower(*cluster));

  HttpResponse put = Must(Http(url, "PUT", "/v1/ns/app/kv/db/url", "postgres://db",
                               {{"Content-Type", "text/plain"},
                                {"X-Confman-Actor", "alice"}}));
  REQUIRE(put.status == 200);
  const uint64_t rev = Body(put)["revision"].get<uint64_t>();
  CHECK(rev > 0);
  CHECK(!put.header("x-confman-member").empty());
  CHECK(put.header("x-confman-leader") != "0");
  CHECK(!put.header("x-confman-revision").empty());

  HttpResponse get = Must(Http(url, "GET", "/v1/ns/app/kv/db/url"));
  REQUIRE(get.status == 200);
  json value = Body(get);
  CHECK(value["value"] == "postgres://db");
  CHECK(value["key"] == "db/url");
  CHECK(value["content_type"] == "text/plain");
  CHECK(value["mod_revision"] == rev);
  CHECK(value["create_revision"] == rev);
  CHECK(value["version"] == 1);
  CHECK(get.header("etag") == absl::StrCat("\"", rev, "\""));
  uint64_t served_revision = 0;
  CHECK(absl::SimpleAtoi(get.header("x-confman-revision"), &served_revision));
  CHECK(served_revision >= rev);

  HttpResponse not_modified = Must(Http(url, "GET", "/v1/ns/app/kv/db/url", {},
                                        {{"If-None-Match", get.header("etag")}}));
  CHECK(not_modified.status == 304);

  HttpResponse raw = Must(Http(url, "GET", "/v1/ns/app/kv/db/url?raw"));
  CHECK(raw.status == 200);
  CHECK(raw.body == "postgres://db");
  CHECK(absl::StartsWith(raw.header("content-type"), "text/plain"));

  // Bytes that are not UTF-8 come back base64-encoded, and raw unchanged.
  const std::string binary("\xff\x00\x01\xfe", 4);
  REQUIRE(Must(Http(url, "PUT", "/v1/ns/app/kv/blob", binary)).status == 200);
  json blob = Body(Must(Http(url, "GET", "/v1/ns/app/kv/blob")));
  CHECK(!blob.contains("value"));
  CHECK(blob["value_b64"] == "/wAB/g==");
  CHECK(Must(Http(url, "GET", "/v1/ns/app/kv/blob?raw")).body == binary);

  SECTION("compare-and-set and conditional delete") {
    HttpResponse stale = Must(Http(url, "PUT",
                                   absl::StrCat("/v1/ns/app/kv/db/url?if_revision=", rev + 100),
                                   "x"));
    CheckError(stale, 412, "revision_mismatch");
    CHECK(Body(stale)["error"]["current_revision"] == rev);
    CheckError(Must(Http(url, "PUT", "/v1/ns/app/kv/db/url?if_revision=0", "x")), 412,
               "revision_mismatch");
    HttpResponse created = Must(Http(url, "PUT", "/v1/ns/app/kv/fresh?if_revision=0", "1"));
    CHECK(created.status == 200);
    HttpResponse swapped = Must(Http(
        url, "PUT", absl::StrCat("/v1/ns/app/kv/db/url?if_revision=", rev), "postgres://db2"));
    REQUIRE(swapped.status == 200);
    const uint64_t rev2 = Body(swapped)["revision"].get<uint64_t>();
    CheckError(Must(Http(url, "DELETE", absl::StrCat("/v1/ns/app/kv/db/url?if_revision=", rev))),
               412, "revision_mismatch");
    HttpResponse del = Must(
        Http(url, "DELETE", absl::StrCat("/v1/ns/app/kv/db/url?if_revision=", rev2)));
    CHECK(del.status == 200);
    CHECK(Body(del)["revision"].get<uint64_t>() > rev2);
    CheckError(Must(Http(url, "GET", "/v1/ns/app/kv/db/url")), 404, "not_found");
    CheckError(Must(Http(url, "DELETE", "/v1/ns/app/kv/db/url")), 404, "not_found");
  }

  SECTION("lists page through a prefix in key order, at every consistency") {
    for (int i = 0; i < 5; ++i) {
      REQUIRE(Must(Http(url, "PUT", absl::StrCat("/v1/ns/list/kv/p/", i), std::to_string(i)))
                  .status == 200);
    }
    REQUIRE(Must(Http(url, "PUT", "/v1/ns/list/kv/q", "other")).status == 200);
    std::vector<std::string> keys;
    std::string token;
    int pages = 0;
    do {
      std::string target = "/v1/ns/list/kv?prefix=p/&limit=2";
      if (!token.empty()) absl::StrAppend(&target, "&page_token=", token);
      json page = Body(Must(Http(url, "GET", target)));
      ++pages;
      for (const json& item : page["items"]) {
        keys.push_back(item["key"]);
        CHECK(item["value"] == std::string(1, keys.back().back()));
      }
      token = page.value("next_page_token", "");
    } while (!token.empty() && pages < 10);
    CHECK(pages == 3);
    CHECK(keys == std::vector<std::string>{"p/0", "p/1", "p/2", "p/3", "p/4"});
    json keys_only = Body(Must(Http(url, "GET", "/v1/ns/list/kv?keys_only=true")));
    REQUIRE(keys_only["items"].size() == 6);
    CHECK(!keys_only["items"][0].contains("value"));
    for (const char* c : {"linearizable", "lease", "local"}) {
      INFO(c);
      CHECK(Must(Http(url, "GET", absl::StrCat("/v1/ns/list/kv/q?consistency=", c))).status ==
            200);
    }
    CheckError(Must(Http(url, "GET", "/v1/ns/list/kv/q?consistency=eventual")), 400,
               "bad_request");
  }
}

TEST_CASE("HTTP API: bad input gets a clear error and the member keeps serving") {
  auto cluster = StartCluster({.extra_flags = {"--max-value-bytes", "65536",
                                               "--header-timeout-ms", "500"}});
  const uint64_t follower = AFollower(*cluster);
  const std::string url = cluster->client_url(follower);

  CheckError(Must(Http(url, "GET", "/v1/nothing/here")), 404, "no_route");
  HttpResponse wrong_method = Must(Http(url, "PATCH", "/v1/ns/a/kv/k", "x"));
  CheckError(wrong_method, 405, "method_not_allowed");
  CHECK(!wrong_method.header("allow").empty());
  CheckError(Must(Http(url, "PUT", "/v1/ns/a/kv/k?if_revision=abc", "x")), 400, "bad_request");
  CheckError(Must(Http(url, "PUT", "/v1/ns/confman.members/kv/9", "x")), 400, "bad_request");
  CheckError(Must(Http(url, "PUT", absl::StrCat("/v1/ns/a/kv/", std::string(600, 'k')), "x")),
             400, "bad_request");
  CheckError(Must(Http(url, "POST", "/v1/cluster/members", "{\"id\": 4,",
                       {{"Content-Type", "application/json"}})),
             400, "bad_request");
  CheckError(Must(Http(url, "POST", "/v1/cluster/leader", "{\"to\": \"two\"}",
                       {{"Content-Type", "application/json"}})),
             400, "bad_request");

  // 413 comes from Content-Length alone: no body is ever sent.
  const auto start = Clock::now();
  HttpResponse too_large = Must(RawHttp(
      url, "PUT /v1/ns/a/kv/big HTTP/1.1\r\nHost: x\r\nContent-Length: 65537\r\n\r\n",
      std::chrono::milliseconds(5000)));
  CheckError(too_large, 413, "value_too_large");
  CHECK(Clock::now() - start < std::chrono::milliseconds(2000));
  CHECK(Must(Http(url, "PUT", "/v1/ns/a/kv/exact", std::string(65536, 'v'))).status == 200);

  // Garbage on the wire: a 400, and nothing else happens.
  CHECK(Must(RawHttp(url, "HELLO\r\n\r\n")).status == 400);
  CHECK(Must(RawHttp(url, "GET / HTTP/1.1\r\nContent-Length: -5\r\n\r\n")).status == 400);

  // Headers that trickle in are cut off by the header timeout.
  const auto trickle_start = Clock::now();
  auto trickled = RawHttp(url, "GET /v1/status HTTP/1.1\r\nHost: x\r\n",
                          std::chrono::milliseconds(5000));
  CHECK(Clock::now() - trickle_start < std::chrono::milliseconds(3000));
  if (trickled.ok()) CHECK(trickled->status != 200);

  // The member still serves.
  HttpResponse after = Must(Http(url, "PUT", "/v1/ns/a/kv/k", "fine"));
  CHECK(after.status == 200);
  CHECK(Body(Must(Http(url, "GET", "/v1/ns/a/kv/k")))["value"] == "fine");
  CHECK(cluster->running(follower));
}

TEST_CASE("HTTP API: a client token guards every route but the health checks") {
  auto cluster = StartCluster({.client_token = "s3cret-token-for-tests"});
  const std::string url = cluster->client_url(AFollower(*cluster));
  CheckError(Must(Http(url, "GET", "/v1/status")), 401, "unauthorized");
  CheckError(Must(Http(url, "PUT", "/v1/ns/a/kv/k", "v",
                       {{"Authorization", "Bearer s3cret-token-for-test"}})),
             401, "unauthorized");
  CheckError(Must(Http(url, "GET", "/metrics", {}, {{"Authorization", "Basic abc"}})), 401,
             "unauthorized");
  CHECK(Must(Http(url, "PUT", "/v1/ns/a/kv/k", "v", cluster->auth())).status == 200);
  CHECK(Must(Http(url, "GET", "/livez")).status == 200);
  CHECK(Must(Http(url, "GET", "/readyz")).status == 200);
}

TEST_CASE("HTTP API: status, cluster status, health, metrics and the audit trail") {
  auto cluster = StartCluster();
  auto leader = cluster->WaitForLeader();
  REQUIRE(leader.ok());
  const uint64_t follower = AFollower(*cluster);
  const std::string url = cluster->client_url(follower);
  for (int i = 0; i < 3; ++i) {
    REQUIRE(Must(Http(url, "PUT", absl::StrCat("/v1/ns/audit/kv/k", i), "v",
                      {{"X-Confman-Actor", absl::StrCat("deployer-", i)}}))
                .status == 200);
  }
  REQUIRE(Must(Http(url, "PUT", "/v1/ns/elsewhere/kv/k", "v")).status == 200);

  json status = Body(Must(Http(url, "GET", "/v1/status")));
  CHECK(status["id"] == follower);
  CHECK(status["role"] == "follower");
  CHECK(status["leader"] == *leader);
  CHECK(status["voters"].size() == 3);
  CHECK(status["applied_index"].get<uint64_t>() > 0);
  CHECK(status["revision"].get<uint64_t>() >= 4);
  CHECK(status["storage"]["data_dir_bytes"].get<uint64_t>() > 0);

  json all = Body(Must(Http(url, "GET", "/v1/cluster/status")));
  REQUIRE(all["members"].size() == 3);
  int leaders = 0;
  for (const json& m : all["members"]) leaders += m.value("role", "") == "leader";
  CHECK(leaders == 1);

  json members = Body(Must(Http(url, "GET", "/v1/cluster/members")));
  CHECK(members["leader"] == *leader);
  CHECK(members["members"].size() == 3);

  CHECK(Must(Http(url, "GET", "/livez")).status == 200);
  CHECK(Must(Http(url, "GET", "/readyz")).status == 200);

  // The member the writes went through counts them.
  HttpResponse metrics = Must(Http(url, "GET", "/metrics"));
  CHECK(metrics.status == 200);
  CHECK(absl::StartsWith(metrics.header("content-type"), "text/plain; version=0.0.4"));
  CHECK(absl::StrContains(metrics.body, "confman_node_forwarded_total"));
  CHECK(absl::StrContains(metrics.body, "confman_node_write_seconds_bucket"));
  CHECK(absl::StrContains(metrics.body, "confman_http_requests_total"));
  CHECK(!absl::StrContains(metrics.body, "node.proposals"));

  json audit = Body(Must(Http(url, "GET", "/v1/ns/audit/audit")));
  REQUIRE(audit["changes"].size() == 3);
  for (int i = 0; i < 3; ++i) {
    CHECK(audit["changes"][i]["key"] == absl::StrCat("k", i));
    CHECK(audit["changes"][i]["actor"] == absl::StrCat("deployer-", i));
    CHECK(audit["changes"][i]["time_unix_micros"].get<int64_t>() > 0);
  }
  json one_key = Body(Must(Http(url, "GET", "/v1/ns/audit/audit?key=k1")));
  REQUIRE(one_key["changes"].size() == 1);
  CHECK(one_key["changes"][0]["actor"] == "deployer-1");
}

// Reads NDJSON lines until `count` changes or `limit`; fails on an error line.
std::vector<uint64_t> ReadChanges(HttpStream& stream, size_t count,
                                  std::chrono::milliseconds limit) {
  std::vector<uint64_t> revisions;
  const auto deadline = Clock::now() + limit;
  while (revisions.size() < count && Clock::now() < deadline) {
    auto line = stream.NextLine(std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - Clock::now()));
    if (!line.ok()) break;
    json j = json::parse(*line, nullptr, false);
    REQUIRE(!j.is_discarded());
    if (j["type"] == "change") revisions.push_back(j["revision"].get<uint64_t>());
    if (j["type"] == "error") FAIL("watch ended: " << *line);
  }
  return revisions;
}

TEST_CASE("HTTP API: a watch stream on a follower survives a kill -9 of the leader") {
  auto cluster = StartCluster();
  auto leader = cluster->WaitForLeader();
  REQUIRE(leader.ok());
  std::vector<uint64_t> followers;
  for (uint64_t id : cluster->ids()) {
    if (id != *leader) followers.push_back(id);
  }
  const std::string watch_url = cluster->client_url(followers[0]);
  const std::string write_url = cluster->client_url(followers[1]);
  json first = Body(Must(Http(write_url, "PUT", "/v1/ns/w/kv/start", "0")));
  const uint64_t from = first["revision"].get<uint64_t>();

  auto stream = HttpStream::Open(watch_url, absl::StrCat("/v1/ns/w/watch?from_revision=", from,
                                                         "&progress_ms=200"));
  REQUIRE(stream.ok());
  REQUIRE((*stream)->status() == 200);

  // Writes through the other follower, with the leader killed midway. Each
  // acknowledged revision must arrive once, in order; a write whose
  // outcome is unknown may or may not appear.
  std::vector<uint64_t> acknowledged = {from};
  const std::string request_prefix = absl::StrCat(getpid(), ":");
  for (int i = 1; i <= 40; ++i) {
    if (i == 15) REQUIRE(cluster->Signal(*leader, SIGKILL).ok());
    for (int attempt = 0; attempt < 50; ++attempt) {
      auto r = Http(write_url, "PUT", absl::StrCat("/v1/ns/w/kv/k", i % 4), std::to_string(i),
                    {{"X-Confman-Request", absl::StrCat(request_prefix, i)}});
      if (r.ok() && r->status == 200) {
        acknowledged.push_back(Body(*r)["revision"].get<uint64_t>());
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  REQUIRE(acknowledged.size() == 41);
  std::vector<uint64_t> seen = ReadChanges(**stream, acknowledged.size(),
                                           std::chrono::milliseconds(15000));
  CHECK(seen == acknowledged);

  // The same resumption point in server-sent events.
  auto sse = HttpStream::Open(watch_url,
                              absl::StrCat("/v1/ns/w/watch?from_revision=", from),
                              {{"Accept", "text/event-stream"}});
  REQUIRE(sse.ok());
  CHECK(absl::StartsWith((*sse)->headers().at("content-type"), "text/event-stream"));
  auto line = (*sse)->NextLine(std::chrono::milliseconds(5000));
  REQUIRE(line.ok());
  CHECK(absl::StartsWith(*line, "event: change"));
}

TEST_CASE("HTTP API: a compacted watch start answers 410 with the oldest revision kept") {
  auto cluster = StartCluster({.extra_flags = {"--history-retention", "5"}});
  const std::string url = cluster->client_url(AFollower(*cluster));
  for (int i = 0; i < 12; ++i) {
    REQUIRE(Must(Http(url, "PUT", "/v1/ns/c/kv/k", std::to_string(i))).status == 200);
  }
  HttpResponse gone = Must(Http(url, "GET", "/v1/ns/c/watch?from_revision=1"));
  CheckError(gone, 410, "compacted");
  CHECK(Body(gone)["error"]["compacted_revision"].get<uint64_t>() > 1);
  CheckError(Must(Http(url, "GET", "/v1/ns/c/audit?from_revision=1")), 410, "compacted");
}

TEST_CASE("HTTP API: a fourth member joins from empty, catches up and is promoted") {
  auto cluster = StartCluster();
  const std::string url = cluster->client_url(AFollower(*cluster));
  for (int i = 0; i < 50; ++i) {
    REQUIRE(Must(Http(url, "PUT", absl::StrCat("/v1/ns/j/kv/k", i), std::string(2000, 'x')))
                .status == 200);
  }
  REQUIRE(cluster->StartJoiner(4).ok());
  HttpResponse added =
      Must(Http(url, "POST", "/v1/cluster/members",
                json{{"id", 4}, {"peer_address", cluster->peer_address(4)}}.dump(),
                {{"Content-Type", "application/json"}}, std::chrono::milliseconds(20000)));
  INFO(added.body);
  REQUIRE(added.status == 201);
  const std::string joiner = cluster->client_url(4);
  CHECK(Eventually(
      [&] {
        auto r = Http(joiner, "GET", "/v1/ns/j/kv/k49?consistency=local");
        return r.ok() && r->status == 200;
      },
      std::chrono::milliseconds(20000)));
  HttpResponse promoted = Must(Http(url, "POST", "/v1/cluster/members/4/promote", "", {},
                                    std::chrono::milliseconds(20000)));
  INFO(promoted.body);
  CHECK(promoted.status == 200);
  json members = Body(Must(Http(url, "GET", "/v1/cluster/members")));
  bool four_votes = false;
  for (const json& m : members["members"]) {
    if (m["id"] == 4) four_votes = m["voter"].get<bool>();
  }
  CHECK(four_votes);
  // The new voter serves linearizable reads.
  CHECK(Must(Http(joiner, "GET", "/v1/ns/j/kv/k0")).status == 200);
}

TEST_CASE("confman-node: SIGTERM exits 0 and an acknowledged write survives") {
  auto cluster = StartCluster();
  const std::string url = cluster->client_url(AFollower(*cluster));
  std::vector<std::pair<std::string, uint64_t>> written;
  for (int i = 0; i < 20; ++i) {
    HttpResponse r = Must(Http(url, "PUT", absl::StrCat("/v1/ns/t/kv/k", i), std::to_string(i)));
    REQUIRE(r.status == 200);
  }
  for (uint64_t id : cluster->ids()) {
    REQUIRE(cluster->Signal(id, SIGTERM).ok());
    auto code = cluster->WaitExit(id, std::chrono::milliseconds(10000));
    REQUIRE(code.ok());
    INFO(cluster->log_text(id));
    CHECK(*code == 0);
  }
  for (uint64_t id : cluster->ids()) REQUIRE(cluster->Restart(id).ok());
  REQUIRE(cluster->WaitForLeader(std::chrono::milliseconds(20000)).ok());
  const std::string again = cluster->client_url(cluster->ids()[0]);
  for (int i = 0; i < 20; ++i) {
    json v = Body(Must(Http(again, "GET", absl::StrCat("/v1/ns/t/kv/k", i))));
    CHECK(v["value"] == std::to_string(i));
  }
}

TEST_CASE("confman-node: bad flags and an unusable data dir exit non-zero and say why") {
  CommandResult no_id = RunCommand({NodeBinary(), "--data-dir", "/tmp/x"});
  CHECK(no_id.exit_code != 0);
  CHECK(absl::StrContains(no_id.err, "--id"));
  CommandResult help = RunCommand({NodeBinary(), "--help"});
  CHECK(help.exit_code == 0);
  for (const char* flag : {"--election-timeout-ms", "--secret-file", "--client-listen",
                           "--max-connections", "--client-token-file"}) {
    CHECK(absl::StrContains(help.out, flag));
  }
  CommandResult bad_dir = RunCommand(
      {NodeBinary(), "--id", "1", "--cluster-id", "c", "--peer-listen", "127.0.0.1:0",
       "--initial-members", "1=127.0.0.1:1", "--data-dir", "/proc/confman-cannot-live-here"},
      {{"CONFMAN_SECRET", "0123456789abcdef0123"}});
  CHECK(bad_dir.exit_code != 0);
  CHECK(absl::StrContains(bad_dir.err, "/proc/confman-cannot-live-here"));

  // A client port that is taken: a clear error and exit 1, not a crash.
  auto cluster = StartCluster();
  const std::string taken = cluster->client_url(cluster->ids()[0]).substr(strlen("http://"));
  char dir[] = "/tmp/confman-taken-XXXXXX";
  REQUIRE(mkdtemp(dir) != nullptr);
  absl::StatusOr<int> peer_port = FreePort();
  REQUIRE(peer_port.ok());
  const std::string peer = absl::StrCat("127.0.0.1:", *peer_port);
  CommandResult port_taken = RunCommand(
      {NodeBinary(), "--id", "1", "--cluster-id", "c", "--peer-listen", peer,
       "--client-listen", taken, "--initial-members", "1=" + peer, "--data-dir",
       std::string(dir) + "/data"},
      {{"CONFMAN_SECRET", "0123456789abcdef0123"}});
  CHECK(port_taken.exit_code == 1);
  CHECK(absl::StrContains(port_taken.err, taken));
  std::filesystem::remove_all(dir);
}

TEST_CASE("status page: Chromium renders every member and names the leader") {
  auto cluster = StartCluster();
  auto leader = cluster->WaitForLeader();
  REQUIRE(leader.ok());
  const std::string url = cluster->client_url(AFollower(*cluster));
  REQUIRE(Must(Http(url, "PUT", "/v1/ns/page/kv/k", "v", {{"X-Confman-Actor", "page-test"}}))
              .status == 200);
  const std::string profile = cluster->dir() + "/chromium-profile";
  CommandResult page = RunCommand(
      {"/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu",
       "--user-data-dir=" + profile, "--dump-dom", url + "/"},
      {}, {}, std::chrono::milliseconds(60000));
  INFO(page.err);
  REQUIRE(page.exit_code == 0);
  size_t rows = 0;
  for (size_t at = page.out.find("class=\"member\""); at != std::string::npos;
       at = page.out.find("class=\"member\"", at + 1)) {
    ++rows;
  }
  CHECK(rows == 3);
  CHECK(absl::StrContains(page.out, "id=\"members\""));
  CHECK(absl::StrContains(page.out, "data-role=\"leader\""));
  CHECK(absl::StrContains(page.out, "page-test"));
}

}  // namespace
}  // namespace confman::process_test
