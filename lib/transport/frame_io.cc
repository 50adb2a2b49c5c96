// Reading and writing length-prefixed frames on a TcpStream (see
// frame_io.h).
#include "frame_io.h"

#include <algorithm>
#include <array>
#include <cstring>

namespace confman::tcp_internal {

awaitable<absl::Status> WriteFrame(TcpStream& stream,
                                   const wire::EncodedFrame& frame) {
  const std::array<asio::const_buffer, 2> buffers{
      asio::buffer(frame.header(), wire::kFrameHeaderBytes),
      asio::buffer(frame.body(), frame.body_size())};
  asio::error_code ec;
  co_await stream.Write(buffers, ec);
  if (ec) co_return NetworkError("writing a frame", ec);
  co_return absl::OkStatus();
}

awaitable<absl::Status> WriteFrames(
    TcpStream& stream, const std::vector<wire::EncodedFrame>& frames,
    std::vector<asio::const_buffer>& scratch) {
  scratch.clear();
  for (const wire::EncodedFrame& frame : frames) {
    scratch.push_back(asio::buffer(frame.header(), wire::kFrameHeaderBytes));
    scratch.push_back(asio::buffer(frame.body(), frame.body_size()));
  }
  asio::error_code ec;
  co_await stream.Write(scratch, ec);
  if (ec) co_return NetworkError("writing", ec);
  co_return absl::OkStatus();
}

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

}  // namespace confman::tcp_internal
