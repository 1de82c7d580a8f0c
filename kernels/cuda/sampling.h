// Token selection on the device: greedy argmax and temperature / top-k /
// top-p sampling, one CTA per logits row. Same rules as RequestSampler
// (engine/sampling/sampler.h): greedy takes the first maximum; otherwise
// logits / temperature, keep the top_k largest (0: all), keep the smallest
// set of most probable tokens whose mass reaches top_p (at least one token),
// renormalize and draw with the caller's uniform number u in [0, 1).
// The draw walks the kept tokens in index order (the CPU walks them in
// probability order), so a given u may pick another token than the CPU;
// the distribution is the same.
#ifndef MTLA_KERNELS_CUDA_SAMPLING_H_
#define MTLA_KERNELS_CUDA_SAMPLING_H_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"

namespace mtla::cuda {

// tokens[i] = argmax over logits[i, 0 .. vocab) (first maximum on ties).
absl::Status ArgMax(const float* logits, int64_t rows, int vocab, int32_t* tokens,
                    cudaStream_t stream);

// Per-row parameters (device arrays of `rows` entries).
struct SamplingRows {
  const float* temperature = nullptr;  // > 0 (rows with 0 are greedy)
  const int32_t* top_k = nullptr;      // 0: no limit
  const float* top_p = nullptr;        // (0, 1]
  const float* uniform = nullptr;      // u in [0, 1)
};
absl::Status Sample(const float* logits, int64_t rows, int vocab, const SamplingRows& params,
                    int32_t* tokens, cudaStream_t stream);

}  // namespace mtla::cuda

#endif  // MTLA_KERNELS_CUDA_SAMPLING_H_
