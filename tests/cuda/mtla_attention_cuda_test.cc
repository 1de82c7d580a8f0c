// The CUDA MTLA attention kernels (decode, stride-aware prefill, split-KV
// combine) against the CPU reference cpu::MtlaAttention on fresh random data.
//
// Sweep: (r, dR) in {(256, 32), (512, 64), (128, 16), (64, 8), (32, 8)} with
// head counts that are and are not multiples of 8; s = 1..4; batch 1..128;
// contexts 1..8192 including lengths that are not multiples of s or of the
// block size; prefill chunks mixed with decode tokens; block tables shuffled;
// unused blocks, slots the queries must not see and the unused tail of each
// last block hold NaN. Each case runs with the planner's split choice, with
// one split per item and with as many splits as allowed.
//
// Tolerances (||out - ref|| / ||ref||):
//   against the reference on the same stored (rounded) cache: 1e-4 for every
//     dtype (both compute in float32; only summation order and exp differ);
//   against the reference on the unrounded float32 cache: the dtype's storage
//     tolerance (fp32 1e-5, fp16 2e-3, bf16 1.6e-2).
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/mtla_cpu.h"
#include "kernels/cuda/mtla_attention.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/cuda/paged_test_layout.h"

namespace mtla::cuda::testing {
namespace {

struct AttentionCase {
  std::string name;
  int r = 256, dr = 32, heads = 8, down_rate = 2, block_slots = 16;
  DType dtype = DType::kF32;
  std::vector<SequenceSpec> seqs;
};

void PrintTo(const AttentionCase& c, std::ostream* os) { *os << c.name; }

constexpr double kSameInputTolerance = 1e-4;

std::vector<SequenceSpec> DecodeBatch(int batch, int down_rate, int block_slots,
                                      std::mt19937& rng) {
  // Edge lengths first, then random contexts up to 8192.
  const int64_t bt = static_cast<int64_t>(block_slots) * down_rate;
  std::vector<int64_t> lengths = {8192, 1, down_rate, down_rate + 1, bt, bt + 1, bt - 1, 8191,
                                  3 * bt + down_rate - 1};
  std::uniform_int_distribution<int64_t> dist(1, 8192);
  std::vector<SequenceSpec> seqs;
  for (int b = 0; b < batch; ++b) {
    const int64_t len = b < static_cast<int>(lengths.size()) ? lengths[b] : dist(rng);
    seqs.push_back({std::max<int64_t>(len, 1) - 1, 1});
  }
  return seqs;
}

std::vector<SequenceSpec> PrefillBatch(int down_rate, int block_slots, std::mt19937& rng) {
  std::uniform_int_distribution<int64_t> start(1, 3000);
  return {{0, 37},
          {start(rng), 130},
          {static_cast<int64_t>(block_slots) * down_rate - 1, 5},
          {7, 1},
          {0, 1},
          {start(rng), 2},
          {0, 4 * block_slots * down_rate + 3}};
}

std::vector<AttentionCase> Cases() {
  struct Dims {
    int r, dr, heads;
  };
  const Dims dims[] = {{256, 32, 8}, {512, 64, 16}, {128, 16, 4}, {64, 8, 12}, {32, 8, 1}};
  const DType dtypes[] = {DType::kF32, DType::kF16, DType::kBF16};
  const int batches[] = {1, 8, 33, 128};
  std::vector<AttentionCase> cases;
  std::mt19937 rng(1234);
  for (const Dims& d : dims) {
    for (int t = 0; t < 3; ++t) {
      for (int s = 1; s <= 4; ++s) {
        AttentionCase c;
        c.r = d.r;
        c.dr = d.dr;
        c.heads = d.heads;
        c.down_rate = s;
        c.dtype = dtypes[t];
        c.block_slots = (s + t) % 2 == 0 ? 16 : 7;
        const int batch = batches[(t + s) % 4];
        c.seqs = DecodeBatch(batch, s, c.block_slots, rng);
        c.name = absl::StrCat("decode_r", d.r, "_dr", d.dr, "_h", d.heads, "_s", s, "_",
                              DTypeName(c.dtype), "_b", batch, "_bs", c.block_slots);
        cases.push_back(c);
        c.seqs = PrefillBatch(s, c.block_slots, rng);
        c.name = absl::StrCat("prefill_r", d.r, "_dr", d.dr, "_h", d.heads, "_s", s, "_",
                              DTypeName(c.dtype), "_bs", c.block_slots);
        cases.push_back(c);
      }
    }
  }
  // DeepSeek-like head count.
  AttentionCase c;
  c.r = 512;
  c.dr = 64;
  c.heads = 128;
  c.down_rate = 2;
  c.dtype = DType::kBF16;
  c.seqs = DecodeBatch(4, 2, 16, rng);
  c.name = "decode_r512_dr64_h128_s2_bf16_b4";
  cases.push_back(c);
  return cases;
}

class MtlaAttentionCudaTest : public ::testing::TestWithParam<AttentionCase> {};

TEST_P(MtlaAttentionCudaTest, MatchesCpuReference) {
  MTLA_SKIP_WITHOUT_CUDA();
  const AttentionCase& c = GetParam();
  std::mt19937 rng(std::hash<std::string>()(c.name));
  const int width = c.r + c.dr;
  const PagedLayout layout = MakePagedLayout(c.seqs, c.down_rate, c.block_slots, 3, rng);
  const int64_t n = layout.num_tokens;

  // Pool: NaN except the complete slots the step's queries may see.
  std::vector<float> pool(static_cast<size_t>(layout.num_blocks) * c.block_slots * width,
                          std::numeric_limits<float>::quiet_NaN());
  for (size_t i = 0; i < c.seqs.size(); ++i) {
    const int64_t end = c.seqs[i].start + c.seqs[i].num_tokens;
    const int64_t visible = (end - 1) / c.down_rate;
    for (int64_t slot = 0; slot < visible; ++slot) {
      const std::vector<float> row = RandomVector(width, rng);
      std::copy(row.begin(), row.end(),
                pool.begin() + SlotOffset(layout, i, slot, c.block_slots, width));
    }
  }
  const std::vector<float> q = RandomVector(n * c.heads * width, rng);
  const std::vector<float> partial = RandomVector(n * width, rng);
  const float scale = 1.0f / std::sqrt(static_cast<float>(64 + c.dr));

  DeviceBuffer d_pool = UploadAs(pool, c.dtype);
  const std::vector<float> stored = DownloadAsFloat(d_pool.data(), c.dtype, pool.size());

  auto cpu_reference = [&](std::vector<float>& cache) {
    std::vector<float> out(n * c.heads * c.r);
    cpu::MtlaAttentionParams p;
    p.cache = {cache.data(), c.block_slots, c.r, c.dr};
    p.chunks = layout.cpu_chunks.data();
    p.num_chunks = static_cast<int>(layout.cpu_chunks.size());
    p.down_rate = c.down_rate;
    p.num_heads = c.heads;
    p.q = q.data();
    p.partial_rows = partial.data();
    p.scale = scale;
    p.out = out.data();
    cpu::MtlaAttention(p);
    return out;
  };
  std::vector<float> stored_copy = stored;
  const std::vector<float> ref_stored = cpu_reference(stored_copy);
  const std::vector<float> ref_exact = cpu_reference(pool);

  DeviceBuffer d_tables = Upload(layout.block_tables);
  DeviceBuffer d_chunks = Upload(layout.chunks);
  DeviceBuffer d_q = Upload(q);
  DeviceBuffer d_partial = Upload(partial);
  DeviceBuffer d_out = Alloc(n * c.heads * c.r * sizeof(float));
  const int max_partials = 4096;
  DeviceBuffer d_partial_out = Alloc(static_cast<size_t>(max_partials) * c.heads * c.r * 4);
  DeviceBuffer d_partial_stats = Alloc(static_cast<size_t>(max_partials) * c.heads * 2 * 4);
  int sms = 0;
  ASSERT_EQ(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0), cudaSuccess);

  struct Mode {
    const char* name;
    AttentionPlanOptions options;
  };
  std::vector<Mode> modes(3);
  modes[0].name = "planner";
  modes[0].options.num_sms = sms;
  modes[1].name = "single_split";
  modes[1].options.force_single_split = true;
  modes[2].name = "many_splits";
  modes[2].options.num_sms = 100000;
  modes[2].options.min_split_slots = kKvTile;
  for (Mode& mode : modes) {
    SCOPED_TRACE(mode.name);
    mode.options.max_partials = max_partials;
    const AttentionPlan plan =
        BuildAttentionPlan(layout.chunks.data(), static_cast<int>(layout.chunks.size()),
                           c.down_rate, c.heads, mode.options);
    DeviceBuffer d_decode = Upload(plan.decode_items);
    DeviceBuffer d_prefill = Upload(plan.prefill_items);
    DeviceBuffer d_combine = Upload(plan.combine_items);
    AttentionPlanDevice dplan;
    dplan.decode_items = d_decode.as<AttentionWorkItem>();
    dplan.num_decode = static_cast<int>(plan.decode_items.size());
    dplan.prefill_items = d_prefill.as<AttentionWorkItem>();
    dplan.num_prefill = static_cast<int>(plan.prefill_items.size());
    dplan.combine_items = d_combine.as<AttentionCombineItem>();
    dplan.num_combine = static_cast<int>(plan.combine_items.size());

    MtlaAttentionParams p;
    p.cache = {d_pool.data(), c.dtype, c.block_slots, c.r, c.dr};
    p.block_tables = d_tables.as<int32_t>();
    p.chunks = d_chunks.as<DeviceChunk>();
    p.down_rate = c.down_rate;
    p.num_heads = c.heads;
    p.q = d_q.as<float>();
    p.partial_rows = d_partial.as<float>();
    p.scale = scale;
    p.out = d_out.as<float>();
    p.partial_out = d_partial_out.as<float>();
    p.partial_stats = d_partial_stats.as<float>();
    ASSERT_EQ(cudaMemset(d_out.data(), 0xff, d_out.bytes()), cudaSuccess);  // NaN
    MTLA_ASSERT_OK(MtlaAttention(p, dplan, nullptr));
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const std::vector<float> out = Download<float>(d_out.data(), n * c.heads * c.r);
    const double err_stored = RelativeError(out, ref_stored);
    const double err_exact = RelativeError(out, ref_exact);
    EXPECT_LE(err_stored, kSameInputTolerance);
    EXPECT_LE(err_exact, StorageTolerance(c.dtype));
    RecordProperty(absl::StrCat(mode.name, "_err"), std::to_string(err_stored));
  }
}

INSTANTIATE_TEST_SUITE_P(Sweep, MtlaAttentionCudaTest, ::testing::ValuesIn(Cases()),
                         [](const auto& info) { return info.param.name; });

TEST(MtlaAttentionCuda, RejectsUnsupportedDims) {
  MTLA_SKIP_WITHOUT_CUDA();
  MtlaAttentionParams p;
  p.cache.kv_lora_rank = 96;
  p.cache.rope_dim = 32;
  p.num_heads = 8;
  const absl::Status status = MtlaAttention(p, AttentionPlanDevice(), nullptr);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
}

TEST(MtlaAttentionPlan, SplitsCoverEveryVisibleSlotOnce) {
  // Host-only: runs without a device.
  std::mt19937 rng(7);
  const std::vector<SequenceSpec> seqs = {{8191, 1}, {0, 1}, {100, 9}, {4000, 1}};
  const PagedLayout layout = MakePagedLayout(seqs, 3, 16, 0, rng);
  AttentionPlanOptions options;
  options.num_sms = 1000;
  options.min_split_slots = kKvTile;
  const AttentionPlan plan = BuildAttentionPlan(layout.chunks.data(), 4, 3, 8, options);
  std::vector<int64_t> covered(4, 0);
  for (const auto* items : {&plan.decode_items, &plan.prefill_items}) {
    for (const AttentionWorkItem& item : *items) {
      EXPECT_LE(item.slot_begin, item.slot_end);
      EXPECT_EQ(item.slot_begin % kKvTile, 0);
      if (item.first_query + item.num_queries == seqs[item.chunk].num_tokens) {
        covered[item.chunk] += item.slot_end - item.slot_begin;
      }
    }
  }
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(covered[i], (seqs[i].start + seqs[i].num_tokens - 1) / 3) << "sequence " << i;
  }
  EXPECT_GT(plan.combine_items.size(), 0u);
  EXPECT_LE(plan.num_partials, options.max_partials);
}

}  // namespace
}  // namespace mtla::cuda::testing
