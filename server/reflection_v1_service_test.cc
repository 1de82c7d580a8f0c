#include "server/reflection_v1_service.h"

#include <set>

#include "google/protobuf/descriptor.pb.h"
#include "gtest/gtest.h"
#include "mtla/v1/models.grpc.pb.h"
#include "mtla/v1/text_generation.grpc.pb.h"

namespace mtla {
namespace {

using grpc::reflection::v1::ServerReflectionRequest;
using grpc::reflection::v1::ServerReflectionResponse;

// The generated pool holds a file once its generated code is linked in; a
// test that only names the files must reference them.
[[maybe_unused]] const bool kLinked =
    v1::GenerateRequest::descriptor() != nullptr && v1::ModelInfo::descriptor() != nullptr;

std::vector<std::string> FileNames(const ServerReflectionResponse& response) {
  std::vector<std::string> names;
  for (const std::string& bytes : response.file_descriptor_response().file_descriptor_proto()) {
    google::protobuf::FileDescriptorProto file;
    EXPECT_TRUE(file.ParseFromString(bytes));
    names.push_back(file.name());
  }
  return names;
}

TEST(ReflectionV1Service, ListsTheGivenServices) {
  ReflectionV1Service service({"mtla.v1.TextGeneration", "grpc.reflection.v1.ServerReflection"});
  ServerReflectionRequest request;
  request.set_host("localhost");
  request.set_list_services("");
  const ServerReflectionResponse response = service.Answer(request);
  EXPECT_EQ(response.valid_host(), "localhost");
  EXPECT_EQ(response.original_request().list_services(), "");
  ASSERT_EQ(response.list_services_response().service_size(), 2);
  EXPECT_EQ(response.list_services_response().service(0).name(), "mtla.v1.TextGeneration");
  EXPECT_EQ(response.list_services_response().service(1).name(),
            "grpc.reflection.v1.ServerReflection");
}

TEST(ReflectionV1Service, FileContainingSymbolHasTheServiceAndItsImports) {
  ReflectionV1Service service({});
  ServerReflectionRequest request;
  request.set_file_containing_symbol("mtla.v1.TextGeneration");
  const ServerReflectionResponse response = service.Answer(request);
  ASSERT_FALSE(response.has_error_response()) << response.error_response().error_message();
  const std::vector<std::string> names = FileNames(response);
  ASSERT_FALSE(names.empty());
  EXPECT_EQ(names[0], "mtla/v1/text_generation.proto");
  google::protobuf::FileDescriptorProto file;
  ASSERT_TRUE(file.ParseFromString(response.file_descriptor_response().file_descriptor_proto(0)));
  ASSERT_EQ(file.service_size(), 1);
  EXPECT_EQ(file.service(0).name(), "TextGeneration");
  EXPECT_EQ(file.package(), "mtla.v1");
  // Every import comes along, once.
  std::set<std::string> unique(names.begin(), names.end());
  EXPECT_EQ(unique.size(), names.size());
  for (const std::string& dependency : file.dependency()) EXPECT_TRUE(unique.count(dependency));
}

TEST(ReflectionV1Service, FileByFilenameAndMessageSymbols) {
  ReflectionV1Service service({});
  ServerReflectionRequest request;
  request.set_file_by_filename("mtla/v1/models.proto");
  EXPECT_EQ(FileNames(service.Answer(request)).at(0), "mtla/v1/models.proto");
  request.set_file_containing_symbol("mtla.v1.GenerateRequest");
  EXPECT_EQ(FileNames(service.Answer(request)).at(0), "mtla/v1/text_generation.proto");
  request.set_file_containing_symbol("mtla.v1.TextGeneration.Generate");  // a method
  EXPECT_EQ(FileNames(service.Answer(request)).at(0), "mtla/v1/text_generation.proto");
}

TEST(ReflectionV1Service, UnknownNamesAreNotFound) {
  ReflectionV1Service service({});
  ServerReflectionRequest request;
  request.set_file_containing_symbol("mtla.v1.NoSuchService");
  ServerReflectionResponse response = service.Answer(request);
  EXPECT_EQ(response.error_response().error_code(), grpc::StatusCode::NOT_FOUND);
  request.set_file_by_filename("no/such.proto");
  response = service.Answer(request);
  EXPECT_EQ(response.error_response().error_code(), grpc::StatusCode::NOT_FOUND);
  request.mutable_file_containing_extension()->set_containing_type("mtla.v1.GenerateRequest");
  request.mutable_file_containing_extension()->set_extension_number(100);
  response = service.Answer(request);
  EXPECT_EQ(response.error_response().error_code(), grpc::StatusCode::NOT_FOUND);
  request.set_all_extension_numbers_of_type("no.such.Type");
  response = service.Answer(request);
  EXPECT_EQ(response.error_response().error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST(ReflectionV1Service, ExtensionNumbersOfAMessageWithoutExtensions) {
  ReflectionV1Service service({});
  ServerReflectionRequest request;
  request.set_all_extension_numbers_of_type("mtla.v1.GenerateRequest");
  const ServerReflectionResponse response = service.Answer(request);
  ASSERT_TRUE(response.has_all_extension_numbers_response());
  EXPECT_EQ(response.all_extension_numbers_response().base_type_name(), "mtla.v1.GenerateRequest");
  EXPECT_EQ(response.all_extension_numbers_response().extension_number_size(), 0);
}

}  // namespace
}  // namespace mtla
