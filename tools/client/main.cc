// mtla-client: command-line client for mtla-server, for people and scripts.
//
//   mtla-client [--address=HOST:PORT] [--json] [--timeout=SECONDS] COMMAND ...
//   COMMAND:
//     generate --prompt_ids="1 17 42" | --prompt="TEXT" [--max_new_tokens=N] [--temperature=T]
//              [--top_k=K] [--top_p=P] [--seed=S] [--stop_ids="2 5"] [--ignore_eos]
//              [--beam_size=N]
//     translate FILE.wav [--chunk_ms=100] [--realtime] [--beam_size=N]
//              [--max_tokens=N] [--interim]
//     info
//     health [--service=NAME]
//
// Flags are absl flags: --flag=value or --flag value, anywhere on the line;
// --help lists them, --version prints the build. TLS (any of these turns it
// on; tools/common/channel_credentials.h): --tls_ca_file, --tls_cert_file with
// --tls_key_file (mutual TLS), --tls_server_name.
//
// translate streams the WAV (PCM16 mono, any rate 8-48 kHz) in chunks and
// prints each segment's result as it arrives ("[i] start-end: text | ids").
//
// Output: plain text by default; with --json every command prints exactly one
// JSON object on stdout: its result, or {"error": {"code": "UNAVAILABLE",
// "message": ...}} when the RPC fails. Exit code 0 on success (health: only
// when SERVING), 1 on an RPC error or NOT_SERVING (stderr: "mtla-client: rpc
// failed: CODE_NAME: message"), 2 on bad usage found by the client; absl
// itself exits 1 on an unknown flag.
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "engine/audio/pcm.h"
#include "google/protobuf/util/json_util.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "mtla/v1/models.grpc.pb.h"
#include "mtla/v1/speech_translation.grpc.pb.h"
#include "mtla/v1/text_generation.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tools/common/channel_credentials.h"
#include "tools/common/command_line.h"
#include "tools/common/grpc_status_text.h"

ABSL_FLAG(std::string, address, "127.0.0.1:50051", "Server address HOST:PORT");
ABSL_FLAG(bool, json, false, "Print one JSON object on stdout (every command)");
ABSL_FLAG(double, timeout, 0,
          "Deadline in seconds (0: none; info and health default to 5 s)");
// generate
ABSL_FLAG(std::string, prompt_ids, "", "generate: prompt token ids, space or comma separated");
ABSL_FLAG(std::string, prompt, "",
          "generate: prompt text (the model needs a tokenizer); prints the text as it streams");
ABSL_FLAG(int, max_new_tokens, 16, "generate: tokens to generate at most");
ABSL_FLAG(double, temperature, 0, "generate: sampling temperature (0: greedy)");
ABSL_FLAG(int, top_k, 0, "generate: top-k (0: off)");
ABSL_FLAG(double, top_p, 0, "generate: top-p (0: off)");
ABSL_FLAG(int64_t, seed, -1, "generate: sampling seed (< 0: the server picks)");
ABSL_FLAG(std::string, stop_ids, "", "generate: token ids that end generation");
ABSL_FLAG(bool, ignore_eos, false, "generate: go on past end-of-sequence");
ABSL_FLAG(int, beam_size, 0, "generate, translate: beam size (0 or 1: greedy)");
// translate
ABSL_FLAG(int, chunk_ms, 100, "translate: milliseconds of audio per message");
ABSL_FLAG(bool, realtime, false, "translate: send audio at real-time pace");
ABSL_FLAG(int, max_tokens, 0, "translate: tokens per segment at most (0: model default)");
ABSL_FLAG(bool, interim, false, "translate: ask for interim results");
// health
ABSL_FLAG(std::string, service, "", "health: service name (\"\": the server as a whole)");
// TLS
ABSL_FLAG(std::string, tls_ca_file, "",
          "TLS: PEM CA certificates the server's certificate must chain to");
ABSL_FLAG(std::string, tls_cert_file, "", "TLS: PEM client certificate chain (mutual TLS)");
ABSL_FLAG(std::string, tls_key_file, "", "TLS: PEM private key of --tls_cert_file");
ABSL_FLAG(std::string, tls_server_name, "",
          "TLS: name to check in the server's certificate instead of the address's host");

namespace {

constexpr char kUsage[] =
    "command-line client for mtla-server.\n\n"
    "  mtla-client [--address=HOST:PORT] [--json] [--timeout=S] generate --prompt_ids=\"1 17 42\" | --prompt=\"TEXT\"\n"
    "              [--max_new_tokens=N] [--temperature=T] [--top_k=K] [--top_p=P] [--seed=S]\n"
    "              [--stop_ids=\"2\"] [--ignore_eos] [--beam_size=N]\n"
    "  mtla-client [...] translate FILE.wav [--chunk_ms=100] [--realtime] [--interim]\n"
    "              [--beam_size=N] [--max_tokens=N]\n"
    "  mtla-client [...] info\n"
    "  mtla-client [...] health [--service=NAME]\n\n"
    "--json: one JSON object on stdout for every command. Exit 0 on success, 1 on an RPC\n"
    "error or NOT_SERVING, 2 on bad usage.";

int Usage(const std::string& why) {
  std::fprintf(stderr, "mtla-client: %s (mtla-client --help)\n", why.c_str());
  return 2;
}

int RpcError(const grpc::Status& status, bool json) {
  std::fprintf(stderr, "mtla-client: rpc failed: %s\n", mtla::GrpcStatusText(status).c_str());
  if (json) {
    nlohmann::json error = {{"code", mtla::GrpcStatusCodeName(status.error_code())},
                            {"message", status.error_message()}};
    std::printf("%s\n", nlohmann::json{{"error", error}}.dump().c_str());
  }
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

int Health(const std::shared_ptr<grpc::Channel>& channel, bool json, double timeout) {
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  SetDeadline(&context, timeout > 0 ? timeout : 5);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(absl::GetFlag(FLAGS_service));
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) return RpcError(status, json);
  const std::string name =
      grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status());
  if (json) {
    std::printf("%s\n",
                nlohmann::json{{"service", request.service()}, {"status", name}}.dump().c_str());
  } else {
    std::printf("%s\n", name.c_str());
  }
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING ? 0 : 1;
}

int Info(const std::shared_ptr<grpc::Channel>& channel, bool json, double timeout) {
  auto stub = mtla::v1::Models::NewStub(channel);
  grpc::ClientContext context;
  SetDeadline(&context, timeout > 0 ? timeout : 5);
  mtla::v1::ModelInfo info;
  grpc::Status status = stub->GetModelInfo(&context, mtla::v1::GetModelInfoRequest(), &info);
  if (!status.ok()) return RpcError(status, json);
  if (json) {
    google::protobuf::util::JsonPrintOptions options;
    options.preserve_proto_field_names = true;
    options.always_print_primitive_fields = true;
    std::string text;
    if (!google::protobuf::util::MessageToJsonString(info, &text, options).ok()) {
      std::fprintf(stderr, "mtla-client: cannot print ModelInfo as JSON\n");
      return 1;
    }
    std::printf("%s\n", text.c_str());
  } else {
    std::printf("%s\n", info.DebugString().c_str());
  }
  return 0;
}

int Translate(const std::shared_ptr<grpc::Channel>& channel, bool json, double timeout,
              const std::string& wav_path) {
  const int chunk_ms = absl::GetFlag(FLAGS_chunk_ms);
  if (chunk_ms <= 0) return Usage("--chunk_ms must be positive");
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
  config->set_beam_size(absl::GetFlag(FLAGS_beam_size));
  config->set_max_tokens(absl::GetFlag(FLAGS_max_tokens));
  config->set_interim_results(absl::GetFlag(FLAGS_interim));
  stream->Write(request);
  // Results are read on their own thread while audio is written.
  nlohmann::json results = nlohmann::json::array();
  nlohmann::json metadata = nlohmann::json::object();
  std::thread reader([&] {
    mtla::v1::StreamingTranslateResponse response;
    while (stream->Read(&response)) {
      if (response.has_metadata()) {  // the call's first response
        metadata = {{"model", response.metadata().model()},
                    {"source_language", response.metadata().source_language()},
                    {"target_language", response.metadata().target_language()}};
      }
      if (!response.has_result()) continue;
      const auto& r = response.result();
      if (r.kind() == mtla::v1::RESULT_KIND_DELTA) continue;  // the final line has them all
      std::vector<int32_t> ids(r.token_ids().begin(), r.token_ids().end());
      if (json) {
        nlohmann::json entry = {{"segment", r.segment_index()}, {"start", r.start_seconds()},
                                {"end", r.end_seconds()}, {"text", r.text()}, {"token_ids", ids},
                                {"final", r.is_final()}, {"rtf", r.timing().real_time_factor()},
                                {"kind", mtla::v1::ResultKind_Name(r.kind())}};
        if (r.kind() == mtla::v1::RESULT_KIND_INTERIM) entry["stability"] = r.stability();
        if (r.is_final()) {
          entry["alternatives"] = nlohmann::json::array();
          for (const auto& a : r.alternatives()) {
            entry["alternatives"].push_back({{"text", a.text()}, {"score", a.score()}});
          }
        }
        results.push_back(std::move(entry));
      } else {
        std::printf("[%d%s] %.2f-%.2fs: %s | %s (rtf %.3f)\n", r.segment_index(),
                    r.is_final() ? "" : " interim", r.start_seconds(), r.end_seconds(),
                    r.text().c_str(), absl::StrJoin(ids, " ").c_str(),
                    r.timing().real_time_factor());
        std::fflush(stdout);
      }
    }
  });
  const bool realtime = absl::GetFlag(FLAGS_realtime);
  const size_t chunk = static_cast<size_t>(wav->sample_rate_hz) * chunk_ms / 1000;
  for (size_t at = 0; at < wav->samples.size(); at += chunk) {
    const size_t n = std::min(chunk, wav->samples.size() - at);
    mtla::v1::StreamingTranslateRequest audio;
    audio.set_audio(
        mtla::audio::EncodePcm16(std::span<const float>(wav->samples.data() + at, n)));
    if (!stream->Write(audio)) break;
    if (realtime) std::this_thread::sleep_for(std::chrono::milliseconds(chunk_ms));
  }
  stream->WritesDone();
  reader.join();
  grpc::Status status = stream->Finish();
  if (!status.ok()) return RpcError(status, json);
  if (json) {
    std::printf("%s\n",
                nlohmann::json{{"metadata", metadata}, {"results", results}}.dump().c_str());
  }
  return 0;
}

int Generate(const std::shared_ptr<grpc::Channel>& channel, bool json, double timeout) {
  mtla::v1::GenerateRequest request;
  std::vector<int32_t> ids, stops;
  if (!ParseIds(absl::GetFlag(FLAGS_prompt_ids), &ids)) {
    return Usage("--prompt_ids must be integers");
  }
  if (!ParseIds(absl::GetFlag(FLAGS_stop_ids), &stops)) return Usage("--stop_ids must be integers");
  for (int32_t id : ids) request.add_prompt_token_ids(id);
  const std::string prompt = absl::GetFlag(FLAGS_prompt);
  if (!prompt.empty() && !ids.empty()) return Usage("give --prompt or --prompt_ids, not both");
  request.set_prompt(prompt);
  const bool print_text = !prompt.empty();  // else token ids, as before
  for (int32_t id : stops) request.add_stop_token_ids(id);
  request.set_max_new_tokens(absl::GetFlag(FLAGS_max_new_tokens));
  request.mutable_sampling()->set_temperature(static_cast<float>(absl::GetFlag(FLAGS_temperature)));
  request.mutable_sampling()->set_top_k(absl::GetFlag(FLAGS_top_k));
  request.mutable_sampling()->set_top_p(static_cast<float>(absl::GetFlag(FLAGS_top_p)));
  const int64_t seed = absl::GetFlag(FLAGS_seed);
  if (seed >= 0) request.mutable_sampling()->set_seed(static_cast<uint64_t>(seed));
  request.set_ignore_eos(absl::GetFlag(FLAGS_ignore_eos));
  request.set_beam_size(absl::GetFlag(FLAGS_beam_size));

  auto stub = mtla::v1::TextGeneration::NewStub(channel);
  grpc::ClientContext context;
  SetDeadline(&context, timeout);
  auto reader = stub->Generate(&context, request);
  mtla::v1::GenerateResponse response, last;
  std::vector<int32_t> tokens;
  std::string text;
  while (reader->Read(&response)) {
    text += response.text();
    if (!json && print_text) std::fputs(response.text().c_str(), stdout);
    for (int32_t id : response.token_ids()) {
      tokens.push_back(id);
      if (!json && !print_text) std::printf("%s%d", tokens.size() == 1 ? "" : " ", id);
    }
    if (!json) std::fflush(stdout);
    last = response;
  }
  grpc::Status status = reader->Finish();
  if (!json && (print_text ? !text.empty() : !tokens.empty())) std::printf("\n");
  if (!status.ok()) return RpcError(status, json);
  const std::string finish = mtla::v1::FinishReason_Name(last.finish_reason());
  if (json) {
    nlohmann::json out = {
        {"token_ids", tokens},
        {"text", text},
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

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> args = mtla::ParseCommandLineFlags(argc, argv, "mtla-client", kUsage);
  if (args.size() < 2) return Usage("a command is required: generate, translate, info or health");
  const std::string command = args[1];
  const size_t expected_args = command == "translate" ? 3 : 2;
  if (command == "translate" && args.size() < 3) return Usage("translate needs a WAV file");
  if (args.size() > expected_args) {
    return Usage(std::string("unexpected argument ") + args[expected_args]);
  }
  const bool json = absl::GetFlag(FLAGS_json);
  const double timeout = absl::GetFlag(FLAGS_timeout);
  if (command != "generate" && command != "translate" && command != "info" &&
      command != "health") {
    return Usage("command must be generate, translate, info or health, got '" + command + "'");
  }

  const mtla::ClientTlsOptions tls = {.ca_file = absl::GetFlag(FLAGS_tls_ca_file),
                                      .cert_file = absl::GetFlag(FLAGS_tls_cert_file),
                                      .key_file = absl::GetFlag(FLAGS_tls_key_file),
                                      .server_name = absl::GetFlag(FLAGS_tls_server_name)};
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      mtla::CreateClientChannel(absl::GetFlag(FLAGS_address), tls);
  if (!channel.ok()) return Usage(std::string(channel.status().message()));

  if (command == "health") return Health(*channel, json, timeout);
  if (command == "info") return Info(*channel, json, timeout);
  if (command == "translate") return Translate(*channel, json, timeout, args[2]);
  return Generate(*channel, json, timeout);
}
