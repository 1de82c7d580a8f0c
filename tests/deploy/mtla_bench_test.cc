// Unit tests of mtla-bench's parts that need no server: statistics, arrival
// processes, workloads, the report, and the runner driven by a fake scenario.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tools/bench/arrivals.h"
#include "tools/bench/report.h"
#include "tools/bench/runner.h"
#include "tools/bench/stats.h"
#include "tools/bench/workload.h"

namespace mtla::bench {
namespace {

using ::testing::HasSubstr;

TEST(BenchStats, PercentilesInterpolateLikeNumpy) {
  const std::vector<double> v = {1, 2, 3, 4};
  EXPECT_DOUBLE_EQ(Percentile(v, 0), 1);
  EXPECT_DOUBLE_EQ(Percentile(v, 50), 2.5);
  EXPECT_DOUBLE_EQ(Percentile(v, 90), 3.7);
  EXPECT_DOUBLE_EQ(Percentile(v, 100), 4);
  Summary s = Summarize({4, 1, 3, 2});
  EXPECT_EQ(s.count, 4);
  EXPECT_DOUBLE_EQ(s.mean, 2.5);
  EXPECT_DOUBLE_EQ(s.min, 1);
  EXPECT_DOUBLE_EQ(s.max, 4);
  EXPECT_DOUBLE_EQ(s.p99, 3.97);
  EXPECT_EQ(Summarize({}).count, 0);
}

struct GapStats {
  double mean, cv;
};
GapStats Gaps(ArrivalKind kind, double rate, double burstiness) {
  ArrivalProcess p(kind, rate, burstiness, 42);
  const int n = 50000;
  std::vector<double> g(n);
  for (double& x : g) x = p.NextGap();
  Summary s = Summarize(g);
  return {s.mean, s.stddev / s.mean};
}

TEST(BenchArrivals, PoissonGammaConstant) {
  GapStats poisson = Gaps(ArrivalKind::kPoisson, 10, 1);
  EXPECT_NEAR(poisson.mean, 0.1, 0.003);
  EXPECT_NEAR(poisson.cv, 1.0, 0.03);
  // Gamma keeps the rate; the coefficient of variation is 1/sqrt(burstiness).
  GapStats bursty = Gaps(ArrivalKind::kGamma, 10, 0.25);
  EXPECT_NEAR(bursty.mean, 0.1, 0.005);
  EXPECT_NEAR(bursty.cv, 2.0, 0.1);
  GapStats smooth = Gaps(ArrivalKind::kGamma, 10, 4);
  EXPECT_NEAR(smooth.cv, 0.5, 0.02);
  GapStats constant = Gaps(ArrivalKind::kConstant, 8, 1);
  EXPECT_DOUBLE_EQ(constant.mean, 0.125);
  EXPECT_NEAR(constant.cv, 0, 1e-9);
  EXPECT_FALSE(ParseArrivalKind("uniform").ok());
  EXPECT_EQ(*ParseArrivalKind("gamma"), ArrivalKind::kGamma);
}

ModelLimits Limits() { return {97, 512, 2048}; }

TEST(BenchWorkload, RandomIsDeterministicAndInRange) {
  auto w = TextWorkload::Random({100, 50, 0.5}, Limits(), 7);
  ASSERT_TRUE(w.ok()) << w.status();
  for (int i = 0; i < 200; ++i) {
    TextRequestSpec a = w->Get(i), b = w->Get(i);
    EXPECT_EQ(a.prompt_token_ids, b.prompt_token_ids);
    EXPECT_GE(a.prompt_token_ids.size(), 50u);
    EXPECT_LE(a.prompt_token_ids.size(), 150u);
    EXPECT_GE(a.max_new_tokens, 25);
    EXPECT_LE(a.max_new_tokens, 75);
    for (int32_t id : a.prompt_token_ids) {
      EXPECT_GE(id, 0);
      EXPECT_LT(id, 97);
    }
  }
  EXPECT_NE(w->Get(0).prompt_token_ids, w->Get(1).prompt_token_ids);
  auto other_seed = TextWorkload::Random({100, 50, 0.5}, Limits(), 8);
  EXPECT_NE(other_seed->Get(0).prompt_token_ids, w->Get(0).prompt_token_ids);
}

TEST(BenchWorkload, RandomRejectsWhatTheModelCannotServe) {
  auto too_long = TextWorkload::Random({500, 100, 0}, Limits(), 0);
  ASSERT_FALSE(too_long.ok());
  EXPECT_THAT(std::string(too_long.status().message()), HasSubstr("context of 512"));
  EXPECT_FALSE(TextWorkload::Random({400, 50, 0.5}, Limits(), 0).ok());  // 600 + 75 at the top
  EXPECT_FALSE(TextWorkload::Random({10, 3000, 0}, {97, 0, 2048}, 0).ok());
  EXPECT_FALSE(TextWorkload::Random({10, 10, 1.0}, Limits(), 0).ok());
  EXPECT_FALSE(TextWorkload::Random({10, 10, 0}, {0, 0, 0}, 0).ok());
}

TEST(BenchWorkload, Jsonl) {
  auto w = TextWorkload::FromJsonlText(
      "{\"prompt_token_ids\": [1, 2, 3], \"max_new_tokens\": 4}\n"
      "\n"
      "{\"prompt\": \"hello\", \"output_len\": 6}\n"
      "{\"prompt_len\": 9}\n",
      11, Limits(), 0);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->Get(0).prompt_token_ids, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(w->Get(0).max_new_tokens, 4);
  EXPECT_EQ(w->Get(1).prompt, "hello");
  EXPECT_EQ(w->Get(1).max_new_tokens, 6);
  EXPECT_EQ(w->Get(2).prompt_token_ids.size(), 9u);
  EXPECT_EQ(w->Get(2).max_new_tokens, 11);
  EXPECT_EQ(w->Get(3).prompt_token_ids, w->Get(0).prompt_token_ids);  // cycles

  auto error = [](const std::string& text) {
    auto r = TextWorkload::FromJsonlText(text, 8, Limits(), 0);
    return r.ok() ? std::string("ok") : std::string(r.status().message());
  };
  EXPECT_THAT(error("{\"prompt_len\": 4}\nnot json\n"), HasSubstr("line 2: not a JSON object"));
  EXPECT_THAT(error("{\"prompt_token_ids\": [1, 200]}\n"), HasSubstr("outside the vocabulary"));
  EXPECT_THAT(error("{\"max_new_tokens\": 3}\n"), HasSubstr("exactly one of"));
  EXPECT_THAT(error("{\"prompt_len\": 500, \"output_len\": 20}\n"), HasSubstr("context of 512"));
  EXPECT_THAT(error("{\"prompt_token_ids\": \"x\"}\n"), HasSubstr("line 1"));
  EXPECT_THAT(error("\n\n"), HasSubstr("no requests"));
}

RequestRecord Ok(double ttft, double e2e, int tokens) {
  RequestRecord r;
  r.input_tokens = 10;
  r.output_tokens = tokens;
  r.series["ttft_s"] = {ttft};
  r.series["e2e_s"] = {e2e};
  r.series["tpot_s"] = {(e2e - ttft) / (tokens - 1)};
  return r;
}

TEST(BenchReport, ThroughputGoodputErrors) {
  RunResult run;
  run.issued = 6;
  run.duration_s = 2;
  run.records = {Ok(0.1, 1.0, 11), Ok(0.3, 1.3, 11), Ok(0.1, 2.0, 11)};
  RequestRecord failed;
  failed.code = grpc::StatusCode::RESOURCE_EXHAUSTED;
  failed.error_message = "queue full";
  run.records.push_back(failed);
  run.records.push_back(failed);
  RequestRecord cut;
  cut.code = grpc::StatusCode::CANCELLED;
  cut.unfinished = true;
  run.records.push_back(cut);

  ReportInput input;
  input.scenario = "text-generation";
  input.metrics = {{"ttft_s", "ttft", "Time to first token", "ms", 1e3},
                   {"e2e_s", "e2e", "End-to-end latency", "ms", 1e3}};
  input.slos = {{"ttft_s", "ttft_ms", 0.2}, {"tpot_s", "tpot_ms", 0.15}};
  Report r = BuildReport(input, run);
  EXPECT_EQ(r.completed, 3);
  EXPECT_EQ(r.failed, 2);
  EXPECT_EQ(r.unfinished, 1);
  EXPECT_EQ(r.errors.at("RESOURCE_EXHAUSTED"), 2);
  EXPECT_EQ(r.errors.count("CANCELLED"), 0u);  // cut short by the bench, not an error
  EXPECT_EQ(r.good, 1);  // #2 misses the TTFT SLO, #3 the TPOT SLO
  EXPECT_EQ(r.output_tokens, 33);

  nlohmann::json j = ToJson(input, r);
  EXPECT_DOUBLE_EQ(j["throughput"]["requests_per_second"].get<double>(), 1.5);
  EXPECT_DOUBLE_EQ(j["throughput"]["output_tokens_per_second"].get<double>(), 16.5);
  EXPECT_DOUBLE_EQ(j["goodput"]["requests_per_second"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(j["goodput"]["slo"]["ttft_ms"].get<double>(), 200);
  EXPECT_DOUBLE_EQ(j["metrics"]["ttft_ms"]["p50"].get<double>(), 100);
  EXPECT_EQ(j["errors"]["RESOURCE_EXHAUSTED"], 2);
  const std::string table = FormatTable(input, r);
  EXPECT_THAT(table, HasSubstr("RESOURCE_EXHAUSTED"));
  EXPECT_THAT(table, HasSubstr("queue full"));
  EXPECT_THAT(table, HasSubstr("Time to first token (ms)"));
  EXPECT_EQ(StatusCodeName(14), "UNAVAILABLE");
  EXPECT_EQ(StatusCodeName(99), "CODE_99");
}

// Completes each request after `latency_s` on its own thread, or at Cancel().
class FakeScenario : public Scenario {
 public:
  explicit FakeScenario(double latency_s) : latency_s_(latency_s) {}
  ~FakeScenario() override {
    std::lock_guard lock(mu_);
    for (auto& t : threads_) t.join();
  }
  std::string name() const override { return "fake"; }
  std::string Describe() const override { return "fake"; }
  std::vector<MetricDef> Metrics() const override { return {}; }
  nlohmann::json Config() const override { return {}; }

  class FakeCall : public Call {
   public:
    void Cancel() override {
      std::lock_guard lock(mu);
      cancelled = true;
      cv.notify_all();
    }
    std::mutex mu;
    std::condition_variable cv;
    bool cancelled = false;
  };

  std::shared_ptr<Call> Start(int64_t index, Done done) override {
    auto call = std::make_shared<FakeCall>();
    const int now = ++in_flight_;
    int seen = max_in_flight_.load();
    while (now > seen && !max_in_flight_.compare_exchange_weak(seen, now)) {
    }
    std::lock_guard lock(mu_);
    threads_.emplace_back([this, call, index, done] {
      RequestRecord r;
      r.index = index;
      r.start_s = SteadySeconds();
      {
        std::unique_lock lock(call->mu);
        call->cv.wait_for(lock, std::chrono::duration<double>(latency_s_),
                          [&] { return call->cancelled; });
        r.code = call->cancelled ? grpc::StatusCode::CANCELLED : grpc::StatusCode::OK;
      }
      r.end_s = SteadySeconds();
      r.output_tokens = 1;
      --in_flight_;
      done(std::move(r));
    });
    return call;
  }

  std::atomic<int> in_flight_{0}, max_in_flight_{0};

 private:
  double latency_s_;
  std::mutex mu_;
  std::vector<std::thread> threads_;
};

RunOptions Quiet() {
  RunOptions o;
  o.progress_interval_s = 0;
  return o;
}

TEST(BenchRunner, ClosedLoopKeepsConcurrency) {
  FakeScenario fake(0.01);
  RunOptions o = Quiet();
  o.num_requests = 40;
  o.concurrency = 4;
  RunResult r = bench::Run(fake, o);
  EXPECT_EQ(r.issued, 40);
  ASSERT_EQ(r.records.size(), 40u);
  EXPECT_EQ(fake.max_in_flight_.load(), 4);
  for (const auto& rec : r.records) {
    EXPECT_EQ(rec.code, grpc::StatusCode::OK);
    EXPECT_FALSE(rec.unfinished);
    EXPECT_GE(rec.start_s, 0);
    EXPECT_LE(rec.end_s, r.duration_s + 1e-9);
  }
  // 10 rounds of 10 ms.
  EXPECT_GE(r.duration_s, 0.09);
  EXPECT_LT(r.duration_s, 2.0);
}

TEST(BenchRunner, RampUpSpreadsTheFirstStarts) {
  FakeScenario fake(1.0);  // each request outlives the ramp-up
  RunOptions o = Quiet();
  o.num_requests = 4;
  o.concurrency = 4;
  o.ramp_up_s = 0.6;
  RunResult r = bench::Run(fake, o);
  ASSERT_EQ(r.records.size(), 4u);
  std::vector<double> starts;
  for (const auto& rec : r.records) starts.push_back(rec.start_s);
  std::sort(starts.begin(), starts.end());
  for (int i = 0; i < 4; ++i) {
    EXPECT_GE(starts[i], 0.15 * i - 1e-3) << "start " << i;
    EXPECT_LT(starts[i], 0.15 * i + 0.1) << "start " << i;
  }
  EXPECT_EQ(fake.max_in_flight_.load(), 4);
  o.request_rate = 10;  // a ramp-up is for the closed loop only
  EXPECT_FALSE(ValidateRunOptions(o).ok());
  o.request_rate = 0;
  o.ramp_up_s = -1;
  EXPECT_FALSE(ValidateRunOptions(o).ok());
}

TEST(BenchRunner, OpenLoopFollowsTheRateAndTheCap) {
  FakeScenario fake(0.001);
  RunOptions o = Quiet();
  o.num_requests = 30;
  o.request_rate = 100;
  o.arrival = ArrivalKind::kConstant;
  RunResult r = bench::Run(fake, o);
  EXPECT_EQ(r.records.size(), 30u);
  // 29 gaps of 10 ms.
  EXPECT_GE(r.duration_s, 0.29);
  EXPECT_LT(r.duration_s, 1.5);

  FakeScenario slow(0.05);
  o.num_requests = 12;
  o.request_rate = 1000;
  o.max_concurrency = 3;
  r = bench::Run(slow, o);
  EXPECT_EQ(r.records.size(), 12u);
  EXPECT_EQ(slow.max_in_flight_.load(), 3);
}

TEST(BenchRunner, DurationBoundCancelsWhatIsLeft) {
  FakeScenario stuck(30);  // would take 30 s each
  RunOptions o = Quiet();
  o.num_requests = 0;
  o.duration_s = 0.2;
  o.concurrency = 3;
  o.drain_timeout_s = 0.05;
  const auto start = std::chrono::steady_clock::now();
  RunResult r = bench::Run(stuck, o);
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(elapsed, 3.0);
  EXPECT_EQ(r.issued, 3);
  ASSERT_EQ(r.records.size(), 3u);
  for (const auto& rec : r.records) EXPECT_TRUE(rec.unfinished);
}

TEST(BenchRunner, RejectsUnboundedRuns) {
  RunOptions o = Quiet();
  o.num_requests = 0;
  o.duration_s = 0;
  EXPECT_FALSE(ValidateRunOptions(o).ok());
  o.num_requests = 5;
  EXPECT_TRUE(ValidateRunOptions(o).ok());
  o.burstiness = 0;
  EXPECT_FALSE(ValidateRunOptions(o).ok());
}

}  // namespace
}  // namespace mtla::bench
