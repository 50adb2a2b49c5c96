// Implementation of the blocking member-to-member HTTP client.
#include "http_client.h"

#include <charconv>
#include <utility>  // Boost 1.74 Asio uses std::exchange without including it.

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

namespace confman::server {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

template <class Stream>
absl::StatusOr<ClientResponse> Exchange(Stream& stream, net::io_context& ioc,
                                        http::request<http::string_body>& req,
                                        std::chrono::milliseconds timeout) {
  beast::error_code result;
  http::response<http::string_body> res;
  beast::flat_buffer buffer;
  beast::get_lowest_layer(stream).expires_after(timeout);
  http::async_write(stream, req, [&](beast::error_code ec, size_t) {
    if (ec) {
      result = ec;
      return;
    }
    http::async_read(stream, buffer, res, [&](beast::error_code rec, size_t) { result = rec; });
  });
  ioc.run();
  if (result) return absl::UnavailableError("HTTP exchange failed: " + result.message());
  ClientResponse out;
  out.status = res.result_int();
  out.content_type = std::string(res[http::field::content_type]);
  out.body = std::move(res.body());
  return out;
}

uint16_t PortNumber(const std::string& text) {
  uint16_t port = 0;
  std::from_chars(text.data(), text.data() + text.size(), port);
  return port;
}

}  // namespace

absl::StatusOr<ClientResponse> HttpCall(
    const std::string& base_url, const std::string& method,
    const std::string& target, const std::string& body,
    const std::vector<std::pair<std::string, std::string>>& headers,
    std::chrono::milliseconds timeout) {
  bool tls = false;
  std::string rest;
  if (base_url.rfind("http://", 0) == 0) {
    rest = base_url.substr(7);
  } else if (base_url.rfind("https://", 0) == 0) {
    tls = true;
    rest = base_url.substr(8);
  } else {
    return absl::InvalidArgumentError("'" + base_url + "' is not an http(s) URL");
  }
  const size_t colon = rest.rfind(':');
  if (colon == std::string::npos) return absl::InvalidArgumentError("'" + base_url + "' has no port");
  std::string host = rest.substr(0, colon);
  const std::string port = rest.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);

  http::request<http::string_body> req;
  req.method(http::string_to_verb(method));
  req.target(target);
  req.version(11);
  req.set(http::field::host, rest);
  req.set(http::field::connection, "close");
  for (const auto& [name, value] : headers) req.set(name, value);
  req.body() = body;
  req.prepare_payload();

  net::io_context ioc;
  beast::error_code ec;
  const auto address = net::ip::make_address(host, ec);
  if (ec) return absl::InvalidArgumentError("'" + host + "' is not an IP address");
  const net::ip::tcp::endpoint endpoint(address, PortNumber(port));
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto left = [&] {
    return std::max(std::chrono::milliseconds(1),
                    std::chrono::duration_cast<std::chrono::milliseconds>(
                        deadline - std::chrono::steady_clock::now()));
  };
  if (!tls) {
    beast::tcp_stream stream(ioc);
    stream.expires_after(left());
    beast::error_code cec;
    stream.async_connect(endpoint, [&](beast::error_code e) { cec = e; });
    ioc.run();
    if (cec) return absl::UnavailableError("cannot connect to " + base_url + ": " + cec.message());
    ioc.restart();
    return Exchange(stream, ioc, req, left());
  }
  net::ssl::context ctx(net::ssl::context::tls_client);
  ctx.set_verify_mode(net::ssl::verify_none);
  beast::ssl_stream<beast::tcp_stream> stream(ioc, ctx);
  beast::get_lowest_layer(stream).expires_after(left());
  beast::error_code cec;
  beast::get_lowest_layer(stream).async_connect(endpoint, [&](beast::error_code e) {
    if (e) {
      cec = e;
      return;
    }
    stream.async_handshake(net::ssl::stream_base::client, [&](beast::error_code he) { cec = he; });
  });
  ioc.run();
  if (cec) return absl::UnavailableError("cannot connect to " + base_url + ": " + cec.message());
  ioc.restart();
  return Exchange(stream, ioc, req, left());
}

}  // namespace confman::server
