// The server's shared context and route table: what every route needs (the
// Node, logger, metrics, worker pool, the members' client URLs) and the
// helpers that keep responses uniform (JSON bodies, the error shape, the
// absl::Status to HTTP mapping, the X-Confman-* headers). Route handlers
// live in kv_routes.cc, watch_stream.cc, cluster_routes.cc and
// status_page.cc.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "confman/node.h"
#include "http_server.h"
#include "json_util.h"
#include "log_sink.h"
#include "metrics.h"
#include "worker_pool.h"

namespace confman::server {

struct AppConfig {
  raft::MemberId id = raft::kNoMember;
  std::string cluster_id;
  std::string peer_address;  // As the transport reports it.
  std::string data_dir;
  uint64_t ready_max_lag = 1000;
  uint64_t max_watchers = 10000;
  uint64_t watch_queue_lines = 1024;
  std::chrono::milliseconds request_timeout{5000};
  std::string token;  // Sent on calls to other members.
  // Transport addresses from --initial-members; members added later are
  // found in the replicated "confman.members" records.
  std::map<raft::MemberId, std::string> initial_peers;
};

// A parsed request, handed to one route.
struct Call {
  std::shared_ptr<Exchange> ex;
  std::map<std::string, std::string> query;
  std::string ns;
  std::string key;
  raft::MemberId member = raft::kNoMember;
};

// What a Node error means depends on what was asked.
enum class OpKind { kRead, kWrite, kMembership };

class App {
 public:
  App(AppConfig config, Node* node, Logger* log, PrometheusMetrics* metrics,
      WorkerPool* workers);
  ~App();

  void set_server(HttpServer* server) { server_ = server; }
  void set_client_url(std::string url) { client_url_ = std::move(url); }
  const std::string& client_url() const { return client_url_; }

  // The router; runs on an I/O thread and must not block.
  void Handle(std::shared_ptr<Exchange> ex);
  void Decorate(Response& response) const;

  Response JsonResponse(http::status status, const Json& body) const;
  Response Error(http::status status, const std::string& code,
                 const std::string& message, Json extra = Json::object()) const;
  Response FromStatus(const absl::Status& status, OpKind kind) const;

  // Publishes this member's client URL (namespace confman-node) and keeps
  // the map of every member's URL fresh, until StopBackground.
  void StartBackground();
  void StopBackground();

  std::string ClientUrlOf(raft::MemberId id) const;
  std::map<raft::MemberId, std::string> ClientUrls() const;
  std::map<raft::MemberId, std::string> PeerAddresses() const;

  // GET /v1/status's body. Worker threads only (it walks the data dir).
  Json StatusJson() const;
  // Every member's status ({"members": [...]}), asking the others over
  // HTTP with a short timeout. Worker threads only.
  Json CollectClusterStatus() const;

 private:
  // Routes (one file per concern).
  void KvGet(Call call);
  void KvPut(Call call);
  void KvDelete(Call call);
  void KvList(Call call);
  void Watch(Call call);
  void Audit(Call call);
  void MembersList(Call call);
  void MembersAdd(Call call);
  void MembersPromote(Call call);
  void MembersRemove(Call call);
  void LeaderTransfer(Call call);
  void ClusterStatus(Call call);
  void Status(Call call);
  void Livez(Call call);
  void Readyz(Call call);
  void Metrics(Call call);
  void StatusPage(Call call);

  // Runs `task` on the worker pool, or answers 503 when it is saturated.
  void OnWorker(const std::shared_ptr<Exchange>& ex, std::function<void()> task);
  // Membership calls on a follower: sends the request to the leader's
  // client URL and relays its answer. Worker threads only.
  void ForwardToLeader(const Call& call);
  // Whether this member should forward a membership call (it is not the
  // leader); answers 503 itself when no leader is known.
  bool ShouldForward(const Call& call);
  // Reads a key's current mod_revision locally (0 when absent), for a 412.
  uint64_t LocalModRevision(const std::string& ns, const std::string& key) const;

  void BackgroundLoop();
  void RefreshMaps();
  // Records a leader change for the status page.
  void NoteLeader();

  const AppConfig config_;
  Node* const node_;
  Logger* const log_;
  PrometheusMetrics* const metrics_;
  WorkerPool* const workers_;
  HttpServer* server_ = nullptr;
  std::string client_url_;
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::atomic<uint64_t> watchers_{0};

  mutable std::mutex mu_;
  std::map<raft::MemberId, std::string> client_urls_;
  std::map<raft::MemberId, std::string> peer_addresses_;
  std::condition_variable cv_;
  bool stop_background_ = false;
  std::thread background_;

  // Recent leader changes for the status page: (unix seconds, leader id).
  struct LeaderChange {
    int64_t unix_seconds;
    raft::MemberId leader;
    uint64_t term;
  };
  std::vector<LeaderChange> leader_history_;
  raft::MemberId last_seen_leader_ = raft::kNoMember;
};

// Shared helpers for the route files.
Json ChangeJson(const kv::Change& change);
Json KeyValueJson(const kv::KeyValue& kv, bool with_value);
// Parses ?consistency=; false when the value is unknown.
bool ParseConsistency(const Call& call, ReadOptions* options);
bool HasParam(const Call& call, const std::string& name);

}  // namespace confman::server
