// mtla-bench: load generator for mtla-server (gRPC).
//
//   mtla-bench --address 127.0.0.1:50051 --num_requests 200 --concurrency 8
//       --prompt_len 128 --output_len 64 --json result.json
//   mtla-bench --request_rate 4 --arrival gamma --burstiness 0.5
//       --duration_seconds 60 --dataset prompts.jsonl --slo_ttft_ms 500
//   mtla-bench --scenario speech --wav a.wav,b.wav --chunk_ms 100 --pace realtime
//       --concurrency 4 --duration_seconds 30 --num_requests 0 --slo_chunk_ms 500
//
// TLS: --tls_ca_file, --tls_cert_file/--tls_key_file (mutual TLS) and
// --tls_server_name, as mtla-client (tools/common/channel_credentials.h).
//
// --scenario text (default) drives TextGeneration/Generate; --scenario speech
// streams WAV files to SpeechTranslation/StreamingTranslate, one stream per
// request (tools/bench/speech_scenario.h defines its metrics).
//
// Closed loop (default): --concurrency requests in flight at all times.
// Open loop (--request_rate R > 0): arrivals at R requests/s with Poisson,
// gamma (--burstiness) or constant gaps, optionally capped in flight by
// --max_concurrency. The run is bounded by --num_requests and/or
// --duration_seconds, and every request by --request_timeout_seconds, so it
// always stops by itself. Only --address is ever contacted.
//
// Prints a progress line to stderr, the report table to stdout, and the same
// report as JSON to --json FILE. Exit code: 0 when at least one request
// succeeded, 1 when none did or the server could not be reached, 2 on bad
// flags. See docs/load-testing.md.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "mtla/v1/models.grpc.pb.h"
#include "tools/bench/report.h"
#include "tools/bench/runner.h"
#include "tools/bench/speech_scenario.h"
#include "tools/bench/speech_workload.h"
#include "tools/bench/text_scenario.h"
#include "tools/bench/workload.h"
#include "tools/common/channel_credentials.h"
#include "tools/common/command_line.h"
#include "tools/common/grpc_status_text.h"

ABSL_FLAG(std::string, address, "127.0.0.1:50051",
          "Server address (gRPC target: host:port, dns:///name:port, ...)");
ABSL_FLAG(std::string, scenario, "text",
          "Benchmark scenario: text (TextGeneration/Generate) | speech "
          "(SpeechTranslation/StreamingTranslate, needs --wav)");
ABSL_FLAG(int, num_channels, 1,
          "gRPC channels (TCP connections) to spread requests over, round robin");
ABSL_FLAG(std::string, lb_policy, "",
          "gRPC load-balancing policy, e.g. round_robin for a headless Service (empty: default)");
// TLS (any of these turns it on; tools/common/channel_credentials.h).
ABSL_FLAG(std::string, tls_ca_file, "",
          "TLS: PEM roots the server's certificate must chain to (empty: the system's)");
ABSL_FLAG(std::string, tls_cert_file, "", "TLS: PEM client certificate chain (mutual TLS)");
ABSL_FLAG(std::string, tls_key_file, "", "TLS: PEM private key of --tls_cert_file");
ABSL_FLAG(std::string, tls_server_name, "",
          "TLS: name to check in the server's certificate instead of the address's host");
// Bounds and arrivals.
ABSL_FLAG(int64_t, num_requests, 100, "Requests to send (0: no count bound)");
ABSL_FLAG(double, duration_seconds, 0, "Stop starting requests after this long (0: no bound)");
ABSL_FLAG(int, concurrency, 1, "Closed loop: requests kept in flight");
ABSL_FLAG(double, ramp_up_seconds, 0,
          "Closed loop: spread the first --concurrency starts evenly over this many seconds "
          "(0: all at once)");
ABSL_FLAG(double, request_rate, 0, "Open loop: arrivals per second (0: closed loop)");
ABSL_FLAG(std::string, arrival, "poisson", "Open loop inter-arrival times: poisson | gamma | constant");
ABSL_FLAG(double, burstiness, 1.0,
          "Gamma shape for --arrival=gamma: < 1 burstier, 1 = Poisson, > 1 smoother");
ABSL_FLAG(int, max_concurrency, 0, "Open loop: cap on requests in flight (0: none)");
ABSL_FLAG(double, drain_timeout_seconds, 60,
          "After the last start, how long in-flight requests may finish before being cancelled");
ABSL_FLAG(int, warmup_requests, 0, "Requests sent before the measured run (not reported)");
// Workload.
ABSL_FLAG(int, prompt_len, 128, "Prompt length in tokens (random ids from the model's vocabulary)");
ABSL_FLAG(int, output_len, 128, "Tokens to generate per request (max_new_tokens)");
ABSL_FLAG(double, range_ratio, 0,
          "Draw lengths uniformly from [len*(1-r), len*(1+r)] per request; 0: fixed");
ABSL_FLAG(std::string, dataset, "", "JSONL file of requests (see docs/load-testing.md)");
ABSL_FLAG(double, temperature, 0, "Sampling temperature (0: greedy)");
ABSL_FLAG(int, top_k, 0, "Top-k (0: off)");
ABSL_FLAG(double, top_p, 0, "Top-p (0: off)");
ABSL_FLAG(bool, ignore_eos, true, "Generate exactly max_new_tokens, past end-of-sequence");
ABSL_FLAG(uint64_t, seed, 0, "Seed for prompts, lengths, arrivals and sampling");
ABSL_FLAG(double, request_timeout_seconds, 300, "Per-request deadline (0: none)");
// Speech workload (--scenario speech).
ABSL_FLAG(std::vector<std::string>, wav, {},
          "Speech: WAV files, comma-separated (16-bit PCM, mono, 8000-48000 Hz); request i "
          "streams file i mod count");
ABSL_FLAG(int, chunk_ms, 100, "Speech: milliseconds of audio per chunk message");
ABSL_FLAG(std::string, pace, "realtime",
          "Speech: realtime (chunk k sent k * chunk_ms after the first) | fast (each chunk as "
          "soon as the previous one is written)");
ABSL_FLAG(int, beam_size, 0, "Speech: beam size (0 or 1: greedy)");
ABSL_FLAG(int, max_tokens, 0, "Speech: at most this many tokens per segment (0: model default)");
ABSL_FLAG(double, wait_for_ready_seconds, 30,
          "Wait this long for grpc.health.v1 SERVING before starting (0: check once)");
// Goodput.
ABSL_FLAG(double, slo_ttft_ms, 0, "SLO on time to first token, ms (0: none)");
ABSL_FLAG(double, slo_tpot_ms, 0, "SLO on time per output token, ms (0: none)");
ABSL_FLAG(double, slo_itl_ms, 0, "SLO on every inter-token gap of a request, ms (0: none)");
ABSL_FLAG(double, slo_e2e_ms, 0, "SLO on end-to-end latency, ms (0: none)");
ABSL_FLAG(double, slo_chunk_ms, 0, "Speech: SLO on every chunk latency of a stream, ms (0: none)");
// Output.
ABSL_FLAG(std::string, json, "", "Write the report as JSON to this file");
ABSL_FLAG(double, progress_interval_seconds, 1, "Progress line period on stderr (0: off)");

namespace {

using namespace mtla::bench;  // NOLINT

int Fail(const std::string& message, int code = 1) {
  std::fprintf(stderr, "mtla-bench: %s\n", message.c_str());
  return code;
}

// Polls grpc.health.v1 until SERVING or the timeout.
grpc::Status WaitForServing(const std::shared_ptr<grpc::Channel>& channel, double timeout_s) {
  auto stub = grpc::health::v1::Health::NewStub(channel);
  const double deadline = SteadySeconds() + timeout_s;
  grpc::Status last;
  std::string last_state;
  while (true) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    grpc::health::v1::HealthCheckResponse response;
    last = stub->Check(&context, grpc::health::v1::HealthCheckRequest(), &response);
    if (last.ok() && response.status() == grpc::health::v1::HealthCheckResponse::SERVING) {
      return grpc::Status::OK;
    }
    if (last.ok()) {
      last_state = grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status());
    }
    if (SteadySeconds() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  if (last.ok()) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "server health is " + last_state);
  }
  return last;
}

absl::StatusOr<SpeechScenarioOptions> SpeechOptions() {
  SpeechScenarioOptions speech;
  absl::StatusOr<Pace> pace = ParsePace(absl::GetFlag(FLAGS_pace));
  if (!pace.ok()) return pace.status();
  speech.pace = *pace;
  speech.beam_size = absl::GetFlag(FLAGS_beam_size);
  if (speech.beam_size < 0) return absl::InvalidArgumentError("--beam_size must be >= 0");
  speech.max_tokens = absl::GetFlag(FLAGS_max_tokens);
  if (speech.max_tokens < 0) return absl::InvalidArgumentError("--max_tokens must be >= 0");
  speech.request_timeout_s = absl::GetFlag(FLAGS_request_timeout_seconds);
  return speech;
}

// The text workload needs the model's limits, so it is built after
// Models.GetModelInfo; its errors are usage errors (exit code 2).
absl::StatusOr<std::unique_ptr<Scenario>> MakeTextScenario(
    const std::vector<std::shared_ptr<grpc::Channel>>& channels, const mtla::v1::ModelInfo& info,
    uint64_t seed) {
  ModelLimits limits;
  limits.vocab_size = info.vocab_size();
  limits.max_context_tokens = info.max_context_tokens();
  limits.max_new_tokens_limit = info.max_new_tokens_limit();
  absl::StatusOr<TextWorkload> workload =
      absl::GetFlag(FLAGS_dataset).empty()
          ? TextWorkload::Random({absl::GetFlag(FLAGS_prompt_len), absl::GetFlag(FLAGS_output_len),
                                  absl::GetFlag(FLAGS_range_ratio)},
                                 limits, seed)
          : TextWorkload::FromJsonl(absl::GetFlag(FLAGS_dataset), absl::GetFlag(FLAGS_output_len),
                                    limits, seed);
  if (!workload.ok()) return workload.status();
  TextScenarioOptions text;
  text.temperature = static_cast<float>(absl::GetFlag(FLAGS_temperature));
  text.top_k = absl::GetFlag(FLAGS_top_k);
  text.top_p = static_cast<float>(absl::GetFlag(FLAGS_top_p));
  text.ignore_eos = absl::GetFlag(FLAGS_ignore_eos);
  text.seed = seed;
  text.request_timeout_s = absl::GetFlag(FLAGS_request_timeout_seconds);
  return std::make_unique<TextGenerationScenario>(channels, *std::move(workload), text);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> rest = mtla::ParseCommandLineFlags(
      argc, argv, "mtla-bench",
      "load generator for mtla-server.\n\n"
      "mtla-bench --address HOST:PORT [--scenario text|speech] [--concurrency N | "
      "--request_rate R] [--num_requests N] [--duration_seconds S] [--json FILE] ...\n"
      "  text:   [--prompt_len N --output_len N | --dataset FILE.jsonl] ...\n"
      "  speech: --wav FILE[,FILE...] [--chunk_ms 100] [--pace realtime|fast] "
      "[--max_tokens N] [--slo_chunk_ms MS] ...\n"
      "Flags take --flag=value or --flag value; see docs/load-testing.md.");
  if (rest.size() > 1) return Fail(absl::StrCat("unexpected argument '", rest[1], "'"), 2);

  const std::string address = absl::GetFlag(FLAGS_address);
  const std::string scenario_name = absl::GetFlag(FLAGS_scenario);
  if (scenario_name != "text" && scenario_name != "speech") {
    return Fail(absl::StrCat("--scenario must be text or speech, got '", scenario_name, "'"), 2);
  }
  const bool speech = scenario_name == "speech";
  if (!speech && !absl::GetFlag(FLAGS_wav).empty()) {
    return Fail("--wav is for --scenario speech", 2);
  }
  RunOptions run;
  run.num_requests = absl::GetFlag(FLAGS_num_requests);
  run.duration_s = absl::GetFlag(FLAGS_duration_seconds);
  run.concurrency = absl::GetFlag(FLAGS_concurrency);
  run.ramp_up_s = absl::GetFlag(FLAGS_ramp_up_seconds);
  run.request_rate = absl::GetFlag(FLAGS_request_rate);
  run.burstiness = absl::GetFlag(FLAGS_burstiness);
  run.max_concurrency = absl::GetFlag(FLAGS_max_concurrency);
  run.drain_timeout_s = absl::GetFlag(FLAGS_drain_timeout_seconds);
  run.progress_interval_s = absl::GetFlag(FLAGS_progress_interval_seconds);
  run.seed = absl::GetFlag(FLAGS_seed);
  absl::StatusOr<ArrivalKind> arrival = ParseArrivalKind(absl::GetFlag(FLAGS_arrival));
  if (!arrival.ok()) return Fail(std::string(arrival.status().message()), 2);
  run.arrival = *arrival;
  if (absl::Status s = ValidateRunOptions(run); !s.ok()) return Fail(std::string(s.message()), 2);
  const int num_channels = absl::GetFlag(FLAGS_num_channels);
  if (num_channels < 1) return Fail("--num_channels must be >= 1", 2);
  // Speech flags and WAV files are checked before anything is contacted.
  std::unique_ptr<SpeechWorkload> speech_workload;
  SpeechScenarioOptions speech_options;
  if (speech) {
    absl::StatusOr<SpeechScenarioOptions> options = SpeechOptions();
    if (!options.ok()) return Fail(std::string(options.status().message()), 2);
    speech_options = *options;
    absl::StatusOr<SpeechWorkload> workload =
        SpeechWorkload::FromWavFiles(absl::GetFlag(FLAGS_wav), absl::GetFlag(FLAGS_chunk_ms));
    if (!workload.ok()) return Fail(std::string(workload.status().message()), 2);
    speech_workload = std::make_unique<SpeechWorkload>(*std::move(workload));
  }

  const mtla::ClientTlsOptions tls = {.ca_file = absl::GetFlag(FLAGS_tls_ca_file),
                                      .cert_file = absl::GetFlag(FLAGS_tls_cert_file),
                                      .key_file = absl::GetFlag(FLAGS_tls_key_file),
                                      .server_name = absl::GetFlag(FLAGS_tls_server_name)};
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int i = 0; i < num_channels; ++i) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    // Distinct subchannel pools so that each channel opens its own connection.
    if (num_channels > 1) args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    if (!absl::GetFlag(FLAGS_lb_policy).empty()) {
      args.SetLoadBalancingPolicyName(absl::GetFlag(FLAGS_lb_policy));
    }
    absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
        mtla::CreateClientChannel(address, tls, args);
    if (!channel.ok()) return Fail(std::string(channel.status().message()), 2);
    channels.push_back(*std::move(channel));
  }

  // Ready? Which model?
  if (grpc::Status s = WaitForServing(channels[0], absl::GetFlag(FLAGS_wait_for_ready_seconds));
      !s.ok()) {
    return Fail(absl::StrCat(address, " is not serving: ", mtla::GrpcStatusText(s)));
  }
  mtla::v1::ModelInfo info;
  {
    auto models = mtla::v1::Models::NewStub(channels[0]);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    grpc::Status s = models->GetModelInfo(&context, mtla::v1::GetModelInfoRequest(), &info);
    if (!s.ok()) return Fail(absl::StrCat("Models.GetModelInfo: ", mtla::GrpcStatusText(s)));
  }
  std::unique_ptr<Scenario> scenario;
  if (speech) {
    scenario = std::make_unique<SpeechTranslationScenario>(channels, std::move(*speech_workload),
                                                           speech_options);
  } else {
    absl::StatusOr<std::unique_ptr<Scenario>> text = MakeTextScenario(channels, info, run.seed);
    if (!text.ok()) return Fail(std::string(text.status().message()), 2);
    scenario = *std::move(text);
  }

  ReportInput input;
  input.scenario = scenario->name();
  input.target = address;
  input.model = {{"name", info.name()},
                 {"architecture", info.architecture()},
                 {"backend", info.backend()},
                 {"vocab_size", info.vocab_size()},
                 {"max_context_tokens", info.max_context_tokens()},
                 {"kv_bytes_per_token", info.kv_bytes_per_token()},
                 {"cache_capacity_tokens", info.cache_capacity_tokens()}};
  input.load = run.request_rate > 0
                   ? absl::StrCat("open loop, ", ArrivalKindName(run.arrival),
                                  run.arrival == ArrivalKind::kGamma
                                      ? absl::StrFormat(" (burstiness %g)", run.burstiness)
                                      : std::string(),
                                  " arrivals at ", run.request_rate, " req/s",
                                  run.max_concurrency > 0
                                      ? absl::StrCat(", at most ", run.max_concurrency, " in flight")
                                      : std::string())
                   : absl::StrCat("closed loop, concurrency ", run.concurrency,
                                  run.ramp_up_s > 0
                                      ? absl::StrCat(", starts spread over ", run.ramp_up_s, " s")
                                      : std::string());
  absl::StrAppend(&input.load, "; bound: ",
                  run.num_requests > 0 ? absl::StrCat(run.num_requests, " requests") : "",
                  run.num_requests > 0 && run.duration_s > 0 ? ", " : "",
                  run.duration_s > 0 ? absl::StrCat(run.duration_s, " s") : "");
  input.workload = scenario->Describe();
  input.metrics = scenario->Metrics();
  auto add_slo = [&](double ms, const char* series, const char* name) {
    if (ms > 0) input.slos.push_back({series, name, ms / 1e3, 1e3});
  };
  add_slo(absl::GetFlag(FLAGS_slo_ttft_ms), "ttft_s", "ttft_ms");
  add_slo(absl::GetFlag(FLAGS_slo_tpot_ms), "tpot_s", "tpot_ms");
  add_slo(absl::GetFlag(FLAGS_slo_itl_ms), "itl_s", "itl_ms");
  add_slo(absl::GetFlag(FLAGS_slo_e2e_ms), "e2e_s", "e2e_ms");
  add_slo(absl::GetFlag(FLAGS_slo_chunk_ms), "chunk_latency_s", "chunk_latency_ms");
  input.config = {{"address", address},
                  {"num_channels", num_channels},
                  {"lb_policy", absl::GetFlag(FLAGS_lb_policy)},
                  {"tls", tls.enabled()},
                  {"mutual_tls", !tls.cert_file.empty()},
                  {"num_requests", run.num_requests},
                  {"duration_seconds", run.duration_s},
                  {"mode", run.request_rate > 0 ? "open_loop" : "closed_loop"},
                  {"concurrency", run.concurrency},
                  {"request_rate", run.request_rate},
                  {"arrival", ArrivalKindName(run.arrival)},
                  {"burstiness", run.burstiness},
                  {"max_concurrency", run.max_concurrency},
                  {"drain_timeout_seconds", run.drain_timeout_s},
                  {"warmup_requests", absl::GetFlag(FLAGS_warmup_requests)},
                  {"seed", run.seed},
                  {"scenario", scenario->Config()}};
  if (!speech) {
    input.config["prompt_len"] = absl::GetFlag(FLAGS_prompt_len);
    input.config["output_len"] = absl::GetFlag(FLAGS_output_len);
    input.config["range_ratio"] = absl::GetFlag(FLAGS_range_ratio);
    input.config["dataset"] = absl::GetFlag(FLAGS_dataset);
  }

  if (const int warmup = absl::GetFlag(FLAGS_warmup_requests); warmup > 0) {
    std::fprintf(stderr, "mtla-bench: %d warm-up requests\n", warmup);
    RunOptions w;
    w.num_requests = warmup;
    w.concurrency = std::max(1, std::min(warmup, run.request_rate > 0 ? 1 : run.concurrency));
    w.drain_timeout_s = run.drain_timeout_s;
    w.progress_interval_s = 0;
    Run(*scenario, w);
  }

  std::fprintf(stderr, "mtla-bench: %s against %s: %s\n", input.scenario.c_str(), address.c_str(),
               input.load.c_str());
  RunResult result = Run(*scenario, run);
  Report report = BuildReport(input, result);
  std::fputs(FormatTable(input, report).c_str(), stdout);
  std::fflush(stdout);
  if (const std::string path = absl::GetFlag(FLAGS_json); !path.empty()) {
    std::ofstream out(path);
    out << ToJson(input, report).dump(2) << "\n";
    if (!out) return Fail(absl::StrCat("cannot write ", path));
  }
  if (report.completed == 0) return Fail("no request succeeded");
  return 0;
}
