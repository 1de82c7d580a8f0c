// PackedLinear (oneDNN, pre-packed weights) against cpu::Linear (OpenBLAS) on
// random data: every row count the engine uses (1 .. max batched tokens),
// strided rows, bias and accumulate. Tolerance: ||y - ref|| / ||ref|| < 1e-5
// (fp32, only the summation order differs).
#include "kernels/cpu/packed_linear.h"

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_ops.h"

namespace mtla::cpu {
namespace {

std::vector<float> Random(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

double RelativeError(const std::vector<float>& got, const std::vector<float>& want) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    diff += (got[i] - want[i]) * static_cast<double>(got[i] - want[i]);
    norm += want[i] * static_cast<double>(want[i]);
  }
  return std::sqrt(diff / norm);
}

struct Shape {
  int64_t n;
  int in;
  int out;
  int64_t pad_x;  // extra floats per input row (ldx = in + pad_x)
  int64_t pad_y;
  bool bias;
  bool accumulate;
};

TEST(PackedLinearTest, MatchesOpenBlasLinear) {
  std::mt19937 rng(7);
  const Shape shapes[] = {
      {1, 512, 768, 0, 0, false, false},  {2, 512, 288, 0, 0, true, false},
      {5, 64, 40, 3, 0, true, false},     {32, 512, 2048, 0, 0, true, false},
      {32, 2048, 512, 0, 0, false, true}, {17, 96, 120, 8, 5, true, true},
      {100, 192, 1000, 0, 0, false, false}, {512, 128, 64, 0, 7, false, false},
      {3, 1, 1, 0, 0, true, false},
      // Row chunks (packed_row_chunks.h): 512 + 256 + 64 + 3, with strides,
      // bias and accumulate; 1 x 512 + 1; 128 + 64 + 1.
      {835, 96, 72, 3, 2, true, true}, {513, 64, 48, 0, 0, true, false},
      {193, 40, 24, 1, 0, false, true},
  };
  for (const Shape& s : shapes) {
    SCOPED_TRACE(testing::Message() << "n " << s.n << " in " << s.in << " out " << s.out
                                    << " bias " << s.bias << " accumulate " << s.accumulate);
    const std::vector<float> w = Random(static_cast<size_t>(s.out) * s.in, rng);
    const std::vector<float> bias = Random(s.out, rng);
    const int64_t ldx = s.in + s.pad_x, ldy = s.out + s.pad_y;
    const std::vector<float> x = Random(s.n * ldx, rng);
    const std::vector<float> y0 = Random(s.n * ldy, rng);
    std::vector<float> want = y0, got = y0;
    Linear(x.data(), s.n, s.in, w.data(), s.bias ? bias.data() : nullptr, s.out, want.data(), ldx,
           ldy, s.accumulate);
    absl::StatusOr<std::shared_ptr<const PackedLinear>> packed =
        PackedLinear::Create(w.data(), s.out, s.in);
    ASSERT_TRUE(packed.ok()) << packed.status();
    if (!(*packed)->Apply(x.data(), s.n, s.bias ? bias.data() : nullptr, got.data(), ldx, ldy,
                          s.accumulate)) {
      // Declined (no optimized oneDNN kernel for this shape): nothing written.
      EXPECT_EQ(got, y0);
      EXPECT_TRUE(s.pad_x != 0 || s.pad_y != 0) << "a dense shape must run on oneDNN";
      continue;
    }
    EXPECT_LT(RelativeError(got, want), 1e-5);
    // Padding between rows is never written.
    for (int64_t i = 0; i < s.n; ++i) {
      for (int64_t j = s.out; j < ldy; ++j) ASSERT_EQ(got[i * ldy + j], y0[i * ldy + j]);
    }
    // The cached primitive gives the same bits on a second call.
    std::vector<float> again = y0;
    ASSERT_TRUE((*packed)->Apply(x.data(), s.n, s.bias ? bias.data() : nullptr, again.data(), ldx,
                                 ldy, s.accumulate));
    EXPECT_EQ(again, got);
  }
}

TEST(PackedLinearTest, RejectsBadShapes) {
  const float w = 1.0f;
  EXPECT_EQ(PackedLinear::Create(&w, 0, 1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PackedLinear::Create(&w, 1, -1).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace mtla::cpu
