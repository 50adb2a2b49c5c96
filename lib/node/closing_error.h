// ClosingError: the one answer a closing Node gives to work it will not do.
#pragma once

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace confman::node_internal {

// Unavailable, "the node is closing; <next_step>" (without the "; " part
// when `next_step` is empty): the request certainly did not take effect
// here, and another member can serve it.
inline absl::Status ClosingError(
    absl::string_view next_step = "retry on another member") {
  if (next_step.empty()) return absl::UnavailableError("the node is closing");
  return absl::UnavailableError(
      absl::StrCat("the node is closing; ", next_step));
}

}  // namespace confman::node_internal
