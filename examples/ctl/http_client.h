// HTTP transport of confmanctl: one keep-alive connection per endpoint
// (plain or TLS), every operation bounded by a deadline, and a Client that
// fails over between endpoints and retries writes whose outcome is unknown
// with the same X-Confman-Request pair, which the server applies once.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ctl.h"

namespace confmanctl {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;

struct Endpoint {
  std::string url;  // as given, for messages
  bool tls = false;
  std::string host;
  std::string port;
};

// Throws a usage error naming the bad URL.
Endpoint ParseEndpoint(const std::string& url);
std::vector<Endpoint> ParseEndpoints(const std::string& comma_separated);

struct TlsSettings {
  std::string cacert;  // empty: the system's trust store
  bool insecure = false;
};

struct HttpRequest {
  std::string method = "GET";
  std::string target;  // path and query
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

struct HttpResponse {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string endpoint;                        // which endpoint answered

  std::string Header(const std::string& lower_name) const;
};

// Why a request got no response. kConnect means the request never left,
// so it certainly did not apply; the others leave a write's outcome open.
enum class TransportFailure { kConnect, kLost, kTimeout };

class TransportError : public std::runtime_error {
 public:
  TransportError(TransportFailure failure, const std::string& message)
      : std::runtime_error(message), failure_(failure) {}
  TransportFailure failure() const { return failure_; }

 private:
  TransportFailure failure_;
};

// One connection to one endpoint; reconnects lazily. Not thread-safe: each
// thread (a bench writer, say) owns its own.
class Connection {
 public:
  Connection(Endpoint endpoint, const TlsSettings& tls);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  const Endpoint& endpoint() const { return endpoint_; }

  // Sends the request and reads the whole response. Throws TransportError.
  HttpResponse RoundTrip(const HttpRequest& request, Deadline deadline);

  // Streaming: sends the request and reads the response header. A non-200
  // answer is read whole and returned with its body; on 200 the body is
  // then read with ReadSome.
  HttpResponse StartStream(const HttpRequest& request, Deadline deadline);
  // Appends whatever body bytes arrive before `deadline` (at least one).
  // Returns false when the stream ended cleanly. Throws TransportError.
  bool ReadSome(std::string* out, Deadline deadline);

  void Close();

  // Public only so the transport's helper functions can name it.
  struct Impl;

 private:
  Endpoint endpoint_;
  std::unique_ptr<Impl> impl_;
};

// What a retry may assume about a request.
enum class CallKind {
  kRead,   // idempotent: any failure moves on to the next endpoint
  kWrite,  // carries X-Confman-Request: an unknown outcome is retried
  kOnce,   // neither: an unknown outcome ends the command (exit 6)
};

class Client {
 public:
  explicit Client(const GlobalOptions& opts);

  const std::vector<Endpoint>& endpoints() const { return endpoints_; }
  const TlsSettings& tls() const { return tls_; }
  double timeout_s() const { return timeout_s_; }
  const std::string& token() const { return token_; }

  // Returns the first answer that is neither 503 nor 429 (nor, for reads
  // and writes, 504), trying every endpoint, within the --timeout. Throws
  // CtlError 5 when no endpoint could take it and 6 when a write's outcome
  // stayed unknown.
  HttpResponse Call(HttpRequest request, CallKind kind);

  // The X-Confman-Request value for the next write.
  std::string NextRequestId();

  // Adds the token header; used by callers that open their own connections.
  void Authorize(HttpRequest& request) const;

  Connection& connection(size_t index) { return *connections_[index]; }

 private:
  std::vector<Endpoint> endpoints_;
  TlsSettings tls_;
  double timeout_s_;
  std::string token_;
  std::vector<std::unique_ptr<Connection>> connections_;
  size_t preferred_ = 0;  // the endpoint that answered last
  uint64_t client_id_;
  uint64_t sequence_ = 0;
};

// The error a non-2xx answer stands for: the exit code its status maps to
// and the server's code and message.
CtlError ErrorFromResponse(const HttpResponse& response);
// Throws ErrorFromResponse unless the status is 2xx.
void CheckOk(const HttpResponse& response);

int ExitCodeForStatus(int status);

uint64_t RandomClientId();
std::string ReadTokenFile(const std::string& path);

}  // namespace confmanctl
