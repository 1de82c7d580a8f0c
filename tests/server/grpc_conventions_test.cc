// The gRPC conventions generic clients rely on, on an in-process server over
// loopback: reflection under both grpc.reflection.v1 and v1alpha (the same
// services), and grpc.health.v1 per service name: TextGeneration and Models
// SERVING once a model is loaded, SpeechTranslation only for a speech model,
// every name NOT_SERVING while loading.
#include <filesystem>
#include <memory>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1/reflection.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "server/mtla_server.h"
#include "tests/common/loopback_server.h"
#include "tests/common/grpc_wait.h"

namespace mtla {
namespace {

using grpc::health::v1::HealthCheckResponse;
using grpc::reflection::v1::ServerReflectionRequest;
using grpc::reflection::v1::ServerReflectionResponse;
using test_support::In;

const std::string kSpeechModelDir = MTLA_DEFAULT_MODEL_DIR;
const std::string kTextModelDir =
    std::string(MTLA_TESTDATA_DIR) + "/model_reference/llama_mtla_s2";


// "SERVING", "NOT_SERVING", ... or the call's error code as "rpc error N".
std::string Health(const std::shared_ptr<grpc::Channel>& channel, const std::string& service) {
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(In(5));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  HealthCheckResponse response;
  grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) return absl::StrCat("rpc error ", status.error_code());
  return HealthCheckResponse::ServingStatus_Name(response.status());
}

// One request on ServerReflectionInfo of `service` ("grpc.reflection.v1" or
// "grpc.reflection.v1alpha"): the two versions' messages are the same on the
// wire, so v1's generated messages serve both.
ServerReflectionResponse Reflect(const std::shared_ptr<grpc::Channel>& channel,
                                 const std::string& service,
                                 const ServerReflectionRequest& request) {
  const std::string path = absl::StrCat("/", service, ".ServerReflection/ServerReflectionInfo");
  const grpc::internal::RpcMethod method(path.c_str(),  // kept, not copied
                                         grpc::internal::RpcMethod::BIDI_STREAMING, channel);
  grpc::ClientContext context;
  context.set_deadline(In(5));
  std::unique_ptr<grpc::ClientReaderWriter<ServerReflectionRequest, ServerReflectionResponse>>
      stream(grpc::internal::ClientReaderWriterFactory<
             ServerReflectionRequest, ServerReflectionResponse>::Create(channel.get(), method,
                                                                        &context));
  ServerReflectionResponse response;
  EXPECT_TRUE(stream->Write(request));
  stream->WritesDone();
  EXPECT_TRUE(stream->Read(&response)) << service;
  const grpc::Status status = stream->Finish();
  EXPECT_TRUE(status.ok()) << service << ": " << status.error_message();
  return response;
}

std::set<std::string> ListServices(const std::shared_ptr<grpc::Channel>& channel,
                                   const std::string& service) {
  ServerReflectionRequest request;
  request.set_list_services("");
  std::set<std::string> names;
  const ServerReflectionResponse response = Reflect(channel, service, request);
  for (const auto& s : response.list_services_response().service()) {
    names.insert(s.name());
  }
  return names;
}

class GrpcConventionsTest : public testing::Test {
 protected:
  void TearDown() override {
    if (server_) server_->Drain();
  }
  std::unique_ptr<MtlaServer> server_;
};

TEST_F(GrpcConventionsTest, ReflectionV1AndV1alphaListTheSameServices) {
  server_ = test_support::StartLoopbackServer(kSpeechModelDir);
  ASSERT_NE(server_, nullptr);
  auto channel = test_support::ConnectLoopback(*server_);
  const std::set<std::string> v1 = ListServices(channel, "grpc.reflection.v1");
  const std::set<std::string> v1alpha = ListServices(channel, "grpc.reflection.v1alpha");
  for (const char* name : {"mtla.v1.TextGeneration", "mtla.v1.Models", "mtla.v1.SpeechTranslation",
                           "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
                           "grpc.reflection.v1alpha.ServerReflection"}) {
    EXPECT_TRUE(v1.count(name)) << "v1 lacks " << name;
    EXPECT_TRUE(v1alpha.count(name)) << "v1alpha lacks " << name;
  }
  EXPECT_EQ(v1, v1alpha);
}

TEST_F(GrpcConventionsTest, ReflectionV1DescribesTheServices) {
  server_ = test_support::StartLoopbackServer(kSpeechModelDir);
  ASSERT_NE(server_, nullptr);
  auto channel = test_support::ConnectLoopback(*server_);
  for (const char* version : {"grpc.reflection.v1", "grpc.reflection.v1alpha"}) {
    ServerReflectionRequest request;
    request.set_file_containing_symbol("mtla.v1.SpeechTranslation");
    const ServerReflectionResponse response = Reflect(channel, version, request);
    ASSERT_GT(response.file_descriptor_response().file_descriptor_proto_size(), 0) << version;
    google::protobuf::FileDescriptorProto file;
    ASSERT_TRUE(file.ParseFromString(response.file_descriptor_response().file_descriptor_proto(0)));
    EXPECT_EQ(file.name(), "mtla/v1/speech_translation.proto") << version;
    EXPECT_EQ(file.options().java_package(), "dev.mtla.v1") << version;
    request.set_file_containing_symbol("mtla.v1.NoSuchThing");
    EXPECT_EQ(Reflect(channel, version, request).error_response().error_code(),
              grpc::StatusCode::NOT_FOUND)
        << version;
  }
}

TEST_F(GrpcConventionsTest, SpeechModelServesEveryServiceOnceLoaded) {
  server_ = test_support::StartLoopbackServer(kSpeechModelDir);
  ASSERT_NE(server_, nullptr);
  auto channel = test_support::ConnectLoopback(*server_);
  for (const char* name : {"", "mtla.v1.TextGeneration", "mtla.v1.Models",
                           "mtla.v1.SpeechTranslation"}) {
    EXPECT_EQ(Health(channel, name), "NOT_SERVING") << "loading: '" << name << "'";
  }
  ASSERT_TRUE(server_->LoadModel().ok());
  for (const char* name : {"", "mtla.v1.TextGeneration", "mtla.v1.Models",
                           "mtla.v1.SpeechTranslation"}) {
    EXPECT_EQ(Health(channel, name), "SERVING") << "'" << name << "'";
  }
  EXPECT_EQ(Health(channel, "mtla.v1.NoSuchService"),
            absl::StrCat("rpc error ", grpc::StatusCode::NOT_FOUND));
}

TEST_F(GrpcConventionsTest, TextModelDoesNotServeSpeechTranslation) {
  if (!std::filesystem::exists(kTextModelDir + "/model.safetensors")) {
    GTEST_SKIP() << "shared testdata text model not found at " << kTextModelDir;
  }
  server_ = test_support::StartLoopbackServer(kTextModelDir);
  ASSERT_NE(server_, nullptr);
  ASSERT_TRUE(server_->LoadModel().ok());
  auto channel = test_support::ConnectLoopback(*server_);
  EXPECT_EQ(Health(channel, ""), "SERVING");
  EXPECT_EQ(Health(channel, "mtla.v1.TextGeneration"), "SERVING");
  EXPECT_EQ(Health(channel, "mtla.v1.Models"), "SERVING");
  EXPECT_EQ(Health(channel, "mtla.v1.SpeechTranslation"), "NOT_SERVING");
}

}  // namespace
}  // namespace mtla
