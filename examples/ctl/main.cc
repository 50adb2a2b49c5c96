// confmanctl's entry point: the global options, the command tree, and the
// one place where every error becomes a message on stderr and an exit code.
#include <CLI/CLI.hpp>
#include <iostream>
#include <nlohmann/json.hpp>

#include "ctl.h"
#include "http_client.h"
#include "output.h"

namespace {

constexpr const char* kFooter = R"(Namespaces:
  Commands that work in a namespace take it as their first word (NS).
  With -n/--namespace (or CONFMAN_NAMESPACE) set, every such command takes
  it from there instead and NS is left out:
    confmanctl put app db/url postgres://x    confmanctl -n app put db/url postgres://x

Writes carry X-Confman-Request: <random client id>:<sequence>. A write whose
outcome is unknown (timeout, 504, connection lost after sending) is resent
with the same header to the next endpoint within --timeout; the cluster
applies it once.

Exit codes:
  0  ok
  1  error (bad request, unauthorized, storage failure, ...)
  2  usage (bad flags or arguments)
  3  revision mismatch (412: --if-revision did not match)
  4  not found (404)
  5  unavailable (503/429 or no connection on every endpoint)
  6  outcome unknown (504, timeout or lost connection even after retries)
Errors go to stderr; with -w json also as {"error": {...}} on stderr.)";

// `watch NS -- CMD ARGS`: everything after the first "--" that follows
// the word "watch" is the command to run, kept away from option parsing.
std::vector<std::string> SplitWatchCommand(std::vector<std::string>& args) {
  auto watch = std::find(args.begin(), args.end(), "watch");
  if (watch == args.end()) return {};
  auto dashes = std::find(watch, args.end(), "--");
  if (dashes == args.end()) return {};
  std::vector<std::string> tail(dashes + 1, args.end());
  args.erase(dashes, args.end());
  return tail;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace confmanctl;
  Context ctx;
  std::vector<std::string> args(argv, argv + argc);
  std::vector<std::string> exec_argv = SplitWatchCommand(args);

  CLI::App app{"confmanctl: command-line client of confman-node's HTTP API"};
  app.name("confmanctl");
  app.footer(kFooter);
  app.require_subcommand(1);
  app.fallthrough();
  app.set_version_flag("--version", "confmanctl 0.1.0");
  app.add_option("--endpoints", ctx.opts.endpoints,
                 "Comma-separated client URLs; the next is tried when one cannot be reached or answers 503")
      ->envname("CONFMAN_ENDPOINTS")
      ->capture_default_str();
  app.add_option("-n,--namespace", ctx.opts.ns, "Namespace for commands that take NS (then left out)")
      ->envname("CONFMAN_NAMESPACE");
  app.add_option("-w,--write-out", ctx.opts.write_out, "Output format: simple, json or table")
      ->check(CLI::IsMember({"simple", "json", "table"}))
      ->capture_default_str();
  app.add_option("--consistency", ctx.opts.consistency,
                 "Reads: linearizable (the server's default), lease or local")
      ->check(CLI::IsMember({"linearizable", "lease", "local"}));
  app.add_option("--timeout", ctx.opts.timeout_s, "Seconds a request (with its retries) may take")
      ->capture_default_str();
  app.add_option("--token-file", ctx.opts.token_file, "File holding the token sent as Authorization: Bearer")
      ->envname("CONFMAN_TOKEN_FILE");
  app.add_option("--cacert", ctx.opts.cacert, "PEM CA bundle to verify https:// endpoints with");
  app.add_flag("--insecure-skip-tls-verify", ctx.opts.insecure, "Do not verify https:// endpoints' certificates");

  AddKvCommands(app, ctx);
  AddWatchCommand(app, ctx, &exec_argv);
  AddClusterCommands(app, ctx);
  AddImportExportCommands(app, ctx);
  AddBenchCommand(app, ctx);

  auto format_now = [&] {
    try {
      return ParseFormat(ctx.opts.write_out);
    } catch (const CtlError&) {
      return Format::kSimple;
    }
  };
  try {
    std::vector<const char*> cargv;
    for (const auto& a : args) cargv.push_back(a.c_str());
    app.parse(static_cast<int>(cargv.size()), cargv.data());
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    ReportError(format_now(),
                UsageError(std::string(e.what()) + "; run 'confmanctl --help' (or COMMAND --help) for usage"));
    return kExitUsage;
  }
  ctx.format = format_now();
  try {
    if (!exec_argv.empty() && args.end() == std::find(args.begin(), args.end(), "watch")) {
      throw UsageError("'-- CMD' is for watch only");
    }
    return ctx.action();
  } catch (const CtlError& e) {
    ReportError(ctx.format, e);
    return e.exit_code();
  } catch (const nlohmann::json::exception& e) {
    ReportError(ctx.format, CtlError(kExitError, "bad_response",
                                     std::string("the server's answer is not the JSON expected: ") + e.what() +
                                         "; check that --endpoints names confman-node client URLs"));
    return kExitError;
  } catch (const std::exception& e) {
    ReportError(ctx.format, CtlError(kExitError, "error", e.what()));
    return kExitError;
  }
}
