#pragma once

// Tells ThreadSanitizer about an ordering that gRPC guarantees but TSan
// cannot see.
//
// gRPC core runs a reactor's reactions (OnReadDone, OnWriteDone, OnCancel,
// OnDone) only after the operation that leads to them was started (StartRead,
// StartWrite, Finish, ...), on whatever thread completes it. That hand-off
// lives in libgrpc, which is not instrumented, so TSan saw a reactor's state
// written by the thread that started an operation (the RPC thread running the
// constructor, say) and read by the completion thread as a race: the CI run
// of stop 18 failed on `GenerateReactor::mu_`, created in the constructor and
// locked in OnWriteDone on another thread.
//
// Contract: a reactor derives from `OrderedReactor<its gRPC reactor>`, whose
// StartRead/StartWrite/.../Finish publish the starting thread's writes before
// starting the operation, and calls `EnterReaction()` first thing in every
// reaction. Together they add exactly the happens-before edge gRPC provides
// (start of an operation -> its reactions), no more; a real race between two
// reactions, or with the engine thread, is still reported. The annotations
// compile to nothing outside TSan builds.

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MTLA_TSAN_BUILD 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define MTLA_TSAN_BUILD 1
#endif

#include <utility>

#ifdef MTLA_TSAN_BUILD
#include <sanitizer/tsan_interface.h>
#endif

namespace mtla {

inline void BeforeGrpcOperation([[maybe_unused]] const void* reactor) {
#ifdef MTLA_TSAN_BUILD
  __tsan_release(const_cast<void*>(reactor));
#endif
}

inline void InGrpcReaction([[maybe_unused]] const void* reactor) {
#ifdef MTLA_TSAN_BUILD
  __tsan_acquire(const_cast<void*>(reactor));
#endif
}

// `GrpcReactor` is one of grpc::Server{Unary,Read,Write,Bidi}Reactor. The
// operations hide the base's names, so a reactor's own calls go through them.
template <class GrpcReactor>
class OrderedReactor : public GrpcReactor {
 protected:
  template <class... Args>
  void StartRead(Args&&... args) {
    BeforeGrpcOperation(this);
    GrpcReactor::StartRead(std::forward<Args>(args)...);
  }
  template <class... Args>
  void StartWrite(Args&&... args) {
    BeforeGrpcOperation(this);
    GrpcReactor::StartWrite(std::forward<Args>(args)...);
  }
  template <class... Args>
  void StartWriteAndFinish(Args&&... args) {
    BeforeGrpcOperation(this);
    GrpcReactor::StartWriteAndFinish(std::forward<Args>(args)...);
  }
  template <class... Args>
  void StartWriteLast(Args&&... args) {
    BeforeGrpcOperation(this);
    GrpcReactor::StartWriteLast(std::forward<Args>(args)...);
  }
  template <class... Args>
  void Finish(Args&&... args) {
    BeforeGrpcOperation(this);
    GrpcReactor::Finish(std::forward<Args>(args)...);
  }

  // First thing in every reaction (OnReadDone, OnWriteDone, OnCancel, OnDone).
  void EnterReaction() { InGrpcReaction(this); }
};

}  // namespace mtla
