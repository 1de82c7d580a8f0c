#include "engine/serving/engine.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/common/status_macros.h"

namespace mtla {
namespace {

double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

// Submit() bounds the requests in flight (running + waiting) by max_running +
// max_waiting. A burst taken in one TakeCommands() is all waiting until the
// next Schedule(), so the scheduler's own waiting bound must leave room for
// the running share, or it refuses requests that Submit() accepted.
SchedulerConfig SchedulerConfigForEngine(SchedulerConfig config) {
  config.max_waiting += config.max_running;
  return config;
}

}  // namespace

Engine::Engine(std::unique_ptr<ModelRunner> runner, const EngineOptions& options,
               std::shared_ptr<ServingMetrics> metrics)
    : options_(options),
      side_work_budget_(std::chrono::duration_cast<Clock::duration>(
          std::chrono::duration<double, std::milli>(std::max(0.0, options.side_work_ms_per_step)))),
      spec_(runner->backend().spec()),
      geometry_(runner->backend().cache_geometry()),
      blocks_total_(runner->backend().num_cache_blocks()),
      backend_name_(runner->backend().name()),
      element_bytes_(runner->backend().cache_element_bytes()),
      metrics_(std::move(metrics)),
      runner_(std::move(runner)),
      scheduler_(SchedulerConfigForEngine(options.scheduler), &runner_->cache()) {
  if (metrics_) {
    metrics_->SetCacheConfig({.block_slots = geometry_.block_slots,
                              .block_tokens = geometry_.tokens_per_block(),
                              .down_rate = geometry_.down_rate,
                              .num_blocks = blocks_total_,
                              .element_bytes = element_bytes_});
    metrics_->SetBuildInfo(backend_name_);
  }
  PublishGauges();
  last_progress_ns_.store(Clock::now().time_since_epoch().count());
  thread_ = std::thread([this] { Loop(); });
}

Engine::~Engine() { Stop(); }

void Engine::CountEnd(RequestKind kind, const absl::Status& status, FinishReason reason) {
  if (metrics_ == nullptr) return;
  const std::string label = StatusLabel(static_cast<int>(status.code()));
  switch (kind) {
    case RequestKind::kCall:
      return;  // the server counts the call
    case RequestKind::kSpeechSegment:
      metrics_->CountSegment(label, status.ok() ? FinishReasonName(reason) : "abort");
      return;
    case RequestKind::kInterim:
      metrics_->CountInterimDecode(label);
      return;
    case RequestKind::kEarlyFinal:
      return;  // the session counts it, or drops it
  }
}

absl::StatusOr<std::shared_ptr<RequestStream>> Engine::Submit(GenerationRequest request) {
  const RequestKind kind = request.kind;
  absl::StatusOr<std::shared_ptr<RequestStream>> stream = Enqueue(std::move(request));
  if (!stream.ok()) CountEnd(kind, stream.status(), FinishReason::kNone);
  return stream;
}

absl::StatusOr<std::shared_ptr<RequestStream>> Engine::Enqueue(GenerationRequest request) {
  {
    absl::MutexLock lock(&mu_);
    if (!failure_.ok()) return failure_;
  }
  if (draining() && !request.continues_admitted_call) {
    return absl::UnavailableError("server is draining; retry on another replica");
  }
  if (request.prompt.empty()) {
    return absl::InvalidArgumentError("prompt_token_ids: the prompt is empty");
  }
  if (request.prefix_rows < 0 ||
      static_cast<int64_t>(request.prefix.size()) != request.prefix_rows * spec_.hidden_size) {
    return absl::InvalidArgumentError(absl::StrCat("prefix: ", request.prefix.size(),
                                                   " values for ", request.prefix_rows,
                                                   " rows of width ", spec_.hidden_size));
  }
  if (request.beam_size < 1 || request.beam_size > 16) {
    return absl::InvalidArgumentError(
        absl::StrCat("beam_size must be in [1, 16], got ", request.beam_size));
  }
  for (size_t i = 0; i < request.prompt.size(); ++i) {
    const int32_t id = request.prompt[i];
    if (id < 0 || id >= spec_.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("prompt_token_ids[", i, "]: token id ", id,
                                                     " is outside the vocabulary [0, ",
                                                     spec_.vocab_size, ")"));
    }
  }
  if (absl::Status s = request.sampling.Validate(spec_.vocab_size, options_.max_new_tokens_limit);
      !s.ok()) {
    return s;
  }
  const int64_t total = request.prefix_rows + static_cast<int64_t>(request.prompt.size()) +
                        request.sampling.max_new_tokens;
  if (total > spec_.max_context_tokens) {
    // In the request's terms: Generate's fields, or (speech) the audio's
    // decoder positions, which callers bound beforehand in their own terms.
    const std::string context =
        request.prefix_rows == 0
            ? absl::StrCat("prompt_token_ids (", request.prompt.size(), " tokens)")
            : absl::StrCat("the audio (", request.prefix_rows, " positions) and ",
                           request.prompt.size(), " prompt token(s)");
    return absl::OutOfRangeError(absl::StrCat(context, " plus max_new_tokens (",
                                              request.sampling.max_new_tokens,
                                              ") exceed the model's context of ",
                                              spec_.max_context_tokens,
                                              " tokens; shorten the input or lower max_new_tokens"));
  }
  const int width = request.use_beam_search ? request.beam_size : 1;
  const int64_t shared = request.prefix_rows + static_cast<int64_t>(request.prompt.size());
  if (const int64_t blocks = MaxGroupBlocks(geometry_, shared, total, width);
      blocks > blocks_total_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the request can never fit the server's KV cache: its input plus max_new_tokens (",
        request.sampling.max_new_tokens, ")", width > 1 ? absl::StrCat(" for ", width, " beams") : "",
        " need ", blocks, " cache blocks and the whole cache has ", blocks_total_,
        "; lower max_new_tokens or beam_size"));
  }
  const SchedulerConfig& limits = options_.scheduler;
  if (width > limits.max_running || width > limits.max_batched_tokens) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "beam_size ", width, " exceeds the beams this server runs at once (",
        std::min(limits.max_running, limits.max_batched_tokens), ")"));
  }
  const int capacity = options_.scheduler.max_running + options_.scheduler.max_waiting;
  if (in_flight_.fetch_add(1) >= capacity) {
    in_flight_.fetch_sub(1);
    return absl::ResourceExhaustedError(
        absl::StrCat("request queue is full (", capacity, " requests in flight)"));
  }
  auto r = std::make_unique<Request>(request.sampling);
  r->id = next_id_.fetch_add(1);
  r->kind = request.kind;
  r->prompt_len = static_cast<int>(request.prompt.size());
  r->tokens = std::move(request.prompt);
  r->prefix = std::move(request.prefix);
  r->prefix_len = request.prefix_rows;
  r->use_beam_search = request.use_beam_search;
  r->beam_options = request.beam;
  r->beam_options.beam_size = request.beam_size;
  r->beam_options.max_len_a = 0;
  // EOS is forced as the max_new_tokens-th token: at most max_new_tokens in all.
  r->beam_options.max_len_b = request.sampling.max_new_tokens - 1;
  r->beam_options.max_positions = static_cast<int>(spec_.max_context_tokens);
  r->beam_options.eos = spec_.eos_token_id;
  r->stream = std::make_shared<RequestStream>();
  r->arrival = Clock::now();
  std::shared_ptr<RequestStream> stream = r->stream;
  {
    absl::MutexLock lock(&mu_);
    if (stop_) {
      in_flight_.fetch_sub(1);
      return absl::UnavailableError("engine stopped");
    }
    commands_.push_back({r->id, std::move(r)});
  }
  return stream;
}

void Engine::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stop_ && !thread_.joinable()) return;
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

EngineStats Engine::stats() const {
  absl::MutexLock lock(&mu_);
  EngineStats s = stats_;
  s.in_flight = in_flight_.load();
  return s;
}

void Engine::TakeCommands(bool wait) {
  std::deque<Command> commands;
  {
    absl::MutexLock lock(&mu_);
    if (wait) {
      auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return stop_ || !commands_.empty() || !side_work_.empty();
      };
      // Wake periodically to notice cancellations of queued work.
      mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Milliseconds(20));
    }
    commands.swap(commands_);
  }
  for (Command& c : commands) {
    Request& r = *c.request;
    const int width = r.use_beam_search ? r.beam_options.beam_size : 1;
    absl::Status added =
        scheduler_.Add(r.id, r.sequence_length(),
                       r.sequence_length() + r.sampler.params().max_new_tokens, width);
    if (!added.ok()) {
      in_flight_.fetch_sub(1);
      CountEnd(r.kind, added, FinishReason::kNone);
      r.stream->Fail(added);
      continue;
    }
    if (metrics_) metrics_->AddPromptTokens(r.prompt_len);
    if (r.use_beam_search) {
      // The root is the group's first row (the request id); the scheduler
      // computes the context into it before the first Advance.
      r.beam = std::make_unique<BeamSearch>(r.beam_options, spec_.vocab_size, r.prefix_len, r.id,
                                            r.tokens.back(), [this] { return next_sequence_id_++; });
    }
    requests_.emplace(c.id, std::move(c.request));
  }
}

void Engine::Fail(int64_t id, const absl::Status& status) {
  auto it = requests_.find(id);
  if (it == requests_.end()) return;
  scheduler_.Remove(id);  // frees every row, beams included
  std::shared_ptr<RequestStream> stream = it->second->stream;
  const RequestKind kind = it->second->kind;
  requests_.erase(it);
  in_flight_.fetch_sub(1);
  CountEnd(kind, status, FinishReason::kNone);
  stream->Fail(status);  // last, as in Finish()
}

void Engine::DropCancelled() {
  std::vector<int64_t> cancelled;
  for (const auto& [id, r] : requests_) {
    if (r->stream->cancelled()) cancelled.push_back(id);
  }
  for (int64_t id : cancelled) {
    absl::Status reason = requests_.at(id)->stream->cancel_reason();
    Fail(id, reason.ok() ? absl::CancelledError("request cancelled by the client") : reason);
  }
}

void Engine::Finish(Request& r, FinishReason reason) {
  RequestTiming timing;
  timing.queue_seconds = Seconds(r.first_scheduled - r.arrival);
  timing.time_to_first_token_seconds = Seconds(r.first_token - r.arrival);
  timing.total_seconds = Seconds(r.last_token - r.arrival);
  timing.num_preemptions = r.preemptions;
  const int generated = static_cast<int>(r.tokens.size()) - r.prompt_len;
  const int prompt_len = r.prompt_len;
  std::shared_ptr<RequestStream> stream = r.stream;
  if (metrics_ && r.kind != RequestKind::kInterim) {
    FinishedRequestStats stats;
    stats.prompt_tokens = prompt_len;
    stats.generation_tokens = generated;
    stats.max_tokens = r.sampler.params().max_new_tokens;
    stats.e2e_seconds = timing.total_seconds;
    stats.queue_seconds = timing.queue_seconds;
    stats.prefill_seconds = std::max(0.0, Seconds(r.first_token - r.first_scheduled));
    stats.decode_seconds = std::max(0.0, Seconds(r.last_token - r.first_token));
    stats.inference_seconds = std::max(0.0, Seconds(r.last_token - r.first_scheduled));
    metrics_->ObserveFinishedRequest(stats);
  }
  CountEnd(r.kind, absl::OkStatus(), reason);
  // Release the request before its consumer can see the end, so that a client
  // that sends its next request at once finds the room (in_flight_, blocks).
  const int64_t id = r.id;
  scheduler_.Remove(id);
  requests_.erase(id);  // `r` is gone
  in_flight_.fetch_sub(1);
  stream->Finish(reason, prompt_len, generated, timing);
}

void Engine::PublishGauges() {
  const KvCacheManager& cache = runner_->cache();
  {
    absl::MutexLock lock(&mu_);
    stats_.running = scheduler_.num_running();
    stats_.waiting = scheduler_.num_waiting();
    stats_.cache_blocks_used = cache.num_used_blocks();
    stats_.cache_blocks_total = cache.num_total_blocks();
  }
  if (metrics_) {
    metrics_->SetRequestsRunning(scheduler_.num_running());
    metrics_->SetRequestsWaiting(scheduler_.num_waiting());
    metrics_->SetKvCache(cache.num_used_blocks(), cache.num_total_blocks(),
                         spec_.num_layers * geometry_.BytesPerTokenPerLayer(element_bytes_));
  }
}

absl::Status Engine::OnBeamGroupPreempted(Request& r) {
  BeamSearch& search = *r.beam;
  const size_t live = search.num_live();
  if (live <= 1) {
    // One row: the scheduler recomputes it whole into the root sequence.
    r.fork_at = -1;
    return search.Rebind(std::vector<SequenceId>(live, r.id));
  }
  // All beams hold the context and the tokens they have in common; each one's
  // last token is its pending input (not in the cache).
  const std::vector<int32_t>& first = search.beam_tokens(0);
  size_t common = first.size() - 1;
  for (size_t b = 1; b < live; ++b) {
    const std::vector<int32_t>& other = search.beam_tokens(b);
    size_t i = 0;
    while (i < common && other[i] == first[i]) ++i;
    common = i;
  }
  r.fork_at = r.sequence_length() + static_cast<int64_t>(common);
  return scheduler_.Truncate(r.id, r.fork_at);
}

absl::Status Engine::ForkRecomputedBeams(Request& r) {
  BeamSearch& search = *r.beam;
  KvCacheManager& cache = runner_->cache();
  std::vector<SequenceId> rows = {r.id};  // beam 0 keeps the root
  for (size_t b = 1; b < search.num_live(); ++b) {
    rows.push_back(next_sequence_id_++);
    RETURN_IF_ERROR(cache.Fork(r.id, rows.back()));
  }
  RETURN_IF_ERROR(scheduler_.SetRows(r.id, rows));
  RETURN_IF_ERROR(search.Rebind(rows));
  // Every row now computes its own tokens after the fork, pending input last.
  const int64_t row_tokens =
      r.sequence_length() + static_cast<int64_t>(search.beam_tokens(0).size());
  RETURN_IF_ERROR(scheduler_.AppendTokens(r.id, row_tokens - r.fork_at));
  r.fork_at = -1;
  return absl::OkStatus();
}

absl::Status Engine::AdvanceBeams(Request& r, const float* logits, Clock::time_point now) {
  RETURN_IF_ERROR(r.beam->Advance(logits, &runner_->cache()));
  if (r.beam->done()) {
    RETURN_IF_ERROR(scheduler_.SetRows(r.id, {}));  // the search freed its beams
    FinishBeam(r);
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(scheduler_.SetRows(r.id, r.beam->sequences()));
  RETURN_IF_ERROR(scheduler_.AppendTokens(r.id, 1));  // each beam's chosen token
  if (r.beam_options.beam_size == 1) StreamBeamOne(r, now);
  return absl::OkStatus();
}

absl::Span<const int32_t> Engine::RowTokens(const Request& r, size_t row, int64_t from,
                                           int64_t count) {
  const int64_t prompt = static_cast<int64_t>(r.tokens.size());
  if (r.beam == nullptr || from + count <= prompt) {
    return absl::MakeConstSpan(r.tokens.data() + from, count);
  }
  // Beam rows continue the prompt with their own tokens. A row recomputing
  // the beams' shared prefix (fork_at) reads beam 0's.
  const std::vector<int32_t>& own = r.beam->beam_tokens(r.fork_at >= 0 ? 0 : row);
  if (from >= prompt) return absl::MakeConstSpan(own.data() + (from - prompt), count);
  std::vector<int32_t>& joined = scratch_.emplace_back();
  joined.assign(r.tokens.begin() + from, r.tokens.end());
  joined.insert(joined.end(), own.begin(), own.begin() + (from + count - prompt));
  return absl::MakeConstSpan(joined);
}

void Engine::StreamBeamOne(Request& r, Clock::time_point now) {
  const std::vector<int32_t>& tokens = r.beam->beam_tokens(0);
  if (tokens.size() <= r.streamed) return;
  const bool observed = metrics_ && r.kind != RequestKind::kInterim;
  if (r.streamed == 0) {
    r.first_token = now;
    if (observed) metrics_->ObserveTimeToFirstToken(Seconds(now - r.arrival));
  } else if (observed) {
    metrics_->ObserveInterTokenLatency(Seconds(now - r.last_token));
  }
  r.last_token = now;
  r.stream->PushTokens(std::vector<int32_t>(tokens.begin() + r.streamed, tokens.end()));
  if (metrics_) metrics_->AddGenerationTokens(tokens.size() - r.streamed);
  r.streamed = tokens.size();
}

void Engine::FinishBeam(Request& r) {
  const std::vector<BeamHypothesis>& results = r.beam->results();
  FinishReason reason = FinishReason::kLength;
  if (!results.empty()) {
    const BeamHypothesis& best = results.front();
    r.tokens.insert(r.tokens.end(), best.tokens.begin(), best.tokens.end());
    const size_t from = std::min(r.streamed, best.tokens.size());
    r.stream->PushTokens(std::vector<int32_t>(best.tokens.begin() + from, best.tokens.end()));
    if (metrics_) metrics_->AddGenerationTokens(best.tokens.size() - from);
    // fairseq forces EOS at max_len: that is the length limit, unless EOS was
    // the beam's own choice there too.
    reason = best.eos_forced ? FinishReason::kLength : FinishReason::kEos;
    std::vector<ScoredHypothesis> hypotheses;
    hypotheses.reserve(results.size());
    for (const BeamHypothesis& h : results) hypotheses.push_back({h.tokens, h.score});
    r.stream->SetHypotheses(std::move(hypotheses));
  }
  if (r.streamed == 0) r.first_token = Clock::now();
  r.last_token = Clock::now();
  r.beam.reset();
  Finish(r, reason);
}

bool Engine::RunStep() {
  const Clock::time_point step_start = Clock::now();

  SchedulerOutput plan = scheduler_.Schedule();
  std::vector<int64_t> failed;
  for (int64_t id : plan.preempted) {
    auto it = requests_.find(id);
    if (it == requests_.end()) continue;
    ++it->second->preemptions;
    if (it->second->beam && !OnBeamGroupPreempted(*it->second).ok()) failed.push_back(id);
  }
  if (metrics_ && !plan.preempted.empty()) metrics_->AddPreemptions(plan.preempted.size());
  if (plan.work.empty() && failed.empty()) return false;

  // Scheduled work: keys-only prefix rows go straight into the cache; tokens
  // join the step, every row of a group alike. `done` lists the groups whose
  // rows reach their last known token, with their first logits row.
  struct Done {
    int64_t id;
    int logits_row;  // -1: no logits wanted (a beam prefix recomputed for a fork)
  };
  std::vector<Done> done;
  work_.clear();
  scratch_.clear();
  int logits_rows = 0;
  for (const ScheduledWork& w : plan.work) {
    Request& r = *requests_.at(w.id);
    if (!r.scheduled_once) {
      r.scheduled_once = true;
      r.first_scheduled = step_start;
      if (metrics_ && r.kind != RequestKind::kInterim) {
        metrics_->ObserveQueueTime(Seconds(step_start - r.arrival));
      }
    }
    const std::vector<SequenceId>& rows = scheduler_.rows(w.id);
    int64_t start = w.start;
    const int64_t end = w.start + w.num_tokens;
    if (start < r.prefix_len) {
      const int64_t n = std::min(end, r.prefix_len) - start;
      bool filled = true;
      for (SequenceId row : rows) {
        filled = filled &&
                 runner_->FillPrefix(row, r.prefix.data() + start * spec_.hidden_size, n).ok();
      }
      if (!filled) {
        failed.push_back(w.id);
        continue;
      }
      start += n;
    }
    if (start == end) continue;
    const bool complete = end == scheduler_.num_tokens(w.id);
    const bool want_logits = complete && r.fork_at < 0;
    for (size_t i = 0; i < rows.size(); ++i) {
      work_.push_back({rows[i], RowTokens(r, i, start - r.prefix_len, end - start), want_logits,
                       false});
    }
    if (complete) done.push_back({w.id, want_logits ? logits_rows : -1});
    if (want_logits) logits_rows += static_cast<int>(rows.size());
  }
  absl::Status status = work_.empty() ? absl::OkStatus() : runner_->Step(work_, &logits_);
  for (int64_t id : failed) Fail(id, absl::InternalError("prefix fill failed"));
  if (!status.ok()) {
    for (const ScheduledWork& w : plan.work) Fail(w.id, status);
    return true;
  }
  scheduler_.OnStepDone(plan);

  const int vocab = spec_.vocab_size;
  const Clock::time_point now = Clock::now();
  int64_t generated = 0;
  std::vector<int32_t> one(1);
  for (const Done& d : done) {
    auto it = requests_.find(d.id);
    if (it == requests_.end()) continue;  // failed above
    Request& r = *it->second;
    if (d.logits_row < 0) {
      if (absl::Status s = ForkRecomputedBeams(r); !s.ok()) Fail(r.id, s);
      continue;
    }
    const float* logits = logits_.data() + static_cast<size_t>(d.logits_row) * vocab;
    if (r.beam) {
      if (absl::Status s = AdvanceBeams(r, logits, now); !s.ok()) Fail(r.id, s);
      continue;
    }
    const int32_t token = r.sampler.Sample(logits, vocab);
    r.tokens.push_back(token);
    ++generated;
    const int new_tokens = static_cast<int>(r.tokens.size()) - r.prompt_len;
    const bool observed = metrics_ && r.kind != RequestKind::kInterim;
    if (new_tokens == 1) {
      r.first_token = now;
      if (observed) metrics_->ObserveTimeToFirstToken(Seconds(now - r.arrival));
    } else if (observed) {
      metrics_->ObserveInterTokenLatency(Seconds(now - r.last_token));
    }
    r.last_token = now;
    one[0] = token;
    r.stream->PushTokens(one);
    const FinishReason reason = CheckFinish(r.sampler.params(), token, new_tokens, spec_.eos_token_id);
    if (reason != FinishReason::kNone) {
      Finish(r, reason);
    } else {
      (void)scheduler_.AppendTokens(r.id, 1);
    }
  }
  if (metrics_) {
    metrics_->AddGenerationTokens(generated);
    metrics_->ObserveStep(Seconds(Clock::now() - step_start), static_cast<int>(work_.size()),
                          static_cast<int>(plan.num_tokens()));
  }
  absl::MutexLock lock(&mu_);
  ++stats_.steps;
  stats_.preemptions += plan.preempted.size();
  return true;
}

bool Engine::PostSideWork(SideWork slice) {
  absl::MutexLock lock(&mu_);
  if (stop_) return false;
  side_work_.push_back(std::move(slice));
  return true;
}

bool Engine::RunSideWorkSlice() {
  SideWork task;
  {
    absl::MutexLock lock(&mu_);
    if (side_work_.empty()) return false;
    task = std::move(side_work_.front());
    side_work_.pop_front();
  }
  if (task(/*stop=*/false)) {
    absl::MutexLock lock(&mu_);
    side_work_.push_front(std::move(task));
  }
  return true;
}

void Engine::Loop() {
  bool idle = true;
  while (true) {
    TakeCommands(/*wait=*/idle);
    {
      absl::MutexLock lock(&mu_);
      if (stop_) break;
    }
    DropCancelled();
    const bool stepped = !requests_.empty() && RunStep();
    const Clock::time_point side_start = Clock::now();
    const bool side_work = RunSideWorkSlice();
    while (side_work && Clock::now() - side_start < side_work_budget_ && RunSideWorkSlice()) {
    }
    idle = !stepped && !side_work;
    CheckBackendHealth();
    PublishGauges();
  }
  // Fail whatever is left, including commands that raced with Stop().
  std::deque<SideWork> side_work;
  {
    absl::MutexLock lock(&mu_);
    side_work.swap(side_work_);  // PostSideWork refuses from here on (stop_)
  }
  for (SideWork& task : side_work) task(/*stop=*/true);
  TakeCommands(/*wait=*/false);
  FailAll(absl::UnavailableError("server shutting down"));
  PublishGauges();
}

void Engine::FailAll(const absl::Status& status) {
  std::vector<int64_t> ids;
  for (const auto& [id, r] : requests_) ids.push_back(id);
  for (int64_t id : ids) Fail(id, status);
}

void Engine::CheckBackendHealth() {
  last_progress_ns_.store(Clock::now().time_since_epoch().count());
  absl::Status failure;
  {
    absl::MutexLock lock(&mu_);
    failure = failure_;
  }
  if (failure.ok()) {
    const absl::Status health = runner_->backend().Health();
    if (health.ok()) return;
    failure = absl::UnavailableError(
        absl::StrCat("the ", backend_name_, " backend failed and cannot serve until the server ",
                     "restarts: ", health.message()));
    absl::MutexLock lock(&mu_);
    failure_ = failure;
  }
  TakeCommands(/*wait=*/false);  // what slipped in before failure_ was set
  FailAll(failure);
}

absl::Status Engine::Health() const {
  {
    absl::MutexLock lock(&mu_);
    if (!failure_.ok()) return failure_;
  }
  const int in_flight = in_flight_.load();
  const int64_t last = last_progress_ns_.load();
  if (in_flight == 0 || last == 0) return absl::OkStatus();
  const double since =
      std::chrono::duration<double>(Clock::now().time_since_epoch() - Clock::duration(last)).count();
  if (since <= options_.stall_timeout_seconds) return absl::OkStatus();
  return absl::UnavailableError(absl::StrFormat(
      "the engine made no progress for %.1f s with %d requests in flight", since, in_flight));
}

}  // namespace mtla
