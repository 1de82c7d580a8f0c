// Fuzzes audio decoding and resampling (engine/audio): the input is parsed as
// a WAV file and, independently, as raw PCM16 at a sample rate taken from its
// first bytes, fed to the resampler in chunks the input chooses. Decoders
// must reject malformed input with a status; the resampler must accept every
// decoded signal and produce round(n * 16000 / rate) samples in total.
#include <fuzzer/FuzzedDataProvider.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "engine/audio/pcm.h"
#include "engine/audio/resampler.h"

namespace {

// Resamples `samples` at `rate` in chunks drawn from `chunking`.
void Resample(const std::vector<float>& samples, int rate, FuzzedDataProvider& chunking) {
  auto resampler = mtla::audio::Resampler::Create(rate);
  const bool rate_ok = rate >= mtla::audio::kMinInputSampleRateHz &&
                       rate <= mtla::audio::kMaxInputSampleRateHz;
  if (resampler.ok() != rate_ok) __builtin_trap();
  if (!resampler.ok()) return;
  std::vector<float> out;
  size_t pos = 0;
  while (pos < samples.size()) {
    const size_t n = chunking.ConsumeIntegralInRange<size_t>(0, samples.size() - pos);
    if (!resampler->Process(std::span<const float>(samples.data() + pos, n), &out).ok()) {
      __builtin_trap();
    }
    pos += n;
    if (chunking.remaining_bytes() == 0 && pos < samples.size()) {
      if (!resampler->Process(std::span<const float>(samples.data() + pos, samples.size() - pos),
                              &out)
               .ok()) {
        __builtin_trap();
      }
      pos = samples.size();
    }
  }
  if (!resampler->Flush(&out).ok()) __builtin_trap();
  const double expected = std::round(static_cast<double>(samples.size()) * 16000.0 / rate);
  if (std::abs(static_cast<double>(out.size()) - expected) > 1.0) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> bytes(data, size);
  auto wav = mtla::audio::ParseWav(bytes);
  if (wav.ok()) {
    FuzzedDataProvider chunking(data, size);
    Resample(wav->samples, wav->sample_rate_hz, chunking);
  }

  FuzzedDataProvider provider(data, size);
  const int rate = provider.ConsumeBool() ? provider.ConsumeIntegralInRange<int>(7000, 49000)
                                          : provider.ConsumeIntegral<int>();
  const size_t pcm_len = provider.ConsumeIntegralInRange<size_t>(0, provider.remaining_bytes());
  const std::vector<uint8_t> pcm = provider.ConsumeBytes<uint8_t>(pcm_len);
  auto samples = mtla::audio::DecodePcm16(std::span<const uint8_t>(pcm));
  if (samples.ok() != (pcm.size() % 2 == 0)) __builtin_trap();
  if (!samples.ok()) return 0;
  std::vector<float> appended = {1.0f};
  if (!mtla::audio::AppendPcm16(std::span<const uint8_t>(pcm), &appended).ok() ||
      appended.size() != samples->size() + 1) {
    __builtin_trap();
  }
  Resample(*samples, rate, provider);
  return 0;
}
