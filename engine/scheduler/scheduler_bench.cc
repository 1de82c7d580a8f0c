// Planning time of the continuous-batching scheduler with N running decode
// requests, each needing one token per step, in a cache with room to spare (no
// preemption).
//
//   BM_Schedule:      Schedule() alone on a steady state (nothing changes
//                     between calls, so every call plans the same step).
//   BM_EngineStep:    a whole step of bookkeeping, all timed: Schedule(), the
//                     model runner's KvCacheManager::Append per entry,
//                     OnStepDone() and AppendTokens(1) per request (a sampled
//                     token). Requests that reach their length are replaced by
//                     fresh one-token requests, so the state stays steady.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "engine/scheduler/scheduler.h"

namespace mtla {
namespace {

constexpr int64_t kMaxLength = 4096;  // tokens per request before it is replaced

KvCacheGeometry BenchGeometry() {
  KvCacheGeometry g;
  g.num_layers = 32;
  g.kv_lora_rank = 512;
  g.rope_dim = 64;
  g.down_rate = 2;
  g.block_slots = 16;  // 32 tokens per block
  return g;
}

struct Setup {
  explicit Setup(int n)
      : cache(BenchGeometry(),
              static_cast<int>(n * (BenchGeometry().BlocksForTokens(kMaxLength) + 1))),
        sched(
            [n] {
              SchedulerConfig c;
              c.max_running = n;
              c.max_batched_tokens = 2 * n;
              c.max_waiting = n;
              return c;
            }(),
            &cache) {
    // Staggered lengths so that block boundaries spread over the steps.
    for (int i = 0; i < n; ++i) {
      const int64_t prompt = 1 + (i * 37) % 200;
      if (!sched.Add(next_id, prompt, kMaxLength).ok()) std::abort();
      ++next_id;
    }
    // Prefill everything, then one sampled token each: all decode from here.
    while (true) {
      SchedulerOutput out = sched.Schedule();
      if (out.work.empty()) break;
      Apply(out);
    }
    for (RequestId id = 0; id < next_id; ++id) {
      if (!sched.AppendTokens(id, 1).ok()) std::abort();
    }
  }

  void Apply(const SchedulerOutput& out) {
    for (const ScheduledWork& w : out.work) {
      if (!cache.Append(w.id, w.num_tokens, &copies).ok()) std::abort();
    }
    sched.OnStepDone(out);
  }

  KvCacheManager cache;
  Scheduler sched;
  RequestId next_id = 0;
  std::vector<BlockCopy> copies;
};

void BM_Schedule(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  Setup s(n);
  for (auto _ : state) {
    SchedulerOutput out = s.sched.Schedule();
    benchmark::DoNotOptimize(out.work.data());
    if (static_cast<int>(out.work.size()) != n || !out.preempted.empty()) {
      state.SkipWithError("not a steady decode step");
      break;
    }
  }
  state.counters["requests"] = n;
  // Seconds per scheduled request.
  state.counters["per_request"] = benchmark::Counter(
      static_cast<double>(n),
      benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

void BM_EngineStep(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  Setup s(n);
  std::vector<RequestId> finished;
  for (auto _ : state) {
    SchedulerOutput out = s.sched.Schedule();
    if (!out.preempted.empty()) {
      state.SkipWithError("preemption in a steady state");
      break;
    }
    s.Apply(out);
    finished.clear();
    for (const ScheduledWork& w : out.work) {
      if (s.sched.num_tokens(w.id) == kMaxLength) {
        finished.push_back(w.id);
      } else if (!s.sched.AppendTokens(w.id, 1).ok()) {
        std::abort();
      }
    }
    for (RequestId id : finished) {
      s.sched.Remove(id);
      if (!s.sched.Add(s.next_id++, 1, kMaxLength).ok()) std::abort();
    }
  }
  state.counters["requests"] = n;
  state.counters["per_request"] = benchmark::Counter(
      static_cast<double>(n),
      benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

BENCHMARK(BM_Schedule)->Arg(256)->Arg(1024)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_EngineStep)->Arg(256)->Arg(1024)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace mtla

BENCHMARK_MAIN();
