// embedding.cpp: the embedding table's gather and its deterministic
// scatter-add (no atomics: the threads split the columns, each walks every
// position in order). Arguments: EmbeddingArgs in blocks.h. Compiled once per
// ISA.
#include <omp.h>

#include "blocks.h"
#include "simd/vec.h"
#include "team.h"

namespace rnnkit {
namespace RNNKIT_NS {

template <class Real>
void embedding_forward(const EmbeddingArgs<Real>& a) {
  const int64_t N = a.N, E = a.E;
  const int nth = block_team(N * E, a.threads, int64_t(1) << 18);
#pragma omp parallel num_threads(nth)
  {
    const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
    for (int64_t r = N * tid / nt; r < N * (tid + 1) / nt; ++r)
      __builtin_memcpy(a.y + r * E, a.W + a.ids[r] * E, size_t(E) * sizeof(Real));
  }
}

template <class Real>
void embedding_backward(const EmbeddingArgs<Real>& a) {
  using V = vec_t<Real>;
  constexpr int64_t VL = Vec<Real>::kLanes;
  const int64_t N = a.N, E = a.E, nv = (E + VL - 1) / VL;
  const int nth = (int)min64(nv, block_team(N * E, a.threads, int64_t(1) << 16));
#pragma omp parallel num_threads(nth)
  {
    DenormalGuard guard;
    const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t j0 = nv * tid / nt * VL, j1 = min64(E, nv * (tid + 1) / nt * VL);
    for (int64_t r = 0; r < N; ++r) {
      const int64_t id = a.ids[r];
      if (id == a.padding) continue;
      Real* w = a.dW + id * E;
      const Real* d = a.dy + r * E;
      for (int64_t j = j0; j < j1; j += VL) {
        const int64_t n = min64(VL, j1 - j);
        V v = loadn(w + j, n) + loadn(d + j, n);
        storen(w + j, v, n);
      }
    }
  }
}

template void embedding_forward<float>(const EmbeddingArgs<float>&);
template void embedding_forward<double>(const EmbeddingArgs<double>&);
template void embedding_backward<float>(const EmbeddingArgs<float>&);
template void embedding_backward<double>(const EmbeddingArgs<double>&);

}  // namespace RNNKIT_NS
}  // namespace rnnkit
