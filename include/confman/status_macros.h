// Error-propagation helpers for absl::Status / absl::StatusOr.
//
// Debian's Abseil (20220623) ships no status macros, so confman defines its
// own. Both macros evaluate their expression exactly once.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define CONFMAN_STATUS_CONCAT_INNER_(a, b) a##b
#define CONFMAN_STATUS_CONCAT_(a, b) CONFMAN_STATUS_CONCAT_INNER_(a, b)

// Returns from the enclosing function with the status of `expr` when it is
// not OK. `expr` may be an absl::Status or an absl::StatusOr<T>.
#define CONFMAN_RETURN_IF_ERROR(expr)                                        \
  do {                                                                       \
    if (auto confman_status_ = ::confman::internal::ToStatus(expr);          \
        !confman_status_.ok()) {                                             \
      return confman_status_;                                                \
    }                                                                        \
  } while (false)

// Evaluates `rexpr` (an absl::StatusOr<T>); on error returns its status from
// the enclosing function, otherwise moves the value into `lhs`, which may be
// a declaration (`auto x`) or an existing lvalue.
#define CONFMAN_ASSIGN_OR_RETURN(lhs, rexpr)                                 \
  CONFMAN_ASSIGN_OR_RETURN_IMPL_(                                            \
      CONFMAN_STATUS_CONCAT_(confman_statusor_, __LINE__), lhs, rexpr)

#define CONFMAN_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr)                 \
  auto statusor = (rexpr);                                                   \
  if (!statusor.ok()) return std::move(statusor).status();                   \
  lhs = std::move(statusor).value()

namespace confman::internal {
inline const absl::Status& ToStatus(const absl::Status& status) {
  return status;
}
template <typename T>
const absl::Status& ToStatus(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}
}  // namespace confman::internal
