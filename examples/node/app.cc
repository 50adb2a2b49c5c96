// The route table, the response helpers shared by every route, the
// background publisher of this member's client URL, and the small health
// routes (/livez, /readyz, /metrics, /v1/status).
#include "app.h"

#include <unistd.h>

#include <filesystem>

namespace confman::server {
namespace {

constexpr char kUrlNamespace[] = "confman-node";
constexpr char kMembersNamespace[] = "confman.members";

bool ParseQuery(std::string_view text, std::map<std::string, std::string>* out) {
  while (!text.empty()) {
    const size_t amp = text.find('&');
    const std::string_view pair = text.substr(0, amp);
    text = amp == std::string_view::npos ? std::string_view() : text.substr(amp + 1);
    if (pair.empty()) continue;
    const size_t eq = pair.find('=');
    auto name = PercentDecode(pair.substr(0, eq));
    auto value = eq == std::string_view::npos ? std::optional<std::string>("")
                                              : PercentDecode(pair.substr(eq + 1));
    if (!name || !value) return false;
    (*out)[*name] = *value;
  }
  return true;
}

const char* ProgressStateName(raft::MemberProgress::State state) {
  switch (state) {
    case raft::MemberProgress::State::kProbe: return "probe";
    case raft::MemberProgress::State::kReplicate: return "replicate";
    case raft::MemberProgress::State::kSnapshot: return "snapshot";
  }
  return "unknown";
}

uint64_t DirectoryBytes(const std::string& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code size_ec;
    if (it->is_regular_file(size_ec)) {
      const auto size = it->file_size(size_ec);
      if (!size_ec) total += size;
    }
  }
  return total;
}

Json StatusOrNull(const absl::Status& status) {
  return status.ok() ? Json(nullptr) : Json(status.ToString());
}

}  // namespace

Json ChangeJson(const kv::Change& change) {
  return Json{{"revision", change.revision},
              {"op", change.op == kv::ChangeOp::kPut ? "put" : "delete"},
              {"ns", change.ns},
              {"key", change.key},
              {"old_revision", change.old_revision},
              {"new_revision", change.new_revision},
              {"actor", change.actor},
              {"time_unix_micros", change.time_unix_micros}};
}

Json KeyValueJson(const kv::KeyValue& kv, bool with_value) {
  Json out = Json::object();
  out["ns"] = kv.ns;
  out["key"] = kv.key;
  if (with_value) {
    if (IsValidUtf8(kv.value)) {
      out["value"] = kv.value;
    } else {
      out["value_b64"] = Base64Encode(kv.value);
    }
  }
  out["content_type"] = kv.content_type;
  out["create_revision"] = kv.create_revision;
  out["mod_revision"] = kv.mod_revision;
  out["version"] = kv.version;
  return out;
}

bool HasParam(const Call& call, const std::string& name) {
  return call.query.count(name) != 0;
}

bool ParseConsistency(const Call& call, ReadOptions* options) {
  auto it = call.query.find("consistency");
  if (it == call.query.end() || it->second == "linearizable") {
    options->consistency = ReadConsistency::kLinearizable;
  } else if (it->second == "lease") {
    options->consistency = ReadConsistency::kLease;
  } else if (it->second == "local") {
    options->consistency = ReadConsistency::kLocal;
  } else {
    return false;
  }
  return true;
}

App::App(AppConfig config, Node* node, Logger* log, PrometheusMetrics* metrics,
         WorkerPool* workers)
    : config_(std::move(config)), node_(node), log_(log), metrics_(metrics), workers_(workers) {}

App::~App() { StopBackground(); }

// --- Responses ---------------------------------------------------------------

void App::Decorate(Response& response) const {
  const NodeStatus status = node_->GetStatus();
  response.set("X-Confman-Member", std::to_string(config_.id));
  response.set("X-Confman-Leader", std::to_string(status.leader));
  response.set("X-Confman-Revision", std::to_string(status.revision));
  response.set(http::field::server, "confman-node");
}

Response App::JsonResponse(http::status status, const Json& body) const {
  Response response{status, 11};
  response.set(http::field::content_type, "application/json");
  response.body() = DumpJson(body) + "\n";
  return response;
}

Response App::Error(http::status status, const std::string& code,
                    const std::string& message, Json extra) const {
  Json error = Json::object();
  error["code"] = code;
  error["message"] = message;
  const raft::MemberId leader = node_->GetStatus().leader;
  if (leader != raft::kNoMember) {
    error["leader"] = leader;
    const std::string url = ClientUrlOf(leader);
    if (!url.empty()) error["leader_url"] = url;
  }
  for (auto& [k, v] : extra.items()) error[k] = v;
  Response response = JsonResponse(status, Json{{"error", error}});
  if (status == http::status::service_unavailable || status == http::status::too_many_requests) {
    response.set(http::field::retry_after, "1");
  }
  return response;
}

Response App::FromStatus(const absl::Status& status, OpKind kind) const {
  const std::string message(status.message());
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return Error(http::status::internal_server_error, "internal", "no error to report");
    case absl::StatusCode::kInvalidArgument:
      // The library reports an oversized value as InvalidArgument ("the
      // value is N bytes; the limit is M"); HTTP has a code of its own.
      if (message.find("the limit is") != std::string::npos) {
        return Error(http::status::payload_too_large, "value_too_large", message);
      }
      return Error(http::status::bad_request, "bad_request", message);
    case absl::StatusCode::kNotFound:
      return Error(http::status::not_found, "not_found", message);
    case absl::StatusCode::kFailedPrecondition:
      if (kind == OpKind::kMembership) {
        if (message.find("must be sent to the leader") != std::string::npos) {
          return Error(http::status::service_unavailable, "unavailable",
                       message + "; retry (leadership moved while the request was served)");
        }
        return Error(http::status::conflict, "conflict", message);
      }
      return Error(http::status::precondition_failed, "revision_mismatch", message);
    case absl::StatusCode::kUnavailable:
      return Error(http::status::service_unavailable,
                   node_->GetStatus().leader == raft::kNoMember ? "no_leader" : "unavailable",
                   message);
    case absl::StatusCode::kDeadlineExceeded:
      if (kind == OpKind::kRead) {
        return Error(http::status::service_unavailable, "unavailable",
                     message + "; the read did not complete in time, retry");
      }
      return Error(http::status::gateway_timeout, "outcome_unknown",
                   message + "; the write may still apply: retry with the same X-Confman-Request, "
                             "or read the key and decide");
    case absl::StatusCode::kAborted:
      return Error(http::status::conflict, "session_expired", message);
    case absl::StatusCode::kResourceExhausted:
      return Error(http::status::too_many_requests, "resource_exhausted", message);
    case absl::StatusCode::kOutOfRange:
      return Error(http::status::gone, "compacted", message);
    default:
      return Error(http::status::internal_server_error, "internal", status.ToString());
  }
}

void App::OnWorker(const std::shared_ptr<Exchange>& ex, std::function<void()> task) {
  if (!workers_->Post(std::move(task))) {
    ex->Reply(Error(http::status::service_unavailable, "unavailable",
                    "this member is busy with other slow requests; retry shortly"));
  }
}

// --- Router --------------------------------------------------------------------

void App::Handle(std::shared_ptr<Exchange> ex) {
  const Request& req = ex->request();
  const std::string_view target(req.target().data(), req.target().size());
  const size_t qmark = target.find('?');
  const std::string_view path = target.substr(0, qmark);
  Call call;
  call.ex = ex;
  if (qmark != std::string_view::npos && !ParseQuery(target.substr(qmark + 1), &call.query)) {
    return ex->Reply(Error(http::status::bad_request, "bad_request",
                           "the query string has a malformed %-escape"));
  }
  const http::verb method = req.method();
  // Answers 405 unless the method is one of `allowed`.
  auto allow = [&](std::initializer_list<http::verb> allowed) {
    for (http::verb v : allowed) {
      if (v == method) return true;
    }
    std::string names;
    for (http::verb v : allowed) {
      if (!names.empty()) names += ", ";
      names += std::string(http::to_string(v));
    }
    Response response = Error(http::status::method_not_allowed, "method_not_allowed",
                              "this route accepts " + names);
    response.set(http::field::allow, names);
    ex->Reply(std::move(response));
    return false;
  };

  if (path == "/livez") { if (allow({http::verb::get})) Livez(std::move(call)); return; }
  if (path == "/readyz") { if (allow({http::verb::get})) Readyz(std::move(call)); return; }
  if (path == "/metrics") { if (allow({http::verb::get})) Metrics(std::move(call)); return; }
  if (path == "/") { if (allow({http::verb::get})) StatusPage(std::move(call)); return; }
  if (path == "/v1/status") { if (allow({http::verb::get})) Status(std::move(call)); return; }
  if (path == "/v1/cluster/status") {
    if (allow({http::verb::get})) ClusterStatus(std::move(call));
    return;
  }
  if (path == "/v1/cluster/leader") {
    if (allow({http::verb::post})) LeaderTransfer(std::move(call));
    return;
  }
  if (path == "/v1/cluster/members") {
    if (!allow({http::verb::get, http::verb::post})) return;
    if (method == http::verb::get) return MembersList(std::move(call));
    return MembersAdd(std::move(call));
  }
  constexpr std::string_view kMembersPrefix = "/v1/cluster/members/";
  if (path.substr(0, kMembersPrefix.size()) == kMembersPrefix) {
    std::string_view rest = path.substr(kMembersPrefix.size());
    bool promote = false;
    constexpr std::string_view kPromote = "/promote";
    if (rest.size() > kPromote.size() && rest.substr(rest.size() - kPromote.size()) == kPromote) {
      promote = true;
      rest = rest.substr(0, rest.size() - kPromote.size());
    }
    const auto id = ParseUint64(rest);
    if (!id || *id == 0) {
      return ex->Reply(Error(http::status::bad_request, "bad_request",
                             "the member id in the path must be a positive decimal number"));
    }
    call.member = *id;
    if (promote) {
      if (allow({http::verb::post})) MembersPromote(std::move(call));
    } else {
      if (allow({http::verb::delete_})) MembersRemove(std::move(call));
    }
    return;
  }
  constexpr std::string_view kNsPrefix = "/v1/ns/";
  if (path.substr(0, kNsPrefix.size()) == kNsPrefix) {
    const std::string_view rest = path.substr(kNsPrefix.size());
    const size_t slash = rest.find('/');
    if (slash != std::string_view::npos) {
      const auto ns = PercentDecode(rest.substr(0, slash));
      const std::string_view tail = rest.substr(slash + 1);
      if (!ns) {
        return ex->Reply(Error(http::status::bad_request, "bad_request",
                               "the namespace has a malformed %-escape"));
      }
      if (ns->empty() || ns->size() > kv::kMaxNamespaceBytes) {
        return ex->Reply(Error(http::status::bad_request, "bad_request",
                               "a namespace is 1 to " + std::to_string(kv::kMaxNamespaceBytes) +
                                   " bytes"));
      }
      if (ns->rfind("confman.", 0) == 0) {
        return ex->Reply(Error(http::status::bad_request, "bad_request",
                               "namespaces starting with 'confman.' are reserved for the "
                               "cluster's own records; choose another namespace"));
      }
      call.ns = *ns;
      if (tail == "kv") {
        if (allow({http::verb::get})) KvList(std::move(call));
        return;
      }
      if (tail == "watch") {
        if (allow({http::verb::get})) Watch(std::move(call));
        return;
      }
      if (tail == "audit") {
        if (allow({http::verb::get})) Audit(std::move(call));
        return;
      }
      if (tail.substr(0, 3) == "kv/") {
        const auto key = PercentDecode(tail.substr(3));
        if (!key) {
          return ex->Reply(Error(http::status::bad_request, "bad_request",
                                 "the key has a malformed %-escape"));
        }
        if (key->empty() || key->size() > kv::kMaxKeyBytes) {
          return ex->Reply(Error(http::status::bad_request, "bad_request",
                                 "a key is 1 to " + std::to_string(kv::kMaxKeyBytes) + " bytes"));
        }
        call.key = *key;
        if (!allow({http::verb::get, http::verb::put, http::verb::delete_})) return;
        if (method == http::verb::get) return KvGet(std::move(call));
        if (method == http::verb::put) return KvPut(std::move(call));
        return KvDelete(std::move(call));
      }
    }
  }
  ex->Reply(Error(http::status::not_found, "no_route",
                  "no route for " + std::string(path) + "; see HTTP_API.md for the routes"));
}

// --- Client URLs and background work --------------------------------------------

std::string App::ClientUrlOf(raft::MemberId id) const {
  if (id == config_.id) return client_url_;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = client_urls_.find(id);
    if (it != client_urls_.end()) return it->second;
  }
  // Published since the last background refresh (a cluster that has just
  // started): a local read finds it without waiting for the next one.
  auto got = node_->Get(kUrlNamespace, std::to_string(id),
                        {.consistency = ReadConsistency::kLocal});
  return got.ok() ? got->value : std::string();
}

std::map<raft::MemberId, std::string> App::ClientUrls() const {
  std::map<raft::MemberId, std::string> out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    out = client_urls_;
  }
  kv::ListRequest request{.ns = kUrlNamespace, .limit = 10000};
  auto page = node_->List(request, {.consistency = ReadConsistency::kLocal});
  if (page.ok()) {
    for (const auto& item : page->items) {
      if (auto id = ParseUint64(item.key)) out[*id] = item.value;
    }
  }
  out[config_.id] = client_url_;
  return out;
}

std::map<raft::MemberId, std::string> App::PeerAddresses() const {
  std::lock_guard<std::mutex> lock(mu_);
  auto out = config_.initial_peers;
  for (const auto& [id, address] : peer_addresses_) out[id] = address;
  out[config_.id] = config_.peer_address;
  return out;
}

void App::RefreshMaps() {
  auto read_map = [this](const char* ns) {
    std::map<raft::MemberId, std::string> out;
    kv::ListRequest request{.ns = ns, .limit = 10000};
    auto page = node_->List(request, {.consistency = ReadConsistency::kLocal});
    if (!page.ok()) return out;
    for (const auto& item : page->items) {
      if (auto id = ParseUint64(item.key)) out[*id] = item.value;
    }
    return out;
  };
  auto urls = read_map(kUrlNamespace);
  auto peers = read_map(kMembersNamespace);
  {
    std::lock_guard<std::mutex> lock(mu_);
    client_urls_ = std::move(urls);
    for (auto& [id, address] : peers) peer_addresses_[id] = address;
  }
  NoteLeader();
}

void App::NoteLeader() {
  const NodeStatus status = node_->GetStatus();
  std::lock_guard<std::mutex> lock(mu_);
  if (status.leader != last_seen_leader_) {
    last_seen_leader_ = status.leader;
    const auto now = std::chrono::system_clock::now().time_since_epoch();
    leader_history_.push_back(
        {std::chrono::duration_cast<std::chrono::seconds>(now).count(), status.leader, status.term});
    if (leader_history_.size() > 10) leader_history_.erase(leader_history_.begin());
  }
}

void App::StartBackground() {
  background_ = std::thread([this] { BackgroundLoop(); });
}

void App::StopBackground() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_background_ = true;
  }
  cv_.notify_all();
  if (background_.joinable()) background_.join();
}

void App::BackgroundLoop() {
  bool published = false;
  int attempts = 0;
  for (uint64_t round = 0;; ++round) {
    // The leader is sampled often (the status page lists its changes);
    // the URL and address records, which rarely change, less often.
    if (round % 5 == 0) {
      RefreshMaps();
    } else {
      NoteLeader();
    }
    if (!published && round % 3 == 0) {
      const std::string key = std::to_string(config_.id);
      // A local read: a linearizable one made before the first election
      // would wait for a leader, and a stale answer only costs one
      // redundant write.
      auto current = node_->Get(kUrlNamespace, key, {.consistency = ReadConsistency::kLocal});
      if (current.ok() && current->value == client_url_) {
        published = true;
      } else if (current.ok() || absl::IsNotFound(current.status())) {
        auto put = node_->Put(kUrlNamespace, key, client_url_,
                              {.actor = "confman-node:" + key, .content_type = "text/plain"});
        if (put.ok()) {
          published = true;
          log_->Event(LogLevel::kInfo, "http", "published this member's client URL",
                      {{"url", client_url_}, {"revision", std::to_string(*put)}});
        } else if (++attempts % 20 == 0) {
          log_->Event(LogLevel::kWarning, "http", "still cannot publish this member's client URL",
                      {{"error", put.status().ToString()}});
        }
      }
    }
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(published ? 200 : 100),
                 [this] { return stop_background_; });
    if (stop_background_) return;
  }
}

uint64_t App::LocalModRevision(const std::string& ns, const std::string& key) const {
  auto got = node_->Get(ns, key, {.consistency = ReadConsistency::kLocal});
  return got.ok() ? got->mod_revision : 0;
}

// --- Health and status -------------------------------------------------------------

Json App::StatusJson() const {
  const NodeStatus s = node_->GetStatus();
  Json progress = Json::array();
  for (const auto& p : s.progress) {
    progress.push_back({{"id", p.id},
                        {"voter", p.voter},
                        {"state", ProgressStateName(p.state)},
                        {"match_index", p.match},
                        {"lag_entries", s.last_index > p.match ? s.last_index - p.match : 0},
                        {"recently_active", p.recently_active}});
  }
  const auto uptime = std::chrono::duration_cast<std::chrono::seconds>(
      std::chrono::steady_clock::now() - started_);
  Json out = {{"id", config_.id},
              {"cluster_id", config_.cluster_id},
              {"role", raft::RoleName(s.role)},
              {"term", s.term},
              {"leader", s.leader},
              {"leader_url", s.leader == raft::kNoMember ? Json(nullptr) : Json(ClientUrlOf(s.leader))},
              {"client_url", client_url_},
              {"peer_address", config_.peer_address},
              {"commit_index", s.commit_index},
              {"applied_index", s.applied_index},
              {"last_index", s.last_index},
              {"revision", s.revision},
              {"leader_changes", s.leader_changes},
              {"voters", s.membership.voters},
              {"learners", s.membership.learners},
              {"progress", progress},
              {"storage", {{"data_dir_bytes", DirectoryBytes(config_.data_dir)},
                           {"state_bytes", DirectoryBytes(config_.data_dir + "/state")}}},
              {"storage_error", StatusOrNull(s.storage_error)},
              {"halted", StatusOrNull(s.halted)},
              {"pid", static_cast<int64_t>(::getpid())},
              {"uptime_seconds", uptime.count()}};
  if (s.membership.joint()) out["voters_outgoing"] = s.membership.voters_outgoing;
  return out;
}

void App::Status(Call call) {
  auto ex = call.ex;
  OnWorker(ex, [this, ex] { ex->Reply(JsonResponse(http::status::ok, StatusJson())); });
}

void App::Livez(Call call) {
  const NodeStatus s = node_->GetStatus();
  Response response{http::status::ok, 11};
  response.set(http::field::content_type, "text/plain");
  if (!s.halted.ok()) {
    response.result(http::status::service_unavailable);
    response.body() = "halted: " + s.halted.ToString() + "\n";
  } else {
    response.body() = "ok\n";
  }
  call.ex->Reply(std::move(response));
}

void App::Readyz(Call call) {
  const NodeStatus s = node_->GetStatus();
  std::string reason;
  if (!s.halted.ok()) {
    reason = "the member halted: " + s.halted.ToString();
  } else if (s.leader == raft::kNoMember) {
    reason = "no leader is known (an election may be running, or this member has not joined yet)";
  } else if (s.commit_index > s.applied_index &&
             s.commit_index - s.applied_index > config_.ready_max_lag) {
    reason = "applied index " + std::to_string(s.applied_index) + " is " +
             std::to_string(s.commit_index - s.applied_index) +
             " entries behind the commit index (--ready-max-lag " +
             std::to_string(config_.ready_max_lag) + ")";
  }
  if (!reason.empty()) {
    return call.ex->Reply(Error(http::status::service_unavailable, "not_ready", reason));
  }
  Response response{http::status::ok, 11};
  response.set(http::field::content_type, "text/plain");
  response.body() = "ok\n";
  call.ex->Reply(std::move(response));
}

void App::Metrics(Call call) {
  const NodeStatus s = node_->GetStatus();
  std::vector<PrometheusMetrics::Gauge> gauges = {
      {"node.term", double(s.term)},
      {"node.is_leader", s.role == raft::Role::kLeader ? 1.0 : 0.0},
      {"node.leader_id", double(s.leader)},
      {"node.commit_index", double(s.commit_index)},
      {"node.applied_index", double(s.applied_index)},
      {"node.last_index", double(s.last_index)},
      {"node.revision", double(s.revision)},
      {"node.state_bytes", double(DirectoryBytes(config_.data_dir + "/state"))},
      {"node.halted", s.halted.ok() ? 0.0 : 1.0},
      {"node.storage_failed", s.storage_error.ok() ? 0.0 : 1.0},
      {"http.open_connections", double(server_ ? server_->open_connections() : 0)},
      {"http.open_watchers", double(watchers_.load())},
  };
  Response response{http::status::ok, 11};
  response.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
  response.body() = metrics_->Render(gauges);
  call.ex->Reply(std::move(response));
}

}  // namespace confman::server
