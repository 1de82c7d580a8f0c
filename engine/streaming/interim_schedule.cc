#include "engine/streaming/interim_schedule.h"

#include <algorithm>

namespace mtla {

double NextInterimDueSeconds(double last_seconds, double interval_seconds) {
  return std::max(last_seconds + interval_seconds, last_seconds * kInterimGrowth);
}

bool EngineHasSpareCapacity(int running, int waiting, int max_running) {
  return waiting == 0 && 2 * running < max_running;
}

}  // namespace mtla
