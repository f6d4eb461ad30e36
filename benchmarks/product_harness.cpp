// product_harness.cpp: the forward recurrent product of the kernels alone
// (Tiles::fused_product over the packed W_hh tiles, in depth blocks, one team
// barrier per step), to see how close the time loop's core gets to the FMA peak
// without the rest of a step. Options: the LSTM cell step after each tile
// (CELL=1), rows split across threads instead of units (BATCH=1).
//
//   g++ -O3 -fopenmp -std=c++17 -mavx512f -mavx2 -mfma -mprefer-vector-width=512 \
//       -ffp-contract=fast -DRNNKIT_NS=avx512 -DRNNKIT_TARGET_AVX512 -Icsrc \
//       benchmarks/product_harness.cpp -o /tmp/product_harness
//   /tmp/product_harness 32 256 300 2          # B H steps threads
//   CELL=1 /tmp/product_harness 32 256 300 2
//
// (AVX2: -mavx2 -mfma -DRNNKIT_NS=avx2 -DRNNKIT_TARGET_AVX2.) Prints the best
// of 5 repetitions in µs per step and GFLOP/s of the product (2*B*4H*H per step);
// compare with rnnkit._core.fma_peak_gflops() on the same threads.
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "tiles.h"

using namespace rnnkit::RNNKIT_NS;

namespace {

struct LstmShape {  // the LSTM's tile shape (lstm.cpp)
  static constexpr int64_t G = 4, MR = RNNKIT_VBYTES == 64 ? 6 : 3, NV = 1;
  static constexpr bool kSplitN = false;
};
using Tl = Tiles<float, LstmShape>;
using V = Tl::V;
constexpr int64_t G = Tl::G, MR = Tl::MR, NV = Tl::NV, TU = Tl::TU, VL = Tl::VL;
constexpr int64_t KB = Tl::KB;

float* zeros(int64_t n) {
  float* p = static_cast<float*>(aligned_alloc(64, ((n * 4 + 63) / 64) * 64));
  for (int64_t i = 0; i < n; ++i) p[i] = 0.01f * float(i % 7);
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: %s B H steps threads\n", argv[0]);
    return 2;
  }
  const int64_t B = atoi(argv[1]), H = atoi(argv[2]), steps = atoi(argv[3]);
  const int nth = atoi(argv[4]);
  const bool cell = getenv("CELL") != nullptr, batch = getenv("BATCH") != nullptr;
  const int64_t ntiles = (H + TU - 1) / TU;
  float* wp = zeros(ntiles * H * G * TU);  // packed W_hh, [k][v][g][VL] per tile
  float* h = zeros(2 * B * H);             // h_{t-1}, h_t
  float* c = zeros(2 * B * H);
  float* xp = zeros(64 * B * G * H);  // 64 steps of XP, reused cyclically
  float* part = zeros(nth * B * NV * G * VL);
  double best = 1e30;
  for (int rep = 0; rep < 5; ++rep) {
    const double t0 = omp_get_wtime();
#pragma omp parallel num_threads(nth)
    {
      const int tid = omp_get_thread_num();
      const int64_t u0 = batch ? 0 : ntiles * tid / nth;
      const int64_t u1 = batch ? ntiles : ntiles * (tid + 1) / nth;
      const int64_t r_lo = batch ? B * tid / nth : 0,
                    r_hi = batch ? B * (tid + 1) / nth : B;
      float* pt = part + tid * B * NV * G * VL;
      for (int64_t s = 0; s < steps; ++s) {
        const float* hc = h + (s & 1) * B * H;
        float* hn = h + ((s + 1) & 1) * B * H;
        const float* cc = c + (s & 1) * B * H;
        float* cn = c + ((s + 1) & 1) * B * H;
        for (int64_t u = u0; u < u1; ++u) {
          const float* w = wp + u * H * G * TU;
          for (int64_t k0 = 0; k0 < H; k0 += KB) {
            const int64_t kn = KB < H - k0 ? KB : H - k0;
            const bool first = k0 == 0, last = k0 + kn == H;
            for (int64_t r0 = r_lo; r0 < r_hi; r0 += MR) {
              const int64_t mr = MR < r_hi - r0 ? MR : r_hi - r0;
              V acc[MR][NV][G];
              Tl::fused_product_rows(w + k0 * G * TU, hc + k0, H, kn, r0, mr, acc);
              for (int64_t i = 0; i < mr; ++i)
                for (int64_t g = 0; g < G; ++g) {
                  float* pp = pt + ((r0 + i) * G + g) * VL;
                  if (!first) acc[i][0][g] += load(pp);
                  if (!last) store(pp, acc[i][0][g]);
                }
              if (!last) continue;
              const int64_t j = u * TU;
              if (j + VL > H) continue;
              for (int64_t i = 0; i < mr; ++i) {
                const int64_t r = r0 + i;
                if (!cell) {
                  store(hn + r * H + j, acc[i][0][0] * 1e-3f);
                  continue;
                }
                const float* x = xp + ((s % 64) * B + r) * G * H;
                const V ig = vsigmoid(load(x + j) + acc[i][0][0]);
                const V fg = vsigmoid(load(x + H + j) + acc[i][0][1]);
                const V gg = vtanh(load(x + 2 * H + j) + acc[i][0][2]);
                const V og = vsigmoid(load(x + 3 * H + j) + acc[i][0][3]);
                const V ct = fg * load(cc + r * H + j) + ig * gg;
                store(cn + r * H + j, ct);
                store(hn + r * H + j, og * vtanh(ct));
              }
            }
          }
        }
        if (!batch) {
#pragma omp barrier
        }
      }
    }
    const double t = omp_get_wtime() - t0;
    if (t < best) best = t;
  }
  const double flops = 2.0 * double(steps) * double(B) * double(G * H) * double(H);
  printf("LSTM product B=%ld H=%ld threads=%d%s%s: %.1f us/step, %.1f GFLOP/s\n", B, H,
         nth, cell ? " +cell" : "", batch ? " batch-parallel" : "", best / steps * 1e6,
         flops / best / 1e9);
  return 0;
}
