// Reading and writing length-prefixed frames on a TcpStream (see
// frame_io.h).
#include "frame_io.h"

#include <algorithm>
#include <cstring>

namespace confman::tcp_internal {

namespace {

void AddBuffers(const wire::EncodedFrame& frame,
                std::vector<asio::const_buffer>& out) {
  out.push_back(asio::buffer(frame.header(), wire::kFrameHeaderBytes));
  out.push_back(asio::buffer(frame.body(), frame.body_size()));
  for (const raft::Payload& a : frame.attachments()) {
    out.push_back(asio::buffer(a.data(), a.size()));
  }
}

}  // namespace

awaitable<absl::Status> WriteFrame(TcpStream& stream,
                                   const wire::EncodedFrame& frame) {
  std::vector<asio::const_buffer> buffers;
  AddBuffers(frame, buffers);
  asio::error_code ec;
  co_await stream.Write(buffers, ec);
  if (ec) co_return NetworkError("writing a frame", ec);
  co_return absl::OkStatus();
}

awaitable<absl::Status> WriteFrames(
    TcpStream& stream, const std::vector<wire::EncodedFrame>& frames,
    std::vector<asio::const_buffer>& scratch) {
  scratch.clear();
  for (const wire::EncodedFrame& frame : frames) AddBuffers(frame, scratch);
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
  // A large frame gets a buffer of its own that the decoded entries share,
  // so their values are not copied out of it.
  std::shared_ptr<uint64_t[]> owned;
  uint8_t* body = nullptr;
  if (*length >= kSharedBodyMinBytes) {
    owned.reset(
        new uint64_t[(*length + sizeof(uint64_t) - 1) / sizeof(uint64_t)]);
    body = reinterpret_cast<uint8_t*>(owned.get());
  } else {
    body = body_.Resize(*length);
  }
  const size_t from_staging = std::min<size_t>(*length, staged());
  std::memcpy(body, staging_.data() + begin_, from_staging);
  begin_ += from_staging;
  if (from_staging < *length) {
    asio::error_code ec;
    co_await stream_->Read(
        asio::buffer(body + from_staging, *length - from_staging), ec);
    if (ec) co_return NetworkError("reading a frame body", ec);
  }
  co_return wire::DecodeFrameBody(body, *length, std::move(owned));
}

}  // namespace confman::tcp_internal
