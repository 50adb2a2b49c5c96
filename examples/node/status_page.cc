// GET /: the status page for people. One self-contained HTML page (inline
// CSS, no scripts or external resources) rendered on the server, which
// reloads itself every 2 s: the members table, the leader and its recent
// changes, storage sizes and the latest writes from the audit trail.
#include <ctime>

#include "app.h"

namespace confman::server {
namespace {

constexpr uint64_t kRecentWrites = 15;

std::string Escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

// A JSON field as page text: numbers and strings as they are, null as "-".
std::string Field(const Json& object, const char* name) {
  auto it = object.find(name);
  if (it == object.end() || it->is_null()) return "-";
  if (it->is_string()) return Escape(it->get<std::string>());
  return Escape(DumpJson(*it));
}

uint64_t Number(const Json& object, const char* name) {
  auto it = object.find(name);
  return it != object.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
}

std::string Bytes(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = double(bytes);
  int unit = 0;
  while (value >= 1024 && unit < 4) {
    value /= 1024;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), unit == 0 ? "%.0f %s" : "%.1f %s", value, units[unit]);
  return buf;
}

std::string UtcTime(int64_t unix_seconds) {
  const std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

constexpr char kStyle[] = R"(
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.4em;margin:0 0 .2em} h2{font-size:1.1em;margin:1.4em 0 .4em}
table{border-collapse:collapse;background:#fff} td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;font-variant-numeric:tabular-nums}
th{background:#eee} tr[data-role=leader]{background:#e8f5e9} .err{color:#b00020} .muted{color:#777}
)";

}  // namespace

void App::StatusPage(Call call) {
  auto ex = call.ex;
  OnWorker(ex, [this, ex] {
    const NodeStatus self = node_->GetStatus();
    const Json cluster = CollectClusterStatus();
    std::string html;
    html.reserve(16 * 1024);
    html += "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">";
    html += "<meta http-equiv=\"refresh\" content=\"2\">";
    html += "<title>confman " + Escape(config_.cluster_id) + " - member " +
            std::to_string(config_.id) + "</title><style>" + kStyle + "</style></head><body>";
    html += "<h1>confman cluster <code>" + Escape(config_.cluster_id) + "</code></h1>";
    html += "<p class=\"muted\">Served by member " + std::to_string(config_.id) + " (" +
            raft::RoleName(self.role) + "), revision " + std::to_string(self.revision) +
            ", refreshed every 2 s.</p>";
    if (!self.halted.ok()) {
      html += "<p class=\"err\">This member halted: " + Escape(self.halted.ToString()) + "</p>";
    }
    if (!self.storage_error.ok()) {
      html += "<p class=\"err\">Storage failed: " + Escape(self.storage_error.ToString()) + "</p>";
    }

    html += "<h2>Members</h2><table id=\"members\"><tr><th>id</th><th>role</th><th>term</th>"
            "<th>commit</th><th>applied</th><th>lag</th><th>revision</th><th>client URL</th>"
            "<th>peer address</th><th>data dir size</th><th>state size</th></tr>";
    for (const Json& m : cluster["members"]) {
      const uint64_t id = Number(m, "id");
      if (m.contains("error")) {
        html += "<tr class=\"member\" data-role=\"unreachable\"><td>" + std::to_string(id) +
                "</td><td colspan=\"10\" class=\"err\">unreachable: " + Field(m, "error") + "</td></tr>";
        continue;
      }
      const std::string role = m.value("role", std::string("unknown"));
      const uint64_t commit = Number(m, "commit_index");
      const uint64_t applied = Number(m, "applied_index");
      const Json storage = m.value("storage", Json::object());
      html += "<tr class=\"member\" data-role=\"" + Escape(role) + "\"><td>" + std::to_string(id) +
              "</td><td>" + Escape(role) + "</td><td>" + Field(m, "term") + "</td><td>" +
              std::to_string(commit) + "</td><td>" + std::to_string(applied) + "</td><td>" +
              std::to_string(commit > applied ? commit - applied : 0) + "</td><td>" +
              Field(m, "revision") + "</td><td>" + Field(m, "client_url") + "</td><td>" +
              Field(m, "peer_address") + "</td><td>" + Bytes(Number(storage, "data_dir_bytes")) +
              "</td><td>" + Bytes(Number(storage, "state_bytes")) + "</td></tr>";
    }
    html += "</table>";

    html += "<h2>Leader</h2><p id=\"leader\">";
    if (self.leader == raft::kNoMember) {
      html += "No leader is known (an election may be running).";
    } else {
      html += "Member " + std::to_string(self.leader) + " leads term " + std::to_string(self.term);
      const std::string url = ClientUrlOf(self.leader);
      if (!url.empty()) html += " at " + Escape(url);
      html += ".";
    }
    html += " Leader changes seen by this member: " + std::to_string(self.leader_changes) + ".</p>";
    std::vector<LeaderChange> history;
    {
      std::lock_guard<std::mutex> lock(mu_);
      history = leader_history_;
    }
    html += "<table id=\"leader-changes\"><tr><th>seen at</th><th>leader</th><th>term</th></tr>";
    for (auto it = history.rbegin(); it != history.rend(); ++it) {
      html += "<tr><td>" + UtcTime(it->unix_seconds) + "</td><td>" +
              (it->leader == raft::kNoMember ? std::string("none") : std::to_string(it->leader)) +
              "</td><td>" + std::to_string(it->term) + "</td></tr>";
    }
    html += "</table>";

    html += "<h2>Last writes</h2><table id=\"writes\"><tr><th>revision</th><th>time</th><th>op</th>"
            "<th>namespace</th><th>key</th><th>actor</th></tr>";
    auto compacted = node_->CompactedRevision();
    const uint64_t floor = compacted.ok() ? *compacted : 0;
    const uint64_t after =
        std::max(floor, self.revision > kRecentWrites ? self.revision - kRecentWrites : 0);
    auto page = node_->History(after, kRecentWrites, {.consistency = ReadConsistency::kLocal});
    if (!page.ok()) {
      html += "<tr><td colspan=\"6\" class=\"err\">" + Escape(page.status().ToString()) + "</td></tr>";
    } else {
      for (auto it = page->changes.rbegin(); it != page->changes.rend(); ++it) {
        html += "<tr><td>" + std::to_string(it->revision) + "</td><td>" +
                UtcTime(it->time_unix_micros / 1000000) + "</td><td>" +
                (it->op == kv::ChangeOp::kPut ? "put" : "delete") + "</td><td>" + Escape(it->ns) +
                "</td><td>" + Escape(it->key) + "</td><td>" + Escape(it->actor) + "</td></tr>";
      }
    }
    html += "</table></body></html>\n";
    Response response{http::status::ok, 11};
    response.set(http::field::content_type, "text/html; charset=utf-8");
    response.set(http::field::cache_control, "no-store");
    response.body() = std::move(html);
    ex->Reply(std::move(response));
  });
}

}  // namespace confman::server
