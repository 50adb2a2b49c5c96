// `import` and `export`: a namespace as a directory tree, one file per key
// whose relative path is the key (so keys with '/' become subdirectories)
// and whose bytes are the value. --prefix P on both maps the directory to
// the keys under P, so an export can be imported back unchanged.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include "http_client.h"
#include "output.h"
#include "progress.h"

namespace confmanctl {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct ImportExportState {
  std::vector<std::string> args;
  std::string prefix;
  std::string content_type;
  std::string actor;
};

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw CtlError(kExitError, "io", "cannot read '" + path.string() + "'; check its permissions");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int RunImport(Context& ctx, ImportExportState& st) {
  std::string ns = TakeNamespace(ctx, st.args);
  if (st.args.size() != 1) throw UsageError("import: give [NS] DIR");
  const fs::path dir = st.args[0];
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw UsageError("import: '" + dir.string() + "' is not a directory");
  std::vector<std::pair<std::string, fs::path>> files;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->is_regular_file()) {
      files.emplace_back(st.prefix + fs::relative(it->path(), dir).generic_string(), it->path());
    } else if (!it->is_directory()) {
      std::cerr << "warning: skipping '" << it->path().string() << "': not a regular file\n";
    }
  }
  if (ec) throw CtlError(kExitError, "io", "cannot walk '" + dir.string() + "': " + ec.message());
  std::sort(files.begin(), files.end());
  ProgressBar bar("import", files.size());
  uint64_t done = 0;
  uint64_t revision = 0;
  for (const auto& [key, path] : files) {
    HttpRequest req{"PUT", KvTarget(ns, key), ReadFile(path), {}};
    if (!st.content_type.empty()) req.headers.emplace_back("Content-Type", st.content_type);
    if (!st.actor.empty()) req.headers.emplace_back("X-Confman-Actor", st.actor);
    HttpResponse res = ctx.client().Call(req, CallKind::kWrite);
    if (res.status < 200 || res.status >= 300) {
      CtlError e = ErrorFromResponse(res);
      throw CtlError(e.exit_code(), e.code(),
                     "importing '" + path.string() + "' as key '" + key + "' failed after " + std::to_string(done) +
                         " keys: " + e.what());
    }
    try {
      revision = json::parse(res.body).value("revision", revision);
    } catch (const json::exception&) {
    }
    bar.Update(++done, key);
  }
  bar.Finish();
  if (ctx.format == Format::kJson) {
    PrintJsonLine(json{{"ns", ns}, {"dir", dir.string()}, {"keys", done}, {"revision", revision}});
  } else {
    std::cout << "Imported " << done << " keys from " << dir.string() << " into " << ns << " (revision " << revision
              << ")\n";
  }
  return kExitOk;
}

// A key as a path below the export directory, or an explanation why it
// cannot be one.
std::optional<fs::path> KeyPath(const std::string& rel, std::string* why) {
  if (rel.empty()) {
    *why = "it is the prefix itself";
    return std::nullopt;
  }
  fs::path out;
  std::string seg;
  size_t start = 0;
  while (start <= rel.size()) {
    size_t end = rel.find('/', start);
    if (end == std::string::npos) end = rel.size();
    seg = rel.substr(start, end - start);
    if (seg.empty() || seg == "." || seg == "..") {
      *why = "it has an empty, '.' or '..' path segment";
      return std::nullopt;
    }
    out /= seg;
    start = end + 1;
  }
  return out;
}

int RunExport(Context& ctx, ImportExportState& st) {
  std::string ns = TakeNamespace(ctx, st.args);
  if (st.args.size() != 1) throw UsageError("export: give [NS] DIR");
  const fs::path dir = st.args[0];
  std::vector<std::string> keys;
  std::string token;
  for (;;) {
    std::string target = "/v1/ns/" + EncodeSegment(ns) + "/kv?keys_only=true&limit=1000";
    if (!st.prefix.empty()) target += "&prefix=" + EncodeQuery(st.prefix);
    if (!token.empty()) target += "&page_token=" + EncodeQuery(token);
    target += ConsistencyParam(ctx, '&');
    HttpResponse res = ctx.client().Call(HttpRequest{"GET", target, "", {}}, CallKind::kRead);
    CheckOk(res);
    json body = json::parse(res.body);
    for (const auto& item : body.value("items", json::array())) keys.push_back(item.value("key", ""));
    token = body.value("next_page_token", "");
    if (token.empty()) break;
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw CtlError(kExitError, "io", "cannot create '" + dir.string() + "': " + ec.message());
  ProgressBar bar("export", keys.size());
  uint64_t done = 0;
  std::vector<std::string> skipped;
  for (const auto& key : keys) {
    std::string why;
    auto rel = KeyPath(key.substr(st.prefix.size()), &why);
    if (!rel) {
      skipped.push_back("'" + key + "': " + why);
      continue;
    }
    HttpResponse res = ctx.client().Call(
        HttpRequest{"GET", KvTarget(ns, key) + "?raw" + ConsistencyParam(ctx, '&'), "", {}}, CallKind::kRead);
    if (res.status == 404) continue;  // deleted since the listing
    CheckOk(res);
    fs::path path = dir / *rel;
    fs::create_directories(path.parent_path(), ec);
    if (ec || fs::is_directory(path)) {
      skipped.push_back("'" + key + "': another key's directory is in the way");
      continue;
    }
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(res.body.data(), static_cast<std::streamsize>(res.body.size()));
    if (!out.good()) throw CtlError(kExitError, "io", "cannot write '" + path.string() + "'");
    bar.Update(++done, key);
  }
  bar.Finish();
  if (ctx.format == Format::kJson) {
    PrintJsonLine(json{{"ns", ns}, {"dir", dir.string()}, {"keys", done}, {"skipped", skipped}});
  } else {
    std::cout << "Exported " << done << " keys from " << ns << " to " << dir.string() << '\n';
  }
  if (!skipped.empty()) {
    std::string list;
    for (const auto& s : skipped) list += "\n  " + s;
    throw CtlError(kExitError, "not_exportable",
                   std::to_string(skipped.size()) + " keys cannot be files and were left out:" + list);
  }
  return kExitOk;
}

}  // namespace

void AddImportExportCommands(CLI::App& app, Context& ctx) {
  {
    auto st = std::make_shared<ImportExportState>();
    auto* cmd = app.add_subcommand(
        "import", "Write every file under DIR as a key (its path relative to DIR): import [NS] DIR");
    cmd->add_option("args", st->args, "[NS] DIR; NS is left out when -n/--namespace is set");
    cmd->add_option("--prefix", st->prefix, "Prepend this to every key");
    cmd->add_option("--content-type", st->content_type, "Content type stored with every value");
    cmd->add_option("--actor", st->actor, "Who makes the changes, recorded in the audit trail");
    cmd->callback([&ctx, st] { ctx.action = [&ctx, st] { return RunImport(ctx, *st); }; });
  }
  {
    auto st = std::make_shared<ImportExportState>();
    auto* cmd = app.add_subcommand(
        "export", "Write every key as a file under DIR (keys with '/' become subdirectories): export [NS] DIR");
    cmd->add_option("args", st->args, "[NS] DIR; NS is left out when -n/--namespace is set");
    cmd->add_option("--prefix", st->prefix, "Only keys under this prefix, written without it");
    cmd->callback([&ctx, st] { ctx.action = [&ctx, st] { return RunExport(ctx, *st); }; });
  }
}

}  // namespace confmanctl
