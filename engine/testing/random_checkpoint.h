// Writes safetensors checkpoints of random weights for a DecoderSpec, for
// benchmarks and tests that need a model of given dimensions but no trained
// weights.
#ifndef MTLA_ENGINE_TESTING_RANDOM_CHECKPOINT_H_
#define MTLA_ENGINE_TESTING_RANDOM_CHECKPOINT_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/model/decoder_spec.h"

namespace mtla {

struct NamedTensor {
  std::vector<int64_t> shape;
  std::vector<float> values;
};

// Writes an F32 safetensors file (tensors in name order, 8-byte aligned).
absl::Status WriteSafetensors(const std::string& path,
                              const std::map<std::string, NamedTensor>& tensors,
                              const std::map<std::string, std::string>& metadata = {});

// Every tensor the CPU backend loads for `spec`, filled with N(0, scale) values
// (norm weights 1 + noise), deterministic in `seed`.
std::map<std::string, NamedTensor> RandomDecoderWeights(const DecoderSpec& spec, uint64_t seed,
                                                        float scale = 0.05f);

// The paper's speech-translation decoder attention (E 512, 8 heads, r 256,
// dR 32, dn = dv = 64, hypernetwork rank 64, interleaved RoPE) at `down_rate`:
// the dims the benchmarks use.
MtlaAttentionConfig PaperDecoderAttention(int down_rate);

}  // namespace mtla

#endif  // MTLA_ENGINE_TESTING_RANDOM_CHECKPOINT_H_
