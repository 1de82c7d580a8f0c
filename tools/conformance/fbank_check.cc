#include "tools/conformance/fbank_check.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <memory>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/audio/cmvn.h"
#include "engine/audio/fbank.h"
#include "engine/common/status_macros.h"
#include "engine/weights/safetensors.h"

namespace mtla::conformance {
namespace {

constexpr double kFeatureTolerance = 1e-4;  // max|out - ref| / max|ref|

// Uneven chunk sizes (samples) for the streaming path: larger and smaller
// than a frame and its shift, and a single sample.
const std::vector<size_t> kChunkSizes = {1600, 37, 4000, 1, 523, 160, 9999, 399};

// max|out - ref| / max|ref|; infinity on a size mismatch or a NaN.
double MaxRelativeError(const std::vector<float>& out, const std::vector<float>& ref) {
  if (out.size() != ref.size()) return std::numeric_limits<double>::infinity();
  double diff = 0.0, scale = 0.0;
  for (size_t i = 0; i < out.size(); ++i) {
    const double d = std::abs(static_cast<double>(out[i]) - ref[i]);
    if (std::isnan(d)) return std::numeric_limits<double>::infinity();
    diff = std::max(diff, d);
    scale = std::max(scale, std::abs(static_cast<double>(ref[i])));
  }
  if (scale == 0.0) return diff == 0.0 ? 0.0 : std::numeric_limits<double>::infinity();
  return diff / scale;
}

// Records a feature check under the max-relative metric. The line names the
// metric and carries the L2 relative error; CheckReport::Compare reports the
// L2 relative error of its arguments, which for ({1, e}, {1, 0}) is exactly e.
void CompareFeatures(CheckReport* report, const std::string& subject, const std::string& what,
                     const std::vector<float>& out, const std::vector<float>& ref) {
  const double max_rel = MaxRelativeError(out, ref);
  const double l2_rel = RelativeError(out, ref);
  const std::string check =
      absl::StrFormat("%s (rel_err=max|d|/max|ref|, l2=%.2e)", what, l2_rel);
  const float e = std::isfinite(max_rel) ? static_cast<float>(max_rel)
                                         : std::numeric_limits<float>::infinity();
  report->Compare(subject, check, {1.0f, e}, {1.0f, 0.0f}, kFeatureTolerance);
}

std::vector<float> Streamed(const std::shared_ptr<const audio::FbankComputer>& computer,
                            const std::vector<float>& samples) {
  audio::FbankExtractor extractor(computer);
  std::vector<float> frames;
  size_t pos = 0, k = 0;
  while (pos < samples.size()) {
    const size_t len = std::min(kChunkSizes[k++ % kChunkSizes.size()], samples.size() - pos);
    extractor.AcceptSamples(std::span<const float>(samples).subspan(pos, len), &frames);
    pos += len;
  }
  extractor.Finish(&frames);
  return frames;
}

// The fbank settings a file declares (fbank_reference metadata), checked
// against what the extractor implements. Files without metadata (fairseq's)
// use fairseq's settings, which are the defaults.
absl::StatusOr<audio::FbankOptions> OptionsFromMetadata(const SafetensorsFile& file) {
  audio::FbankOptions options;
  const auto& meta = file.metadata();
  auto number = [&](const std::string& key, double* out) -> absl::Status {
    auto it = meta.find(key);
    if (it == meta.end()) return absl::OkStatus();
    if (!absl::SimpleAtod(it->second, out)) {
      return absl::InvalidArgumentError(
          absl::StrCat(file.path(), ": metadata field '", key, "' is not a number: ", it->second));
    }
    return absl::OkStatus();
  };
  double sample_rate = options.sample_rate_hz, bins = options.num_mel_bins, dither = 0.0;
  RETURN_IF_ERROR(number("sample_rate", &sample_rate));
  RETURN_IF_ERROR(number("num_mel_bins", &bins));
  RETURN_IF_ERROR(number("frame_length_ms", &options.frame_length_ms));
  RETURN_IF_ERROR(number("frame_shift_ms", &options.frame_shift_ms));
  RETURN_IF_ERROR(number("preemphasis", &options.preemphasis));
  RETURN_IF_ERROR(number("dither", &dither));
  options.sample_rate_hz = static_cast<int>(sample_rate);
  options.num_mel_bins = static_cast<int>(bins);
  auto expect = [&](const std::string& key, const std::string& want) -> absl::Status {
    auto it = meta.find(key);
    if (it == meta.end() || it->second == want) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(file.path(), ": metadata ", key, "=", it->second,
                                                   " is not supported (only ", want, ")"));
  };
  if (dither != 0.0) {
    return absl::InvalidArgumentError(absl::StrCat(file.path(), ": dither ", dither,
                                                   " is random; only dither 0 can be compared"));
  }
  RETURN_IF_ERROR(expect("window", "povey"));
  RETURN_IF_ERROR(expect("snip_edges", "True"));
  RETURN_IF_ERROR(options.Validate());
  return options;
}

}  // namespace

absl::Status CheckFbankFile(const std::string& path, CheckReport* report) {
  std::filesystem::path file_path(path);
  std::string subject = file_path.stem().string();
  if (std::filesystem::is_directory(file_path)) {
    subject = file_path.filename().string();
    if (subject.empty()) subject = file_path.parent_path().filename().string();
    file_path /= "expected.safetensors";
  } else if (subject == "expected") {
    subject = file_path.parent_path().filename().string();
  }
  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(file_path.string()));
  const bool fbank_reference = file->contains("output.fbank");
  const bool fairseq_reference = file->contains("input.fbank") && file->contains("input.fbank_cmvn");
  if (!file->contains("input.pcm16") || (!fbank_reference && !fairseq_reference)) {
    return absl::InvalidArgumentError(absl::StrCat(
        file_path.string(), ": neither the fbank_reference format (input.pcm16, output.fbank) nor "
                            "fairseq_st_reference's (input.pcm16, input.fbank, input.fbank_cmvn)"));
  }
  ASSIGN_OR_RETURN(audio::FbankOptions options, OptionsFromMetadata(*file));
  ASSIGN_OR_RETURN(std::shared_ptr<const audio::FbankComputer> computer,
                   audio::FbankComputer::Create(options));
  ASSIGN_OR_RETURN(std::vector<float> pcm, file->ReadFloat("input.pcm16"));
  const int64_t frames = computer->NumFrames(static_cast<int64_t>(pcm.size()));
  const int dim = computer->num_bins();
  const std::string ref_name = fbank_reference ? "output.fbank" : "input.fbank";
  ASSIGN_OR_RETURN(std::vector<float> ref, file->ReadFloat(ref_name, {frames, dim}));

  const std::vector<float> one_shot = audio::ComputeFbank(*computer, pcm);
  const std::vector<float> streamed = Streamed(computer, pcm);
  CompareFeatures(report, subject, "fbank", one_shot, ref);
  CompareFeatures(report, subject, "fbank streamed", streamed, ref);
  report->Compare(subject, "fbank streamed == one-shot", streamed, one_shot, 0.0);

  if (fairseq_reference) {
    ASSIGN_OR_RETURN(std::vector<float> ref_cmvn, file->ReadFloat("input.fbank_cmvn", {frames, dim}));
    std::vector<float> cmvn_of_ref = ref;
    RETURN_IF_ERROR(audio::ApplyUtteranceCmvn(cmvn_of_ref, dim));
    CompareFeatures(report, subject, "cmvn(ref fbank)", cmvn_of_ref, ref_cmvn);
    std::vector<float> cmvn_of_ours = one_shot;
    RETURN_IF_ERROR(audio::ApplyUtteranceCmvn(cmvn_of_ours, dim));
    CompareFeatures(report, subject, "pcm->fbank->cmvn", cmvn_of_ours, ref_cmvn);
  }
  return absl::OkStatus();
}

}  // namespace mtla::conformance
