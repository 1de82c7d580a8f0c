// PackedBatchedMatmul (oneDNN, pre-packed weights) against a double-precision
// loop on random data: the MTLA layer's two per-head products at the paper's
// dims and small ones, with the engine's strided layouts (heads interleaved
// inside each token's row) and dense [batch, rows, k] layouts, rows 1..64.
// Tolerance: ||y - ref|| / ||ref|| < 1e-5 (fp32). Apply may decline a layout
// (oneDNN would run its reference kernel); the dense layout must be accepted.
#include "kernels/cpu/packed_batched_matmul.h"

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace mtla::cpu {
namespace {

struct Case {
  int batch, k, n;
  bool transposed;
  int64_t x_pad;  // the engine's x rows hold other data after each head's k values
};

TEST(PackedBatchedMatmulTest, MatchesLoop) {
  std::mt19937 rng(11);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  const Case cases[] = {{8, 64, 256, false, 32}, {8, 256, 64, true, 0}, {4, 16, 32, false, 8},
                        {6, 64, 24, true, 0},    {1, 8, 16, false, 0}};
  for (const Case& c : cases) {
    std::vector<float> w(static_cast<size_t>(c.batch) * c.k * c.n);
    for (float& v : w) v = dist(rng);
    auto packed = PackedBatchedMatmul::Create(w.data(), c.batch, c.k, c.n, c.transposed);
    ASSERT_TRUE(packed.ok()) << packed.status();
    auto weight = [&](int b, int i, int j) {
      return c.transposed ? w[(static_cast<size_t>(b) * c.n + j) * c.k + i]
                          : w[(static_cast<size_t>(b) * c.k + i) * c.n + j];
    };
    // Above 64 rows Apply runs row chunks (packed_row_chunks.h).
    for (int64_t rows : {1, 2, 7, 32, 64, 100, 333}) {
      for (bool interleaved : {true, false}) {
        SCOPED_TRACE(testing::Message() << "batch " << c.batch << " k " << c.k << " n " << c.n
                                        << " rows " << rows << " interleaved " << interleaved);
        const int64_t xk = c.k + c.x_pad;
        const BatchedStrides xs = interleaved ? BatchedStrides{xk, c.batch * xk}
                                              : BatchedStrides{rows * c.k, c.k};
        const BatchedStrides ys = interleaved ? BatchedStrides{c.n, int64_t{c.batch} * c.n}
                                              : BatchedStrides{rows * c.n, c.n};
        std::vector<float> x(static_cast<size_t>(c.batch) * rows * xk);
        for (float& v : x) v = dist(rng);
        std::vector<float> y(static_cast<size_t>(c.batch) * rows * c.n, NAN);
        const bool accepted = (*packed)->Apply(x.data(), rows, xs, y.data(), ys);
        if (!interleaved) {
          EXPECT_TRUE(accepted);
        }
        if (!accepted) continue;
        double diff = 0.0, norm = 0.0;
        for (int b = 0; b < c.batch; ++b) {
          for (int64_t i = 0; i < rows; ++i) {
            for (int j = 0; j < c.n; ++j) {
              double want = 0.0;
              for (int d = 0; d < c.k; ++d) want += double{x[b * xs.batch + i * xs.row + d]} * weight(b, d, j);
              const double got = y[b * ys.batch + i * ys.row + j];
              diff += (got - want) * (got - want);
              norm += want * want;
            }
          }
        }
        EXPECT_LT(std::sqrt(diff / norm), 1e-5);
      }
    }
  }
}

}  // namespace
}  // namespace mtla::cpu
