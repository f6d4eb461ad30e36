// optim.cpp: the optimizer updates (SGD, Adagrad, RMSprop, Adam/AdamW) as one
// fused pass over a flat parameter buffer, the gradients' sum of squares for
// global-norm clipping and the in-place scaling. Arguments: OptimArgs in
// blocks.h. Every update is elementwise, and the threads' chunks start at
// multiples of kChunk, so an element is computed the same way for any thread
// count. Compiled once per ISA.
#include <omp.h>

#include "blocks.h"
#include "simd/vec.h"
#include "team.h"

namespace rnnkit {
namespace RNNKIT_NS {

namespace {

constexpr int64_t kChunk = 1024;

// Calls f(i0, i1) on this thread's share of [0, n), in chunks of kChunk.
template <class F>
void for_chunks(int64_t n, int tid, int nt, F f) {
  const int64_t nc = (n + kChunk - 1) / kChunk;
  const int64_t c0 = nc * tid / nt, c1 = nc * (tid + 1) / nt;
  if (c1 > c0) f(c0 * kChunk, min64(n, c1 * kChunk));
}

template <class Real>
RNNKIT_INLINE Real vsqrt1(Real x) {
  return sizeof(Real) == 4 ? Real(__builtin_sqrtf(float(x)))
                           : Real(__builtin_sqrt(double(x)));
}

// The updates, written as NumPy does them in python/rnnkit/reference/blocks.py
// (same operations in the same order, coefficients rounded to Real).
template <class Real>
void sgd(const OptimArgs<Real>& a, int64_t i0, int64_t i1) {
  Real* __restrict p = a.p;
  const Real* __restrict g = a.g;
  Real* __restrict buf = a.s0;
  const Real wd = Real(a.weight_decay), mu = Real(a.momentum),
             damp = Real(1.0 - a.dampening), nlr = Real(-a.lr);
  const bool has_wd = a.weight_decay != 0, has_mu = a.momentum != 0,
             has_damp = a.dampening != 0;
#pragma omp simd
  for (int64_t i = i0; i < i1; ++i) {
    Real d = g[i];
    if (has_wd) d = p[i] * wd + d;
    if (has_mu) {
      Real b;
      if (a.first)
        b = d;
      else
        b = buf[i] * mu + (has_damp ? d * damp : d);
      buf[i] = b;
      d = a.nesterov ? b * mu + d : b;
    }
    p[i] += d * nlr;
  }
}

template <class Real>
void adagrad(const OptimArgs<Real>& a, int64_t i0, int64_t i1) {
  Real* __restrict p = a.p;
  const Real* __restrict g = a.g;
  Real* __restrict s = a.s0;
  const Real wd = Real(a.weight_decay), eps = Real(a.eps), nlr = Real(-a.lr);
  const bool has_wd = a.weight_decay != 0;
#pragma omp simd
  for (int64_t i = i0; i < i1; ++i) {
    Real d = g[i];
    if (has_wd) d = p[i] * wd + d;
    const Real si = s[i] + d * d;
    s[i] = si;
    p[i] += d / (vsqrt1(si) + eps) * nlr;
  }
}

template <class Real>
void rmsprop(const OptimArgs<Real>& a, int64_t i0, int64_t i1) {
  Real* __restrict p = a.p;
  const Real* __restrict g = a.g;
  Real* __restrict v = a.s0;
  Real* __restrict buf = a.s1;
  Real* __restrict m = a.s2;
  const Real wd = Real(a.weight_decay), eps = Real(a.eps), nlr = Real(-a.lr);
  const Real al = Real(a.alpha), al1 = Real(1.0 - a.alpha), mu = Real(a.momentum);
  const bool has_wd = a.weight_decay != 0, has_mu = a.momentum != 0;
#pragma omp simd
  for (int64_t i = i0; i < i1; ++i) {
    Real d = g[i];
    if (has_wd) d = p[i] * wd + d;
    const Real vi = v[i] * al + d * d * al1;
    v[i] = vi;
    Real r;
    if (a.centered) {
      const Real mi = m[i] * al + d * al1;
      m[i] = mi;
      r = vsqrt1(vi - mi * mi);
    } else {
      r = vsqrt1(vi);
    }
    const Real q = d / (r + eps);
    if (has_mu) {
      const Real b = buf[i] * mu + q;
      buf[i] = b;
      p[i] += b * nlr;
    } else {
      p[i] += q * nlr;
    }
  }
}

template <class Real>
void adam(const OptimArgs<Real>& a, int64_t i0, int64_t i1) {
  Real* __restrict p = a.p;
  const Real* __restrict g = a.g;
  Real* __restrict m = a.s0;
  Real* __restrict v = a.s1;
  Real* __restrict vmax = a.s2;
  const Real wd = Real(a.weight_decay), eps = Real(a.eps);
  const Real shrink = Real(1.0 - a.lr * a.weight_decay);
  const Real b1 = Real(a.beta1), b11 = Real(1.0 - a.beta1);
  const Real b2 = Real(a.beta2), b21 = Real(1.0 - a.beta2);
  const Real rbc2 = Real(1.0 / __builtin_sqrt(a.bc2)), step = Real(-a.lr / a.bc1);
  const bool l2 = !a.decoupled && a.weight_decay != 0;
  const bool dec = a.decoupled && a.weight_decay != 0;
#pragma omp simd
  for (int64_t i = i0; i < i1; ++i) {
    Real pi = p[i];
    Real d = g[i];
    if (dec) pi = pi * shrink;
    if (l2) d = pi * wd + d;
    const Real mi = m[i] * b1 + d * b11;
    m[i] = mi;
    Real vi = v[i] * b2 + d * d * b21;
    v[i] = vi;
    if (a.amsgrad) {
      const Real mx = vmax[i];
      vi = mx < vi || vi != vi ? vi : mx;  // np.maximum propagates NaN
      vmax[i] = vi;
    }
    p[i] = pi + mi / (vsqrt1(vi) * rbc2 + eps) * step;
  }
}

}  // namespace

template <class Real>
void optim_step(const OptimArgs<Real>& a) {
  const int nth = block_team(a.n * 4, a.threads);
#pragma omp parallel num_threads(nth)
  {
    DenormalGuard guard;
    const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
    for_chunks(a.n, tid, nt, [&](int64_t i0, int64_t i1) {
      switch (a.kind) {
        case OptimKind::kSgd:
          sgd(a, i0, i1);
          break;
        case OptimKind::kAdagrad:
          adagrad(a, i0, i1);
          break;
        case OptimKind::kRmsprop:
          rmsprop(a, i0, i1);
          break;
        case OptimKind::kAdam:
          adam(a, i0, i1);
          break;
      }
    });
  }
}

// sum((x * scale)^2) in double: one partial per kNormBlock block, eight
// interleaved accumulators inside a block, the partials added in order.
template <class Real>
double sum_squares(const Real* x, int64_t n, double scale, double* partial,
                   int threads) {
  const int64_t nb = norm_blocks(n);
  const int nth = block_team(n, threads, int64_t(1) << 15);
#pragma omp parallel num_threads(nth)
  {
    const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
    for (int64_t blk = nb * tid / nt; blk < nb * (tid + 1) / nt; ++blk) {
      const int64_t i0 = blk * kNormBlock, i1 = min64(n, i0 + kNormBlock);
      double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      int64_t i = i0;
      for (; i + 8 <= i1; i += 8)
#pragma GCC unroll 8
        for (int k = 0; k < 8; ++k) {
          const double v = double(x[i + k]) * scale;
          acc[k] += v * v;
        }
      for (int k = 0; i < i1; ++i, ++k) {
        const double v = double(x[i]) * scale;
        acc[k] += v * v;
      }
      partial[blk] = ((acc[0] + acc[1]) + (acc[2] + acc[3])) +
                     ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    }
  }
  double total = 0;
  for (int64_t b = 0; b < nb; ++b) total += partial[b];
  return total;
}

// x *= s.
template <class Real>
void scale_buffer(Real* x, int64_t n, Real s, int threads) {
  const int nth = block_team(n, threads, int64_t(1) << 16);
#pragma omp parallel num_threads(nth)
  {
    const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
    for_chunks(n, tid, nt, [&](int64_t i0, int64_t i1) {
      Real* __restrict p = x;
#pragma omp simd
      for (int64_t i = i0; i < i1; ++i) p[i] *= s;
    });
  }
}

template void optim_step<float>(const OptimArgs<float>&);
template void optim_step<double>(const OptimArgs<double>&);
template double sum_squares<float>(const float*, int64_t, double, double*, int);
template double sum_squares<double>(const double*, int64_t, double, double*, int);
template void scale_buffer<float>(float*, int64_t, float, int);
template void scale_buffer<double>(double*, int64_t, double, int);

}  // namespace RNNKIT_NS
}  // namespace rnnkit
