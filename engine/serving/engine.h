// The engine: one thread owns the scheduler, the KV block manager and the
// model runner. Callers talk to it only through Submit() (a bounded command
// queue) and the per-request RequestStream; no lock is held across a model step.
//
// Thread-safety: Submit, StartDrain, Stop and the accessors are thread-safe.
#ifndef MTLA_ENGINE_SERVING_ENGINE_H_
#define MTLA_ENGINE_SERVING_ENGINE_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/generation/beam_search.h"
#include "engine/metrics/serving_metrics.h"
#include "engine/model/model_runner.h"
#include "engine/sampling/sampler.h"
#include "engine/scheduler/scheduler.h"
#include "engine/serving/request_stream.h"

namespace mtla {

struct EngineOptions {
  SchedulerConfig scheduler;
  int max_new_tokens_limit = 4096;  // per request
  // Health() reports a stall when requests are in flight and the engine
  // thread has not come round its loop for this long (a step that hangs).
  double stall_timeout_seconds = 60;
  // Side work (PostSideWork: the speech encoder's stages) between two steps:
  // at least one slice, then more while this many milliseconds have not
  // passed since the first began; a step so waits at most this long plus
  // one slice. 0: one slice per step. Measured on the 2-core EPYC with 32
  // real-time speech streams ending together (docs/benchmarks.md): 100 ms
  // ends the burst's last final result about 0.3 s sooner than 0 (decode
  // steps at small batch no longer hold up the encoding of later segments),
  // and more steadily than 60.
  double side_work_ms_per_step = 100;
};

// Who counts a request's end, and which metrics it enters.
enum class RequestKind {
  // A request of an RPC (text generation): the server counts the call in
  // mtla_requests_total; the engine observes the request-level metrics.
  kCall,
  // A speech segment: as kCall, and the engine counts it once in
  // mtla_segments_total when it ends or is refused.
  kSpeechSegment,
  // An interim hypothesis: counted in mtla_interim_decodes_total only, kept
  // out of the latency and request-level histograms.
  kInterim,
  // A speech segment's early final (speech_session.h), which may still be
  // dropped: scheduled and observed as kSpeechSegment, but its end is
  // counted by the session (in mtla_segments_total unless dropped).
  kEarlyFinal,
};

struct GenerationRequest {
  RequestKind kind = RequestKind::kCall;
  // Keys-only context before the prompt (the speech prefix): prefix_rows rows
  // of the model's hidden size, at sequence positions 0 .. prefix_rows - 1.
  std::vector<float> prefix;
  int64_t prefix_rows = 0;
  std::vector<int32_t> prompt;  // decoder input tokens (speech: [EOS])
  SamplingParams sampling;
  // Beam search with fairseq's semantics when use_beam_search: EOS is forced
  // at the max_new_tokens-th token (beam.max_len_b = max_new_tokens - 1), so
  // a hypothesis has at most max_new_tokens tokens, the last one EOS. The
  // finish reason is EOS when the beam chose EOS itself, LENGTH when EOS was
  // forced. With beam_size 1 it is fairseq's greedy decoding and tokens
  // stream as chosen; with more beams the best hypothesis arrives at the end.
  // The beams are one scheduler group of beam_size rows (see scheduler.h).
  bool use_beam_search = false;
  int beam_size = 1;
  BeamSearchOptions beam;
  // A later request of a call the server admitted before the drain began (a
  // speech stream's next segment): accepted while draining, so that open
  // streams finish. New calls must check draining() before they start.
  bool continues_admitted_call = false;
};

// Snapshot of the engine's state, for health and tests.
struct EngineStats {
  int running = 0;
  int waiting = 0;
  int in_flight = 0;  // submitted and not finished
  int cache_blocks_used = 0;
  int cache_blocks_total = 0;
  int64_t steps = 0;
  int64_t preemptions = 0;
};

class Engine {
 public:
  // Starts the engine thread. `metrics` may be null.
  Engine(std::unique_ptr<ModelRunner> runner, const EngineOptions& options,
         std::shared_ptr<ServingMetrics> metrics);
  ~Engine();  // Stop()s

  // Validates and queues a request; results arrive on the returned stream.
  // InvalidArgument names the bad field; ResourceExhausted when the queue is
  // full or the request can never fit the cache; OutOfRange when prompt plus
  // max_new_tokens exceeds the model's context; Unavailable while draining
  // (unless it continues an admitted call) or after Stop().
  absl::StatusOr<std::shared_ptr<RequestStream>> Submit(GenerationRequest request);

  // New submissions fail with Unavailable, except those that continue a call
  // admitted before (GenerationRequest::continues_admitted_call); running
  // requests go on.
  void StartDrain() { draining_.store(true); }
  // CPU work that shares the engine's cores and its OpenMP team instead of
  // running a second team beside it (the speech encoder worker): `slice`
  // runs on the engine thread between steps (as many calls as fit in
  // EngineOptions::side_work_ms_per_step, one at least), until it returns
  // false; tasks run one at a time in the order posted. A task still posted when the engine stops is called once with
  // stop = true (its answer is ignored). Returns false, posting nothing, once
  // the engine has stopped.
  using SideWork = std::function<bool(bool stop)>;
  bool PostSideWork(SideWork slice) ABSL_LOCKS_EXCLUDED(mu_);
  bool draining() const { return draining_.load(); }
  // Fails every request still in flight with Unavailable and joins the thread.
  void Stop();

  EngineStats stats() const;
  // OK while the engine can serve. Not OK when the backend failed for good
  // (every request in flight then failed with Unavailable, and so does every
  // new one), or while it is stalled (see EngineOptions); the message says
  // which, for logs and the server's health status.
  absl::Status Health() const;
  const DecoderSpec& spec() const { return spec_; }
  const KvCacheGeometry& cache_geometry() const { return geometry_; }
  int cache_blocks_total() const { return blocks_total_; }
  std::string_view backend_name() const { return backend_name_; }
  int cache_element_bytes() const { return element_bytes_; }
  const EngineOptions& options() const { return options_; }

 private:
  using Clock = std::chrono::steady_clock;
  struct Request {
    int64_t id = 0;
    RequestKind kind = RequestKind::kCall;
    std::vector<float> prefix;    // [prefix_len, hidden]
    int64_t prefix_len = 0;
    std::vector<int32_t> tokens;  // prompt then generated (positions prefix_len + i)
    int prompt_len = 0;
    bool use_beam_search = false;
    BeamSearchOptions beam_options;
    // Beam requests: the search, whose live beams are the scheduler group's
    // rows in order (beam i: prompt + beam_tokens(i)); its root is `id`.
    std::unique_ptr<BeamSearch> beam;
    // >= 0 while a preempted beam group recomputes the tokens its beams share
    // (this many) as one row, to be forked into the beams once computed.
    int64_t fork_at = -1;
    size_t streamed = 0;               // beam-1 tokens already pushed to the stream
    int64_t sequence_length() const { return prefix_len + static_cast<int64_t>(tokens.size()); }
    RequestSampler sampler;
    std::shared_ptr<RequestStream> stream;
    Clock::time_point arrival, first_scheduled, first_token, last_token;
    bool scheduled_once = false;
    int preemptions = 0;
    explicit Request(const SamplingParams& params) : sampler(params) {}
  };
  struct Command {
    int64_t id;
    std::unique_ptr<Request> request;
  };

  // Counts the end of a kSpeechSegment or kInterim request (see RequestKind).
  void CountEnd(RequestKind kind, const absl::Status& status, FinishReason reason);
  // Submit() without the metrics accounting.
  absl::StatusOr<std::shared_ptr<RequestStream>> Enqueue(GenerationRequest request);
  void Loop();
  // Takes queued commands; waits when there is nothing to do.
  void TakeCommands(bool wait);
  // Runs one scheduled step; false when there was nothing to run.
  bool RunStep();
  // One slice of the first side-work task; false when there is none.
  bool RunSideWorkSlice() ABSL_LOCKS_EXCLUDED(mu_);
  void Finish(Request& request, FinishReason reason);
  void Fail(int64_t id, const absl::Status& status);
  void DropCancelled();
  // A preempted beam group lost its rows: plans their recompute (the shared
  // prefix as one row, then a fork into the live beams).
  absl::Status OnBeamGroupPreempted(Request& request);
  // The shared prefix is computed: forks it into one row per live beam.
  absl::Status ForkRecomputedBeams(Request& request);
  // Advances a beam search with the logits of its rows; finishes it when done.
  absl::Status AdvanceBeams(Request& request, const float* logits, Clock::time_point now);
  // Tokens [from, from + count) of row `row` of `request` (positions after the
  // prefix); may point into `scratch_`.
  absl::Span<const int32_t> RowTokens(const Request& request, size_t row, int64_t from,
                                      int64_t count);
  // Pushes the tokens a one-beam search chose since the last push.
  void StreamBeamOne(Request& request, Clock::time_point now);
  // Finishes a beam search request with its best hypothesis.
  void FinishBeam(Request& request);
  void PublishGauges();
  // After each turn of the loop: records progress and, when the backend
  // reports a lasting failure, fails everything in flight.
  void CheckBackendHealth();
  void FailAll(const absl::Status& status);

  EngineOptions options_;
  Clock::duration side_work_budget_;  // options_.side_work_ms_per_step
  DecoderSpec spec_;
  KvCacheGeometry geometry_;
  int blocks_total_ = 0;
  std::string backend_name_;
  int element_bytes_ = 4;
  std::shared_ptr<ServingMetrics> metrics_;

  // Engine-thread state.
  std::unique_ptr<ModelRunner> runner_;
  Scheduler scheduler_;
  std::unordered_map<int64_t, std::unique_ptr<Request>> requests_;
  int64_t next_sequence_id_ = int64_t{1} << 40;  // beam sequences; above request ids
  std::vector<float> logits_;
  std::vector<SequenceWork> work_;
  std::deque<std::vector<int32_t>> scratch_;  // row tokens of this step (stable addresses)

  mutable absl::Mutex mu_;
  std::deque<Command> commands_ ABSL_GUARDED_BY(mu_);
  std::deque<SideWork> side_work_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  EngineStats stats_ ABSL_GUARDED_BY(mu_);

  absl::Status failure_ ABSL_GUARDED_BY(mu_);  // the backend's lasting failure
  std::atomic<int64_t> last_progress_ns_{0};   // steady clock, end of the last loop turn
  std::atomic<bool> draining_{false};
  std::atomic<int> in_flight_{0};
  std::atomic<int64_t> next_id_{1};
  std::thread thread_;
};

}  // namespace mtla

#endif  // MTLA_ENGINE_SERVING_ENGINE_H_
