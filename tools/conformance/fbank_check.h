// `mtla-conformance fbank FILE...`: the audio front-end (Kaldi fbank, streaming
// extraction, utterance CMVN) against reference features.
#ifndef MTLA_TOOLS_CONFORMANCE_FBANK_CHECK_H_
#define MTLA_TOOLS_CONFORMANCE_FBANK_CHECK_H_

#include <string>

#include "absl/status/status.h"
#include "tools/conformance/check_report.h"

namespace mtla::conformance {

// Accepts either format, told apart by tensor names:
//  - shared/testdata/fbank_reference/*.safetensors (input.pcm16, output.fbank):
//    fbank in one shot and streamed in uneven chunks;
//  - fairseq_st_reference's expected.safetensors, or its directory
//    (input.pcm16, input.fbank, input.fbank_cmvn): the same, plus utterance
//    CMVN of the reference fbank and of our own.
// Feature checks pass when max|out - ref| / max|ref| <= 1e-4 over the
// utterance; each line also shows the L2 relative error. Returns an error only
// when the file cannot be used at all.
absl::Status CheckFbankFile(const std::string& path, CheckReport* report);

}  // namespace mtla::conformance

#endif  // MTLA_TOOLS_CONFORMANCE_FBANK_CHECK_H_
