#include <future>

#include "confman/log_store.h"

namespace confman {

absl::Status LogStore::WriteSync(LogWrite write) {
  std::promise<absl::Status> durable;
  std::future<absl::Status> result = durable.get_future();
  Write(std::move(write),
        [&durable](absl::Status status) { durable.set_value(std::move(status)); });
  return result.get();
}

}  // namespace confman
