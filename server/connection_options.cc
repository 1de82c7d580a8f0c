#include "server/connection_options.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"
#include "grpc/grpc.h"

namespace mtla {
namespace {

// `seconds` as gRPC's int milliseconds; 0 stays 0 (unset).
absl::StatusOr<int> Milliseconds(const char* flag, double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " must be a number of seconds >= 0 (0: gRPC's default), got ", seconds));
  }
  if (seconds == 0) return 0;
  constexpr double kMax = std::numeric_limits<int>::max();
  return static_cast<int>(std::clamp(std::round(seconds * 1e3), 1.0, kMax));
}

}  // namespace

absl::StatusOr<std::vector<std::pair<std::string, int>>> ConnectionChannelArguments(
    const ConnectionOptions& options) {
  ASSIGN_OR_RETURN(const int keepalive_time,
                   Milliseconds("--keepalive_time_seconds", options.keepalive_time_seconds));
  ASSIGN_OR_RETURN(const int keepalive_timeout,
                   Milliseconds("--keepalive_timeout_seconds", options.keepalive_timeout_seconds));
  ASSIGN_OR_RETURN(const int age,
                   Milliseconds("--max_connection_age_seconds", options.max_connection_age_seconds));
  ASSIGN_OR_RETURN(const int grace, Milliseconds("--max_connection_age_grace_seconds",
                                                 options.max_connection_age_grace_seconds));
  ASSIGN_OR_RETURN(const int client_ping,
                   Milliseconds("--keepalive_min_client_ping_interval_seconds",
                                options.keepalive_min_client_ping_interval_seconds));
  std::vector<std::pair<std::string, int>> args;
  if (keepalive_time > 0) {
    args.emplace_back(GRPC_ARG_KEEPALIVE_TIME_MS, keepalive_time);
    // Idle connections too, and without gRPC's cap of two pings between data frames.
    args.emplace_back(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  }
  if (keepalive_timeout > 0) args.emplace_back(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, keepalive_timeout);
  if (keepalive_time > 0 || client_ping > 0) {
    // Server side, this both lets the server ping idle connections and lets
    // clients ping at the interval below while no call is in flight.
    args.emplace_back(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  }
  if (client_ping > 0) {
    args.emplace_back(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, client_ping);
  }
  if (age > 0) args.emplace_back(GRPC_ARG_MAX_CONNECTION_AGE_MS, age);
  if (grace > 0) args.emplace_back(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS, grace);
  return args;
}

absl::Status ApplyConnectionOptions(const ConnectionOptions& options, grpc::ServerBuilder* builder) {
  ASSIGN_OR_RETURN(auto args, ConnectionChannelArguments(options));
  for (const auto& [name, value] : args) builder->AddChannelArgument(name, value);
  return absl::OkStatus();
}

}  // namespace mtla
