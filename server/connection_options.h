// HTTP/2 connection management of the gRPC port: keepalive pings and a
// maximum connection age.
//
// Why a connection age: a Kubernetes ClusterIP Service balances TCP
// connections, and a gRPC client keeps one connection for as long as it can,
// so pods added by a scale-out get no traffic from clients that are already
// connected. With a maximum age the server sends GOAWAY to each connection
// after about that long (gRPC adds +-10% jitter so that clients do not all
// reconnect at once); the client opens a new connection, which the Service may
// route to any pod, for its next call, while the calls already running on the
// old connection go on for up to the grace period and are then cut off
// (UNAVAILABLE).
//
// Every field is the server flag of the same name; 0 keeps gRPC's default.
// Seconds are converted to whole milliseconds (a positive value to at least
// 1 ms) and capped at 2^31-1 ms (24.8 days).
#ifndef MTLA_SERVER_CONNECTION_OPTIONS_H_
#define MTLA_SERVER_CONNECTION_OPTIONS_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "grpcpp/server_builder.h"

namespace mtla {

struct ConnectionOptions {
  // The server pings a connection after this long without activity, calls
  // in flight or not, and closes it when no answer comes within
  // keepalive_timeout_seconds: dead clients and silently dropped connections
  // (NAT, load balancers) are noticed. 0: gRPC's defaults (2 h, only while
  // calls are in flight; 20 s timeout).
  double keepalive_time_seconds = 0;
  double keepalive_timeout_seconds = 0;
  // GOAWAY after this long (see above). 0: connections live forever.
  double max_connection_age_seconds = 0;
  // How long calls in flight at GOAWAY may still run. 0: as long as they need.
  double max_connection_age_grace_seconds = 0;
  // Clients may send keepalive pings this often, also with no call in flight;
  // faster ones get GOAWAY ("too_many_pings"). 0: gRPC's policy (every 5 min
  // while calls are in flight, every 2 h without).
  double keepalive_min_client_ping_interval_seconds = 0;
};

// The gRPC channel arguments (name, value) that `options` stands for, in a
// fixed order; empty when every field is 0. InvalidArgument, naming the flag,
// for a negative or non-finite value.
absl::StatusOr<std::vector<std::pair<std::string, int>>> ConnectionChannelArguments(
    const ConnectionOptions& options);

// Adds ConnectionChannelArguments(options) to `builder` (before BuildAndStart).
absl::Status ApplyConnectionOptions(const ConnectionOptions& options, grpc::ServerBuilder* builder);

}  // namespace mtla

#endif  // MTLA_SERVER_CONNECTION_OPTIONS_H_
