// The bytes of one log entry, shared instead of copied.
//
// A leader hands the same entry to its own log writer and to the message
// for every follower, and keeps it until the write is durable. With a plain
// string each of those was a copy of the whole value, which for a 1 MiB
// value meant megabytes of copying and fresh pages on the Raft loop per
// write. A Payload is immutable once made, so its copies share one buffer;
// copying one is a reference count increment and it is safe to read from
// any thread. The buffer is freed with its last copy.
//
// A Payload may also share part of a larger buffer that someone else made,
// such as a received frame: the entries of one append then point into the
// bytes read from the socket instead of each being copied out of them.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace confman::raft {

class Payload {
 public:
  Payload() = default;
  // Takes the bytes over: moving a string in does not copy it. Implicit,
  // like the conversion to std::string_view below, so that code written
  // when an entry's data was a std::string still reads and builds entries.
  Payload(std::string bytes) {
    if (bytes.empty()) return;
    auto owned = std::make_shared<std::string>(std::move(bytes));
    view_ = *owned;
    string_ = owned.get();
    owner_ = std::move(owned);
  }
  Payload(const char* bytes) : Payload(std::string(bytes)) {}
  // Shares `bytes`, which lie inside a buffer that `owner` keeps alive and
  // that nobody modifies while it is shared. The whole buffer lives as long
  // as any Payload made this way from it.
  Payload(std::shared_ptr<const void> owner, std::string_view bytes)
      : owner_(bytes.empty() ? nullptr : std::move(owner)),
        view_(owner_ ? bytes : std::string_view()) {}
  // Copies `bytes`.
  explicit Payload(std::string_view bytes) : Payload(std::string(bytes)) {}

  std::string_view view() const { return view_; }
  operator std::string_view() const { return view(); }
  const char* data() const { return view().data(); }
  size_t size() const { return view_.size(); }
  bool empty() const { return size() == 0; }

  // Forgets the bytes; other copies keep them.
  void clear() { *this = Payload(); }

  // The bytes as a string of their own: moved out when this is the only
  // copy, copied otherwise. Leaves this Payload empty.
  std::string Release() && {
    std::string out = string_ != nullptr && owner_.use_count() == 1
                          ? std::move(*string_)
                          : std::string(view_);
    clear();
    return out;
  }

  friend bool operator==(const Payload& a, const Payload& b) {
    return a.view() == b.view();
  }
  friend bool operator==(const Payload& a, std::string_view b) {
    return a.view() == b;
  }
  friend bool operator==(const Payload& a, const std::string& b) {
    return a.view() == b;
  }
  friend bool operator==(const Payload& a, const char* b) {
    return a.view() == std::string_view(b);
  }

 private:
  // Keeps the bytes alive; null exactly when the Payload is empty.
  std::shared_ptr<const void> owner_;
  std::string_view view_;
  // The string `owner_` holds when this Payload made it; never modified
  // while shared: only Release() touches it, and only when no other copy
  // exists.
  std::string* string_ = nullptr;
};

}  // namespace confman::raft
