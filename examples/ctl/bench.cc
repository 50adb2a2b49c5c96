// `bench`: an HTTP write load generator. Writer threads each own their
// keep-alive connections (pinned to one endpoint, or one per endpoint
// used round-robin), time every write, and the totals end in one JSON
// line. --target etcd speaks etcd v3.4's JSON gateway instead, so both
// systems are measured by the same generator.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <mutex>
#include <random>
#include <thread>

#include "http_client.h"
#include "output.h"
#include "progress.h"

namespace confmanctl {

namespace {

using nlohmann::json;

struct Workload {
  const char* name;
  uint64_t value_bytes;
  uint64_t writes;
  uint64_t writers;
};

constexpr Workload kWorkloads[] = {
    {"a", 256, 20000, 32},
    {"b", 10 * 1000, 1000, 10},
    {"c", 100 * 1000, 1000, 10},
    {"d", 1024 * 1024, 1000, 10},
    {"e", 1024 * 1024, 200, 1},
};

struct BenchState {
  std::string workload = "a";
  uint64_t value_bytes = 0;
  uint64_t writes = 0;
  uint64_t writers = 0;
  CLI::Option* value_bytes_opt = nullptr;
  CLI::Option* writes_opt = nullptr;
  CLI::Option* writers_opt = nullptr;
  std::string target = "confman";
  bool round_robin = false;
  std::string key_prefix = "bench/";
};

struct Shared {
  std::atomic<uint64_t> next{0};
  std::atomic<uint64_t> done{0};
  std::atomic<uint64_t> errors{0};
  std::mutex mu;
  std::vector<double> latencies_ms;  // merged from the writers at their end
  std::string first_error;
};

struct WriterPlan {
  size_t writer;
  uint64_t writes;
  uint64_t value_bytes;
  bool etcd;
  bool round_robin;
  std::string ns;
  std::string key_prefix;
  std::string token;
  double timeout_s;
};

void RunWriter(const WriterPlan& plan, const std::vector<Endpoint>& endpoints, const TlsSettings& tls,
               Shared& shared) {
  std::vector<std::unique_ptr<Connection>> conns;
  if (plan.round_robin) {
    for (const auto& ep : endpoints) conns.push_back(std::make_unique<Connection>(ep, tls));
  } else {
    conns.push_back(std::make_unique<Connection>(endpoints[plan.writer % endpoints.size()], tls));
  }
  std::mt19937_64 rng(RandomClientId());
  std::string value(plan.value_bytes, 'x');
  const char* alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  for (char& c : value) c = alphabet[rng() % 62];
  const std::string value_b64 = plan.etcd ? Base64Encode(value) : std::string();
  const uint64_t client_id = RandomClientId();
  uint64_t sequence = 0;
  std::vector<double> latencies;
  const auto timeout = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(plan.timeout_s));
  size_t turn = 0;
  for (;;) {
    uint64_t i = shared.next.fetch_add(1);
    if (i >= plan.writes) break;
    std::string key = plan.key_prefix + std::to_string(plan.writer) + "/" + std::to_string(i);
    HttpRequest req;
    if (plan.etcd) {
      req.method = "POST";
      req.target = "/v3/kv/put";
      req.body = json{{"key", Base64Encode(key)}, {"value", value_b64}}.dump();
      req.headers.emplace_back("Content-Type", "application/json");
    } else {
      req.method = "PUT";
      req.target = KvTarget(plan.ns, key);
      req.body = value;
      req.headers.emplace_back("Content-Type", "application/octet-stream");
      req.headers.emplace_back("X-Confman-Request", std::to_string(client_id) + ":" + std::to_string(++sequence));
      if (!plan.token.empty()) req.headers.emplace_back("Authorization", "Bearer " + plan.token);
    }
    Connection& conn = *conns[turn++ % conns.size()];
    auto start = Clock::now();
    std::string error;
    try {
      HttpResponse res = conn.RoundTrip(req, start + timeout);
      if (res.status != 200) error = conn.endpoint().url + ": HTTP " + std::to_string(res.status) + " " + res.body;
    } catch (const TransportError& e) {
      error = e.what();
    }
    auto elapsed = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    if (error.empty()) {
      latencies.push_back(elapsed);
    } else {
      shared.errors.fetch_add(1);
      std::lock_guard<std::mutex> lock(shared.mu);
      if (shared.first_error.empty()) shared.first_error = error;
    }
    shared.done.fetch_add(1);
  }
  std::lock_guard<std::mutex> lock(shared.mu);
  shared.latencies_ms.insert(shared.latencies_ms.end(), latencies.begin(), latencies.end());
}

double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  if (rank == 0) rank = 1;
  return sorted[std::min(rank, sorted.size()) - 1];
}

double Round2(double v) { return std::round(v * 100) / 100; }

int RunBench(Context& ctx, BenchState& st) {
  const Workload* wl = nullptr;
  for (const auto& w : kWorkloads) {
    if (st.workload == w.name) wl = &w;
  }
  if (!wl) throw UsageError("--workload must be one of a, b, c, d, e");
  if (st.target != "confman" && st.target != "etcd") throw UsageError("--target must be confman or etcd");
  uint64_t value_bytes = st.value_bytes_opt->count() ? st.value_bytes : wl->value_bytes;
  uint64_t writes = st.writes_opt->count() ? st.writes : wl->writes;
  uint64_t writers = st.writers_opt->count() ? st.writers : wl->writers;
  if (writes == 0 || writers == 0) throw UsageError("--writes and --writers must be at least 1");
  writers = std::min(writers, writes);
  Client& client = ctx.client();
  const bool etcd = st.target == "etcd";
  WriterPlan base{0, writes, value_bytes, etcd, st.round_robin, ctx.opts.ns.empty() ? "bench" : ctx.opts.ns,
                  st.key_prefix, client.token(), client.timeout_s()};
  if (ctx.format != Format::kJson) {
    std::cout << "workload " << wl->name << ": " << writes << " writes of " << value_bytes << " B by " << writers
              << " writers to " << client.endpoints().size() << " endpoint(s) ("
              << (st.round_robin ? "round-robin" : "pinned") << ", " << st.target << ")\n"
              << std::flush;
  }
  Shared shared;
  std::vector<std::thread> threads;
  auto start = Clock::now();
  for (uint64_t w = 0; w < writers; ++w) {
    WriterPlan plan = base;
    plan.writer = w;
    threads.emplace_back([plan, &client, &shared] { RunWriter(plan, client.endpoints(), client.tls(), shared); });
  }
  ProgressBar bar("bench " + std::string(wl->name), writes);
  while (shared.done.load() < writes) {
    bar.Update(shared.done.load(), std::to_string(shared.errors.load()) + " errors");
    // Every claimed write counts as done, failed or not, so this ends.
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  for (auto& t : threads) t.join();
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  bar.Update(shared.done.load(), "", true);
  bar.Finish();
  std::sort(shared.latencies_ms.begin(), shared.latencies_ms.end());
  const uint64_t ok = shared.latencies_ms.size();
  const uint64_t errors = shared.errors.load();
  // Ordered as documented, so the line reads the same in every run.
  nlohmann::ordered_json result{{"workload", wl->name},
              {"writes", writes},
              {"ops_per_s", Round2(seconds > 0 ? static_cast<double>(ok) / seconds : 0)},
              {"p50_ms", Round2(Percentile(shared.latencies_ms, 0.50))},
              {"p99_ms", Round2(Percentile(shared.latencies_ms, 0.99))},
              {"max_ms", Round2(shared.latencies_ms.empty() ? 0 : shared.latencies_ms.back())},
              {"errors", errors}};
  if (ctx.format != Format::kJson) {
    std::printf("%llu ok, %llu errors in %.2f s: %.1f ops/s\nlatency ms: p50 %.2f  p99 %.2f  max %.2f\n",
                static_cast<unsigned long long>(ok), static_cast<unsigned long long>(errors), seconds,
                result["ops_per_s"].get<double>(), result["p50_ms"].get<double>(), result["p99_ms"].get<double>(),
                result["max_ms"].get<double>());
    std::fflush(stdout);
  }
  if (!shared.first_error.empty()) std::cerr << "first error: " << shared.first_error << '\n';
  PrintJsonLine(result);
  if (ok == 0) throw CtlError(kExitUnavailable, "unavailable", "no write succeeded; see the first error above");
  return kExitOk;
}

}  // namespace

void AddBenchCommand(CLI::App& app, Context& ctx) {
  auto st = std::make_shared<BenchState>();
  auto* cmd = app.add_subcommand(
      "bench",
      "Write load generator. Workloads: a = 256 B x 20000 by 32 writers; b = 10 KB x 1000 by 10; c = 100 KB x "
      "1000 by 10; d = 1 MiB x 1000 by 10; e = 1 MiB x 200 by 1. Ends with one JSON line of results. Writes go "
      "to the namespace of -n (default 'bench')");
  cmd->add_option("--workload", st->workload, "a, b, c, d or e")->capture_default_str();
  st->value_bytes_opt = cmd->add_option("--value-bytes", st->value_bytes, "Override the workload's value size");
  st->writes_opt = cmd->add_option("--writes", st->writes, "Override the workload's number of writes");
  st->writers_opt = cmd->add_option("--writers", st->writers, "Override the workload's number of writer threads");
  cmd->add_option("--target", st->target,
                  "confman, or etcd: POST /v3/kv/put of etcd v3.4's JSON gateway at the --endpoints")
      ->capture_default_str();
  cmd->add_flag("--round-robin", st->round_robin,
                "Each writer spreads its writes over every endpoint (default: writer i is pinned to endpoint i mod N)");
  cmd->add_option("--key-prefix", st->key_prefix, "Keys are PREFIX<writer>/<n>")->capture_default_str();
  cmd->callback([&ctx, st] { ctx.action = [&ctx, st] { return RunBench(ctx, *st); }; });
}

}  // namespace confmanctl
