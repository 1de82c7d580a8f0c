#include "tools/common/grpc_status_text.h"

#include "gtest/gtest.h"

namespace mtla {
namespace {

TEST(GrpcStatusText, NamesTheCodeAndKeepsTheMessage) {
  EXPECT_EQ(GrpcStatusText(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "bad prompt")),
            "INVALID_ARGUMENT: bad prompt");
  EXPECT_EQ(GrpcStatusText(grpc::Status(grpc::StatusCode::UNAVAILABLE, "")), "UNAVAILABLE");
  EXPECT_EQ(GrpcStatusText(grpc::Status::OK), "OK");
}

TEST(GrpcStatusText, EveryCanonicalCodeHasAName) {
  for (int code = 0; code <= 16; ++code) {
    EXPECT_EQ(GrpcStatusCodeName(static_cast<grpc::StatusCode>(code)).find("CODE_"),
              std::string::npos)
        << code;
  }
  EXPECT_EQ(GrpcStatusCodeName(static_cast<grpc::StatusCode>(42)), "CODE_42");
}

}  // namespace
}  // namespace mtla
