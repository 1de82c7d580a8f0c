// Fuzzes the fbank front-end (engine/audio fbank + CMVN) on arbitrary
// samples: int16-scale values as the server decodes them, or raw float32 bit
// patterns (NaN, infinities, huge values). The streaming extractor, fed in
// chunks the input chooses, must emit NumFrames(n) frames bit-identical to the
// whole-utterance ComputeFbank; utterance CMVN must accept the result.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <vector>

#include "engine/audio/cmvn.h"
#include "engine/audio/fbank.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::shared_ptr<const mtla::audio::FbankComputer> computer = [] {
    auto created = mtla::audio::FbankComputer::Create();
    if (!created.ok()) __builtin_trap();
    return *created;
  }();
  FuzzedDataProvider provider(data, size);
  const bool raw_floats = provider.ConsumeBool();
  const size_t num_chunks = provider.ConsumeIntegralInRange<size_t>(1, 8);
  std::vector<size_t> chunk_sizes;
  for (size_t i = 0; i + 1 < num_chunks; ++i) {
    chunk_sizes.push_back(provider.ConsumeIntegralInRange<size_t>(0, 2000));
  }
  std::vector<float> samples;
  while (provider.remaining_bytes() > 0) {
    if (raw_floats) {
      const uint32_t bits = provider.ConsumeIntegral<uint32_t>();
      float value;
      std::memcpy(&value, &bits, sizeof(value));
      samples.push_back(value);
    } else {
      samples.push_back(static_cast<float>(provider.ConsumeIntegral<int16_t>()));
    }
  }

  mtla::audio::FbankExtractor extractor(computer);
  std::vector<float> streamed;
  size_t pos = 0;
  for (size_t n : chunk_sizes) {
    n = std::min(n, samples.size() - pos);
    extractor.AcceptSamples(std::span<const float>(samples.data() + pos, n), &streamed);
    pos += n;
  }
  extractor.AcceptSamples(std::span<const float>(samples.data() + pos, samples.size() - pos),
                          &streamed);
  if (extractor.Finish(&streamed) != 0) __builtin_trap();

  const int bins = computer->num_bins();
  const std::vector<float> whole = mtla::audio::ComputeFbank(*computer, samples);
  const int64_t frames = computer->NumFrames(static_cast<int64_t>(samples.size()));
  if (static_cast<int64_t>(whole.size()) != frames * bins || streamed.size() != whole.size() ||
      (!whole.empty() &&
       std::memcmp(whole.data(), streamed.data(), whole.size() * sizeof(float)) != 0)) {
    __builtin_trap();
  }
  std::vector<float> normalized = whole;
  if (!mtla::audio::ApplyUtteranceCmvn(std::span<float>(normalized), bins).ok()) __builtin_trap();
  return 0;
}
