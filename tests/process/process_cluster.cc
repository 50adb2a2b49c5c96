// Process-cluster harness: spawning confman-node members, a minimal HTTP/1.1
// client over blocking sockets, and a command runner (see the header).
#include "process_cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "confman/testing/loopback_port.h"

extern char** environ;

namespace confman::process_test {
namespace {

using Clock = std::chrono::steady_clock;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string DescribeExit(int status) {
  if (WIFEXITED(status))
    return absl::StrCat("exited with status ", WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return absl::StrCat("killed by signal ", WTERMSIG(status));
  return "ended";
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

// "http://127.0.0.1:7480" -> port 7480. Only loopback IPv4 URLs are used.
absl::StatusOr<std::pair<std::string, int>> HostPort(const std::string& url) {
  absl::string_view rest = url;
  if (!absl::ConsumePrefix(&rest, "http://")) {
    return absl::InvalidArgumentError(absl::StrCat("not an http URL: ", url));
  }
  const size_t colon = rest.rfind(':');
  int port = 0;
  if (colon == absl::string_view::npos ||
      !absl::SimpleAtoi(rest.substr(colon + 1), &port)) {
    return absl::InvalidArgumentError(absl::StrCat("no port in URL: ", url));
  }
  return std::make_pair(std::string(rest.substr(0, colon)), port);
}

absl::StatusOr<int> Connect(const std::string& url, milliseconds timeout) {
  auto hp = HostPort(url);
  if (!hp.ok()) return hp.status();
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return absl::InternalError("socket() failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(hp->second));
  inet_pton(AF_INET, hp->first.c_str(), &addr.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 &&
      errno != EINPROGRESS) {
    close(fd);
    return absl::UnavailableError(
        absl::StrCat("connect to ", url, ": ", strerror(errno)));
  }
  pollfd p{fd, POLLOUT, 0};
  if (poll(&p, 1, static_cast<int>(timeout.count())) != 1) {
    close(fd);
    return absl::DeadlineExceededError(
        absl::StrCat("connect to ", url, " timed out"));
  }
  int err = 0;
  socklen_t len = sizeof(err);
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) {
    close(fd);
    return absl::UnavailableError(
        absl::StrCat("connect to ", url, ": ", strerror(err)));
  }
  return fd;
}

absl::Status SendAll(int fd, absl::string_view bytes,
                     Clock::time_point deadline) {
  while (!bytes.empty()) {
    const ssize_t n = send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n > 0) {
      bytes.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      // The server may answer and close before taking the whole body (413).
      return absl::AbortedError(absl::StrCat("send: ", strerror(errno)));
    }
    const auto left =
        std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return absl::DeadlineExceededError("send timed out");
    pollfd p{fd, POLLOUT, 0};
    poll(&p, 1, static_cast<int>(left.count()));
  }
  return absl::OkStatus();
}

// Reads what is available (waiting until `deadline`); false at EOF.
absl::StatusOr<bool> ReadSome(int fd, std::string& into,
                              Clock::time_point deadline) {
  for (;;) {
    char buf[65536];
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n > 0) {
      into.append(buf, static_cast<size_t>(n));
      return true;
    }
    if (n == 0) return false;
    if (errno == ECONNRESET) return false;
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      return absl::UnavailableError(absl::StrCat("recv: ", strerror(errno)));
    }
    const auto left =
        std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    if (left.count() <= 0)
      return absl::DeadlineExceededError("no data before the deadline");
    pollfd p{fd, POLLIN, 0};
    poll(&p, 1, static_cast<int>(left.count()));
  }
}

// Parses "HTTP/1.1 200 OK\r\nName: v\r\n...\r\n" (without the blank line).
absl::Status ParseHead(absl::string_view head, int& status,
                       std::map<std::string, std::string>& headers) {
  std::vector<absl::string_view> lines = absl::StrSplit(head, "\r\n");
  if (lines.empty()) return absl::DataLossError("empty response head");
  std::vector<absl::string_view> first =
      absl::StrSplit(lines[0], absl::MaxSplits(' ', 2));
  if (first.size() < 2 || !absl::SimpleAtoi(first[1], &status)) {
    return absl::DataLossError(absl::StrCat("bad status line: ", lines[0]));
  }
  for (size_t i = 1; i < lines.size(); ++i) {
    const size_t colon = lines[i].find(':');
    if (colon == absl::string_view::npos) continue;
    headers[absl::AsciiStrToLower(lines[i].substr(0, colon))] =
        std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
  }
  return absl::OkStatus();
}

// Decodes a complete chunked body; false if it is not complete yet.
bool DecodeChunked(absl::string_view raw, std::string& out) {
  out.clear();
  for (;;) {
    const size_t eol = raw.find("\r\n");
    if (eol == absl::string_view::npos) return false;
    size_t size = 0;
    absl::string_view hex = raw.substr(0, eol);
    if (const size_t semi = hex.find(';'); semi != absl::string_view::npos) {
      hex = hex.substr(0, semi);
    }
    if (!absl::SimpleHexAtoi(hex, &size)) return false;
    raw.remove_prefix(eol + 2);
    if (size == 0) return true;
    if (raw.size() < size + 2) return false;
    out.append(raw.data(), size);
    raw.remove_prefix(size + 2);
  }
}

absl::StatusOr<HttpResponse> ReadResponse(int fd, Clock::time_point deadline,
                                          bool head_only_method) {
  std::string raw;
  size_t head_end = std::string::npos;
  bool open = true;
  while ((head_end = raw.find("\r\n\r\n")) == std::string::npos) {
    if (!open)
      return absl::DataLossError(
          "the server closed before a full response head");
    auto more = ReadSome(fd, raw, deadline);
    if (!more.ok()) return more.status();
    open = *more;
  }
  HttpResponse response;
  if (absl::Status s = ParseHead(absl::string_view(raw).substr(0, head_end),
                                 response.status, response.headers);
      !s.ok()) {
    return s;
  }
  std::string rest = raw.substr(head_end + 4);
  if (head_only_method || response.status == 304 || response.status == 204) {
    return response;
  }
  const std::string te =
      absl::AsciiStrToLower(response.header("transfer-encoding"));
  size_t length = 0;
  const bool has_length =
      absl::SimpleAtoi(response.header("content-length"), &length);
  for (;;) {
    if (te == "chunked" && DecodeChunked(rest, response.body)) return response;
    if (te != "chunked" && has_length && rest.size() >= length) {
      response.body = rest.substr(0, length);
      return response;
    }
    if (!open) {
      if (te == "chunked" || has_length) {
        return absl::DataLossError(
            "the server closed in the middle of the body");
      }
      response.body = rest;
      return response;
    }
    auto more = ReadSome(fd, rest, deadline);
    if (!more.ok()) return more.status();
    open = *more;
  }
}

}  // namespace

std::string NodeBinary() { return CONFMAN_NODE_BINARY; }
std::string CtlBinary() { return CONFMANCTL_BINARY; }

std::string HttpResponse::header(const std::string& lower_name) const {
  auto it = headers.find(lower_name);
  return it == headers.end() ? std::string() : it->second;
}

absl::StatusOr<HttpResponse> RawHttp(const std::string& base_url,
                                     const std::string& bytes,
                                     milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  absl::StatusOr<int> fd = Connect(base_url, timeout);
  if (!fd.ok()) return fd.status();
  // A send that fails because the server answered early is not an error:
  // the answer is what the test wants.
  (void)SendAll(*fd, bytes, deadline);
  absl::StatusOr<HttpResponse> response = ReadResponse(*fd, deadline, false);
  close(*fd);
  return response;
}

absl::StatusOr<HttpResponse> Http(
    const std::string& base_url, const std::string& method,
    const std::string& target, const std::string& body,
    const std::map<std::string, std::string>& headers, milliseconds timeout) {
  auto hp = HostPort(base_url);
  if (!hp.ok()) return hp.status();
  std::string request =
      absl::StrCat(method, " ", target, " HTTP/1.1\r\nHost: ", hp->first, ":",
                   hp->second, "\r\nConnection: close\r\n");
  bool has_length = false;
  for (const auto& [name, value] : headers) {
    const std::string lower = absl::AsciiStrToLower(name);
    if (lower == "content-length" || lower == "transfer-encoding")
      has_length = true;
    absl::StrAppend(&request, name, ": ", value, "\r\n");
  }
  if (!has_length && (!body.empty() || method == "PUT" || method == "POST")) {
    absl::StrAppend(&request, "Content-Length: ", body.size(), "\r\n");
  }
  absl::StrAppend(&request, "\r\n", body);
  const auto deadline = Clock::now() + timeout;
  absl::StatusOr<int> fd = Connect(base_url, timeout);
  if (!fd.ok()) return fd.status();
  (void)SendAll(*fd, request, deadline);
  absl::StatusOr<HttpResponse> response =
      ReadResponse(*fd, deadline, method == "HEAD");
  close(*fd);
  return response;
}

// ---------------------------------------------------------------------------
// HttpStream

absl::StatusOr<std::unique_ptr<HttpStream>> HttpStream::Open(
    const std::string& base_url, const std::string& target,
    const std::map<std::string, std::string>& headers, milliseconds timeout) {
  auto hp = HostPort(base_url);
  if (!hp.ok()) return hp.status();
  std::string request =
      absl::StrCat("GET ", target, " HTTP/1.1\r\nHost: ", hp->first, ":",
                   hp->second, "\r\n");
  for (const auto& [name, value] : headers)
    absl::StrAppend(&request, name, ": ", value, "\r\n");
  absl::StrAppend(&request, "\r\n");
  const auto deadline = Clock::now() + timeout;
  absl::StatusOr<int> fd = Connect(base_url, timeout);
  if (!fd.ok()) return fd.status();
  std::unique_ptr<HttpStream> stream(new HttpStream());
  stream->fd_ = *fd;
  if (absl::Status s = SendAll(*fd, request, deadline); !s.ok()) return s;
  size_t head_end = std::string::npos;
  while ((head_end = stream->raw_.find("\r\n\r\n")) == std::string::npos) {
    auto more = ReadSome(*fd, stream->raw_, deadline);
    if (!more.ok()) return more.status();
    if (!*more)
      return absl::DataLossError("the server closed before the response head");
  }
  if (absl::Status s =
          ParseHead(absl::string_view(stream->raw_).substr(0, head_end),
                    stream->status_, stream->headers_);
      !s.ok()) {
    return s;
  }
  stream->raw_.erase(0, head_end + 4);
  auto te = stream->headers_.find("transfer-encoding");
  stream->chunked_ = te != stream->headers_.end() &&
                     absl::AsciiStrToLower(te->second) == "chunked";
  if (!stream->chunked_) {
    stream->body_ = std::move(stream->raw_);
    stream->raw_.clear();
  } else if (absl::Status s = stream->Dechunk(); !s.ok()) {
    return s;
  }
  return stream;
}

HttpStream::~HttpStream() {
  if (fd_ >= 0) close(fd_);
}

absl::Status HttpStream::Dechunk() {
  for (;;) {
    const size_t eol = raw_.find("\r\n");
    if (eol == std::string::npos) return absl::OkStatus();
    size_t size = 0;
    absl::string_view hex = absl::string_view(raw_).substr(0, eol);
    if (const size_t semi = hex.find(';'); semi != absl::string_view::npos) {
      hex = hex.substr(0, semi);
    }
    if (!absl::SimpleHexAtoi(hex, &size)) {
      return absl::DataLossError(absl::StrCat("bad chunk size line: ", hex));
    }
    if (size == 0) {
      ended_ = true;
      raw_.clear();
      return absl::OkStatus();
    }
    if (raw_.size() < eol + 2 + size + 2) return absl::OkStatus();
    body_.append(raw_, eol + 2, size);
    raw_.erase(0, eol + 2 + size + 2);
  }
}

absl::Status HttpStream::Fill(Clock::time_point deadline) {
  std::string& target = chunked_ ? raw_ : body_;
  auto more = ReadSome(fd_, target, deadline);
  if (!more.ok()) return more.status();
  if (!*more) ended_ = true;
  return chunked_ ? Dechunk() : absl::OkStatus();
}

absl::StatusOr<std::string> HttpStream::NextLine(milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    size_t eol;
    while ((eol = body_.find('\n')) != std::string::npos) {
      std::string line = body_.substr(0, eol);
      body_.erase(0, eol + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (!line.empty()) return line;
    }
    if (ended_) return absl::NotFoundError("the server ended the stream");
    if (absl::Status s = Fill(deadline); !s.ok()) return s;
  }
}

// ---------------------------------------------------------------------------
// Commands

CommandResult RunCommand(const std::vector<std::string>& argv,
                         const std::map<std::string, std::string>& env,
                         const std::string& input, milliseconds timeout) {
  CommandResult result;
  int in_pipe[2], out_pipe[2], err_pipe[2];
  if (pipe2(in_pipe, O_CLOEXEC) != 0 || pipe2(out_pipe, O_CLOEXEC) != 0 ||
      pipe2(err_pipe, O_CLOEXEC) != 0) {
    result.err = "pipe() failed";
    return result;
  }
  const pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    dup2(in_pipe[0], 0);
    dup2(out_pipe[1], 1);
    dup2(err_pipe[1], 2);
    for (const auto& [name, value] : env)
      setenv(name.c_str(), value.c_str(), 1);
    std::vector<char*> args;
    for (const std::string& a : argv)
      args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(in_pipe[0]);
  close(out_pipe[1]);
  close(err_pipe[1]);
  // Feed stdin from a thread so a child that writes before it reads cannot
  // deadlock against us.
  std::thread feeder([fd = in_pipe[1], &input] {
    size_t off = 0;
    while (off < input.size()) {
      const ssize_t n = write(fd, input.data() + off, input.size() - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    close(fd);
  });
  const auto deadline = Clock::now() + timeout;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  int open = 2;
  bool timed_out = false;
  while (open > 0) {
    const auto left =
        std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    if (poll(fds, 2, static_cast<int>(left.count())) <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP))) continue;
      char buf[65536];
      const ssize_t n = read(fds[i].fd, buf, sizeof(buf));
      if (n > 0) {
        (i == 0 ? result.out : result.err).append(buf, static_cast<size_t>(n));
      } else {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open;
      }
    }
  }
  if (timed_out) kill(pid, SIGKILL);
  for (auto& f : fds) {
    if (f.fd >= 0) close(f.fd);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  feeder.join();
  result.exit_code = !timed_out && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

// ---------------------------------------------------------------------------
// ProcessCluster

absl::StatusOr<int> FreePort() {
  absl::StatusOr<uint16_t> port = confman::testing::PickLoopbackPort();
  if (!port.ok()) return port.status();
  return *port;
}

bool Eventually(const std::function<bool()>& done, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!done()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return true;
}

namespace {

constexpr char kIp[] = "/usr/sbin/ip";
constexpr char kNft[] = "/usr/sbin/nft";
bool in_private_network = false;

absl::Status Run(const std::vector<std::string>& argv) {
  CommandResult r = RunCommand(argv, {}, {}, milliseconds(10000));
  if (r.exit_code != 0) {
    return absl::InternalError(absl::StrCat("`", absl::StrJoin(argv, " "),
                                            "` failed (", r.exit_code,
                                            "): ", r.err));
  }
  return absl::OkStatus();
}

std::string Namespace(uint64_t id) { return absl::StrCat("cm", id); }

}  // namespace

absl::Status EnterPrivateNetwork() {
  if (in_private_network) return absl::OkStatus();
  if (unshare(CLONE_NEWNET | CLONE_NEWNS) != 0) {
    return absl::PermissionDeniedError(absl::StrCat(
        "unshare(CLONE_NEWNET | CLONE_NEWNS) failed: ", strerror(errno),
        "; network fault runs need root and no other thread"));
  }
  // Nothing mounted from here on reaches the host's mount table.
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    return absl::InternalError(
        absl::StrCat("making mounts private: ", strerror(errno)));
  }
  mkdir("/run/netns", 0755);
  if (mount("tmpfs", "/run/netns", "tmpfs", 0, "size=1m") != 0) {
    return absl::InternalError(
        absl::StrCat("mounting /run/netns: ", strerror(errno)));
  }
  for (const std::vector<std::string>& argv :
       std::vector<std::vector<std::string>>{
           {kIp, "link", "set", "lo", "up"},
           {kIp, "link", "add", "cmbr0", "type", "bridge"},
           {kIp, "addr", "add", "10.77.0.254/24", "dev", "cmbr0"},
           {kIp, "link", "set", "cmbr0", "up"}}) {
    if (absl::Status s = Run(argv); !s.ok()) return s;
  }
  in_private_network = true;
  return absl::OkStatus();
}

absl::Status ProcessCluster::Prepare(Member& m) {
  if (!options_.network_namespaces) {
    if (m.peer_address.empty()) {
      absl::StatusOr<int> port = FreePort();
      if (!port.ok()) return port.status();
      m.peer_address = absl::StrCat("127.0.0.1:", *port);
    }
    if (m.client_url.empty()) {
      absl::StatusOr<int> port = FreePort();
      if (!port.ok()) return port.status();
      m.client_url = absl::StrCat("http://127.0.0.1:", *port);
    }
  } else {
    if (!in_private_network) {
      return absl::FailedPreconditionError(
          "network_namespaces needs EnterPrivateNetwork() at the start of "
          "main");
    }
    const std::string ns = Namespace(m.id);
    const std::string inner = absl::StrCat(ns, "a"),
                      outer = absl::StrCat(ns, "b");
    const std::string ip = absl::StrCat("10.77.0.", m.id);
    for (const std::vector<std::string>& argv :
         std::vector<std::vector<std::string>>{
             {kIp, "netns", "add", ns},
             {kIp, "link", "add", inner, "type", "veth", "peer", "name", outer},
             {kIp, "link", "set", inner, "netns", ns},
             {kIp, "link", "set", outer, "master", "cmbr0"},
             {kIp, "link", "set", outer, "up"},
             {kIp, "-n", ns, "addr", "add", ip + "/24", "dev", inner},
             {kIp, "-n", ns, "link", "set", inner, "up"},
             {kIp, "-n", ns, "link", "set", "lo", "up"}}) {
      if (absl::Status s = Run(argv); !s.ok()) return s;
    }
    if (absl::Status s = Nft(m.id, {"add", "table", "inet", "cm"}); !s.ok())
      return s;
    if (absl::Status s = Nft(m.id, {"add", "chain", "inet", "cm", "input",
                                    "{ type filter hook input priority 0 ; }"});
        !s.ok()) {
      return s;
    }
    m.peer_address = ip + ":7400";
    m.client_url = absl::StrCat("http://", ip, ":7480");
  }
  if (std::find(options_.small_disk_members.begin(),
                options_.small_disk_members.end(),
                m.id) != options_.small_disk_members.end()) {
    const std::string dir = data_dir(m.id);
    std::filesystem::create_directories(dir);
    // An ext4 file system on a loop device behaves like a real full disk:
    // writes fail with ENOSPC. (On tmpfs, a fault on a mapped page that
    // needs a new page kills the process with SIGBUS instead, which no
    // real disk does.) tmpfs only where loop devices are missing.
    const std::string image = absl::StrCat(dir_, "/disk-", m.id, ".img");
    const bool ext4 = Run({"/usr/bin/truncate", "-s",
                           absl::StrCat(options_.small_disk_bytes), image})
                          .ok() &&
                      Run({"/usr/sbin/mkfs.ext4", "-q", "-F", image}).ok() &&
                      Run({"/usr/bin/mount", "-o", "loop", image, dir}).ok();
    const std::string size = absl::StrCat("size=", options_.small_disk_bytes);
    if (!ext4 && mount("tmpfs", dir.c_str(), "tmpfs", 0, size.c_str()) != 0) {
      return absl::InternalError(absl::StrCat(
          "mounting a ", options_.small_disk_bytes, "-byte disk on ", dir, ": ",
          strerror(errno), " (small disks need root and EnterPrivateNetwork)"));
    }
  }
  return absl::OkStatus();
}

absl::Status ProcessCluster::Nft(uint64_t id,
                                 const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {kIp, "netns", "exec", Namespace(id), kNft};
  argv.insert(argv.end(), args.begin(), args.end());
  return Run(argv);
}

absl::Status ProcessCluster::Block(uint64_t from, uint64_t to) {
  if (!options_.network_namespaces) {
    return absl::FailedPreconditionError("Block needs network_namespaces");
  }
  return Nft(to, {"add", "rule", "inet", "cm", "input", "ip", "saddr",
                  absl::StrCat("10.77.0.", from), "drop"});
}

absl::Status ProcessCluster::Isolate(uint64_t id) {
  for (const Member& m : members_) {
    if (m.id == id) continue;
    if (absl::Status s = Block(id, m.id); !s.ok()) return s;
    if (absl::Status s = Block(m.id, id); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status ProcessCluster::SetLoss(uint64_t id, int percent) {
  if (!options_.network_namespaces) {
    return absl::FailedPreconditionError("SetLoss needs network_namespaces");
  }
  return Nft(id, {"add", "rule", "inet", "cm", "input", "ip", "saddr",
                  "10.77.0.0/24", "numgen", "random", "mod", "100", "lt",
                  absl::StrCat(percent), "drop"});
}

absl::Status ProcessCluster::SetSlowLink(uint64_t id, int kbit_per_s) {
  if (!options_.network_namespaces) {
    return absl::FailedPreconditionError(
        "SetSlowLink needs network_namespaces");
  }
  return Run({kIp, "netns", "exec", Namespace(id), "/usr/sbin/tc", "qdisc",
              "replace", "dev", absl::StrCat(Namespace(id), "a"), "root", "tbf",
              "rate", absl::StrCat(kbit_per_s, "kbit"), "burst", "16kb",
              "latency", "200ms"});
}

absl::Status ProcessCluster::HealNetwork() {
  if (!options_.network_namespaces) return absl::OkStatus();
  for (const Member& m : members_) {
    if (absl::Status s = Nft(m.id, {"flush", "chain", "inet", "cm", "input"});
        !s.ok()) {
      return s;
    }
    // No rate limit is not an error.
    (void)Run({kIp, "netns", "exec", Namespace(m.id), "/usr/sbin/tc", "qdisc",
               "del", "dev", absl::StrCat(Namespace(m.id), "a"), "root"});
  }
  return absl::OkStatus();
}

absl::Status ProcessCluster::FillDisk(uint64_t id) {
  const std::string path = data_dir(id) + "/filler";
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0)
    return absl::InternalError(
        absl::StrCat("open ", path, ": ", strerror(errno)));
  std::string block(1 << 20, 'f');
  // Whole megabytes, then single pages, until the disk refuses.
  for (size_t chunk : {size_t{1} << 20, size_t{4096}}) {
    while (write(fd, block.data(), chunk) == static_cast<ssize_t>(chunk)) {
    }
  }
  close(fd);
  return absl::OkStatus();
}

absl::Status ProcessCluster::FreeDisk(uint64_t id) {
  std::error_code error;
  std::filesystem::remove(data_dir(id) + "/filler", error);
  if (error) return absl::InternalError(error.message());
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ProcessCluster>> ProcessCluster::Start(
    ProcessClusterOptions options) {
  std::unique_ptr<ProcessCluster> cluster(new ProcessCluster());
  cluster->options_ = options;
  char tmpl[] = "/tmp/confman-process-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return absl::InternalError("mkdtemp failed");
  cluster->dir_ = tmpl;
  cluster->secret_path_ = cluster->dir_ + "/secret";
  WriteFile(cluster->secret_path_, "process-cluster-shared-secret-0123456789");
  if (!options.client_token.empty()) {
    cluster->token_path_ = cluster->dir_ + "/token";
    WriteFile(cluster->token_path_, options.client_token + "\n");
  }
  std::vector<std::string> initial;
  for (int i = 1; i <= options.members; ++i) {
    Member m;
    m.id = static_cast<uint64_t>(i);
    if (absl::Status s = cluster->Prepare(m); !s.ok()) return s;
    initial.push_back(absl::StrCat(m.id, "=", m.peer_address));
    cluster->members_.push_back(m);
  }
  cluster->initial_members_ = absl::StrJoin(initial, ",");
  for (Member& m : cluster->members_) {
    if (absl::Status s = cluster->Launch(m); !s.ok()) return s;
  }
  if (auto leader = cluster->WaitForLeader(options.start_timeout);
      !leader.ok()) {
    return leader.status();
  }
  return cluster;
}

ProcessCluster::~ProcessCluster() {
  for (Member& m : members_) {
    if (m.pid != 0) {
      kill(m.pid, SIGKILL);
      waitpid(m.pid, nullptr, 0);
      m.pid = 0;
    }
  }
  for (uint64_t id : options_.small_disk_members) {
    umount2(data_dir(id).c_str(), MNT_DETACH);
  }
  std::error_code ignored;
  if (!dir_.empty() && getenv("CONFMAN_KEEP_PROCESS_DIRS") == nullptr) {
    std::filesystem::remove_all(dir_, ignored);
  }
}

std::vector<std::string> ProcessCluster::CommandLine(const Member& m) const {
  const std::string data = data_dir(m.id);
  std::vector<std::string> argv;
  if (options_.network_namespaces)
    argv = {kIp, "netns", "exec", Namespace(m.id)};
  std::vector<std::string> node = {
      NodeBinary(),
      "--id",
      absl::StrCat(m.id),
      "--cluster-id",
      "process-test",
      "--peer-listen",
      m.peer_address,
      // A restarted member keeps the client port it was first given, so
      // clients' URLs stay valid.
      "--client-listen",
      m.client_url.substr(strlen("http://")),
      "--initial-members",
      initial_members_,
      "--data-dir",
      data,
      "--secret-file",
      secret_path_,
      "--announce-file",
      data + ".announce",
  };
  argv.insert(argv.end(), node.begin(), node.end());
  if (m.joiner) argv.push_back("--join");
  if (!token_path_.empty()) {
    argv.push_back("--client-token-file");
    argv.push_back(token_path_);
  }
  for (const std::string& f : options_.extra_flags) argv.push_back(f);
  return argv;
}

absl::Status ProcessCluster::Launch(Member& m) {
  const std::string announce = data_dir(m.id) + ".announce";
  std::filesystem::remove(announce);
  const std::vector<std::string> argv = CommandLine(m);
  const std::string log_path = data_dir(m.id) + ".log";
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    const int log_fd =
        open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    const int null_fd = open("/dev/null", O_RDWR);
    for (const auto& [name, value] : options_.environment) {
      setenv(name.c_str(), value.c_str(), 1);
    }
    dup2(null_fd, 0);
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    std::vector<char*> args;
    for (const std::string& a : argv)
      args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  m.pid = pid;
  // The announce file appears once both listeners are up.
  const bool announced = Eventually(
      [&] {
        const std::string text = ReadFile(announce);
        const size_t at = text.find("\"client_url\"");
        if (at == std::string::npos) return false;
        const size_t open_quote = text.find('"', text.find(':', at) + 1);
        const size_t close_quote = text.find('"', open_quote + 1);
        if (open_quote == std::string::npos || close_quote == std::string::npos)
          return false;
        m.client_url =
            text.substr(open_quote + 1, close_quote - open_quote - 1);
        return true;
      },
      milliseconds(15000));
  if (!announced) {
    return absl::DeadlineExceededError(
        absl::StrCat("member ", m.id,
                     " did not announce its client URL within 15 s; its log:\n",
                     log_text(m.id)));
  }
  return absl::OkStatus();
}

std::vector<uint64_t> ProcessCluster::ids() const {
  std::vector<uint64_t> out;
  for (const Member& m : members_) out.push_back(m.id);
  return out;
}

const ProcessCluster::Member* ProcessCluster::Find(uint64_t id) const {
  for (const Member& m : members_) {
    if (m.id == id) return &m;
  }
  return nullptr;
}

ProcessCluster::Member* ProcessCluster::Find(uint64_t id) {
  for (Member& m : members_) {
    if (m.id == id) return &m;
  }
  return nullptr;
}

std::string ProcessCluster::client_url(uint64_t id) const {
  const Member* m = Find(id);
  return m == nullptr ? std::string() : m->client_url;
}

std::string ProcessCluster::peer_address(uint64_t id) const {
  const Member* m = Find(id);
  return m == nullptr ? std::string() : m->peer_address;
}

std::string ProcessCluster::endpoints() const {
  std::vector<std::string> urls;
  for (const Member& m : members_) {
    if (m.pid != 0) urls.push_back(m.client_url);
  }
  return absl::StrJoin(urls, ",");
}

std::string ProcessCluster::data_dir(uint64_t id) const {
  return absl::StrCat(dir_, "/member-", id);
}

std::string ProcessCluster::log_text(uint64_t id) const {
  return ReadFile(data_dir(id) + ".log");
}

pid_t ProcessCluster::pid(uint64_t id) const {
  const Member* m = Find(id);
  return m == nullptr ? 0 : m->pid;
}

absl::Status ProcessCluster::Signal(uint64_t id, int signal) {
  Member* m = Find(id);
  if (m == nullptr || m->pid == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("member ", id, " is not running"));
  }
  if (kill(m->pid, signal) != 0) {
    return absl::InternalError(
        absl::StrCat("kill(", m->pid, "): ", strerror(errno)));
  }
  if (signal == SIGKILL) {
    waitpid(m->pid, nullptr, 0);
    m->exit_description = "killed by the test (SIGKILL)";
    m->pid = 0;
  }
  return absl::OkStatus();
}

absl::StatusOr<int> ProcessCluster::WaitExit(uint64_t id,
                                             milliseconds timeout) {
  Member* m = Find(id);
  if (m == nullptr || m->pid == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("member ", id, " is not running"));
  }
  int status = 0;
  const bool exited = Eventually(
      [&] { return waitpid(m->pid, &status, WNOHANG) == m->pid; }, timeout);
  if (!exited) {
    return absl::DeadlineExceededError(absl::StrCat(
        "member ", id, " did not exit within ", timeout.count(), " ms"));
  }
  m->pid = 0;
  m->exit_description = DescribeExit(status);
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

bool ProcessCluster::Alive(uint64_t id) {
  Member* m = Find(id);
  if (m == nullptr || m->pid == 0) return false;
  int status = 0;
  if (waitpid(m->pid, &status, WNOHANG) != m->pid) return true;
  m->exit_description = DescribeExit(status);
  m->pid = 0;
  return false;
}

std::string ProcessCluster::exit_description(uint64_t id) const {
  const Member* m = Find(id);
  return m == nullptr ? std::string() : m->exit_description;
}

absl::Status ProcessCluster::Restart(uint64_t id) {
  Member* m = Find(id);
  if (m == nullptr) return absl::NotFoundError(absl::StrCat("no member ", id));
  if (m->pid != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("member ", id, " is running"));
  }
  return Launch(*m);
}

absl::Status ProcessCluster::StartJoiner(uint64_t id) {
  if (Find(id) != nullptr) {
    return absl::AlreadyExistsError(absl::StrCat("member ", id, " exists"));
  }
  Member m;
  m.id = id;
  m.joiner = true;
  if (absl::Status s = Prepare(m); !s.ok()) return s;
  members_.push_back(m);
  return Launch(members_.back());
}

absl::StatusOr<uint64_t> ProcessCluster::WaitForLeader(
    milliseconds timeout) const {
  uint64_t leader = 0;
  const bool agreed = Eventually(
      [&] {
        uint64_t seen = 0;
        for (const Member& m : members_) {
          if (m.pid == 0 || m.joiner) continue;
          auto r = Http(m.client_url, "GET", "/v1/status", {}, auth(),
                        milliseconds(1000));
          if (!r.ok() || r->status != 200) return false;
          uint64_t named = 0;
          if (!absl::SimpleAtoi(r->header("x-confman-leader"), &named) ||
              named == 0) {
            return false;
          }
          if (seen != 0 && named != seen) return false;
          seen = named;
        }
        leader = seen;
        const Member* lm = Find(leader);
        return lm != nullptr && lm->pid != 0;
      },
      timeout);
  if (!agreed) {
    return absl::DeadlineExceededError(
        absl::StrCat("the running members did not agree on a leader within ",
                     timeout.count(), " ms"));
  }
  return leader;
}

std::map<std::string, std::string> ProcessCluster::auth() const {
  if (options_.client_token.empty()) return {};
  return {{"Authorization", absl::StrCat("Bearer ", options_.client_token)}};
}

}  // namespace confman::process_test
