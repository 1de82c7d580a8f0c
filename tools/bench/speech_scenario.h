// Speech translation: request i is one mtla.v1.SpeechTranslation/
// StreamingTranslate call that sends a config, then the chunks of WAV clip
// i mod (number of files) one write at a time, then half-closes and reads
// until the server ends the stream. Driven by gRPC's callback API; real-time
// pacing uses one timer thread for all streams (no thread per stream).
//
// Pace:
//   realtime  chunk k is written at t0 + k * chunk_ms, t0 being the moment the
//             config write completed (so chunk k is sent when its audio would
//             be complete in a live stream that began at t0 - chunk_ms), or as
//             soon as the previous write completes when that is later (gRPC
//             allows one write in flight);
//   fast      chunk k + 1 is written as soon as the write of chunk k completes.
//
// Per successful request it records (client clock, seconds):
//   chunk_latency_s  one sample per audio chunk: the arrival time of the first
//                    response whose progress.chunks_received >= k + 1 (the
//                    first that covers chunk k) minus the time chunk k was
//                    handed to gRPC. mtla-server answers every chunk with its
//                    own progress response once the chunk is turned into
//                    features, so this is the chunk's round trip including the
//                    server's feature extraction and any encoder work done at
//                    a segment boundary. Chunks never covered give no sample.
//   rtf              the server's processing time over the audio's duration:
//                    sum over the final results of timing.encode_seconds +
//                    timing.decode_seconds (disjoint parts: each segment's
//                    processing counted once, as the server's own
//                    real_time_factor counts it), divided by the clip's
//                    duration (one sample; < 1 keeps up with real time).
//                    Segments without speech get no final result and cost
//                    nothing; their audio still counts in the duration.
//   ttft_s           call start to the first result carrying text or tokens
//                    (none when the call produced no token).
//   final_after_audio_s  the last chunk handed to gRPC to the end of the
//                    stream (status received): how long the final translation
//                    takes once the speaker stops.
//   e2e_s            call start to the end of the stream.
// output_tokens counts the tokens of the final results; input_tokens is 0.
#ifndef MTLA_TOOLS_BENCH_SPEECH_SCENARIO_H_
#define MTLA_TOOLS_BENCH_SPEECH_SCENARIO_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "mtla/v1/speech_translation.grpc.pb.h"
#include "tools/bench/scenario.h"
#include "tools/bench/speech_workload.h"
#include "tools/bench/timer_thread.h"

namespace mtla::bench {

enum class Pace { kRealtime, kFast };

// "realtime" | "fast"; InvalidArgument naming --pace otherwise.
absl::StatusOr<Pace> ParsePace(const std::string& name);
std::string PaceName(Pace pace);

struct SpeechScenarioOptions {
  Pace pace = Pace::kRealtime;
  int beam_size = 0;             // 0 or 1: greedy
  int max_tokens = 0;            // per segment; 0: the model's default
  double request_timeout_s = 0;  // per-call deadline; 0: none
};

class SpeechTranslationScenario : public Scenario {
 public:
  // Request i goes to channels[i % channels.size()].
  SpeechTranslationScenario(const std::vector<std::shared_ptr<grpc::Channel>>& channels,
                            SpeechWorkload workload, SpeechScenarioOptions options);
  // Joins the timer thread: destroy only once every call has reported done.
  ~SpeechTranslationScenario() override;

  std::string name() const override { return "speech-translation"; }
  std::string Describe() const override;
  std::vector<MetricDef> Metrics() const override;
  std::shared_ptr<Call> Start(int64_t index, Done done) override;
  nlohmann::json Config() const override;

  // The config message sent first on call `index` (exposed for tests).
  mtla::v1::StreamingTranslateRequest MakeConfig(int64_t index) const;

 private:
  std::vector<std::unique_ptr<mtla::v1::SpeechTranslation::Stub>> stubs_;
  SpeechWorkload workload_;
  SpeechScenarioOptions options_;
  std::unique_ptr<TimerThread> timer_;  // realtime pace only
};

}  // namespace mtla::bench

#endif  // MTLA_TOOLS_BENCH_SPEECH_SCENARIO_H_
