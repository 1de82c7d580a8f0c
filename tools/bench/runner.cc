#include "tools/bench/runner.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <limits>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace mtla::bench {
namespace {

using Clock = std::chrono::steady_clock;

Clock::time_point At(double steady_seconds) {
  return Clock::time_point(std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(steady_seconds)));
}

struct State {
  std::mutex mu;
  std::condition_variable cv;
  int64_t in_flight = 0;
  std::map<int64_t, std::shared_ptr<Call>> live;
  std::set<int64_t> finished_before_registered;
  std::set<int64_t> cancelled;
  std::vector<RequestRecord> records;
  int64_t ok = 0, errors = 0, output_tokens = 0;
  bool stop_progress = false;
};

}  // namespace

absl::Status ValidateRunOptions(const RunOptions& o) {
  if (o.num_requests < 0) return absl::InvalidArgumentError("--num_requests must be >= 0");
  if (o.duration_s < 0) return absl::InvalidArgumentError("--duration_seconds must be >= 0");
  if (o.num_requests == 0 && o.duration_s == 0) {
    return absl::InvalidArgumentError(
        "give --num_requests and/or --duration_seconds: the run must be bounded");
  }
  if (o.request_rate < 0) return absl::InvalidArgumentError("--request_rate must be >= 0");
  if (o.request_rate == 0 && o.concurrency < 1) {
    return absl::InvalidArgumentError("--concurrency must be >= 1");
  }
  if (o.burstiness <= 0) return absl::InvalidArgumentError("--burstiness must be > 0");
  if (o.ramp_up_s < 0) return absl::InvalidArgumentError("--ramp_up_seconds must be >= 0");
  if (o.ramp_up_s > 0 && o.request_rate > 0) {
    return absl::InvalidArgumentError(
        "--ramp_up_seconds spreads the starts of a closed loop; an open loop has --request_rate");
  }
  if (o.max_concurrency < 0) return absl::InvalidArgumentError("--max_concurrency must be >= 0");
  if (o.drain_timeout_s < 0) return absl::InvalidArgumentError("--drain_timeout_seconds must be >= 0");
  return absl::OkStatus();
}

RunResult Run(Scenario& scenario, const RunOptions& o) {
  auto state = std::make_shared<State>();
  const double t0 = SteadySeconds();
  const double end_s =
      o.duration_s > 0 ? t0 + o.duration_s : std::numeric_limits<double>::infinity();
  const bool open_loop = o.request_rate > 0;
  const int64_t limit = open_loop ? (o.max_concurrency > 0 ? o.max_concurrency
                                                           : std::numeric_limits<int64_t>::max())
                                  : o.concurrency;

  // Progress line.
  std::thread progress;
  if (o.progress_interval_s > 0 && o.progress_out != nullptr) {
    progress = std::thread([&, state] {
      const bool tty = isatty(fileno(o.progress_out));
      std::unique_lock lock(state->mu);
      while (!state->stop_progress) {
        state->cv.wait_for(lock, std::chrono::duration<double>(o.progress_interval_s),
                           [&] { return state->stop_progress; });
        const double elapsed = SteadySeconds() - t0;
        const int64_t done = static_cast<int64_t>(state->records.size());
        std::string line = absl::StrFormat(
            "[mtla-bench] %6.1fs  done %lld%s  in flight %lld  errors %lld  %.2f req/s  %.1f tok/s",
            elapsed, static_cast<long long>(done),
            o.num_requests > 0 ? absl::StrCat("/", o.num_requests) : std::string(),
            static_cast<long long>(state->in_flight), static_cast<long long>(state->errors),
            elapsed > 0 ? state->ok / elapsed : 0.0,
            elapsed > 0 ? state->output_tokens / elapsed : 0.0);
        std::fprintf(o.progress_out, tty ? "\r%-100s" : "%s\n", line.c_str());
        std::fflush(o.progress_out);
      }
      if (tty) std::fprintf(o.progress_out, "\n");
    });
  }

  auto on_done = [state](RequestRecord record) {
    std::lock_guard lock(state->mu);
    if (state->live.erase(record.index) == 0) {
      state->finished_before_registered.insert(record.index);
    }
    record.unfinished = state->cancelled.count(record.index) > 0;
    --state->in_flight;
    if (!record.unfinished) {
      if (record.code == grpc::StatusCode::OK) {
        ++state->ok;
        state->output_tokens += record.output_tokens;
      } else {
        ++state->errors;
      }
    }
    state->records.push_back(std::move(record));
    state->cv.notify_all();
  };

  ArrivalProcess arrivals(o.arrival, open_loop ? o.request_rate : 1, o.burstiness, o.seed);
  double next_arrival = t0;
  int64_t issued = 0;
  while (o.num_requests == 0 || issued < o.num_requests) {
    if (SteadySeconds() >= end_s) break;
    std::unique_lock lock(state->mu);
    if (open_loop) {
      // Arrival time first (no wake-up source but the clock), then the cap.
      state->cv.wait_until(lock, At(std::min(next_arrival, end_s)),
                           [&] { return SteadySeconds() >= std::min(next_arrival, end_s); });
    } else if (o.ramp_up_s > 0 && issued < o.concurrency) {
      const double start = std::min(t0 + o.ramp_up_s * issued / o.concurrency, end_s);
      state->cv.wait_until(lock, At(start), [&] { return SteadySeconds() >= start; });
    }
    state->cv.wait_until(lock, At(std::min(end_s, t0 + 1e9)),
                         [&] { return state->in_flight < limit || SteadySeconds() >= end_s; });
    if (SteadySeconds() >= end_s) break;
    const int64_t index = issued++;
    ++state->in_flight;
    lock.unlock();
    std::shared_ptr<Call> call = scenario.Start(index, on_done);
    lock.lock();
    if (state->finished_before_registered.erase(index) == 0) state->live[index] = std::move(call);
    lock.unlock();
    if (open_loop) next_arrival += arrivals.NextGap();
  }

  // Drain, then cancel what is left.
  {
    std::unique_lock lock(state->mu);
    const double drain_end = SteadySeconds() + o.drain_timeout_s;
    state->cv.wait_until(lock, At(drain_end), [&] { return state->in_flight == 0; });
    std::vector<std::shared_ptr<Call>> left;
    for (auto& [index, call] : state->live) {
      state->cancelled.insert(index);
      left.push_back(call);
    }
    lock.unlock();
    for (auto& call : left) call->Cancel();
    lock.lock();
    state->cv.wait(lock, [&] { return state->in_flight == 0; });
    state->stop_progress = true;
    state->cv.notify_all();
  }
  if (progress.joinable()) progress.join();

  RunResult result;
  result.issued = issued;
  {
    std::lock_guard lock(state->mu);
    result.records = std::move(state->records);
  }
  double last = 0;
  for (RequestRecord& r : result.records) {
    r.start_s -= t0;
    r.end_s -= t0;
    last = std::max(last, r.end_s);
  }
  result.duration_s = result.records.empty() ? SteadySeconds() - t0 : last;
  return result;
}

}  // namespace mtla::bench
