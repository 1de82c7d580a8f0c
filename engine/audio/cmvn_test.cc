#include "engine/audio/cmvn.h"

#include <cmath>
#include <vector>

#include "absl/status/status.h"
#include "engine/audio/audio_test_util.h"
#include "engine/audio/fbank.h"
#include "engine/weights/safetensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mtla::audio {
namespace {

using ::testing::ElementsAre;
using ::testing::FloatNear;

TEST(UtteranceCmvnTest, NormalisesEachDimension) {
  // Two dims, three frames: dim 0 = {1, 2, 3}, dim 1 = {10, 10, 10}.
  std::vector<float> x = {1, 10, 2, 10, 3, 10};
  ASSERT_TRUE(ApplyUtteranceCmvn(x, 2).ok());
  const float s = static_cast<float>(std::sqrt(1.5));  // 1 / sqrt(2/3)
  // A constant dimension divides 0 by sqrt(1e-10) and stays 0.
  EXPECT_THAT(x, ElementsAre(FloatNear(-s, 1e-6), 0.0f, 0.0f, 0.0f, FloatNear(s, 1e-6), 0.0f));
}

TEST(UtteranceCmvnTest, RejectsBadShapesAndAcceptsEmpty) {
  std::vector<float> x = {1, 2, 3};
  EXPECT_EQ(ApplyUtteranceCmvn(x, 2).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ApplyUtteranceCmvn(x, 0).code(), absl::StatusCode::kInvalidArgument);
  std::vector<float> empty;
  EXPECT_TRUE(ApplyUtteranceCmvn(empty, 80).ok());
}

TEST(GlobalCmvnTest, AppliesGivenStatistics) {
  absl::StatusOr<GlobalCmvn> cmvn = GlobalCmvn::Create({1.0f, -2.0f}, {2.0f, 0.5f});
  ASSERT_TRUE(cmvn.ok()) << cmvn.status();
  std::vector<float> x = {3, -2, 1, 0};
  ASSERT_TRUE(cmvn->Apply(x).ok());
  EXPECT_THAT(x, ElementsAre(1.0f, 0.0f, 0.0f, 4.0f));
  std::vector<float> bad = {1, 2, 3};
  EXPECT_EQ(cmvn->Apply(bad).code(), absl::StatusCode::kInvalidArgument);
}

TEST(GlobalCmvnTest, RejectsBadStatistics) {
  EXPECT_FALSE(GlobalCmvn::Create({}, {}).ok());
  EXPECT_FALSE(GlobalCmvn::Create({0.0f}, {1.0f, 1.0f}).ok());
  EXPECT_FALSE(GlobalCmvn::Create({0.0f}, {0.0f}).ok());
  EXPECT_FALSE(GlobalCmvn::Create({0.0f}, {-1.0f}).ok());
  EXPECT_FALSE(GlobalCmvn::Create({0.0f}, {INFINITY}).ok());
}

// fairseq_st_reference: fairseq's UtteranceCMVN applied to its Kaldi fbank.
TEST(UtteranceCmvnTest, MatchesFairseqReference) {
  const auto dir = testing::TestdataDir() / "fairseq_st_reference";
  std::vector<std::filesystem::path> files;
  if (std::filesystem::is_directory(dir)) {
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
      if (std::filesystem::exists(entry.path() / "expected.safetensors")) {
        files.push_back(entry.path() / "expected.safetensors");
      }
    }
  }
  if (files.empty()) GTEST_SKIP() << "shared testdata not found at " << dir;
  for (const auto& path : files) {
    SCOPED_TRACE(path.string());
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path.string());
    ASSERT_TRUE(file.ok()) << file.status();
    const TensorInfo* info = (*file)->find("input.fbank");
    ASSERT_NE(info, nullptr);
    ASSERT_EQ(info->shape.size(), 2u);
    const int dim = static_cast<int>(info->shape[1]);
    absl::StatusOr<std::vector<float>> fbank = (*file)->ReadFloat("input.fbank");
    absl::StatusOr<std::vector<float>> ref = (*file)->ReadFloat("input.fbank_cmvn", info->shape);
    ASSERT_TRUE(fbank.ok() && ref.ok());

    std::vector<float> out = *fbank;
    ASSERT_TRUE(ApplyUtteranceCmvn(out, dim).ok());
    const double err = testing::MaxRelativeError(out, *ref);
    EXPECT_LE(err, 1e-4);
    std::printf("%s cmvn: max|out-ref|/max|ref| = %.3e\n", path.parent_path().filename().c_str(), err);

    // The whole front-end from the raw samples.
    absl::StatusOr<std::vector<float>> pcm = (*file)->ReadFloat("input.pcm16");
    ASSERT_TRUE(pcm.ok());
    absl::StatusOr<std::vector<float>> feats = ComputeFbank(*pcm);
    ASSERT_TRUE(feats.ok());
    const double fbank_err = testing::MaxRelativeError(*feats, *fbank);
    EXPECT_LE(fbank_err, 1e-4);
    ASSERT_TRUE(ApplyUtteranceCmvn(*feats, dim).ok());
    const double end_to_end = testing::MaxRelativeError(*feats, *ref);
    EXPECT_LE(end_to_end, 1e-4);
    std::printf("%s fbank: %.3e, pcm->fbank->cmvn: %.3e\n", path.parent_path().filename().c_str(),
                fbank_err, end_to_end);
  }
}

}  // namespace
}  // namespace mtla::audio
