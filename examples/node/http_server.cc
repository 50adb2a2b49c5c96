// Connections of the client listener: accept, TLS handshake, bounded and
// timed reads of each request, auth, replies posted back onto the
// connection's strand, and chunked streams with a bounded queue.
#include "http_server.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cstdio>
#include <deque>
#include <mutex>
#include <optional>

#include <boost/beast/ssl.hpp>

namespace confman::server {

struct HttpServer::Shared {
  HttpServerOptions options;
  Handler handler;
  Decorator decorator;
  ErrorBuilder errors;
  Logger* log = nullptr;
  PrometheusMetrics* metrics = nullptr;
  // Here rather than in HttpServer: sessions still queued in the
  // io_context when the server is destroyed outlive its members.
  std::atomic<uint64_t> connections{0};
  std::atomic<bool> stopping{false};
};

bool TokenMatches(std::string_view presented, std::string_view expected) {
  unsigned char a[EVP_MAX_MD_SIZE];
  unsigned char b[EVP_MAX_MD_SIZE];
  unsigned int a_len = 0;
  unsigned int b_len = 0;
  if (EVP_Digest(presented.data(), presented.size(), a, &a_len, EVP_sha256(), nullptr) != 1 ||
      EVP_Digest(expected.data(), expected.size(), b, &b_len, EVP_sha256(), nullptr) != 1 ||
      a_len != b_len) {
    return false;
  }
  return CRYPTO_memcmp(a, b, a_len) == 0;
}

namespace {

// Largest read of a request body, and the buffer an idle connection keeps.
constexpr uint64_t kBodyReadBytes = uint64_t{256} << 10;
constexpr size_t kIdleBufferBytes = size_t{16} << 10;


using tcp = net::ip::tcp;
using PlainStream = beast::tcp_stream;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

bool IsDisconnect(const beast::error_code& ec) {
  return ec == http::error::end_of_stream || ec == net::error::eof ||
         ec == net::error::connection_reset || ec == net::error::operation_aborted ||
         ec == net::ssl::error::stream_truncated;
}

std::string EncodeChunk(std::string_view data) {
  if (data.empty()) return {};
  char size[32];
  std::snprintf(size, sizeof(size), "%zx\r\n", data.size());
  std::string out(size);
  out.append(data).append("\r\n");
  return out;
}

template <class Stream>
class Session final : public Exchange,
                      public StreamWriter,
                      public std::enable_shared_from_this<Session<Stream>> {
 public:
  static constexpr bool kTls = std::is_same_v<Stream, TlsStream>;

  template <class... Args>
  Session(std::shared_ptr<HttpServer::Shared> shared, bool reject,
          std::string peer_ip, Args&&... args)
      : stream_(std::forward<Args>(args)...),
        shared_(std::move(shared)),
        reject_(reject),
        peer_ip_(std::move(peer_ip)) {}

  ~Session() override {
    shared_->connections.fetch_sub(1);
    std::function<void()> on_close;
    {
      std::lock_guard<std::mutex> lock(mu_);
      on_close = std::move(on_close_);
    }
    if (on_close) on_close();
  }

  void Run() {
    auto self = this->shared_from_this();
    net::dispatch(stream_.get_executor(), [self] { self->Begin(); });
  }

  // --- Exchange ---------------------------------------------------------

  const Request& request() const override { return request_; }
  const std::string& peer_ip() const override { return peer_ip_; }

  void Reply(Response response) override {
    auto self = this->shared_from_this();
    net::post(stream_.get_executor(),
              [self, r = std::move(response)]() mutable { self->Send(std::move(r)); });
  }

  std::shared_ptr<StreamWriter> StartStream(Response head, size_t max_queued) override {
    shared_->decorator(head);
    std::string bytes = "HTTP/1.1 " + std::to_string(head.result_int()) + " " +
                        std::string(head.reason()) + "\r\n";
    for (const auto& field : head) {
      const auto name = field.name();
      if (name == http::field::content_length || name == http::field::transfer_encoding ||
          name == http::field::connection) {
        continue;
      }
      bytes.append(std::string(field.name_string())).append(": ").append(std::string(field.value())).append("\r\n");
    }
    bytes.append("Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    shared_->metrics->AddLabeledCounter("http.requests", "code",
                                        std::to_string(head.result_int()), 1);
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(std::move(bytes));
      max_queued_ = max_queued;
    }
    auto self = this->shared_from_this();
    net::post(stream_.get_executor(), [self] { self->BeginStream(); });
    return self;
  }

  // --- StreamWriter -----------------------------------------------------

  bool Push(std::string data) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (finishing_ || stream_closed_ || queued_items_ >= max_queued_) return false;
    queue_.push_back(EncodeChunk(data));
    ++queued_items_;
    SchedulePumpLocked();
    return true;
  }

  void Finish(std::string last) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (finishing_ || stream_closed_) return;
    finishing_ = true;
    queue_.push_back(EncodeChunk(last) + "0\r\n\r\n");
    SchedulePumpLocked();
  }

  void SetOnClose(std::function<void()> on_close) override {
    bool run_now = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stream_closed_) {
        run_now = true;
      } else {
        on_close_ = std::move(on_close);
      }
    }
    if (run_now && on_close) on_close();
  }

 private:
  const HttpServerOptions& opt() const { return shared_->options; }
  beast::tcp_stream& Lowest() { return beast::get_lowest_layer(stream_); }

  void Begin() {
    if constexpr (kTls) {
      Lowest().expires_after(opt().header_timeout);
      auto self = this->shared_from_this();
      stream_.async_handshake(net::ssl::stream_base::server,
                              [self](beast::error_code ec) {
                                if (ec) {
                                  self->shared_->log->Event(
                                      LogLevel::kDebug, "http", "TLS handshake failed",
                                      {{"peer", self->peer_ip_}, {"error", ec.message()}});
                                  return self->Close();
                                }
                                self->ReadRequest(true);
                              });
    } else {
      ReadRequest(true);
    }
  }

  void ReadRequest(bool first) {
    parser_.emplace();
    parser_->header_limit(opt().max_header_bytes);
    parser_->body_limit(opt().max_body_bytes);
    if (!first && buffer_.size() == 0) {
      // Between requests the idle timeout applies; the header timeout
      // starts with the first byte of the next request.
      Lowest().expires_after(opt().idle_timeout);
      auto self = this->shared_from_this();
      stream_.async_read_some(buffer_.prepare(1024),
                              [self](beast::error_code ec, size_t n) {
                                if (ec) return self->Close();
                                self->buffer_.commit(n);
                                self->ReadHeader();
                              });
      return;
    }
    ReadHeader();
  }

  void ReadHeader() {
    Lowest().expires_after(opt().header_timeout);
    auto self = this->shared_from_this();
    http::async_read_header(stream_, buffer_, *parser_,
                            [self](beast::error_code ec, size_t) { self->OnHeader(ec); });
  }

  void OnHeader(beast::error_code ec) {
    if (ec) {
      if (IsDisconnect(ec)) return Close();
      if (ec == beast::error::timeout) {
        shared_->log->Event(LogLevel::kDebug, "http",
                            "closed a connection whose request headers did not arrive in time",
                            {{"peer", peer_ip_}});
        return Close();
      }
      keep_alive_ = false;
      if (ec == http::error::body_limit) {
        // The parser compares Content-Length with the limit as soon as the
        // headers are complete: the body is never read.
        return SendError(http::status::payload_too_large, "value_too_large",
                         "the body exceeds " + std::to_string(opt().max_body_bytes) +
                             " bytes, this member's --max-value-bytes");
      }
      const std::string why = ec == http::error::header_limit
          ? "the request headers exceed " + std::to_string(opt().max_header_bytes) + " bytes"
          : "malformed HTTP request (" + ec.message() + ")";
      return SendError(http::status::bad_request, "bad_request", why);
    }
    if (reject_) {
      keep_alive_ = false;
      return SendError(http::status::too_many_requests, "too_many_connections",
                       "this member already serves " + std::to_string(opt().max_connections) +
                           " connections (--max-connections); retry later or use another member");
    }
    const auto& head = parser_->get();
    if (!opt().token.empty()) {
      const std::string_view target(head.target().data(), head.target().size());
      const std::string_view path = target.substr(0, target.find('?'));
      if (path != "/livez" && path != "/readyz") {
        const auto auth = head[http::field::authorization];
        const std::string_view value(auth.data(), auth.size());
        constexpr std::string_view kBearer = "Bearer ";
        if (value.size() <= kBearer.size() || value.substr(0, kBearer.size()) != kBearer ||
            !TokenMatches(value.substr(kBearer.size()), opt().token)) {
          // An unread body would be taken for the next request.
          if (!parser_->is_done()) keep_alive_ = false;
          return SendError(http::status::unauthorized, "unauthorized",
                           "send 'Authorization: Bearer <token>' with the token from the "
                           "member's --client-token-file");
        }
      }
    }
    if (const auto length = parser_->content_length();
        length && *length > opt().max_body_bytes) {
      keep_alive_ = false;
      return SendError(http::status::payload_too_large, "value_too_large",
                       "the body is " + std::to_string(*length) + " bytes; this member accepts at most " +
                           std::to_string(opt().max_body_bytes) + " (--max-value-bytes)");
    }
    if (parser_->is_done()) return Dispatch();
    const auto expect = head[http::field::expect];
    if (beast::iequals(expect, "100-continue")) {
      auto self = this->shared_from_this();
      static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      Lowest().expires_after(opt().body_timeout);
      net::async_write(stream_, net::buffer(kContinue),
                       [self](beast::error_code wec, size_t) {
                         if (wec) return self->Close();
                         self->ReadBody();
                       });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    Lowest().expires_after(opt().body_timeout);
    // Each read fills at most the buffer's free capacity, which the header
    // read left small: a 1 MiB body would take a thousand reads (and as many
    // timer resets). Reads of up to kBodyReadBytes; the buffer shrinks back
    // once the body is in, so idle and watch connections keep little.
    if (const auto length = parser_->content_length(); length && *length > buffer_.capacity()) {
      buffer_.reserve(static_cast<size_t>(std::min<uint64_t>(*length, kBodyReadBytes)));
    }
    auto self = this->shared_from_this();
    http::async_read(stream_, buffer_, *parser_, [self](beast::error_code ec, size_t) {
      if (!ec) {
        if (self->buffer_.capacity() > kIdleBufferBytes) self->buffer_.shrink_to_fit();
        return self->Dispatch();
      }
      self->keep_alive_ = false;
      if (ec == http::error::body_limit) {
        return self->SendError(http::status::payload_too_large, "value_too_large",
                               "the body exceeds " + std::to_string(self->opt().max_body_bytes) +
                                   " bytes (--max-value-bytes)");
      }
      if (ec == beast::error::timeout) {
        self->shared_->log->Event(LogLevel::kDebug, "http",
                                  "closed a connection whose request body did not arrive in time",
                                  {{"peer", self->peer_ip_}});
        return self->Close();
      }
      if (IsDisconnect(ec)) return self->Close();
      self->SendError(http::status::bad_request, "bad_request",
                      "malformed request body (" + ec.message() + ")");
    });
  }

  void Dispatch() {
    request_ = parser_->release();
    keep_alive_ = request_.keep_alive();
    replied_ = false;
    // Node calls may take up to the request timeout; the socket has no
    // deadline while the member works on the request.
    Lowest().expires_never();
    shared_->handler(this->shared_from_this());
  }

  void SendError(http::status status, const std::string& code, const std::string& message) {
    Send(shared_->errors(status, code, message));
  }

  void Send(Response response) {
    if (replied_ || closed_) return;
    replied_ = true;
    shared_->decorator(response);
    response.keep_alive(keep_alive_ && !shared_->stopping.load());
    response.prepare_payload();
    shared_->metrics->AddLabeledCounter("http.requests", "code",
                                        std::to_string(response.result_int()), 1);
    LogRequest(response);
    response_ = std::make_shared<Response>(std::move(response));
    Lowest().expires_after(opt().idle_timeout);
    auto self = this->shared_from_this();
    http::async_write(stream_, *response_, [self](beast::error_code ec, size_t) {
      if (ec || !self->response_->keep_alive()) return self->Close();
      self->response_.reset();
      self->ReadRequest(false);
    });
  }

  // Every request at debug; server-side failures at warning, since they
  // are what an operator has to look at.
  void LogRequest(const Response& response) {
    const unsigned code = response.result_int();
    const LogLevel level = code >= 500 ? LogLevel::kWarning : LogLevel::kDebug;
    if (!shared_->log->Enabled(level)) return;
    std::string message = "request answered";
    if (code >= 500) {
      const std::string& body = response.body();
      message = "request failed: " + body.substr(0, std::min<size_t>(body.size(), 400));
      while (!message.empty() && message.back() == '\n') message.pop_back();
    }
    shared_->log->Event(level, "http", message,
                        {{"method", std::string(request_.method_string())},
                         {"target", std::string(request_.target())},
                         {"status", std::to_string(code)},
                         {"peer", peer_ip_}});
  }

  // --- Streaming (strand) ---------------------------------------------------

  void SchedulePumpLocked() {
    if (pump_scheduled_) return;
    pump_scheduled_ = true;
    auto self = this->shared_from_this();
    net::post(stream_.get_executor(), [self] { self->Pump(); });
  }

  void BeginStream() {
    if (closed_) return;
    replied_ = true;
    streaming_ = true;
    Lowest().expires_never();
    WatchForDisconnect();
    Pump();
  }

  // The client sends nothing on a stream; a read completes only when it
  // goes away, which is when the stream (and its watch) must end.
  void WatchForDisconnect() {
    auto self = this->shared_from_this();
    stream_.async_read_some(net::buffer(scratch_), [self](beast::error_code ec, size_t) {
      if (ec) return self->Close();
      if (!self->writing_) self->Lowest().expires_never();
      self->WatchForDisconnect();
    });
  }

  void Pump() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      pump_scheduled_ = false;
      if (!streaming_ || writing_ || closed_) return;
      if (queue_.empty()) return;
      write_buf_.clear();
      for (auto& piece : queue_) write_buf_.append(piece);
      queue_.clear();
      queued_items_ = 0;
      last_taken_ = finishing_;
    }
    writing_ = true;
    // A client that stops reading holds this write; it is cut off after
    // the idle timeout rather than pinning the watch forever.
    Lowest().expires_after(opt().idle_timeout);
    auto self = this->shared_from_this();
    net::async_write(stream_, net::buffer(write_buf_), [self](beast::error_code ec, size_t) {
      self->writing_ = false;
      if (ec || self->last_taken_) return self->Close();
      self->Pump();
    });
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    beast::error_code ignored;
    Lowest().socket().shutdown(tcp::socket::shutdown_both, ignored);
    Lowest().close();
    std::function<void()> on_close;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stream_closed_ = true;
      on_close = std::move(on_close_);
      queue_.clear();
    }
    if (on_close) on_close();
  }

  Stream stream_;
  std::shared_ptr<HttpServer::Shared> shared_;
  const bool reject_;
  const std::string peer_ip_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  Request request_;
  std::shared_ptr<Response> response_;
  bool keep_alive_ = true;
  bool replied_ = false;
  bool closed_ = false;  // Strand only.
  bool writing_ = false;
  bool last_taken_ = false;
  std::string write_buf_;
  char scratch_[256];

  std::mutex mu_;  // Guards the fields below (touched from any thread).
  std::deque<std::string> queue_;
  size_t queued_items_ = 0;
  size_t max_queued_ = 0;
  bool streaming_ = false;
  bool finishing_ = false;
  bool pump_scheduled_ = false;
  bool stream_closed_ = false;
  std::function<void()> on_close_;
};

// Splits "host:port"; the host may be a bracketed IPv6 address.
bool SplitHostPort(const std::string& address, std::string* host, uint16_t* port) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) return false;
  *host = address.substr(0, colon);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') {
    *host = host->substr(1, host->size() - 2);
  }
  const std::string port_text = address.substr(colon + 1);
  if (port_text.empty() || port_text.size() > 5) return false;
  unsigned long value = 0;
  for (char c : port_text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<unsigned long>(c - '0');
  }
  if (value > 65535) return false;
  *port = static_cast<uint16_t>(value);
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Create(
    HttpServerOptions options, Handler handler, Decorator decorator,
    ErrorBuilder errors, Logger* log, PrometheusMetrics* metrics) {
  std::unique_ptr<HttpServer> server(new HttpServer());
  std::string host;
  uint16_t port = 0;
  if (!SplitHostPort(options.listen_address, &host, &port)) {
    return absl::InvalidArgumentError("--client-listen '" + options.listen_address +
                                      "' is not host:port (e.g. 127.0.0.1:7480)");
  }
  beast::error_code ec;
  const auto ip = net::ip::make_address(host, ec);
  if (ec) {
    return absl::InvalidArgumentError("--client-listen host '" + host +
                                      "' is not an IP address; give a numeric address");
  }
  if (!options.cert_file.empty()) {
    server->tls_ = std::make_unique<net::ssl::context>(net::ssl::context::tls_server);
    server->tls_->set_options(net::ssl::context::default_workarounds |
                              net::ssl::context::no_sslv2 | net::ssl::context::no_sslv3 |
                              net::ssl::context::no_tlsv1 | net::ssl::context::no_tlsv1_1);
    server->tls_->use_certificate_chain_file(options.cert_file, ec);
    if (ec) {
      return absl::InvalidArgumentError("cannot load --client-cert '" + options.cert_file +
                                        "': " + ec.message() + "; give a PEM certificate chain");
    }
    server->tls_->use_private_key_file(options.key_file, net::ssl::context::pem, ec);
    if (ec) {
      return absl::InvalidArgumentError("cannot load --client-key '" + options.key_file +
                                        "': " + ec.message() + "; give the PEM private key of --client-cert");
    }
  }
  auto acceptor = std::make_unique<tcp::acceptor>(server->ioc_);
  const tcp::endpoint endpoint(ip, port);
  acceptor->open(endpoint.protocol(), ec);
  if (!ec) acceptor->set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor->bind(endpoint, ec);
  if (!ec) acceptor->listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError("cannot listen on --client-listen " + options.listen_address +
                                  ": " + ec.message() + "; pick a free address or port");
  }
  const uint16_t bound = acceptor->local_endpoint().port();
  const std::string shown_host = ip.is_v6() ? "[" + ip.to_string() + "]" : ip.to_string();
  server->url_ = std::string(server->tls_ ? "https://" : "http://") + shown_host + ":" +
                 std::to_string(bound);
  server->acceptor_ = std::move(acceptor);
  server->options_ = options;
  server->shared_ = std::make_shared<Shared>();
  server->shared_->options = std::move(options);
  server->shared_->handler = std::move(handler);
  server->shared_->decorator = std::move(decorator);
  server->shared_->errors = std::move(errors);
  server->shared_->log = log;
  server->shared_->metrics = metrics;
  return server;
}

HttpServer::~HttpServer() { Stop(); }

uint64_t HttpServer::open_connections() const { return shared_->connections.load(); }
bool HttpServer::stopping() const { return shared_->stopping.load(); }

void HttpServer::Start() {
  Accept();
  for (int i = 0; i < std::max(1, options_.io_threads); ++i) {
    threads_.emplace_back([this] { ioc_.run(); });
  }
}

void HttpServer::Accept() {
  acceptor_->async_accept(net::make_strand(ioc_), [this](beast::error_code ec, tcp::socket socket) {
    if (ec) {
      if (shared_->stopping.load() || ec == net::error::operation_aborted) return;
      shared_->log->Event(LogLevel::kWarning, "http", "accepting a client connection failed",
                          {{"error", ec.message()}});
      // Out of descriptors, typically: wait instead of spinning.
      auto timer = std::make_shared<net::steady_timer>(ioc_, std::chrono::milliseconds(100));
      timer->async_wait([this, timer](beast::error_code) {
        if (!shared_->stopping.load()) Accept();
      });
      return;
    }
    const bool reject = shared_->connections.fetch_add(1) >= options_.max_connections;
    beast::error_code ignored;
    const auto remote = socket.remote_endpoint(ignored);
    std::string peer = ignored ? std::string("unknown") : remote.address().to_string();
    if (tls_) {
      std::make_shared<Session<TlsStream>>(shared_, reject, std::move(peer), std::move(socket), *tls_)
          ->Run();
    } else {
      std::make_shared<Session<PlainStream>>(shared_, reject, std::move(peer), std::move(socket))
          ->Run();
    }
    Accept();
  });
}

void HttpServer::StopAccepting() {
  shared_->stopping.store(true);
  net::post(ioc_, [this] {
    beast::error_code ignored;
    acceptor_->close(ignored);
  });
}

void HttpServer::Stop() {
  if (stopped_) return;
  stopped_ = true;
  // A server that failed to listen never got its shared state.
  if (shared_ == nullptr) return;
  shared_->stopping.store(true);
  ioc_.stop();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

}  // namespace confman::server
