// The CUDA slot merge/append kernel against cpu::MtlaAppend, and the
// speech-prefix pipeline (keys without queries, then a prefill chunk and
// decode steps: append + attention) against the CPU kernels doing the same.
//
// Each case appends in two steps (tokens [0, start) then [start, end)) so
// that slots continued across steps are covered; lengths are not multiples of
// s or of the block size; block tables are shuffled; the pool starts as NaN
// and every element no token was written to must still be NaN afterwards.
//
// Tolerances (||out - ref|| / ||ref||): the CPU reference continues from the
// device's stored first-step cache, so the second step differs by the
// storage rounding of the merged slots: fp32 1e-5, fp16 2e-3, bf16 1.6e-2;
// partial rows (float32 on both sides) 1e-5 for fp32, else the same as the
// cache.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/mtla_cpu.h"
#include "kernels/cuda/mtla_append.h"
#include "kernels/cuda/mtla_attention.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/cuda/paged_test_layout.h"

namespace mtla::cuda::testing {
namespace {

struct AppendCase {
  std::string name;
  int r = 256, dr = 32, down_rate = 2, block_slots = 16;
  DType dtype = DType::kF32;
  std::vector<SequenceSpec> seqs;  // step 1 appends [0, start), step 2 [start, start + n)
};

void PrintTo(const AppendCase& c, std::ostream* os) { *os << c.name; }

std::vector<AppendCase> Cases() {
  const int dims[][2] = {{256, 32}, {512, 64}, {128, 16}, {64, 8}, {32, 8}};
  const DType dtypes[] = {DType::kF32, DType::kF16, DType::kBF16};
  std::vector<AppendCase> cases;
  for (int d = 0; d < 5; ++d) {
    for (int t = 0; t < 3; ++t) {
      for (int s = 1; s <= 4; ++s) {
        AppendCase c;
        c.r = dims[d][0];
        c.dr = dims[d][1];
        c.down_rate = s;
        c.dtype = dtypes[t];
        c.block_slots = (d + s) % 2 == 0 ? 16 : 5;
        const int64_t bt = static_cast<int64_t>(c.block_slots) * s;
        c.seqs = {{0, 1}, {1, 1}, {s, 2 * s + 1}, {bt - 1, 1}, {bt + 1, 3},
                  {8191, 1}, {100, 700}, {0, 8192 / (d + 1)}};
        c.name = absl::StrCat("r", c.r, "_dr", c.dr, "_s", s, "_", DTypeName(c.dtype), "_bs",
                              c.block_slots);
        cases.push_back(c);
      }
    }
  }
  return cases;
}

// Host inputs of one append call over `n` rows.
struct AppendInputs {
  std::vector<float> kv;       // [n, r + dR]: latent | k_pe (ld = width, as the backend)
  std::vector<float> hyper_p;  // [n, hyper_rank]
};

AppendInputs RandomInputs(int64_t n, int width, int hyper_rank, std::mt19937& rng) {
  return {RandomVector(n * width, rng), RandomVector(n * hyper_rank, rng, 0.3f)};
}

struct AppendStep {
  PagedLayout layout;  // chunks of this step (shares block ids with the other step)
};

class MtlaAppendCudaTest : public ::testing::TestWithParam<AppendCase> {};

TEST_P(MtlaAppendCudaTest, MatchesCpuReference) {
  MTLA_SKIP_WITHOUT_CUDA();
  const AppendCase& c = GetParam();
  std::mt19937 rng(std::hash<std::string>()(c.name));
  const int width = c.r + c.dr;
  const int hyper_rank = c.r / 4;
  // One layout for the whole sequences; the two steps are views of it.
  std::vector<SequenceSpec> whole;
  for (const SequenceSpec& s : c.seqs) whole.push_back({0, static_cast<int>(s.start + s.num_tokens)});
  const PagedLayout full = MakePagedLayout(whole, c.down_rate, c.block_slots, 2, rng);
  auto step_layout = [&](bool first) {
    PagedLayout step = full;
    step.num_tokens = 0;
    for (size_t i = 0; i < c.seqs.size(); ++i) {
      const int64_t start = first ? 0 : c.seqs[i].start;
      const int count = first ? static_cast<int>(c.seqs[i].start) : c.seqs[i].num_tokens;
      step.chunks[i].start = start;
      step.chunks[i].num_tokens = count;
      step.chunks[i].token_offset = step.num_tokens;
      step.cpu_chunks[i].start = start;
      step.cpu_chunks[i].num_tokens = count;
      step.cpu_chunks[i].token_offset = step.num_tokens;
      step.cpu_chunks[i].block_table = nullptr;  // set below against the copy's tables
      step.num_tokens += count;
    }
    for (size_t i = 0; i < step.chunks.size(); ++i) {
      step.cpu_chunks[i].block_table = step.block_tables.data() + step.chunks[i].block_table_offset;
    }
    return step;
  };
  const PagedLayout steps[2] = {step_layout(true), step_layout(false)};
  int64_t max_slots = 0;
  for (const SequenceSpec& s : whole) max_slots = std::max<int64_t>(max_slots, s.num_tokens);
  const std::vector<float> hyper_c = RandomVector(max_slots * hyper_rank, rng, 0.3f);

  const size_t pool_size = static_cast<size_t>(full.num_blocks) * c.block_slots * width;
  DeviceBuffer d_pool = UploadAs(
      std::vector<float>(pool_size, std::numeric_limits<float>::quiet_NaN()), c.dtype);
  DeviceBuffer d_tables = Upload(full.block_tables);
  DeviceBuffer d_hyper_c = Upload(hyper_c);

  std::vector<float> cpu_pool;
  for (int step = 0; step < 2; ++step) {
    SCOPED_TRACE(step == 0 ? "first step" : "second step");
    const PagedLayout& layout = steps[step];
    const int64_t n = layout.num_tokens;
    const AppendInputs in = RandomInputs(n, width, hyper_rank, rng);
    // The CPU continues from what the device stored.
    cpu_pool = DownloadAsFloat(d_pool.data(), c.dtype, pool_size);
    std::vector<float> cpu_partial(n * width);
    cpu::MtlaAppendParams cp;
    cp.cache = {cpu_pool.data(), c.block_slots, c.r, c.dr};
    cp.chunks = layout.cpu_chunks.data();
    cp.num_chunks = static_cast<int>(layout.cpu_chunks.size());
    cp.down_rate = c.down_rate;
    cp.latent = in.kv.data();
    cp.ld_latent = width;
    cp.k_pe = in.kv.data() + c.r;
    cp.ld_k_pe = width;
    cp.hyper_p = in.hyper_p.data();
    cp.hyper_c = hyper_c.data();
    cp.hyper_c_rows = max_slots;
    cp.hyper_rank = hyper_rank;
    cp.partial_rows = cpu_partial.data();
    cpu::MtlaAppend(cp);

    DeviceBuffer d_chunks = Upload(layout.chunks);
    DeviceBuffer d_kv = Upload(in.kv);
    DeviceBuffer d_hyper_p = Upload(in.hyper_p);
    DeviceBuffer d_partial = Alloc(std::max<int64_t>(n, 1) * width * sizeof(float));
    MtlaAppendParams p;
    p.cache = {d_pool.data(), c.dtype, c.block_slots, c.r, c.dr};
    p.block_tables = d_tables.as<int32_t>();
    p.chunks = d_chunks.as<DeviceChunk>();
    p.num_chunks = static_cast<int>(layout.chunks.size());
    for (const DeviceChunk& chunk : layout.chunks) {
      p.max_chunk_slots =
          std::max(p.max_chunk_slots, ChunkSlots(chunk.start, chunk.num_tokens, c.down_rate));
    }
    p.down_rate = c.down_rate;
    p.latent = d_kv.as<float>();
    p.ld_latent = width;
    p.k_pe = d_kv.as<float>() + c.r;
    p.ld_k_pe = width;
    p.hyper_p = d_hyper_p.as<float>();
    p.hyper_c = d_hyper_c.as<float>();
    p.hyper_rank = hyper_rank;
    p.partial_rows = d_partial.as<float>();
    MTLA_ASSERT_OK(MtlaAppend(p, nullptr));
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);

    const std::vector<float> gpu_pool = DownloadAsFloat(d_pool.data(), c.dtype, pool_size);
    const std::vector<float> gpu_partial = Download<float>(d_partial.data(), n * width);
    // Elements written so far must match; all others must still be NaN.
    std::vector<bool> written(pool_size, false);
    for (size_t i = 0; i < c.seqs.size(); ++i) {
      const int64_t end = layout.chunks[i].start + layout.chunks[i].num_tokens;
      const int64_t slots = (end + c.down_rate - 1) / c.down_rate;
      for (int64_t slot = 0; slot < slots; ++slot) {
        const int64_t off = SlotOffset(full, i, slot, c.block_slots, width);
        for (int k = 0; k < width; ++k) written[off + k] = true;
      }
    }
    int64_t stray = 0;
    for (size_t e = 0; e < pool_size; ++e) stray += !written[e] && !std::isnan(gpu_pool[e]);
    EXPECT_EQ(stray, 0) << "elements written outside the sequences' slots";
    EXPECT_LE(RelativeError(gpu_pool, cpu_pool, written), StorageTolerance(c.dtype));
    EXPECT_LE(RelativeError(gpu_partial, cpu_partial), StorageTolerance(c.dtype));
  }
}

INSTANTIATE_TEST_SUITE_P(Sweep, MtlaAppendCudaTest, ::testing::ValuesIn(Cases()),
                         [](const auto& info) { return info.param.name; });

// Speech prefix: P keys without queries, then a prefill chunk of tokens, then
// decode steps, through append + attention on both backends, all in fp32.
TEST(MtlaPrefixPipelineCuda, PrefixThenPrefillThenDecodeMatchesCpu) {
  MTLA_SKIP_WITHOUT_CUDA();
  std::mt19937 rng(99);
  const int r = 256, dr = 32, width = r + dr, heads = 8, s = 3, bs = 16, hyper_rank = r / 4;
  const int prefix = 101, prompt = 9, decode_steps = 5;
  const int total = prefix + prompt + decode_steps;
  const PagedLayout full = MakePagedLayout({{0, total}}, s, bs, 2, rng);
  const size_t pool_size = static_cast<size_t>(full.num_blocks) * bs * width;
  std::vector<float> cpu_pool(pool_size, std::numeric_limits<float>::quiet_NaN());
  DeviceBuffer d_pool = UploadAs(cpu_pool, DType::kF32);
  DeviceBuffer d_tables = Upload(full.block_tables);
  const std::vector<float> hyper_c = RandomVector((total / s + 1) * hyper_rank, rng, 0.3f);
  DeviceBuffer d_hyper_c = Upload(hyper_c);
  const float scale = 1.0f / std::sqrt(96.0f);

  auto run_step = [&](int64_t start, int count, bool with_queries) {
    SCOPED_TRACE(absl::StrCat("start ", start, " count ", count));
    DeviceChunk chunk;
    chunk.start = start;
    chunk.num_tokens = count;
    const cpu::SequenceChunk cpu_chunk{full.block_tables.data(), start, count, 0};
    const AppendInputs in = RandomInputs(count, width, hyper_rank, rng);
    const std::vector<float> q = RandomVector(count * heads * width, rng);
    std::vector<float> cpu_partial(count * width), cpu_out(count * heads * r);
    cpu::MtlaAppendParams ca;
    ca.cache = {cpu_pool.data(), bs, r, dr};
    ca.chunks = &cpu_chunk;
    ca.num_chunks = 1;
    ca.down_rate = s;
    ca.latent = in.kv.data();
    ca.ld_latent = width;
    ca.k_pe = in.kv.data() + r;
    ca.ld_k_pe = width;
    ca.hyper_p = in.hyper_p.data();
    ca.hyper_c = hyper_c.data();
    ca.hyper_c_rows = total / s + 1;
    ca.hyper_rank = hyper_rank;
    ca.partial_rows = with_queries ? cpu_partial.data() : nullptr;
    cpu::MtlaAppend(ca);

    DeviceBuffer d_chunk = Upload(std::vector<DeviceChunk>{chunk});
    DeviceBuffer d_kv = Upload(in.kv);
    DeviceBuffer d_hyper_p = Upload(in.hyper_p);
    DeviceBuffer d_partial = Alloc(count * width * sizeof(float));
    MtlaAppendParams a;
    a.cache = {d_pool.data(), DType::kF32, bs, r, dr};
    a.block_tables = d_tables.as<int32_t>();
    a.chunks = d_chunk.as<DeviceChunk>();
    a.num_chunks = 1;
    a.max_chunk_slots = ChunkSlots(start, count, s);
    a.down_rate = s;
    a.latent = d_kv.as<float>();
    a.ld_latent = width;
    a.k_pe = d_kv.as<float>() + r;
    a.ld_k_pe = width;
    a.hyper_p = d_hyper_p.as<float>();
    a.hyper_c = d_hyper_c.as<float>();
    a.hyper_rank = hyper_rank;
    a.partial_rows = with_queries ? d_partial.as<float>() : nullptr;
    MTLA_ASSERT_OK(MtlaAppend(a, nullptr));
    if (!with_queries) return;

    cpu::MtlaAttentionParams cq;
    cq.cache = ca.cache;
    cq.chunks = &cpu_chunk;
    cq.num_chunks = 1;
    cq.down_rate = s;
    cq.num_heads = heads;
    cq.q = q.data();
    cq.partial_rows = cpu_partial.data();
    cq.scale = scale;
    cq.out = cpu_out.data();
    cpu::MtlaAttention(cq);

    AttentionPlanOptions options;
    options.min_split_slots = kKvTile;
    options.num_sms = 1000;
    const AttentionPlan plan = BuildAttentionPlan(&chunk, 1, s, heads, options);
    DeviceBuffer d_decode = Upload(plan.decode_items);
    DeviceBuffer d_prefill = Upload(plan.prefill_items);
    DeviceBuffer d_combine = Upload(plan.combine_items);
    DeviceBuffer d_q = Upload(q);
    DeviceBuffer d_out = Alloc(count * heads * r * sizeof(float));
    DeviceBuffer d_po = Alloc(std::max(plan.num_partials, 1) * heads * r * sizeof(float));
    DeviceBuffer d_ps = Alloc(std::max(plan.num_partials, 1) * heads * 2 * sizeof(float));
    MtlaAttentionParams p;
    p.cache = a.cache;
    p.block_tables = a.block_tables;
    p.chunks = a.chunks;
    p.down_rate = s;
    p.num_heads = heads;
    p.q = d_q.as<float>();
    p.partial_rows = d_partial.as<float>();
    p.scale = scale;
    p.out = d_out.as<float>();
    p.partial_out = d_po.as<float>();
    p.partial_stats = d_ps.as<float>();
    AttentionPlanDevice dp;
    dp.decode_items = d_decode.as<AttentionWorkItem>();
    dp.num_decode = static_cast<int>(plan.decode_items.size());
    dp.prefill_items = d_prefill.as<AttentionWorkItem>();
    dp.num_prefill = static_cast<int>(plan.prefill_items.size());
    dp.combine_items = d_combine.as<AttentionCombineItem>();
    dp.num_combine = static_cast<int>(plan.combine_items.size());
    MTLA_ASSERT_OK(MtlaAttention(p, dp, nullptr));
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_LE(RelativeError(Download<float>(d_out.data(), cpu_out.size()), cpu_out), 1e-4);
  };
  run_step(0, prefix, /*with_queries=*/false);
  run_step(prefix, prompt, /*with_queries=*/true);
  for (int i = 0; i < decode_steps; ++i) run_step(prefix + prompt + i, 1, /*with_queries=*/true);
  const std::vector<float> gpu_pool = DownloadAsFloat(d_pool.data(), DType::kF32, pool_size);
  std::vector<bool> finite(pool_size);
  for (size_t e = 0; e < pool_size; ++e) finite[e] = !std::isnan(cpu_pool[e]);
  EXPECT_LE(RelativeError(gpu_pool, cpu_pool, finite), 1e-5);
}

}  // namespace
}  // namespace mtla::cuda::testing
