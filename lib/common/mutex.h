// confman::common::Mutex, MutexLock and CondVar: absl::Mutex and
// absl::CondVar, with the thread-safety annotations, that ThreadSanitizer
// can see through.
//
// The distribution's Abseil is not built with ThreadSanitizer, so under TSan
// an absl::Mutex orders nothing TSan can see and every field it guards
// looks racy. These wrappers tell TSan what each lock, unlock and wait
// orders; in other builds they compile to the plain Abseil calls.
#pragma once

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

#if defined(__SANITIZE_THREAD__)
#define CONFMAN_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CONFMAN_TSAN 1
#endif
#endif

#if defined(CONFMAN_TSAN)
#include <sanitizer/tsan_interface.h>
#endif

namespace confman::common {

class ABSL_LOCKABLE Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() {
    mu_.Lock();
    Acquired();
  }
  void Unlock() ABSL_UNLOCK_FUNCTION() {
    Releasing();
    mu_.Unlock();
  }

 private:
  friend class CondVar;
#if defined(CONFMAN_TSAN)
  void Acquired() { __tsan_acquire(this); }
  void Releasing() { __tsan_release(this); }
#else
  void Acquired() {}
  void Releasing() {}
#endif
  absl::Mutex mu_;
};

// Holds `mu` for its scope.
class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_->Lock();
  }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

class CondVar {
 public:
  // Releases `mu` (held), waits for a signal, and holds `mu` again. May
  // return spuriously: callers loop on their condition.
  void Wait(Mutex* mu) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    mu->Releasing();
    cv_.Wait(&mu->mu_);
    mu->Acquired();
  }
  // The same, giving up at `deadline`: true if it timed out.
  bool WaitWithDeadline(Mutex* mu, absl::Time deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    mu->Releasing();
    const bool timed_out = cv_.WaitWithDeadline(&mu->mu_, deadline);
    mu->Acquired();
    return timed_out;
  }
  void Signal() { cv_.Signal(); }
  void SignalAll() { cv_.SignalAll(); }

 private:
  absl::CondVar cv_;
};

}  // namespace confman::common
