// gemm.h: C = A B (or C += A B) for the large products of the recurrent
// kernels: the input projection of all steps, dx, and the weight gradients.
//
// A is M x K with element (i, k) at A[i*rsa + k*csa]; B is K x N with (k, j) at
// B[k*rsb + j*csb]; C is M x N row-major with leading dimension ldc. Strides
// express transposes, so one routine serves X W^T, dG W and dG^T X.
//
// Called by every thread of an OpenMP team (tid, nth, the team's barrier)
// or by one thread outside a region (0, 1, nullptr). pack is shared scratch of
// gemm_pack_size(nth) elements. Each element of C is computed by exactly one thread in a fixed
// order over K, so results are bitwise identical for any thread count.
#pragma once

#include <stdint.h>

#include "simd/vec.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <sched.h>
#define RNNKIT_HAVE_YIELD 1
#endif

namespace rnnkit {
namespace RNNKIT_NS {

// The team barrier of the kernels (time steps, GEMM panels). It spins briefly (a step lasts microseconds
// to a millisecond), then yields the core: on a busy machine the thread being
// waited for may have been descheduled, and spinning through a whole time
// slice would make a step cost milliseconds. GCC atomics on plain ints, so no
// standard-library template is compiled with per-ISA flags.
struct TeamBarrier {
  int count = 0;
  int generation = 0;
  void wait(int nth) {
    if (nth <= 1) return;
    const int gen = __atomic_load_n(&generation, __ATOMIC_ACQUIRE);
    if (__atomic_add_fetch(&count, 1, __ATOMIC_ACQ_REL) == nth) {
      __atomic_store_n(&count, 0, __ATOMIC_RELAXED);
      __atomic_add_fetch(&generation, 1, __ATOMIC_RELEASE);
      return;
    }
    for (int spin = 0; __atomic_load_n(&generation, __ATOMIC_ACQUIRE) == gen; ++spin) {
      if (spin < 20000) {
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


template <class T>
int64_t gemm_pack_size(int nth);

template <class T>
void gemm(int64_t M, int64_t N, int64_t K, const T* A, int64_t rsa, int64_t csa,
          const T* B, int64_t rsb, int64_t csb, T* C, int64_t ldc, bool accumulate,
          T* pack, TeamBarrier* bar, int tid, int nth);

// FLOPs/s of a register-resident FMA loop on nth threads for this ISA: the
// machine's peak as this build can reach it (benchmarks report % of it).
double fma_peak_gflops(double seconds, int nth);

// GFLOP/s of gemm<float> on M x N x K (A transposed if ta, B if tb), best of
// reps, nth threads: lets benchmarks and tuning see the GEMM alone.
double gemm_gflops(int64_t M, int64_t N, int64_t K, bool ta, bool tb, int reps, int nth);

}  // namespace RNNKIT_NS
}  // namespace rnnkit
