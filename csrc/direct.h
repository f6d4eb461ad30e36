// direct.h: products against the weights as the caller holds them (row-major,
// PyTorch's layout), for calls too short to pay for packing them: forward on a
// few steps of a few rows (a user's own decoder loop, forward(T=1)). Packing
// W_hh and the GEMM panels of W_ih costs about as much as two or three steps of
// one row; here every weight is read once per row and step, straight from the
// caller's arrays, and nothing is written but the results.
//
// One output vector (VL consecutive rows of W, i.e. VL hidden units of one
// gate) is VL dot products: VL accumulators over the depth, then a fixed tree
// of two-vector shuffles and adds that leaves dot product e in lane e. The
// order of every sum is fixed by the depth alone, never by who computes it.
#pragma once

#include <stdint.h>

#include "common.h"
#include "simd/vec.h"

namespace rnnkit {
namespace RNNKIT_NS {

template <class Real>
struct Direct {
  using V = vec_t<Real>;
  using I = typename Vec<Real>::I;
  static constexpr int64_t VL = Vec<Real>::kLanes;

  // a and b each hold VL/S segments of S lanes (partial sums of one row each);
  // returns 2*VL/S segments of S/2 lanes, a's rows then b's, each the sum of
  // its segment's two halves.
  template <int64_t S>
  static RNNKIT_INLINE V fold(V a, V b) {
    constexpr int64_t half = VL / 2, s2 = S / 2;
    I lo, hi;
#pragma GCC unroll 16
    for (int64_t o = 0; o < VL; ++o) {
      const int64_t q = o < half ? o : o - half;
      const int64_t idx = (o < half ? 0 : VL) + (q / s2) * S + q % s2;
      lo[o] = idx;
      hi[o] = idx + s2;
    }
    return __builtin_shuffle(a, b, lo) + __builtin_shuffle(a, b, hi);
  }

  // Lane e of the result = the sum of the lanes of a[e].
  static RNNKIT_INLINE V transpose_sum(V (&a)[VL]) {
    level<VL, VL>(a);
    return a[0];
  }

  // One level of the tree: n vectors of segments S become n/2 of S/2.
  template <int64_t S, int64_t n>
  static RNNKIT_INLINE void level(V (&a)[VL]) {
#pragma GCC unroll 16
    for (int64_t i = 0; i < n / 2; ++i) a[i] = fold<S>(a[2 * i], a[2 * i + 1]);
    if constexpr (S > 2) level<S / 2, n / 2>(a);
  }

  // Lane e (e < n) of the result = sum_k W[e*ldw + k] x[k] over k < K; lanes
  // past n repeat row 0 (in bounds, to be discarded).
  static RNNKIT_INLINE V rows_dot(const Real* W, int64_t ldw, int64_t n, const Real* x,
                                  int64_t K) {
    V acc[VL];
    const Real* w[VL];
#pragma GCC unroll 16
    for (int64_t e = 0; e < VL; ++e) {
      acc[e] = V{};
      w[e] = W + (e < n ? e : 0) * ldw;
    }
    int64_t k = 0;
    for (; k + VL <= K; k += VL) {
      const V xv = load(x + k);
#pragma GCC unroll 16
      for (int64_t e = 0; e < VL; ++e) acc[e] += load(w[e] + k) * xv;
    }
    if (k < K) {
      const int64_t m = K - k;
      const V xv = loadn(x + k, m);
#pragma GCC unroll 16
      for (int64_t e = 0; e < VL; ++e) acc[e] += loadn(w[e] + k, m) * xv;
    }
    return transpose_sum(acc);
  }
};

}  // namespace RNNKIT_NS
}  // namespace rnnkit
