// Text generation: one mtla.v1.TextGeneration/Generate stream per request,
// driven by gRPC's callback API (no thread per request).
//
// Per request it records (all client-side, from sending the request):
//   ttft_s   time to the first message carrying tokens;
//   itl_s    one sample per token after the first: the time since the
//            previous token arrived (tokens that arrive together in one
//            message count as 0 after the first), so the samples of a request
//            add up to its last-token time minus its first-token time;
//   tpot_s   (e2e - ttft) / (output tokens - 1), requests with > 1 token;
//   e2e_s    time to the end of the stream (status received);
//   queue_s  the server's own queue time, from the final message's timing.
#ifndef MTLA_TOOLS_BENCH_TEXT_SCENARIO_H_
#define MTLA_TOOLS_BENCH_TEXT_SCENARIO_H_

#include <memory>
#include <string>
#include <vector>

#include "grpcpp/grpcpp.h"
#include "mtla/v1/text_generation.grpc.pb.h"
#include "tools/bench/scenario.h"
#include "tools/bench/workload.h"

namespace mtla::bench {

struct TextScenarioOptions {
  float temperature = 0;  // 0: greedy
  int top_k = 0;
  float top_p = 0;
  bool ignore_eos = true;  // so that every request produces its max_new_tokens
  uint64_t seed = 0;       // request i samples with seed + i (temperature > 0)
  double request_timeout_s = 0;  // per-request deadline; 0: none
};

class TextGenerationScenario : public Scenario {
 public:
  // Request i goes to channels[i % channels.size()].
  TextGenerationScenario(const std::vector<std::shared_ptr<grpc::Channel>>& channels,
                         TextWorkload workload, TextScenarioOptions options);

  std::string name() const override { return "text-generation"; }
  std::string Describe() const override;
  std::vector<MetricDef> Metrics() const override;
  std::shared_ptr<Call> Start(int64_t index, Done done) override;
  nlohmann::json Config() const override;

  // The request sent for `index` (exposed for tests).
  mtla::v1::GenerateRequest MakeRequest(int64_t index) const;

 private:
  std::vector<std::unique_ptr<mtla::v1::TextGeneration::Stub>> stubs_;
  TextWorkload workload_;
  TextScenarioOptions options_;
};

}  // namespace mtla::bench

#endif  // MTLA_TOOLS_BENCH_TEXT_SCENARIO_H_
