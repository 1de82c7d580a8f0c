// The vectorized elementwise operators against double-precision references.
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cpu/cpu_ops.h"

namespace mtla::cpu {
namespace {

double RelativeError(double got, double want) { return std::abs(got - want) / std::abs(want); }

TEST(ExpInPlace, WithinTwoUlpOfDoubleOverTheRange) {
  // Every 1/4096 step across the range, plus random values.
  std::vector<float> x;
  for (float v = -87.3f; v <= 88.3f; v += 1.0f / 4096) x.push_back(v);
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> any(-87.3f, 88.3f);
  for (int i = 0; i < 100000; ++i) x.push_back(any(rng));
  std::vector<float> y = x;
  ExpInPlace(y.data(), static_cast<int64_t>(y.size()));
  double worst = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    worst = std::max(worst, RelativeError(y[i], std::exp(static_cast<double>(x[i]))));
  }
  EXPECT_LE(worst, 2.5e-7) << "over " << x.size() << " values";  // about 2 ulp
}

TEST(ExpInPlace, SaturatesOutsideTheRangeAndKeepsNaN) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> y = {-inf, -1000.0f, 0.0f, 1000.0f, inf, nan};
  ExpInPlace(y.data(), static_cast<int64_t>(y.size()));
  const double low = std::exp(static_cast<double>(-87.3f));
  const double high = std::exp(static_cast<double>(88.3f));
  EXPECT_LE(RelativeError(y[0], low), 2.5e-7);
  EXPECT_LE(RelativeError(y[1], low), 2.5e-7);
  EXPECT_EQ(y[2], 1.0f);
  EXPECT_LE(RelativeError(y[3], high), 2.5e-7);
  EXPECT_TRUE(std::isfinite(y[4]));
  EXPECT_TRUE(std::isnan(y[5]));
}

TEST(SoftmaxRows, MatchesDoublePrecision) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 8.0f);
  for (int64_t n : {1, 3, 16, 17, 250}) {
    const int64_t rows = 5;
    std::vector<float> x(rows * n);
    for (float& v : x) v = normal(rng);
    std::vector<float> y = x;
    SoftmaxRows(y.data(), rows, n);
    for (int64_t i = 0; i < rows; ++i) {
      // The reference takes the float differences x - max the kernel takes
      // (their rounding is float's, not the kernel's), then works in double.
      float mx = x[i * n];
      for (int64_t j = 0; j < n; ++j) mx = std::max(mx, x[i * n + j]);
      double sum = 0.0;
      for (int64_t j = 0; j < n; ++j) sum += std::exp(static_cast<double>(x[i * n + j] - mx));
      for (int64_t j = 0; j < n; ++j) {
        const double want = std::exp(static_cast<double>(x[i * n + j] - mx)) / sum;
        EXPECT_NEAR(y[i * n + j], want, 1e-6 * want + 1e-30) << "n=" << n;
      }
    }
  }
}

TEST(GluRows, MatchesDoublePrecision) {
  std::mt19937 rng(9);
  std::normal_distribution<float> normal(0.0f, 6.0f);
  const int64_t rows = 7;
  for (int half : {1, 5, 16, 33}) {
    std::vector<float> x(rows * 2 * half), out(rows * half);
    for (float& v : x) v = normal(rng);
    GluRows(x.data(), rows, half, out.data());
    for (int64_t i = 0; i < rows; ++i) {
      for (int j = 0; j < half; ++j) {
        const double a = x[i * 2 * half + j], b = x[i * 2 * half + half + j];
        const double want = a / (1.0 + std::exp(-b));
        EXPECT_NEAR(out[i * half + j], want, 1e-6 * std::abs(want) + 1e-30) << "half=" << half;
      }
    }
  }
}

}  // namespace
}  // namespace mtla::cpu
