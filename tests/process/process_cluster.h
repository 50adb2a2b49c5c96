// A cluster of real confman-node processes on 127.0.0.1 for tests, and the
// small HTTP client and command runner those tests speak through.
//
// Each member is a child process with its own data directory under one
// temporary directory; its stderr goes to a log file there. Children die
// with the test process (PR_SET_PDEATHSIG), so a crashed test leaves no
// member running, and the destructor kills every child and removes the
// directory. The HTTP client is hand-rolled over blocking sockets on
// purpose: tests must be able to send malformed and partial requests that a
// real client library would refuse to produce.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace confman::process_test {

using std::chrono::milliseconds;

// Paths of the programs under test, as CMake built them.
std::string NodeBinary();
std::string CtlBinary();

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // Names lower-cased.
  std::string body;

  std::string header(const std::string& lower_name) const;
};

// One request on a fresh connection ("Connection: close"). `base_url` is
// "http://host:port"; `target` the path and query. Content-Length is added
// for a non-empty body unless `headers` sets it (or Transfer-Encoding).
absl::StatusOr<HttpResponse> Http(
    const std::string& base_url, const std::string& method,
    const std::string& target, const std::string& body = {},
    const std::map<std::string, std::string>& headers = {},
    milliseconds timeout = milliseconds(10000));

// Sends `bytes` as they are and reads the answer until the server closes
// (or `timeout`): for malformed and partial requests.
absl::StatusOr<HttpResponse> RawHttp(
    const std::string& base_url, const std::string& bytes,
    milliseconds timeout = milliseconds(10000));

// A streaming response (a watch): the headers, then the body line by line.
class HttpStream {
 public:
  static absl::StatusOr<std::unique_ptr<HttpStream>> Open(
      const std::string& base_url, const std::string& target,
      const std::map<std::string, std::string>& headers = {},
      milliseconds timeout = milliseconds(10000));
  ~HttpStream();

  int status() const { return status_; }
  const std::map<std::string, std::string>& headers() const { return headers_; }
  // The next non-empty line of the (de-chunked) body. NotFound when the
  // server ended the stream, DeadlineExceeded after `timeout` without one.
  absl::StatusOr<std::string> NextLine(milliseconds timeout);

 private:
  HttpStream() = default;
  absl::Status Fill(std::chrono::steady_clock::time_point deadline);
  absl::Status Dechunk();

  int fd_ = -1;
  int status_ = 0;
  bool chunked_ = false;
  bool ended_ = false;
  std::map<std::string, std::string> headers_;
  std::string raw_;   // Bytes read, not yet de-chunked.
  std::string body_;  // De-chunked bytes not yet returned.
};

struct CommandResult {
  int exit_code = -1;  // -1 when killed by a signal or timed out.
  std::string out;
  std::string err;
};

// Runs argv[0] with `env` added to this process's environment, feeding
// `input` on stdin; kills it after `timeout`.
CommandResult RunCommand(const std::vector<std::string>& argv,
                         const std::map<std::string, std::string>& env = {},
                         const std::string& input = {},
                         milliseconds timeout = milliseconds(60000));

struct ProcessClusterOptions {
  int members = 3;
  // Added to every member's command line (e.g. {"--election-timeout-ms",
  // "300"}).
  std::vector<std::string> extra_flags{};
  // When set, written to a file passed as --client-token-file.
  std::string client_token{};
  // How long Start waits for a leader.
  milliseconds start_timeout{20000};
  // Set in every member's environment (e.g. CONFMAN_TESTING_FAULT).
  std::map<std::string, std::string> environment{};
  // Each member in a network namespace of its own (cm<id>, address
  // 10.77.0.<id>, peers on port 7400, clients on 7480), joined by veth
  // pairs to a bridge, so the network can be cut (Block, Isolate, SetLoss).
  // Needs EnterPrivateNetwork() first: everything lives inside that
  // private namespace and vanishes with the process.
  bool network_namespaces = false;
  // Members whose data directory is a small file system of its own (ext4
  // on a loop device, or tmpfs where there is none) of small_disk_bytes,
  // so that FillDisk can run them out of space.
  std::vector<uint64_t> small_disk_members{};
  uint64_t small_disk_bytes = uint64_t{64} << 20;
};

// Moves this process into a private network and mount namespace with its
// own loopback and a bridge (cmbr0, 10.77.0.254/24), so the namespaces a
// ProcessCluster creates are invisible to the host and no packet leaves.
// Needs root. Call first thing in main, before any thread starts (the
// kernel refuses a mount namespace to a process that shares its
// filesystem state with other threads).
absl::Status EnterPrivateNetwork();

class ProcessCluster {
 public:
  // Picks free ports, writes the secret, starts members 1..members and
  // waits until every one announced its client URL and one leads.
  static absl::StatusOr<std::unique_ptr<ProcessCluster>> Start(
      ProcessClusterOptions options);
  // SIGKILLs every member still running and removes the directory.
  ~ProcessCluster();

  std::vector<uint64_t> ids() const;
  std::string client_url(uint64_t id) const;
  std::string peer_address(uint64_t id) const;
  // Every running member's client URL, comma-separated, in id order.
  std::string endpoints() const;
  std::string data_dir(uint64_t id) const;
  std::string log_text(uint64_t id) const;  // Its stderr so far.
  std::string dir() const { return dir_; }
  pid_t pid(uint64_t id) const;  // 0 when not running.
  bool running(uint64_t id) const { return pid(id) != 0; }

  // Sends `signal` to the member. For SIGKILL it also reaps the process.
  absl::Status Signal(uint64_t id, int signal);
  // Waits for the member to exit and returns its exit code (or 128 + the
  // signal that ended it).
  absl::StatusOr<int> WaitExit(uint64_t id, milliseconds timeout);
  // Starts a stopped member again on the same ports (peer and client) and
  // data directory.
  absl::Status Restart(uint64_t id);
  // False once the member's process has ended (it is then reaped, and its
  // exit recorded in exit_description).
  bool Alive(uint64_t id);
  std::string exit_description(uint64_t id) const;
  // Starts a new member with --join (a learner-to-be), on fresh ports.
  absl::Status StartJoiner(uint64_t id);

  // --- Network faults (network_namespaces only) ---------------------------
  // Drops every packet from `from` arriving at `to` (one way).
  absl::Status Block(uint64_t from, uint64_t to);
  // Blocks both ways between `id` and every other member.
  absl::Status Isolate(uint64_t id);
  // Drops `percent` of the packets arriving at `id`, at random.
  absl::Status SetLoss(uint64_t id, int percent);
  // Limits what `id` sends to `kbit_per_s` (a token bucket holding up to
  // 200 ms of backlog, then dropping): under load its packets wait in the
  // queue, so its links gain delay that grows with the traffic. (This
  // kernel has no netem for a fixed delay.)
  absl::Status SetSlowLink(uint64_t id, int kbit_per_s);
  // Removes every block, loss rule and rate limit.
  absl::Status HealNetwork();

  // --- Disk faults (small_disk_members only) ---------------------------------
  // Fills the member's small disk to the last byte with a filler file.
  absl::Status FillDisk(uint64_t id);
  // Removes the filler file.
  absl::Status FreeDisk(uint64_t id);

  // The member every running member's /v1/status names as leader (they
  // agree), once one does.
  absl::StatusOr<uint64_t> WaitForLeader(
      milliseconds timeout = milliseconds(10000)) const;

  // Extra headers every test request should carry (the bearer token).
  std::map<std::string, std::string> auth() const;

 private:
  struct Member {
    uint64_t id = 0;
    std::string peer_address;
    std::string client_url;
    pid_t pid = 0;
    bool joiner = false;
    std::string exit_description;  // How it last ended, if it did.
  };
  ProcessCluster() = default;
  absl::Status Launch(Member& member);
  absl::Status Prepare(Member& member);  // Namespace, disk, addresses.
  absl::Status Nft(uint64_t id, const std::vector<std::string>& args) const;
  std::vector<std::string> CommandLine(const Member& member) const;
  const Member* Find(uint64_t id) const;
  Member* Find(uint64_t id);

  ProcessClusterOptions options_;
  std::string dir_;
  std::string secret_path_;
  std::string token_path_;
  std::vector<Member> members_;
  std::string initial_members_;
};

// confman::testing::PickLoopbackPort: a free port on 127.0.0.1 that no
// outgoing connection takes while its member is down.
absl::StatusOr<int> FreePort();

// Polls `done` every 20 ms until it holds or `timeout` passes.
bool Eventually(const std::function<bool()>& done, milliseconds timeout);

}  // namespace confman::process_test
