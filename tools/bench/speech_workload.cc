#include "tools/bench/speech_workload.h"

#include <algorithm>
#include <filesystem>
#include <span>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/audio/pcm.h"

namespace mtla::bench {

absl::StatusOr<SpeechWorkload> SpeechWorkload::FromWavFiles(const std::vector<std::string>& paths,
                                                            int chunk_ms) {
  if (paths.empty()) {
    return absl::InvalidArgumentError("--scenario speech needs --wav FILE[,FILE...]");
  }
  if (chunk_ms < 1) return absl::InvalidArgumentError("--chunk_ms must be >= 1");
  SpeechWorkload workload;
  workload.chunk_ms_ = chunk_ms;
  for (const std::string& path : paths) {
    if (!std::filesystem::exists(path)) {
      return absl::InvalidArgumentError(absl::StrCat("--wav ", path, ": no such file"));
    }
    if (std::filesystem::is_directory(path)) {
      return absl::InvalidArgumentError(absl::StrCat("--wav ", path, ": is a directory"));
    }
    // ReadWavFile's messages start with the path and name the problem.
    absl::StatusOr<audio::WavAudio> wav = audio::ReadWavFile(path);
    if (!wav.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--wav ", wav.status().message()));
    }
    if (wav->sample_rate_hz < kMinSampleRateHz || wav->sample_rate_hz > kMaxSampleRateHz) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--wav ", path, ": sample rate ", wav->sample_rate_hz, " Hz is outside the server's ",
          kMinSampleRateHz, "..", kMaxSampleRateHz, " Hz"));
    }
    if (wav->samples.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("--wav ", path, ": holds no audio samples"));
    }
    AudioClip clip;
    clip.path = path;
    clip.sample_rate_hz = wav->sample_rate_hz;
    clip.duration_s = static_cast<double>(wav->samples.size()) / wav->sample_rate_hz;
    const size_t per_chunk =
        std::max<size_t>(1, static_cast<size_t>(wav->sample_rate_hz) * chunk_ms / 1000);
    for (size_t at = 0; at < wav->samples.size(); at += per_chunk) {
      const size_t n = std::min(per_chunk, wav->samples.size() - at);
      clip.chunks.push_back(
          audio::EncodePcm16(std::span<const float>(wav->samples.data() + at, n)));
    }
    workload.clips_.push_back(std::move(clip));
  }
  return workload;
}

std::string SpeechWorkload::Describe() const {
  std::string files;
  for (const AudioClip& c : clips_) {
    absl::StrAppend(&files, files.empty() ? "" : ", ",
                    std::filesystem::path(c.path).filename().string(),
                    absl::StrFormat(" (%.2f s, %d Hz)", c.duration_s, c.sample_rate_hz));
  }
  return absl::StrCat(files, "; ", chunk_ms_, " ms chunks");
}

}  // namespace mtla::bench
