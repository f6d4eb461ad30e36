// team.h: the thread team of one kernel call. One OpenMP parallel region per
// call; its threads meet at a TeamBarrier (per time step, per GEMM panel),
// share the time loop as a Part says, and run with denormals flushed.
//
// Who computes an element may change with the thread count, how it is
// computed never does: results are bitwise identical for any team size.
#pragma once

#include <stdint.h>

#include "common.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define RNNKIT_HAVE_MXCSR 1
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <sched.h>
#include <time.h>
#define RNNKIT_HAVE_YIELD 1
#endif

namespace rnnkit {
namespace RNNKIT_NS {

// The team barrier of the kernels (time steps, GEMM panels). It spins briefly (a step
// lasts microseconds to a millisecond), then yields the core: on a busy machine the
// thread being waited for may have been descheduled, and spinning through a whole time
// slice would make a step cost milliseconds. GCC atomics on plain ints, so no
// standard-library template is compiled with per-ISA flags.
// Monotonic nanoseconds (0 where there is no clock_gettime).
inline int64_t now_ns() {
#ifdef RNNKIT_HAVE_YIELD
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
#else
  return 0;
#endif
}

// CPU time of the calling thread, in nanoseconds (0 where there is no such clock).
inline int64_t thread_cpu_ns() {
#ifdef RNNKIT_HAVE_YIELD
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
#else
  return 0;
#endif
}

struct TeamBarrier {
  // ~10 us of pause: a step's imbalance on a quiet machine; longer waits mean
  // the thread waited for is not running, and spinning on would take its core
  // (more threads than cores) or burn a time slice for nothing
  static constexpr int kSpins = 2000;
  int count = 0;
  int generation = 0;
  int64_t off_cpu_ns = 0;  // wall time the team's threads were not running, summed
  // Tell contention() how the call of nth threads that used this barrier went.
  void report(int nth, int64_t call_ns) const {
    contention().observe(__atomic_load_n(&off_cpu_ns, __ATOMIC_RELAXED), nth, call_ns);
  }
  void wait(int nth) {
    if (nth <= 1) return;
    const int gen = __atomic_load_n(&generation, __ATOMIC_ACQUIRE);
    if (__atomic_add_fetch(&count, 1, __ATOMIC_ACQ_REL) == nth) {
      __atomic_store_n(&count, 0, __ATOMIC_RELAXED);
      __atomic_add_fetch(&generation, 1, __ATOMIC_RELEASE);
      return;
    }
    for (int spin = 0; __atomic_load_n(&generation, __ATOMIC_ACQUIRE) == gen; ++spin) {
      if (spin < kSpins) {
#if defined(__x86_64__) || defined(__i386__)
        _mm_pause();
#endif
      } else {
#ifdef RNNKIT_HAVE_YIELD
        sched_yield();
#endif
      }
    }
  }
};

// A thread of the team: its id, the team size, the shared barrier. Built at
// the top of the parallel region, destroyed at its end; in a team of two or
// more it adds the wall time its thread was not running (descheduled for
// another process, or for a sibling on an oversubscribed core) to the
// barrier's off_cpu_ns, the measure contention() reads. Uneven work does not
// count: a thread waiting at a barrier on a free core keeps running.
struct Team {
  TeamBarrier* bar;
  int tid, nth;
  int64_t wall0 = 0, cpu0 = 0;
  Team(TeamBarrier* b, int t, int n) : bar(b), tid(t), nth(n) {
    if (nth > 1) {
      wall0 = now_ns();
      cpu0 = thread_cpu_ns();
    }
  }
  ~Team() {
    if (nth <= 1) return;
    const int64_t off = (now_ns() - wall0) - (thread_cpu_ns() - cpu0);
    if (off > 0) __atomic_add_fetch(&bar->off_cpu_ns, off, __ATOMIC_RELAXED);
  }
  Team(const Team&) = delete;
  Team& operator=(const Team&) = delete;
  void sync() const { bar->wait(nth); }
};

// Flush denormals to zero (FTZ) and treat denormal inputs as zero (DAZ) in
// this thread while a kernel runs; the caller's state is restored after.
struct DenormalGuard {
#ifdef RNNKIT_HAVE_MXCSR
  unsigned int saved;
  DenormalGuard() : saved(_mm_getcsr()) { _mm_setcsr(saved | 0x8040u); }
  ~DenormalGuard() { _mm_setcsr(saved); }
#endif
};

// How a thread shares a time loop. Hidden-parallel: threads own tiles of
// units (and that slice of W_hh stays in their cache), one barrier per step.
// Batch-parallel: threads own blocks of rows, which never interact, so no
// barrier at all; chosen when W_hh fits in a core's L2 and there are rows
// enough. Solo: thread 0 alone, for steps too small to pay for a barrier.
// The choice changes who computes an element, never how: results are the
// same bitwise for every thread count.
struct Part {
  int64_t u0, u1;      // tiles of units [u0, u1)
  int64_t qmod, qrem;  // row blocks q with q % qmod == qrem
  int64_t rows;        // rows per block
  bool sync;           // barrier after each step
  bool idle;           // this thread sits the loop out
  bool owns(int64_t r) const { return (r / rows) % qmod == qrem; }
};

// Threads for a whole call of `steps` steps of a cell with G gates: one when
// the work is too small to pay for waking a second thread (a few
// microseconds; far worse when the cores are busy and a spinning thread waits
// for a descheduled one).
inline int team_size(const RnnDesc& d, int64_t G, int64_t steps,
                     int64_t min_fma = int64_t(1) << 20) {
  int64_t fma = 0;
  for (int64_t l = 0; l < d.L; ++l)
    fma += d.D * steps * d.B * G * d.H * (d.in_size(l) + d.H);
  // as many threads as the work pays for: min_fma per thread at least
  const int64_t pays = fma / min_fma;
  const int want = pays < 1 ? 1 : pays < d.threads ? int(pays) : d.threads;
  return contention().threads(want);
}

// The Part of thread tid for tiles of tu units and row blocks of `rows`.
template <class Real>
Part partition(const RnnDesc& d, int64_t G, int64_t tu, int64_t rows, int tid,
               int nth) {
  const int64_t H = d.H, ntiles = (H + tu - 1) / tu;
  const int64_t wbytes = G * H * H * int64_t(sizeof(Real));
  const int64_t step_fma = d.B * G * H * H;
  Part p{0, ntiles, 1, 0, rows, false, false};
  if (nth == 1) return p;
  if (d.B >= 2 * rows * nth && wbytes <= (256 << 10)) {
    p.qmod = nth;
    p.qrem = tid;
  } else if (step_fma < (1 << 17)) {
    p.idle = tid != 0;
  } else {
    p.u0 = ntiles * tid / nth;
    p.u1 = ntiles * (tid + 1) / nth;
    p.sync = true;
  }
  return p;
}

// Variable lengths: the B rows sorted by decreasing length (a stable counting
// sort), so the rows still running at step s are a prefix 0..nact[s]. perm[r]
// is the original row of sorted row r, lens[r] its length (T when lengths is
// null); nact has T + 1 entries, nact[T] = 0. Returns the longest length.
inline int64_t sort_rows(int64_t T, int64_t B, const int64_t* lengths, int64_t* perm,
                         int64_t* lens, int64_t* nact) {
  for (int64_t t = 0; t <= T; ++t) nact[t] = 0;
  for (int64_t b = 0; b < B; ++b) ++nact[lengths ? lengths[b] - 1 : T - 1];
  // nact[t] := first sorted slot of rows with len == t+1, via a suffix sum
  int64_t running = 0;
  for (int64_t t = T - 1; t >= 0; --t) {
    const int64_t count = nact[t];
    nact[t] = running;
    running += count;
  }
  for (int64_t b = 0; b < B; ++b) {
    const int64_t len = lengths ? lengths[b] : T;
    const int64_t slot = nact[len - 1]++;
    perm[slot] = b;
    lens[slot] = len;
  }
  int64_t n = B;  // rows are sorted: shrink the prefix as lengths run out
  for (int64_t t = 0; t < T; ++t) {
    while (n > 0 && lens[n - 1] <= t) --n;
    nact[t] = n;
  }
  nact[T] = 0;
  return lens[0];
}

// dst[i] = src[i] for this thread's share of [0, n).
template <class Real>
void copy_part(Real* dst, const Real* src, int64_t n, int tid, int nth) {
  const int64_t i0 = n * tid / nth, i1 = n * (tid + 1) / nth;
  if (i1 > i0) __builtin_memcpy(dst + i0, src + i0, size_t(i1 - i0) * sizeof(Real));
}

}  // namespace RNNKIT_NS
}  // namespace rnnkit
