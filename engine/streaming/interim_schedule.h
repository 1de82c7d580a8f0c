// When a streaming call's interim hypotheses run (issue 14, point 3): never
// in the way of final results, and at a total cost linear in the segment.
//
// An interim re-encodes and greedily decodes the whole segment received so
// far. Spaced at a fixed interval, a segment of T seconds costs interims over
// 1 + 2 + ... + T seconds of audio: quadratic in T. Spaced geometrically
// (each due at `kInterimGrowth` times the previous one's length, and at least
// `interval` later), their lengths sum to at most
// kInterimGrowth / (kInterimGrowth - 1) = 3 times T: linear.
//
// And an interim runs only on spare capacity: while any request waits for
// admission, or at least half of the engine's rows are running, it is
// skipped (a later chunk asks again), so interims never queue in front of
// final results (SpeechSession also skips it while segments wait for the
// encoder worker, which encodes finals first).
#ifndef MTLA_ENGINE_STREAMING_INTERIM_SCHEDULE_H_
#define MTLA_ENGINE_STREAMING_INTERIM_SCHEDULE_H_

namespace mtla {

inline constexpr double kInterimGrowth = 1.5;

// The segment length (seconds of audio since the segment began) at which the
// next interim is due, after the last one at `last_seconds` (0: none yet):
// max(last + interval, last * kInterimGrowth).
double NextInterimDueSeconds(double last_seconds, double interval_seconds);

// True when the engine can take an interim without delaying finals: nothing
// waits for admission and fewer than half of `max_running` rows run.
bool EngineHasSpareCapacity(int running, int waiting, int max_running);

}  // namespace mtla

#endif  // MTLA_ENGINE_STREAMING_INTERIM_SCHEDULE_H_
