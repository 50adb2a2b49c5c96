// confman_bench_transport: two members over 127.0.0.1.
//
// Measures
//   msgs_per_s_small             100-byte appends delivered per second;
//   bulk_mb_per_s                1 MiB appends, MiB delivered per second;
//   heartbeat_p99_ms_under_bulk  p99 heartbeat round trip while 1 MiB
//                                appends and a snapshot stream (100 MiB by
//                                default, in 1 MiB chunks) flow between the
//                                same two members.
// and ends with one JSON line holding them.
//
// Usage: confman_bench_transport [--small N] [--bulk N] [--snapshot-mib N]
//                                [--heartbeat-interval-ms N]
//                                [--heartbeat-seconds N] [--tls-dir DIR]
// --tls-dir runs both members over mutual TLS with DIR/ca.pem,
// DIR/member.pem and DIR/member.key (see BENCHMARKS.md for making them).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "confman/transport/tcp.h"

namespace confman::bench {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr size_t kMiB = 1u << 20;
// Every phase gives up after this long, whatever its count.
constexpr auto kPhaseTimeLimit = 120s;

struct Flags {
  uint64_t small_messages = 200000;
  uint64_t bulk_messages = 300;
  uint64_t snapshot_mib = 100;
  uint64_t heartbeat_interval_ms = 10;
  uint64_t heartbeat_seconds = 5;
  std::string tls_dir;  // Empty: plain TCP.
};

Flags ParseFlags(int argc, char** argv) {
  Flags flags;
  for (int i = 1; i + 1 < argc; i += 2) {
    uint64_t value = 0;
    const std::string name = argv[i];
    if (name == "--tls-dir") {
      flags.tls_dir = argv[i + 1];
      continue;
    }
    if (!absl::SimpleAtoi(argv[i + 1], &value)) {
      std::fprintf(stderr, "bad value for %s: %s\n", argv[i], argv[i + 1]);
      std::exit(2);
    }
    if (name == "--small")
      flags.small_messages = value;
    else if (name == "--bulk")
      flags.bulk_messages = value;
    else if (name == "--snapshot-mib")
      flags.snapshot_mib = value;
    else if (name == "--heartbeat-interval-ms")
      flags.heartbeat_interval_ms = value;
    else if (name == "--heartbeat-seconds")
      flags.heartbeat_seconds = value;
    else {
      std::fprintf(stderr, "unknown flag %s\n", argv[i]);
      std::exit(2);
    }
  }
  return flags;
}

double Seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

// Counts what arrives, answers heartbeats, and times heartbeat round trips.
class BenchHandler : public TransportHandler {
 public:
  explicit BenchHandler(raft::MemberId self) : self_(self) {}
  void set_transport(Transport* transport) { transport_ = transport; }

  void OnMessage(raft::Message message) override {
    switch (message.type) {
      case raft::MessageType::kHeartbeat: {
        raft::Message reply;
        reply.type = raft::MessageType::kHeartbeatResponse;
        reply.from = self_;
        reply.to = message.from;
        reply.term = message.term;
        reply.round = message.round;
        (void)transport_->Send(std::move(reply));
        break;
      }
      case raft::MessageType::kHeartbeatResponse:
        RecordRoundTrip(message.round);
        break;
      default:
        messages_.fetch_add(1, std::memory_order_relaxed);
        for (const raft::Entry& e : message.entries) {
          bytes_.fetch_add(e.data.size(), std::memory_order_relaxed);
        }
    }
  }
  void OnSnapshotChunk(raft::MemberId, TransportSnapshotChunk chunk) override {
    chunk_bytes_.fetch_add(chunk.data.size(), std::memory_order_relaxed);
    if (chunk.last) snapshot_done_ = true;
  }
  void OnForward(raft::MemberId, ForwardFrame) override {}
  void OnSnapshotAck(raft::MemberId, TransportSnapshotAck) override {}
  void OnUnreachable(raft::MemberId) override { unreachable_++; }

  // Heartbeat rounds carry their send time, so no table is needed.
  static uint64_t RoundFor(Clock::time_point sent) {
    return static_cast<uint64_t>(sent.time_since_epoch().count());
  }
  void RecordRoundTrip(uint64_t round) {
    const Clock::time_point sent{Clock::duration(round)};
    const double ms =
        std::chrono::duration<double, std::milli>(Clock::now() - sent).count();
    std::lock_guard<std::mutex> lock(mu_);
    round_trips_ms_.push_back(ms);
  }
  std::vector<double> TakeRoundTrips() {
    std::lock_guard<std::mutex> lock(mu_);
    return std::exchange(round_trips_ms_, {});
  }

  uint64_t messages() const { return messages_.load(); }
  uint64_t bytes() const { return bytes_.load(); }
  uint64_t chunk_bytes() const { return chunk_bytes_.load(); }
  bool snapshot_done() const { return snapshot_done_.load(); }
  uint64_t unreachable() const { return unreachable_.load(); }

 private:
  const raft::MemberId self_;
  Transport* transport_ = nullptr;
  std::atomic<uint64_t> messages_{0};
  std::atomic<uint64_t> bytes_{0};
  std::atomic<uint64_t> chunk_bytes_{0};
  std::atomic<bool> snapshot_done_{false};
  std::atomic<uint64_t> unreachable_{0};
  std::mutex mu_;
  std::vector<double> round_trips_ms_;
};

struct Members {
  std::unique_ptr<TcpTransport> a;
  std::unique_ptr<TcpTransport> b;
  std::unique_ptr<BenchHandler> handler_a = std::make_unique<BenchHandler>(1);
  std::unique_ptr<BenchHandler> handler_b = std::make_unique<BenchHandler>(2);

  ~Members() {
    if (a) a->Stop();
    if (b) b->Stop();
  }
};

TcpTransportOptions Options(raft::MemberId id, const Flags& flags) {
  TcpTransportOptions options;
  if (!flags.tls_dir.empty()) {
    options.tls = TcpTransportOptions::TlsFiles{
        .ca_file = flags.tls_dir + "/ca.pem",
        .certificate_file = flags.tls_dir + "/member.pem",
        .private_key_file = flags.tls_dir + "/member.key"};
  }
  options.listen_address = "127.0.0.1:0";
  options.member_id = id;
  options.cluster_id = "bench";
  options.shared_secret = "bench-secret-0123456789";
  return options;
}

void Check(const absl::Status& status, const char* what) {
  if (status.ok()) return;
  std::fprintf(stderr, "%s: %s\n", what, status.ToString().c_str());
  std::exit(1);
}

std::unique_ptr<Members> StartMembers(const Flags& flags) {
  auto members = std::make_unique<Members>();
  auto a = TcpTransport::Create(Options(1, flags));
  auto b = TcpTransport::Create(Options(2, flags));
  Check(a.status(), "create member 1");
  Check(b.status(), "create member 2");
  members->a = *std::move(a);
  members->b = *std::move(b);
  members->handler_a->set_transport(members->a.get());
  members->handler_b->set_transport(members->b.get());
  Check(members->a->AddPeer(
            2, absl::StrCat("127.0.0.1:", members->b->listen_port())),
        "add peer 2");
  Check(members->b->AddPeer(
            1, absl::StrCat("127.0.0.1:", members->a->listen_port())),
        "add peer 1");
  Check(members->a->Start(members->handler_a.get()), "start member 1");
  Check(members->b->Start(members->handler_b.get()), "start member 2");
  return members;
}

raft::Message AppendOf(size_t bytes) {
  raft::Message m;
  m.type = raft::MessageType::kAppend;
  m.from = 1;
  m.to = 2;
  m.term = 1;
  m.entries.push_back({.term = 1,
                       .index = 1,
                       .type = raft::EntryType::kNormal,
                       .data = std::string(bytes, 'x')});
  return m;
}

// Sends `make()` until the transport accepts it; a full bulk queue is the
// transport's back-pressure signal. Returns false past `deadline`.
template <typename SendFn>
bool SendWithBackpressure(SendFn send, Clock::time_point deadline) {
  while (Clock::now() < deadline) {
    const absl::Status status = send();
    if (status.ok()) return true;
    if (status.code() != absl::StatusCode::kResourceExhausted) {
      Check(status, "send");
    }
    std::this_thread::sleep_for(20us);
  }
  return false;
}

bool WaitFor(const std::function<bool()>& done, Clock::time_point deadline) {
  while (!done()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(200us);
  }
  return true;
}

// Streams `count` appends of `bytes` each and returns the delivery rate in
// messages per second.
double StreamAppends(Members& m, uint64_t count, size_t bytes) {
  const raft::Message prototype = AppendOf(bytes);
  const uint64_t before = m.handler_b->messages();
  const auto start = Clock::now();
  const auto deadline = start + kPhaseTimeLimit;
  for (uint64_t i = 0; i < count; ++i) {
    if (!SendWithBackpressure([&] { return m.a->Send(prototype); }, deadline)) {
      break;
    }
  }
  WaitFor([&] { return m.handler_b->messages() - before >= count; }, deadline);
  const uint64_t delivered = m.handler_b->messages() - before;
  return static_cast<double>(delivered) / Seconds(Clock::now() - start);
}

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t rank =
      static_cast<size_t>(p * static_cast<double>(values.size() - 1));
  return values[rank];
}

struct HeartbeatResult {
  std::vector<double> round_trips_ms;
  double seconds = 0;
  // Append and snapshot bytes delivered while the heartbeats were timed.
  uint64_t bulk_mib_delivered = 0;
};

// Heartbeats every `interval` while a bulk thread streams 1 MiB appends and
// a snapshot thread streams `snapshot_mib` 1 MiB chunks, all from a to b.
HeartbeatResult HeartbeatsUnderBulk(Members& m, const Flags& flags) {
  std::atomic<bool> stop{false};
  const uint64_t bytes_before =
      m.handler_b->bytes() + m.handler_b->chunk_bytes();
  const auto start = Clock::now();
  const auto deadline = start + kPhaseTimeLimit;
  std::thread appends([&] {
    const raft::Message prototype = AppendOf(kMiB);
    while (!stop && Clock::now() < deadline) {
      SendWithBackpressure([&] { return m.a->Send(prototype); }, deadline);
    }
  });
  std::thread snapshot([&] {
    const std::string data(kMiB, 's');
    for (uint64_t seq = 0; seq < flags.snapshot_mib; ++seq) {
      TransportSnapshotChunk chunk{.snapshot_id = 1,
                                   .term = 1,
                                   .meta = {},
                                   .seq = seq,
                                   .last = seq + 1 == flags.snapshot_mib,
                                   .data = data,
                                   .checksum = 0};
      if (!SendWithBackpressure(
              [&] { return m.a->SendSnapshotChunk(2, chunk); }, deadline)) {
        return;
      }
    }
  });
  // Heartbeats for --heartbeat-seconds, and until the snapshot has arrived.
  const auto min_end = start + std::chrono::seconds(flags.heartbeat_seconds);
  while (Clock::now() < deadline &&
         (Clock::now() < min_end || !m.handler_b->snapshot_done())) {
    raft::Message heartbeat;
    heartbeat.type = raft::MessageType::kHeartbeat;
    heartbeat.from = 1;
    heartbeat.to = 2;
    heartbeat.term = 1;
    heartbeat.round = BenchHandler::RoundFor(Clock::now());
    Check(m.a->Send(std::move(heartbeat)), "heartbeat");
    std::this_thread::sleep_for(
        std::chrono::milliseconds(flags.heartbeat_interval_ms));
  }
  HeartbeatResult result;
  result.seconds = Seconds(Clock::now() - start);
  result.bulk_mib_delivered =
      (m.handler_b->bytes() + m.handler_b->chunk_bytes() - bytes_before) / kMiB;
  stop = true;
  appends.join();
  snapshot.join();
  std::this_thread::sleep_for(100ms);  // Let the last responses land.
  result.round_trips_ms = m.handler_a->TakeRoundTrips();
  return result;
}

int Run(const Flags& flags) {
  auto members = StartMembers(flags);
  // Warm up: both connections of both members are open before timing.
  const auto warm_deadline = Clock::now() + 10s;
  StreamAppends(*members, 100, 100);
  WaitFor([&] { return members->handler_b->messages() >= 100; }, warm_deadline);

  const double small_per_s = StreamAppends(*members, flags.small_messages, 100);
  std::printf("small: %llu x 100 B appends: %.0f msgs/s\n",
              static_cast<unsigned long long>(flags.small_messages),
              small_per_s);

  const double bulk_per_s = StreamAppends(*members, flags.bulk_messages, kMiB);
  std::printf("bulk: %llu x 1 MiB appends: %.1f MiB/s\n",
              static_cast<unsigned long long>(flags.bulk_messages), bulk_per_s);

  members->handler_a->TakeRoundTrips();
  const HeartbeatResult hb = HeartbeatsUnderBulk(*members, flags);
  const double p50 = Percentile(hb.round_trips_ms, 0.50);
  const double p99 = Percentile(hb.round_trips_ms, 0.99);
  const double max = Percentile(hb.round_trips_ms, 1.0);
  std::printf(
      "heartbeats under bulk: %zu round trips, p50 %.2f ms, p99 %.2f ms, "
      "max %.2f ms (%llu MiB of appends and snapshot delivered in %.1f s)\n",
      hb.round_trips_ms.size(), p50, p99, max,
      static_cast<unsigned long long>(hb.bulk_mib_delivered), hb.seconds);

  std::printf(
      "{\"bench\":\"transport\",\"msgs_per_s_small\":%.0f,"
      "\"bulk_mb_per_s\":%.1f,\"heartbeat_p99_ms_under_bulk\":%.3f,"
      "\"heartbeat_p50_ms_under_bulk\":%.3f,\"heartbeat_max_ms_under_bulk\":%."
      "3f,"
      "\"heartbeats\":%zu,\"snapshot_mib\":%llu,\"bulk_mib_delivered_during_"
      "heartbeats\":%llu,"
      "\"snapshot_completed\":%s,\"tls\":%s}\n",
      small_per_s, bulk_per_s, p99, p50, max, hb.round_trips_ms.size(),
      static_cast<unsigned long long>(flags.snapshot_mib),
      static_cast<unsigned long long>(hb.bulk_mib_delivered),
      members->handler_b->snapshot_done() ? "true" : "false",
      flags.tls_dir.empty() ? "false" : "true");
  return 0;
}

}  // namespace
}  // namespace confman::bench

int main(int argc, char** argv) {
  return confman::bench::Run(confman::bench::ParseFlags(argc, argv));
}
