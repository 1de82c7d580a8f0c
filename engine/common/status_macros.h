// Status propagation helpers used across the engine. Library code returns
// absl::Status / absl::StatusOr; these macros keep the early returns short.
#ifndef MTLA_ENGINE_COMMON_STATUS_MACROS_H_
#define MTLA_ENGINE_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define MTLA_CONCAT_INNER_(a, b) a##b
#define MTLA_CONCAT_(a, b) MTLA_CONCAT_INNER_(a, b)

// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define RETURN_IF_ERROR(expr)                      \
  do {                                             \
    ::absl::Status mtla_status_ = (expr);          \
    if (!mtla_status_.ok()) return mtla_status_;   \
  } while (0)

// `lhs = value of expr`, or returns its error status. expr is an absl::StatusOr.
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL_(MTLA_CONCAT_(mtla_statusor_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                           \
  if (!tmp.ok()) return tmp.status();          \
  lhs = std::move(tmp).value()

#endif  // MTLA_ENGINE_COMMON_STATUS_MACROS_H_
