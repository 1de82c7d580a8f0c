// Soak: the real mtla-server under mixed speech and text load on loopback for
// a bounded time, sampled every --sample_seconds: the server's resident memory
// (VmRSS of /proc/PID/status), KV cache blocks used, speech sessions alive,
// calls open, requests by status (from /metrics), and the clients' own error
// counts. Prints one table row per sample, then the RSS slope after warm-up
// (least squares, MiB per hour), and checks that once the load stops the
// cache, the sessions and the open calls return to zero and that SIGTERM
// drains the server to exit 0. Not in CI (docs/reliability.md has a run).
//
//   soak [--minutes=30] [--sample_seconds=60] [--warmup_minutes=5]
//        [--speech_clients=2] [--text_clients=2] [--text_interval_ms=500]
//        [--translate_interval_ms=10000] [--cancel_every=5]
//        [--server_binary=...] [--model_dir=...] [--server_args="--flag=v ..."]
//
// Load, bounded in rate: each speech client streams the model's sample.wav
// to StreamingTranslate at real-time pace (100 ms chunks), one stream after
// the other, and cancels every --cancel_every-th stream halfway; each text
// client runs one Generate (16-token prompt, 16-96 new tokens) every
// --text_interval_ms; one client calls Translate every
// --translate_interval_ms. Exit code 1 when the end state is not clean.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/audio/pcm.h"
#include "grpcpp/grpcpp.h"
#include "mtla/v1/speech_translation.grpc.pb.h"
#include "mtla/v1/text_generation.grpc.pb.h"
#include "tests/common/child_server.h"
#include "tests/common/metrics_scrape.h"
#include "tools/common/command_line.h"

ABSL_FLAG(double, minutes, 30, "How long the load runs");
ABSL_FLAG(double, sample_seconds, 60, "Time between samples");
ABSL_FLAG(double, warmup_minutes, 5, "Samples before this are left out of the RSS slope");
ABSL_FLAG(int, speech_clients, 2, "Concurrent real-time StreamingTranslate clients");
ABSL_FLAG(int, text_clients, 2, "Concurrent Generate clients");
ABSL_FLAG(int, text_interval_ms, 500, "Each text client starts a Generate this often");
ABSL_FLAG(int, translate_interval_ms, 10000, "One Translate call this often (0: none)");
ABSL_FLAG(int, cancel_every, 5, "Every n-th speech stream is cancelled halfway (0: never)");
ABSL_FLAG(std::string, server_binary, MTLA_SERVER_BINARY, "mtla-server to run");
ABSL_FLAG(std::string, model_dir, MTLA_DEFAULT_MODEL_DIR, "Model directory (with sample.wav)");
ABSL_FLAG(std::string, server_args, "--device=cpu --kv_cache_mb=64",
          "Extra mtla-server flags, space-separated");

namespace {

using Clock = std::chrono::steady_clock;
using mtla::test_support::HttpGet;
using mtla::test_support::MetricValue;

struct ClientCounts {
  std::atomic<int64_t> ok{0}, cancelled_by_us{0}, errors{0};
  std::mutex mu;
  std::string last_error;
  void Count(const grpc::Status& s, bool we_cancelled = false) {
    if (s.ok()) {
      ++ok;
    } else if (we_cancelled && s.error_code() == grpc::StatusCode::CANCELLED) {
      ++cancelled_by_us;
    } else {
      ++errors;
      std::lock_guard<std::mutex> lock(mu);
      last_error = absl::StrCat(s.error_code(), ": ", s.error_message());
    }
  }
};

std::string Pcm16(const std::vector<float>& samples, size_t begin, size_t end) {
  std::string bytes;
  for (size_t i = begin; i < end; ++i) {
    const int16_t v = static_cast<int16_t>(samples[i]);
    bytes.append(reinterpret_cast<const char*>(&v), 2);
  }
  return bytes;
}

// One StreamingTranslate of `wav` at real-time pace; cancelled halfway when
// `cancel`.
grpc::Status SpeechStream(mtla::v1::SpeechTranslation::Stub& stub, const mtla::audio::WavAudio& wav,
                          bool cancel) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto stream = stub.StreamingTranslate(&context);
  mtla::v1::StreamingTranslateRequest config;
  config.mutable_config()->set_encoding(mtla::v1::LINEAR_PCM16);
  config.mutable_config()->set_sample_rate_hz(wav.sample_rate_hz);
  config.mutable_config()->set_interim_results(true);
  std::thread reader;
  if (stream->Write(config)) {
    reader = std::thread([&] {
      mtla::v1::StreamingTranslateResponse response;
      while (stream->Read(&response)) {
      }
    });
    const size_t chunk = static_cast<size_t>(wav.sample_rate_hz) / 10;
    const size_t stop_at = cancel ? wav.samples.size() / 2 : wav.samples.size();
    for (size_t i = 0; i < stop_at; i += chunk) {
      mtla::v1::StreamingTranslateRequest audio;
      audio.set_audio(Pcm16(wav.samples, i, std::min(i + chunk, wav.samples.size())));
      if (!stream->Write(audio)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (cancel) {
      context.TryCancel();
    } else {
      stream->WritesDone();
    }
    reader.join();
  }
  return stream->Finish();
}

grpc::Status Generate(mtla::v1::TextGeneration::Stub& stub, std::mt19937& rng) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  mtla::v1::GenerateRequest request;
  for (int i = 0; i < 16; ++i) request.add_prompt_token_ids(4 + static_cast<int>(rng() % 500));
  request.set_max_new_tokens(16 + static_cast<int>(rng() % 81));
  request.set_ignore_eos(true);
  auto reader = stub.Generate(&context, request);
  mtla::v1::GenerateResponse response;
  while (reader->Read(&response)) {
  }
  return reader->Finish();
}

grpc::Status Translate(mtla::v1::SpeechTranslation::Stub& stub, const mtla::audio::WavAudio& wav) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  mtla::v1::TranslateRequest request;
  request.mutable_config()->set_encoding(mtla::v1::LINEAR_PCM16);
  request.mutable_config()->set_sample_rate_hz(wav.sample_rate_hz);
  request.set_audio(Pcm16(wav.samples, 0, wav.samples.size()));
  mtla::v1::TranslateResponse response;
  return stub.Translate(&context, request, &response);
}

double RssMiB(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;  // kB
  }
  return -1;
}

std::string LoadAverage() {
  std::ifstream file("/proc/loadavg");
  std::string a, b, c;
  file >> a >> b >> c;
  return absl::StrCat(a, " ", b, " ", c);
}

struct Sample {
  double minutes = 0, rss_mib = 0, blocks = -1, sessions = -1, open_calls = -1;
  double requests_ok = -1, requests_failed = -1;
  int64_t client_ok = 0, client_errors = 0;
  std::string load;
};

Sample Take(pid_t pid, int metrics_port, Clock::time_point start, const ClientCounts& counts) {
  Sample s;
  s.minutes = std::chrono::duration<double>(Clock::now() - start).count() / 60;
  s.rss_mib = RssMiB(pid);
  std::string body;
  if (HttpGet(metrics_port, "/metrics", &body) == 200) {
    s.blocks = MetricValue(body, "mtla_kv_cache_blocks_used").value_or(-1);
    s.sessions = MetricValue(body, "mtla_speech_sessions").value_or(-1);
    s.open_calls = MetricValue(body, "mtla_open_calls").value_or(-1);
    const double all = MetricValue(body, "mtla_requests_total").value_or(-1);
    s.requests_ok = MetricValue(body, "mtla_requests_total", "status=\"ok\"").value_or(-1);
    s.requests_failed = all - s.requests_ok;
  }
  s.client_ok = counts.ok.load();
  s.client_errors = counts.errors.load();
  s.load = LoadAverage();
  return s;
}

void PrintRow(const Sample& s) {
  std::printf("| %5.1f | %8.1f | %6.0f | %8.0f | %10.0f | %11.0f | %15.0f | %9lld | %13lld | %s |\n",
              s.minutes, s.rss_mib, s.blocks, s.sessions, s.open_calls, s.requests_ok,
              s.requests_failed, static_cast<long long>(s.client_ok),
              static_cast<long long>(s.client_errors), s.load.c_str());
  std::fflush(stdout);
}

// Least-squares slope of RSS (MiB) over time, in MiB per hour.
double SlopeMiBPerHour(const std::vector<Sample>& samples) {
  if (samples.size() < 2) return 0;
  double mx = 0, my = 0;
  for (const Sample& s : samples) {
    mx += s.minutes;
    my += s.rss_mib;
  }
  mx /= samples.size();
  my /= samples.size();
  double sxy = 0, sxx = 0;
  for (const Sample& s : samples) {
    sxy += (s.minutes - mx) * (s.rss_mib - my);
    sxx += (s.minutes - mx) * (s.minutes - mx);
  }
  return sxx > 0 ? sxy / sxx * 60 : 0;
}

bool ParsePorts(const std::string& log, int* port, int* metrics_port) {
  const size_t at = log.find("listening on port ");
  return at != std::string::npos &&
         std::sscanf(log.c_str() + at, "listening on port %d, metrics on port %d", port,
                     metrics_port) == 2;
}

}  // namespace

int main(int argc, char** argv) {
  mtla::ParseCommandLineFlags(argc, argv, "soak",
                              "mixed speech and text load against mtla-server, sampled; "
                              "bench/soak/soak.cc says what it does.");
  const std::string model_dir = absl::GetFlag(FLAGS_model_dir);
  auto wav = mtla::audio::ReadWavFile(model_dir + "/sample.wav");
  if (!wav.ok()) {
    std::fprintf(stderr, "soak: %s\n", std::string(wav.status().message()).c_str());
    return 2;
  }
  std::vector<std::string> args = {absl::GetFlag(FLAGS_server_binary),
                                   "--model_dir=" + model_dir, "--listen=127.0.0.1:0",
                                   "--metrics_listen=127.0.0.1:0", "--drain_grace_seconds=30"};
  for (absl::string_view a :
       absl::StrSplit(absl::GetFlag(FLAGS_server_args), ' ', absl::SkipEmpty())) {
    args.emplace_back(a);
  }
  const std::string log = absl::StrCat("/tmp/mtla_soak_server_", getpid(), ".log");
  mtla::test_support::ChildServer server;
  if (!server.Spawn(args, log)) {
    std::fprintf(stderr, "soak: cannot start %s\n", args[0].c_str());
    return 2;
  }
  int port = 0, metrics_port = 0;
  const auto start_wait = Clock::now();
  while (!ParsePorts(server.Log(), &port, &metrics_port) ||
         server.Log().find("mtla-server: serving") == std::string::npos) {
    if (server.Poll().has_value() || Clock::now() - start_wait > std::chrono::seconds(120)) {
      std::fprintf(stderr, "soak: the server did not start:\n%s\n", server.Log().c_str());
      return 2;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::printf("soak: mtla-server pid %d, port %d, metrics port %d; log %s\n", server.pid(), port,
              metrics_port, log.c_str());
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                     grpc::InsecureChannelCredentials());
  auto speech_stub = mtla::v1::SpeechTranslation::NewStub(channel);
  auto text_stub = mtla::v1::TextGeneration::NewStub(channel);

  ClientCounts counts;
  std::atomic<bool> stop{false};
  std::vector<std::thread> clients;
  for (int c = 0; c < absl::GetFlag(FLAGS_speech_clients); ++c) {
    clients.emplace_back([&, c] {
      const int cancel_every = absl::GetFlag(FLAGS_cancel_every);
      for (int n = 1; !stop.load(); ++n) {
        const bool cancel = cancel_every > 0 && (n + c) % cancel_every == 0;
        counts.Count(SpeechStream(*speech_stub, *wav, cancel), cancel);
      }
    });
  }
  for (int c = 0; c < absl::GetFlag(FLAGS_text_clients); ++c) {
    clients.emplace_back([&, c] {
      std::mt19937 rng(1234 + c);
      const auto interval = std::chrono::milliseconds(absl::GetFlag(FLAGS_text_interval_ms));
      while (!stop.load()) {
        const auto next = Clock::now() + interval;
        counts.Count(Generate(*text_stub, rng));
        std::this_thread::sleep_until(next);
      }
    });
  }
  if (const int ms = absl::GetFlag(FLAGS_translate_interval_ms); ms > 0) {
    clients.emplace_back([&, ms] {
      while (!stop.load()) {
        const auto next = Clock::now() + std::chrono::milliseconds(ms);
        counts.Count(Translate(*speech_stub, *wav));
        while (!stop.load() && Clock::now() < next) {
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
      }
    });
  }

  std::printf("\n| min | RSS MiB | blocks | sessions | open calls | requests ok | requests not ok | client ok | client errors | load avg |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration<double>(absl::GetFlag(FLAGS_minutes) * 60);
  const auto period = std::chrono::duration<double>(absl::GetFlag(FLAGS_sample_seconds));
  std::vector<Sample> samples;
  samples.push_back(Take(server.pid(), metrics_port, start, counts));
  PrintRow(samples.back());
  for (auto next = start + period; next <= end + std::chrono::seconds(1); next += period) {
    std::this_thread::sleep_until(next);
    samples.push_back(Take(server.pid(), metrics_port, start, counts));
    PrintRow(samples.back());
  }
  stop.store(true);
  for (std::thread& t : clients) t.join();

  // Idle: everything the load held must come back.
  Sample idle;
  for (int i = 0; i < 300; ++i) {
    idle = Take(server.pid(), metrics_port, start, counts);
    if (idle.blocks == 0 && idle.sessions == 0 && idle.open_calls == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::printf("| idle | %7.1f | %6.0f | %8.0f | %10.0f | %11.0f | %15.0f | %9lld | %13lld | %s |\n",
              idle.rss_mib, idle.blocks, idle.sessions, idle.open_calls, idle.requests_ok,
              idle.requests_failed, static_cast<long long>(idle.client_ok),
              static_cast<long long>(idle.client_errors), idle.load.c_str());

  std::vector<Sample> after_warmup;
  for (const Sample& s : samples) {
    if (s.minutes >= absl::GetFlag(FLAGS_warmup_minutes) - 1e-6) after_warmup.push_back(s);
  }
  double lo = 1e18, hi = -1;
  for (const Sample& s : after_warmup) {
    lo = std::min(lo, s.rss_mib);
    hi = std::max(hi, s.rss_mib);
  }
  std::printf("\nRSS after warm-up (%zu samples from minute %.0f): %.1f-%.1f MiB, slope %+.2f MiB/hour\n",
              after_warmup.size(), absl::GetFlag(FLAGS_warmup_minutes), lo, hi,
              SlopeMiBPerHour(after_warmup));
  std::printf("client calls: %lld ok, %lld cancelled by the client, %lld errors%s%s\n",
              static_cast<long long>(counts.ok.load()),
              static_cast<long long>(counts.cancelled_by_us.load()),
              static_cast<long long>(counts.errors.load()),
              counts.last_error.empty() ? "" : "; last: ", counts.last_error.c_str());

  kill(server.pid(), SIGTERM);
  const std::optional<int> exit_status = server.WaitExit(60);
  const bool clean_exit = exit_status.has_value() && WIFEXITED(*exit_status) &&
                          WEXITSTATUS(*exit_status) == 0;
  std::printf("SIGTERM: %s\n", clean_exit ? "exit 0" : "did not exit cleanly");
  const bool clean = idle.blocks == 0 && idle.sessions == 0 && idle.open_calls == 0 && clean_exit;
  std::printf("end state: %s\n", clean ? "clean (no cache block, session or call left)" : "NOT CLEAN");
  return clean ? 0 : 1;
}
