// mtla-client: command-line client for mtla-server, for people and scripts.
//
//   mtla-client [--address HOST:PORT] [--json] [--timeout SECONDS] generate
//       --prompt-ids "1 17 42" [--max-new-tokens N] [--temperature T] [--top-k K]
//       [--top-p P] [--seed S] [--stop-ids "2 5"] [--ignore-eos] [--beam N]
//   mtla-client [--address ...] [--json] info
//   mtla-client [--address ...] [--json] health [--service NAME]
//   mtla-client [--address ...] [--json] translate FILE.wav [--chunk-ms 100]
//       [--realtime] [--beam N] [--max-tokens N] [--interim]
//
// TLS (any of these turns it on; tools/common/channel_credentials.h):
//   --tls_ca_file CA.pem           roots the server's certificate must chain to
//                                  (default: the system's)
//   --tls_cert_file C.pem --tls_key_file C.key   client certificate (mutual TLS)
//   --tls_server_name NAME         check NAME in the server's certificate instead
//                                  of the address's host (e.g. when dialing an IP)
//
// translate streams the WAV (PCM16 mono, any rate 8-48 kHz) in chunks and
// prints each segment's result as it arrives ("[i] start-end: text | ids").
//
// Plain output: generate prints the token ids on one line as they stream, then
// a summary line; --json prints one JSON object at the end. Exit code 0 on
// success, 1 on an RPC error (the status is printed to stderr), 2 on bad usage.
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "grpcpp/grpcpp.h"
#include "engine/audio/pcm.h"
#include "mtla/v1/models.grpc.pb.h"
#include "mtla/v1/speech_translation.grpc.pb.h"
#include "mtla/v1/text_generation.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "grpc/health/v1/health.grpc.pb.h"
#include "tools/common/channel_credentials.h"

namespace {

int Usage(const std::string& why) {
  std::fprintf(stderr, "mtla-client: %s\n(see the comment at the top of tools/client/main.cc)\n",
               why.c_str());
  return 2;
}

int RpcError(const grpc::Status& status) {
  std::fprintf(stderr, "mtla-client: rpc failed: %d (%s) %s\n", status.error_code(),
               status.error_code() == grpc::StatusCode::INVALID_ARGUMENT ? "INVALID_ARGUMENT" : "",
               status.error_message().c_str());
  return 1;
}

bool ParseIds(const std::string& text, std::vector<int32_t>* ids) {
  for (absl::string_view piece : absl::StrSplit(text, absl::ByAnyChar(" ,"), absl::SkipEmpty())) {
    int32_t id;
    if (!absl::SimpleAtoi(piece, &id)) return false;
    ids->push_back(id);
  }
  return true;
}

void SetDeadline(grpc::ClientContext* context, double seconds) {
  if (seconds > 0) {
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::microseconds(static_cast<int64_t>(seconds * 1e6)));
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string address = "127.0.0.1:50051", command, prompt_ids, stop_ids, service;
  bool json = false, ignore_eos = false;
  double timeout = 0, temperature = 0, top_p = 0;
  int max_new_tokens = 16, top_k = 0, chunk_ms = 100, beam = 0, max_tokens = 0;
  bool realtime = false, interim = false;
  std::string wav_path;
  int64_t seed = -1;
  mtla::ClientTlsOptions tls;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    bool ok = true;
    if (arg == "--address") address = value();
    else if (arg == "--json") json = true;
    else if (arg == "--timeout") ok = absl::SimpleAtod(value(), &timeout);
    else if (arg == "--prompt-ids") prompt_ids = value();
    else if (arg == "--max-new-tokens") ok = absl::SimpleAtoi(value(), &max_new_tokens);
    else if (arg == "--temperature") ok = absl::SimpleAtod(value(), &temperature);
    else if (arg == "--top-k") ok = absl::SimpleAtoi(value(), &top_k);
    else if (arg == "--top-p") ok = absl::SimpleAtod(value(), &top_p);
    else if (arg == "--seed") ok = absl::SimpleAtoi(value(), &seed);
    else if (arg == "--stop-ids") stop_ids = value();
    else if (arg == "--ignore-eos") ignore_eos = true;
    else if (arg == "--service") service = value();
    else if (arg == "--chunk-ms") ok = absl::SimpleAtoi(value(), &chunk_ms) && chunk_ms > 0;
    else if (arg == "--realtime") realtime = true;
    else if (arg == "--beam") ok = absl::SimpleAtoi(value(), &beam);
    else if (arg == "--max-tokens") ok = absl::SimpleAtoi(value(), &max_tokens);
    else if (arg == "--interim") interim = true;
    else if (arg == "--tls_ca_file") tls.ca_file = value();
    else if (arg == "--tls_cert_file") tls.cert_file = value();
    else if (arg == "--tls_key_file") tls.key_file = value();
    else if (arg == "--tls_server_name") tls.server_name = value();
    else if (command.empty() && arg[0] != '-') command = arg;
    else if (command == "translate" && wav_path.empty() && arg[0] != '-') wav_path = arg;
    else return Usage("unknown argument " + arg);
    if (!ok) return Usage("bad value for " + arg);
  }
  absl::StatusOr<std::shared_ptr<grpc::Channel>> made = mtla::CreateClientChannel(address, tls);
  if (!made.ok()) return Usage(std::string(made.status().message()));
  std::shared_ptr<grpc::Channel> channel = *std::move(made);

  if (command == "health") {
    auto stub = grpc::health::v1::Health::NewStub(channel);
    grpc::ClientContext context;
    SetDeadline(&context, timeout > 0 ? timeout : 5);
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    grpc::health::v1::HealthCheckResponse response;
    grpc::Status status = stub->Check(&context, request, &response);
    if (!status.ok()) return RpcError(status);
    const std::string name = grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status());
    if (json) std::printf("%s\n", nlohmann::json{{"status", name}}.dump().c_str());
    else std::printf("%s\n", name.c_str());
    return response.status() == grpc::health::v1::HealthCheckResponse::SERVING ? 0 : 1;
  }
  if (command == "info") {
    auto stub = mtla::v1::Models::NewStub(channel);
    grpc::ClientContext context;
    SetDeadline(&context, timeout > 0 ? timeout : 5);
    mtla::v1::ModelInfo info;
    grpc::Status status = stub->GetModelInfo(&context, mtla::v1::GetModelInfoRequest(), &info);
    if (!status.ok()) return RpcError(status);
    std::printf("%s\n", info.DebugString().c_str());
    return 0;
  }
  if (command == "translate") {
    if (wav_path.empty()) return Usage("translate needs a WAV file");
    auto wav = mtla::audio::ReadWavFile(wav_path);
    if (!wav.ok()) return Usage(std::string(wav.status().message()));
    auto stub = mtla::v1::SpeechTranslation::NewStub(channel);
    grpc::ClientContext context;
    SetDeadline(&context, timeout);
    auto stream = stub->StreamingTranslate(&context);
    mtla::v1::StreamingTranslateRequest request;
    mtla::v1::TranslationConfig* config = request.mutable_config();
    config->set_encoding(mtla::v1::LINEAR_PCM16);
    config->set_sample_rate_hz(wav->sample_rate_hz);
    config->set_beam_size(beam);
    config->set_max_tokens(max_tokens);
    config->set_interim_results(interim);
    stream->Write(request);
    // Results are read on their own thread while audio is written.
    nlohmann::json results = nlohmann::json::array();
    std::thread reader([&] {
      mtla::v1::StreamingTranslateResponse response;
      while (stream->Read(&response)) {
        if (!response.has_result()) continue;
        const auto& r = response.result();
        if (!r.is_final() && !r.has_timing()) continue;  // text deltas: the final line has all
        std::vector<int32_t> ids(r.token_ids().begin(), r.token_ids().end());
        if (json) {
          results.push_back({{"segment", r.segment_index()}, {"start", r.start_seconds()},
                             {"end", r.end_seconds()}, {"text", r.text()}, {"token_ids", ids},
                             {"final", r.is_final()}, {"rtf", r.timing().real_time_factor()}});
        } else {
          std::printf("[%d%s] %.2f-%.2fs: %s | %s (rtf %.3f)\n", r.segment_index(),
                      r.is_final() ? "" : " interim", r.start_seconds(), r.end_seconds(),
                      r.text().c_str(), absl::StrJoin(ids, " ").c_str(),
                      r.timing().real_time_factor());
          std::fflush(stdout);
        }
      }
    });
    const size_t chunk = static_cast<size_t>(wav->sample_rate_hz) * chunk_ms / 1000;
    for (size_t at = 0; at < wav->samples.size(); at += chunk) {
      const size_t n = std::min(chunk, wav->samples.size() - at);
      mtla::v1::StreamingTranslateRequest audio;
      audio.set_audio(mtla::audio::EncodePcm16(
          std::span<const float>(wav->samples.data() + at, n)));
      if (!stream->Write(audio)) break;
      if (realtime) std::this_thread::sleep_for(std::chrono::milliseconds(chunk_ms));
    }
    stream->WritesDone();
    reader.join();
    grpc::Status status = stream->Finish();
    if (!status.ok()) return RpcError(status);
    if (json) std::printf("%s\n", nlohmann::json{{"results", results}}.dump().c_str());
    return 0;
  }
  if (command != "generate") return Usage("command must be generate, translate, info or health");

  mtla::v1::GenerateRequest request;
  std::vector<int32_t> ids, stops;
  if (!ParseIds(prompt_ids, &ids)) return Usage("--prompt-ids must be integers");
  if (!ParseIds(stop_ids, &stops)) return Usage("--stop-ids must be integers");
  for (int32_t id : ids) request.add_prompt_token_ids(id);
  for (int32_t id : stops) request.add_stop_token_ids(id);
  request.set_max_new_tokens(max_new_tokens);
  request.mutable_sampling()->set_temperature(static_cast<float>(temperature));
  request.mutable_sampling()->set_top_k(top_k);
  request.mutable_sampling()->set_top_p(static_cast<float>(top_p));
  if (seed >= 0) request.mutable_sampling()->set_seed(static_cast<uint64_t>(seed));
  request.set_ignore_eos(ignore_eos);
  request.set_beam_size(beam);

  auto stub = mtla::v1::TextGeneration::NewStub(channel);
  grpc::ClientContext context;
  SetDeadline(&context, timeout);
  auto reader = stub->Generate(&context, request);
  mtla::v1::GenerateResponse response, last;
  std::vector<int32_t> tokens;
  while (reader->Read(&response)) {
    for (int32_t id : response.token_ids()) {
      tokens.push_back(id);
      if (!json) std::printf("%s%d", tokens.size() == 1 ? "" : " ", id);
    }
    if (!json) std::fflush(stdout);
    last = response;
  }
  grpc::Status status = reader->Finish();
  if (!json && !tokens.empty()) std::printf("\n");
  if (!status.ok()) return RpcError(status);
  const std::string finish = mtla::v1::FinishReason_Name(last.finish_reason());
  if (json) {
    nlohmann::json out = {{"token_ids", tokens},
                          {"finish_reason", finish},
                          {"prompt_tokens", last.usage().prompt_tokens()},
                          {"generated_tokens", last.usage().generated_tokens()},
                          {"time_to_first_token_seconds", last.timing().time_to_first_token_seconds()},
                          {"total_seconds", last.timing().total_seconds()},
                          {"num_preemptions", last.timing().num_preemptions()}};
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf("finish=%s prompt_tokens=%d generated_tokens=%d ttft=%.4fs total=%.4fs\n",
                finish.c_str(), last.usage().prompt_tokens(), last.usage().generated_tokens(),
                last.timing().time_to_first_token_seconds(), last.timing().total_seconds());
  }
  return 0;
}
