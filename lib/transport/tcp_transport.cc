#include <pthread.h>

#include <array>
#include <asio.hpp>
#include <asio/ssl.hpp>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <deque>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <shared_mutex>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "confman/transport/tcp.h"
#include "handshake.h"
#include "wire_codec.h"

namespace confman {
namespace {

using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;

// Hello and Proof frames are tiny; an unauthenticated peer never makes this
// member allocate more than this.
constexpr uint32_t kMaxHandshakeFrameBytes = 4096;
// Unauthenticated connections served at once; more are closed on accept so
// a connection flood cannot exhaust memory or descriptors.
constexpr int kMaxPendingHandshakes = 64;
// Frames are gathered into one write up to this many bytes, so small
// messages share system calls without delaying a large one.
constexpr size_t kMaxBatchBytes = 1u << 20;
// A receive buffer larger than this is released after its frame. Appends
// of large values arrive back to back in frames up to the default
// max_append_bytes (8 MiB); keeping a buffer that size saves allocating and
// faulting in fresh pages for every one, at most 8 MiB per connection.
constexpr size_t kKeptReceiveBufferBytes = 8u << 20;

auto RedirectTo(asio::error_code& ec) {
  return asio::redirect_error(use_awaitable, ec);
}

[[nodiscard]] absl::Status NetworkError(absl::string_view what, const asio::error_code& ec) {
  if (ec == asio::error::eof) {
    return absl::UnavailableError(
        absl::StrCat(what, ": peer closed the connection"));
  }
  return absl::UnavailableError(absl::StrCat(what, ": ", ec.message()));
}

[[nodiscard]] absl::StatusOr<tcp::endpoint> ParseEndpoint(const std::string& address) {
  const size_t colon = address.rfind(':');
  uint32_t port = 0;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port) || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "address '", address, "' is not host:port with a port in [0, 65535]"));
  }
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  asio::error_code ec;
  const asio::ip::address ip = asio::ip::make_address(host, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("address '", address, "': host must be an IP address (",
                     ec.message(), ")"));
  }
  return tcp::endpoint(ip, static_cast<uint16_t>(port));
}

std::string Describe(const tcp::socket& socket) {
  asio::error_code ec;
  const tcp::endpoint remote = socket.remote_endpoint(ec);
  if (ec) return "an unknown address";
  return absl::StrCat(remote.address().to_string(), ":", remote.port());
}

// Closes a socket unless disarmed (destroyed) first: bounds how long an
// unresponsive peer can hold a connection in the handshake. The flag is
// shared with the timer's handler because that handler may run after the
// Deadline is gone.
class Deadline {
 public:
  Deadline(tcp::socket& socket, std::chrono::milliseconds timeout)
      : timer_(socket.get_executor()),
        timeout_(timeout),
        state_(std::make_shared<State>()) {
    timer_.expires_after(timeout);
    timer_.async_wait([&socket, state = state_](const asio::error_code& ec) {
      if (ec || !state->armed) return;
      state->fired = true;
      asio::error_code ignored;
      socket.close(ignored);
    });
  }
  ~Deadline() {
    state_->armed = false;
    timer_.cancel();
  }
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;

  // Replaces the socket error a timeout caused with the real reason.
  [[nodiscard]] absl::Status Explain(absl::Status status) const {
    if (status.ok() || !state_->fired) return status;
    return absl::DeadlineExceededError(absl::StrCat(
        "connect and handshake not completed within handshake_timeout (",
        timeout_.count(), " ms)"));
  }

 private:
  struct State {
    bool armed = true;
    bool fired = false;
  };
  asio::steady_timer timer_;
  const std::chrono::milliseconds timeout_;
  std::shared_ptr<State> state_;
};

// Exponential backoff with jitter for reconnect attempts.
class Backoff {
 public:
  explicit Backoff(const TcpTransportOptions& options)
      : initial_(options.reconnect_initial),
        max_(options.reconnect_max),
        jitter_(options.reconnect_jitter),
        next_(initial_),
        random_(std::random_device{}()) {}

  std::chrono::milliseconds Next() {
    std::uniform_real_distribution<double> spread(1.0 - jitter_, 1.0 + jitter_);
    const auto wait = std::chrono::milliseconds(static_cast<int64_t>(
        static_cast<double>(next_.count()) * spread(random_)));
    next_ = std::min(next_ * 2, max_);
    return wait;
  }
  void Reset() { next_ = initial_; }

 private:
  const std::chrono::milliseconds initial_;
  const std::chrono::milliseconds max_;
  const double jitter_;
  std::chrono::milliseconds next_;
  std::mt19937 random_;
};

// One connection: plain TCP, or TLS over TCP. Heap-allocated by its owner
// so the socket never moves while an operation or timer refers to it.
class Stream {
 public:
  explicit Stream(tcp::socket socket) : plain_(std::move(socket)) {}
  Stream(tcp::socket socket, asio::ssl::context& tls)
      : tls_(std::in_place, std::move(socket), tls) {}

  // The TCP socket underneath: for options, addresses and closing.
  tcp::socket& socket() { return tls_ ? tls_->next_layer() : *plain_; }
  bool is_tls() const { return tls_.has_value(); }

  // The TLS handshake (a no-op on a plain connection).
  awaitable<asio::error_code> Handshake(
      asio::ssl::stream_base::handshake_type role) {
    asio::error_code ec;
    if (tls_) co_await tls_->async_handshake(role, RedirectTo(ec));
    co_return ec;
  }

  awaitable<size_t> ReadSome(asio::mutable_buffer buffer,
                             asio::error_code& ec) {
    if (tls_) co_return co_await tls_->async_read_some(buffer, RedirectTo(ec));
    co_return co_await plain_->async_read_some(buffer, RedirectTo(ec));
  }

  awaitable<void> Read(asio::mutable_buffer buffer, asio::error_code& ec) {
    if (tls_) {
      co_await asio::async_read(*tls_, buffer, RedirectTo(ec));
    } else {
      co_await asio::async_read(*plain_, buffer, RedirectTo(ec));
    }
  }

  template <typename Buffers>
  awaitable<void> Write(const Buffers& buffers, asio::error_code& ec) {
    if (tls_) {
      co_await asio::async_write(*tls_, buffers, RedirectTo(ec));
    } else {
      co_await asio::async_write(*plain_, buffers, RedirectTo(ec));
    }
  }

  // Callback form, for the one read that watches for the peer closing.
  template <typename Handler>
  void AsyncReadSome(asio::mutable_buffer buffer, Handler&& handler) {
    if (tls_) {
      tls_->async_read_some(buffer, std::forward<Handler>(handler));
    } else {
      plain_->async_read_some(buffer, std::forward<Handler>(handler));
    }
  }

 private:
  std::optional<tcp::socket> plain_;
  std::optional<asio::ssl::stream<tcp::socket>> tls_;
};

awaitable<absl::Status> WriteFrame(Stream& stream,
                                   const wire::EncodedFrame& frame) {
  const std::array<asio::const_buffer, 2> buffers{
      asio::buffer(frame.header(), wire::kFrameHeaderBytes),
      asio::buffer(frame.body(), frame.body_size())};
  asio::error_code ec;
  co_await stream.Write(buffers, ec);
  if (ec) co_return NetworkError("writing a frame", ec);
  co_return absl::OkStatus();
}

// Reads the frames of one connection. Small frames are parsed out of a
// staging buffer filled by large reads, so a stream of small messages costs
// one system call per fill instead of two per frame; the rest of a large
// body is read straight into the aligned buffer. Either way the body ends
// up in the aligned buffer that verification needs.
class FrameReader {
 public:
  explicit FrameReader(Stream& stream)
      : stream_(&stream), staging_(kStagingBytes) {}

  // Continues on `stream` (the connection moved to another I/O thread),
  // keeping bytes already staged.
  void Attach(Stream& stream) { stream_ = &stream; }

  // Reads, length-checks, verifies and decodes the next frame.
  awaitable<absl::StatusOr<wire::Frame>> Next(uint32_t max_frame_bytes);
  // Frees a large body buffer kept from the last frame.
  void ReleaseLargeBuffer() { body_.ShrinkIfAbove(kKeptReceiveBufferBytes); }

 private:
  static constexpr size_t kStagingBytes = 64u << 10;

  size_t staged() const { return end_ - begin_; }
  awaitable<asio::error_code> Fill();

  Stream* stream_;
  std::vector<uint8_t> staging_;
  size_t begin_ = 0;  // First unread byte in staging_.
  size_t end_ = 0;    // One past the last byte read into staging_.
  wire::AlignedBuffer body_;
};

awaitable<asio::error_code> FrameReader::Fill() {
  if (begin_ > 0) {
    std::memmove(staging_.data(), staging_.data() + begin_, staged());
    end_ -= begin_;
    begin_ = 0;
  }
  asio::error_code ec;
  const size_t read = co_await stream_->ReadSome(
      asio::buffer(staging_.data() + end_, staging_.size() - end_), ec);
  end_ += read;
  co_return ec;
}

awaitable<absl::StatusOr<wire::Frame>> FrameReader::Next(
    uint32_t max_frame_bytes) {
  while (staged() < wire::kFrameHeaderBytes) {
    const asio::error_code ec = co_await Fill();
    if (ec) co_return NetworkError("reading a frame header", ec);
  }
  const absl::StatusOr<uint32_t> length =
      wire::ParseFrameLength(staging_.data() + begin_, max_frame_bytes);
  if (!length.ok()) co_return length.status();
  begin_ += wire::kFrameHeaderBytes;
  uint8_t* body = body_.Resize(*length);
  const size_t from_staging = std::min<size_t>(*length, staged());
  std::memcpy(body, staging_.data() + begin_, from_staging);
  begin_ += from_staging;
  if (from_staging < *length) {
    asio::error_code ec;
    co_await stream_->Read(
        asio::buffer(body + from_staging, *length - from_staging), ec);
    if (ec) co_return NetworkError("reading a frame body", ec);
  }
  co_return wire::DecodeFrameBody(body, *length);
}

// Re-homes an idle socket on another I/O context (thread).
[[nodiscard]] absl::StatusOr<tcp::socket> MoveSocket(tcp::socket& socket,
                                       asio::io_context& io) {
  asio::error_code ec;
  const tcp::endpoint local = socket.local_endpoint(ec);
  tcp::socket::native_handle_type handle = tcp::socket::native_handle_type();
  if (!ec) handle = socket.release(ec);
  if (ec) return NetworkError("moving a connection to the bulk thread", ec);
  tcp::socket moved(io);
  moved.assign(local.protocol(), handle, ec);
  if (ec) return NetworkError("moving a connection to the bulk thread", ec);
  return moved;
}

[[nodiscard]] absl::StatusOr<std::unique_ptr<asio::ssl::context>> MakeTlsContext(
    const TcpTransportOptions::TlsFiles& files) {
  auto context = std::make_unique<asio::ssl::context>(asio::ssl::context::tls);
  asio::error_code ec;
  auto failed = [&](absl::string_view what, const std::string& file) {
    return absl::InvalidArgumentError(
        absl::StrCat("TcpTransportOptions: cannot load tls.", what, " '", file,
                     "': ", ec.message()));
  };
  context->set_options(
      asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
          asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
          asio::ssl::context::no_tlsv1_1,
      ec);
  context->load_verify_file(files.ca_file, ec);
  if (ec) return failed("ca_file", files.ca_file);
  context->use_certificate_chain_file(files.certificate_file, ec);
  if (ec) return failed("certificate_file", files.certificate_file);
  context->use_private_key_file(files.private_key_file, asio::ssl::context::pem,
                                ec);
  if (ec) return failed("private_key_file", files.private_key_file);
  context->set_verify_mode(
      asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert, ec);
  return context;
}

}  // namespace

// ---- options --------------------------------------------------------------

absl::Status TcpTransportOptions::Validate() const {
  auto invalid = [](auto&&... parts) {
    return absl::InvalidArgumentError(
        absl::StrCat("TcpTransportOptions: ", parts...));
  };
  if (auto endpoint = ParseEndpoint(listen_address); !endpoint.ok()) {
    return invalid("listen_address: ", endpoint.status().message());
  }
  if (member_id == raft::kNoMember)
    return invalid("member_id must be non-zero");
  if (cluster_id.empty()) return invalid("cluster_id must be set");
  if (shared_secret.size() < kMinSecretBytes) {
    return invalid("shared_secret must hold at least ", kMinSecretBytes,
                   " bytes; use a random key shared by all members");
  }
  if (max_frame_bytes < kMinFrameBytes || max_frame_bytes > kMaxFrameBytes) {
    return invalid("max_frame_bytes ", max_frame_bytes, " is outside [",
                   kMinFrameBytes, ", ", kMaxFrameBytes, "]");
  }
  if (max_bulk_queue_bytes < kMinFrameBytes) {
    return invalid("max_bulk_queue_bytes must be at least ", kMinFrameBytes);
  }
  if (max_control_queue_bytes < (64u << 10)) {
    return invalid("max_control_queue_bytes must be at least 65536");
  }
  if (reconnect_initial.count() <= 0 || reconnect_max < reconnect_initial) {
    return invalid("reconnect_initial must be positive and <= reconnect_max");
  }
  if (!(reconnect_jitter >= 0.0 && reconnect_jitter < 1.0)) {
    return invalid("reconnect_jitter must be in [0, 1)");
  }
  if (handshake_timeout.count() <= 0) {
    return invalid("handshake_timeout must be positive");
  }
  if (tls && (tls->ca_file.empty() || tls->certificate_file.empty() ||
              tls->private_key_file.empty())) {
    return invalid("tls needs ca_file, certificate_file and private_key_file");
  }
  return absl::OkStatus();
}

uint64_t TcpTransportOptions::FrameBytesFor(uint64_t payload_bytes,
                                            uint64_t entry_count) {
  return kFrameOverheadBytes + payload_bytes + 64 * entry_count;
}

// ---- implementation -------------------------------------------------------

class TcpTransport::Impl {
 public:
  struct Peer;

  // One outbound connection (control or bulk) to one peer, with its queue.
  // The queue is filled from any thread and drained by Run() on the
  // channel's I/O thread, which also owns the socket.
  class Link {
   public:
    Link(Impl& impl, Peer& peer, wire::Channel channel, size_t max_queue_bytes)
        : impl_(impl),
          peer_(peer),
          channel_(channel),
          max_queue_bytes_(max_queue_bytes),
          io_(impl.io(channel)),
          timer_(io_) {}

    // Whether a frame of `bytes` would be queued now (any thread).
    bool HasRoomFor(size_t bytes);
    [[nodiscard]] absl::Status Push(wire::EncodedFrame frame);
    // Reports a frame dropped for lack of room; returns the status for it.
    [[nodiscard]] absl::Status Overflow();
    awaitable<void> Run();
    // I/O thread: ends Run() and discards the queue.
    void Close();

   private:
    awaitable<std::unique_ptr<Stream>> Connect();
    awaitable<void> Pump(Stream& stream);
    void WatchForClose(Stream& stream);
    void DropConnection();
    bool TakeBatch(std::vector<wire::EncodedFrame>& batch);
    void DiscardQueue();
    bool closed() {
      std::lock_guard lock(mu_);
      return closed_;
    }

    Impl& impl_;
    Peer& peer_;
    const wire::Channel channel_;
    const size_t max_queue_bytes_;
    asio::io_context& io_;
    // I/O thread only. Wakes the idle writer and times backoff sleeps.
    asio::steady_timer timer_;
    Stream* stream_ = nullptr;
    uint64_t connection_generation_ = 0;
    uint8_t watch_byte_ = 0;

    std::mutex mu_;
    std::deque<wire::EncodedFrame> queue_;  // Guarded by mu_.
    size_t queued_bytes_ = 0;               // Guarded by mu_.
    // Run() is parked on `timer_` waiting for frames.
    bool writer_idle_ = false;        // Guarded by mu_.
    bool closed_ = false;             // Guarded by mu_.
    bool overflow_reported_ = false;  // Guarded by mu_.
  };

  struct Peer {
    Peer(Impl& impl, raft::MemberId member, tcp::endpoint address)
        : id(member),
          endpoint(address),
          control(impl, *this, wire::Channel::kControl,
                  impl.options().max_control_queue_bytes),
          bulk(impl, *this, wire::Channel::kBulk,
               impl.options().max_bulk_queue_bytes) {}
    Link& link(wire::Channel channel) {
      return channel == wire::Channel::kControl ? control : bulk;
    }

    const raft::MemberId id;
    tcp::endpoint endpoint;  // Guarded by Impl::mu_.
    // Set once OnUnreachable has been called; cleared by a new connection.
    std::atomic<bool> unreachable_reported{false};
    Link control;
    Link bulk;
  };

  Impl(TcpTransportOptions options, tcp::endpoint listen,
       std::unique_ptr<asio::ssl::context> tls_context)
      : options_(std::move(options)),
        listen_(listen),
        tls_context_(std::move(tls_context)),
        control_io_(std::make_unique<asio::io_context>(1)),
        bulk_io_(std::make_unique<asio::io_context>(1)),
        acceptor_(std::make_unique<tcp::acceptor>(*control_io_)) {}
  ~Impl();

  [[nodiscard]] absl::Status Listen();
  uint16_t port() const { return port_; }
  asio::io_context& io(wire::Channel channel) {
    return channel == wire::Channel::kControl ? *control_io_ : *bulk_io_;
  }
  const TcpTransportOptions& options() const { return options_; }

  [[nodiscard]] absl::Status Start(TransportHandler* handler);
  void Stop();
  [[nodiscard]] absl::Status AddPeer(raft::MemberId id, const std::string& address);
  void RemovePeer(raft::MemberId id);
  // Encodes with `encode` and queues the frame for `to`, unless the bulk
  // queue has no room for `estimated_bytes` (then nothing is encoded).
  [[nodiscard]] absl::Status Enqueue(raft::MemberId to, wire::Channel channel,
                       size_t estimated_bytes,
                       absl::FunctionRef<wire::EncodedFrame()> encode);
  [[nodiscard]] absl::Status CheckCanSend(raft::MemberId from) const;

  void Log(const std::string& line);
  tcp::endpoint EndpointOf(const Peer& peer) {
    std::shared_lock lock(mu_);
    return peer.endpoint;
  }
  std::unique_ptr<Stream> MakeStream(tcp::socket socket) {
    if (tls_context_) {
      return std::make_unique<Stream>(std::move(socket), *tls_context_);
    }
    return std::make_unique<Stream>(std::move(socket));
  }
  // Connects `stream` to `endpoint` and runs the dialler's side of the
  // handshakes (TLS when configured, then confman's).
  awaitable<absl::StatusOr<wire::Hello>> Dial(Stream& stream,
                                              tcp::endpoint endpoint,
                                              wire::Channel channel,
                                              raft::MemberId peer);
  // I/O threads.
  void ReportUnreachable(Peer& peer);
  awaitable<absl::StatusOr<wire::Hello>> Handshake(
      Stream& stream, FrameReader& reader, wire::Channel channel,
      raft::MemberId expected_peer);

 private:
  enum class State { kCreated, kRunning, kStopped };
  using InboundKey = std::pair<raft::MemberId, wire::Channel>;

  void SpawnLinks(Peer& peer);  // Requires mu_.
  // On `channel`'s thread: closes its sockets (and the listener).
  void CloseConnections(wire::Channel channel);
  bool IsKnownPeer(raft::MemberId id) {
    std::shared_lock lock(mu_);
    return peers_.contains(id);
  }
  wire::Hello OwnHello(wire::Channel channel) const;
  wire::EncodedFrame ProofFrame(const wire::Hello& mine,
                                const wire::Hello& theirs) const;
  [[nodiscard]] absl::Status CheckHello(const wire::Hello& theirs,
                          raft::MemberId expected_peer);
  awaitable<void> Accept();
  awaitable<void> Serve(tcp::socket socket);
  awaitable<absl::StatusOr<wire::Channel>> ReadPreamble(tcp::socket& socket);
  awaitable<void> Authenticate(tcp::socket socket,
                               std::optional<wire::Channel> announced,
                               std::string remote);
  awaitable<void> ServeAuthenticated(std::unique_ptr<Stream> stream,
                                     FrameReader reader, wire::Hello peer,
                                     std::string remote);
  awaitable<absl::Status> Receive(FrameReader& reader, raft::MemberId peer);
  void Dispatch(wire::Frame frame);

  using WorkGuard = asio::executor_work_guard<asio::io_context::executor_type>;

  const TcpTransportOptions options_;
  const tcp::endpoint listen_;
  // Null without TLS. Outlives the I/O contexts and every stream.
  const std::unique_ptr<asio::ssl::context> tls_context_;
  uint16_t port_ = 0;
  // Two I/O threads: control traffic (and accepting, and plain handshakes) runs
  // on one, bulk traffic on the other, so a heartbeat is never queued
  // behind the reading, decoding or writing of megabytes. Destroyed
  // explicitly in ~Impl, after the links whose timers belong to them.
  std::unique_ptr<asio::io_context> control_io_;
  std::unique_ptr<asio::io_context> bulk_io_;
  std::unique_ptr<tcp::acceptor> acceptor_;
  std::optional<WorkGuard> control_work_;
  std::optional<WorkGuard> bulk_work_;
  std::thread control_thread_;
  std::thread bulk_thread_;
  TransportHandler* handler_ = nullptr;
  std::atomic<bool> delivering_{false};
  std::mutex log_mu_;

  // Connections not yet authenticated, on either thread.
  std::atomic<int> pending_handshakes_{0};
  // The newest authenticated inbound connection per peer and channel; an
  // older one is closed when a newer one arrives, so a peer cannot make this
  // member hold more than two receive buffers for it. A socket is only
  // closed from its own channel's thread.
  std::mutex inbound_mu_;
  std::map<InboundKey, Stream*> inbound_;  // Guarded by inbound_mu_.

  mutable std::shared_mutex mu_;
  State state_ = State::kCreated;  // Guarded by mu_.
  absl::flat_hash_map<raft::MemberId, std::unique_ptr<Peer>>
      peers_;  // Guarded by mu_.
  // Removed peers stay allocated until the transport is destroyed because
  // posted work may still name them; membership changes are rare, so this
  // stays small.
  std::vector<std::unique_ptr<Peer>> retired_;  // Guarded by mu_.
};

// ---- Link -----------------------------------------------------------------

bool TcpTransport::Impl::Link::HasRoomFor(size_t bytes) {
  std::lock_guard lock(mu_);
  // An empty queue always takes one frame, so a frame of any legal size
  // can be sent whatever the bound.
  return queue_.empty() || queued_bytes_ + bytes <= max_queue_bytes_;
}

absl::Status TcpTransport::Impl::Link::Push(wire::EncodedFrame frame) {
  bool wake = false;
  bool queued = false;
  {
    std::lock_guard lock(mu_);
    if (closed_) {
      return absl::NotFoundError(
          absl::StrCat("member ", peer_.id, " was removed"));
    }
    if (!queue_.empty() && queued_bytes_ + frame.size() > max_queue_bytes_) {
      if (channel_ == wire::Channel::kControl) DiscardQueue();
    } else {
      queued_bytes_ += frame.size();
      queue_.push_back(std::move(frame));
      wake = std::exchange(writer_idle_, false);
      queued = true;
    }
  }
  if (wake) asio::post(io_, [this] { timer_.cancel(); });
  if (queued) return absl::OkStatus();
  return Overflow();
}

absl::Status TcpTransport::Impl::Link::Overflow() {
  bool report = false;
  {
    std::lock_guard lock(mu_);
    report = !std::exchange(overflow_reported_, true);
  }
  if (report) asio::post(io_, [this] { impl_.ReportUnreachable(peer_); });
  if (channel_ == wire::Channel::kBulk) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "bulk queue to member ", peer_.id, " is full (max_bulk_queue_bytes ",
        max_queue_bytes_, "); the message was dropped, Raft will resend"));
  }
  asio::post(io_, [this] { DropConnection(); });
  return absl::UnavailableError(absl::StrCat(
      "member ", peer_.id, " stopped reading: control queue passed ",
      max_queue_bytes_, " bytes, so its connection is being reset"));
}

void TcpTransport::Impl::Link::DiscardQueue() {
  queue_.clear();
  queued_bytes_ = 0;
}

bool TcpTransport::Impl::Link::TakeBatch(
    std::vector<wire::EncodedFrame>& batch) {
  batch.clear();
  std::lock_guard lock(mu_);
  size_t bytes = 0;
  while (!queue_.empty() &&
         (batch.empty() || bytes + queue_.front().size() <= kMaxBatchBytes)) {
    bytes += queue_.front().size();
    batch.push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
  queued_bytes_ -= bytes;
  if (batch.empty()) {
    writer_idle_ = true;
    overflow_reported_ = false;
  }
  return !batch.empty();
}

void TcpTransport::Impl::Link::Close() {
  {
    std::lock_guard lock(mu_);
    closed_ = true;
    DiscardQueue();
  }
  DropConnection();
  timer_.cancel();
}

void TcpTransport::Impl::Link::DropConnection() {
  asio::error_code ignored;
  if (stream_ != nullptr) stream_->socket().close(ignored);
  timer_.cancel();
}

// Outbound connections carry no inbound data; a completed read therefore
// means the peer closed the connection (or broke the protocol), and the
// writer is woken to reconnect instead of writing into a dead socket.
void TcpTransport::Impl::Link::WatchForClose(Stream& stream) {
  stream.AsyncReadSome(asio::buffer(&watch_byte_, 1),
                       [this, generation = connection_generation_](
                           const asio::error_code&, size_t) {
                         if (generation == connection_generation_)
                           DropConnection();
                       });
}

awaitable<void> TcpTransport::Impl::Link::Run() {
  Backoff backoff(impl_.options());
  while (!closed()) {
    std::unique_ptr<Stream> stream = co_await Connect();
    if (stream) {
      backoff.Reset();
      peer_.unreachable_reported = false;
      stream_ = stream.get();
      WatchForClose(*stream);
      co_await Pump(*stream);
      stream_ = nullptr;
      ++connection_generation_;
      asio::error_code ignored;
      stream->socket().close(ignored);
    }
    if (closed()) break;
    {
      std::lock_guard lock(mu_);
      DiscardQueue();
      writer_idle_ = false;
    }
    impl_.ReportUnreachable(peer_);
    asio::error_code ec;
    timer_.expires_after(backoff.Next());
    co_await timer_.async_wait(RedirectTo(ec));
  }
}

awaitable<std::unique_ptr<Stream>> TcpTransport::Impl::Link::Connect() {
  const tcp::endpoint endpoint = impl_.EndpointOf(peer_);
  std::unique_ptr<Stream> stream = impl_.MakeStream(tcp::socket(io_));
  absl::StatusOr<wire::Hello> theirs;
  {
    Deadline deadline(stream->socket(), impl_.options().handshake_timeout);
    theirs = co_await impl_.Dial(*stream, endpoint, channel_, peer_.id);
    if (!theirs.ok()) theirs = deadline.Explain(theirs.status());
  }
  if (theirs.ok()) co_return stream;
  // Repeated failures to a down peer are expected; log only the first.
  if (!peer_.unreachable_reported) {
    impl_.Log(absl::StrCat("cannot open ", wire::ChannelName(channel_),
                           " connection to member ", peer_.id, " at ",
                           endpoint.address().to_string(), ":", endpoint.port(),
                           ": ", theirs.status().ToString()));
  }
  co_return nullptr;
}

awaitable<void> TcpTransport::Impl::Link::Pump(Stream& stream) {
  std::vector<wire::EncodedFrame> batch;
  std::vector<asio::const_buffer> buffers;
  while (stream.socket().is_open()) {
    if (!TakeBatch(batch)) {
      asio::error_code ec;
      timer_.expires_at(asio::steady_timer::time_point::max());
      co_await timer_.async_wait(RedirectTo(ec));
      continue;
    }
    buffers.clear();
    for (const wire::EncodedFrame& frame : batch) {
      buffers.push_back(asio::buffer(frame.header(), wire::kFrameHeaderBytes));
      buffers.push_back(asio::buffer(frame.body(), frame.body_size()));
    }
    asio::error_code ec;
    co_await stream.Write(buffers, ec);
    if (ec) {
      impl_.Log(absl::StrCat(
          wire::ChannelName(channel_), " connection to member ", peer_.id,
          " broke: ", NetworkError("writing", ec).message()));
      co_return;
    }
  }
}

// ---- Impl -----------------------------------------------------------------

TcpTransport::Impl::~Impl() {
  Stop();
  {
    std::lock_guard lock(mu_);
    peers_.clear();
    retired_.clear();
  }
  acceptor_.reset();
  // Destroys the suspended coroutines (and their sockets) while the maps
  // they refer to are still alive.
  control_io_.reset();
  bulk_io_.reset();
}

void TcpTransport::Impl::Log(const std::string& line) {
  const std::string full = absl::StrCat("confman transport [member ",
                                        options_.member_id, "]: ", line);
  std::lock_guard<std::mutex> lock(log_mu_);
  if (options_.log) {
    options_.log(full);
  } else {
    std::fprintf(stderr, "%s\n", full.c_str());
  }
}

absl::Status TcpTransport::Impl::Listen() {
  asio::error_code ec;
  acceptor_->open(listen_.protocol(), ec);
  if (!ec) acceptor_->set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor_->bind(listen_, ec);
  if (!ec) acceptor_->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options_.listen_address, ": ",
                     ec.message(), "; choose a free port or another address"));
  }
  port_ = acceptor_->local_endpoint(ec).port();
  return absl::OkStatus();
}

absl::Status TcpTransport::Impl::Start(TransportHandler* handler) {
  if (handler == nullptr) {
    return absl::InvalidArgumentError("Start needs a non-null handler");
  }
  std::lock_guard lock(mu_);
  if (state_ != State::kCreated) {
    return absl::FailedPreconditionError(
        "the transport was already started; create a new one instead");
  }
  state_ = State::kRunning;
  handler_ = handler;
  delivering_ = true;
  control_work_.emplace(control_io_->get_executor());
  bulk_work_.emplace(bulk_io_->get_executor());
  asio::co_spawn(*control_io_, Accept(), asio::detached);
  for (auto& [id, peer] : peers_) SpawnLinks(*peer);
  control_thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "confman-netctl");
    control_io_->run();
  });
  bulk_thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "confman-netbulk");
    bulk_io_->run();
  });
  return absl::OkStatus();
}

void TcpTransport::Impl::Stop() {
  {
    std::lock_guard lock(mu_);
    const bool was_running = state_ == State::kRunning;
    state_ = State::kStopped;
    if (!was_running) return;
  }
  delivering_ = false;
  // Each thread closes its own sockets, so peers see the connections end
  // now rather than when this object is destroyed, then stops.
  for (wire::Channel channel :
       {wire::Channel::kControl, wire::Channel::kBulk}) {
    asio::post(io(channel), [this, channel] {
      CloseConnections(channel);
      io(channel).stop();
    });
  }
  control_thread_.join();
  bulk_thread_.join();
  control_work_.reset();
  bulk_work_.reset();
}

void TcpTransport::Impl::CloseConnections(wire::Channel channel) {
  asio::error_code ignored;
  if (channel == wire::Channel::kControl) acceptor_->close(ignored);
  {
    std::shared_lock lock(mu_);
    for (auto& [id, peer] : peers_) peer->link(channel).Close();
    for (auto& peer : retired_) peer->link(channel).Close();
  }
  std::lock_guard lock(inbound_mu_);
  for (auto& [key, stream] : inbound_) {
    if (key.second == channel) stream->socket().close(ignored);
  }
}

void TcpTransport::Impl::SpawnLinks(Peer& peer) {
  asio::co_spawn(*control_io_, peer.control.Run(), asio::detached);
  asio::co_spawn(*bulk_io_, peer.bulk.Run(), asio::detached);
}

absl::Status TcpTransport::Impl::AddPeer(raft::MemberId id,
                                         const std::string& address) {
  if (id == raft::kNoMember || id == options_.member_id) {
    return absl::InvalidArgumentError(absl::StrCat(
        "AddPeer: member id ", id, " is 0 or this member's own id"));
  }
  absl::StatusOr<tcp::endpoint> endpoint = ParseEndpoint(address);
  if (!endpoint.ok()) return endpoint.status();
  std::lock_guard lock(mu_);
  auto [it, inserted] = peers_.try_emplace(id);
  if (!inserted) {
    it->second->endpoint = *endpoint;
    return absl::OkStatus();
  }
  it->second = std::make_unique<Peer>(*this, id, *endpoint);
  if (state_ == State::kRunning) SpawnLinks(*it->second);
  return absl::OkStatus();
}

void TcpTransport::Impl::RemovePeer(raft::MemberId id) {
  std::lock_guard lock(mu_);
  auto it = peers_.find(id);
  if (it == peers_.end()) return;
  Peer* peer = it->second.get();
  retired_.push_back(std::move(it->second));
  peers_.erase(it);
  asio::post(*control_io_, [peer] { peer->control.Close(); });
  asio::post(*bulk_io_, [peer] { peer->bulk.Close(); });
}

absl::Status TcpTransport::Impl::CheckCanSend(raft::MemberId from) const {
  std::shared_lock lock(mu_);
  if (state_ != State::kRunning) {
    return absl::FailedPreconditionError(
        "the transport is not running; call Start first (or it was stopped)");
  }
  if (from != options_.member_id) {
    return absl::InvalidArgumentError(
        absl::StrCat("message from member ", from, " sent through member ",
                     options_.member_id, "'s transport"));
  }
  return absl::OkStatus();
}

absl::Status TcpTransport::Impl::Enqueue(
    raft::MemberId to, wire::Channel channel, size_t estimated_bytes,
    absl::FunctionRef<wire::EncodedFrame()> encode) {
  std::shared_lock lock(mu_);
  auto it = peers_.find(to);
  if (it == peers_.end()) {
    return absl::NotFoundError(absl::StrCat(
        "member ", to, " is not a known peer; add it with AddPeer"));
  }
  Link& link = it->second->link(channel);
  if (channel == wire::Channel::kBulk && !link.HasRoomFor(estimated_bytes)) {
    return link.Overflow();
  }
  wire::EncodedFrame frame = encode();
  if (frame.body_size() > options_.max_frame_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a ", frame.body_size(), "-byte frame to member ", to,
        " exceeds max_frame_bytes ", options_.max_frame_bytes,
        "; send smaller batches or raise the limit on every member"));
  }
  return link.Push(std::move(frame));
}

void TcpTransport::Impl::ReportUnreachable(Peer& peer) {
  if (!delivering_ || peer.unreachable_reported.exchange(true)) return;
  handler_->OnUnreachable(peer.id);
}

wire::Hello TcpTransport::Impl::OwnHello(wire::Channel channel) const {
  wire::Hello hello;
  hello.cluster_id = options_.cluster_id;
  hello.member_id = options_.member_id;
  hello.nonce = wire::MakeNonce();
  hello.channel = channel;
  return hello;
}

wire::EncodedFrame TcpTransport::Impl::ProofFrame(
    const wire::Hello& mine, const wire::Hello& theirs) const {
  wire::Proof proof;
  proof.mac = wire::ComputeProof(options_.shared_secret, mine, theirs);
  return wire::EncodeProof(proof);
}

absl::Status TcpTransport::Impl::CheckHello(const wire::Hello& theirs,
                                            raft::MemberId expected_peer) {
  if (theirs.cluster_id != options_.cluster_id) {
    return absl::PermissionDeniedError(
        absl::StrCat("peer belongs to cluster '", theirs.cluster_id,
                     "', this member to '", options_.cluster_id, "'"));
  }
  if (theirs.member_id == options_.member_id) {
    return absl::PermissionDeniedError(
        absl::StrCat("peer claims this member's own id ", theirs.member_id));
  }
  if (expected_peer != raft::kNoMember && theirs.member_id != expected_peer) {
    return absl::PermissionDeniedError(
        absl::StrCat("dialled member ", expected_peer, " but member ",
                     theirs.member_id, " answered; check the address book"));
  }
  if (!IsKnownPeer(theirs.member_id)) {
    return absl::PermissionDeniedError(
        absl::StrCat("member ", theirs.member_id,
                     " is not a known peer; add it with AddPeer first"));
  }
  return absl::OkStatus();
}

awaitable<absl::StatusOr<wire::Hello>> TcpTransport::Impl::Dial(
    Stream& stream, tcp::endpoint endpoint, wire::Channel channel,
    raft::MemberId peer) {
  asio::error_code ec;
  co_await stream.socket().async_connect(endpoint, RedirectTo(ec));
  if (ec) co_return NetworkError("connecting", ec);
  stream.socket().set_option(tcp::no_delay(true), ec);
  if (stream.is_tls()) {
    const uint8_t preamble = static_cast<uint8_t>(channel);
    co_await asio::async_write(stream.socket(), asio::buffer(&preamble, 1),
                               RedirectTo(ec));
    if (ec) co_return NetworkError("writing the channel byte", ec);
    ec = co_await stream.Handshake(asio::ssl::stream_base::client);
    if (ec) co_return NetworkError("TLS handshake", ec);
  }
  FrameReader reader(stream);
  absl::StatusOr<wire::Hello> theirs =
      co_await Handshake(stream, reader, channel, peer);
  co_return theirs;
}

// The dialler (expected_peer != kNoMember) speaks first; the acceptor
// answers on the channel the dialler chose. Then both send and check proofs.
awaitable<absl::StatusOr<wire::Hello>> TcpTransport::Impl::Handshake(
    Stream& stream, FrameReader& reader, wire::Channel channel,
    raft::MemberId expected_peer) {
  const bool dialler = expected_peer != raft::kNoMember;
  wire::Hello mine = OwnHello(channel);
  // GCC 12 mishandles temporaries inside co_await expressions (double
  // destruction), so every awaited call here takes named locals only.
  absl::Status sent;
  if (dialler) {
    const wire::EncodedFrame hello = wire::EncodeHello(mine);
    sent = co_await WriteFrame(stream, hello);
    if (!sent.ok()) co_return sent;
  }
  absl::StatusOr<wire::Frame> frame =
      co_await reader.Next(kMaxHandshakeFrameBytes);
  if (!frame.ok()) co_return frame.status();
  auto* theirs = std::get_if<wire::Hello>(&*frame);
  if (theirs == nullptr) {
    co_return absl::InvalidArgumentError("the first frame was not a hello");
  }
  if (absl::Status ok = CheckHello(*theirs, expected_peer); !ok.ok()) {
    co_return ok;
  }
  if (!dialler) {
    mine.channel = theirs->channel;
    const wire::EncodedFrame hello = wire::EncodeHello(mine);
    sent = co_await WriteFrame(stream, hello);
    if (!sent.ok()) co_return sent;
  }
  const wire::EncodedFrame proof = ProofFrame(mine, *theirs);
  sent = co_await WriteFrame(stream, proof);
  if (!sent.ok()) co_return sent;
  wire::Hello peer_hello = std::move(*theirs);
  frame = co_await reader.Next(kMaxHandshakeFrameBytes);
  if (!frame.ok()) co_return frame.status();
  auto* their_proof = std::get_if<wire::Proof>(&*frame);
  if (their_proof == nullptr) {
    co_return absl::InvalidArgumentError("the second frame was not a proof");
  }
  const std::string expected =
      wire::ComputeProof(options_.shared_secret, peer_hello, mine);
  if (!wire::ProofMatches(expected, their_proof->mac)) {
    co_return absl::PermissionDeniedError(absl::StrCat(
        "member ", peer_hello.member_id,
        " failed the shared-secret proof; check that every member uses the "
        "same shared_secret"));
  }
  co_return peer_hello;
}

awaitable<void> TcpTransport::Impl::Accept() {
  while (true) {
    asio::error_code ec;
    tcp::socket socket = co_await acceptor_->async_accept(RedirectTo(ec));
    if (ec == asio::error::operation_aborted) co_return;
    if (ec) {
      Log(absl::StrCat("accept failed: ", ec.message()));
      asio::steady_timer pause(*control_io_, std::chrono::milliseconds(100));
      co_await pause.async_wait(RedirectTo(ec));
      continue;
    }
    if (pending_handshakes_ >= kMaxPendingHandshakes) {
      Log(absl::StrCat("refusing connection from ", Describe(socket), ": ",
                       kMaxPendingHandshakes, " handshakes already pending"));
      continue;
    }
    asio::co_spawn(*control_io_, Serve(std::move(socket)), asio::detached);
  }
}

awaitable<void> TcpTransport::Impl::Serve(tcp::socket socket) {
  const std::string remote = Describe(socket);
  asio::error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  if (!tls_context_) {
    co_await Authenticate(std::move(socket), std::nullopt, remote);
    co_return;
  }
  // TLS hides the hello, so a TLS dialler names the channel in one plain
  // byte first; both handshakes then run on that channel's thread.
  absl::StatusOr<wire::Channel> channel = co_await ReadPreamble(socket);
  if (channel.ok() && *channel == wire::Channel::kBulk) {
    absl::StatusOr<tcp::socket> moved = MoveSocket(socket, *bulk_io_);
    if (moved.ok()) {
      asio::co_spawn(*bulk_io_,
                     Authenticate(*std::move(moved), *channel, remote),
                     asio::detached);
      co_return;
    }
    channel = moved.status();
  }
  if (!channel.ok()) {
    Log(absl::StrCat("refused connection from ", remote, ": ",
                     channel.status().ToString()));
    co_return;
  }
  co_await Authenticate(std::move(socket), *channel, remote);
}

awaitable<absl::StatusOr<wire::Channel>> TcpTransport::Impl::ReadPreamble(
    tcp::socket& socket) {
  uint8_t preamble = 0xff;
  asio::error_code ec;
  {
    Deadline deadline(socket, options_.handshake_timeout);
    co_await asio::async_read(socket, asio::buffer(&preamble, 1),
                              RedirectTo(ec));
    if (ec) {
      co_return deadline.Explain(NetworkError("reading the channel byte", ec));
    }
  }
  if (preamble > static_cast<uint8_t>(wire::Channel::kBulk)) {
    co_return absl::InvalidArgumentError(
        absl::StrCat("bad channel byte ", preamble,
                     " before TLS; is the peer configured without TLS?"));
  }
  co_return static_cast<wire::Channel>(preamble);
}

// `announced` is the channel a TLS dialler named before the handshake
// (nullopt for plain connections, whose hello names it).
awaitable<void> TcpTransport::Impl::Authenticate(
    tcp::socket socket, std::optional<wire::Channel> announced,
    std::string remote) {
  std::unique_ptr<Stream> stream = MakeStream(std::move(socket));
  FrameReader reader(*stream);
  absl::StatusOr<wire::Hello> theirs;
  ++pending_handshakes_;
  {
    Deadline deadline(stream->socket(), options_.handshake_timeout);
    const asio::error_code ec =
        co_await stream->Handshake(asio::ssl::stream_base::server);
    if (ec) {
      theirs = NetworkError("TLS handshake", ec);
    } else {
      theirs = co_await Handshake(*stream, reader, wire::Channel::kControl,
                                  raft::kNoMember);
    }
    if (!theirs.ok()) theirs = deadline.Explain(theirs.status());
  }
  --pending_handshakes_;
  if (theirs.ok() && announced && theirs->channel != *announced) {
    theirs = absl::PermissionDeniedError(
        "the hello names another channel than the one announced before TLS");
  }
  if (!theirs.ok()) {
    Log(absl::StrCat("refused connection from ", remote, ": ",
                     theirs.status().ToString()));
    co_return;
  }
  if (theirs->channel == wire::Channel::kBulk && !announced) {
    // A plain bulk connection is served on the bulk thread. Handing over
    // the descriptor is safe: the handshake left no operation pending.
    absl::StatusOr<tcp::socket> moved = MoveSocket(stream->socket(), *bulk_io_);
    if (!moved.ok()) {
      Log(absl::StrCat("dropping bulk connection from ", remote, ": ",
                       moved.status().ToString()));
      co_return;
    }
    stream = std::make_unique<Stream>(*std::move(moved));
    reader.Attach(*stream);
    asio::co_spawn(*bulk_io_,
                   ServeAuthenticated(std::move(stream), std::move(reader),
                                      *std::move(theirs), remote),
                   asio::detached);
    co_return;
  }
  co_await ServeAuthenticated(std::move(stream), std::move(reader),
                              *std::move(theirs), remote);
}

awaitable<void> TcpTransport::Impl::ServeAuthenticated(
    std::unique_ptr<Stream> stream, FrameReader reader, wire::Hello peer,
    std::string remote) {
  reader.Attach(*stream);
  const InboundKey key{peer.member_id, peer.channel};
  {
    std::lock_guard lock(inbound_mu_);
    asio::error_code ignored;
    if (auto previous = inbound_.find(key); previous != inbound_.end()) {
      previous->second->socket().close(ignored);
    }
    inbound_[key] = stream.get();
  }
  const absl::Status closed = co_await Receive(reader, peer.member_id);
  {
    std::lock_guard lock(inbound_mu_);
    auto it = inbound_.find(key);
    if (it != inbound_.end() && it->second == stream.get()) inbound_.erase(it);
  }
  Log(absl::StrCat("closing ", wire::ChannelName(key.second),
                   " connection from member ", key.first, " at ", remote, ": ",
                   closed.ToString()));
}

// Delivers frames until the connection fails; returns why it ended.
awaitable<absl::Status> TcpTransport::Impl::Receive(FrameReader& reader,
                                                    raft::MemberId peer) {
  while (true) {
    absl::StatusOr<wire::Frame> frame =
        co_await reader.Next(options_.max_frame_bytes);
    if (!frame.ok()) co_return frame.status();
    absl::Status addressed =
        wire::CheckAddressing(*frame, peer, options_.member_id);
    if (!addressed.ok()) co_return addressed;
    if (!IsKnownPeer(peer)) {
      co_return absl::PermissionDeniedError(
          absl::StrCat("member ", peer, " was removed"));
    }
    Dispatch(*std::move(frame));
    reader.ReleaseLargeBuffer();
  }
}

void TcpTransport::Impl::Dispatch(wire::Frame frame) {
  if (!delivering_) return;
  if (auto* message = std::get_if<raft::Message>(&frame)) {
    handler_->OnMessage(std::move(*message));
  } else if (auto* chunk = std::get_if<wire::ChunkFrame>(&frame)) {
    handler_->OnSnapshotChunk(chunk->from, std::move(chunk->chunk));
  } else if (auto* forward = std::get_if<wire::ForwardEnvelope>(&frame)) {
    handler_->OnForward(forward->from, std::move(forward->frame));
  }
}

// ---- TcpTransport ---------------------------------------------------------

absl::StatusOr<std::unique_ptr<TcpTransport>> TcpTransport::Create(
    TcpTransportOptions options) {
  if (absl::Status valid = options.Validate(); !valid.ok()) return valid;
  absl::StatusOr<tcp::endpoint> listen = ParseEndpoint(options.listen_address);
  if (!listen.ok()) return listen.status();
  std::unique_ptr<asio::ssl::context> tls_context;
  if (options.tls) {
    auto context = MakeTlsContext(*options.tls);
    if (!context.ok()) return context.status();
    tls_context = *std::move(context);
  }
  auto impl = std::make_unique<Impl>(std::move(options), *listen,
                                     std::move(tls_context));
  if (absl::Status listening = impl->Listen(); !listening.ok()) {
    return listening;
  }
  return std::unique_ptr<TcpTransport>(new TcpTransport(std::move(impl)));
}

TcpTransport::TcpTransport(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}
TcpTransport::~TcpTransport() = default;

uint16_t TcpTransport::listen_port() const { return impl_->port(); }
absl::Status TcpTransport::Start(TransportHandler* handler) {
  return impl_->Start(handler);
}
void TcpTransport::Stop() { impl_->Stop(); }
absl::Status TcpTransport::AddPeer(raft::MemberId id,
                                   const std::string& address) {
  return impl_->AddPeer(id, address);
}
void TcpTransport::RemovePeer(raft::MemberId id) { impl_->RemovePeer(id); }

absl::Status TcpTransport::Send(raft::Message message) {
  if (absl::Status ok = impl_->CheckCanSend(message.from); !ok.ok()) return ok;
  const wire::Channel channel = IsControlTraffic(message.type)
                                    ? wire::Channel::kControl
                                    : wire::Channel::kBulk;
  return impl_->Enqueue(message.to, channel,
                        wire::EstimateEncodedBytes(message),
                        [&] { return wire::EncodeMessage(message); });
}

absl::Status TcpTransport::SendSnapshotChunk(raft::MemberId to,
                                             TransportSnapshotChunk chunk) {
  const raft::MemberId self = impl_->options().member_id;
  if (absl::Status ok = impl_->CheckCanSend(self); !ok.ok()) return ok;
  const size_t estimate = wire::EstimateEncodedBytes(chunk);
  return impl_->Enqueue(to, wire::Channel::kBulk, estimate, [&] {
    return wire::EncodeChunk(
        {.from = self, .to = to, .chunk = std::move(chunk)});
  });
}

absl::Status TcpTransport::SendForward(raft::MemberId to, ForwardFrame frame) {
  const raft::MemberId self = impl_->options().member_id;
  if (absl::Status ok = impl_->CheckCanSend(self); !ok.ok()) return ok;
  return impl_->Enqueue(to, wire::Channel::kControl, 0, [&] {
    return wire::EncodeForward(
        {.from = self, .to = to, .frame = std::move(frame)});
  });
}

}  // namespace confman
