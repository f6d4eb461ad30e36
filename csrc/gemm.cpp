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
// Cache blocking: a KC x NR strip of packed B (32 KiB) stays in L1 while the
// micro-kernel walks the MC x KC block of packed A (L2); the KC x NC panel of
// B is shared by the team (L3). (A fixed KC = 512 made the AVX-512 strip
// 64 KiB, more than a 48 KiB L1: it ran from L2.)
template <class Real>
constexpr int64_t KC = (32 * 1024) / (NR<Real> * int64_t(sizeof(Real))) < 512
                           ? (32 * 1024) / (NR<Real> * int64_t(sizeof(Real)))
                           : 512;
constexpr int64_t MC = MR * 24;
constexpr int64_t NC = 2048;

// Ap[k*MR + i] = A(i, k) for an mr x kc block, rows past mr zero. With sum,
// sum[i] += A(i, k) for i < mr, in k order.
template <class Real>
void pack_a(int64_t mr, int64_t kc, const Real* A, int64_t rsa, int64_t csa, Real* Ap,
            Real* sum) {
  if (mr == MR && !sum) {  // full blocks: no branches, Ap written in order
    if (csa == 1) {
      const Real* a[MR];
      for (int64_t i = 0; i < MR; ++i) a[i] = A + i * rsa;
      for (int64_t k = 0; k < kc; ++k)
#pragma GCC unroll 16
        for (int64_t i = 0; i < MR; ++i) Ap[k * MR + i] = a[i][k];
    } else if (rsa == 1) {  // A^T: MR consecutive elements per k
      for (int64_t k = 0; k < kc; ++k)
#pragma GCC unroll 16
        for (int64_t i = 0; i < MR; ++i) Ap[k * MR + i] = A[k * csa + i];
    } else {
      for (int64_t k = 0; k < kc; ++k)
#pragma GCC unroll 16
        for (int64_t i = 0; i < MR; ++i) Ap[k * MR + i] = A[k * csa + i * rsa];
    }
  } else if (csa == 1) {
    for (int64_t i = 0; i < MR; ++i) {
      const Real* a = A + i * rsa;
      for (int64_t k = 0; k < kc; ++k) Ap[k * MR + i] = i < mr ? a[k] : Real(0);
      if (sum && i < mr) {
        Real s = sum[i];
        for (int64_t k = 0; k < kc; ++k) s += a[k];
        sum[i] = s;
      }
    }
  } else if (sum) {
    Real s[MR];
    for (int64_t i = 0; i < MR; ++i) s[i] = i < mr ? sum[i] : Real(0);
    for (int64_t k = 0; k < kc; ++k) {
      const Real* a = A + k * csa;
      for (int64_t i = 0; i < MR; ++i) {
        const Real v = i < mr ? a[i * rsa] : Real(0);
        Ap[k * MR + i] = v;
        s[i] += v;
      }
    }
    for (int64_t i = 0; i < mr; ++i) sum[i] = s[i];
  } else {
    for (int64_t k = 0; k < kc; ++k) {
      const Real* a = A + k * csa;
      for (int64_t i = 0; i < MR; ++i) Ap[k * MR + i] = i < mr ? a[i * rsa] : Real(0);
    }
  }
}

// Bp[k*NR + j] = B(k, j) for a kc x nr strip, columns past nr zero; rows
// before kz0 and from kz1 on are zero (B points at row kz0).
template <class Real>
void pack_b(int64_t nr, int64_t kc, const Real* B, int64_t rsb, int64_t csb,
            int64_t kz0, int64_t kz1, Real* Bp) {
  constexpr int64_t R = NR<Real>;
  kz0 = max64(kz0, 0);
  kz1 = min64(kz1, kc);
  for (int64_t k = 0; k < kz0; ++k)
    for (int64_t j = 0; j < R; ++j) Bp[k * R + j] = Real(0);
  if (csb == 1 && nr == R) {
    using V = vec_t<Real>;
    constexpr int64_t VL = Vec<Real>::kLanes;
    for (int64_t k = kz0; k < kz1; ++k) {
      const Real* b = B + (k - kz0) * rsb;
      // rows rsb apart each start a new stream: fetch a few rows ahead
      __builtin_prefetch(b + 8 * rsb);
      __builtin_prefetch(b + 8 * rsb + R - 1);
      const V b0 = load(b), b1 = load(b + VL);
      store(Bp + k * R, b0);
      store(Bp + k * R + VL, b1);
    }
  } else if (csb == 1) {
    for (int64_t k = kz0; k < kz1; ++k) {
      const Real* b = B + (k - kz0) * rsb;
      for (int64_t j = 0; j < R; ++j) Bp[k * R + j] = j < nr ? b[j] : Real(0);
    }
  } else {
    for (int64_t j = 0; j < R; ++j) {
      const Real* b = B + j * csb;
      for (int64_t k = kz0; k < kz1; ++k)
        Bp[k * R + j] = j < nr ? b[(k - kz0) * rsb] : Real(0);
    }
  }
  for (int64_t k = max64(kz1, kz0); k < kc; ++k)
    for (int64_t j = 0; j < R; ++j) Bp[k * R + j] = Real(0);
}

// C[0:mr, 0:nr] (+)= Ap^T Bp over kc: MR x NR accumulators in registers.
template <class Real>
void micro(int64_t kc, const Real* __restrict Ap, const Real* __restrict Bp, Real* C,
           int64_t ldc, int64_t mr, int64_t nr, bool accumulate) {
  using V = vec_t<Real>;
  constexpr int64_t VL = Vec<Real>::kLanes;
  // C is read (or written) once, after kc steps: fetch its lines meanwhile
  for (int64_t i = 0; i < mr; ++i) {
    __builtin_prefetch(C + i * ldc, 1);
    __builtin_prefetch(C + i * ldc + 2 * VL - 1, 1);
  }
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
  constexpr int64_t kc = KC<Real>;
  return kc * NC + int64_t(nth) * (MC * kc) + 64;
}

template <class Real>
void gemm_panels(int64_t M, int64_t K, const Real* A, int64_t rsa, int64_t csa,
                 const Panel<Real>* panels, int npanels, bool accumulate, Real* rowsum,
                 Real* pack, TeamBarrier* bar, int tid, int nth) {
  constexpr int64_t R = NR<Real>;
  if (M <= 0) return;
  // strips of R columns, numbered across the panels: panel p owns strips
  // [first[p], first[p + 1]); a strip never straddles two panels
  int64_t first[kMaxPanels + 1];
  first[0] = 0;
  for (int p = 0; p < npanels; ++p) first[p + 1] = first[p] + (panels[p].n + R - 1) / R;
  const int64_t nstrips_all = first[npanels];
  if (K <= 0) {  // C = 0 or unchanged; sums 0
    for (int p = 0; p < npanels && !accumulate; ++p)
      for (int64_t i = tid; i < M; i += nth)
        for (int64_t j = 0; j < panels[p].n; ++j)
          panels[p].C[i * panels[p].ldc + j] = 0;
    if (rowsum)
      for (int64_t i = tid; i < M; i += nth) rowsum[i] = Real(0);
    return;
  }
  if (nstrips_all == 0 && !rowsum) return;
  // 64-byte aligned (the size has room): a vector load never splits a line
  pack = reinterpret_cast<Real*>((reinterpret_cast<uintptr_t>(pack) + 63) &
                                 ~uintptr_t(63));
  Real* Bp = pack;
  Real* Ap = pack + KC<Real> * NC + int64_t(tid) * (MC * KC<Real>);
  // M blocks of about equal size (a multiple of MR, at most MC), so the team's
  // shares differ by one block at most, not by a ragged last one.
  const int64_t nmb = (M + MC - 1) / MC;
  const int64_t mcb = ((M + nmb - 1) / nmb + MR - 1) / MR * MR;
  constexpr int64_t kStripsNC = NC / R;
  const int64_t njc = nstrips_all == 0 ? 1 : (nstrips_all + kStripsNC - 1) / kStripsNC;
  for (int64_t jcb = 0; jcb < njc; ++jcb) {
    const int64_t s_lo = jcb * kStripsNC, s_hi = min64(nstrips_all, s_lo + kStripsNC);
    const int64_t nstrips = s_hi - s_lo;
    // Split each M block into column groups until there are several units of
    // work per thread; threads take contiguous runs of units.
    const int64_t ngroups =
        min64(max64(nstrips, 1), max64(1, (4 * nth + nmb - 1) / nmb));
    const int64_t units = nmb * ngroups;
    const int64_t u0 = units * tid / nth, u1 = units * (tid + 1) / nth;
    for (int64_t pc = 0; pc < K; pc += KC<Real>) {
      const int64_t kc = min64(KC<Real>, K - pc);
      for (int64_t s = tid; s < nstrips; s += nth) {
        const int64_t gs = s_lo + s;
        int p = 0;
        while (gs >= first[p + 1]) ++p;
        const Panel<Real>& P = panels[p];
        const int64_t j = (gs - first[p]) * R;
        // rows [pc, pc + kc) of B, zero outside [k0, k1)
        const int64_t kstart = max64(pc, P.k0);
        const Real* b = kstart < P.k1 ? P.B + (kstart - P.k0) * P.rsb + j * P.csb : P.B;
        pack_b(min64(R, P.n - j), kc, b, P.rsb, P.csb, P.k0 - pc, P.k1 - pc,
               Bp + s * kc * R);
      }
      if (bar) bar->wait(nth);
      int64_t packed_block = -1;
      for (int64_t u = u0; u < u1; ++u) {
        const int64_t ib = u / ngroups, g = u % ngroups;
        const int64_t ic = ib * mcb, mc = min64(mcb, M - ic);
        if (mc <= 0) continue;
        if (ib != packed_block) {
          // the row sums: by the owner of the block's first group, in the
          // first column block, so each row is summed once in k order
          Real* sum = rowsum && g == 0 && jcb == 0 ? rowsum + ic : nullptr;
          if (sum && pc == 0)
            for (int64_t i = 0; i < mc; ++i) sum[i] = Real(0);
          for (int64_t ir = 0; ir < mc; ir += MR)
            pack_a(min64(MR, mc - ir), kc, A + (ic + ir) * rsa + pc * csa, rsa, csa,
                   Ap + ir * kc, sum ? sum + ir : nullptr);
          packed_block = ib;
        }
        const int64_t s0 = nstrips * g / ngroups, s1 = nstrips * (g + 1) / ngroups;
        for (int64_t s = s0; s < s1; ++s) {
          const int64_t gs = s_lo + s;
          int p = 0;
          while (gs >= first[p + 1]) ++p;
          const Panel<Real>& P = panels[p];
          const int64_t j = (gs - first[p]) * R;
          const bool acc = accumulate || pc > 0;
          for (int64_t ir = 0; ir < mc; ir += MR)
            micro(kc, Ap + ir * kc, Bp + s * kc * R, P.C + (ic + ir) * P.ldc + j, P.ldc,
                  min64(MR, mc - ir), min64(R, P.n - j), acc);
        }
      }
      if (bar) bar->wait(nth);
    }
  }
}

template <class Real>
void gemm(int64_t M, int64_t N, int64_t K, const Real* A, int64_t rsa, int64_t csa,
          const Real* B, int64_t rsb, int64_t csb, Real* C, int64_t ldc,
          bool accumulate, Real* pack, TeamBarrier* bar, int tid, int nth) {
  if (N <= 0) return;
  const Panel<Real> p{B, rsb, csb, N, 0, K, C, ldc};
  gemm_panels(M, K, A, rsa, csa, &p, 1, accumulate, static_cast<Real*>(nullptr), pack,
              bar, tid, nth);
}

template int64_t gemm_pack_size<float>(int);
template int64_t gemm_pack_size<double>(int);
template void gemm<float>(int64_t, int64_t, int64_t, const float*, int64_t, int64_t,
                          const float*, int64_t, int64_t, float*, int64_t, bool, float*,
                          TeamBarrier*, int, int);
template void gemm<double>(int64_t, int64_t, int64_t, const double*, int64_t, int64_t,
                           const double*, int64_t, int64_t, double*, int64_t, bool,
                           double*, TeamBarrier*, int, int);
template void gemm_panels<float>(int64_t, int64_t, const float*, int64_t, int64_t,
                                 const Panel<float>*, int, bool, float*, float*,
                                 TeamBarrier*, int, int);
template void gemm_panels<double>(int64_t, int64_t, const double*, int64_t, int64_t,
                                  const Panel<double>*, int, bool, double*, double*,
                                  TeamBarrier*, int, int);

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
