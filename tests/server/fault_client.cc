// A client the fault-injection tests start and kill -9 in the middle of a
// call: `fault_client MODE PORT [WAV]`.
//   speech  streams WAV (16-bit PCM) to StreamingTranslate at real-time pace,
//           over and over, reading every response
//   text    a long Generate, reading every response
//   noread  a long Generate whose responses are never read
// Prints "READY" once the call is under way (a first response about the audio arrived, or,
// for noread, the call started), then runs until killed (at most 120 s).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "engine/audio/pcm.h"
#include "grpcpp/grpcpp.h"
#include "mtla/v1/speech_translation.grpc.pb.h"
#include "mtla/v1/text_generation.grpc.pb.h"

namespace {

constexpr auto kLifetime = std::chrono::seconds(120);

void Ready() {
  std::printf("READY\n");
  std::fflush(stdout);
}

int Speech(const std::shared_ptr<grpc::Channel>& channel, const std::string& wav_path) {
  auto wav = mtla::audio::ReadWavFile(wav_path);
  if (!wav.ok()) {
    std::fprintf(stderr, "%s\n", std::string(wav.status().message()).c_str());
    return 2;
  }
  auto stub = mtla::v1::SpeechTranslation::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kLifetime);
  auto stream = stub->StreamingTranslate(&context);
  mtla::v1::StreamingTranslateRequest request;
  request.mutable_config()->set_encoding(mtla::v1::LINEAR_PCM16);
  request.mutable_config()->set_sample_rate_hz(wav->sample_rate_hz);
  request.mutable_config()->set_interim_results(true);
  if (!stream->Write(request)) return 1;
  std::thread reader([&] {
    mtla::v1::StreamingTranslateResponse response;
    bool first = true;
    while (stream->Read(&response)) {
      if (response.has_metadata()) continue;  // the config was accepted; audio is not flowing yet
      if (first) Ready();
      first = false;
    }
  });
  const size_t chunk = static_cast<size_t>(wav->sample_rate_hz) / 10;  // 100 ms
  while (true) {
    for (size_t i = 0; i < wav->samples.size(); i += chunk) {
      std::string bytes;
      for (size_t j = i; j < std::min(i + chunk, wav->samples.size()); ++j) {
        const int16_t s = static_cast<int16_t>(wav->samples[j]);
        bytes.append(reinterpret_cast<const char*>(&s), 2);
      }
      mtla::v1::StreamingTranslateRequest audio;
      audio.set_audio(bytes);
      if (!stream->Write(audio)) {
        reader.join();
        return 1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
}

int Text(const std::shared_ptr<grpc::Channel>& channel, bool read) {
  auto stub = mtla::v1::TextGeneration::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kLifetime);
  mtla::v1::GenerateRequest request;
  for (int32_t id : {4, 8, 15, 16, 23, 42}) request.add_prompt_token_ids(id);
  request.set_max_new_tokens(400);
  request.set_ignore_eos(true);
  auto reader = stub->Generate(&context, request);
  if (!read) {
    Ready();
    std::this_thread::sleep_for(kLifetime);
    return 0;
  }
  mtla::v1::GenerateResponse response;
  bool first = true;
  while (reader->Read(&response)) {
    if (first) Ready();
    first = false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a slow reader
  }
  return reader->Finish().ok() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: fault_client speech|text|noread PORT [WAV]\n");
    return 2;
  }
  const std::string mode = argv[1];
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", argv[2]),
                                     grpc::InsecureChannelCredentials());
  if (mode == "speech" && argc >= 4) return Speech(channel, argv[3]);
  if (mode == "text") return Text(channel, /*read=*/true);
  if (mode == "noread") return Text(channel, /*read=*/false);
  std::fprintf(stderr, "fault_client: unknown mode '%s'\n", mode.c_str());
  return 2;
}
