// One member-to-member connection as a byte stream: plain TCP, or TLS over
// TCP, behind one interface, so that framing, the handshake and the links
// never ask which. Also the socket chores every connection shares: turning
// Asio errors into Status, naming the remote end for log lines, moving an
// idle socket to the other I/O thread, and loading the TLS context.
//
// Private to the TCP transport (see tcp_transport.cc for the whole layout).
#pragma once

#include <asio.hpp>
#include <asio/ssl.hpp>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "confman/transport/tcp.h"

namespace confman::tcp_internal {

using asio::awaitable;
using asio::ip::tcp;

// Completion token for `co_await`: the error lands in `ec` instead of being
// thrown, so every failure becomes a Status with a reason.
inline auto RedirectTo(asio::error_code& ec) {
  return asio::redirect_error(asio::use_awaitable, ec);
}

// Unavailable, saying `what` failed and why ("peer closed the connection"
// for end of stream).
[[nodiscard]] absl::Status NetworkError(absl::string_view what,
                                        const asio::error_code& ec);

// "address:port" of the remote end, for log lines.
std::string Describe(const tcp::socket& socket);

// Re-homes an idle socket on another I/O context (thread). The socket must
// have no operation pending.
[[nodiscard]] absl::StatusOr<tcp::socket> MoveSocket(tcp::socket& socket,
                                                     asio::io_context& io);

// The context every TLS connection of one transport shares: TLS 1.2 or
// later, this member's certificate and key, and peer certificates required
// to chain to the cluster CA. InvalidArgument names a file that cannot be
// loaded.
[[nodiscard]] absl::StatusOr<std::unique_ptr<asio::ssl::context>>
MakeTlsContext(const TcpTransportOptions::TlsFiles& files);

// Completion condition for writes: each system call may move up to 256 KiB.
// Asio's own transfer_all caps every call at 64 KiB, which turns one 1 MiB
// frame into 16 sends. Larger caps were tried: uncapped writes sped up
// workload e (one writer of 1 MiB) a little more but sometimes stalled
// 100 KB writes for 20-100 ms, and uncapped reads did so every time.
struct WriteInPieces {
  size_t operator()(const asio::error_code& ec, size_t) const {
    return ec ? 0 : kMaxBytesPerCall;
  }
  static constexpr size_t kMaxBytesPerCall = size_t{256} << 10;
};

// One connection: plain TCP, or TLS over TCP. Heap-allocated by its owner
// so the socket never moves while an operation or timer refers to it.
class TcpStream {
 public:
  explicit TcpStream(tcp::socket socket) : plain_(std::move(socket)) {}
  TcpStream(tcp::socket socket, asio::ssl::context& tls)
      : tls_(std::in_place, std::move(socket), tls) {}

  // The TCP socket underneath: for options, addresses and closing.
  tcp::socket& socket() { return tls_ ? tls_->next_layer() : *plain_; }
  bool is_tls() const { return tls_.has_value(); }

  // The TLS handshake (a no-op on a plain connection).
  awaitable<asio::error_code> Handshake(
      asio::ssl::stream_base::handshake_type role);

  awaitable<size_t> ReadSome(asio::mutable_buffer buffer, asio::error_code& ec);

  awaitable<void> Read(asio::mutable_buffer buffer, asio::error_code& ec);

  template <typename Buffers>
  awaitable<void> Write(const Buffers& buffers, asio::error_code& ec) {
    if (tls_) {
      co_await asio::async_write(*tls_, buffers, WriteInPieces(),
                                 RedirectTo(ec));
    } else {
      co_await asio::async_write(*plain_, buffers, WriteInPieces(),
                                 RedirectTo(ec));
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

}  // namespace confman::tcp_internal
