#include "engine/loading/served_model.h"

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mtla {
namespace {

using ::testing::HasSubstr;

const std::string kDefaultModel = MTLA_DEFAULT_MODEL_DIR;
const std::string kTestdata = MTLA_TESTDATA_DIR;

ServedModelOptions CpuOptions() {
  ServedModelOptions options;
  options.cache.memory_bytes = 8u << 20;
  options.backend.device = DeviceChoice::kCpu;
  options.log_prefix = "served_model_test";
  return options;
}

TEST(DetectModelFamilyTest, ReadsTheConfigTyped) {
  EXPECT_EQ(*DetectModelFamily(R"({"model_type": "llama-mtla", "hidden_size": 8})", "c.json"),
            ModelFamily::kLlamaMtla);
  EXPECT_EQ(*DetectModelFamily(R"({"arch": "s2t_decoder_only_MTLA_cross_xm"})", "c.json"),
            ModelFamily::kSpeechTranslation);
  // A substring is not a field: "model_type" inside a value does not count.
  EXPECT_EQ(*DetectModelFamily(R"({"arch": "x", "note": "\"model_type\": 1"})", "c.json"),
            ModelFamily::kSpeechTranslation);
  for (const char* bad : {R"({"model_type": "llama"})", R"({"model_type": 3})", "[1, 2]",
                          "{not json"}) {
    absl::StatusOr<ModelFamily> family = DetectModelFamily(bad, "dir/config.json");
    ASSERT_FALSE(family.ok()) << bad;
    EXPECT_EQ(family.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(family.status().message()), HasSubstr("dir/config.json")) << bad;
  }
}

TEST(LoadServedModelTest, LoadsTheDefaultSpeechModelOnce) {
  absl::StatusOr<ServedModel> model = LoadServedModel(kDefaultModel, CpuOptions());
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(model->family, ModelFamily::kSpeechTranslation);
  EXPECT_EQ(ModelArchitecture(model->family), "s2t-mtla");
  ASSERT_NE(model->runner, nullptr);
  EXPECT_EQ(model->runner->backend().name(), "cpu");
  ASSERT_NE(model->speech, nullptr);
  EXPECT_TRUE(model->speech->encoder.has_value());
  EXPECT_EQ(model->speech->decoder, nullptr) << "the decoder lives in the runner only";
  EXPECT_NE(model->tokenizer, nullptr);
  EXPECT_EQ(model->source_language, model->speech->config.source_language);
}

int ThreadsOfThisProcess() {
  int count = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) {
    ++count;
  }
  return count;
}

// The loader's OpenMP workers exit with its thread (served_model.h, "Threads"):
// a caller thread that never ran a parallel region has none after loading, so
// the process's thread count returns to what it was. Loading on the caller's
// thread left OpenMP_max_threads - 1 workers parked for the process's life
// (checked by hand: this test then fails with 1 more thread on 2 cores).
TEST(LoadServedModelTest, LoadingLeavesNoOpenMpWorkerThreadsBehind) {
  if (std::thread::hardware_concurrency() < 2) GTEST_SKIP() << "one CPU: OpenMP starts no workers";
  int before = 0, after = 0;
  std::thread caller([&] {  // fresh: no OpenMP pool of its own
    before = ThreadsOfThisProcess();
    absl::StatusOr<ServedModel> model = LoadServedModel(kDefaultModel, CpuOptions());
    ASSERT_TRUE(model.ok()) << model.status();
    // Exited workers leave /proc/self/task shortly after their pool's owner.
    for (int i = 0; i < 200 && (after = ThreadsOfThisProcess()) > before; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  });
  caller.join();
  EXPECT_EQ(after, before);
}

TEST(LoadServedModelTest, AutoWithoutADeviceServesOnTheCpuAndCudaIsAClearError) {
  if (CudaBackendAvailable().ok()) GTEST_SKIP() << "a CUDA device is present";
  ServedModelOptions options = CpuOptions();
  options.backend.device = DeviceChoice::kAuto;
  absl::StatusOr<ServedModel> model = LoadServedModel(kDefaultModel, options);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(model->runner->backend().name(), "cpu");
  options.backend.device = DeviceChoice::kCuda;
  model = LoadServedModel(kDefaultModel, options);
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(model.status().message()), HasSubstr("--device=cuda: "));
}

TEST(LoadServedModelTest, LoadsALlamaMtlaCheckpoint) {
  const std::string dir = kTestdata + "/model_reference/llama_mtla_s2";
  if (!std::filesystem::exists(dir + "/model.safetensors")) {
    GTEST_SKIP() << "shared testdata not found at " << dir;
  }
  absl::StatusOr<ServedModel> model = LoadServedModel(dir, CpuOptions());
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(model->family, ModelFamily::kLlamaMtla);
  EXPECT_NE(model->runner, nullptr);
  EXPECT_EQ(model->speech, nullptr);
}

TEST(LoadServedModelTest, ErrorsNameTheProblem) {
  absl::StatusOr<ServedModel> missing = LoadServedModel("/nonexistent/model", CpuOptions());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("/nonexistent/model/config.json"));
  const std::string decoder_only = kTestdata + "/st_reference/st_decoder_s2";
  if (!std::filesystem::exists(decoder_only + "/config.json")) {
    GTEST_SKIP() << "shared testdata not found at " << decoder_only;
  }
  absl::StatusOr<ServedModel> model = LoadServedModel(decoder_only, CpuOptions());
  EXPECT_EQ(model.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(model.status().message()), HasSubstr("no encoder"));
}

}  // namespace
}  // namespace mtla
