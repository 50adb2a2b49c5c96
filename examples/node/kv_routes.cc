// Keys and values: GET/PUT/DELETE of one key (JSON or ?raw, ETag, CAS via
// if_revision, exactly-once via X-Confman-Request) and the paged listing.
// Gets and writes use the Node's async forms and answer from its callback;
// listings block, so they run on the worker pool.
#include <string>

#include "app.h"

namespace confman::server {
namespace {

constexpr size_t kMaxActorBytes = 128;

// Fills the session, actor and compare-and-set fields shared by PUT and
// DELETE from the request; false (with `error`) when a header or parameter
// is malformed.
bool ParseWrite(const Call& call, kv::Command* command, WriteOptions* options,
                std::string* error) {
  const Request& req = call.ex->request();
  if (auto it = call.query.find("if_revision"); it != call.query.end()) {
    const auto revision = ParseUint64(it->second);
    if (!revision) {
      *error = "if_revision must be a decimal revision (0: the key must not exist)";
      return false;
    }
    command->expected_revision = *revision;
  }
  const auto session = req["X-Confman-Request"];
  if (!session.empty()) {
    const std::string_view text(session.data(), session.size());
    const size_t colon = text.find(':');
    const auto client = ParseUint64(text.substr(0, colon));
    const auto sequence = colon == std::string_view::npos
                              ? std::optional<uint64_t>()
                              : ParseUint64(text.substr(colon + 1));
    if (!client || !sequence || *client == 0 || *sequence == 0) {
      *error = "X-Confman-Request must be <client_id>:<sequence>, decimal, client_id != 0 and "
               "sequence >= 1";
      return false;
    }
    command->client_id = *client;
    command->sequence = *sequence;
    const auto lowest = req["X-Confman-Lowest-Unanswered"];
    if (!lowest.empty()) {
      const auto value = ParseUint64(std::string_view(lowest.data(), lowest.size()));
      if (!value) {
        *error = "X-Confman-Lowest-Unanswered must be a decimal sequence number";
        return false;
      }
      command->lowest_unanswered = *value;
    }
  }
  const auto actor = req["X-Confman-Actor"];
  if (actor.size() > kMaxActorBytes) {
    *error = "X-Confman-Actor is longer than " + std::to_string(kMaxActorBytes) + " bytes";
    return false;
  }
  options->actor = actor.empty() ? "http:" + call.ex->peer_ip() : std::string(actor);
  return true;
}

}  // namespace

void App::KvGet(Call call) {
  ReadOptions read;
  if (!ParseConsistency(call, &read)) {
    return call.ex->Reply(Error(http::status::bad_request, "bad_request",
                                "consistency must be linearizable, lease or local"));
  }
  const bool raw = HasParam(call, "raw");
  const std::string if_none_match(call.ex->request()[http::field::if_none_match]);
  auto ex = call.ex;
  node_->GetAsync(call.ns, call.key, read,
                  [this, ex, raw, if_none_match](absl::StatusOr<kv::KeyValue> got) {
    if (!got.ok()) return ex->Reply(FromStatus(got.status(), OpKind::kRead));
    const std::string etag = "\"" + std::to_string(got->mod_revision) + "\"";
    if (!if_none_match.empty() &&
        (if_none_match == "*" || if_none_match.find(etag) != std::string::npos)) {
      Response response{http::status::not_modified, 11};
      response.set(http::field::etag, etag);
      return ex->Reply(std::move(response));
    }
    Response response{http::status::ok, 11};
    response.set(http::field::etag, etag);
    if (raw) {
      response.set(http::field::content_type, got->content_type.empty()
                                                  ? "application/octet-stream"
                                                  : got->content_type);
      response.set("X-Confman-Create-Revision", std::to_string(got->create_revision));
      response.set("X-Confman-Mod-Revision", std::to_string(got->mod_revision));
      response.set("X-Confman-Version", std::to_string(got->version));
      response.body() = std::move(got->value);
    } else {
      response.set(http::field::content_type, "application/json");
      response.body() = DumpJson(KeyValueJson(*got, true)) + "\n";
    }
    ex->Reply(std::move(response));
  });
}

void App::KvPut(Call call) {
  const Request& req = call.ex->request();
  kv::Command command{.kind = kv::Command::Kind::kPut, .ns = call.ns, .key = call.key};
  WriteOptions options;
  std::string error;
  if (!ParseWrite(call, &command, &options, &error)) {
    return call.ex->Reply(Error(http::status::bad_request, "bad_request", error));
  }
  const auto content_type = req[http::field::content_type];
  if (content_type.size() > kv::kMaxContentTypeBytes) {
    return call.ex->Reply(Error(http::status::bad_request, "bad_request",
                                "Content-Type is longer than " +
                                    std::to_string(kv::kMaxContentTypeBytes) + " bytes"));
  }
  options.content_type = std::string(content_type);
  command.content_type = options.content_type;
  command.value = req.body();
  const bool cas = command.expected_revision.has_value();
  auto ex = call.ex;
  node_->WriteAsync(std::move(command), options,
                    [this, ex, cas, ns = call.ns, key = call.key](absl::StatusOr<uint64_t> r) {
    if (r.ok()) return ex->Reply(JsonResponse(http::status::ok, Json{{"revision", *r}}));
    if (cas && absl::IsFailedPrecondition(r.status())) {
      // The current revision needs a (local) read, which must not run on
      // the Node's apply thread that called us.
      const std::string message(r.status().message());
      return OnWorker(ex, [this, ex, ns, key, message] {
        ex->Reply(Error(http::status::precondition_failed, "revision_mismatch",
                        message,
                        Json{{"current_revision", LocalModRevision(ns, key)}}));
      });
    }
    ex->Reply(FromStatus(r.status(), OpKind::kWrite));
  });
}

void App::KvDelete(Call call) {
  kv::Command command{.kind = kv::Command::Kind::kDelete, .ns = call.ns, .key = call.key};
  WriteOptions options;
  std::string error;
  if (!ParseWrite(call, &command, &options, &error)) {
    return call.ex->Reply(Error(http::status::bad_request, "bad_request", error));
  }
  if (command.expected_revision && *command.expected_revision == 0) {
    return call.ex->Reply(Error(http::status::bad_request, "bad_request",
                                "if_revision=0 means 'absent', which a delete cannot require; "
                                "pass the key's mod_revision"));
  }
  const bool cas = command.expected_revision.has_value();
  auto ex = call.ex;
  node_->WriteAsync(std::move(command), options,
                    [this, ex, cas, ns = call.ns, key = call.key](absl::StatusOr<uint64_t> r) {
    if (r.ok()) return ex->Reply(JsonResponse(http::status::ok, Json{{"revision", *r}}));
    if (cas && absl::IsFailedPrecondition(r.status())) {
      const std::string message(r.status().message());
      return OnWorker(ex, [this, ex, ns, key, message] {
        ex->Reply(Error(http::status::precondition_failed, "revision_mismatch",
                        message,
                        Json{{"current_revision", LocalModRevision(ns, key)}}));
      });
    }
    ex->Reply(FromStatus(r.status(), OpKind::kWrite));
  });
}

void App::KvList(Call call) {
  ReadOptions read;
  if (!ParseConsistency(call, &read)) {
    return call.ex->Reply(Error(http::status::bad_request, "bad_request",
                                "consistency must be linearizable, lease or local"));
  }
  kv::ListRequest request{.ns = call.ns};
  if (auto it = call.query.find("prefix"); it != call.query.end()) request.prefix = it->second;
  if (auto it = call.query.find("limit"); it != call.query.end()) {
    const auto limit = ParseUint64(it->second);
    if (!limit || *limit < 1 || *limit > 10000) {
      return call.ex->Reply(Error(http::status::bad_request, "bad_request",
                                  "limit must be between 1 and 10000"));
    }
    request.limit = static_cast<uint32_t>(*limit);
  }
  if (auto it = call.query.find("page_token"); it != call.query.end() && !it->second.empty()) {
    const auto start_after = Base64UrlDecode(it->second);
    if (!start_after) {
      return call.ex->Reply(Error(http::status::bad_request, "bad_request",
                                  "page_token is not a token this API returned"));
    }
    request.start_after = *start_after;
  }
  if (auto it = call.query.find("keys_only"); it != call.query.end()) {
    if (it->second == "true" || it->second == "1" || it->second.empty()) {
      request.keys_only = true;
    } else if (it->second != "false" && it->second != "0") {
      return call.ex->Reply(Error(http::status::bad_request, "bad_request",
                                  "keys_only must be true or false"));
    }
  }
  auto ex = call.ex;
  OnWorker(ex, [this, ex, request, read] {
    auto page = node_->List(request, read);
    if (!page.ok()) return ex->Reply(FromStatus(page.status(), OpKind::kRead));
    Json items = Json::array();
    for (const auto& item : page->items) {
      Json entry = KeyValueJson(item, !request.keys_only);
      entry.erase("ns");
      items.push_back(std::move(entry));
    }
    Json body = {{"items", std::move(items)}, {"revision", page->revision}};
    if (page->more) body["next_page_token"] = Base64UrlEncode(page->next_start_after);
    ex->Reply(JsonResponse(http::status::ok, body));
  });
}

}  // namespace confman::server
