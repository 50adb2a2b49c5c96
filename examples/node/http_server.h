// confman-node's client listener: Boost.Beast HTTP/1.1 on a small fixed pool
// of Asio I/O threads. It owns connections and their limits (connection
// cap, header/body/idle timeouts, header and body size caps, 413 decided
// from Content-Length before the body is read), bearer-token checks, the
// optional TLS layer, and long-lived chunked streams (watches). Routes see
// an Exchange per request and answer from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>  // Boost 1.74 Asio uses std::exchange without including it.
#include <vector>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "absl/status/statusor.h"
#include "log_sink.h"
#include "metrics.h"

namespace confman::server {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

// A chunked response body produced over time (a watch). Thread-safe.
class StreamWriter {
 public:
  virtual ~StreamWriter() = default;
  // Queues one piece of the body. False when the client has fallen more
  // than the stream's queue bound behind, or the stream has ended: the
  // caller should Finish it.
  virtual bool Push(std::string data) = 0;
  // Queues the last piece (always accepted) and ends the stream once it
  // is written; the connection then closes.
  virtual void Finish(std::string last) = 0;
  // Runs once when the stream ends for any reason (finished, client gone,
  // write error, shutdown), on an I/O thread. Set it before pushing.
  virtual void SetOnClose(std::function<void()> on_close) = 0;
};

// One request on a connection. Reply (or StartStream) exactly once, from
// any thread; a reply after the connection went away is dropped.
class Exchange {
 public:
  virtual ~Exchange() = default;
  virtual const Request& request() const = 0;
  virtual const std::string& peer_ip() const = 0;
  virtual void Reply(Response response) = 0;
  // Sends `head` (status and fields; chunked, connection closes at the
  // end) and returns the writer for the body.
  virtual std::shared_ptr<StreamWriter> StartStream(Response head,
                                                    size_t max_queued) = 0;
};

struct HttpServerOptions {
  std::string listen_address = "127.0.0.1:7480";  // "host:port"
  int io_threads = 2;
  uint64_t max_connections = 1024;
  std::chrono::milliseconds header_timeout{10000};
  std::chrono::milliseconds body_timeout{60000};
  std::chrono::milliseconds idle_timeout{120000};
  uint64_t max_body_bytes = uint64_t{4} << 20;
  uint32_t max_header_bytes = 16 * 1024;
  std::string token;      // Empty: no authentication.
  std::string cert_file;  // Both set: HTTPS.
  std::string key_file;
};

class HttpServer {
 public:
  using Handler = std::function<void(std::shared_ptr<Exchange>)>;
  // Adds the fields every response carries; runs on an I/O thread.
  using Decorator = std::function<void(Response&)>;
  // Builds an error response (status, code, message).
  using ErrorBuilder =
      std::function<Response(http::status, const std::string& code,
                             const std::string& message)>;

  // Binds the listener (so url() is known) without serving yet.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Create(
      HttpServerOptions options, Handler handler, Decorator decorator,
      ErrorBuilder errors, Logger* log, PrometheusMetrics* metrics);
  ~HttpServer();

  // "http://127.0.0.1:7481" (the bound port, https when TLS is on).
  std::string url() const { return url_; }

  void Start();
  // Closes the listener; open connections finish their current request.
  void StopAccepting();
  // Stops the I/O threads (every connection is dropped).
  void Stop();

  uint64_t open_connections() const;
  bool stopping() const;

  // Not for routes: the session implementation's view of the server.
  struct Shared;

 private:
  HttpServer() = default;
  void Accept();

  HttpServerOptions options_;
  std::string url_;
  net::io_context ioc_;
  std::unique_ptr<net::ssl::context> tls_;
  std::unique_ptr<net::ip::tcp::acceptor> acceptor_;
  std::shared_ptr<Shared> shared_;
  std::vector<std::thread> threads_;
  bool stopped_ = false;
};

// Constant-time comparison of a presented bearer token with the expected
// one (compares SHA-256 digests, so the length does not leak either).
bool TokenMatches(std::string_view presented, std::string_view expected);

}  // namespace confman::server
