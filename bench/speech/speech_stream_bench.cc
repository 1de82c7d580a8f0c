// Concurrent real-time streaming speech translation against a running
// mtla-server: N streams each send a WAV in chunks at real-time pace (or as
// fast as possible) and the tool reports per-chunk response latency (chunk
// sent -> its progress response received), the latency of each final result
// after the end of the audio, and the server's real-time factor per segment,
// with p50/p99 over all streams.
//
//   speech_stream_bench --address=127.0.0.1:50051 --wav=FILE [--streams=N]
//       [--chunk_ms=100] [--fast] [--repeat=K] [--max_tokens=T]
//
// Exit code 1 when any stream fails. Loopback/test use: it targets only the
// address it is given.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "engine/audio/pcm.h"
#include "grpcpp/grpcpp.h"
#include "mtla/v1/speech_translation.grpc.pb.h"
#include "tools/common/command_line.h"
#include "tools/common/grpc_status_text.h"

ABSL_FLAG(std::string, address, "127.0.0.1:50051", "mtla-server address HOST:PORT");
ABSL_FLAG(std::string, wav, "", "WAV file every stream sends (PCM16 mono)");
ABSL_FLAG(int, streams, 1, "Streams at once");
ABSL_FLAG(int, chunk_ms, 100, "Milliseconds of audio per message");
ABSL_FLAG(int, repeat, 1, "Streams each of the --streams threads runs one after the other");
ABSL_FLAG(int, max_tokens, 0, "Tokens per segment at most (0: model default)");
ABSL_FLAG(bool, fast, false, "Send audio as fast as possible instead of at real-time pace");

namespace {

using Clock = std::chrono::steady_clock;

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = static_cast<size_t>(p / 100.0 * (v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

struct StreamResult {
  std::vector<double> chunk_latency_s;
  std::vector<double> final_after_end_s;
  std::vector<double> rtf;
  bool ok = true;
  std::string error;
};

StreamResult RunStream(mtla::v1::SpeechTranslation::Stub* stub, const mtla::audio::WavAudio& wav,
                       int chunk_ms, bool realtime, int max_tokens) {
  StreamResult result;
  grpc::ClientContext context;
  auto stream = stub->StreamingTranslate(&context);
  mtla::v1::StreamingTranslateRequest config;
  config.mutable_config()->set_encoding(mtla::v1::LINEAR_PCM16);
  config.mutable_config()->set_sample_rate_hz(wav.sample_rate_hz);
  config.mutable_config()->set_max_tokens(max_tokens);
  stream->Write(config);
  const size_t chunk = static_cast<size_t>(wav.sample_rate_hz) * chunk_ms / 1000;
  const size_t chunks = (wav.samples.size() + chunk - 1) / chunk;
  std::vector<Clock::time_point> sent(chunks);
  Clock::time_point audio_end;
  std::mutex mu;
  std::thread reader([&] {
    mtla::v1::StreamingTranslateResponse response;
    while (stream->Read(&response)) {
      const Clock::time_point now = Clock::now();
      std::lock_guard<std::mutex> lock(mu);
      if (response.has_progress() && response.progress().chunks_received() > 0) {
        const size_t i = response.progress().chunks_received() - 1;
        if (i < chunks) {
          result.chunk_latency_s.push_back(std::chrono::duration<double>(now - sent[i]).count());
        }
      }
      if (response.has_result() && response.result().is_final()) {
        result.final_after_end_s.push_back(std::chrono::duration<double>(now - audio_end).count());
        result.rtf.push_back(response.result().timing().real_time_factor());
      }
    }
  });
  const Clock::time_point start = Clock::now();
  for (size_t i = 0; i < chunks; ++i) {
    if (realtime) std::this_thread::sleep_until(start + std::chrono::milliseconds(chunk_ms) * i);
    const size_t at = i * chunk;
    const size_t n = std::min(chunk, wav.samples.size() - at);
    mtla::v1::StreamingTranslateRequest audio;
    audio.set_audio(mtla::audio::EncodePcm16(std::span<const float>(wav.samples.data() + at, n)));
    {
      std::lock_guard<std::mutex> lock(mu);
      sent[i] = Clock::now();
    }
    if (!stream->Write(audio)) break;
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    audio_end = Clock::now();
  }
  stream->WritesDone();
  reader.join();
  const grpc::Status status = stream->Finish();
  if (!status.ok()) {
    result.ok = false;
    result.error = mtla::GrpcStatusText(status);
  }
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> rest = mtla::ParseCommandLineFlags(
      argc, argv, "speech_stream_bench",
      "concurrent real-time streaming speech translation against a running mtla-server.\n\n"
      "  speech_stream_bench --address=HOST:PORT --wav=FILE [--streams=N] [--chunk_ms=100]\n"
      "      [--fast] [--repeat=K] [--max_tokens=T]");
  const std::string address = absl::GetFlag(FLAGS_address);
  const std::string wav_path = absl::GetFlag(FLAGS_wav);
  const int streams = absl::GetFlag(FLAGS_streams);
  const int chunk_ms = absl::GetFlag(FLAGS_chunk_ms);
  const int repeat = absl::GetFlag(FLAGS_repeat);
  const int max_tokens = absl::GetFlag(FLAGS_max_tokens);
  const bool realtime = !absl::GetFlag(FLAGS_fast);
  if (rest.size() > 1 || streams <= 0 || chunk_ms <= 0 || repeat <= 0) {
    std::fprintf(stderr, "speech_stream_bench: --streams, --chunk_ms and --repeat must be "
                         "positive, and no positional arguments are taken\n");
    return 2;
  }
  auto wav = mtla::audio::ReadWavFile(wav_path);
  if (!wav.ok()) {
    std::fprintf(stderr, "speech_stream_bench: %s\n", std::string(wav.status().message()).c_str());
    return 2;
  }
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  auto stub = mtla::v1::SpeechTranslation::NewStub(channel);
  std::vector<StreamResult> results(static_cast<size_t>(streams) * repeat);
  const Clock::time_point start = Clock::now();
  std::vector<std::thread> threads;
  for (int s = 0; s < streams; ++s) {
    threads.emplace_back([&, s] {
      for (int r = 0; r < repeat; ++r) {
        results[s * repeat + r] = RunStream(stub.get(), *wav, chunk_ms, realtime, max_tokens);
      }
    });
  }
  for (auto& t : threads) t.join();
  const double wall = std::chrono::duration<double>(Clock::now() - start).count();
  std::vector<double> chunk_latency, final_latency, rtf;
  int failed = 0;
  for (const StreamResult& r : results) {
    if (!r.ok) {
      ++failed;
      std::fprintf(stderr, "stream failed: %s\n", r.error.c_str());
    }
    chunk_latency.insert(chunk_latency.end(), r.chunk_latency_s.begin(), r.chunk_latency_s.end());
    final_latency.insert(final_latency.end(), r.final_after_end_s.begin(), r.final_after_end_s.end());
    rtf.insert(rtf.end(), r.rtf.begin(), r.rtf.end());
  }
  const double audio_s = static_cast<double>(wav->samples.size()) / wav->sample_rate_hz;
  std::printf("streams %d x %d, audio %.2f s each, %s, wall %.2f s, failed %d\n", streams, repeat,
              audio_s, realtime ? "real-time pace" : "as fast as possible", wall, failed);
  std::printf("chunk response latency  p50 %.1f ms  p99 %.1f ms  (%zu chunks)\n",
              Percentile(chunk_latency, 50) * 1e3, Percentile(chunk_latency, 99) * 1e3,
              chunk_latency.size());
  std::printf("final after audio end   p50 %.1f ms  p99 %.1f ms  (%zu segments)\n",
              Percentile(final_latency, 50) * 1e3, Percentile(final_latency, 99) * 1e3,
              final_latency.size());
  std::printf("server real-time factor p50 %.3f  p99 %.3f\n", Percentile(rtf, 50),
              Percentile(rtf, 99));
  return failed == 0 ? 0 : 1;
}
