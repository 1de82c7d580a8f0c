// A server that knows when it is broken: faults injected into the CPU
// backend (a lasting device failure, a step that hangs) must turn
// grpc.health.v1 NOT_SERVING instead of failing every request behind a
// SERVING status, and leave no request or cache block behind.
#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "engine/testing/forwarding_backend.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "mtla/v1/text_generation.grpc.pb.h"
#include "server/mtla_server.h"
#include "tests/common/grpc_wait.h"

namespace mtla {
namespace {

using ::testing::HasSubstr;
using test_support::In;
using test_support::WaitFor;

const std::string kModelDir = std::string(MTLA_TESTDATA_DIR) + "/model_reference/llama_mtla_s2";

// Runs the real backend until told otherwise: after `fail_after` Forward
// calls, Forward fails and Health reports a lasting failure (a sticky CUDA
// error, say); or, when `hang` is set, the next Forward blocks until released.
class FaultyBackend final : public ForwardingBackend {
 public:
  struct Control {
    std::atomic<int> forwards{0};
    int fail_after = -1;  // < 0: never fails
    std::atomic<bool> hang{false};
    absl::Notification hanging;   // a Forward is blocked
    absl::Notification release;   // lets it go on
  };
  FaultyBackend(std::unique_ptr<ModelBackend> inner, std::shared_ptr<Control> control)
      : ForwardingBackend(std::move(inner)), control_(std::move(control)) {}

  absl::Status Forward(const StepPlan& plan, std::vector<float>* logits) override {
    const int call = control_->forwards.fetch_add(1);
    if (control_->hang.exchange(false)) {
      control_->hanging.Notify();
      control_->release.WaitForNotificationWithTimeout(absl::Seconds(60));  // bounded
    }
    if (control_->fail_after >= 0 && call >= control_->fail_after) {
      broken_ = true;
      return absl::InternalError("injected: an illegal memory access was encountered");
    }
    return ForwardingBackend::Forward(plan, logits);
  }
  absl::Status Health() const override {
    return broken_ ? absl::InternalError("injected: an illegal memory access was encountered")
                   : absl::OkStatus();
  }

 private:
  std::shared_ptr<Control> control_;
  std::atomic<bool> broken_{false};
};

class HealthFaultTest : public testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(kModelDir + "/model.safetensors")) {
      GTEST_SKIP() << "shared testdata not found at " << kModelDir;
    }
  }

  void Start(std::shared_ptr<FaultyBackend::Control> control, double stall_seconds = 60) {
    ServerOptions options;
    options.model_dir = kModelDir;
    options.listen_address = "127.0.0.1:0";
    options.metrics_address = "";
    options.device = "cpu";
    options.kv_cache_bytes = 16u << 20;
    options.health_check_interval_seconds = 0.05;
    options.engine_stall_seconds = stall_seconds;
    options.wrap_backend = [control](std::unique_ptr<ModelBackend> inner) {
      return std::make_unique<FaultyBackend>(std::move(inner), control);
    };
    auto server = MtlaServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    ASSERT_TRUE(server_->LoadModel().ok());
    auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                       grpc::InsecureChannelCredentials());
    stub_ = v1::TextGeneration::NewStub(channel);
    health_ = grpc::health::v1::Health::NewStub(channel);
  }

  void TearDown() override {
    if (server_ == nullptr) return;
    std::shared_ptr<Engine> engine = server_->engine();
    EXPECT_TRUE(WaitFor([&] { return engine->stats().in_flight == 0; }, 10));
    EXPECT_TRUE(WaitFor([&] { return engine->stats().cache_blocks_used == 0; }, 10));
    server_->Drain();
  }

  // The status of `service` ("": the server as a whole).
  grpc::health::v1::HealthCheckResponse::ServingStatus Health(const std::string& service = "") {
    grpc::ClientContext context;
    context.set_deadline(In(5));
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    grpc::health::v1::HealthCheckResponse response;
    EXPECT_TRUE(health_->Check(&context, request, &response).ok()) << service;
    return response.status();
  }

  grpc::Status Generate(int max_new_tokens) {
    v1::GenerateRequest request;
    for (int32_t id : {1, 5, 9, 13}) request.add_prompt_token_ids(id);
    request.set_max_new_tokens(max_new_tokens);
    request.set_ignore_eos(true);
    grpc::ClientContext context;
    context.set_deadline(In(30));
    auto reader = stub_->Generate(&context, request);
    v1::GenerateResponse response;
    while (reader->Read(&response)) {
    }
    return reader->Finish();
  }

  std::unique_ptr<MtlaServer> server_;
  std::unique_ptr<v1::TextGeneration::Stub> stub_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
};

TEST_F(HealthFaultTest, LastingBackendFailureTurnsHealthNotServing) {
  auto control = std::make_shared<FaultyBackend::Control>();
  control->fail_after = 3;
  Start(control);
  EXPECT_EQ(Health(), grpc::health::v1::HealthCheckResponse::SERVING);
  const grpc::Status failed = Generate(20);
  EXPECT_FALSE(failed.ok());
  EXPECT_TRUE(WaitFor(
      [&] { return Health() == grpc::health::v1::HealthCheckResponse::NOT_SERVING; }, 5, 20));
  EXPECT_FALSE(server_->serving());
  // Every later request is refused at once, saying why; health stays down.
  const grpc::Status refused = Generate(5);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE) << refused.error_message();
  EXPECT_THAT(refused.error_message(), HasSubstr("backend failed"));
  EXPECT_THAT(refused.error_message(), HasSubstr("illegal memory access"));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(Health(), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  EXPECT_FALSE(server_->engine()->Health().ok());
  // Per service name too.
  for (const char* service : {"mtla.v1.TextGeneration", "mtla.v1.Models",
                              "mtla.v1.SpeechTranslation"}) {
    EXPECT_EQ(Health(service), grpc::health::v1::HealthCheckResponse::NOT_SERVING) << service;
  }
}

TEST_F(HealthFaultTest, StalledEngineIsNotServingUntilItMovesAgain) {
  auto control = std::make_shared<FaultyBackend::Control>();
  Start(control, /*stall_seconds=*/0.5);
  EXPECT_TRUE(Generate(4).ok());
  control->hang = true;
  grpc::Status stalled_call;
  std::thread call([&] { stalled_call = Generate(8); });
  ASSERT_TRUE(control->hanging.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_TRUE(WaitFor(
      [&] { return Health() == grpc::health::v1::HealthCheckResponse::NOT_SERVING; }, 5, 20));
  EXPECT_THAT(std::string(server_->engine()->Health().message()), HasSubstr("no progress"));
  EXPECT_EQ(Health("mtla.v1.TextGeneration"), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(Health("mtla.v1.Models"), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  control->release.Notify();
  call.join();
  EXPECT_TRUE(stalled_call.ok()) << stalled_call.error_message();
  EXPECT_TRUE(WaitFor(
      [&] { return Health() == grpc::health::v1::HealthCheckResponse::SERVING; }, 5, 20));
  // Per service name: back with the server, except speech (a text model).
  EXPECT_EQ(Health("mtla.v1.TextGeneration"), grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_EQ(Health("mtla.v1.Models"), grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_EQ(Health("mtla.v1.SpeechTranslation"),
            grpc::health::v1::HealthCheckResponse::NOT_SERVING);
}

}  // namespace
}  // namespace mtla
