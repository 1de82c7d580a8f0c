// One CPU-parallel computation at a time, for a process whose parallel work
// comes from more than one thread (the engine's decode steps, the speech
// encoder's batches): each takes the gate around a parallel region, so one
// OpenMP team runs at a time and two teams never share (and spin on) the
// same cores. First come, first served: a holder that releases and asks
// again goes behind whoever was already waiting, so neither side starves;
// a waiter waits at most for the holder's current region.
//
// Thread-safety: thread-safe. Not recursive: a thread must not take the gate
// it holds.
#ifndef MTLA_ENGINE_COMMON_COMPUTE_GATE_H_
#define MTLA_ENGINE_COMMON_COMPUTE_GATE_H_

#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace mtla {

class ComputeGate {
 public:
  void Acquire() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    const uint64_t ticket = next_ticket_++;
    auto turn = [this, ticket]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return now_serving_ == ticket;
    };
    mu_.Await(absl::Condition(&turn));
  }
  void Release() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    ++now_serving_;
  }

  // Holds `gate` for its scope; a null gate is no gate.
  class Hold {
   public:
    explicit Hold(ComputeGate* gate) : gate_(gate) {
      if (gate_) gate_->Acquire();
    }
    ~Hold() {
      if (gate_) gate_->Release();
    }
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;

   private:
    ComputeGate* const gate_;
  };

 private:
  absl::Mutex mu_;
  uint64_t next_ticket_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t now_serving_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace mtla

#endif  // MTLA_ENGINE_COMMON_COMPUTE_GATE_H_
