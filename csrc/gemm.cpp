// gemm.cpp: a packed, blocked GEMM (the BLIS structure: NC x KC panels of B
// shared by the team, MC x KC blocks of A per thread, an MR x NR register
// micro-kernel with NR = two vectors). Compiled once per ISA.
#include "gemm.h"

#include <omp.h>

namespace rnnkit {
namespace RNNKIT_NS {

namespace {

constexpr int64_t MR = RNNKIT_GEMM_MR;
template <class Real>
constexpr int64_t NR = 2 * Vec<Real>::kLanes;
constexpr int64_t KC = 512;
constexpr int64_t MC = MR * 12;
constexpr int64_t NC = 2048;

// Ap[k*MR + i] = A(i, k) for an mr x kc block, rows past mr zero.
template <class Real>
void pack_a(int64_t mr, int64_t kc, const Real* A, int64_t rsa, int64_t csa, Real* Ap) {
  if (csa == 1) {
    for (int64_t i = 0; i < MR; ++i) {
      const Real* a = A + i * rsa;
      for (int64_t k = 0; k < kc; ++k) Ap[k * MR + i] = i < mr ? a[k] : Real(0);
    }
  } else {
    for (int64_t k = 0; k < kc; ++k) {
      const Real* a = A + k * csa;
      for (int64_t i = 0; i < MR; ++i) Ap[k * MR + i] = i < mr ? a[i * rsa] : Real(0);
    }
  }
}

// Bp[k*NR + j] = B(k, j) for a kc x nr strip, columns past nr zero.
template <class Real>
void pack_b(int64_t nr, int64_t kc, const Real* B, int64_t rsb, int64_t csb, Real* Bp) {
  constexpr int64_t R = NR<Real>;
  if (csb == 1) {
    for (int64_t k = 0; k < kc; ++k) {
      const Real* b = B + k * rsb;
      for (int64_t j = 0; j < R; ++j) Bp[k * R + j] = j < nr ? b[j] : Real(0);
    }
  } else {
    for (int64_t j = 0; j < R; ++j) {
      const Real* b = B + j * csb;
      for (int64_t k = 0; k < kc; ++k) Bp[k * R + j] = j < nr ? b[k * rsb] : Real(0);
    }
  }
}

// C[0:mr, 0:nr] (+)= Ap^T Bp over kc: MR x NR accumulators in registers.
template <class Real>
void micro(int64_t kc, const Real* __restrict Ap, const Real* __restrict Bp, Real* C,
           int64_t ldc, int64_t mr, int64_t nr, bool accumulate) {
  using V = vec_t<Real>;
  constexpr int64_t VL = Vec<Real>::kLanes;
  V c0[MR], c1[MR];
#pragma GCC unroll 16
  for (int64_t i = 0; i < MR; ++i) c0[i] = c1[i] = V{};
  for (int64_t k = 0; k < kc; ++k) {
    V b0 = load(Bp), b1 = load(Bp + VL);
#pragma GCC unroll 16
    for (int64_t i = 0; i < MR; ++i) {
      c0[i] += Ap[i] * b0;
      c1[i] += Ap[i] * b1;
    }
    Ap += MR;
    Bp += 2 * VL;
  }
  if (mr == MR && nr == 2 * VL) {
#pragma GCC unroll 16
    for (int64_t i = 0; i < MR; ++i) {
      Real* c = C + i * ldc;
      if (accumulate) {
        c0[i] += load(c);
        c1[i] += load(c + VL);
      }
      store(c, c0[i]);
      store(c + VL, c1[i]);
    }
  } else {
    for (int64_t i = 0; i < mr; ++i) {
      Real* c = C + i * ldc;
      for (int64_t j = 0; j < nr; ++j) {
        Real v = j < VL ? c0[i][j] : c1[i][j - VL];
        c[j] = accumulate ? c[j] + v : v;
      }
    }
  }
}

}  // namespace

template <class Real>
int64_t gemm_pack_size(int nth) {
  return KC * NC + int64_t(nth) * (MC * KC) + 64;
}

template <class Real>
void gemm(int64_t M, int64_t N, int64_t K, const Real* A, int64_t rsa, int64_t csa,
          const Real* B, int64_t rsb, int64_t csb, Real* C, int64_t ldc,
          bool accumulate, Real* pack, TeamBarrier* bar, int tid, int nth) {
  constexpr int64_t R = NR<Real>;
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {  // C = 0 or unchanged
    if (!accumulate)
      for (int64_t i = tid; i < M; i += nth)
        for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = Real(0);
    return;
  }
  Real* Bp = pack;
  Real* Ap = pack + KC * NC + int64_t(tid) * (MC * KC);
  const int64_t nmb = (M + MC - 1) / MC;
  for (int64_t jc = 0; jc < N; jc += NC) {
    const int64_t nc = min64(NC, N - jc);
    const int64_t nstrips = (nc + R - 1) / R;
    // Split each M block into column groups until there are several units of
    // work per thread; threads take contiguous runs of units.
    const int64_t ngroups = min64(nstrips, max64(1, (4 * nth + nmb - 1) / nmb));
    const int64_t units = nmb * ngroups;
    const int64_t u0 = units * tid / nth, u1 = units * (tid + 1) / nth;
    for (int64_t pc = 0; pc < K; pc += KC) {
      const int64_t kc = min64(KC, K - pc);
      const bool acc = accumulate || pc > 0;
      for (int64_t s = tid; s < nstrips; s += nth)
        pack_b(min64(R, nc - s * R), kc, B + pc * rsb + (jc + s * R) * csb, rsb, csb,
               Bp + s * kc * R);
      if (bar) bar->wait(nth);
      int64_t packed_block = -1;
      for (int64_t u = u0; u < u1; ++u) {
        const int64_t ib = u / ngroups, g = u % ngroups;
        const int64_t ic = ib * MC, mc = min64(MC, M - ic);
        if (ib != packed_block) {
          for (int64_t ir = 0; ir < mc; ir += MR)
            pack_a(min64(MR, mc - ir), kc, A + (ic + ir) * rsa + pc * csa, rsa, csa,
                   Ap + ir * kc);
          packed_block = ib;
        }
        const int64_t s0 = nstrips * g / ngroups, s1 = nstrips * (g + 1) / ngroups;
        for (int64_t s = s0; s < s1; ++s)
          for (int64_t ir = 0; ir < mc; ir += MR)
            micro(kc, Ap + ir * kc, Bp + s * kc * R, C + (ic + ir) * ldc + jc + s * R,
                  ldc, min64(MR, mc - ir), min64(R, nc - s * R), acc);
      }
      if (bar) bar->wait(nth);
    }
  }
}

template int64_t gemm_pack_size<float>(int);
template int64_t gemm_pack_size<double>(int);
template void gemm<float>(int64_t, int64_t, int64_t, const float*, int64_t, int64_t,
                          const float*, int64_t, int64_t, float*, int64_t, bool, float*,
                          TeamBarrier*, int, int);
template void gemm<double>(int64_t, int64_t, int64_t, const double*, int64_t, int64_t,
                           const double*, int64_t, int64_t, double*, int64_t, bool,
                           double*, TeamBarrier*, int, int);

double gemm_gflops(int64_t M, int64_t N, int64_t K, bool ta, bool tb, int reps,
                   int nth) {
  float* A = new float[M * K];
  float* B = new float[K * N];
  float* C = new float[M * N];
  float* pack = new float[gemm_pack_size<float>(nth)];
  for (int64_t i = 0; i < M * K; ++i) A[i] = float(i % 7) * 0.1f;
  for (int64_t i = 0; i < K * N; ++i) B[i] = float(i % 5) * 0.1f;
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    double t0 = omp_get_wtime();
    TeamBarrier bar;
#pragma omp parallel num_threads(nth)
    gemm<float>(M, N, K, A, ta ? 1 : K, ta ? M : 1, B, tb ? 1 : N, tb ? K : 1, C, N,
                false, pack, &bar, omp_get_thread_num(), omp_get_num_threads());
    double t = omp_get_wtime() - t0;
    if (t < best) best = t;
  }
  delete[] A;
  delete[] B;
  delete[] C;
  delete[] pack;
  return 2.0 * double(M) * double(N) * double(K) / best / 1e9;
}

double fma_peak_gflops(double seconds, int nth) {
  using V = vec_t<float>;
  constexpr int64_t VL = Vec<float>::kLanes;
  constexpr int kAcc = 12;  // independent chains cover FMA latency x ports
  double total_flops = 0, elapsed = 0;
#pragma omp parallel num_threads(nth) reduction(+ : total_flops) \
    reduction(max : elapsed)
  {
    V acc[kAcc];
    for (int i = 0; i < kAcc; ++i) acc[i] = splat<float>(float(i) * 1e-3f);
    const V a = splat(0.999999f), b = splat(1e-7f);
    double t0 = omp_get_wtime(), t = t0;
    int64_t iters = 0;
    while (t - t0 < seconds) {
      for (int r = 0; r < 4096; ++r) {
#pragma GCC unroll 12
        for (int i = 0; i < kAcc; ++i) acc[i] = acc[i] * a + b;
      }
      iters += 4096;
      t = omp_get_wtime();
    }
    float sink = 0;
    for (int i = 0; i < kAcc; ++i) sink += acc[i][0];
    if (sink == 12345.f) total_flops += 1;  // keeps the loop alive
    total_flops += double(iters) * kAcc * VL * 2;
    elapsed = t - t0;
  }
  return total_flops / elapsed / 1e9;
}

}  // namespace RNNKIT_NS
}  // namespace rnnkit
