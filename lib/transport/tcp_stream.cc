// The plain/TLS connection wrapper and the socket chores shared by every
// connection of the TCP transport (see tcp_stream.h).
#include "tcp_stream.h"

#include "absl/strings/str_cat.h"

namespace confman::tcp_internal {

absl::Status NetworkError(absl::string_view what, const asio::error_code& ec) {
  if (ec == asio::error::eof) {
    return absl::UnavailableError(
        absl::StrCat(what, ": peer closed the connection"));
  }
  return absl::UnavailableError(absl::StrCat(what, ": ", ec.message()));
}

std::string Describe(const tcp::socket& socket) {
  asio::error_code ec;
  const tcp::endpoint remote = socket.remote_endpoint(ec);
  if (ec) return "an unknown address";
  return absl::StrCat(remote.address().to_string(), ":", remote.port());
}

absl::StatusOr<tcp::socket> MoveSocket(tcp::socket& socket,
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

absl::StatusOr<std::unique_ptr<asio::ssl::context>> MakeTlsContext(
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

awaitable<asio::error_code> TcpStream::Handshake(
    asio::ssl::stream_base::handshake_type role) {
  asio::error_code ec;
  if (tls_) co_await tls_->async_handshake(role, RedirectTo(ec));
  co_return ec;
}

awaitable<size_t> TcpStream::ReadSome(asio::mutable_buffer buffer,
                                      asio::error_code& ec) {
  if (tls_) co_return co_await tls_->async_read_some(buffer, RedirectTo(ec));
  co_return co_await plain_->async_read_some(buffer, RedirectTo(ec));
}

awaitable<void> TcpStream::Read(asio::mutable_buffer buffer,
                                asio::error_code& ec) {
  if (tls_) {
    co_await asio::async_read(*tls_, buffer, RedirectTo(ec));
  } else {
    co_await asio::async_read(*plain_, buffer, RedirectTo(ec));
  }
}

}  // namespace confman::tcp_internal
