// The engine slot shared by the services: empty while the model loads, set
// once it is ready, together with the architecture it serves ("llama-mtla" or
// "s2t-mtla"). Services answer UNAVAILABLE while it is empty.
//
// Thread-safety: thread-safe.
#ifndef MTLA_SERVER_ENGINE_HOLDER_H_
#define MTLA_SERVER_ENGINE_HOLDER_H_

#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "engine/serving/engine.h"

namespace mtla {

class EngineHolder {
 public:
  void Set(std::shared_ptr<Engine> engine, std::string architecture) {
    absl::MutexLock lock(&mu_);
    engine_ = std::move(engine);
    architecture_ = std::move(architecture);
  }
  // Null while loading.
  std::shared_ptr<Engine> Get() const {
    absl::MutexLock lock(&mu_);
    return engine_;
  }
  // Empty while loading.
  std::string architecture() const {
    absl::MutexLock lock(&mu_);
    return architecture_;
  }

 private:
  mutable absl::Mutex mu_;
  std::shared_ptr<Engine> engine_ ABSL_GUARDED_BY(mu_);
  std::string architecture_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mtla

#endif  // MTLA_SERVER_ENGINE_HOLDER_H_
