// Watches and the audit trail. A watch is a long-lived chunked response
// (NDJSON, or server-sent events): the Node's watch callbacks run on its
// watch threads and must not block, so each event is handed to the
// connection through the stream's bounded queue; a client that falls that
// far behind gets a final error line naming where to resume, and a client
// that disconnects cancels the Node watch. The audit route pages through
// Node::History on the worker pool, filtering by namespace and key with a
// bounded scan per request.
#include <algorithm>
#include <mutex>

#include "app.h"

namespace confman::server {
namespace {

constexpr uint64_t kDefaultProgressMs = 5000;
constexpr uint64_t kMinProgressMs = 100;
// Changes an audit request reads from the history at most, matching or
// not, so a rare key in a busy cluster cannot turn one request into a scan
// of the whole trail; the client continues from next_from_revision.
constexpr uint64_t kAuditMaxScan = 20000;
constexpr uint32_t kAuditPage = 1000;

// What one stream has delivered, shared by the Node's callbacks.
struct WatchState {
  std::mutex mu;
  // Weak: the connection's pending I/O owns it, so the Node's callback
  // never keeps a connection (and its socket) alive past the server.
  std::weak_ptr<StreamWriter> stream;
  bool sse = false;
  uint64_t delivered = 0;  // Every matching change through this was queued.
  bool ended = false;
};

// The Node watch, cancelled when the stream closes.
struct WatchHolder {
  std::mutex mu;
  std::unique_ptr<WatchHandle> handle;
  bool closed = false;
};

std::string Frame(bool sse, const char* type, const OrderedJson& body,
                  std::optional<uint64_t> id) {
  if (!sse) return DumpJson(body) + "\n";
  std::string out = std::string("event: ") + type + "\n";
  if (id) out += "id: " + std::to_string(*id) + "\n";
  out += "data: " + DumpJson(body) + "\n\n";
  return out;
}

std::string ErrorFrame(bool sse, const std::string& code, const std::string& message,
                       uint64_t resume_from) {
  OrderedJson error = OrderedJson::object();
  error["code"] = code;
  error["message"] = message;
  error["resume_from_revision"] = resume_from;
  OrderedJson body = OrderedJson::object();
  body["type"] = "error";
  body["error"] = std::move(error);
  return Frame(sse, "error", body, std::nullopt);
}

// Ends the stream with an error line; the caller holds state->mu.
void EndLocked(WatchState& state, const std::string& code, const std::string& message) {
  if (state.ended) return;
  state.ended = true;
  if (auto stream = state.stream.lock()) {
    stream->Finish(ErrorFrame(state.sse, code, message, state.delivered + 1));
  }
}

void Deliver(WatchState& state, const char* type, const OrderedJson& body, uint64_t revision) {
  std::lock_guard<std::mutex> lock(state.mu);
  if (state.ended) return;
  auto stream = state.stream.lock();
  if (!stream) {
    state.ended = true;
    return;
  }
  if (!stream->Push(Frame(state.sse, type, body, revision))) {
    EndLocked(state, "resource_exhausted",
              "the client read this stream too slowly and fell too far behind; "
              "watch again from resume_from_revision");
    return;
  }
  state.delivered = std::max(state.delivered, revision);
}

const char* WatchEndCode(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOutOfRange: return "compacted";
    case absl::StatusCode::kResourceExhausted: return "resource_exhausted";
    case absl::StatusCode::kUnavailable: return "unavailable";
    default: return "internal";
  }
}

}  // namespace

void App::Watch(Call call) {
  const Request& req = call.ex->request();
  std::string prefix;
  std::string key;
  if (auto it = call.query.find("prefix"); it != call.query.end()) prefix = it->second;
  if (auto it = call.query.find("key"); it != call.query.end()) key = it->second;
  if (!prefix.empty() && !key.empty()) {
    return call.ex->Reply(Error(http::status::bad_request, "bad_request",
                                "give prefix or key, not both"));
  }
  std::optional<uint64_t> from;
  if (auto it = call.query.find("from_revision"); it != call.query.end()) {
    from = ParseUint64(it->second);
    if (!from) {
      return call.ex->Reply(Error(http::status::bad_request, "bad_request",
                                  "from_revision must be a decimal revision"));
    }
  }
  uint64_t progress_ms = kDefaultProgressMs;
  if (auto it = call.query.find("progress_ms"); it != call.query.end()) {
    const auto value = ParseUint64(it->second);
    if (!value) {
      return call.ex->Reply(Error(http::status::bad_request, "bad_request",
                                  "progress_ms must be a number of milliseconds (at least 100)"));
    }
    progress_ms = std::max(*value, kMinProgressMs);
  }
  const std::string_view accept(req[http::field::accept].data(), req[http::field::accept].size());
  const bool sse = accept.find("text/event-stream") != std::string_view::npos;
  if (sse && !from) {
    const auto last_id = req["Last-Event-ID"];
    if (!last_id.empty()) {
      const auto value = ParseUint64(std::string_view(last_id.data(), last_id.size()));
      if (!value) {
        return call.ex->Reply(Error(http::status::bad_request, "bad_request",
                                    "Last-Event-ID must be a revision"));
      }
      from = *value + 1;
    }
  }
  if (watchers_.load() >= config_.max_watchers) {
    return call.ex->Reply(Error(http::status::too_many_requests, "too_many_watchers",
                                "this member already serves " + std::to_string(config_.max_watchers) +
                                    " watches (--max-watchers); retry later or use another member"));
  }
  auto ex = call.ex;
  OnWorker(ex, [this, ex, ns = call.ns, prefix, key, from, progress_ms, sse] {
    uint64_t after = 0;
    if (from) {
      after = *from == 0 ? 0 : *from - 1;
      auto compacted = node_->CompactedRevision();
      if (!compacted.ok()) return ex->Reply(FromStatus(compacted.status(), OpKind::kRead));
      if (after < *compacted) {
        return ex->Reply(Error(http::status::gone, "compacted",
                               "revisions up to " + std::to_string(*compacted) +
                                   " were dropped from the history; list the keys again and watch "
                                   "from compacted_revision + 1",
                               Json{{"compacted_revision", *compacted}}));
      }
    } else {
      after = node_->GetStatus().revision;
    }
    if (watchers_.fetch_add(1) >= config_.max_watchers) {
      watchers_.fetch_sub(1);
      return ex->Reply(Error(http::status::too_many_requests, "too_many_watchers",
                             "this member already serves its --max-watchers watches; retry later"));
    }
    Response head{http::status::ok, 11};
    head.set(http::field::content_type, sse ? "text/event-stream" : "application/x-ndjson");
    head.set(http::field::cache_control, "no-cache");
    auto state = std::make_shared<WatchState>();
    state->sse = sse;
    state->delivered = after;
    auto holder = std::make_shared<WatchHolder>();
    auto stream = ex->StartStream(std::move(head), config_.watch_queue_lines);
    state->stream = stream;
    stream->SetOnClose([this, holder] {
      watchers_.fetch_sub(1);
      std::unique_ptr<WatchHandle> handle;
      {
        std::lock_guard<std::mutex> lock(holder->mu);
        holder->closed = true;
        handle = std::move(holder->handle);
      }
      if (handle) handle->Cancel();
    });
    WatchRequest request{.ns = ns, .prefix = prefix, .after_revision = after, .key = key};
    request.progress_interval = std::chrono::milliseconds(progress_ms);
    request.on_progress = [state](uint64_t revision) {
      OrderedJson body = OrderedJson::object();
      body["type"] = "progress";
      body["revision"] = revision;
      Deliver(*state, "progress", body, revision);
    };
    auto handle = node_->Watch(request, [state](absl::StatusOr<kv::Change> change) {
      if (!change.ok()) {
        std::lock_guard<std::mutex> lock(state->mu);
        EndLocked(*state, WatchEndCode(change.status()), std::string(change.status().message()));
        return;
      }
      OrderedJson body = OrderedJson::object();
      body["type"] = "change";
      body["revision"] = change->revision;
      body["op"] = change->op == kv::ChangeOp::kPut ? "put" : "delete";
      body["ns"] = change->ns;
      body["key"] = change->key;
      body["old_revision"] = change->old_revision;
      body["new_revision"] = change->new_revision;
      body["actor"] = change->actor;
      body["time_unix_micros"] = change->time_unix_micros;
      Deliver(*state, "change", body, change->revision);
    });
    if (!handle.ok()) {
      std::lock_guard<std::mutex> lock(state->mu);
      EndLocked(*state, WatchEndCode(handle.status()), std::string(handle.status().message()));
      return;
    }
    std::unique_ptr<WatchHandle> late;
    {
      std::lock_guard<std::mutex> lock(holder->mu);
      if (holder->closed) {
        late = std::move(*handle);  // The client left while the watch started.
      } else {
        holder->handle = std::move(*handle);
      }
    }
    if (late) late->Cancel();
  });
}

void App::Audit(Call call) {
  ReadOptions read;
  if (!ParseConsistency(call, &read)) {
    return call.ex->Reply(Error(http::status::bad_request, "bad_request",
                                "consistency must be linearizable, lease or local"));
  }
  std::string key;
  if (auto it = call.query.find("key"); it != call.query.end()) key = it->second;
  std::optional<uint64_t> from;
  if (auto it = call.query.find("from_revision"); it != call.query.end()) {
    from = ParseUint64(it->second);
    if (!from) {
      return call.ex->Reply(Error(http::status::bad_request, "bad_request",
                                  "from_revision must be a decimal revision"));
    }
  }
  uint64_t limit = 100;
  if (auto it = call.query.find("limit"); it != call.query.end()) {
    const auto value = ParseUint64(it->second);
    if (!value || *value < 1 || *value > 1000) {
      return call.ex->Reply(Error(http::status::bad_request, "bad_request",
                                  "limit must be between 1 and 1000"));
    }
    limit = *value;
  }
  auto ex = call.ex;
  OnWorker(ex, [this, ex, ns = call.ns, key, from, limit, read] {
    auto compacted_error = [&](const absl::Status& status) {
      auto compacted = node_->CompactedRevision();
      Json extra = Json::object();
      if (compacted.ok()) extra["compacted_revision"] = *compacted;
      return Error(http::status::gone, "compacted",
                   std::string(status.message()) +
                       "; continue from compacted_revision + 1",
                   extra);
    };
    uint64_t after = 0;
    if (from) {
      after = *from == 0 ? 0 : *from - 1;
    } else {
      auto compacted = node_->CompactedRevision();
      if (!compacted.ok()) return ex->Reply(FromStatus(compacted.status(), OpKind::kRead));
      after = *compacted;
    }
    Json changes = Json::array();
    uint64_t scanned = 0;
    uint64_t revision = 0;
    uint64_t next_from = 0;
    while (true) {
      auto page = node_->History(after, kAuditPage, read);
      if (!page.ok()) {
        if (absl::IsOutOfRange(page.status())) return ex->Reply(compacted_error(page.status()));
        return ex->Reply(FromStatus(page.status(), OpKind::kRead));
      }
      revision = page->revision;
      if (page->changes.empty()) {
        next_from = std::max(after, page->revision) + 1;
        break;
      }
      bool full = false;
      for (const auto& change : page->changes) {
        after = change.revision;
        if (change.ns == ns && (key.empty() || change.key == key)) {
          changes.push_back(ChangeJson(change));
          if (changes.size() >= limit) {
            full = true;
            break;
          }
        }
      }
      scanned += page->changes.size();
      if (full || scanned >= kAuditMaxScan) {
        next_from = after + 1;
        break;
      }
    }
    ex->Reply(JsonResponse(http::status::ok, Json{{"changes", std::move(changes)},
                                                  {"revision", revision},
                                                  {"next_from_revision", next_from}}));
  });
}

}  // namespace confman::server
