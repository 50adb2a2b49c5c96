// Cluster routes: the member list, membership changes and leadership
// transfer (forwarded by a follower to the leader's client URL, with the
// client token), and /v1/cluster/status, which gathers every member's
// /v1/status. All of them block on the Node or the network, so they run
// on the worker pool.
#include <algorithm>
#include <future>
#include <set>

#include "app.h"
#include "http_client.h"

namespace confman::server {
namespace {

constexpr char kForwardedHeader[] = "X-Confman-Forwarded";
constexpr std::chrono::milliseconds kPeerStatusTimeout{500};

bool IsMember(const raft::Membership& m, raft::MemberId id) {
  auto has = [id](const std::vector<raft::MemberId>& v) {
    return std::find(v.begin(), v.end(), id) != v.end();
  };
  return has(m.voters) || has(m.voters_outgoing) || has(m.learners);
}

// Parses a JSON object body; nullopt after answering 400.
std::optional<Json> BodyObject(App& app, const std::shared_ptr<Exchange>& ex) {
  std::string error;
  auto body = ParseJson(ex->request().body(), &error);
  if (!body || !body->is_object()) {
    ex->Reply(app.Error(http::status::bad_request, "bad_request",
                        body ? "the body must be a JSON object" : error));
    return std::nullopt;
  }
  return body;
}

std::optional<uint64_t> PositiveId(const Json& body, const char* field) {
  auto it = body.find(field);
  if (it == body.end() || !it->is_number_unsigned()) return std::nullopt;
  const uint64_t id = it->get<uint64_t>();
  if (id == 0) return std::nullopt;
  return id;
}

}  // namespace

bool App::ShouldForward(const Call& call) {
  const NodeStatus status = node_->GetStatus();
  if (status.role == raft::Role::kLeader) return false;
  if (status.leader == raft::kNoMember) {
    call.ex->Reply(Error(http::status::service_unavailable, "no_leader",
                         "no leader is known (an election may be running); retry shortly"));
    return true;
  }
  if (!call.ex->request()[kForwardedHeader].empty()) {
    // Forwarded to us as the leader, but leadership moved meanwhile: the
    // client retries rather than the request bouncing between members.
    call.ex->Reply(Error(http::status::service_unavailable, "unavailable",
                         "leadership moved while the request was forwarded; retry"));
    return true;
  }
  ForwardToLeader(call);
  return true;
}

void App::ForwardToLeader(const Call& call) {
  const raft::MemberId leader = node_->GetStatus().leader;
  const std::string url = ClientUrlOf(leader);
  if (url.empty()) {
    return call.ex->Reply(Error(http::status::service_unavailable, "unavailable",
                                "the leader (member " + std::to_string(leader) +
                                    ") has not published its client URL yet; retry shortly"));
  }
  const Request& req = call.ex->request();
  std::vector<std::pair<std::string, std::string>> headers = {
      {kForwardedHeader, std::to_string(config_.id)},
      {"Content-Type", "application/json"}};
  if (!config_.token.empty()) headers.push_back({"Authorization", "Bearer " + config_.token});
  auto answer = HttpCall(url, std::string(req.method_string()), std::string(req.target()), req.body(),
                         headers, config_.request_timeout + std::chrono::seconds(2));
  if (!answer.ok()) {
    return call.ex->Reply(Error(http::status::service_unavailable, "unavailable",
                                "cannot reach the leader at " + url + ": " +
                                    std::string(answer.status().message()) + "; retry"));
  }
  Response response{static_cast<http::status>(answer->status), 11};
  response.set(http::field::content_type,
               answer->content_type.empty() ? "application/json" : answer->content_type);
  response.body() = std::move(answer->body);
  call.ex->Reply(std::move(response));
}

void App::MembersList(Call call) {
  auto ex = call.ex;
  OnWorker(ex, [this, ex] {
    const NodeStatus status = node_->GetStatus();
    const auto urls = ClientUrls();
    const auto peers = PeerAddresses();
    std::set<raft::MemberId> voters(status.membership.voters.begin(), status.membership.voters.end());
    voters.insert(status.membership.voters_outgoing.begin(), status.membership.voters_outgoing.end());
    std::vector<std::pair<raft::MemberId, bool>> all;
    for (auto id : voters) all.push_back({id, true});
    for (auto id : status.membership.learners) all.push_back({id, false});
    Json members = Json::array();
    for (const auto& [id, voter] : all) {
      Json m = {{"id", id}, {"voter", voter}};
      auto p = peers.find(id);
      m["peer_address"] = p == peers.end() ? Json(nullptr) : Json(p->second);
      auto u = urls.find(id);
      m["client_url"] = u == urls.end() ? Json(nullptr) : Json(u->second);
      if (status.role == raft::Role::kLeader) {
        if (id == config_.id) {
          m["match_index"] = status.last_index;
          m["lag_entries"] = 0;
          m["state"] = "leader";
        }
        for (const auto& progress : status.progress) {
          if (progress.id != id) continue;
          m["match_index"] = progress.match;
          m["lag_entries"] = status.last_index > progress.match ? status.last_index - progress.match : 0;
          m["state"] = progress.state == raft::MemberProgress::State::kReplicate ? "replicate"
                       : progress.state == raft::MemberProgress::State::kSnapshot ? "snapshot"
                                                                                   : "probe";
        }
      }
      members.push_back(std::move(m));
    }
    ex->Reply(JsonResponse(http::status::ok, Json{{"leader", status.leader}, {"members", members}}));
  });
}

void App::MembersAdd(Call call) {
  auto body = BodyObject(*this, call.ex);
  if (!body) return;
  const auto id = PositiveId(*body, "id");
  auto address = body->find("peer_address");
  if (!id || address == body->end() || !address->is_string() ||
      address->get<std::string>().find(':') == std::string::npos) {
    return call.ex->Reply(Error(http::status::bad_request, "bad_request",
                                "the body must be {\"id\": <positive integer>, "
                                "\"peer_address\": \"host:port\"}"));
  }
  const std::string peer = address->get<std::string>();
  OnWorker(call.ex, [this, call, id = *id, peer] {
    if (ShouldForward(call)) return;
    if (IsMember(node_->GetStatus().membership, id)) {
      return call.ex->Reply(Error(http::status::conflict, "conflict",
                                  "member " + std::to_string(id) + " is already in the cluster"));
    }
    absl::Status s = node_->AddLearner(id, peer);
    if (!s.ok()) return call.ex->Reply(FromStatus(s, OpKind::kMembership));
    log_->Event(LogLevel::kInfo, "cluster", "added a learner",
                {{"member", std::to_string(id)}, {"peer_address", peer}});
    call.ex->Reply(JsonResponse(http::status::created, Json{{"id", id}}));
  });
}

void App::MembersPromote(Call call) {
  OnWorker(call.ex, [this, call] {
    // The leader decides: a follower's view of the membership may lag.
    if (ShouldForward(call)) return;
    const NodeStatus status = node_->GetStatus();
    if (!IsMember(status.membership, call.member)) {
      return call.ex->Reply(Error(http::status::not_found, "not_found",
                                  "member " + std::to_string(call.member) + " is not in the cluster"));
    }
    absl::Status s = node_->PromoteToVoter(call.member);
    if (!s.ok()) return call.ex->Reply(FromStatus(s, OpKind::kMembership));
    log_->Event(LogLevel::kInfo, "cluster", "promoted a learner", {{"member", std::to_string(call.member)}});
    call.ex->Reply(JsonResponse(http::status::ok, Json{{"id", call.member}}));
  });
}

void App::MembersRemove(Call call) {
  OnWorker(call.ex, [this, call] {
    if (ShouldForward(call)) return;
    if (!IsMember(node_->GetStatus().membership, call.member)) {
      return call.ex->Reply(Error(http::status::not_found, "not_found",
                                  "member " + std::to_string(call.member) + " is not in the cluster"));
    }
    absl::Status s = node_->RemoveMember(call.member);
    if (!s.ok()) return call.ex->Reply(FromStatus(s, OpKind::kMembership));
    log_->Event(LogLevel::kInfo, "cluster", "removed a member", {{"member", std::to_string(call.member)}});
    call.ex->Reply(JsonResponse(http::status::ok, Json{{"id", call.member}}));
  });
}

void App::LeaderTransfer(Call call) {
  auto body = BodyObject(*this, call.ex);
  if (!body) return;
  const auto to = PositiveId(*body, "to");
  if (!to) {
    return call.ex->Reply(Error(http::status::bad_request, "bad_request",
                                "the body must be {\"to\": <member id>}"));
  }
  OnWorker(call.ex, [this, call, to = *to] {
    const NodeStatus status = node_->GetStatus();
    if (!IsMember(status.membership, to)) {
      return call.ex->Reply(Error(http::status::not_found, "not_found",
                                  "member " + std::to_string(to) + " is not in the cluster"));
    }
    if (status.leader == to) {
      return call.ex->Reply(JsonResponse(http::status::ok, Json{{"leader", to}}));
    }
    if (ShouldForward(call)) return;
    absl::Status s = node_->TransferLeadership(to);
    if (!s.ok()) return call.ex->Reply(FromStatus(s, OpKind::kMembership));
    log_->Event(LogLevel::kInfo, "cluster", "transferred leadership", {{"to", std::to_string(to)}});
    call.ex->Reply(JsonResponse(http::status::ok, Json{{"leader", to}}));
  });
}

Json App::CollectClusterStatus() const {
  const NodeStatus status = node_->GetStatus();
  std::set<raft::MemberId> ids(status.membership.voters.begin(), status.membership.voters.end());
  ids.insert(status.membership.voters_outgoing.begin(), status.membership.voters_outgoing.end());
  ids.insert(status.membership.learners.begin(), status.membership.learners.end());
  ids.insert(config_.id);
  const auto urls = ClientUrls();
  std::vector<std::pair<raft::MemberId, std::future<Json>>> pending;
  for (raft::MemberId id : ids) {
    if (id == config_.id) continue;
    auto url = urls.find(id);
    if (url == urls.end()) continue;
    // Each member is asked on its own thread so one slow member costs
    // the page at most one timeout.
    pending.push_back({id, std::async(std::launch::async, [this, id, base = url->second] {
      std::vector<std::pair<std::string, std::string>> headers;
      if (!config_.token.empty()) headers.push_back({"Authorization", "Bearer " + config_.token});
      auto answer = HttpCall(base, "GET", "/v1/status", "", headers, kPeerStatusTimeout);
      if (!answer.ok()) return Json{{"id", id}, {"error", std::string(answer.status().message())}};
      if (answer->status != 200) {
        return Json{{"id", id}, {"error", "HTTP " + std::to_string(answer->status)}};
      }
      std::string error;
      auto parsed = ParseJson(answer->body, &error);
      if (!parsed || !parsed->is_object()) return Json{{"id", id}, {"error", "not a status: " + error}};
      return *parsed;
    })});
  }
  Json members = Json::array();
  for (raft::MemberId id : ids) {
    if (id == config_.id) {
      members.push_back(StatusJson());
      continue;
    }
    auto it = std::find_if(pending.begin(), pending.end(),
                           [id](const auto& p) { return p.first == id; });
    if (it == pending.end()) {
      members.push_back({{"id", id}, {"error", "its client URL is not known yet"}});
    } else {
      members.push_back(it->second.get());
    }
  }
  return Json{{"members", members}};
}

void App::ClusterStatus(Call call) {
  auto ex = call.ex;
  OnWorker(ex, [this, ex] { ex->Reply(JsonResponse(http::status::ok, CollectClusterStatus())); });
}

}  // namespace confman::server
