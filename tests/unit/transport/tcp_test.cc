// TcpTransport: options, reconnects, and hostile peers. Every bad input
// must close that one connection with a clear log line while the member
// keeps serving its other peers.
#include <sys/socket.h>
#include <sys/time.h>

#include <asio.hpp>
#include <catch2/catch.hpp>
#include <mutex>
#include <thread>

#include "clusters.h"
#include "handshake.h"
#include "wire_codec.h"

namespace confman::testing {
namespace {

using asio::ip::tcp;
using namespace std::chrono_literals;

// Collects log lines from a transport under test.
class LogLines {
 public:
  std::function<void(const std::string&)> Sink() {
    return [this](const std::string& line) {
      std::lock_guard<std::mutex> lock(mu_);
      lines_.push_back(line);
    };
  }
  // Waits until a line containing `text` appears.
  bool WaitFor(const std::string& text,
               std::chrono::milliseconds timeout = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        for (const std::string& line : lines_) {
          if (line.find(text) != std::string::npos) return true;
        }
      }
      std::this_thread::sleep_for(5ms);
    }
    return false;
  }
  std::string All() {
    std::lock_guard<std::mutex> lock(mu_);
    std::string all;
    for (const std::string& line : lines_) all += line + "\n";
    return all;
  }

 private:
  std::mutex mu_;
  std::vector<std::string> lines_;
};

absl::StatusOr<wire::Frame> ReadFrameBlocking(tcp::socket& socket,
                                              wire::AlignedBuffer& buffer) {
  uint8_t header[wire::kFrameHeaderBytes];
  asio::error_code ec;
  asio::read(socket, asio::buffer(header), ec);
  if (ec) return absl::UnavailableError(ec.message());
  auto length = wire::ParseFrameLength(header, 1u << 20);
  if (!length.ok()) return length.status();
  uint8_t* body = buffer.Resize(*length);
  asio::read(socket, asio::buffer(body, *length), ec);
  if (ec) return absl::UnavailableError(ec.message());
  return wire::DecodeFrameBody(body, *length);
}

// A hand-driven client speaking (or abusing) the wire protocol.
class RawClient {
 public:
  explicit RawClient(uint16_t port) : socket_(io_) {
    socket_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    timeval timeout{.tv_sec = 5, .tv_usec = 0};
    setsockopt(socket_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &timeout,
               sizeof(timeout));
  }

  void Write(const std::string& bytes) {
    asio::write(socket_, asio::buffer(bytes));
  }

  absl::StatusOr<wire::Frame> ReadFrame() {
    return ReadFrameBlocking(socket_, buffer_);
  }

  // Runs the dialler's side of the handshake; returns whether the server
  // accepted this side's proof (it answers with its own either way, then
  // closes on a bad one).
  void Handshake(const std::string& cluster, raft::MemberId id,
                 const std::string& secret) {
    wire::Hello mine{.cluster_id = cluster,
                     .member_id = id,
                     .nonce = wire::MakeNonce(),
                     .channel = wire::Channel::kControl};
    Write(wire::EncodeHello(mine).ToString());
    auto theirs = ReadFrame();
    if (!theirs.ok()) return;
    REQUIRE(std::holds_alternative<wire::Hello>(*theirs));
    Write(wire::EncodeProof({wire::ComputeProof(
                                secret, mine, std::get<wire::Hello>(*theirs))})
              .ToString());
    auto proof = ReadFrame();
    REQUIRE(proof.ok());
    CHECK(std::holds_alternative<wire::Proof>(*proof));
  }

  void Close() { socket_.close(); }

  // True once the server has closed the connection.
  bool ClosedByPeer() {
    uint8_t byte;
    asio::error_code ec;
    while (!ec) socket_.read_some(asio::buffer(&byte, 1), ec);
    return ec == asio::error::eof || ec == asio::error::connection_reset;
  }

 private:
  asio::io_context io_;
  tcp::socket socket_;
  wire::AlignedBuffer buffer_;
};

constexpr char kSecret[] = "test-secret-0123456789";

// Member 1 under test, a real member 2 that keeps talking to it, and member
// 3, known to member 1 but played by a RawClient.
class HostileFixture {
 public:
  HostileFixture() {
    TcpTransportOptions options = TestTcpOptions(1);
    options.log = log.Sink();
    auto one = TcpTransport::Create(options);
    auto two = TcpTransport::Create(TestTcpOptions(2));
    REQUIRE((one.ok() && two.ok()));
    member1 = *std::move(one);
    member2 = *std::move(two);
    REQUIRE(member1->AddPeer(2, Loopback(member2->listen_port())).ok());
    REQUIRE(member1->AddPeer(3, "127.0.0.1:1").ok());
    REQUIRE(member2->AddPeer(1, Loopback(member1->listen_port())).ok());
    REQUIRE(member1->Start(&handler1).ok());
    REQUIRE(member2->Start(&handler2).ok());
    ExpectStillServing();
  }
  ~HostileFixture() {
    member1->Stop();
    member2->Stop();
  }

  // Member 2's traffic still reaches member 1.
  void ExpectStillServing() {
    const size_t before = handler1.messages().size();
    REQUIRE(member2->Send(Heartbeat(2, 1, ++round_)).ok());
    CHECK(handler1.WaitUntil(
        [&](auto& h) { return h.message_count() == before + 1; }));
  }

  // Member 1 closed `client`'s connection, logged `reason`, and still
  // serves member 2.
  void ExpectRefused(RawClient& client, const std::string& reason) {
    CHECK(client.ClosedByPeer());
    CHECK(log.WaitFor(reason));
    ExpectStillServing();
  }

  LogLines log;
  RecordingHandler handler1;
  RecordingHandler handler2;
  std::unique_ptr<TcpTransport> member1;
  std::unique_ptr<TcpTransport> member2;

 private:
  uint64_t round_ = 0;
};

TEST_CASE("garbage bytes close the connection with a log line") {
  HostileFixture f;
  RawClient client(f.member1->listen_port());
  client.Write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  f.ExpectRefused(client, "exceeds max_frame_bytes 4096");
}

TEST_CASE("a frame truncated by the peer closes its connection") {
  HostileFixture f;
  RawClient client(f.member1->listen_port());
  client.Handshake("test-cluster", 3, kSecret);
  const std::string frame = wire::EncodeMessage(Heartbeat(3, 1, 1)).ToString();
  client.Write(frame.substr(0, frame.size() / 2));
  client.Close();
  CHECK(f.log.WaitFor("connection from member 3"));
  CHECK(f.log.WaitFor("reading a frame body"));
  f.ExpectStillServing();
}

TEST_CASE("a length of 2^32-1 is refused before allocating") {
  HostileFixture f;
  RawClient client(f.member1->listen_port());
  client.Handshake("test-cluster", 3, kSecret);
  client.Write(std::string(4, '\xff'));
  f.ExpectRefused(client,
                  "frame length 4294967295 exceeds max_frame_bytes 2097152");
}

TEST_CASE("garbage after the handshake fails verification") {
  HostileFixture f;
  RawClient client(f.member1->listen_port());
  client.Handshake("test-cluster", 3, kSecret);
  client.Write(std::string("\x10\0\0\0", 4) + std::string(16, '\x7f'));
  f.ExpectRefused(client, "FlatBuffers verification failed");
}

TEST_CASE("a foreign cluster is refused") {
  HostileFixture f;
  RawClient client(f.member1->listen_port());
  client.Handshake("other-cluster", 3, kSecret);
  f.ExpectRefused(client,
                  "peer belongs to cluster 'other-cluster', this member to "
                  "'test-cluster'");
}

TEST_CASE("an unknown member is refused") {
  HostileFixture f;
  RawClient client(f.member1->listen_port());
  client.Handshake("test-cluster", 42, kSecret);
  f.ExpectRefused(client, "member 42 is not a known peer");
}

TEST_CASE("a bad shared secret is refused") {
  HostileFixture f;
  RawClient client(f.member1->listen_port());
  client.Handshake("test-cluster", 3, "wrong-secret-0123456789");
  f.ExpectRefused(client, "member 3 failed the shared-secret proof");
  CHECK(f.handler1.messages().size() == 2);  // only member 2's heartbeats
}

TEST_CASE("a peer that never completes the handshake is timed out") {
  TcpTransportOptions options = TestTcpOptions(1);
  options.handshake_timeout = std::chrono::milliseconds(200);
  LogLines log;
  options.log = log.Sink();
  auto member = TcpTransport::Create(options);
  REQUIRE(member.ok());
  RecordingHandler handler;
  REQUIRE((*member)->Start(&handler).ok());
  RawClient client((*member)->listen_port());
  client.Write(std::string("\x40\0\0\0", 4));  // A header, then silence.
  CHECK(client.ClosedByPeer());
  CHECK(
      log.WaitFor("handshake not completed within handshake_timeout (200 ms)"));
  (*member)->Stop();
}

TEST_CASE("a Raft message before the handshake is refused") {
  HostileFixture f;
  RawClient client(f.member1->listen_port());
  client.Write(wire::EncodeMessage(Heartbeat(3, 1, 1)).ToString());
  f.ExpectRefused(client, "the first frame was not a hello");
}

TEST_CASE("a message claiming another sender is refused") {
  HostileFixture f;
  RawClient client(f.member1->listen_port());
  client.Handshake("test-cluster", 3, kSecret);
  client.Write(wire::EncodeMessage(Heartbeat(2, 1, 99)).ToString());
  f.ExpectRefused(client, "claims sender 2 on a connection authenticated as 3");
  for (const raft::Message& m : f.handler1.messages()) CHECK(m.round != 99);
}

TEST_CASE("an authenticated peer's valid frames are delivered") {
  HostileFixture f;
  RawClient client(f.member1->listen_port());
  client.Handshake("test-cluster", 3, kSecret);
  client.Write(wire::EncodeMessage(Heartbeat(3, 1, 1234)).ToString());
  CHECK(f.handler1.WaitUntil([](auto& h) {
    for (const auto& m : h.messages_locked()) {
      if (m.from == 3 && m.round == 1234) return true;
    }
    return false;
  }));
}

TEST_CASE("a snapshot acknowledgement claiming another sender is refused") {
  HostileFixture f;
  RawClient client(f.member1->listen_port());
  client.Handshake("test-cluster", 3, kSecret);
  client.Write(wire::EncodeSnapshotAck(
                   {.from = 2, .to = 1, .ack = {.snapshot_id = 7, .seq = 1}})
                   .ToString());
  f.ExpectRefused(client, "claims sender 2 on a connection authenticated as 3");
  CHECK(f.handler1.acks().empty());
}

TEST_CASE("options are validated with the failing field named") {
  TcpTransportOptions options = TestTcpOptions(1);
  CHECK(options.Validate().ok());
  options.shared_secret = "short";
  CHECK(options.Validate().message().find("shared_secret") !=
        std::string::npos);
  options = TestTcpOptions(1);
  options.max_frame_bytes = 1000;
  CHECK(options.Validate().message().find("max_frame_bytes") !=
        std::string::npos);
  options = TestTcpOptions(1);
  options.max_bulk_queue_bytes = 1000;
  CHECK(options.Validate().message().find("max_bulk_queue_bytes") !=
        std::string::npos);
  options = TestTcpOptions(1);
  options.reconnect_jitter = 1.0;
  CHECK_FALSE(options.Validate().ok());

  // Only the required fields set: every default is valid.
  TcpTransportOptions defaults;
  defaults.listen_address = "[::1]:0";
  defaults.member_id = 1;
  defaults.cluster_id = "c";
  defaults.shared_secret = "0123456789abcdef";
  CHECK(defaults.Validate().ok());
  CHECK(TcpTransportOptions{}.Validate().code() ==
        absl::StatusCode::kInvalidArgument);
  options = TestTcpOptions(1);
  options.listen_address = "localhost:80";
  CHECK(options.Validate().message().find("IP address") != std::string::npos);
  options = TestTcpOptions(0);
  CHECK_FALSE(TcpTransport::Create(options).ok());
}

TEST_CASE("oversized sends are refused, not truncated") {
  TcpPair pair;
  absl::Status status = pair.member(1).Send(Append(1, 2, 3u << 20, 1));
  CHECK(status.code() == absl::StatusCode::kInvalidArgument);
  CHECK(status.message().find("exceeds max_frame_bytes 2097152") !=
        std::string::npos);
  CHECK(TcpTransportOptions::FrameBytesFor(1000, 2) > 1000);
}

TEST_CASE("an unreachable peer is reported and reconnected when it returns") {
  RecordingHandler handler1, handler2;
  auto one = TcpTransport::Create(TestTcpOptions(1));
  REQUIRE(one.ok());
  // Reserve a port for member 2, then free it until member 2 starts.
  uint16_t port = 0;
  {
    auto probe = TcpTransport::Create(TestTcpOptions(2));
    REQUIRE(probe.ok());
    port = (*probe)->listen_port();
  }
  REQUIRE((*one)->AddPeer(2, Loopback(port)).ok());
  REQUIRE((*one)->Start(&handler1).ok());
  CHECK(handler1.WaitUntil([](auto& h) { return h.unreachable_count() >= 1; }));
  CHECK(handler1.unreachable()[0] == 2);

  TcpTransportOptions options = TestTcpOptions(2);
  options.listen_address = Loopback(port);
  auto two = TcpTransport::Create(options);
  REQUIRE(two.ok());
  REQUIRE((*two)->AddPeer(1, Loopback((*one)->listen_port())).ok());
  REQUIRE((*two)->Start(&handler2).ok());
  // Messages sent while disconnected may be dropped; keep sending until one
  // arrives over the re-established connection.
  bool delivered = false;
  for (int attempt = 0; attempt < 100 && !delivered; ++attempt) {
    REQUIRE((*one)->Send(Heartbeat(1, 2, attempt)).ok());
    delivered =
        handler2.WaitUntil([](auto& h) { return h.message_count() > 0; }, 50ms);
  }
  CHECK(delivered);
  (*one)->Stop();
  (*two)->Stop();
}

TEST_CASE("a stopped member's peers see its connections close") {
  TcpPair pair;
  REQUIRE(pair.member(2).Send(Heartbeat(2, 1, 1)).ok());
  REQUIRE(pair.handler(1).WaitUntil(
      [](auto& h) { return h.message_count() == 1; }));
  pair.member(1).Stop();
  // Member 2's outbound connections to 1 are closed by 1, not left hanging.
  CHECK(pair.handler(2).WaitUntil(
      [](auto& h) { return h.unreachable_count() > 0; }));
  CHECK(pair.handler(2).unreachable()[0] == 1);
}

TEST_CASE("a removed and re-added peer is served again") {
  TcpPair pair;
  pair.member(1).RemovePeer(2);
  REQUIRE(pair.member(1)
              .AddPeer(2, Loopback(static_cast<TcpTransport&>(pair.member(2))
                                       .listen_port()))
              .ok());
  bool delivered = false;
  for (uint64_t attempt = 1; attempt <= 100 && !delivered; ++attempt) {
    REQUIRE(pair.member(1).Send(Heartbeat(1, 2, attempt)).ok());
    delivered = pair.handler(2).WaitUntil(
        [](auto& h) { return h.message_count() > 0; }, 50ms);
  }
  CHECK(delivered);
}

TEST_CASE("heartbeats are delivered while the bulk path is stuck") {
  TcpPair pair;
  RecordingHandler& two = pair.handler(2);
  two.HoldAppends(true);  // Member 2's bulk thread is stuck in a callback.
  REQUIRE(pair.member(1).Send(Append(1, 2, 1u << 20, 1)).ok());
  for (uint64_t round = 1; round <= 10; ++round) {
    REQUIRE(pair.member(1).Send(Heartbeat(1, 2, round)).ok());
  }
  // So are snapshot acknowledgements, which a stream's window waits on.
  REQUIRE(pair.member(1).SendSnapshotAck(2, {.snapshot_id = 3, .seq = 0}).ok());
  CHECK(two.WaitUntil(
      [](auto& h) { return h.count_of(raft::MessageType::kHeartbeat) == 10; }));
  CHECK(two.WaitUntil([](auto& h) { return h.ack_count() == 1; }));
  CHECK(two.count_now(raft::MessageType::kAppend) == 0);
  two.HoldAppends(false);
  CHECK(two.WaitUntil(
      [](auto& h) { return h.count_of(raft::MessageType::kAppend) == 1; }));
}

TEST_CASE("TLS: a peer whose certificate another CA signed is refused") {
  TcpTransportOptions one_options = TestTcpOptions(1);
  one_options.tls = SharedTestPki().member;
  LogLines log;
  one_options.log = log.Sink();
  TcpTransportOptions two_options = TestTcpOptions(2);
  two_options.tls = SharedTestPki().stranger;
  auto one = TcpTransport::Create(one_options);
  auto two = TcpTransport::Create(two_options);
  REQUIRE((one.ok() && two.ok()));
  RecordingHandler handler1, handler2;
  REQUIRE((*one)->AddPeer(2, Loopback((*two)->listen_port())).ok());
  REQUIRE((*two)->AddPeer(1, Loopback((*one)->listen_port())).ok());
  REQUIRE((*one)->Start(&handler1).ok());
  REQUIRE((*two)->Start(&handler2).ok());
  for (uint64_t round = 1; round <= 5; ++round) {
    (void)(*two)->Send(Heartbeat(2, 1, round));
    (void)(*one)->Send(Heartbeat(1, 2, round));
  }
  CHECK(log.WaitFor("TLS handshake"));
  CHECK(log.WaitFor("certificate verify failed"));
  std::this_thread::sleep_for(200ms);
  CHECK(handler1.messages().empty());
  CHECK(handler2.messages().empty());
  (*one)->Stop();
  (*two)->Stop();
}

TEST_CASE("TLS: a plain peer is refused by a TLS member") {
  TcpTransportOptions options = TestTcpOptions(1);
  options.tls = SharedTestPki().member;
  LogLines log;
  options.log = log.Sink();
  auto member = TcpTransport::Create(options);
  REQUIRE(member.ok());
  RecordingHandler handler;
  REQUIRE((*member)->AddPeer(3, "127.0.0.1:1").ok());
  REQUIRE((*member)->Start(&handler).ok());
  RawClient client((*member)->listen_port());
  client.Handshake("test-cluster", 3, kSecret);
  CHECK(client.ClosedByPeer());
  CHECK(log.WaitFor("is the peer configured without TLS?"));
  (*member)->Stop();
}

TEST_CASE("TLS: unreadable certificate files are reported by Create") {
  TcpTransportOptions options = TestTcpOptions(1);
  options.tls = SharedTestPki().member;
  options.tls->ca_file = SharedTestPki().directory + "/missing.pem";
  auto member = TcpTransport::Create(options);
  REQUIRE_FALSE(member.ok());
  CHECK(member.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(member.status().message().find("cannot load tls.ca_file") !=
        std::string::npos);
  options.tls->ca_file.clear();
  CHECK(options.Validate().message().find("tls needs") != std::string::npos);
}

// Plays member 2: accepts member 1's two connections, completes the
// acceptor's side of the handshake, then never reads again, like a peer
// that has stopped consuming.
class SilentPeer {
 public:
  SilentPeer()
      : acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    thread_ = std::thread([this] { AcceptBoth(); });
  }
  ~SilentPeer() {
    ::shutdown(acceptor_.native_handle(), SHUT_RDWR);  // Unblocks accept.
    thread_.join();
  }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }

 private:
  void AcceptBoth() {
    for (int i = 0; i < 2; ++i) {
      tcp::socket socket(io_);
      asio::error_code ec;
      acceptor_.accept(socket, ec);
      if (ec) return;
      wire::AlignedBuffer buffer;
      auto hello = ReadFrameBlocking(socket, buffer);
      if (!hello.ok()) return;
      const wire::Hello theirs = std::get<wire::Hello>(*hello);
      wire::Hello mine;
      mine.cluster_id = "test-cluster";
      mine.member_id = 2;
      mine.nonce = wire::MakeNonce();
      mine.channel = theirs.channel;
      wire::Proof proof;
      proof.mac = wire::ComputeProof(kSecret, mine, theirs);
      asio::write(socket, asio::buffer(wire::EncodeHello(mine).ToString()), ec);
      asio::write(socket, asio::buffer(wire::EncodeProof(proof).ToString()),
                  ec);
      (void)ReadFrameBlocking(socket, buffer);  // Member 1's proof.
      sockets_.push_back(std::move(socket));
    }
  }

  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::vector<tcp::socket> sockets_;
  std::thread thread_;
};

TEST_CASE("a peer that stops reading has its control connection reset") {
  SilentPeer peer;
  TcpTransportOptions options = TestTcpOptions(1);
  options.max_control_queue_bytes = 64u << 10;
  auto member = TcpTransport::Create(options);
  REQUIRE(member.ok());
  RecordingHandler handler;
  REQUIRE((*member)->AddPeer(2, Loopback(peer.port())).ok());
  REQUIRE((*member)->Start(&handler).ok());
  // Socket buffers absorb some megabytes first; then the bounded control
  // queue fills and the connection is declared stuck.
  const ForwardFrame forward{.request_id = 1,
                             .response = false,
                             .payload = std::string(32u << 10, 'f')};
  absl::Status status;
  for (int i = 0; i < 4096 && status.ok(); ++i) {
    status = (*member)->SendForward(2, forward);
  }
  CHECK(status.code() == absl::StatusCode::kUnavailable);
  CHECK(status.message().find("stopped reading") != std::string::npos);
  CHECK(handler.WaitUntil([](auto& h) { return h.unreachable_count() > 0; }));
  (*member)->Stop();
}

}  // namespace
}  // namespace confman::testing
