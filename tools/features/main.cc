// mtla-features: computes the server's speech features for a list of WAV files.
//
//   mtla-features --list FILES.txt --out PREFIX [--cmvn utterance|none]
//
// FILES.txt holds one 16 kHz mono PCM16 WAV path per line. Writes
//   PREFIX.f32   all utterances' feature rows back to back (float32, 80 per row)
//   PREFIX.tsv   one line per input: path <TAB> first row <TAB> rows
// Features are exactly what engine/audio computes in the server: Kaldi fbank
// (25 ms / 10 ms, 80 bins) then, by default, utterance CMVN. Any unreadable or
// malformed file stops the tool with a message naming it (exit 1).
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/audio/cmvn.h"
#include "engine/audio/fbank.h"
#include "engine/audio/pcm.h"
#include "tools/common/command_line.h"

ABSL_FLAG(std::string, list, "", "file with one WAV path per line");
ABSL_FLAG(std::string, out, "", "output prefix (PREFIX.f32 and PREFIX.tsv)");
ABSL_FLAG(std::string, cmvn, "utterance", "utterance or none");

namespace {

constexpr int kSampleRateHz = 16000;

absl::Status Run() {
  const std::string list_path = absl::GetFlag(FLAGS_list);
  const std::string prefix = absl::GetFlag(FLAGS_out);
  const std::string cmvn = absl::GetFlag(FLAGS_cmvn);
  if (list_path.empty() || prefix.empty()) {
    return absl::InvalidArgumentError("--list and --out are required");
  }
  if (cmvn != "utterance" && cmvn != "none") {
    return absl::InvalidArgumentError(absl::StrCat("--cmvn must be utterance or none, not '",
                                                   cmvn, "'"));
  }
  std::ifstream list(list_path);
  if (!list) return absl::NotFoundError(absl::StrCat("cannot open --list ", list_path));
  std::ofstream rows_out(prefix + ".f32", std::ios::binary);
  std::ofstream index_out(prefix + ".tsv");
  if (!rows_out || !index_out) {
    return absl::PermissionDeniedError(absl::StrCat("cannot write ", prefix, ".f32/.tsv"));
  }
  int64_t next_row = 0;
  int64_t files = 0;
  std::string path;
  while (std::getline(list, path)) {
    if (path.empty()) continue;
    absl::StatusOr<mtla::audio::WavAudio> wav = mtla::audio::ReadWavFile(path);
    if (!wav.ok()) return wav.status();
    if (wav->sample_rate_hz != kSampleRateHz) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": sample rate ", wav->sample_rate_hz,
                                                     " Hz, expected ", kSampleRateHz));
    }
    absl::StatusOr<std::vector<float>> features = mtla::audio::ComputeFbank(wav->samples);
    if (!features.ok()) {
      return absl::Status(features.status().code(),
                          absl::StrCat(path, ": ", features.status().message()));
    }
    constexpr int kBins = 80;
    const int64_t rows = static_cast<int64_t>(features->size()) / kBins;
    if (rows == 0) return absl::InvalidArgumentError(absl::StrCat(path, ": too short for a frame"));
    if (cmvn == "utterance") {
      if (absl::Status s = mtla::audio::ApplyUtteranceCmvn(*features, kBins); !s.ok()) {
        return absl::Status(s.code(), absl::StrCat(path, ": ", s.message()));
      }
    }
    rows_out.write(reinterpret_cast<const char*>(features->data()),
                   static_cast<std::streamsize>(features->size() * sizeof(float)));
    index_out << path << '\t' << next_row << '\t' << rows << '\n';
    next_row += rows;
    ++files;
  }
  if (!rows_out.flush() || !index_out.flush()) {
    return absl::DataLossError(absl::StrCat("writing ", prefix, ".f32/.tsv failed"));
  }
  std::cerr << "mtla-features: " << files << " files, " << next_row << " frames -> " << prefix
            << ".f32\n";
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> rest = mtla::ParseCommandLineFlags(
      argc, argv, "mtla-features",
      "the server's speech features (fbank + utterance CMVN) for a list of WAVs.\n\n"
      "  mtla-features --list=WAVS.txt --out=PREFIX [--cmvn=utterance|none]");
  if (rest.size() > 1) {
    std::cerr << "mtla-features: unexpected argument " << rest[1] << " (mtla-features --help)\n";
    return 2;
  }
  if (absl::Status status = Run(); !status.ok()) {
    std::cerr << "mtla-features: " << status << "\n";
    return 1;
  }
  return 0;
}
