// Beast-based transport: synchronous calls made of asynchronous operations
// run on a private io_context, because only the asynchronous operations of
// beast::tcp_stream honour its timeouts; plus endpoint failover and the
// exactly-once retry rule of HTTP_API.md.
#include "http_client.h"

#include <openssl/ssl.h>

#include <algorithm>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cctype>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

namespace confmanctl {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
using boost::system::error_code;

namespace {

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Runs one asynchronous operation to completion on `ioc`.
template <class Start>
error_code Await(net::io_context& ioc, Start&& start) {
  error_code result = net::error::operation_aborted;
  bool done = false;
  start([&](error_code ec, auto&&...) {
    result = ec;
    done = true;
  });
  ioc.restart();
  while (!done) {
    if (ioc.run_one() == 0) break;
  }
  return result;
}

std::string Describe(const Endpoint& ep, const char* what, const error_code& ec) {
  return ep.url + ": " + what + ": " + ec.message();
}

}  // namespace

Endpoint ParseEndpoint(const std::string& url) {
  Endpoint ep;
  ep.url = url;
  std::string rest;
  if (url.rfind("http://", 0) == 0) {
    rest = url.substr(7);
  } else if (url.rfind("https://", 0) == 0) {
    rest = url.substr(8);
    ep.tls = true;
  } else {
    throw UsageError("endpoint '" + url +
                     "' must start with http:// or https:// (e.g. http://127.0.0.1:7480)");
  }
  if (auto slash = rest.find('/'); slash != std::string::npos) {
    if (rest.substr(slash) != "/") {
      throw UsageError("endpoint '" + url + "' must not have a path; give scheme://host:port");
    }
    rest.resize(slash);
  }
  std::string host = rest;
  std::string port = ep.tls ? "443" : "80";
  if (!rest.empty() && rest[0] == '[') {  // [v6]:port
    auto close = rest.find(']');
    if (close == std::string::npos) throw UsageError("endpoint '" + url + "': unclosed '['");
    host = rest.substr(1, close - 1);
    if (close + 1 < rest.size()) {
      if (rest[close + 1] != ':') throw UsageError("endpoint '" + url + "': bad port");
      port = rest.substr(close + 2);
    }
  } else if (auto colon = rest.rfind(':'); colon != std::string::npos) {
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
  }
  if (host.empty() || port.empty() ||
      !std::all_of(port.begin(), port.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) {
    throw UsageError("endpoint '" + url + "' needs a host and a numeric port");
  }
  ep.host = host;
  ep.port = port;
  return ep;
}

std::vector<Endpoint> ParseEndpoints(const std::string& comma_separated) {
  std::vector<Endpoint> out;
  std::stringstream in(comma_separated);
  std::string item;
  while (std::getline(in, item, ',')) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty()) out.push_back(ParseEndpoint(item));
  }
  if (out.empty()) throw UsageError("--endpoints is empty; give at least one URL");
  return out;
}

std::string HttpResponse::Header(const std::string& lower_name) const {
  auto it = headers.find(lower_name);
  return it == headers.end() ? std::string() : it->second;
}

struct Connection::Impl {
  net::io_context ioc;
  std::unique_ptr<ssl::context> ssl_ctx;
  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> secure;
  beast::flat_buffer buffer;
  std::optional<http::response_parser<http::string_body>> stream_parser;
  bool open = false;

  beast::tcp_stream& tcp() { return secure ? beast::get_lowest_layer(*secure) : *plain; }

  template <class F>
  error_code WithStream(F&& f) {
    if (secure) return Await(ioc, [&](auto handler) { f(*secure, std::move(handler)); });
    return Await(ioc, [&](auto handler) { f(*plain, std::move(handler)); });
  }

  void Reset() {
    stream_parser.reset();
    if (plain) {
      error_code ignored;
      plain->socket().close(ignored);
    }
    if (secure) {
      error_code ignored;
      beast::get_lowest_layer(*secure).socket().close(ignored);
    }
    plain.reset();
    secure.reset();
    buffer.clear();
    open = false;
  }
};

Connection::Connection(Endpoint endpoint, const TlsSettings& tls)
    : endpoint_(std::move(endpoint)), impl_(std::make_unique<Impl>()) {
  if (!endpoint_.tls) return;
  impl_->ssl_ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
  if (tls.insecure) {
    impl_->ssl_ctx->set_verify_mode(ssl::verify_none);
    return;
  }
  impl_->ssl_ctx->set_verify_mode(ssl::verify_peer);
  error_code ec;
  if (!tls.cacert.empty()) {
    impl_->ssl_ctx->load_verify_file(tls.cacert, ec);
    if (ec) {
      throw UsageError("cannot load --cacert '" + tls.cacert + "': " + ec.message() +
                       "; give a PEM file of the CA that signed the server's certificate");
    }
  } else {
    impl_->ssl_ctx->set_default_verify_paths(ec);
  }
}

Connection::~Connection() { Close(); }

void Connection::Close() { impl_->Reset(); }

namespace {

void Connect(Connection::Impl& impl, const Endpoint& ep, Deadline deadline) {
  impl.Reset();
  net::ip::tcp::resolver resolver(impl.ioc);
  error_code ec;
  auto results = resolver.resolve(ep.host, ep.port, ec);
  if (ec) throw TransportError(TransportFailure::kConnect, Describe(ep, "cannot resolve", ec));
  if (ep.tls) {
    impl.secure.emplace(impl.ioc, *impl.ssl_ctx);
    if (!SSL_set_tlsext_host_name(impl.secure->native_handle(), ep.host.c_str())) {
      throw TransportError(TransportFailure::kConnect, ep.url + ": cannot set TLS server name");
    }
    impl.secure->set_verify_callback(ssl::host_name_verification(ep.host));
  } else {
    impl.plain.emplace(impl.ioc);
  }
  impl.tcp().expires_at(deadline);
  ec = Await(impl.ioc, [&](auto handler) { impl.tcp().async_connect(results, std::move(handler)); });
  if (ec) {
    impl.Reset();
    throw TransportError(TransportFailure::kConnect, Describe(ep, "cannot connect", ec));
  }
  if (impl.secure) {
    impl.tcp().expires_at(deadline);
    ec = Await(impl.ioc, [&](auto handler) {
      impl.secure->async_handshake(ssl::stream_base::client, std::move(handler));
    });
    if (ec) {
      impl.Reset();
      throw TransportError(TransportFailure::kConnect, Describe(ep, "TLS handshake failed", ec));
    }
  }
  impl.open = true;
}

http::request<http::string_body> BuildRequest(const Endpoint& ep, const HttpRequest& r) {
  http::request<http::string_body> req;
  req.method_string(r.method);
  req.target(r.target);
  req.version(11);
  req.set(http::field::host, ep.host + ":" + ep.port);
  req.set(http::field::user_agent, "confmanctl");
  req.keep_alive(true);
  for (const auto& [name, value] : r.headers) req.set(name, value);
  req.body() = r.body;
  if (!r.body.empty() || r.method == "PUT" || r.method == "POST") req.prepare_payload();
  return req;
}

HttpResponse ToResponse(const Endpoint& ep, http::response<http::string_body>& res) {
  HttpResponse out;
  out.status = static_cast<int>(res.result_int());
  out.body = std::move(res.body());
  for (const auto& field : res) out.headers[Lower(std::string(field.name_string()))] = std::string(field.value());
  out.endpoint = ep.url;
  return out;
}

// Sends `req`; a failure here means the server never saw a whole request.
void Send(Connection::Impl& impl, const Endpoint& ep, const HttpRequest& request, Deadline deadline) {
  if (!impl.open) Connect(impl, ep, deadline);
  auto req = BuildRequest(ep, request);
  impl.tcp().expires_at(deadline);
  error_code ec = impl.WithStream(
      [&](auto& stream, auto handler) { http::async_write(stream, req, std::move(handler)); });
  if (ec) {
    impl.Reset();
    throw TransportError(TransportFailure::kConnect, Describe(ep, "cannot send the request", ec));
  }
}

[[noreturn]] void ThrowReadFailure(Connection::Impl& impl, const Endpoint& ep, const error_code& ec) {
  impl.Reset();
  if (ec == beast::error::timeout) {
    throw TransportError(TransportFailure::kTimeout, ep.url + ": no answer within the timeout");
  }
  throw TransportError(TransportFailure::kLost, Describe(ep, "connection lost while waiting for the answer", ec));
}

}  // namespace

HttpResponse Connection::RoundTrip(const HttpRequest& request, Deadline deadline) {
  Impl& impl = *impl_;
  bool reused = impl.open;
  try {
    Send(impl, endpoint_, request, deadline);
  } catch (const TransportError&) {
    // A kept-alive connection the server closed while idle fails on first
    // use; a fresh one tells whether the endpoint is really gone.
    if (!reused) throw;
    Send(impl, endpoint_, request, deadline);
  }
  http::response_parser<http::string_body> parser;
  parser.body_limit(boost::none);
  impl.tcp().expires_at(deadline);
  error_code ec = impl.WithStream(
      [&](auto& stream, auto handler) { http::async_read(stream, impl.buffer, parser, std::move(handler)); });
  if (ec) ThrowReadFailure(impl, endpoint_, ec);
  auto& res = parser.get();
  bool keep = res.keep_alive();
  HttpResponse out = ToResponse(endpoint_, res);
  if (!keep) impl.Reset();
  return out;
}

HttpResponse Connection::StartStream(const HttpRequest& request, Deadline deadline) {
  Impl& impl = *impl_;
  // A stream gets its own fresh connection so that a stale kept-alive one
  // cannot be mistaken for a lost stream.
  impl.Reset();
  Send(impl, endpoint_, request, deadline);
  impl.stream_parser.emplace();
  impl.stream_parser->body_limit(boost::none);
  impl.tcp().expires_at(deadline);
  error_code ec = impl.WithStream([&](auto& stream, auto handler) {
    http::async_read_header(stream, impl.buffer, *impl.stream_parser, std::move(handler));
  });
  if (ec) ThrowReadFailure(impl, endpoint_, ec);
  if (impl.stream_parser->get().result_int() != 200) {
    impl.tcp().expires_at(deadline);
    ec = impl.WithStream([&](auto& stream, auto handler) {
      http::async_read(stream, impl.buffer, *impl.stream_parser, std::move(handler));
    });
    if (ec) ThrowReadFailure(impl, endpoint_, ec);
    HttpResponse out = ToResponse(endpoint_, impl.stream_parser->get());
    impl.Reset();
    return out;
  }
  HttpResponse out = ToResponse(endpoint_, impl.stream_parser->get());
  return out;
}

bool Connection::ReadSome(std::string* out, Deadline deadline) {
  Impl& impl = *impl_;
  if (!impl.stream_parser) return false;
  for (;;) {
    auto& body = impl.stream_parser->get().body();
    if (!body.empty()) {
      out->append(body);
      body.clear();
      return true;
    }
    if (impl.stream_parser->is_done()) {
      impl.Reset();
      return false;
    }
    impl.tcp().expires_at(deadline);
    error_code ec = impl.WithStream([&](auto& stream, auto handler) {
      http::async_read_some(stream, impl.buffer, *impl.stream_parser, std::move(handler));
    });
    if (ec) ThrowReadFailure(impl, endpoint_, ec);
  }
}

uint64_t RandomClientId() {
  std::random_device rd;
  std::mt19937_64 gen((static_cast<uint64_t>(rd()) << 32) ^ rd() ^
                      static_cast<uint64_t>(Clock::now().time_since_epoch().count()));
  uint64_t id = 0;
  while (id == 0) id = gen();
  return id;
}

std::string ReadTokenFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UsageError("cannot read --token-file '" + path + "'; check the path and its permissions");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string token = ss.str();
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
  if (token.empty()) throw UsageError("--token-file '" + path + "' is empty");
  return token;
}

Client::Client(const GlobalOptions& opts)
    : endpoints_(ParseEndpoints(opts.endpoints)),
      tls_{opts.cacert, opts.insecure},
      timeout_s_(opts.timeout_s),
      client_id_(RandomClientId()) {
  if (!(timeout_s_ > 0)) throw UsageError("--timeout must be a positive number of seconds");
  if (!opts.token_file.empty()) token_ = ReadTokenFile(opts.token_file);
  for (const auto& ep : endpoints_) connections_.push_back(std::make_unique<Connection>(ep, tls_));
}

std::string Client::NextRequestId() {
  return std::to_string(client_id_) + ":" + std::to_string(++sequence_);
}

void Client::Authorize(HttpRequest& request) const {
  if (!token_.empty()) request.headers.emplace_back("Authorization", "Bearer " + token_);
}

HttpResponse Client::Call(HttpRequest request, CallKind kind) {
  Authorize(request);
  if (kind == CallKind::kWrite) request.headers.emplace_back("X-Confman-Request", NextRequestId());
  const auto timeout = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s_));
  const Deadline deadline = Clock::now() + timeout;
  const size_t n = endpoints_.size();
  bool unknown = false;
  std::vector<std::string> problems(n);  // the latest per endpoint
  auto backoff = std::chrono::milliseconds(50);
  for (;;) {
    bool some_answered = false;  // a member that is up but could not serve
    for (size_t i = 0; i < n; ++i) {
      if (Clock::now() >= deadline) break;
      size_t index = (preferred_ + i) % n;
      // A member that accepts the connection but never answers (stopped,
      // partitioned from the leader) must not use up the whole --timeout:
      // an attempt gets half of what is left, so the same request can
      // still go to another member.
      auto left = deadline - Clock::now();
      Deadline attempt_deadline =
          left > std::chrono::seconds(1) ? Clock::now() + left / 2 : deadline;
      try {
        HttpResponse res = connections_[index]->RoundTrip(request, attempt_deadline);
        if (res.status == 503 || res.status == 429) {
          some_answered = true;
          problems[index] = endpoints_[index].url + ": " + std::to_string(res.status) + " " +
                            ErrorFromResponse(res).what();
          continue;
        }
        if (res.status == 504 && kind != CallKind::kOnce) {
          some_answered = true;
          if (kind == CallKind::kWrite) unknown = true;
          problems[index] = endpoints_[index].url + ": 504 " + ErrorFromResponse(res).what();
          continue;
        }
        preferred_ = index;
        return res;
      } catch (const TransportError& e) {
        problems[index] = e.what();
        if (e.failure() == TransportFailure::kConnect) continue;
        if (kind == CallKind::kOnce) {
          throw CtlError(kExitOutcomeUnknown, "outcome_unknown",
                         std::string(e.what()) +
                             "; the change may or may not have been made: check with 'member list' or 'status'");
        }
        some_answered = true;
        if (kind == CallKind::kWrite) unknown = true;
      }
    }
    // Everything refused the connection and no write is in doubt: the
    // cluster is not there, waiting for the deadline would not help.
    if ((!some_answered && !unknown) || Clock::now() >= deadline) break;
    auto left = deadline - Clock::now();
    std::this_thread::sleep_for(std::min<Clock::duration>(backoff, left));
    backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
  }
  std::string detail;
  for (const auto& p : problems) {
    if (!p.empty()) detail += "\n  " + p;
  }
  if (unknown) {
    throw CtlError(kExitOutcomeUnknown, "outcome_unknown",
                   "the write's outcome is still unknown after retrying within --timeout " +
                       FormatSeconds(timeout_s_) + "; read the key to see whether it applied" + detail);
  }
  throw CtlError(kExitUnavailable, "unavailable",
                 "no endpoint could serve the request (tried " + std::to_string(n) +
                     "); check --endpoints and that the cluster has a leader" + detail);
}

int ExitCodeForStatus(int status) {
  switch (status) {
    case 412:
      return kExitRevisionMismatch;
    case 404:
      return kExitNotFound;
    case 503:
    case 429:
      return kExitUnavailable;
    case 504:
    case 409:
      return kExitOutcomeUnknown;
    default:
      return status >= 200 && status < 300 ? kExitOk : kExitError;
  }
}

CtlError ErrorFromResponse(const HttpResponse& response) {
  std::string code = "http_" + std::to_string(response.status);
  std::string message;
  try {
    auto j = nlohmann::json::parse(response.body);
    const auto& err = j.at("error");
    code = err.value("code", code);
    message = err.value("message", "");
    if (err.contains("current_revision") && response.status == 412) {
      message += " (current revision " + err["current_revision"].dump() + ")";
    }
    if (err.contains("compacted_revision")) {
      message += " (compacted through revision " + err["compacted_revision"].dump() + ")";
    }
  } catch (const nlohmann::json::exception&) {
    message = response.body.substr(0, 200);
  }
  if (message.empty()) message = "HTTP " + std::to_string(response.status);
  return CtlError(ExitCodeForStatus(response.status), code, message);
}

void CheckOk(const HttpResponse& response) {
  if (response.status < 200 || response.status >= 300) throw ErrorFromResponse(response);
}

}  // namespace confmanctl
