// gemm.h: C = A B (or C += A B) for the large products of the recurrent
// kernels: the input projection of all steps, dx, and the weight gradients.
//
// A is M x K with element (i, k) at A[i*rsa + k*csa]; B is K x N with (k, j) at
// B[k*rsb + j*csb]; C is M x N row-major with leading dimension ldc. Strides
// express transposes, so one routine serves X W^T, dG W and dG^T X.
//
// Called by every thread of an OpenMP team (tid, nth, the team's barrier)
// or by one thread outside a region (0, 1, nullptr). pack is shared scratch of
// gemm_pack_size(nth) elements. Each element of C is computed by exactly one thread in
// a fixed order over K, so results are bitwise identical for any thread count.
#pragma once

#include <stdint.h>

#include "simd/vec.h"
#include "team.h"

namespace rnnkit {
namespace RNNKIT_NS {

template <class Real>
int64_t gemm_pack_size(int nth);

// One block of columns of a product that shares its A with other blocks
// (gemm_panels): B(k, j) = B[(k - k0)*rsb + j*csb] for rows k0 <= k < k1 and
// zero outside them, j < n; the block's columns of A B go to C (leading
// dimension ldc).
template <class Real>
struct Panel {
  const Real* B;
  int64_t rsb, csb, n, k0, k1;
  Real* C;
  int64_t ldc;
};

// C_p (+)= A B_p for every panel p (at most kMaxPanels): one pass over A for
// products such as dG^T [x | h_prev]. If rowsum is not null it is set to
// rowsum[i] = sum_k A(i, k), summed in k order (bias gradients). The same
// contract as gemm otherwise.
constexpr int kMaxPanels = 4;
template <class Real>
void gemm_panels(int64_t M, int64_t K, const Real* A, int64_t rsa, int64_t csa,
                 const Panel<Real>* panels, int npanels, bool accumulate, Real* rowsum,
                 Real* pack, TeamBarrier* bar, int tid, int nth);

template <class Real>
void gemm(int64_t M, int64_t N, int64_t K, const Real* A, int64_t rsa, int64_t csa,
          const Real* B, int64_t rsb, int64_t csb, Real* C, int64_t ldc,
          bool accumulate, Real* pack, TeamBarrier* bar, int tid, int nth);

// FLOPs/s of a register-resident FMA loop on nth threads for this ISA: the
// machine's peak as this build can reach it (benchmarks report % of it).
double fma_peak_gflops(double seconds, int nth);

// GFLOP/s of gemm<float> on M x N x K (A transposed if ta, B if tb), best of
// reps, nth threads: lets benchmarks and tuning see the GEMM alone.
double gemm_gflops(int64_t M, int64_t N, int64_t K, bool ta, bool tb, int reps,
                   int nth);

}  // namespace RNNKIT_NS
}  // namespace rnnkit
