// `watch`: follows a namespace's changes as NDJSON and prints them or runs
// a command per change. The stream may end (a member stops, a network
// hiccup, a member ends it with an error line); the watch then resumes on
// the next endpoint from the last revision it saw + 1, so each change is
// delivered exactly once and in order.
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <thread>

#include "http_client.h"
#include "output.h"

namespace confmanctl {

namespace {

using nlohmann::json;

struct WatchState {
  std::vector<std::string> args;
  std::string prefix;
  std::string key;
  uint64_t from_revision = 0;
  uint64_t count = 0;
  int progress_ms = 1000;
  double reconnect_timeout_s = 60;
  std::vector<std::string>* exec_argv = nullptr;
};

// Runs the user's command for one change and waits for it, so that
// changes are handled one at a time and in order.
void RunForChange(const std::vector<std::string>& argv, const json& change) {
  std::cout.flush();
  std::fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) throw CtlError(kExitError, "fork", "cannot start the watch command: fork failed");
  if (pid == 0) {
    setenv("CONFMAN_NS", Cell(change.value("ns", json(""))).c_str(), 1);
    setenv("CONFMAN_KEY", Cell(change.value("key", json(""))).c_str(), 1);
    setenv("CONFMAN_OP", Cell(change.value("op", json(""))).c_str(), 1);
    setenv("CONFMAN_REVISION", Cell(change.value("revision", json(0))).c_str(), 1);
    std::vector<char*> cargv;
    for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    execvp(cargv[0], cargv.data());
    std::fprintf(stderr, "Error: cannot run '%s': %s\n", cargv[0], std::strerror(errno));
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::cerr << "warning: '" << argv[0] << "' failed for revision " << Cell(change.value("revision", json(0)))
              << " (status " << (WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status))
              << "); the watch goes on\n";
  }
}

void PrintChange(Format format, const json& change) {
  if (format == Format::kJson) {
    PrintJsonLine(change);
  } else {
    std::cout << Cell(change.value("revision", json())) << ' ' << Cell(change.value("op", json())) << ' '
              << Cell(change.value("key", json())) << ' ' << Cell(change.value("actor", json())) << '\n';
  }
  std::cout.flush();
}

int RunWatch(Context& ctx, WatchState& st) {
  std::string ns = TakeNamespace(ctx, st.args);
  if (!st.args.empty()) {
    throw UsageError("watch: unexpected argument '" + st.args[0] + "'; put the command to run after '--'");
  }
  if (!st.prefix.empty() && !st.key.empty()) throw UsageError("watch: give --prefix or --key, not both");
  Client& client = ctx.client();
  const auto& endpoints = client.endpoints();
  const auto timeout = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(client.timeout_s()));
  // Progress lines arrive every progress_ms while nothing changes, so a
  // stream silent for several of those intervals is dead even if TCP
  // has not noticed.
  const auto idle = std::max<Clock::duration>(timeout, std::chrono::milliseconds(st.progress_ms) * 4);
  const auto reconnect_limit =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(st.reconnect_timeout_s));

  bool have_last = st.from_revision > 0;
  uint64_t last = st.from_revision > 0 ? st.from_revision - 1 : 0;
  uint64_t delivered = 0;
  size_t index = 0;
  Deadline unreachable_since = Clock::now();
  bool connected_once = false;
  auto backoff = std::chrono::milliseconds(100);

  for (;;) {
    Connection& conn = client.connection(index);
    const Endpoint& ep = endpoints[index];
    index = (index + 1) % endpoints.size();
    HttpRequest req;
    req.target = "/v1/ns/" + EncodeSegment(ns) + "/watch?progress_ms=" + std::to_string(st.progress_ms);
    if (!st.prefix.empty()) req.target += "&prefix=" + EncodeQuery(st.prefix);
    if (!st.key.empty()) req.target += "&key=" + EncodeQuery(st.key);
    if (have_last) req.target += "&from_revision=" + std::to_string(last + 1);
    req.headers.emplace_back("Accept", "application/x-ndjson");
    client.Authorize(req);
    std::string problem;
    try {
      HttpResponse head = conn.StartStream(req, Clock::now() + timeout);
      if (head.status == 503 || head.status == 429) {
        problem = ep.url + ": " + std::to_string(head.status) + " " + ErrorFromResponse(head).what();
      } else if (head.status != 200) {
        throw ErrorFromResponse(head);
      } else {
        connected_once = true;
        backoff = std::chrono::milliseconds(100);
        if (!have_last) {
          // Without --from-revision the stream starts after the member's
          // revision; remembering it lets a reconnect resume there.
          std::string rev = head.Header("x-confman-revision");
          if (!rev.empty()) {
            last = std::stoull(rev);
            have_last = true;
          }
        }
        std::string pending;
        for (;;) {
          if (!conn.ReadSome(&pending, Clock::now() + idle)) {
            problem = ep.url + ": the stream ended";
            break;
          }
          size_t start = 0;
          bool ended = false;
          for (size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1) {
            std::string line = pending.substr(start, nl - start);
            if (line.empty() || line == "\r") continue;
            json event = json::parse(line);
            const std::string type = event.value("type", "");
            if (type == "change") {
              uint64_t rev = event.value("revision", uint64_t{0});
              if (have_last && rev <= last) continue;
              if (st.exec_argv->empty()) {
                PrintChange(ctx.format, event);
              } else {
                RunForChange(*st.exec_argv, event);
              }
              last = rev;
              have_last = true;
              if (st.count > 0 && ++delivered >= st.count) return kExitOk;
            } else if (type == "progress") {
              uint64_t rev = event.value("revision", uint64_t{0});
              if (rev > last) {
                last = rev;
                have_last = true;
              }
            } else if (type == "error") {
              problem = ep.url + " ended the stream: " + event["error"].value("message", event.dump());
              ended = true;
              break;
            }
          }
          pending.erase(0, start);
          if (ended) break;
        }
        conn.Close();
      }
    } catch (const TransportError& e) {
      problem = e.what();
    } catch (const json::exception& e) {
      conn.Close();
      problem = ep.url + ": a stream line is not JSON (" + std::string(e.what()) + ")";
    }
    if (connected_once) {
      std::cerr << "watch: " << problem << "; resuming from revision " << (have_last ? last + 1 : 0) << " on "
                << endpoints[index].url << '\n';
      connected_once = false;
      unreachable_since = Clock::now();
      continue;
    }
    if (Clock::now() - unreachable_since > reconnect_limit) {
      throw CtlError(kExitUnavailable, "unavailable",
                     "no endpoint served the watch for " + FormatSeconds(st.reconnect_timeout_s) +
                         "; last problem: " + problem);
    }
    // A whole round without success: wait a little before the next one.
    if (index == 0) {
      std::this_thread::sleep_for(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
    }
  }
}

}  // namespace

void AddWatchCommand(CLI::App& app, Context& ctx, std::vector<std::string>* exec_argv) {
  auto st = std::make_shared<WatchState>();
  st->exec_argv = exec_argv;
  auto* cmd = app.add_subcommand(
      "watch",
      "Follow changes: watch [NS] [--prefix P|--key K] [--from-revision N] [-- CMD ARGS...]. With CMD, runs it "
      "once per change with CONFMAN_NS, CONFMAN_KEY, CONFMAN_OP, CONFMAN_REVISION set (and prints nothing); "
      "without, prints 'REVISION OP KEY ACTOR' (json: the change object). Resumes on the next endpoint when the "
      "stream is lost, missing and repeating nothing");
  cmd->add_option("args", st->args, "[NS]; NS is left out when -n/--namespace is set");
  cmd->add_option("--prefix", st->prefix, "Only keys starting with this");
  cmd->add_option("--key", st->key, "Only this key");
  cmd->add_option("--from-revision", st->from_revision, "Start with this revision (default: changes from now on)");
  cmd->add_option("--count", st->count, "Exit 0 after this many changes (default: never)");
  cmd->add_option("--progress-ms", st->progress_ms, "How often an idle stream proves it is alive")
      ->check(CLI::Range(100, 60000));
  cmd->add_option("--reconnect-timeout", st->reconnect_timeout_s,
                  "Exit 5 when no endpoint serves the watch for this many seconds");
  cmd->callback([&ctx, st] { ctx.action = [&ctx, st] { return RunWatch(ctx, *st); }; });
}

}  // namespace confmanctl
