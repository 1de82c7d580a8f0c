// Prometheus' standard process metrics for this process, read from /proc at
// each collection (Linux): process_cpu_seconds_total,
// process_resident_memory_bytes, process_virtual_memory_bytes,
// process_open_fds, process_max_fds and process_start_time_seconds, with the
// names and meanings of the Prometheus client libraries. No labels.
//
// Thread-safety: Collect() is thread-safe (it only reads /proc).
#ifndef MTLA_ENGINE_METRICS_PROCESS_COLLECTOR_H_
#define MTLA_ENGINE_METRICS_PROCESS_COLLECTOR_H_

#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace mtla {

class ProcessCollector final : public prometheus::Collectable {
 public:
  // A family whose /proc source cannot be read is left out of the result.
  std::vector<prometheus::MetricFamily> Collect() const override;
};

}  // namespace mtla

#endif  // MTLA_ENGINE_METRICS_PROCESS_COLLECTOR_H_
