// `mtla-conformance st DIR` and `mtla-conformance fairseq-st DIR`: the paper's
// speech-translation model (DESIGN.md section 2, family 2) against reference
// data in the formats of shared/testdata (section 7).
#ifndef MTLA_TOOLS_CONFORMANCE_ST_CHECK_H_
#define MTLA_TOOLS_CONFORMANCE_ST_CHECK_H_

#include <string>

#include "absl/status/status.h"
#include "tools/conformance/check_report.h"

namespace mtla::conformance {

// st_reference/<name>/: decoder.safetensors + config.json (decoder-only
// format) and expected.safetensors (encoder_out, generated_ids, step_logits).
// encoder_out -> projector -> prefix fill -> greedy from EOS for
// len(generated_ids) steps: step_logits within 1e-4, generated_ids exactly.
absl::Status CheckStDir(const std::string& dir, CheckReport* report);

// fairseq_st_reference/<name>/: model.safetensors + config.json (fairseq
// arguments) and expected.safetensors. Encoder from input.fbank_cmvn
// (encoder_out within 1e-4), then fairseq SequenceGenerator greedy (beam 1):
// greedy.tokens exactly, greedy.step_logits (raw decoder logits) and
// greedy.score (length-normalized sum of token log-probs) within 1e-4.
absl::Status CheckFairseqStDir(const std::string& dir, CheckReport* report);

}  // namespace mtla::conformance

#endif  // MTLA_TOOLS_CONFORMANCE_ST_CHECK_H_
