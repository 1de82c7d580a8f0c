// Paged MTLA decode attention on the GPU: time per call, achieved GB/s over
// the bytes the kernel must read (every visible cache slot once, plus the
// queries and own rows), and that as a fraction of the device-to-device copy
// bandwidth measured in the same run (cudaMemcpy D2D; bytes read + written).
//
// Sweep: batch {1, 8, 64, 128} x context {1k, 4k, 16k} x s {1, 2, 3, 4} at the
// paper's dims (8 heads, r 256, dR 32) and DeepSeek-like dims (128 heads,
// r 512, dR 64). Storage bf16 unless `--dtype=fp16|fp32`. Output: one
// Markdown table on stdout. Without a device it prints the reason and exits 77.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/mtla_attention.h"

namespace mtla::cuda {
namespace {

constexpr int kBlockSlots = 16;

#define BENCH_CHECK(expr)                                                  \
  do {                                                                     \
    const ::absl::Status s_ = (expr);                                      \
    if (!s_.ok()) {                                                        \
      std::fprintf(stderr, "%s: %s\n", #expr, s_.ToString().c_str());      \
      std::exit(1);                                                        \
    }                                                                      \
  } while (0)

template <typename T>
T Must(absl::StatusOr<T> v) {
  if (!v.ok()) {
    std::fprintf(stderr, "%s\n", v.status().ToString().c_str());
    std::exit(1);
  }
  return std::move(v).value();
}

float TimeMs(cudaEvent_t a, cudaEvent_t b) {
  float ms = 0.0f;
  cudaEventElapsedTime(&ms, a, b);
  return ms;
}

// Device-to-device copy bandwidth in GB/s (bytes read + bytes written).
double CopyBandwidth() {
  const size_t bytes = size_t{1} << 30;
  DeviceBuffer a = Must(DeviceBuffer::Allocate(bytes)), b = Must(DeviceBuffer::Allocate(bytes));
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  cudaMemcpy(b.data(), a.data(), bytes, cudaMemcpyDeviceToDevice);
  cudaEventRecord(start);
  const int reps = 10;
  for (int i = 0; i < reps; ++i) cudaMemcpy(b.data(), a.data(), bytes, cudaMemcpyDeviceToDevice);
  cudaEventRecord(stop);
  cudaEventSynchronize(stop);
  return 2.0 * bytes * reps / (TimeMs(start, stop) * 1e-3) / 1e9;
}

struct Dims {
  const char* name;
  int heads, r, dr;
};

}  // namespace
}  // namespace mtla::cuda

int main(int argc, char** argv) {
  using namespace mtla::cuda;
  DType dtype = DType::kBF16;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--dtype=", 8) == 0) {
      auto parsed = ParseDType(argv[i] + 8);
      if (!parsed) return 2;
      dtype = *parsed;
    }
  }
  auto devices = UsableDeviceCount();
  if (!devices.ok()) {
    std::printf("SKIPPED: no CUDA device: %s\n", std::string(devices.status().message()).c_str());
    return 77;
  }
  const std::string device = Must(DeviceDescription(0));
  int sms = 0;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  const double copy_gbs = CopyBandwidth();
  std::printf("# MTLA decode attention, %s, storage %s\n\n", device.c_str(), DTypeName(dtype));
  std::printf("device-to-device copy: %.0f GB/s (read + write)\n\n", copy_gbs);
  std::printf("| dims | batch | context | s | splits | time (us) | GB/s | of copy |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  const Dims all_dims[] = {{"paper H8 r256 dR32", 8, 256, 32},
                           {"DeepSeek-like H128 r512 dR64", 128, 512, 64}};
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  for (const Dims& d : all_dims) {
    const int width = d.r + d.dr;
    for (int batch : {1, 8, 64, 128}) {
      for (int context : {1024, 4096, 16384}) {
        for (int s = 1; s <= 4; ++s) {
          const int64_t slots = (context + s - 1) / s;
          const int64_t blocks_per_seq = (slots + kBlockSlots - 1) / kBlockSlots;
          const int64_t blocks = blocks_per_seq * batch;
          DeviceBuffer pool =
              Must(DeviceBuffer::Allocate(blocks * kBlockSlots * width * DTypeBytes(dtype)));
          cudaMemset(pool.data(), 0x3c, pool.bytes());  // finite values in every dtype
          std::vector<int32_t> tables(blocks);
          std::vector<DeviceChunk> chunks(batch);
          for (int b = 0; b < batch; ++b) {
            // Interleave sequences' blocks so reads are not one contiguous stream.
            for (int64_t k = 0; k < blocks_per_seq; ++k) tables[b * blocks_per_seq + k] = k * batch + b;
            chunks[b].start = context - 1;
            chunks[b].num_tokens = 1;
            chunks[b].token_offset = b;
            chunks[b].block_table_offset = static_cast<int32_t>(b * blocks_per_seq);
          }
          AttentionPlanOptions options;
          options.num_sms = sms;
          options.max_partials = 1 << 14;
          const AttentionPlan plan = BuildAttentionPlan(chunks.data(), batch, s, d.heads, options);
          auto upload = [](const void* data, size_t bytes) {
            DeviceBuffer buffer = Must(DeviceBuffer::Allocate(bytes));
            if (bytes) cudaMemcpy(buffer.data(), data, bytes, cudaMemcpyHostToDevice);
            return buffer;
          };
          DeviceBuffer d_tables = upload(tables.data(), tables.size() * 4);
          DeviceBuffer d_chunks = upload(chunks.data(), chunks.size() * sizeof(DeviceChunk));
          DeviceBuffer d_decode = upload(plan.decode_items.data(),
                                         plan.decode_items.size() * sizeof(AttentionWorkItem));
          DeviceBuffer d_combine = upload(plan.combine_items.data(),
                                          plan.combine_items.size() * sizeof(AttentionCombineItem));
          DeviceBuffer q = Must(DeviceBuffer::Allocate(size_t{4} * batch * d.heads * width));
          DeviceBuffer own = Must(DeviceBuffer::Allocate(size_t{4} * batch * width));
          DeviceBuffer out = Must(DeviceBuffer::Allocate(size_t{4} * batch * d.heads * d.r));
          const int partials = std::max(plan.num_partials, 1);
          DeviceBuffer po = Must(DeviceBuffer::Allocate(size_t{4} * partials * d.heads * d.r));
          DeviceBuffer ps = Must(DeviceBuffer::Allocate(size_t{8} * partials * d.heads));
          cudaMemset(q.data(), 0, q.bytes());
          cudaMemset(own.data(), 0, own.bytes());
          MtlaAttentionParams p;
          p.cache = {pool.data(), dtype, kBlockSlots, d.r, d.dr};
          p.block_tables = d_tables.as<int32_t>();
          p.chunks = d_chunks.as<DeviceChunk>();
          p.down_rate = s;
          p.num_heads = d.heads;
          p.q = q.as<float>();
          p.partial_rows = own.as<float>();
          p.scale = 0.1f;
          p.out = out.as<float>();
          p.partial_out = po.as<float>();
          p.partial_stats = ps.as<float>();
          AttentionPlanDevice dp;
          dp.decode_items = d_decode.as<AttentionWorkItem>();
          dp.num_decode = static_cast<int>(plan.decode_items.size());
          dp.combine_items = d_combine.as<AttentionCombineItem>();
          dp.num_combine = static_cast<int>(plan.combine_items.size());
          for (int i = 0; i < 3; ++i) BENCH_CHECK(MtlaAttention(p, dp, nullptr));
          const int reps = 20;
          cudaEventRecord(start);
          for (int i = 0; i < reps; ++i) BENCH_CHECK(MtlaAttention(p, dp, nullptr));
          cudaEventRecord(stop);
          cudaEventSynchronize(stop);
          BENCH_CHECK(CudaStatus(cudaGetLastError(), "decode attention"));
          const double seconds = TimeMs(start, stop) * 1e-3 / reps;
          const double visible = static_cast<double>((context - 1) / s);
          const double bytes = batch * (visible * width * DTypeBytes(dtype) +
                                        4.0 * (d.heads + 1) * width);
          const double gbs = bytes / seconds / 1e9;
          const int splits = plan.decode_items.empty() ? 0 : plan.decode_items[0].num_splits;
          std::printf("| %s | %d | %d | %d | %d | %.1f | %.0f | %.2f |\n", d.name, batch, context,
                      s, splits, seconds * 1e6, gbs, gbs / copy_gbs);
          std::fflush(stdout);
        }
      }
    }
  }
  return 0;
}
