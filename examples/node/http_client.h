// A blocking HTTP/1.1 client for member-to-member calls (a follower
// forwarding a membership change to the leader, the cluster status page
// asking each member). Runs on worker threads only, with a deadline.
#pragma once

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace confman::server {

struct ClientResponse {
  int status = 0;
  std::string content_type;
  std::string body;
};

// `base_url` is "http://host:port" or "https://host:port". https does not
// verify the certificate: members prove themselves with the client token.
absl::StatusOr<ClientResponse> HttpCall(
    const std::string& base_url, const std::string& method,
    const std::string& target, const std::string& body,
    const std::vector<std::pair<std::string, std::string>>& headers,
    std::chrono::milliseconds timeout);

}  // namespace confman::server
