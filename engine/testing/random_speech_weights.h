// Random weights for the speech encoder and projector of a SpeechModelConfig,
// under fairseq's tensor names, for tests and benchmarks that need a speech
// front end of given dimensions but no trained weights.
#ifndef MTLA_ENGINE_TESTING_RANDOM_SPEECH_WEIGHTS_H_
#define MTLA_ENGINE_TESTING_RANDOM_SPEECH_WEIGHTS_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "engine/speech/speech_config.h"
#include "engine/speech/speech_model.h"
#include "engine/testing/random_checkpoint.h"

namespace mtla {

// Every encoder.* tensor SpeechEncoder::Load reads and the projector's
// decoder.projector.linear{1,2}: linear and convolution weights N(0,
// 1/fan_in) (as bench/speech/make_random_st_model.py), biases 0, norms 1 and
// 0; deterministic in `seed`.
std::map<std::string, NamedTensor> RandomSpeechEncoderWeights(const SpeechModelConfig& config,
                                                              uint64_t seed);

// A SpeechModel without a decoder (encoder and projector only) on those
// weights; the temporary file they pass through is removed.
absl::StatusOr<SpeechModel> RandomSpeechFrontModel(const SpeechModelConfig& config,
                                                   uint64_t seed);

}  // namespace mtla

#endif  // MTLA_ENGINE_TESTING_RANDOM_SPEECH_WEIGHTS_H_
