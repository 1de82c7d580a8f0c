#include "engine/streaming/interim_schedule.h"

#include <gtest/gtest.h>

namespace mtla {
namespace {

// Interims a segment of `seconds` gets when a chunk arrives every `chunk`
// seconds and the engine always has room: their count and summed lengths.
struct Schedule {
  int count = 0;
  double total_seconds = 0;
};
Schedule Simulate(double seconds, double interval, double chunk) {
  Schedule s;
  double last = 0;
  for (double t = chunk; t <= seconds + 1e-9; t += chunk) {
    if (t < NextInterimDueSeconds(last, interval)) continue;
    last = t;
    ++s.count;
    s.total_seconds += t;
  }
  return s;
}

TEST(InterimScheduleTest, FirstInterimsFollowTheInterval) {
  EXPECT_DOUBLE_EQ(NextInterimDueSeconds(0, 1.0), 1.0);
  EXPECT_DOUBLE_EQ(NextInterimDueSeconds(1.0, 1.0), 2.0);
  EXPECT_DOUBLE_EQ(NextInterimDueSeconds(2.0, 1.0), 3.0);
  EXPECT_DOUBLE_EQ(NextInterimDueSeconds(4.0, 1.0), 6.0);  // growth takes over
  EXPECT_DOUBLE_EQ(NextInterimDueSeconds(0, 0.25), 0.25);
}

TEST(InterimScheduleTest, TotalInterimAudioIsLinearInTheSegment) {
  for (double interval : {0.25, 1.0, 2.0}) {
    for (double seconds : {1.0, 5.0, 20.0, 60.0, 600.0}) {
      const Schedule s = Simulate(seconds, interval, /*chunk=*/0.1);
      SCOPED_TRACE(testing::Message() << "interval " << interval << ", segment " << seconds);
      // Sum of a geometric series of ratio 1/1.5 up to the segment, plus the
      // chunk granularity: at most 3 T (and the fixed-interval schedule would
      // be about T^2 / (2 interval)).
      EXPECT_LE(s.total_seconds, kInterimGrowth / (kInterimGrowth - 1) * seconds + 0.1 * s.count);
      if (seconds >= 2 * interval) EXPECT_GE(s.count, 1);
    }
  }
  // A 60 s segment with the default 1 s interval: about a dozen interims, not 60.
  const Schedule minute = Simulate(60, 1.0, 0.1);
  EXPECT_LE(minute.count, 12);
  EXPECT_GE(minute.count, 8);
}

TEST(InterimScheduleTest, SpareCapacityMeansNothingWaitsAndUnderHalfTheRowsRun) {
  EXPECT_TRUE(EngineHasSpareCapacity(/*running=*/0, /*waiting=*/0, /*max_running=*/64));
  EXPECT_TRUE(EngineHasSpareCapacity(31, 0, 64));
  EXPECT_FALSE(EngineHasSpareCapacity(32, 0, 64));
  EXPECT_FALSE(EngineHasSpareCapacity(0, 1, 64));
  EXPECT_FALSE(EngineHasSpareCapacity(3, 2, 64));
  EXPECT_FALSE(EngineHasSpareCapacity(1, 0, 2));
  EXPECT_TRUE(EngineHasSpareCapacity(0, 0, 1));
}

}  // namespace
}  // namespace mtla
