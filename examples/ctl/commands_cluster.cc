// Cluster commands: member list/add/promote/remove, move-leader, status
// and health. Membership changes are not covered by X-Confman-Request, so
// they are never resent once they may have reached a member (exit 6).
#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>
#include <thread>

#include "http_client.h"
#include "output.h"
#include "progress.h"

namespace confmanctl {

namespace {

using nlohmann::json;

json ParseJson(const HttpResponse& res) {
  try {
    return json::parse(res.body);
  } catch (const json::exception& e) {
    throw CtlError(kExitError, "bad_response",
                   res.endpoint + " answered with JSON that does not parse (" + e.what() + ")");
  }
}

json GetMembers(Context& ctx) {
  HttpResponse res = ctx.client().Call(HttpRequest{"GET", "/v1/cluster/members", "", {}}, CallKind::kRead);
  CheckOk(res);
  return ParseJson(res);
}

int RunMemberList(Context& ctx) {
  json body = GetMembers(ctx);
  uint64_t leader = body.value("leader", uint64_t{0});
  const json members = body.value("members", json::array());
  switch (ctx.format) {
    case Format::kJson:
      PrintJsonLine(body);
      break;
    case Format::kTable: {
      Table t{{"ID", "ROLE", "LEADER", "PEER ADDRESS", "CLIENT URL", "STATE", "MATCH", "LAG"}, {}};
      for (const auto& m : members) {
        t.rows.push_back({Cell(m.value("id", json())), m.value("voter", false) ? "voter" : "learner",
                          m.value("id", uint64_t{0}) == leader ? "*" : "", Cell(m.value("peer_address", json())),
                          Cell(m.value("client_url", json())), Cell(m.value("state", json())),
                          Cell(m.value("match_index", json())), Cell(m.value("lag_entries", json()))});
      }
      t.Print(std::cout);
      break;
    }
    case Format::kSimple:
      for (const auto& m : members) {
        std::cout << Cell(m.value("id", json())) << ' ' << (m.value("voter", false) ? "voter" : "learner") << ' '
                  << Cell(m.value("peer_address", json())) << ' ' << Cell(m.value("client_url", json()));
        if (m.value("id", uint64_t{0}) == leader) std::cout << " leader";
        std::cout << '\n';
      }
      break;
  }
  return kExitOk;
}

HttpResponse MemberChange(Context& ctx, const std::string& method, const std::string& target, const json& body) {
  HttpRequest req{method, target, body.is_null() ? "" : body.dump(), {}};
  if (!body.is_null()) req.headers.emplace_back("Content-Type", "application/json");
  HttpResponse res = ctx.client().Call(req, CallKind::kOnce);
  CheckOk(res);
  return res;
}

void Say(Context& ctx, const std::string& simple, const json& as_json) {
  if (ctx.format == Format::kJson) {
    PrintJsonLine(as_json);
  } else {
    std::cout << simple << '\n';
  }
}

struct AddState {
  std::vector<std::string> args;
  bool wait = false;
  bool promote = false;
  uint64_t max_lag = 0;
  double wait_timeout_s = 600;
};

// Polls the leader's view of the learner until it is at most max_lag
// entries behind.
void WaitForCatchUp(Context& ctx, uint64_t id, const AddState& st) {
  ProgressBar bar("catching up member " + std::to_string(id), 0);
  uint64_t worst = 0;
  auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(st.wait_timeout_s));
  std::unique_ptr<Connection> leader_conn;
  auto find_lag = [id](const json& body) -> std::optional<uint64_t> {
    for (const auto& m : body.value("members", json::array())) {
      if (m.value("id", uint64_t{0}) == id && m.contains("lag_entries") && m["lag_entries"].is_number()) {
        return m["lag_entries"].get<uint64_t>();
      }
    }
    return std::nullopt;
  };
  for (;;) {
    json body = GetMembers(ctx);
    std::optional<uint64_t> lag = find_lag(body);
    if (!lag) {
      // Only the leader knows how far behind a member is; a follower's
      // list leaves lag out, so ask the leader at the URL it published.
      uint64_t leader = body.value("leader", uint64_t{0});
      for (const auto& m : body.value("members", json::array())) {
        if (leader == 0 || m.value("id", uint64_t{0}) != leader) continue;
        std::string url = m.value("client_url", "");
        try {
          if (!leader_conn || leader_conn->endpoint().url != url) {
            leader_conn = std::make_unique<Connection>(ParseEndpoint(url), ctx.client().tls());
          }
          HttpRequest req{"GET", "/v1/cluster/members", "", {}};
          ctx.client().Authorize(req);
          HttpResponse res = leader_conn->RoundTrip(req, Clock::now() + std::chrono::seconds(2));
          if (res.status == 200) lag = find_lag(json::parse(res.body));
        } catch (const std::exception&) {
          // The leader may be changing; the next poll asks again.
        }
      }
    }
    if (lag) {
      worst = std::max(worst, *lag);
      bar.set_total(worst);
      bar.Update(worst - *lag, std::to_string(*lag) + " entries behind");
      if (*lag <= st.max_lag) {
        bar.Finish("caught up");
        return;
      }
    } else {
      bar.Update(0, "waiting for the leader to report the member's lag");
    }
    if (Clock::now() >= deadline) {
      throw CtlError(kExitError, "timeout",
                     "member " + std::to_string(id) + " did not catch up within --wait-timeout " +
                         FormatSeconds(st.wait_timeout_s) +
                         (lag ? " (" + std::to_string(*lag) + " entries behind)" : std::string()) +
                         "; check that it runs and that its peer address is reachable");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
}

uint64_t ParseId(const std::string& s) {
  try {
    size_t used = 0;
    uint64_t id = std::stoull(s, &used);
    if (used == s.size() && id > 0) return id;
  } catch (const std::exception&) {
  }
  throw UsageError("'" + s + "' is not a member id (a positive integer)");
}

int RunMemberAdd(Context& ctx, AddState& st) {
  if (st.args.size() != 2) throw UsageError("member add: give ID and PEER_ADDRESS (host:port)");
  uint64_t id = ParseId(st.args[0]);
  MemberChange(ctx, "POST", "/v1/cluster/members", json{{"id", id}, {"peer_address", st.args[1]}});
  json result{{"id", id}, {"added", true}};
  if (ctx.format != Format::kJson) std::cout << "Member " << id << " added as a learner\n" << std::flush;
  if (st.wait || st.promote) {
    WaitForCatchUp(ctx, id, st);
    result["caught_up"] = true;
    if (ctx.format != Format::kJson) std::cout << "Member " << id << " caught up\n" << std::flush;
  }
  if (st.promote) {
    MemberChange(ctx, "POST", "/v1/cluster/members/" + std::to_string(id) + "/promote", json());
    result["promoted"] = true;
    if (ctx.format != Format::kJson) std::cout << "Member " << id << " promoted to voter\n";
  }
  if (ctx.format == Format::kJson) PrintJsonLine(result);
  return kExitOk;
}

struct IdState {
  std::vector<std::string> args;
};

int RunStatus(Context& ctx) {
  HttpResponse res = ctx.client().Call(HttpRequest{"GET", "/v1/cluster/status", "", {}}, CallKind::kRead);
  CheckOk(res);
  json body = ParseJson(res);
  const json members = body.value("members", json::array());
  switch (ctx.format) {
    case Format::kJson:
      PrintJsonLine(body);
      break;
    case Format::kTable: {
      Table t{{"ID", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "REVISION", "CLIENT URL", "DATA BYTES", "ERROR"},
              {}};
      for (const auto& m : members) {
        json storage = m.value("storage", json::object());
        std::string error = m.contains("error") ? Cell(m["error"]) : "";
        if (error.empty() && m.contains("storage_error")) error = Cell(m["storage_error"]);
        if (error.empty() && m.contains("halted")) error = Cell(m["halted"]);
        t.rows.push_back({Cell(m.value("id", json())), Cell(m.value("role", json())), Cell(m.value("term", json())),
                          Cell(m.value("leader", json())), Cell(m.value("commit_index", json())),
                          Cell(m.value("applied_index", json())), Cell(m.value("revision", json())),
                          Cell(m.value("client_url", json())), Cell(storage.value("data_dir_bytes", json())), error});
      }
      t.Print(std::cout);
      break;
    }
    case Format::kSimple:
      for (const auto& m : members) {
        std::cout << Cell(m.value("id", json())) << ' ';
        if (m.contains("error")) {
          std::cout << "error: " << Cell(m["error"]) << '\n';
          continue;
        }
        std::cout << Cell(m.value("role", json())) << " term=" << Cell(m.value("term", json()))
                  << " leader=" << Cell(m.value("leader", json()))
                  << " commit=" << Cell(m.value("commit_index", json()))
                  << " applied=" << Cell(m.value("applied_index", json()))
                  << " revision=" << Cell(m.value("revision", json())) << ' '
                  << Cell(m.value("client_url", json())) << '\n';
      }
      break;
  }
  return kExitOk;
}

// Asks every endpoint itself (no failover: the point is to see each one).
int RunHealth(Context& ctx) {
  Client& client = ctx.client();
  const auto timeout = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(client.timeout_s()));
  json results = json::array();
  bool all_ok = true;
  for (size_t i = 0; i < client.endpoints().size(); ++i) {
    Connection& conn = client.connection(i);
    json r{{"endpoint", client.endpoints()[i].url}};
    auto start = Clock::now();
    std::string problem;
    for (const char* probe : {"livez", "readyz"}) {
      bool ok = false;
      try {
        HttpResponse res = conn.RoundTrip(HttpRequest{"GET", std::string("/") + probe, "", {}}, Clock::now() + timeout);
        ok = res.status == 200;
        if (!ok) {
          problem += std::string(problem.empty() ? "" : "; ") + probe + ": " + std::to_string(res.status) + " " +
                     (res.body.size() > 200 ? res.body.substr(0, 200) : res.body);
        }
      } catch (const TransportError& e) {
        problem += std::string(problem.empty() ? "" : "; ") + e.what();
        r["live"] = false;
        r["ready"] = false;
        all_ok = false;
        break;  // unreachable: the second probe would only say it again
      }
      r[probe == std::string("livez") ? "live" : "ready"] = ok;
      all_ok = all_ok && ok;
    }
    while (!problem.empty() && (problem.back() == '\n' || problem.back() == '\r')) problem.pop_back();
    r["took_ms"] = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
    r["healthy"] = r["live"].get<bool>() && r["ready"].get<bool>();
    if (!problem.empty()) r["error"] = problem;
    results.push_back(r);
  }
  switch (ctx.format) {
    case Format::kJson:
      PrintJsonLine(results);
      break;
    case Format::kTable: {
      Table t{{"ENDPOINT", "HEALTHY", "LIVE", "READY", "TOOK", "ERROR"}, {}};
      for (const auto& r : results) {
        t.rows.push_back({Cell(r["endpoint"]), Cell(r["healthy"]), Cell(r["live"]), Cell(r["ready"]),
                          Cell(r["took_ms"]) + "ms", Cell(r.value("error", json()))});
      }
      t.Print(std::cout);
      break;
    }
    case Format::kSimple:
      for (const auto& r : results) {
        std::cout << Cell(r["endpoint"]) << " is " << (r["healthy"].get<bool>() ? "healthy" : "unhealthy")
                  << ": took " << Cell(r["took_ms"]) << "ms";
        if (r.contains("error")) std::cout << ": " << Cell(r["error"]);
        std::cout << '\n';
      }
      break;
  }
  if (!all_ok) {
    throw CtlError(kExitUnavailable, "unhealthy", "at least one endpoint is not live and ready (see above)");
  }
  return kExitOk;
}

}  // namespace

void AddClusterCommands(CLI::App& app, Context& ctx) {
  auto* member = app.add_subcommand("member", "Membership: member list|add|promote|remove");
  member->require_subcommand(1);
  {
    auto* cmd = member->add_subcommand("list", "List the members (the leader's view adds match index and lag)");
    cmd->callback([&ctx] { ctx.action = [&ctx] { return RunMemberList(ctx); }; });
  }
  {
    auto st = std::make_shared<AddState>();
    auto* cmd = member->add_subcommand(
        "add", "Add a learner: member add ID PEER_ADDRESS [--wait [--max-lag N]] [--promote]");
    cmd->add_option("args", st->args, "ID PEER_ADDRESS (host:port of its peer listener)");
    cmd->add_flag("--wait", st->wait, "Wait until the learner has caught up, showing how far behind it is");
    cmd->add_flag("--promote", st->promote, "Once caught up, promote it to voter (implies --wait)");
    cmd->add_option("--max-lag", st->max_lag, "Caught up means at most this many entries behind (default 0)");
    cmd->add_option("--wait-timeout", st->wait_timeout_s, "Give up waiting after this many seconds (exit 1)");
    cmd->callback([&ctx, st] { ctx.action = [&ctx, st] { return RunMemberAdd(ctx, *st); }; });
  }
  {
    auto st = std::make_shared<IdState>();
    auto* cmd = member->add_subcommand("promote", "Make a learner a voter: member promote ID");
    cmd->add_option("args", st->args, "ID")->required();
    cmd->callback([&ctx, st] {
      ctx.action = [&ctx, st] {
        if (st->args.size() != 1) throw UsageError("member promote: give one ID");
        uint64_t id = ParseId(st->args[0]);
        HttpResponse res =
            MemberChange(ctx, "POST", "/v1/cluster/members/" + std::to_string(id) + "/promote", json());
        Say(ctx, "Member " + std::to_string(id) + " promoted to voter", ParseJson(res));
        return int{kExitOk};
      };
    });
  }
  {
    auto st = std::make_shared<IdState>();
    auto* cmd = member->add_subcommand("remove", "Remove a member: member remove ID");
    cmd->add_option("args", st->args, "ID")->required();
    cmd->callback([&ctx, st] {
      ctx.action = [&ctx, st] {
        if (st->args.size() != 1) throw UsageError("member remove: give one ID");
        uint64_t id = ParseId(st->args[0]);
        HttpResponse res = MemberChange(ctx, "DELETE", "/v1/cluster/members/" + std::to_string(id), json());
        Say(ctx, "Member " + std::to_string(id) + " removed", ParseJson(res));
        return int{kExitOk};
      };
    });
  }
  {
    auto st = std::make_shared<IdState>();
    auto* cmd = app.add_subcommand("move-leader", "Transfer leadership: move-leader ID");
    cmd->add_option("args", st->args, "ID of the voter to lead")->required();
    cmd->callback([&ctx, st] {
      ctx.action = [&ctx, st] {
        if (st->args.size() != 1) throw UsageError("move-leader: give one ID");
        uint64_t id = ParseId(st->args[0]);
        HttpResponse res = MemberChange(ctx, "POST", "/v1/cluster/leader", json{{"to", id}});
        json body = ParseJson(res);
        Say(ctx, "Leader is now " + Cell(body.value("leader", json(id))), body);
        return int{kExitOk};
      };
    });
  }
  {
    auto* cmd = app.add_subcommand("status", "Every member's status, collected by one of them");
    cmd->callback([&ctx] { ctx.action = [&ctx] { return RunStatus(ctx); }; });
  }
  {
    auto* cmd = app.add_subcommand("health", "/livez and /readyz of every endpoint; exit 5 if any is not both");
    cmd->callback([&ctx] { ctx.action = [&ctx] { return RunHealth(ctx); }; });
  }
}

}  // namespace confmanctl
