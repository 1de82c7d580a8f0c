// The CUDA dense operators (norms, RoPE, activations, embedding, conversions,
// cuBLAS projections) and token selection against the CPU reference
// (kernels/cpu/cpu_ops.h, engine/model ArgMax) on random data.
//
// Tolerances (||out - ref|| / ||ref||): float32 operators 1e-5 (summation
// order); RoPE 1e-5 (device sincosf vs the host's); projections with fp32
// storage 1e-5, with fp16 / bf16 weights and inputs the storage tolerance of
// the dtype (fp16 2e-3, bf16 1.6e-2). Greedy selection is exact.
#include <cmath>
#include <map>
#include <vector>

#include "engine/config/model_config.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/sampling.h"
#include "tests/cuda/cuda_test_util.h"

namespace mtla::cuda::testing {
namespace {

constexpr double kFloatTolerance = 1e-5;

TEST(ElementwiseCuda, NormsMatchCpu) {
  MTLA_SKIP_WITHOUT_CUDA();
  std::mt19937 rng(1);
  for (int d : {64, 256, 512, 1000, 4096}) {
    const int64_t n = 37;
    const std::vector<float> x = RandomVector(n * d, rng, 3.0f);
    const std::vector<float> w = RandomVector(d, rng);
    const std::vector<float> b = RandomVector(d, rng);
    std::vector<float> rms(n * d), ln(n * d);
    cpu::RmsNorm(x.data(), n, d, w.data(), 1e-6f, rms.data());
    cpu::LayerNorm(x.data(), n, d, w.data(), b.data(), 1e-5f, ln.data());
    DeviceBuffer dx = Upload(x), dw = Upload(w), db = Upload(b);
    DeviceBuffer dy = Alloc(n * d * sizeof(float));
    MTLA_ASSERT_OK(RmsNorm(dx.as<float>(), n, d, dw.as<float>(), 1e-6f, dy.as<float>(), 0, 0,
                           nullptr));
    EXPECT_LE(RelativeError(Download<float>(dy.data(), n * d), rms), kFloatTolerance) << d;
    MTLA_ASSERT_OK(LayerNorm(dx.as<float>(), n, d, dw.as<float>(), db.as<float>(), 1e-5f,
                             dy.as<float>(), 0, 0, nullptr));
    EXPECT_LE(RelativeError(Download<float>(dy.data(), n * d), ln), kFloatTolerance) << d;
    // In place, strided rows (the kv_norm over the latent part of [c | k_pe]).
    MTLA_ASSERT_OK(LayerNorm(dx.as<float>(), n / 2, d / 2, dw.as<float>(), db.as<float>(), 1e-5f,
                             dx.as<float>(), 2 * d, 2 * d, nullptr));
    std::vector<float> xs = x;
    cpu::LayerNorm(xs.data(), n / 2, d / 2, w.data(), b.data(), 1e-5f, xs.data(), 2 * d, 2 * d);
    EXPECT_LE(RelativeError(Download<float>(dx.data(), n * d), xs), kFloatTolerance) << d;
  }
}

TEST(ElementwiseCuda, RopeBothPairingsMatchCpu) {
  MTLA_SKIP_WITHOUT_CUDA();
  std::mt19937 rng(2);
  for (RopeStyle style : {RopeStyle::kInterleaved, RopeStyle::kHalfSplit}) {
    for (int dim : {8, 16, 32, 64}) {
      const int64_t n = 50;
      const int heads = 3, head_stride = dim + 5, ld = heads * head_stride + 2;
      std::vector<float> x = RandomVector(n * ld, rng);
      std::vector<int32_t> pos(n);
      for (int i = 0; i < n; ++i) pos[i] = i * 163;  // up to 8000
      const cpu::RopeTable table(dim, 10000.0f, style);
      std::vector<float> inv_freq(dim / 2);
      for (int j = 0; j < dim / 2; ++j) {
        inv_freq[j] = 1.0f / std::pow(10000.0f, static_cast<float>(2 * j) / static_cast<float>(dim));
      }
      DeviceBuffer dx = Upload(x), dpos = Upload(pos), dfreq = Upload(inv_freq);
      table.Apply(x.data(), n, ld, heads, head_stride, pos.data());
      MTLA_ASSERT_OK(Rope(dx.as<float>(), n, ld, heads, head_stride, dim, dfreq.as<float>(),
                          dpos.as<int32_t>(), style == RopeStyle::kInterleaved, nullptr));
      EXPECT_LE(RelativeError(Download<float>(dx.data(), n * ld), x), kFloatTolerance) << dim;
    }
  }
}

TEST(ElementwiseCuda, ActivationsEmbeddingAndConversions) {
  MTLA_SKIP_WITHOUT_CUDA();
  std::mt19937 rng(3);
  const int64_t n = 33;
  const int d = 300;
  const std::vector<float> gate = RandomVector(n * d, rng), up = RandomVector(n * d, rng);
  std::vector<float> ref(n * d);
  cpu::SiluMul(gate.data(), up.data(), n, d, ref.data(), d, d, d);
  DeviceBuffer dg = Upload(gate), du = Upload(up), dout = Alloc(n * d * 4);
  MTLA_ASSERT_OK(SiluMul(dg.as<float>(), du.as<float>(), n, d, dout.as<float>(), d, d, d, nullptr));
  EXPECT_LE(RelativeError(Download<float>(dout.data(), n * d), ref), kFloatTolerance);

  std::vector<float> relu = gate;
  cpu::Relu(relu.data(), n * d);
  MTLA_ASSERT_OK(Relu(dg.as<float>(), n * d, nullptr));
  EXPECT_EQ(Download<float>(dg.data(), n * d), relu);

  std::vector<float> sum = up;
  cpu::AddInPlace(sum.data(), relu.data(), n * d);
  MTLA_ASSERT_OK(AddInPlace(du.as<float>(), dg.as<float>(), n * d, nullptr));
  EXPECT_EQ(Download<float>(du.data(), n * d), sum);

  const int vocab = 97;
  const std::vector<float> table = RandomVector(vocab * d, rng);
  std::vector<int32_t> ids(n);
  for (int i = 0; i < n; ++i) ids[i] = (i * 31) % vocab;
  DeviceBuffer dids = Upload(ids);
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    const std::vector<float> stored = RoundThrough(table, dtype);
    std::vector<float> emb(n * d);
    cpu::EmbeddingLookup(stored.data(), ids.data(), n, d, 22.6f, emb.data());
    DeviceBuffer dtable = UploadAs(table, dtype);
    MTLA_ASSERT_OK(EmbeddingLookup(dtable.data(), dtype, dids.as<int32_t>(), n, d, 22.6f,
                                   dout.as<float>(), nullptr));
    EXPECT_LE(RelativeError(Download<float>(dout.data(), n * d), emb), kFloatTolerance)
        << DTypeName(dtype);
    EXPECT_LE(RelativeError(stored, table), StorageTolerance(dtype)) << DTypeName(dtype);
  }
}

TEST(GemmCuda, LinearAndBatchedMatchCpu) {
  MTLA_SKIP_WITHOUT_CUDA();
  std::mt19937 rng(4);
  auto blas = BlasHandle::Create(nullptr);
  ASSERT_TRUE(blas.ok()) << blas.status();
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    SCOPED_TRACE(DTypeName(dtype));
    for (int64_t n : {1, 7, 130}) {
      const int in = 288, out = 520;
      const std::vector<float> x = RandomVector(n * in, rng), w = RandomVector(out * in, rng);
      std::vector<float> ref(n * out);
      cpu::Linear(x.data(), n, in, w.data(), nullptr, out, ref.data());
      DeviceBuffer dx = UploadAs(x, dtype), dw = UploadAs(w, dtype), dy = Alloc(n * out * 4);
      MTLA_ASSERT_OK(Linear(*blas, dtype, dx.data(), n, in, dw.data(), out, dy.as<float>()));
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const double tol = dtype == DType::kF32 ? kFloatTolerance : StorageTolerance(dtype);
      EXPECT_LE(RelativeError(Download<float>(dy.data(), n * out), ref), tol) << n;
    }
    // Per-head absorption: qa[n, h, 0:r] = q[n, h, 0:dn] W_UK[h] (W_UK[h] [dn, r]).
    const int heads = 8, dn = 64, r = 256, n = 5, qk = 96, width = 288;
    const std::vector<float> q = RandomVector(n * heads * qk, rng);
    const std::vector<float> wuk = RandomVector(heads * dn * r, rng);
    std::vector<float> ref(n * heads * width, 0.0f);
    for (int h = 0; h < heads; ++h) {
      cpu::Gemm(false, n, r, dn, 1.0f, q.data() + h * qk, heads * qk, wuk.data() + h * dn * r, r,
                0.0f, ref.data() + h * width, heads * width);
    }
    DeviceBuffer dq = UploadAs(q, dtype), dw = UploadAs(wuk, dtype);
    DeviceBuffer dy = Upload(std::vector<float>(n * heads * width, 0.0f));
    GemmArgs g;
    g.m = n;
    g.n = r;
    g.k = dn;
    g.a = dq.data();
    g.lda = heads * qk;
    g.stride_a = qk;
    g.b = dw.data();
    g.ldb = r;
    g.stride_b = static_cast<int64_t>(dn) * r;
    g.c = dy.as<float>();
    g.ldc = heads * width;
    g.stride_c = width;
    g.batch = heads;
    MTLA_ASSERT_OK(Gemm(*blas, dtype, g));
    const double tol = dtype == DType::kF32 ? kFloatTolerance : StorageTolerance(dtype);
    EXPECT_LE(RelativeError(Download<float>(dy.data(), ref.size()), ref), tol);
  }
}

int32_t HostArgMax(const float* row, int vocab) {
  int32_t best = 0;
  for (int j = 1; j < vocab; ++j)
    if (row[j] > row[best]) best = j;
  return best;
}

TEST(SamplingCuda, GreedyIsExact) {
  MTLA_SKIP_WITHOUT_CUDA();
  std::mt19937 rng(5);
  for (int vocab : {3, 100, 8000, 32000, 129280}) {
    const int64_t rows = 17;
    std::vector<float> logits = RandomVector(rows * vocab, rng);
    logits[5 * vocab + vocab - 1] = 100.0f;  // maximum at the end
    logits[6 * vocab + 0] = 100.0f;          // ties: the first one wins
    logits[6 * vocab + vocab / 2] = 100.0f;
    DeviceBuffer dl = Upload(logits), dt = Alloc(rows * sizeof(int32_t));
    MTLA_ASSERT_OK(ArgMax(dl.as<float>(), rows, vocab, dt.as<int32_t>(), nullptr));
    const std::vector<int32_t> got = Download<int32_t>(dt.data(), rows);
    for (int i = 0; i < rows; ++i) EXPECT_EQ(got[i], HostArgMax(&logits[i * vocab], vocab)) << i;
  }
}

// Draws many tokens from one distribution with spread-out u and compares the
// frequencies with the renormalized top-k / top-p distribution.
TEST(SamplingCuda, TopKTopPDistribution) {
  MTLA_SKIP_WITHOUT_CUDA();
  std::mt19937 rng(6);
  const int vocab = 1000;
  const int rows = 8192;
  std::vector<float> one = RandomVector(vocab, rng, 2.0f);
  struct Setting {
    float temperature;
    int top_k;
    float top_p;
  };
  for (const Setting& setting : {Setting{1.0f, 0, 1.0f}, Setting{0.7f, 20, 1.0f},
                                 Setting{1.3f, 0, 0.6f}, Setting{1.0f, 50, 0.9f},
                                 Setting{1.0f, 1, 1.0f}, Setting{1.0f, 0, 1e-6f}}) {
    SCOPED_TRACE(::testing::Message() << "T " << setting.temperature << " k " << setting.top_k
                                      << " p " << setting.top_p);
    // Expected: sorted probabilities, top-k, smallest prefix reaching top_p.
    std::vector<std::pair<float, int>> sorted;
    for (int j = 0; j < vocab; ++j) sorted.push_back({one[j] / setting.temperature, j});
    std::sort(sorted.begin(), sorted.end(), [](auto a, auto b) { return a.first > b.first; });
    if (setting.top_k > 0) sorted.resize(setting.top_k);
    double z = 0.0;
    for (auto& e : sorted) z += std::exp(e.first - sorted[0].first);
    std::map<int, double> expected;
    double mass = 0.0;
    for (auto& e : sorted) {
      const double p = std::exp(e.first - sorted[0].first) / z;
      expected[e.second] = p;
      mass += p;
      if (mass >= setting.top_p) break;
    }
    double kept = 0.0;
    for (auto& [token, p] : expected) kept += p;
    std::vector<float> logits, temperature(rows, setting.temperature), top_p(rows, setting.top_p),
        uniform(rows);
    std::vector<int32_t> top_k(rows, setting.top_k);
    for (int i = 0; i < rows; ++i) {
      logits.insert(logits.end(), one.begin(), one.end());
      uniform[i] = (i + 0.5f) / rows;
    }
    DeviceBuffer dl = Upload(logits), dtemp = Upload(temperature), dk = Upload(top_k),
                 dp = Upload(top_p), du = Upload(uniform), dt = Alloc(rows * sizeof(int32_t));
    SamplingRows params{dtemp.as<float>(), dk.as<int32_t>(), dp.as<float>(), du.as<float>()};
    MTLA_ASSERT_OK(Sample(dl.as<float>(), rows, vocab, params, dt.as<int32_t>(), nullptr));
    std::map<int, int> counts;
    for (int32_t t : Download<int32_t>(dt.data(), rows)) ++counts[t];
    for (auto& [token, count] : counts) {
      ASSERT_TRUE(expected.count(token)) << "token " << token << " is outside the kept set";
      EXPECT_NEAR(static_cast<double>(count) / rows, expected[token] / kept, 0.01) << token;
    }
  }
}

}  // namespace
}  // namespace mtla::cuda::testing
