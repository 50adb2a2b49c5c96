// confman_bench_storage: figures for the LMDB log and config state machine.
//
// State mode (default):
//   confman_bench_storage --values N --value-bytes B --dir D [--compressible]
//       [--batch 8] [--compact-every 100]
// fills an LmdbLogStore and the LMDB config state machine with N values of
// B bytes (random, or JSON-like with --compressible) through the real path:
// encode (compress once) -> log append (one durable commit per batch) ->
// apply, compacting the log every --compact-every entries. Then it opens a
// snapshot, streams it into a fresh state machine and commits the restore.
//
// Log mode:
//   confman_bench_storage --log-append --entry-bytes B --appenders A
//       --entries E --dir D
// A threads each append entries one at a time, waiting for durability
// before the next (E entries in total): group-commit throughput.
//
// Both print human-readable lines and end with one JSON line.
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "confman/kv/command.h"
#include "confman/kv/kv_state_machine.h"
#include "confman/storage/lmdb.h"

namespace confman::bench {
namespace {

using Clock = std::chrono::steady_clock;

double MillisSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

[[noreturn]] void Fail(const std::string& what, const absl::Status& status) {
  std::fprintf(stderr, "confman_bench_storage: %s: %s\n", what.c_str(),
               status.ToString().c_str());
  std::exit(1);
}

template <typename T>
T Must(absl::StatusOr<T> value, const std::string& what) {
  if (!value.ok()) Fail(what, value.status());
  return *std::move(value);
}

void Must(const absl::Status& status, const std::string& what) {
  if (!status.ok()) Fail(what, status);
}

// Write counters over the fill, three ways, because they disagree:
//   file_bytes    bytes this process passed to write calls (/proc/self/io
//                 wchar): what the storage engine asked the disk to store;
//   page_cache    pages this process dirtied (/proc/self/io write_bytes).
//                 On large-folio kernels this over-counts when LMDB reuses
//                 freed pages (the device counter shows far less);
//   device        sectors written to the device holding the data
//                 (/sys/dev/block/M:m/stat), including every other
//                 process's I/O and file-system journaling.
struct WriteCounters {
  uint64_t file_bytes = 0;
  uint64_t page_cache_bytes = 0;
  uint64_t device_bytes = 0;
};

uint64_t ProcIoField(const std::string& field) {
  std::ifstream io("/proc/self/io");
  std::string key;
  uint64_t value = 0;
  while (io >> key >> value) {
    if (key == field) return value;
  }
  return 0;
}

uint64_t DeviceWrittenBytes(const std::string& dir) {
  struct stat st;
  if (stat(dir.c_str(), &st) != 0) return 0;
  std::ifstream in("/sys/dev/block/" + std::to_string(major(st.st_dev)) + ":" +
                   std::to_string(minor(st.st_dev)) + "/stat");
  uint64_t field[7] = {};
  for (uint64_t& f : field) in >> f;
  return field[6] * 512;  // Sectors written.
}

WriteCounters ReadWriteCounters(const std::string& dir) {
  sync();
  return WriteCounters{.file_bytes = ProcIoField("wchar:"),
                       .page_cache_bytes = ProcIoField("write_bytes:"),
                       .device_bytes = DeviceWrittenBytes(dir)};
}

uint64_t RssAnonBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("RssAnon:", 0) == 0) {
      return std::strtoull(line.c_str() + 8, nullptr, 10) * 1024;
    }
  }
  return 0;
}

// Samples RssAnon every millisecond and keeps the peak.
class RssSampler {
 public:
  RssSampler() : peak_(RssAnonBytes()) {
    thread_ = std::thread([this] {
      while (!stop_) {
        Record();
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    });
  }
  ~RssSampler() { Stop(); }
  void Record() {
    const uint64_t now = RssAnonBytes();
    uint64_t seen = peak_.load();
    while (now > seen && !peak_.compare_exchange_weak(seen, now)) {
    }
  }
  uint64_t Stop() {
    if (thread_.joinable()) {
      stop_ = true;
      thread_.join();
    }
    Record();
    return peak_.load();
  }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> peak_;
  std::thread thread_;
};

struct Flags {
  std::map<std::string, std::string> values;
  bool Has(const std::string& name) const { return values.count(name) > 0; }
  uint64_t Number(const std::string& name, uint64_t fallback) const {
    auto it = values.find(name);
    return it == values.end() ? fallback : std::strtoull(it->second.c_str(), nullptr, 10);
  }
  std::string Text(const std::string& name) const {
    auto it = values.find(name);
    return it == values.end() ? "" : it->second;
  }
};

Flags ParseFlags(int argc, char** argv) {
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0) continue;
    const bool has_value = i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0;
    flags.values[arg.substr(2)] = has_value ? argv[++i] : "";
  }
  return flags;
}

std::string RandomBytes(std::mt19937_64& rng, size_t size) {
  std::string out(size, '\0');
  for (size_t i = 0; i + 8 <= size; i += 8) {
    const uint64_t word = rng();
    std::memcpy(out.data() + i, &word, 8);
  }
  for (size_t i = size - size % 8; i < size; ++i) out[i] = static_cast<char>(rng());
  return out;
}

// Config-like JSON: repetitive field names, varying numbers and names.
std::string JsonLikeBytes(std::mt19937_64& rng, size_t size) {
  std::string out = "[";
  while (out.size() < size) {
    out += "{\"service\":\"svc-" + std::to_string(rng() % 500) +
           "\",\"enabled\":" + (rng() % 2 ? "true" : "false") +
           ",\"weight\":" + std::to_string(rng() % 1000) +
           ",\"region\":\"eu-west-" + std::to_string(rng() % 3) +
           "\",\"timeout_ms\":" + std::to_string(100 * (rng() % 50)) + "},";
  }
  out.resize(size);
  return out;
}

std::string Resolve(const std::string& dir, const std::string& name) {
  std::error_code ec;
  std::filesystem::remove_all(dir + "/" + name, ec);
  return dir + "/" + name;
}

int RunStateBench(const Flags& flags) {
  const uint64_t values = flags.Number("values", 1000);
  const uint64_t value_bytes = flags.Number("value-bytes", 1 << 20);
  const uint64_t batch = std::max<uint64_t>(1, flags.Number("batch", 8));
  const uint64_t compact_every = std::max<uint64_t>(1, flags.Number("compact-every", 100));
  const bool compressible = flags.Has("compressible");
  const std::string dir = flags.Text("dir");
  if (dir.empty()) Fail("usage", absl::InvalidArgumentError("--dir is required"));

  auto log = Must(LmdbLogStore::Open({.dir = Resolve(dir, "log")}), "opening the log");
  auto state = Must(kv::KvStateMachine::OpenLmdb({.dir = Resolve(dir, "state")}),
                    "opening the state machine");
  std::mt19937_64 rng(42);

  const WriteCounters before = ReadWriteCounters(dir);
  const auto fill_start = Clock::now();
  raft::Index index = 0;
  uint64_t stored_value_bytes = 0;
  while (index < values) {
    LogWrite write;
    for (uint64_t i = 0; i < batch && index < values; ++i) {
      ++index;
      kv::Command command;
      command.ns = "bench";
      command.key = "key-" + std::to_string(index);
      command.value = compressible ? JsonLikeBytes(rng, value_bytes)
                                   : RandomBytes(rng, value_bytes);
      command.content_type = compressible ? "application/json"
                                          : "application/octet-stream";
      std::string data = Must(kv::EncodeCommand(command, "bench", 0), "encoding");
      stored_value_bytes += data.size();
      write.entries.push_back(raft::Entry{.term = 1, .index = index,
                                          .type = raft::EntryType::kNormal,
                                          .data = std::move(data)});
    }
    write.hard_state = raft::HardState{.term = 1, .vote = 1, .commit = index};
    std::vector<raft::Entry> committed = write.entries;
    Must(log->WriteSync(std::move(write)), "appending to the log");
    for (const ApplyResult& r : Must(state->Apply(std::move(committed)), "applying")) {
      Must(r.outcome, "a command's outcome");
    }
    if (index / compact_every != (index - batch) / compact_every || index == values) {
      Must(log->CompactPrefix(state->AppliedIndex()), "compacting the log");
    }
  }
  const double fill_ms = MillisSince(fill_start);
  const WriteCounters after = ReadWriteCounters(dir);
  const uint64_t written = after.file_bytes - before.file_bytes;
  const uint64_t user_bytes = values * value_bytes;
  const LogStoreStats log_stats = log->Stats();
  const uint64_t state_bytes = state->StorageBytes();
  std::printf("fill: %llu values x %llu B in %.0f ms; %llu B written to files "
              "for %llu user bytes; log commits %llu\n",
              (unsigned long long)values, (unsigned long long)value_bytes, fill_ms,
              (unsigned long long)written, (unsigned long long)user_bytes,
              (unsigned long long)log_stats.commits);

  auto restored = Must(kv::KvStateMachine::OpenLmdb({.dir = Resolve(dir, "restore")}),
                       "opening the restore target");
  const uint64_t rss_baseline = RssAnonBytes();
  RssSampler sampler;
  const auto open_start = Clock::now();
  auto source = Must(state->OpenSnapshot(), "opening a snapshot");
  const double open_ms = MillisSince(open_start);
  const auto stream_start = Clock::now();
  auto sink = Must(restored->BeginRestore(source->meta()), "beginning the restore");
  uint64_t chunks = 0;
  uint64_t stream_bytes = 0;
  while (true) {
    SnapshotChunk chunk = Must(source->NextChunk(), "reading a chunk");
    ++chunks;
    stream_bytes += chunk.data.size();
    Must(sink->Write(chunk), "writing a chunk");
    if (chunk.last) break;
  }
  Must(sink->Commit(), "committing the restore");
  const double stream_ms = MillisSince(stream_start);
  source.reset();
  const uint64_t rss_peak = sampler.Stop();

  // The restored copy must equal the original.
  if (restored->AppliedIndex() != state->AppliedIndex() ||
      restored->Revision() != state->Revision()) {
    Fail("verifying the restore", absl::InternalError("applied index or revision differ"));
  }
  const std::string probe = "key-" + std::to_string(1 + rng() % values);
  if (Must(restored->Get("bench", probe), "reading the restored copy").value !=
      Must(state->Get("bench", probe), "reading the original").value) {
    Fail("verifying the restore", absl::InternalError("values differ"));
  }
  const double rss_delta_mib =
      static_cast<double>(rss_peak > rss_baseline ? rss_peak - rss_baseline : 0) /
      (1 << 20);
  const double amplification = static_cast<double>(written) / user_bytes;
  const double page_cache_amplification =
      static_cast<double>(after.page_cache_bytes - before.page_cache_bytes) / user_bytes;
  const double device_amplification =
      static_cast<double>(after.device_bytes - before.device_bytes) / user_bytes;
  std::printf("snapshot: open %.3f ms, stream+restore %.0f ms (%llu chunks, "
              "%llu B), RssAnon peak delta %.1f MiB\n",
              open_ms, stream_ms, (unsigned long long)chunks,
              (unsigned long long)stream_bytes, rss_delta_mib);
  std::printf(
      "{\"bench\":\"storage\",\"values\":%llu,\"value_bytes\":%llu,"
      "\"compressible\":%s,\"user_bytes\":%llu,\"stored_command_bytes\":%llu,"
      "\"file_write_bytes\":%llu,\"write_amplification\":%.3f,"
      "\"write_amplification_page_cache\":%.3f,"
      "\"write_amplification_device\":%.3f,\"fill_ms\":%.0f,"
      "\"log_commits\":%llu,\"log_env_bytes\":%llu,\"state_env_bytes\":%llu,"
      "\"snapshot_open_ms\":%.3f,\"snapshot_stream_restore_ms\":%.0f,"
      "\"snapshot_chunks\":%llu,\"snapshot_stream_bytes\":%llu,"
      "\"restored_env_bytes\":%llu,\"peak_rss_anon_delta_mib\":%.1f}\n",
      (unsigned long long)values, (unsigned long long)value_bytes,
      compressible ? "true" : "false", (unsigned long long)user_bytes,
      (unsigned long long)stored_value_bytes, (unsigned long long)written,
      amplification, page_cache_amplification, device_amplification, fill_ms,
      (unsigned long long)log_stats.commits,
      (unsigned long long)log_stats.file_bytes, (unsigned long long)state_bytes,
      open_ms, stream_ms, (unsigned long long)chunks,
      (unsigned long long)stream_bytes,
      (unsigned long long)restored->StorageBytes(), rss_delta_mib);
  return 0;
}

int RunLogBench(const Flags& flags) {
  const uint64_t entry_bytes = flags.Number("entry-bytes", 256);
  const uint64_t appenders = std::max<uint64_t>(1, flags.Number("appenders", 1));
  const uint64_t total = std::max<uint64_t>(appenders, flags.Number("entries", 1000));
  const std::string dir = flags.Text("dir");
  if (dir.empty()) Fail("usage", absl::InvalidArgumentError("--dir is required"));
  auto log = Must(LmdbLogStore::Open({.dir = Resolve(dir, "log-append")}),
                  "opening the log");
  std::mt19937_64 rng(7);
  const std::string payload = RandomBytes(rng, entry_bytes);

  std::mutex submit_mu;  // Indexes must be queued in order.
  raft::Index next_index = 1;
  std::vector<std::vector<double>> latencies(appenders);
  const auto start = Clock::now();
  std::vector<std::thread> threads;
  for (uint64_t a = 0; a < appenders; ++a) {
    threads.emplace_back([&, a] {
      const uint64_t mine = total / appenders + (a < total % appenders ? 1 : 0);
      for (uint64_t i = 0; i < mine; ++i) {
        std::mutex mu;
        std::condition_variable cv;
        bool done = false;
        const auto issued = Clock::now();
        {
          std::lock_guard lock(submit_mu);
          LogWrite write;
          write.entries.push_back(raft::Entry{.term = 1, .index = next_index++,
                                              .type = raft::EntryType::kNormal,
                                              .data = payload});
          log->Write(std::move(write), [&](absl::Status status) {
            Must(status, "appending");
            std::lock_guard l(mu);
            done = true;
            cv.notify_one();
          });
        }
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return done; });
        latencies[a].push_back(MillisSince(issued));
      }
    });
  }
  for (auto& t : threads) t.join();
  const double seconds = MillisSince(start) / 1000;
  std::vector<double> all;
  for (auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end());
  const LogStoreStats stats = log->Stats();
  const double per_second = total / seconds;
  std::printf(
      "{\"bench\":\"log_append\",\"entry_bytes\":%llu,\"appenders\":%llu,"
      "\"entries\":%llu,\"seconds\":%.3f,\"entries_per_sec\":%.0f,"
      "\"mib_per_sec\":%.1f,\"commits\":%llu,\"commits_per_entry\":%.3f,"
      "\"p50_ms\":%.2f,\"p99_ms\":%.2f}\n",
      (unsigned long long)entry_bytes, (unsigned long long)appenders,
      (unsigned long long)total, seconds, per_second,
      per_second * entry_bytes / (1 << 20), (unsigned long long)stats.commits,
      static_cast<double>(stats.commits) / total, all[all.size() / 2],
      all[std::min(all.size() - 1, all.size() * 99 / 100)]);
  return 0;
}

}  // namespace
}  // namespace confman::bench

int main(int argc, char** argv) {
  const confman::bench::Flags flags = confman::bench::ParseFlags(argc, argv);
  if (flags.Has("log-append")) return confman::bench::RunLogBench(flags);
  return confman::bench::RunStateBench(flags);
}
