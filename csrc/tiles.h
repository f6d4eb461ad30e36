// tiles.h: the register tiles of the recurrent products and the packing of
// W_hh (and, for single steps, [W_ih | W_hh]) they read.
//
// Forward: a tile is MR rows x NV vectors of VL units x G gates of
// accumulators; the packed weights of tile u are [k][v][g][VL], so one k step
// reads G*NV consecutive vectors. Backward: MRB rows x NVB vectors of units,
// weights packed [gk][TUB] (dh = dG W_hh). Sized so the accumulators fill most
// of the register file (16 vector registers below AVX-512, 32 with it); the
// weights come from L1/L2 as memory operands.
#pragma once

#include <stdint.h>

#include "cell.h"
#include "common.h"
#include "simd/vec.h"

namespace rnnkit {
namespace RNNKIT_NS {

template <class Real, class Cell>
struct Tiles {
  using V = vec_t<Real>;
  static constexpr int64_t VL = Vec<Real>::kLanes;  // lanes per vector
  static constexpr int64_t G = Cell::G;
  static constexpr int64_t MR = Cell::MR;
  static constexpr int64_t NV = Cell::NV;
  static constexpr int64_t TU = NV * VL;  // units per forward tile
  static constexpr int64_t MRB = RNNKIT_VBYTES == 64 ? 12 : 5;
  // Depth block of the forward product: a KB x (G*TU) slice of the packed
  // W_hh tile stays in L1 across all row blocks of a step; partial sums wait
  // in a per-thread buffer between blocks.
  static constexpr int64_t KB = 128;
  static constexpr int64_t NVB = 2;
  static constexpr int64_t TUB = NVB * VL;  // units per backward tile
  // Depth block of the backward product: KBB x TUB of the packed tile (16 KiB
  // in float) stays in L1 across the row blocks of a step.
  static constexpr int64_t KBB = 128;

  // Forward: tile u (TU units) as [k][v][g][VL] = W[g*H + u*TU + v*VL + e][k].
  // pack_rows writes rows of W (G*H x K, leading dimension lda) at depth
  // [k0, k0 + K) of tiles Ktot deep, so [W_ih | W_hh] can share one packing.
  static void pack_rows(int64_t H, const Real* W, int64_t lda, int64_t K, int64_t k0,
                        int64_t Ktot, Real* wp, int tid, int nth) {
    const int64_t ntiles = (H + TU - 1) / TU;
    for (int64_t u = tid; u < ntiles; u += nth) {
      Real* out = wp + u * Ktot * G * TU;
      for (int64_t v = 0; v < NV; ++v)
        for (int64_t g = 0; g < G; ++g)
          for (int64_t e = 0; e < VL; ++e) {  // lane e of vector v
            const int64_t j = u * TU + v * VL + e;
            const Real* w = W + (g * H + j) * lda;
            Real* o = out + k0 * G * TU + (v * G + g) * VL + e;
            for (int64_t k = 0; k < K; ++k) o[k * G * TU] = j < H ? w[k] : Real(0);
          }
    }
  }

  static void pack_forward(const RnnDesc& d, const Real* whh, Real* wp, int tid,
                           int nth) {
    pack_rows(d.H, whh, d.H, d.H, 0, d.H, wp, tid, nth);
  }

  // Backward: tile u (TUB units) as [gk][TUB] = W_hh[gk][u*TUB + e].
  static void pack_backward(const RnnDesc& d, const Real* whh, Real* wp, int tid,
                            int nth) {
    const int64_t H = d.H, GH = G * H, ntiles = (H + TUB - 1) / TUB;
    for (int64_t u = tid; u < ntiles; u += nth) {
      Real* out = wp + u * GH * TUB;
      for (int64_t k = 0; k < GH; ++k)
        for (int64_t e = 0; e < TUB; ++e) {
          const int64_t j = u * TUB + e;
          out[k * TUB + e] = j < H ? whh[k * H + j] : Real(0);
        }
    }
  }

  // bx = b_ih + b_hh, except that kSplitN keeps b_hh of the last gate apart
  // (bhn): it is scaled by r. Null biases count as zero.
  static void combine_bias(const RnnDesc& d, const Real* bih, const Real* bhh, Real* bx,
                           Real* bhn) {
    const int64_t H = d.H, GH = G * H;
    const int64_t folded = Cell::kSplitN ? GH - H : GH;
    for (int64_t k = 0; k < GH; ++k)
      bx[k] = (bih ? bih[k] : Real(0)) + (bhh && k < folded ? bhh[k] : Real(0));
    for (int64_t j = 0; j < H; ++j)
      bhn[j] = Cell::kSplitN && bhh ? bhh[folded + j] : Real(0);
  }

  // acc[i][v][g] = sum_k h[r0+i][k] W[g*H + tile unit v*VL..][k], k < K, for
  // mr <= MR rows of h (leading dimension ldh); rows past mr repeat row r0 (in
  // bounds, discarded), so there are no branches inside.
  template <int64_t MRt>
  static RNNKIT_INLINE void fused_product(const Real* w, const Real* h, int64_t ldh,
                                          int64_t K, int64_t r0, int64_t mr,
                                          V (&acc)[MR][NV][G]) {
    if (MRt == 1) return fused_product_row(w, h + r0 * ldh, K, acc[0]);
    const Real* hr[MRt];
#pragma GCC unroll 16
    for (int64_t i = 0; i < MRt; ++i) {
      hr[i] = h + (r0 + (i < mr ? i : 0)) * ldh;
#pragma GCC unroll 4
      for (int64_t v = 0; v < NV; ++v)
#pragma GCC unroll 4
        for (int64_t g = 0; g < G; ++g) acc[i][v][g] = V{};
    }
    // Live registers per k step: the accumulators plus either the NV*G weight
    // vectors (rows outer, one broadcast at a time) or the MRt broadcasts
    // (weights outer); the smaller set is kept, so nothing spills (GCC keeps
    // every value the source order leaves live: 12 broadcasts beside 24
    // accumulators overflowed the 32 AVX-512 registers). Each accumulator
    // still sums over k in order: the result does not depend on the choice.
    if constexpr (MRt > NV * G) {
      for (int64_t k = 0; k < K; ++k) {
        const Real* wk = w + k * G * TU;
        V wv[NV][G];
#pragma GCC unroll 4
        for (int64_t v = 0; v < NV; ++v)
#pragma GCC unroll 4
          for (int64_t g = 0; g < G; ++g) wv[v][g] = load(wk + (v * G + g) * VL);
#pragma GCC unroll 16
        for (int64_t i = 0; i < MRt; ++i) {
          const Real hk = hr[i][k];
#pragma GCC unroll 4
          for (int64_t v = 0; v < NV; ++v)
#pragma GCC unroll 4
            for (int64_t g = 0; g < G; ++g) acc[i][v][g] += hk * wv[v][g];
        }
      }
    } else {
      for (int64_t k = 0; k < K; ++k) {
        const Real* wk = w + k * G * TU;
#pragma GCC unroll 4
        for (int64_t v = 0; v < NV; ++v)
#pragma GCC unroll 4
          for (int64_t g = 0; g < G; ++g) {
            const V wv = load(wk + (v * G + g) * VL);
#pragma GCC unroll 16
            for (int64_t i = 0; i < MRt; ++i) acc[i][v][g] += hr[i][k] * wv;
          }
      }
    }
  }

  // The ragged last row block of a step: mr rows on the smallest tile that
  // holds them (1, about 2/3 of MR, or MR), so B = 32 on 6-row tiles computes
  // 34 rows, not 36. Each row sums over k in the same order on every tile: the
  // results do not depend on the choice.
  static constexpr int64_t MR2 = MR > 2 ? (2 * MR + 2) / 3 : MR;
  static constexpr int64_t MRB2 = MRB > 2 ? (2 * MRB + 2) / 3 : MRB;
  static RNNKIT_INLINE void fused_product_rows(const Real* w, const Real* h,
                                               int64_t ldh, int64_t K, int64_t r0,
                                               int64_t mr, V (&acc)[MR][NV][G]) {
    if (mr == 1)
      fused_product<1>(w, h, ldh, K, r0, mr, acc);
    else if (mr <= MR2)
      fused_product<MR2>(w, h, ldh, K, r0, mr, acc);
    else
      fused_product<MR>(w, h, ldh, K, r0, mr, acc);
  }

  // One row (batch 1, generation): too few accumulators to hide the FMA
  // latency, so even and odd k run in separate chains, added at the end.
  static RNNKIT_INLINE void fused_product_row(const Real* w, const Real* h, int64_t K,
                                              V (&acc)[NV][G]) {
    V odd[NV][G];
#pragma GCC unroll 4
    for (int64_t v = 0; v < NV; ++v)
#pragma GCC unroll 4
      for (int64_t g = 0; g < G; ++g) acc[v][g] = odd[v][g] = V{};
    int64_t k = 0;
    for (; k + 1 < K; k += 2) {
      const Real* wk = w + k * G * TU;
      const Real h0 = h[k], h1 = h[k + 1];
#pragma GCC unroll 4
      for (int64_t v = 0; v < NV; ++v)
#pragma GCC unroll 4
        for (int64_t g = 0; g < G; ++g) {
          acc[v][g] += h0 * load(wk + (v * G + g) * VL);
          odd[v][g] += h1 * load(wk + G * TU + (v * G + g) * VL);
        }
    }
    for (; k < K; ++k)
#pragma GCC unroll 4
      for (int64_t v = 0; v < NV; ++v)
#pragma GCC unroll 4
        for (int64_t g = 0; g < G; ++g)
          acc[v][g] += h[k] * load(w + k * G * TU + (v * G + g) * VL);
#pragma GCC unroll 4
    for (int64_t v = 0; v < NV; ++v)
#pragma GCC unroll 4
      for (int64_t g = 0; g < G; ++g) acc[v][g] += odd[v][g];
  }

  // backward_product on the smallest tile that holds mr rows (see
  // fused_product_rows).
  static RNNKIT_INLINE void backward_product_rows(const Real* w, const Real* dg,
                                                  int64_t ldg, int64_t GH, int64_t r0,
                                                  int64_t mr, V (&prod)[MRB][NVB]) {
    if (mr == 1)
      backward_product<1>(w, dg, ldg, GH, r0, mr, prod);
    else if (mr <= MRB2)
      backward_product<MRB2>(w, dg, ldg, GH, r0, mr, prod);
    else
      backward_product<MRB>(w, dg, ldg, GH, r0, mr, prod);
  }

  // prod[i][v] = sum_k dG[r0+i][k] W_hh[k][tile unit v*VL..] over k < G*H; dG
  // rows ldg apart.
  template <int64_t MRt>
  static RNNKIT_INLINE void backward_product(const Real* w, const Real* dg, int64_t ldg,
                                             int64_t GH, int64_t r0, int64_t mr,
                                             V (&prod)[MRB][NVB]) {
    const Real* dr[MRt];
#pragma GCC unroll 16
    for (int64_t i = 0; i < MRt; ++i) {
      dr[i] = dg + (r0 + (i < mr ? i : 0)) * ldg;
#pragma GCC unroll 2
      for (int64_t v = 0; v < NVB; ++v) prod[i][v] = V{};
    }
    // rows outer, the NVB weight vectors in registers (see fused_product)
    for (int64_t k = 0; k < GH; ++k) {
      V wv[NVB];
#pragma GCC unroll 2
      for (int64_t v = 0; v < NVB; ++v) wv[v] = load(w + k * TUB + v * VL);
#pragma GCC unroll 16
      for (int64_t i = 0; i < MRt; ++i) {
        const Real dk = dr[i][k];
#pragma GCC unroll 2
        for (int64_t v = 0; v < NVB; ++v) prod[i][v] += dk * wv[v];
      }
    }
  }
};

}  // namespace RNNKIT_NS
}  // namespace rnnkit
