// confman-node: one cluster member per process, serving the HTTP API of
// HTTP_API.md. This file owns the process: flags and the config file,
// secrets, opening the Node (LMDB in --data-dir, the TCP transport, with
// optional mutual TLS), starting the HTTP server, the announce file, and an
// orderly shutdown on SIGTERM/SIGINT.
//
// Exit codes: 0 after a signal-driven shutdown, 2 for usage errors (bad
// flags, missing secret), 1 when the member cannot run (unusable data
// directory, a port in use, storage that cannot be opened).
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <thread>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <boost/asio.hpp>

#include "app.h"
#include "confman/node.h"
#include "confman/testing/node_faults.h"
#include "confman/status_macros.h"
#include "confman/transport/tcp.h"
#include "http_server.h"
#include "json_util.h"
#include "log_sink.h"
#include "metrics.h"
#include "worker_pool.h"

namespace confman::server {
namespace {

constexpr int kExitRuntime = 1;
constexpr int kExitUsage = 2;

struct Flags {
  NodeOptions node;  // Defaults straight from a default-constructed one.
  uint64_t id = 0;
  std::string peer_listen;
  std::string client_listen = "127.0.0.1:7480";
  std::string initial_members;
  bool join = false;
  std::string data_dir;
  // NodeOptions' durations as integers for the command line.
  uint64_t election_timeout_ms = uint64_t(NodeOptions{}.election_timeout.count());
  uint64_t heartbeat_interval_ms = uint64_t(NodeOptions{}.heartbeat_interval.count());
  uint64_t tick_interval_ms = uint64_t(NodeOptions{}.tick_interval.count());
  uint64_t request_timeout_ms = uint64_t(NodeOptions{}.request_timeout.count());
  uint64_t session_ttl_seconds = uint64_t(NodeOptions{}.session_ttl.count());
  // HTTP limits (HTTP_API.md, "Limits and timeouts").
  uint64_t max_connections = 1024;
  uint64_t max_watchers = 10000;
  uint64_t header_timeout_ms = 10000;
  uint64_t body_timeout_ms = 60000;
  uint64_t idle_timeout_ms = 120000;
  uint64_t watch_buffer_lines = 1024;
  int http_threads = 2;
  int worker_threads = 4;
  uint64_t ready_max_lag = 1000;
  std::string log_format = "logfmt";
  std::string log_level = "info";
  std::string secret_file;
  std::string client_token_file;
  std::string client_cert;
  std::string client_key;
  std::string peer_cert;
  std::string peer_key;
  std::string peer_ca;
  std::string announce_file;
};

struct UsageError {
  std::string message;
};

void DefineFlags(CLI::App& app, Flags& f) {
  app.set_config("--config", "", "Read these settings from an INI or TOML file (flag names without --)");
  // A misspelt setting in the file must fail loudly, not be ignored.
  app.allow_config_extras(CLI::config_extras_mode::error);
  auto add = [&](const std::string& name, auto& value, const std::string& help) {
    return app.add_option(name, value, help)->capture_default_str();
  };
  add("--id", f.id, "This member's id: non-zero, unique in the cluster")->required();
  add("--cluster-id", f.node.cluster_id, "Name of the cluster; peers with another are refused")->required();
  add("--peer-listen", f.peer_listen, "host:port of the member-to-member transport (port 0 picks one)")->required();
  add("--client-listen", f.client_listen, "host:port of the HTTP API (port 0 picks one)");
  add("--initial-members", f.initial_members,
      "Founding members as id=host:port,... (this member included), or with --join the existing members");
  app.add_flag("--join", f.join, "Join an existing cluster (wait to be added) instead of founding one");
  add("--data-dir", f.data_dir, "Directory for this member's durable state (created if missing)")->required();
  add("--secret-file", f.secret_file,
      "File holding the cluster's shared secret (>= 16 bytes); or set CONFMAN_SECRET");
  add("--election-timeout-ms", f.election_timeout_ms, "Raft election timeout");
  add("--heartbeat-interval-ms", f.heartbeat_interval_ms, "Leader heartbeat interval");
  add("--tick-interval-ms", f.tick_interval_ms, "Raft clock resolution");
  add("--request-timeout-ms", f.request_timeout_ms, "How long a request waits for the cluster");
  add("--max-value-bytes", f.node.max_value_bytes, "Largest value a write may carry (413 above)");
  add("--max-append-bytes", f.node.max_append_bytes, "Entry bytes per AppendEntries message");
  add("--max-frame-bytes", f.node.max_frame_bytes, "Largest transport frame");
  add("--snapshot-chunk-bytes", f.node.snapshot_chunk_bytes, "Snapshot bytes per chunk");
  add("--max-uncommitted-bytes", f.node.max_uncommitted_bytes,
      "Uncommitted bytes the leader holds before refusing writes (429)");
  add("--history-retention", f.node.history_retention, "Changes kept for watches and the audit trail");
  add("--session-max-clients", f.node.session_max_clients,
      "Exactly-once sessions remembered (same on every member)");
  add("--session-ttl-seconds", f.session_ttl_seconds,
      "A session with no write for this long is forgotten (same on every member)");
  add("--session-max-results", f.node.session_max_results,
      "Results remembered per session (same on every member)");
  add("--log-keep-entries", f.node.log_keep_entries, "Log entries kept behind the applied index");
  add("--log-compact-every", f.node.log_compact_every, "Compact the log after this many applied entries");
  add("--value-in-log-min-bytes", f.node.value_in_log_min_bytes,
      "Values at least this large stay in their log entry (0: copy all)");
  add("--watch-threads", f.node.watch_threads, "Threads running watch callbacks");
  add("--watch-queue-events", f.node.watch_queue_events, "Events one watch may have waiting");
  add("--max-connections", f.max_connections, "Open client connections; more get 429");
  add("--max-watchers", f.max_watchers, "Open watch streams; more get 429");
  add("--header-timeout-ms", f.header_timeout_ms, "A request's headers must arrive within this");
  add("--body-timeout-ms", f.body_timeout_ms, "A request's body must arrive within this");
  add("--idle-timeout-ms", f.idle_timeout_ms, "An idle keep-alive connection is closed after this");
  add("--watch-buffer-lines", f.watch_buffer_lines,
      "Lines a watch stream queues for a slow client before ending it");
  add("--http-threads", f.http_threads, "HTTP I/O threads");
  add("--worker-threads", f.worker_threads, "Threads for blocking requests (lists, audit, membership)");
  add("--ready-max-lag", f.ready_max_lag, "/readyz fails when applied lags commit by more entries");
  add("--log-format", f.log_format, "logfmt or json")->check(CLI::IsMember({"logfmt", "json"}));
  add("--log-level", f.log_level, "debug, info, warning or error")
      ->check(CLI::IsMember({"debug", "info", "warning", "error"}));
  add("--client-token-file", f.client_token_file,
      "File holding the bearer token clients must send (every route but /livez, /readyz)");
  add("--client-cert", f.client_cert, "PEM certificate chain: serve HTTPS (with --client-key)");
  add("--client-key", f.client_key, "PEM private key for --client-cert");
  add("--peer-cert", f.peer_cert, "PEM certificate for mutual TLS between members");
  add("--peer-key", f.peer_key, "PEM private key for --peer-cert");
  add("--peer-ca", f.peer_ca, "PEM CA that members' certificates must chain to");
  add("--announce-file", f.announce_file,
      "Once listening, write {id,pid,peer_address,client_url} as one JSON line here");
}

// Reads a small secret or token file; the trailing newline is not part of it.
absl::StatusOr<std::string> ReadSecretFile(const std::string& path, const char* flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(std::string("cannot read ") + flag + " '" + path +
                                      "'; check the path and its permissions");
  }
  std::ostringstream text;
  text << in.rdbuf();
  std::string value = text.str();
  while (!value.empty() && (value.back() == '\n' || value.back() == '\r')) value.pop_back();
  if (value.empty()) {
    return absl::InvalidArgumentError(std::string(flag) + " '" + path + "' is empty");
  }
  return value;
}

absl::StatusOr<std::vector<PeerAddress>> ParseMembers(const std::string& text) {
  std::vector<PeerAddress> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    const auto id = eq == std::string::npos ? std::nullopt : ParseUint64(item.substr(0, eq));
    if (!id || *id == 0 || item.find(':', eq) == std::string::npos) {
      return absl::InvalidArgumentError("--initial-members entry '" + item +
                                        "' is not id=host:port (e.g. 1=127.0.0.1:7401)");
    }
    out.push_back(PeerAddress{*id, item.substr(eq + 1)});
  }
  return out;
}

// Validate() names NodeOptions fields ("NodeOptions.election_timeout: ...");
// an operator needs the flag that sets the field.
std::string FlagForOptionMessage(std::string_view message) {
  constexpr std::string_view kPrefix = "NodeOptions.";
  const size_t at = message.find(kPrefix);
  if (at == std::string_view::npos) return "the matching flag";
  std::string field;
  for (size_t i = at + kPrefix.size(); i < message.size(); ++i) {
    const char c = message[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) break;
    field.push_back(c == '_' ? '-' : c);
  }
  if (field == "listen-address") return "--peer-listen";
  if (field == "shared-secret") return "--secret-file or CONFMAN_SECRET";
  if (field == "election-timeout" || field == "heartbeat-interval" || field == "tick-interval" ||
      field == "request-timeout") {
    return "--" + field + "-ms";
  }
  if (field == "session-ttl") return "--session-ttl-seconds";
  return "--" + field;
}

absl::Status Check(bool ok, const std::string& message) {
  return ok ? absl::OkStatus() : absl::InvalidArgumentError(message);
}

// Everything the flags decide, checked; InvalidArgument is a usage error.
absl::Status BuildOptions(Flags& f) {
  NodeOptions& n = f.node;
  n.id = f.id;
  n.listen_address = f.peer_listen;
  n.join = f.join;
  n.data_dir = f.data_dir;
  n.election_timeout = std::chrono::milliseconds(f.election_timeout_ms);
  n.heartbeat_interval = std::chrono::milliseconds(f.heartbeat_interval_ms);
  n.tick_interval = std::chrono::milliseconds(f.tick_interval_ms);
  n.request_timeout = std::chrono::milliseconds(f.request_timeout_ms);
  n.session_ttl = std::chrono::seconds(f.session_ttl_seconds);
  CONFMAN_ASSIGN_OR_RETURN(n.initial_members, ParseMembers(f.initial_members));
  if (!f.secret_file.empty()) {
    CONFMAN_ASSIGN_OR_RETURN(n.shared_secret, ReadSecretFile(f.secret_file, "--secret-file"));
  } else if (const char* env = std::getenv("CONFMAN_SECRET"); env != nullptr && *env != '\0') {
    n.shared_secret = env;
  } else {
    return absl::InvalidArgumentError(
        "no shared secret: pass --secret-file FILE or set CONFMAN_SECRET (the same on every member)");
  }
  CONFMAN_RETURN_IF_ERROR(Check(f.client_cert.empty() == f.client_key.empty(),
                                "--client-cert and --client-key go together; give both or neither"));
  const int peer_tls = int(!f.peer_cert.empty()) + int(!f.peer_key.empty()) + int(!f.peer_ca.empty());
  CONFMAN_RETURN_IF_ERROR(Check(peer_tls == 0 || peer_tls == 3,
                                "--peer-cert, --peer-key and --peer-ca go together; give all three or none"));
  CONFMAN_RETURN_IF_ERROR(Check(f.watch_buffer_lines >= 1, "--watch-buffer-lines must be at least 1"));
  CONFMAN_RETURN_IF_ERROR(Check(f.max_connections >= 1, "--max-connections must be at least 1"));
  CONFMAN_RETURN_IF_ERROR(Check(f.http_threads >= 1 && f.http_threads <= 64,
                                "--http-threads must be within 1..64"));
  CONFMAN_RETURN_IF_ERROR(Check(f.worker_threads >= 1 && f.worker_threads <= 256,
                                "--worker-threads must be within 1..256"));
  CONFMAN_RETURN_IF_ERROR(Check(f.header_timeout_ms > 0 && f.body_timeout_ms > 0 && f.idle_timeout_ms > 0,
                                "the HTTP timeouts must be positive"));
  absl::Status valid = n.Validate();
  if (!valid.ok()) {
    return absl::InvalidArgumentError(std::string(valid.message()) + " (set " +
                                      FlagForOptionMessage(std::string(valid.message())) + "; see --help)");
  }
  return absl::OkStatus();
}

// The data directory must exist (or be creatable) and be writable before
// the Node tries to open LMDB in it, so the message names the directory.
absl::Status PrepareDataDir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::FailedPreconditionError("cannot create --data-dir '" + dir + "': " + ec.message() +
                                         "; choose a writable directory");
  }
  if (!std::filesystem::is_directory(dir, ec)) {
    return absl::FailedPreconditionError("--data-dir '" + dir + "' is not a directory");
  }
  if (::access(dir.c_str(), R_OK | W_OK | X_OK) != 0) {
    return absl::FailedPreconditionError("--data-dir '" + dir +
                                         "' is not writable by this user; fix its permissions");
  }
  // LMDB lets several processes open one environment, and two members on
  // one log would corrupt it; an exclusive lock held for the life of the
  // process refuses the second. The descriptor is left open on purpose.
  const std::string lock_path = dir + "/confman-node.lock";
  const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::FailedPreconditionError("cannot create '" + lock_path + "': " +
                                         std::strerror(errno));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return absl::FailedPreconditionError(
        "--data-dir '" + dir + "' is in use by another confman-node process; stop it first, "
        "or give this member its own directory");
  }
  return absl::OkStatus();
}

absl::Status WriteAnnounceFile(const std::string& path, const Json& line) {
  const std::string temp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(temp, std::ios::trunc);
    out << DumpJson(line) << "\n";
    out.flush();
    if (!out) return absl::UnavailableError("cannot write --announce-file temp '" + temp + "'");
  }
  std::error_code ec;
  std::filesystem::rename(temp, path, ec);
  if (ec) {
    return absl::UnavailableError("cannot rename '" + temp + "' to --announce-file '" + path +
                                  "': " + ec.message());
  }
  return absl::OkStatus();
}

int Run(int argc, char** argv) {
  CLI::App cli{"confman-node: one member of a confman cluster, serving the HTTP API"};
  Flags f;
  DefineFlags(cli, f);
  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = cli.exit(e);  // Prints help, or the error and a hint.
    return code == 0 ? 0 : kExitUsage;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "confman-node: %s\n", e.what());
    return kExitUsage;
  }

  if (absl::Status s = BuildOptions(f); !s.ok()) {
    std::fprintf(stderr, "confman-node: %s\n", std::string(s.message()).c_str());
    return kExitUsage;
  }
  LogLevel level = LogLevel::kInfo;
  ParseLogLevel(f.log_level, &level);
  Logger log(f.log_format == "json" ? LogFormat::kJson : LogFormat::kLogfmt, level);
  std::string token;
  if (!f.client_token_file.empty()) {
    auto read = ReadSecretFile(f.client_token_file, "--client-token-file");
    if (!read.ok()) {
      log.Event(LogLevel::kError, "main", std::string(read.status().message()));
      return kExitUsage;
    }
    token = *read;
  }
  if (absl::Status s = PrepareDataDir(f.data_dir); !s.ok()) {
    log.Event(LogLevel::kError, "main", std::string(s.message()));
    return kExitRuntime;
  }

  // Signals arrive on this thread through Asio, never in a raw handler.
  // Registered before any other thread starts, so a SIGTERM during startup
  // is held until the member can shut down in order.
  boost::asio::io_context signal_ioc;
  boost::asio::signal_set signals(signal_ioc, SIGINT, SIGTERM);
  int received = 0;
  signals.async_wait([&](const boost::system::error_code& ec, int signo) {
    if (!ec) received = signo;
  });

  PrometheusMetrics metrics;
  f.node.metrics = &metrics;
  f.node.log = &log;

  // Test suites prove their checks catch a broken guarantee by running
  // members that break one on purpose. An environment variable, not a
  // flag, so that it never shows in --help as a setting.
  if (const char* name = std::getenv("CONFMAN_TESTING_FAULT"); name != nullptr && *name) {
    auto fault = testing::NodeTestingFaultFromName(name);
    if (!fault) {
      log.Event(LogLevel::kError, "main",
                std::string("CONFMAN_TESTING_FAULT names no known fault: ") + name +
                    "; unset it (it is for test suites only)");
      return kExitUsage;
    }
    f.node.testing_faults |= testing::FaultBit(*fault);
    log.Event(LogLevel::kWarning, "main",
              std::string("TEST ONLY: this member breaks a guarantee on purpose: ") + name);
  }

  // Mutual TLS between members needs a TcpTransport built here. It binds
  // now, so a port-0 address is rewritten to the chosen port before the
  // Node records it as this member's address.
  if (!f.peer_cert.empty()) {
    TcpTransportOptions tcp;
    tcp.listen_address = f.node.listen_address;
    tcp.member_id = f.node.id;
    tcp.cluster_id = f.node.cluster_id;
    tcp.shared_secret = f.node.shared_secret;
    tcp.max_frame_bytes = static_cast<uint32_t>(f.node.max_frame_bytes);
    tcp.max_bulk_queue_bytes =
        static_cast<size_t>(std::max<uint64_t>(f.node.max_frame_bytes, uint64_t{64} << 20));
    tcp.reconnect_max = std::clamp(f.node.election_timeout, tcp.reconnect_initial, tcp.reconnect_max);
    tcp.tls = TcpTransportOptions::TlsFiles{
        .ca_file = f.peer_ca, .certificate_file = f.peer_cert, .private_key_file = f.peer_key};
    tcp.log = [&log](const std::string& line) { log.Event(LogLevel::kInfo, "transport", line); };
    auto transport = TcpTransport::Create(std::move(tcp));
    if (!transport.ok()) {
      log.Event(LogLevel::kError, "main", "cannot start the peer transport",
                {{"error", transport.status().ToString()},
                 {"hint", "check --peer-listen and the --peer-cert/--peer-key/--peer-ca files"}});
      return absl::IsInvalidArgument(transport.status()) ? kExitUsage : kExitRuntime;
    }
    const std::string host = f.node.listen_address.substr(0, f.node.listen_address.rfind(':'));
    f.node.listen_address = host + ":" + std::to_string((*transport)->listen_port());
    auto holder = std::make_shared<std::unique_ptr<Transport>>(std::move(*transport));
    f.node.transport_factory =
        [holder](raft::MemberId) -> absl::StatusOr<std::unique_ptr<Transport>> {
      if (!*holder) return absl::FailedPreconditionError("the TLS transport was already used");
      return std::move(*holder);
    };
  }

  auto opened = Node::Open(f.node);
  if (!opened.ok()) {
    log.Event(LogLevel::kError, "main", "cannot open the member",
              {{"error", opened.status().ToString()},
               {"hint", "check --data-dir, --peer-listen (port in use?) and the flags the error names"}});
    return absl::IsInvalidArgument(opened.status()) ? kExitUsage : kExitRuntime;
  }
  std::unique_ptr<Node> node = std::move(*opened);

  WorkerPool workers(static_cast<size_t>(f.worker_threads), 1024);
  AppConfig config{.id = f.id,
                   .cluster_id = f.node.cluster_id,
                   .peer_address = node->listen_address(),
                   .data_dir = f.data_dir,
                   .ready_max_lag = f.ready_max_lag,
                   .max_watchers = f.max_watchers,
                   .watch_queue_lines = f.watch_buffer_lines,
                   .request_timeout = f.node.request_timeout,
                   .token = token,
                   .initial_peers = {}};
  for (const PeerAddress& peer : f.node.initial_members) config.initial_peers[peer.id] = peer.address;
  App app(config, node.get(), &log, &metrics, &workers);
  HttpServerOptions http_options{
      .listen_address = f.client_listen,
      .io_threads = f.http_threads,
      .max_connections = f.max_connections,
      .header_timeout = std::chrono::milliseconds(f.header_timeout_ms),
      .body_timeout = std::chrono::milliseconds(f.body_timeout_ms),
      .idle_timeout = std::chrono::milliseconds(f.idle_timeout_ms),
      .max_body_bytes = f.node.max_value_bytes,
      .token = token,
      .cert_file = f.client_cert,
      .key_file = f.client_key};
  auto server = HttpServer::Create(
      http_options, [&app](std::shared_ptr<Exchange> ex) { app.Handle(std::move(ex)); },
      [&app](Response& r) { app.Decorate(r); },
      [&app](http::status status, const std::string& code, const std::string& message) {
        return app.Error(status, code, message);
      },
      &log, &metrics);
  if (!server.ok()) {
    log.Event(LogLevel::kError, "main", "cannot start the HTTP server",
              {{"error", server.status().ToString()}});
    node->Close();
    return absl::IsInvalidArgument(server.status()) ? kExitUsage : kExitRuntime;
  }
  app.set_server(server->get());
  app.set_client_url((*server)->url());
  (*server)->Start();
  app.StartBackground();
  log.Event(LogLevel::kInfo, "main", "serving",
            {{"id", std::to_string(f.id)},
             {"peer_address", node->listen_address()},
             {"client_url", (*server)->url()},
             {"data_dir", f.data_dir}});
  if (!f.announce_file.empty()) {
    const Json line = {{"id", f.id},
                       {"pid", static_cast<int64_t>(::getpid())},
                       {"peer_address", node->listen_address()},
                       {"client_url", (*server)->url()}};
    if (absl::Status s = WriteAnnounceFile(f.announce_file, line); !s.ok()) {
      log.Event(LogLevel::kError, "main", std::string(s.message()));
    }
  }

  signal_ioc.run();

  log.Event(LogLevel::kInfo, "main", "shutting down", {{"signal", std::to_string(received)}});
  (*server)->StopAccepting();
  // Open watches end with an error line naming where to resume; let the
  // I/O threads flush those before they stop.
  node->Close();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  app.StopBackground();
  workers.Stop();
  (*server)->Stop();
  server->reset();
  node.reset();
  log.Event(LogLevel::kInfo, "main", "stopped");
  return 0;
}

}  // namespace
}  // namespace confman::server

int main(int argc, char** argv) {
  // Writes to a vanished client must fail with EPIPE, not kill the member.
  std::signal(SIGPIPE, SIG_IGN);
  try {
    return confman::server::Run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "confman-node: unexpected error: %s\n", e.what());
    return 1;
  }
}
