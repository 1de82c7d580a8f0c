#include "engine/metrics/process_collector.h"

#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace mtla {
namespace {

prometheus::MetricFamily Family(const char* name, const char* help, prometheus::MetricType type,
                                double value) {
  prometheus::MetricFamily family;
  family.name = name;
  family.help = help;
  family.type = type;
  prometheus::ClientMetric metric;
  if (type == prometheus::MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  family.metric.push_back(metric);
  return family;
}

// The fields of /proc/self/stat after the command name (which may hold
// spaces): fields[0] is field 3 (state) of proc(5).
bool ReadStatFields(std::vector<std::string>* fields) {
  std::ifstream in("/proc/self/stat");
  std::string line;
  if (!std::getline(in, line)) return false;
  const size_t close = line.rfind(')');
  if (close == std::string::npos) return false;
  std::istringstream rest(line.substr(close + 1));
  std::string field;
  while (rest >> field) fields->push_back(field);
  return fields->size() >= 22;
}

// Seconds since the epoch at which the system booted ("btime" of /proc/stat).
bool ReadBootTime(double* seconds) {
  std::ifstream in("/proc/stat");
  std::string key;
  while (in >> key) {
    if (key == "btime") return static_cast<bool>(in >> *seconds);
    in.ignore(1 << 20, '\n');
  }
  return false;
}

}  // namespace

std::vector<prometheus::MetricFamily> ProcessCollector::Collect() const {
  using prometheus::MetricType;
  std::vector<prometheus::MetricFamily> families;
  std::vector<std::string> stat;
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  if (ReadStatFields(&stat) && ticks > 0) {
    // proc(5) fields 14 utime, 15 stime, 22 starttime (ticks), 23 vsize
    // (bytes), 24 rss (pages); stat[0] is field 3.
    const double cpu = (std::stod(stat[14 - 3]) + std::stod(stat[15 - 3])) / ticks;
    families.push_back(Family("process_cpu_seconds_total",
                              "Total user and system CPU time spent in seconds.",
                              MetricType::Counter, cpu));
    families.push_back(Family("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                              MetricType::Gauge, std::stod(stat[23 - 3])));
    families.push_back(
        Family("process_resident_memory_bytes", "Resident memory size in bytes.", MetricType::Gauge,
               std::stod(stat[24 - 3]) * static_cast<double>(sysconf(_SC_PAGESIZE))));
    double boot = 0;
    if (ReadBootTime(&boot)) {
      families.push_back(Family("process_start_time_seconds",
                                "Start time of the process since unix epoch in seconds.",
                                MetricType::Gauge, boot + std::stod(stat[22 - 3]) / ticks));
    }
  }
  std::error_code error;
  double open = 0;
  for (std::filesystem::directory_iterator it("/proc/self/fd", error), end; !error && it != end;
       it.increment(error)) {
    ++open;
  }
  if (!error) {
    // The iterator's own descriptor is counted while it is open; leave it out.
    families.push_back(Family("process_open_fds", "Number of open file descriptors.",
                              MetricType::Gauge, open > 0 ? open - 1 : 0));
  }
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    families.push_back(Family("process_max_fds", "Maximum number of open file descriptors.",
                              MetricType::Gauge, static_cast<double>(limit.rlim_cur)));
  }
  return families;
}

}  // namespace mtla
