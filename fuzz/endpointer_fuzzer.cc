// Fuzzes the energy endpointer (engine/streaming): options as a request can
// set them (silence_ms, max_segment_ms, threshold, enabled) and arbitrary
// int16-scale samples in arbitrary chunks. Cuts must be increasing, inside the
// samples seen so far, and independent of the chunking.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "engine/streaming/endpointer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider provider(data, size);
  mtla::EndpointerOptions options;
  // The server accepts any positive silence_ms / max_segment_ms from a request
  // and thresholds in [-120, 0) dBFS.
  options.silence_ms = provider.ConsumeIntegralInRange<int>(1, INT32_MAX);
  if (provider.ConsumeBool()) options.silence_ms = provider.ConsumeIntegralInRange<int>(1, 2000);
  options.max_segment_ms = provider.ConsumeIntegralInRange<int>(1, INT32_MAX);
  if (provider.ConsumeBool()) options.max_segment_ms = provider.ConsumeIntegralInRange<int>(1, 3000);
  options.silence_threshold_dbfs = provider.ConsumeFloatingPointInRange<float>(-120.0f, -1e-6f);
  options.enabled = provider.ConsumeBool();
  std::vector<size_t> chunks;
  for (int i = provider.ConsumeIntegralInRange<int>(0, 8); i > 0; --i) {
    chunks.push_back(provider.ConsumeIntegralInRange<size_t>(0, 4000));
  }
  std::vector<float> samples;
  while (provider.remaining_bytes() >= 2) {
    samples.push_back(static_cast<float>(provider.ConsumeIntegral<int16_t>()));
  }

  mtla::Endpointer whole(options);
  const std::vector<int64_t> expected = whole.Accept(samples);
  mtla::Endpointer chunked(options);
  std::vector<int64_t> cuts;
  size_t pos = 0;
  auto feed = [&](size_t n) {
    const std::vector<int64_t> got =
        chunked.Accept(std::span<const float>(samples.data() + pos, n));
    pos += n;
    for (int64_t cut : got) {
      if (cut <= 0 || cut > chunked.samples_seen() || (!cuts.empty() && cut <= cuts.back())) {
        __builtin_trap();
      }
      cuts.push_back(cut);
    }
  };
  for (size_t n : chunks) feed(std::min(n, samples.size() - pos));
  feed(samples.size() - pos);
  if (cuts != expected || chunked.samples_seen() != static_cast<int64_t>(samples.size())) {
    __builtin_trap();
  }
  return 0;
}
