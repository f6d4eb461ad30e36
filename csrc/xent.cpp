// xent.cpp: softmax cross-entropy, loss and gradient together, row by row:
// the max, the sum of exp(z - max) (stored into dz), then dz scaled in place,
// so a row of logits is read once from memory. Arguments: XentArgs in
// blocks.h. Compiled once per ISA.
#include <omp.h>

#include "blocks.h"
#include "simd/vec.h"
#include "team.h"

namespace rnnkit {
namespace RNNKIT_NS {

template <class Real>
void xent(const XentArgs<Real>& a) {
  using V = vec_t<Real>;
  constexpr int64_t VL = Vec<Real>::kLanes;
  const int64_t N = a.N, C = a.C;
  const int nth = block_team(N * C * 8, a.threads);
#pragma omp parallel num_threads(nth)
  {
    DenormalGuard guard;
    const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
    for (int64_t r = N * tid / nt; r < N * (tid + 1) / nt; ++r) {
      const Real* z = a.z + r * C;
      Real* d = a.dz + r * C;
      if (!a.valid[r]) {
        for (int64_t j = 0; j < C; ++j) d[j] = Real(0);
        a.nll[r] = 0;
        continue;
      }
      const int64_t t = a.target[r];
      // m = max z; a NaN or +inf logit makes the whole row NaN, as in NumPy
      // (-inf logits are fine: their probability is 0 to within 1e-38)
      using I = typename Vec<Real>::I;
      const Real inf = Real(__builtin_huge_val());
      V mv = splat<Real>(-inf);
      I poison{};
      for (int64_t j = 0; j < C; j += VL) {
        const int64_t n = min64(VL, C - j);
        V v = loadn(z + j, n);
        if (n < VL)
          for (int64_t i = n; i < VL; ++i) v[i] = -inf;
        poison |= (I)(v != v) | (I)(v == inf);
        mv = v > mv ? v : mv;
      }
      Real m = mv[0];
      for (int64_t i = 1; i < VL; ++i) m = mv[i] > m ? mv[i] : m;
      for (int64_t i = 0; i < VL; ++i)
        if (poison[i]) m = Real(__builtin_nan(""));
      const Real zt = z[t] - m;
      // s = sum exp(z - m), exp kept in d (d may be z: each element is read
      // before it is written)
      V sv{};
      for (int64_t j = 0; j < C; j += VL) {
        const int64_t n = min64(VL, C - j);
        V e = vexp(loadn(z + j, n) - m);
        if (n < VL)
          for (int64_t i = n; i < VL; ++i) e[i] = Real(0);
        sv += e;
        storen(d + j, e, n);
      }
      Real s = 0;
      for (int64_t i = 0; i < VL; ++i) s += sv[i];
      const Real et = d[t];
      const Real logs = sizeof(Real) == 4 ? Real(__builtin_logf(float(s)))
                                          : Real(__builtin_log(double(s)));
      a.nll[r] = double(logs - zt);
      // d = scale * (e / s - onehot(t))
      const Real sc = a.scale;
      for (int64_t j = 0; j < C; j += VL) {
        const int64_t n = min64(VL, C - j);
        storen(d + j, loadn(d + j, n) / s * sc, n);
      }
      d[t] = (et / s - Real(1)) * sc;
    }
  }
}

template void xent<float>(const XentArgs<float>&);
template void xent<double>(const XentArgs<double>&);

}  // namespace RNNKIT_NS
}  // namespace rnnkit
