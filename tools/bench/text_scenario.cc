#include "tools/bench/text_scenario.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"

namespace mtla::bench {
namespace {

using mtla::v1::GenerateRequest;
using mtla::v1::GenerateResponse;

class GenerateCall final : public grpc::ClientReadReactor<GenerateResponse>,
                           public Call,
                           public std::enable_shared_from_this<GenerateCall> {
 public:
  GenerateCall(int64_t index, GenerateRequest request, double timeout_s, Scenario::Done done)
      : request_(std::move(request)), done_(std::move(done)) {
    record_.index = index;
    record_.input_tokens = request_.prompt_token_ids_size();
    if (timeout_s > 0) {
      context_.set_deadline(std::chrono::system_clock::now() +
                            std::chrono::microseconds(static_cast<int64_t>(timeout_s * 1e6)));
    }
  }

  void Go(mtla::v1::TextGeneration::Stub* stub) {
    self_ = shared_from_this();  // released in OnDone
    record_.start_s = SteadySeconds();
    stub->async()->Generate(&context_, &request_, this);
    StartRead(&response_);
    StartCall();
  }

  void Cancel() override { context_.TryCancel(); }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // end of stream; OnDone follows
    const double now = SteadySeconds();
    const int n = response_.token_ids_size();
    if (n > 0) {
      if (record_.output_tokens == 0) {
        first_token_s_ = now;
      } else {
        itl_.push_back(now - last_token_s_);
      }
      // Tokens delivered together (the server coalesces a stream's pending
      // deltas into one message) reach the reader with no gap between them.
      for (int i = record_.output_tokens == 0 ? 1 : 0; i < n - 1; ++i) itl_.push_back(0.0);
      last_token_s_ = now;
      record_.output_tokens += n;
    }
    if (response_.has_usage() && response_.usage().prompt_tokens() > 0) {
      record_.input_tokens = response_.usage().prompt_tokens();
    }
    if (response_.has_timing()) queue_s_ = response_.timing().queue_seconds();
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    std::shared_ptr<GenerateCall> keep = std::move(self_);  // `this` lives to the end of OnDone
    record_.end_s = SteadySeconds();
    record_.code = status.error_code();
    if (!status.ok()) record_.error_message = status.error_message();
    const double e2e = record_.end_s - record_.start_s;
    if (status.ok()) {
      record_.series["e2e_s"] = {e2e};
      if (record_.output_tokens > 0) {
        const double ttft = first_token_s_ - record_.start_s;
        record_.series["ttft_s"] = {ttft};
        if (record_.output_tokens > 1) {
          record_.series["tpot_s"] = {(last_token_s_ - first_token_s_) /
                                      static_cast<double>(record_.output_tokens - 1)};
        }
      }
      record_.series["itl_s"] = std::move(itl_);
      if (queue_s_ >= 0) record_.series["queue_s"] = {queue_s_};
    }
    Scenario::Done done = std::move(done_);
    done(std::move(record_));
  }

 private:
  grpc::ClientContext context_;
  GenerateRequest request_;
  GenerateResponse response_;
  Scenario::Done done_;
  RequestRecord record_;
  std::vector<double> itl_;
  double first_token_s_ = 0, last_token_s_ = 0, queue_s_ = -1;
  std::shared_ptr<GenerateCall> self_;
};

}  // namespace

TextGenerationScenario::TextGenerationScenario(
    const std::vector<std::shared_ptr<grpc::Channel>>& channels, TextWorkload workload,
    TextScenarioOptions options)
    : workload_(std::move(workload)), options_(options) {
  for (const auto& channel : channels) stubs_.push_back(mtla::v1::TextGeneration::NewStub(channel));
}

std::string TextGenerationScenario::Describe() const {
  return absl::StrCat(workload_.Describe(),
                      options_.temperature > 0
                          ? absl::StrCat("; sampling T=", options_.temperature)
                          : std::string("; greedy"),
                      options_.ignore_eos ? ", ignore_eos" : "");
}

std::vector<MetricDef> TextGenerationScenario::Metrics() const {
  return {
      {"ttft_s", "ttft", "Time to first token", "ms", 1e3},
      {"tpot_s", "tpot", "Time per output token", "ms", 1e3},
      {"itl_s", "itl", "Inter-token latency", "ms", 1e3},
      {"e2e_s", "e2e", "End-to-end latency", "ms", 1e3},
      {"queue_s", "server_queue", "Server queue time", "ms", 1e3},
  };
}

GenerateRequest TextGenerationScenario::MakeRequest(int64_t index) const {
  TextRequestSpec spec = workload_.Get(index);
  GenerateRequest request;
  for (int32_t id : spec.prompt_token_ids) request.add_prompt_token_ids(id);
  if (!spec.prompt.empty()) request.set_prompt(spec.prompt);
  request.set_max_new_tokens(spec.max_new_tokens);
  request.set_ignore_eos(options_.ignore_eos);
  request.set_request_id(absl::StrCat("mtla-bench-", index));
  auto* sampling = request.mutable_sampling();
  sampling->set_temperature(options_.temperature);
  sampling->set_top_k(options_.top_k);
  sampling->set_top_p(options_.top_p);
  if (options_.temperature > 0) sampling->set_seed(options_.seed + static_cast<uint64_t>(index));
  return request;
}

std::shared_ptr<Call> TextGenerationScenario::Start(int64_t index, Done done) {
  auto call = std::make_shared<GenerateCall>(index, MakeRequest(index),
                                             options_.request_timeout_s, std::move(done));
  call->Go(stubs_[static_cast<size_t>(index) % stubs_.size()].get());
  return call;
}

nlohmann::json TextGenerationScenario::Config() const {
  return {{"workload", workload_.Describe()},
          {"temperature", options_.temperature},
          {"top_k", options_.top_k},
          {"top_p", options_.top_p},
          {"ignore_eos", options_.ignore_eos},
          {"request_timeout_seconds", options_.request_timeout_s}};
}

}  // namespace mtla::bench
