// ConnectionChannelArguments: which gRPC channel arguments each flag sets and
// which values are refused. What the arguments do on a real connection is
// tested in tests/server/server_connection_test.cc.
#include "server/connection_options.h"

#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "grpc/grpc.h"
#include "gtest/gtest.h"

namespace mtla {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

TEST(ConnectionOptionsTest, AllZeroKeepsGrpcDefaults) {
  auto args = ConnectionChannelArguments({});
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_THAT(*args, IsEmpty());
}

TEST(ConnectionOptionsTest, ConnectionAgeAndGrace) {
  ConnectionOptions options;
  options.max_connection_age_seconds = 300;
  options.max_connection_age_grace_seconds = 0.25;
  auto args = ConnectionChannelArguments(options);
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_THAT(*args, ElementsAre(Pair(GRPC_ARG_MAX_CONNECTION_AGE_MS, 300000),
                                 Pair(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS, 250)));
}

TEST(ConnectionOptionsTest, ServerKeepalivePingsIdleConnections) {
  ConnectionOptions options;
  options.keepalive_time_seconds = 60;
  options.keepalive_timeout_seconds = 20;
  auto args = ConnectionChannelArguments(options);
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_THAT(*args, UnorderedElementsAre(Pair(GRPC_ARG_KEEPALIVE_TIME_MS, 60000),
                                          Pair(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20000),
                                          Pair(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1),
                                          Pair(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0)));
}

TEST(ConnectionOptionsTest, ClientPingInterval) {
  ConnectionOptions options;
  options.keepalive_min_client_ping_interval_seconds = 10;
  auto args = ConnectionChannelArguments(options);
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_THAT(*args,
              UnorderedElementsAre(Pair(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1),
                                   Pair(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000)));
}

TEST(ConnectionOptionsTest, RoundingAndCap) {
  ConnectionOptions options;
  options.max_connection_age_seconds = 1e-9;  // positive: at least 1 ms, never "unset"
  options.max_connection_age_grace_seconds = 1e12;  // beyond int milliseconds: capped
  auto args = ConnectionChannelArguments(options);
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_THAT(*args, ElementsAre(Pair(GRPC_ARG_MAX_CONNECTION_AGE_MS, 1),
                                 Pair(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                                      std::numeric_limits<int>::max())));
}

TEST(ConnectionOptionsTest, NegativeOrNonFiniteValuesNameTheFlag) {
  const std::vector<std::pair<double ConnectionOptions::*, std::string>> fields = {
      {&ConnectionOptions::keepalive_time_seconds, "--keepalive_time_seconds"},
      {&ConnectionOptions::keepalive_timeout_seconds, "--keepalive_timeout_seconds"},
      {&ConnectionOptions::max_connection_age_seconds, "--max_connection_age_seconds"},
      {&ConnectionOptions::max_connection_age_grace_seconds, "--max_connection_age_grace_seconds"},
      {&ConnectionOptions::keepalive_min_client_ping_interval_seconds,
       "--keepalive_min_client_ping_interval_seconds"},
  };
  for (const auto& [field, flag] : fields) {
    for (double bad : {-1.0, std::nan(""), std::numeric_limits<double>::infinity()}) {
      SCOPED_TRACE(flag + " = " + std::to_string(bad));
      ConnectionOptions options;
      options.*field = bad;
      auto status = ConnectionChannelArguments(options).status();
      EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
      EXPECT_THAT(status.message(), HasSubstr(flag + " must be a number of seconds >= 0"));
    }
  }
}

}  // namespace
}  // namespace mtla
