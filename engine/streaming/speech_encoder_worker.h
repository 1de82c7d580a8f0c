// The one thread that encodes speech for every stream of a server. Sessions
// hand it a closed segment's features (or an interim's) and get the decoder
// prefix back through a callback; the worker takes everything waiting, up to
// a frame budget, and encodes it as one ragged batch (SpeechEncoder::
// EncodeBatch), so the encoder's GEMMs see the rows of all streams at once
// and no gRPC thread ever runs the encoder. Finals go before interims.
// With a CPU engine as its host, the batch's stages (the subsampler, each
// layer, the final norm with the projector) run as the engine's side work
// (Engine::PostSideWork): on the engine thread, alternating with decode
// steps, in the process's one OpenMP team, so two teams never share (and spin
// on) the same cores and a step waits one stage at most. Without a host
// (a GPU engine, whose steps leave the cores free) they run on the worker's
// own thread.
//
// Thread-safety: thread-safe. Callbacks run on the worker thread, one at a
// time, with no worker lock held; they must not call Forget or destroy the
// worker.
#ifndef MTLA_ENGINE_STREAMING_SPEECH_ENCODER_WORKER_H_
#define MTLA_ENGINE_STREAMING_SPEECH_ENCODER_WORKER_H_

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/metrics/serving_metrics.h"
#include "engine/serving/engine.h"
#include "engine/speech/speech_model.h"

namespace mtla {

struct EncoderWorkerOptions {
  // Feature frames (10 ms each) in one batch at most; a longer segment is
  // encoded alone. 6000: a minute of audio, about 0.5 GB of activations on
  // the paper's dimensions.
  int64_t max_batch_frames = 6000;
  // Segments waiting at most; Enqueue beyond is ResourceExhausted.
  size_t max_queued_segments = 1024;
};

// A segment's decoder prefix, and what it cost.
struct EncodedSegment {
  std::vector<float> prefix;  // [prefix_rows, decoder_embed_dim]
  int64_t prefix_rows = 0;
  double queue_seconds = 0;   // Enqueue -> its batch started
  double encode_seconds = 0;  // its batch's encoder and projector
  int batch_size = 0;         // segments in its batch
};

struct EncodeJob {
  const void* owner = nullptr;  // Forget(owner) drops its jobs
  std::vector<float> features;  // [frames, input_dim], normalized (CMVN done)
  bool interim = false;         // encoded after every final waiting
  // Optional; asked when its batch is formed: true skips the encoding and
  // `done` gets Cancelled.
  std::function<bool()> cancelled;
  // Exactly once, on the worker thread (or Unavailable from the destructor),
  // unless Forget(owner) dropped the job first.
  std::function<void(absl::StatusOr<EncodedSegment>)> done;
};

class SpeechEncoderWorker {
 public:
  // `model` (with an encoder) must outlive the worker; `metrics` and `host`
  // may be null. Starts the thread.
  SpeechEncoderWorker(const SpeechModel* model, EncoderWorkerOptions options,
                      std::shared_ptr<ServingMetrics> metrics, std::shared_ptr<Engine> host);
  // Ends every job still waiting with Unavailable and joins the thread.
  ~SpeechEncoderWorker();
  SpeechEncoderWorker(const SpeechEncoderWorker&) = delete;
  SpeechEncoderWorker& operator=(const SpeechEncoderWorker&) = delete;

  // ResourceExhausted when max_queued_segments are waiting; InvalidArgument
  // for features that are not whole frames.
  absl::Status Enqueue(EncodeJob job) ABSL_LOCKS_EXCLUDED(mu_);
  // Drops the waiting jobs of `owner` (their callbacks never run) and waits
  // for its callbacks in progress: afterwards no callback of `owner` runs.
  void Forget(const void* owner) ABSL_LOCKS_EXCLUDED(mu_);

  size_t queued() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  using Clock = std::chrono::steady_clock;
  struct Waiting {
    EncodeJob job;
    Clock::time_point enqueued;
  };
  void Loop();
  // Takes the next batch: finals in arrival order, then interims, up to
  // max_batch_frames (one job at least). Marks their owners in flight.
  std::vector<Waiting> TakeBatch() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RunBatch(std::vector<Waiting> batch);
  // Encodes and projects `inputs` (on the host's thread when there is one):
  // one result per input.
  std::vector<absl::StatusOr<EncodedSegment>> Encode(
      const std::vector<SpeechEncoder::Input>& inputs);
  // One callback of a taken job; then its owner is no longer in flight.
  void Complete(Waiting& waiting, absl::StatusOr<EncodedSegment> result)
      ABSL_LOCKS_EXCLUDED(mu_);

  const SpeechModel* const model_;
  const EncoderWorkerOptions options_;
  const std::shared_ptr<ServingMetrics> metrics_;
  const std::shared_ptr<Engine> host_;
  const int input_dim_;
  // The encoder layers' activations, reused by one batch after another
  // (touched only by the batch in flight); as large as the largest batch:
  // max_batch_frames, or one longer segment.
  SpeechEncoder::LayerScratch scratch_;

  mutable absl::Mutex mu_;
  std::deque<Waiting> queue_ ABSL_GUARDED_BY(mu_);
  // One entry per taken job whose callback has not returned.
  std::vector<const void*> in_flight_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace mtla

#endif  // MTLA_ENGINE_STREAMING_SPEECH_ENCODER_WORKER_H_
