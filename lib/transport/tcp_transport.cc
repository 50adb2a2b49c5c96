// TcpTransport (confman/transport/tcp.h): the orchestration. This file
// accepts connections and hands them to the right I/O thread, dials and
// redials peers, and routes frames between the Transport API, the links
// and the TransportHandler. The parts it orchestrates live beside it:
//
//   tcp_stream.{h,cc}            one connection, plain TCP or TLS, and the
//                                socket chores (errors, moving a socket to
//                                another thread, the TLS context)
//   frame_io.{h,cc}              reading and writing length-prefixed frames
//                                on a stream (FrameReader, WriteFrame)
//   link_queue.{h,cc}            the bounded per-peer, per-channel outgoing
//                                queue and what each channel does when full
//   connection_handshake.{h,cc}  the Hello/Proof exchange on a new
//                                connection and its deadline
//   handshake.{h,cc}             the proof itself (nonces, HMAC), free of
//                                Asio so the fuzz target can compile it
//   wire_codec.{h,cc}            the frame format (schema/wire.fbs)
//
// Why control and bulk are separate paths. Raft's liveness rests on small
// messages arriving on time: a heartbeat that waits behind 64 MiB of
// appends looks like a dead leader and starts an election. So every peer
// gets two links, each with its own queue (link_queue.h), its own TCP
// connection (no head-of-line blocking in socket buffers) and its own I/O
// thread (reading, verifying and writing megabyte frames never delays a
// heartbeat in user space). Which path a message takes is
// IsControlTraffic's decision (transport.cc). Within one path, frames go
// out in the order they were queued, over one connection at a time, so
// order per sender, receiver and path holds; across paths there is none,
// which is why a snapshot notice travels on the bulk path behind the
// chunks it announces.
//
// Who talks where. A member only sends on connections it dialled (a Link,
// one per peer and channel, on that channel's thread) and only receives on
// connections it accepted. The control thread runs the acceptor and the
// handshake of every accepted plain connection; an accepted bulk connection
// moves to the bulk thread once its channel is known, from the Hello for a
// plain connection, or from the one plain byte a TLS dialler sends before
// the TLS handshake (which then runs on the bulk thread too). What is
// authenticated when is set out in connection_handshake.h.
//
// Backpressure. Send never blocks: it encodes into the link's queue and
// returns. A full bulk queue drops the new frame (ResourceExhausted; Raft
// re-sends); a full control queue means the peer stopped reading, so the
// connection is reset (Unavailable). Either way the handler hears
// OnUnreachable once per episode so Raft stops pipelining to that peer.
#include <pthread.h>

#include <atomic>
#include <cstdio>
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
#include "connection_handshake.h"
#include "frame_io.h"
#include "link_queue.h"
#include "tcp_stream.h"
#include "wire_codec.h"

namespace confman {
namespace {

using tcp_internal::awaitable;
using tcp_internal::Describe;
using tcp_internal::FrameReader;
using tcp_internal::HandshakeDeadline;
using tcp_internal::Handshaker;
using tcp_internal::LinkQueue;
using tcp_internal::MakeTlsContext;
using tcp_internal::MoveSocket;
using tcp_internal::NetworkError;
using tcp_internal::RedirectTo;
using tcp_internal::tcp;
using tcp_internal::TcpStream;

// Unauthenticated connections served at once; more are closed on accept so
// a connection flood cannot exhaust memory or descriptors.
constexpr int kMaxPendingHandshakes = 64;

[[nodiscard]] absl::StatusOr<tcp::endpoint> ParseEndpoint(
    const std::string& address) {
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
  // channel's I/O thread, which also owns the socket: Run() dials, writes
  // batches while the connection lasts, and redials with backoff.
  class Link {
   public:
    Link(Impl& impl, Peer& peer, wire::Channel channel, size_t max_queue_bytes)
        : impl_(impl),
          peer_(peer),
          channel_(channel),
          io_(impl.io(channel)),
          timer_(io_),
          queue_(channel, max_queue_bytes) {}

    // Whether a frame of `bytes` would be queued now (any thread).
    bool HasRoomFor(size_t bytes);
    [[nodiscard]] absl::Status Push(wire::EncodedFrame frame);
    // Reports a frame dropped for lack of room; returns the status for it.
    [[nodiscard]] absl::Status Overflow();
    awaitable<void> Run();
    // I/O thread: ends Run() and discards the queue.
    void Close();

   private:
    awaitable<std::unique_ptr<TcpStream>> Connect();
    awaitable<void> Pump(TcpStream& stream);
    void WatchForClose(TcpStream& stream);
    void DropConnection();

    Impl& impl_;
    Peer& peer_;
    const wire::Channel channel_;
    asio::io_context& io_;
    // I/O thread only. Wakes the parked writer and times backoff sleeps.
    asio::steady_timer timer_;
    TcpStream* stream_ = nullptr;
    uint64_t connection_generation_ = 0;
    uint8_t watch_byte_ = 0;
    LinkQueue queue_;
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
  [[nodiscard]] absl::Status AddPeer(raft::MemberId id,
                                     const std::string& address);
  void RemovePeer(raft::MemberId id);
  // Encodes with `encode` and queues the frame for `to`, unless the bulk
  // queue has no room for `estimated_bytes` (then nothing is encoded).
  [[nodiscard]] absl::Status Enqueue(
      raft::MemberId to, wire::Channel channel, size_t estimated_bytes,
      absl::FunctionRef<wire::EncodedFrame()> encode);
  [[nodiscard]] absl::Status CheckCanSend(raft::MemberId from) const;

  void Log(const std::string& line);
  tcp::endpoint EndpointOf(const Peer& peer) {
    std::shared_lock lock(mu_);
    return peer.endpoint;
  }
  std::unique_ptr<TcpStream> MakeStream(tcp::socket socket) {
    if (tls_context_) {
      return std::make_unique<TcpStream>(std::move(socket), *tls_context_);
    }
    return std::make_unique<TcpStream>(std::move(socket));
  }
  // Connects `stream` to `endpoint` and runs the dialler's side of the
  // handshakes (TLS when configured, then confman's).
  awaitable<absl::StatusOr<wire::Hello>> Dial(TcpStream& stream,
                                              tcp::endpoint endpoint,
                                              wire::Channel channel,
                                              raft::MemberId peer);
  // I/O threads.
  void ReportUnreachable(Peer& peer);

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
  awaitable<void> Accept();
  awaitable<void> Serve(tcp::socket socket);
  awaitable<absl::StatusOr<wire::Channel>> ReadPreamble(tcp::socket& socket);
  awaitable<void> Authenticate(tcp::socket socket,
                               std::optional<wire::Channel> announced,
                               std::string remote);
  awaitable<void> ServeAuthenticated(std::unique_ptr<TcpStream> stream,
                                     FrameReader reader, wire::Hello peer,
                                     std::string remote);
  awaitable<absl::Status> Receive(FrameReader& reader, raft::MemberId peer);
  void Dispatch(wire::Frame frame);

  using WorkGuard = asio::executor_work_guard<asio::io_context::executor_type>;

  const TcpTransportOptions options_;
  const Handshaker handshaker_{
      options_, [this](raft::MemberId id) { return IsKnownPeer(id); }};
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
  std::map<InboundKey, TcpStream*> inbound_;  // Guarded by inbound_mu_.

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
  return queue_.HasRoomFor(bytes);
}

absl::Status TcpTransport::Impl::Link::Push(wire::EncodedFrame frame) {
  switch (queue_.Push(std::move(frame))) {
    case LinkQueue::PushResult::kQueuedWakeWriter:
      asio::post(io_, [this] { timer_.cancel(); });
      return absl::OkStatus();
    case LinkQueue::PushResult::kQueued:
      return absl::OkStatus();
    case LinkQueue::PushResult::kClosed:
      return absl::NotFoundError(
          absl::StrCat("member ", peer_.id, " was removed"));
    case LinkQueue::PushResult::kFull:
      break;
  }
  return Overflow();
}

absl::Status TcpTransport::Impl::Link::Overflow() {
  if (queue_.MarkOverflow()) {
    asio::post(io_, [this] { impl_.ReportUnreachable(peer_); });
  }
  if (channel_ == wire::Channel::kBulk) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "bulk queue to member ", peer_.id, " is full (max_bulk_queue_bytes ",
        queue_.max_bytes(), "); the message was dropped, Raft will resend"));
  }
  // The control queue was discarded; resetting the connection tells the
  // peer, and the reconnect starts from a clean slate.
  asio::post(io_, [this] { DropConnection(); });
  return absl::UnavailableError(absl::StrCat(
      "member ", peer_.id, " stopped reading: control queue passed ",
      queue_.max_bytes(), " bytes, so its connection is being reset"));
}

void TcpTransport::Impl::Link::Close() {
  queue_.Close();
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
void TcpTransport::Impl::Link::WatchForClose(TcpStream& stream) {
  stream.AsyncReadSome(asio::buffer(&watch_byte_, 1),
                       [this, generation = connection_generation_](
                           const asio::error_code&, size_t) {
                         if (generation == connection_generation_)
                           DropConnection();
                       });
}

awaitable<void> TcpTransport::Impl::Link::Run() {
  Backoff backoff(impl_.options());
  while (!queue_.closed()) {
    std::unique_ptr<TcpStream> stream = co_await Connect();
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
    if (queue_.closed()) break;
    queue_.DiscardForReconnect();
    impl_.ReportUnreachable(peer_);
    asio::error_code ec;
    timer_.expires_after(backoff.Next());
    co_await timer_.async_wait(RedirectTo(ec));
  }
}

awaitable<std::unique_ptr<TcpStream>> TcpTransport::Impl::Link::Connect() {
  const tcp::endpoint endpoint = impl_.EndpointOf(peer_);
  std::unique_ptr<TcpStream> stream = impl_.MakeStream(tcp::socket(io_));
  absl::StatusOr<wire::Hello> theirs;
  {
    HandshakeDeadline deadline(stream->socket(),
                               impl_.options().handshake_timeout);
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

// Writes batches until the connection breaks, parking on `timer_` while the
// queue is empty (Push wakes it).
awaitable<void> TcpTransport::Impl::Link::Pump(TcpStream& stream) {
  std::vector<wire::EncodedFrame> batch;
  std::vector<asio::const_buffer> buffers;
  while (stream.socket().is_open()) {
    if (!queue_.TakeBatch(batch)) {
      asio::error_code ec;
      timer_.expires_at(asio::steady_timer::time_point::max());
      co_await timer_.async_wait(RedirectTo(ec));
      continue;
    }
    const absl::Status written =
        co_await tcp_internal::WriteFrames(stream, batch, buffers);
    if (!written.ok()) {
      impl_.Log(absl::StrCat(wire::ChannelName(channel_),
                             " connection to member ", peer_.id,
                             " broke: ", written.message()));
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
  // A bulk frame that would be dropped is not worth encoding (an append can
  // be megabytes). Control frames are never dropped for space, so Push
  // alone decides for them.
  if (channel == wire::Channel::kBulk && !link.HasRoomFor(estimated_bytes)) {
    return link.Overflow();
  }
  wire::EncodedFrame frame = encode();
  if (frame.length() > options_.max_frame_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a ", frame.length(), "-byte frame to member ", to,
        " exceeds max_frame_bytes ", options_.max_frame_bytes,
        "; send smaller batches or raise the limit on every member"));
  }
  return link.Push(std::move(frame));
}

void TcpTransport::Impl::ReportUnreachable(Peer& peer) {
  if (!delivering_ || peer.unreachable_reported.exchange(true)) return;
  handler_->OnUnreachable(peer.id);
}

awaitable<absl::StatusOr<wire::Hello>> TcpTransport::Impl::Dial(
    TcpStream& stream, tcp::endpoint endpoint, wire::Channel channel,
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
      co_await handshaker_.Run(stream, reader, channel, peer);
  co_return theirs;
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
  // byte first; both handshakes then run on that channel's thread. The byte
  // only picks a thread: it is not authenticated, so Authenticate refuses
  // the connection if the hello (covered by the proof) names another
  // channel.
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
    HandshakeDeadline deadline(socket, options_.handshake_timeout);
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
  std::unique_ptr<TcpStream> stream = MakeStream(std::move(socket));
  FrameReader reader(*stream);
  absl::StatusOr<wire::Hello> theirs;
  ++pending_handshakes_;
  {
    HandshakeDeadline deadline(stream->socket(), options_.handshake_timeout);
    const asio::error_code ec =
        co_await stream->Handshake(asio::ssl::stream_base::server);
    if (ec) {
      theirs = NetworkError("TLS handshake", ec);
    } else {
      theirs = co_await handshaker_.Run(
          *stream, reader, wire::Channel::kControl, raft::kNoMember);
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
    stream = std::make_unique<TcpStream>(*std::move(moved));
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
    std::unique_ptr<TcpStream> stream, FrameReader reader, wire::Hello peer,
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
    // Checked per frame, not only at the handshake, so that a removed
    // member's open connections stop delivering at their next frame.
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
  } else if (auto* ack = std::get_if<wire::AckFrame>(&frame)) {
    handler_->OnSnapshotAck(ack->from, ack->ack);
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

absl::Status TcpTransport::SendSnapshotAck(raft::MemberId to,
                                           TransportSnapshotAck ack) {
  const raft::MemberId self = impl_->options().member_id;
  if (absl::Status ok = impl_->CheckCanSend(self); !ok.ok()) return ok;
  return impl_->Enqueue(to, wire::Channel::kControl, 0, [&] {
    return wire::EncodeSnapshotAck({.from = self, .to = to, .ack = ack});
  });
}

}  // namespace confman
