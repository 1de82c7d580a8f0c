// Fuzzes the energy endpointer (engine/streaming): options as a request can
// set them (silence_ms, max_segment_ms, threshold, enabled) and arbitrary
// int16-scale samples in arbitrary chunks. Segments must tile the stream
// (each begins where the previous ended), end inside the samples seen so far,
// hold their padded speech span, and be independent of the chunking.
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

  auto same = [](const mtla::SegmentSpan& a, const mtla::SegmentSpan& b) {
    return a.begin == b.begin && a.end == b.end && a.has_speech == b.has_speech &&
           (!a.has_speech || (a.speech_begin == b.speech_begin && a.speech_end == b.speech_end));
  };
  mtla::Endpointer whole(options);
  const std::vector<mtla::SegmentSpan> expected = whole.Accept(samples);
  mtla::Endpointer chunked(options);
  std::vector<mtla::SegmentSpan> spans;
  size_t pos = 0;
  auto feed = [&](size_t n) {
    const std::vector<mtla::SegmentSpan> got =
        chunked.Accept(std::span<const float>(samples.data() + pos, n));
    pos += n;
    for (const mtla::SegmentSpan& span : got) {
      const int64_t begin = spans.empty() ? 0 : spans.back().end;
      if (span.begin != begin || span.end <= span.begin || span.end > chunked.samples_seen()) {
        __builtin_trap();
      }
      if (span.has_speech && (span.speech_begin < span.begin || span.speech_end > span.end ||
                              span.speech_begin >= span.speech_end)) {
        __builtin_trap();
      }
      spans.push_back(span);
    }
  };
  for (size_t n : chunks) feed(std::min(n, samples.size() - pos));
  feed(samples.size() - pos);
  if (spans.size() != expected.size() ||
      chunked.samples_seen() != static_cast<int64_t>(samples.size())) {
    __builtin_trap();
  }
  for (size_t i = 0; i < spans.size(); ++i) {
    if (!same(spans[i], expected[i])) __builtin_trap();
  }
  return 0;
}
