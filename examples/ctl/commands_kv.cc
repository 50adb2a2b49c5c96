// Key-value commands: put, get, del, cas, list and audit. Reads follow
// the chosen consistency; every write is sent through Client::Call as a
// kWrite, so it carries an X-Confman-Request pair and is retried safely.
#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>

#include "http_client.h"
#include "output.h"

namespace confmanctl {

namespace {

using nlohmann::json;

json ParseBody(const HttpResponse& res) {
  try {
    return json::parse(res.body);
  } catch (const json::exception& e) {
    throw CtlError(kExitError, "bad_response",
                   res.endpoint + " answered with JSON that does not parse (" + e.what() +
                       "); is it a confman-node client URL?");
  }
}

// The value's bytes from a key object, whichever field carries them.
std::string ValueBytes(const json& item) {
  if (item.contains("value") && item["value"].is_string()) return item["value"].get<std::string>();
  if (item.contains("value_b64") && item["value_b64"].is_string()) {
    return Base64Decode(item["value_b64"].get<std::string>());
  }
  return "";
}

std::string ValueForDisplay(const json& item) {
  if (item.contains("value")) return Cell(item["value"]);
  if (item.contains("value_b64")) return "(binary, base64) " + Cell(item["value_b64"]);
  return "";
}

void PrintWriteResult(Context& ctx, const std::string& ns, const std::string& key, const json& body) {
  uint64_t revision = body.value("revision", uint64_t{0});
  switch (ctx.format) {
    case Format::kJson:
      PrintJsonLine(json{{"ns", ns}, {"key", key}, {"revision", revision}});
      break;
    case Format::kTable: {
      Table t{{"NS", "KEY", "REVISION"}, {{ns, key, std::to_string(revision)}}};
      t.Print(std::cout);
      break;
    }
    case Format::kSimple:
      std::cout << "OK revision=" << revision << '\n';
      break;
  }
}

struct PutState {
  std::vector<std::string> args;
  std::string content_type;
  std::string actor;
  uint64_t if_revision = 0;
  CLI::Option* if_revision_opt = nullptr;
};

int RunWrite(Context& ctx, PutState& st, const char* verb) {
  std::string ns = TakeNamespace(ctx, st.args);
  if (st.args.empty()) throw UsageError(std::string(verb) + ": KEY is missing");
  if (st.args.size() > 2) {
    throw UsageError(std::string(verb) + ": too many arguments (with -n, leave NS out; quote a VALUE with spaces)");
  }
  const std::string key = st.args[0];
  HttpRequest req;
  req.method = "PUT";
  req.target = KvTarget(ns, key);
  if (st.if_revision_opt && st.if_revision_opt->count() > 0) {
    req.target += "?if_revision=" + std::to_string(st.if_revision);
  }
  req.body = (st.args.size() < 2 || st.args[1] == "-") ? ReadStdin() : st.args[1];
  if (!st.content_type.empty()) req.headers.emplace_back("Content-Type", st.content_type);
  if (!st.actor.empty()) req.headers.emplace_back("X-Confman-Actor", st.actor);
  HttpResponse res = ctx.client().Call(req, CallKind::kWrite);
  CheckOk(res);
  PrintWriteResult(ctx, ns, key, ParseBody(res));
  return kExitOk;
}

struct GetState {
  std::vector<std::string> args;
  bool raw = false;
};

int RunGet(Context& ctx, GetState& st) {
  std::string ns = TakeNamespace(ctx, st.args);
  if (st.args.size() != 1) throw UsageError("get: give exactly one KEY (with -n, leave NS out)");
  const std::string& key = st.args[0];
  HttpRequest req;
  req.target = KvTarget(ns, key);
  if (st.raw) {
    req.target += "?raw" + ConsistencyParam(ctx, '&');
    HttpResponse res = ctx.client().Call(req, CallKind::kRead);
    CheckOk(res);
    std::cout.write(res.body.data(), static_cast<std::streamsize>(res.body.size()));
    return kExitOk;
  }
  req.target += ConsistencyParam(ctx, '?');
  HttpResponse res = ctx.client().Call(req, CallKind::kRead);
  CheckOk(res);
  json item = ParseBody(res);
  switch (ctx.format) {
    case Format::kJson:
      PrintJsonLine(item);
      break;
    case Format::kTable: {
      Table t{{"KEY", "VALUE", "CONTENT-TYPE", "CREATE-REV", "MOD-REV", "VERSION"},
              {{Cell(item.value("key", json(key))), ValueForDisplay(item), Cell(item.value("content_type", json(""))),
                Cell(item.value("create_revision", json())), Cell(item.value("mod_revision", json())),
                Cell(item.value("version", json()))}}};
      t.Print(std::cout);
      break;
    }
    case Format::kSimple: {
      std::string bytes = ValueBytes(item);
      std::cout.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
      std::cout << '\n';
      break;
    }
  }
  return kExitOk;
}

struct DelState {
  std::vector<std::string> args;
  uint64_t if_revision = 0;
  CLI::Option* if_revision_opt = nullptr;
  std::string actor;
};

int RunDel(Context& ctx, DelState& st) {
  std::string ns = TakeNamespace(ctx, st.args);
  if (st.args.size() != 1) throw UsageError("del: give exactly one KEY (with -n, leave NS out)");
  const std::string& key = st.args[0];
  HttpRequest req;
  req.method = "DELETE";
  req.target = KvTarget(ns, key);
  if (st.if_revision_opt->count() > 0) {
    if (st.if_revision == 0) throw UsageError("del --if-revision must be at least 1");
    req.target += "?if_revision=" + std::to_string(st.if_revision);
  }
  if (!st.actor.empty()) req.headers.emplace_back("X-Confman-Actor", st.actor);
  HttpResponse res = ctx.client().Call(req, CallKind::kWrite);
  CheckOk(res);
  PrintWriteResult(ctx, ns, key, ParseBody(res));
  return kExitOk;
}

struct ListState {
  std::vector<std::string> args;
  std::string prefix;
  bool keys_only = false;
  uint64_t limit = 0;  // 0: everything
  uint64_t page_size = 1000;
};

int RunList(Context& ctx, ListState& st) {
  std::string ns = TakeNamespace(ctx, st.args);
  if (!st.args.empty()) throw UsageError("list: unexpected argument '" + st.args[0] + "' (use --prefix)");
  json items = json::array();
  uint64_t revision = 0;
  std::string token;
  for (;;) {
    uint64_t page = st.page_size;
    if (st.limit > 0) page = std::min<uint64_t>(page, st.limit - items.size());
    std::string target = "/v1/ns/" + EncodeSegment(ns) + "/kv?limit=" + std::to_string(page);
    if (!st.prefix.empty()) target += "&prefix=" + EncodeQuery(st.prefix);
    if (st.keys_only) target += "&keys_only=true";
    if (!token.empty()) target += "&page_token=" + EncodeQuery(token);
    target += ConsistencyParam(ctx, '&');
    HttpResponse res = ctx.client().Call(HttpRequest{"GET", target, "", {}}, CallKind::kRead);
    CheckOk(res);
    json body = ParseBody(res);
    for (auto& item : body.value("items", json::array())) items.push_back(std::move(item));
    revision = body.value("revision", revision);
    token = body.value("next_page_token", std::string());
    if (token.empty() || (st.limit > 0 && items.size() >= st.limit)) break;
  }
  switch (ctx.format) {
    case Format::kJson:
      PrintJsonLine(json{{"ns", ns}, {"items", items}, {"revision", revision}});
      break;
    case Format::kTable: {
      Table t;
      if (st.keys_only) {
        t.header = {"KEY", "MOD-REV", "VERSION"};
      } else {
        t.header = {"KEY", "VALUE", "CONTENT-TYPE", "MOD-REV", "VERSION"};
      }
      for (const auto& item : items) {
        if (st.keys_only) {
          t.rows.push_back({Cell(item.value("key", json())), Cell(item.value("mod_revision", json())),
                            Cell(item.value("version", json()))});
        } else {
          t.rows.push_back({Cell(item.value("key", json())), ValueForDisplay(item),
                            Cell(item.value("content_type", json(""))), Cell(item.value("mod_revision", json())),
                            Cell(item.value("version", json()))});
        }
      }
      t.Print(std::cout);
      break;
    }
    case Format::kSimple:
      for (const auto& item : items) {
        std::cout << Cell(item.value("key", json()));
        if (!st.keys_only) std::cout << '\t' << ValueForDisplay(item);
        std::cout << '\n';
      }
      break;
  }
  return kExitOk;
}

struct AuditState {
  std::vector<std::string> args;
  std::string key;
  uint64_t from_revision = 0;
  uint64_t limit = 0;
};

int RunAudit(Context& ctx, AuditState& st) {
  std::string ns = TakeNamespace(ctx, st.args);
  if (!st.args.empty()) throw UsageError("audit: unexpected argument '" + st.args[0] + "' (use --key)");
  json changes = json::array();
  uint64_t revision = 0;
  uint64_t from = st.from_revision;
  for (;;) {
    uint64_t page = 1000;
    if (st.limit > 0) page = std::min<uint64_t>(page, st.limit - changes.size());
    std::string target = "/v1/ns/" + EncodeSegment(ns) + "/audit?limit=" + std::to_string(page);
    if (!st.key.empty()) target += "&key=" + EncodeQuery(st.key);
    if (from > 0) target += "&from_revision=" + std::to_string(from);
    target += ConsistencyParam(ctx, '&');
    HttpResponse res = ctx.client().Call(HttpRequest{"GET", target, "", {}}, CallKind::kRead);
    CheckOk(res);
    json body = ParseBody(res);
    json page_changes = body.value("changes", json::array());
    for (auto& c : page_changes) changes.push_back(std::move(c));
    revision = body.value("revision", revision);
    uint64_t next = body.value("next_from_revision", uint64_t{0});
    if (page_changes.empty() || next <= from || next > revision) break;
    if (st.limit > 0 && changes.size() >= st.limit) break;
    from = next;
  }
  switch (ctx.format) {
    case Format::kJson:
      PrintJsonLine(json{{"ns", ns}, {"changes", changes}, {"revision", revision}});
      break;
    case Format::kTable: {
      Table t{{"REVISION", "OP", "KEY", "ACTOR", "TIME"}, {}};
      for (const auto& c : changes) {
        t.rows.push_back({Cell(c.value("revision", json())), Cell(c.value("op", json())), Cell(c.value("key", json())),
                          Cell(c.value("actor", json())),
                          FormatTimeMicros(c.value("time_unix_micros", int64_t{0}))});
      }
      t.Print(std::cout);
      break;
    }
    case Format::kSimple:
      for (const auto& c : changes) {
        std::cout << Cell(c.value("revision", json())) << ' ' << Cell(c.value("op", json())) << ' '
                  << Cell(c.value("key", json())) << ' ' << Cell(c.value("actor", json())) << ' '
                  << FormatTimeMicros(c.value("time_unix_micros", int64_t{0})) << '\n';
      }
      break;
  }
  return kExitOk;
}

}  // namespace

void AddKvCommands(CLI::App& app, Context& ctx) {
  const char* ns_note = "NS is left out when -n/--namespace is set";
  {
    auto st = std::make_shared<PutState>();
    auto* cmd = app.add_subcommand("put", "Write a value: put [NS] KEY [VALUE|-] (no VALUE or '-': read stdin)");
    cmd->add_option("args", st->args, std::string("[NS] KEY [VALUE|-]; ") + ns_note);
    cmd->add_option("--content-type", st->content_type, "Content type stored with the value");
    cmd->add_option("--actor", st->actor, "Who makes the change, recorded in the audit trail");
    cmd->callback([&ctx, st] { ctx.action = [&ctx, st] { return RunWrite(ctx, *st, "put"); }; });
  }
  {
    auto st = std::make_shared<PutState>();
    auto* cmd = app.add_subcommand(
        "cas", "Compare-and-set: cas [NS] KEY VALUE --if-revision N (0: create only); exit 3 on mismatch");
    cmd->add_option("args", st->args, std::string("[NS] KEY VALUE|-; ") + ns_note);
    st->if_revision_opt =
        cmd->add_option("--if-revision", st->if_revision, "Apply only if the key's mod_revision is N")->required();
    cmd->add_option("--content-type", st->content_type, "Content type stored with the value");
    cmd->add_option("--actor", st->actor, "Who makes the change, recorded in the audit trail");
    cmd->callback([&ctx, st] {
      ctx.action = [&ctx, st] {
        if (st->args.size() < (ctx.opts.ns.empty() ? 3u : 2u)) throw UsageError("cas: VALUE is missing (or '-')");
        return RunWrite(ctx, *st, "cas");
      };
    });
  }
  {
    auto st = std::make_shared<GetState>();
    auto* cmd = app.add_subcommand("get", "Read a value: get [NS] KEY; exit 4 when absent");
    cmd->add_option("args", st->args, std::string("[NS] KEY; ") + ns_note);
    cmd->add_flag("--raw", st->raw, "Write the value's bytes only, nothing else");
    cmd->callback([&ctx, st] { ctx.action = [&ctx, st] { return RunGet(ctx, *st); }; });
  }
  {
    auto st = std::make_shared<DelState>();
    auto* cmd = app.add_subcommand("del", "Delete a key: del [NS] KEY; exit 4 when absent");
    cmd->add_option("args", st->args, std::string("[NS] KEY; ") + ns_note);
    st->if_revision_opt = cmd->add_option("--if-revision", st->if_revision, "Delete only if mod_revision is N");
    cmd->add_option("--actor", st->actor, "Who makes the change, recorded in the audit trail");
    cmd->callback([&ctx, st] { ctx.action = [&ctx, st] { return RunDel(ctx, *st); }; });
  }
  {
    auto st = std::make_shared<ListState>();
    auto* cmd = app.add_subcommand("list", "List keys: list [NS] [--prefix P] (follows pages to the end)");
    cmd->add_option("args", st->args, std::string("[NS]; ") + ns_note);
    cmd->add_option("--prefix", st->prefix, "Only keys starting with this");
    cmd->add_flag("--keys-only", st->keys_only, "Leave the values out");
    cmd->add_option("--limit", st->limit, "At most this many keys (default: all)");
    cmd->add_option("--page-size", st->page_size, "Keys asked for per request")
        ->check(CLI::Range(1, 10000))
        ->capture_default_str();
    cmd->callback([&ctx, st] { ctx.action = [&ctx, st] { return RunList(ctx, *st); }; });
  }
  {
    auto st = std::make_shared<AuditState>();
    auto* cmd = app.add_subcommand("audit", "Who changed what, when: audit [NS] [--key K], oldest first");
    cmd->add_option("args", st->args, std::string("[NS]; ") + ns_note);
    cmd->add_option("--key", st->key, "Only this key's changes");
    cmd->add_option("--from-revision", st->from_revision, "Start at this revision (default: oldest retained)");
    cmd->add_option("--limit", st->limit, "At most this many changes (default: all)");
    cmd->callback([&ctx, st] { ctx.action = [&ctx, st] { return RunAudit(ctx, *st); }; });
  }
}

}  // namespace confmanctl
