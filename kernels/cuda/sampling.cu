#include "kernels/cuda/sampling.h"

#include <cub/block/block_scan.cuh>

#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/cuda_status.h"

namespace mtla::cuda {
namespace {

constexpr int kThreads = 512;
constexpr int kBisectSteps = 48;

__global__ void __launch_bounds__(kThreads)
    ArgMaxKernel(const float* logits, int vocab, int32_t* tokens) {
  __shared__ float best_v[kThreads];
  __shared__ int best_i[kThreads];
  const float* row = logits + static_cast<int64_t>(blockIdx.x) * vocab;
  float v = -INFINITY;
  int index = vocab;  // larger than any real index
  for (int j = threadIdx.x; j < vocab; j += kThreads) {
    if (row[j] > v) {  // strict: keeps this thread's first maximum
      v = row[j];
      index = j;
    }
  }
  best_v[threadIdx.x] = v;
  best_i[threadIdx.x] = index;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) {
      const float ov = best_v[threadIdx.x + stride];
      const int oi = best_i[threadIdx.x + stride];
      if (ov > best_v[threadIdx.x] || (ov == best_v[threadIdx.x] && oi < best_i[threadIdx.x])) {
        best_v[threadIdx.x] = ov;
        best_i[threadIdx.x] = oi;
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) tokens[blockIdx.x] = best_i[0] < vocab ? best_i[0] : 0;
}

// Number of scaled logits >= threshold.
__device__ float CountAtLeast(const float* row, int vocab, float inv_t, float threshold,
                              float* scratch) {
  float count = 0.0f;
  for (int j = threadIdx.x; j < vocab; j += kThreads) count += row[j] * inv_t >= threshold;
  return BlockSum(count, scratch);
}

// Mass of exp(x - max) over kept logits x >= threshold (x also >= cut_k).
__device__ float MassAtLeast(const float* row, int vocab, float inv_t, float max_x, float cut_k,
                             float threshold, float* scratch) {
  float mass = 0.0f;
  for (int j = threadIdx.x; j < vocab; j += kThreads) {
    const float x = row[j] * inv_t;
    if (x >= cut_k && x >= threshold) mass += expf(x - max_x);
  }
  return BlockSum(mass, scratch);
}

__global__ void __launch_bounds__(kThreads)
    SampleKernel(const float* logits, int vocab, SamplingRows params, int32_t* tokens) {
  using BlockScan = cub::BlockScan<float, kThreads>;
  __shared__ typename BlockScan::TempStorage scan_storage;
  __shared__ float scratch[32];
  __shared__ int found;
  const int row_index = blockIdx.x;
  const float* row = logits + static_cast<int64_t>(row_index) * vocab;
  const float temperature = params.temperature[row_index];
  if (!(temperature > 0.0f)) {
    // Greedy rows are rare here; a single thread keeps the code short.
    if (threadIdx.x == 0) {
      int best = 0;
      for (int j = 1; j < vocab; ++j)
        if (row[j] > row[best]) best = j;
      tokens[row_index] = best;
    }
    return;
  }
  const float inv_t = 1.0f / temperature;
  float local_max = -INFINITY, local_min = INFINITY;
  for (int j = threadIdx.x; j < vocab; j += kThreads) {
    local_max = fmaxf(local_max, row[j] * inv_t);
    local_min = fminf(local_min, row[j] * inv_t);
  }
  const float max_x = BlockMax(local_max, scratch);
  const float min_x = -BlockMax(-local_min, scratch);

  // Top-k: the largest threshold that keeps at least k logits (bisection).
  float cut_k = min_x;
  const int k = params.top_k[row_index];
  if (k > 0 && k < vocab) {
    float lo = min_x, hi = max_x;  // count(lo) >= k; shrink towards the k-th value
    for (int step = 0; step < kBisectSteps; ++step) {
      const float mid = 0.5f * (lo + hi);
      if (mid <= lo || mid >= hi) break;
      if (CountAtLeast(row, vocab, inv_t, mid, scratch) >= k) lo = mid; else hi = mid;
    }
    cut_k = lo;
  }
  // Top-p: the largest threshold whose kept mass still reaches top_p.
  const float total = MassAtLeast(row, vocab, inv_t, max_x, cut_k, cut_k, scratch);
  float cut = cut_k;
  const float top_p = params.top_p[row_index];
  if (top_p < 1.0f) {
    float lo = cut_k, hi = max_x;
    for (int step = 0; step < kBisectSteps; ++step) {
      const float mid = 0.5f * (lo + hi);
      if (mid <= lo || mid >= hi) break;
      if (MassAtLeast(row, vocab, inv_t, max_x, cut_k, mid, scratch) >= top_p * total) lo = mid;
      else hi = mid;
    }
    // hi keeps too little mass unless it is the maximum itself (one token).
    cut = MassAtLeast(row, vocab, inv_t, max_x, cut_k, hi, scratch) >= top_p * total ? hi : lo;
  }
  const float kept = MassAtLeast(row, vocab, inv_t, max_x, cut_k, cut, scratch);
  const float target = params.uniform[row_index] * kept;
  // Inverse CDF over the kept tokens in index order.
  if (threadIdx.x == 0) found = -1;
  int last_kept = -1;
  float running = 0.0f;
  for (int base = 0; base < vocab; base += kThreads) {
    const int j = base + threadIdx.x;
    float mass = 0.0f;
    if (j < vocab) {
      const float x = row[j] * inv_t;
      if (x >= cut_k && x >= cut) {
        mass = expf(x - max_x);
        last_kept = j;
      }
    }
    float inclusive, chunk_total;
    __syncthreads();
    BlockScan(scan_storage).InclusiveSum(mass, inclusive, chunk_total);
    if (mass > 0.0f && running + inclusive > target && running + inclusive - mass <= target) {
      atomicCAS(&found, -1, j);
    }
    running += chunk_total;
    __syncthreads();
    if (found >= 0) break;
  }
  // Rounding can leave target just above the last prefix sum: take the last kept token.
  const float best_last = BlockMax(static_cast<float>(last_kept), scratch);
  if (threadIdx.x == 0) tokens[row_index] = found >= 0 ? found : static_cast<int>(best_last);
}

}  // namespace

absl::Status ArgMax(const float* logits, int64_t rows, int vocab, int32_t* tokens,
                    cudaStream_t stream) {
  if (rows == 0) return absl::OkStatus();
  ArgMaxKernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(logits, vocab, tokens);
  return LaunchStatus("ArgMaxKernel");
}

absl::Status Sample(const float* logits, int64_t rows, int vocab, const SamplingRows& params,
                    int32_t* tokens, cudaStream_t stream) {
  if (rows == 0) return absl::OkStatus();
  SampleKernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(logits, vocab, params,
                                                                      tokens);
  return LaunchStatus("SampleKernel");
}

}  // namespace mtla::cuda
