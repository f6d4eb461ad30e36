// step.h: single steps, for generation. One step of a unidirectional stack on
// B rows, with the weights packed once (init) and the state kept in the
// workspace between calls. Each layer is one fused product over [x | h]
// against the packed [W_ih | W_hh]: no GEMM, no packing, no allocation per
// call. (kSplitN cells need W_in x apart from W_hn h: they run the two halves
// of the depth one after the other and pass the first through xp.)
#pragma once

#include <omp.h>

#include "cell.h"
#include "common.h"
#include "simd/vec.h"
#include "team.h"
#include "tiles.h"

namespace rnnkit {
namespace RNNKIT_NS {

template <class Real, class Cell>
struct Step {
  using V = vec_t<Real>;
  using Tl = Tiles<Real, Cell>;
  static constexpr int64_t VL = Tl::VL, G = Cell::G;
  static constexpr int64_t MR = Tl::MR, NV = Tl::NV, TU = Tl::TU;

  // One layer's part of the workspace.
  struct Layer {
    Real *w, *bx, *bhn;
    Real* xp;   // (B, G*H): zeros, or kSplitN's x W_ih^T of this step
    Real* cat;  // (B, I_l + H): [x_l | h_l], h_l the carried state
    Real *hnext, *c, *cnext;
    int64_t K;  // I_l + H
  };

  static Layer layout(const RnnDesc& d, int64_t layer, char* base, size_t* size) {
    Carver c(base);
    Layer out{};
    const int64_t B = d.B, H = d.H, GH = G * H, Hp = (H + TU - 1) / TU * TU;
    for (int64_t l = 0; l < d.L; ++l) {
      Layer s;
      s.K = d.in_size(l) + H;
      s.w = c.take<Real>(Hp * G * s.K);
      s.bx = c.take<Real>(GH);
      s.bhn = c.take<Real>(H);
      s.xp = c.take<Real>(B * GH);
      s.cat = c.take<Real>(B * s.K);
      s.hnext = c.take<Real>(B * H);
      s.c = c.take<Real>(Cell::kHasC ? B * H : 0);
      s.cnext = c.take<Real>(Cell::kHasC ? B * H : 0);
      if (l == layer) out = s;
    }
    if (size) *size = c.used;
    return out;
  }

  static size_t size(const RnnDesc& d) {
    size_t size = 0;
    layout(d, 0, nullptr, &size);
    return size;
  }

  static void init(const RnnDesc& d, char* ws, const Real* const* weights) {
    const int64_t H = d.H, GH = G * H;
    for (int64_t l = 0; l < d.L; ++l) {
      Layer s = layout(d, l, ws, nullptr);
      const int64_t In = d.in_size(l);
      const Real* const* w = weights + 4 * l;
      Tl::pack_rows(H, w[0], In, In, 0, s.K, s.w, 0, 1);
      Tl::pack_rows(H, w[1], H, H, In, s.K, s.w, 0, 1);
      Tl::combine_bias(d, w[2], w[3], s.bx, s.bhn);
      for (int64_t k = 0; k < d.B * GH; ++k) s.xp[k] = Real(0);
      for (int64_t i = 0; i < d.B * s.K; ++i) s.cat[i] = Real(0);
      if (Cell::kHasC)
        for (int64_t i = 0; i < d.B * H; ++i) s.c[i] = Real(0);
    }
  }

  // Reads (set=false) or writes (set=true) the carried state, (L, B, H).
  static void state(const RnnDesc& d, char* ws, Real* h, Real* c, bool set) {
    const int64_t B = d.B, H = d.H;
    for (int64_t l = 0; l < d.L; ++l) {
      Layer s = layout(d, l, ws, nullptr);
      const int64_t In = d.in_size(l);
      for (int64_t b = 0; b < B; ++b)
        for (int64_t j = 0; j < H; ++j) {
          Real& hs = s.cat[b * s.K + In + j];
          Real* hu = h + (l * B + b) * H + j;
          if (set)
            hs = *hu;
          else
            *hu = hs;
          if (Cell::kHasC && c) {
            Real* cu = c + (l * B + b) * H + j;
            if (set)
              s.c[b * H + j] = *cu;
            else
              *cu = s.c[b * H + j];
          }
        }
      if (set && l + 1 < d.L) {  // layer l+1 reads h_l as its input
        Layer n = layout(d, l + 1, ws, nullptr);
        for (int64_t b = 0; b < B; ++b)
          for (int64_t j = 0; j < H; ++j) n.cat[b * n.K + j] = s.cat[b * s.K + In + j];
      }
    }
  }

  // The fused product of one row block against the packed [W_ih | W_hh] of
  // tile w; kSplitN stores the input half to s.xp first.
  static RNNKIT_INLINE void product(const Layer& s, const Real* w, int64_t In,
                                    int64_t H, int64_t u, int64_t r0, int64_t mr,
                                    V (&acc)[MR][NV][G]) {
    if (Cell::kSplitN) {  // x W_ih^T first, kept in xp
      Tl::fused_product_rows(w, s.cat, s.K, In, r0, mr, acc);
      for (int64_t i = 0; i < mr; ++i)
        for (int64_t v = 0; v < NV; ++v) {
          const int64_t j = u * TU + v * VL, n = min64(VL, H - j);
          for (int64_t g = 0; g < G && n > 0; ++g)
            storen(s.xp + (r0 + i) * G * H + g * H + j, acc[i][v][g], n);
        }
      const Real* wh = w + In * G * TU;
      Tl::fused_product_rows(wh, s.cat + In, s.K, H, r0, mr, acc);
    } else {
      Tl::fused_product_rows(w, s.cat, s.K, s.K, r0, mr, acc);
    }
  }

  // x (B, I) in, y (B, H) = top layer's new h out; the state advances.
  template <Act kAct>
  static void run(const RnnDesc& d, char* ws, const Real* x, Real* y) {
    const int64_t B = d.B, H = d.H;
    TeamBarrier bar;
    // A single step is bound by reading the weights: a second thread pays as
    // soon as they outgrow one core's L2 (then each core holds half).
    const int team_n = team_size(d, G, 1, int64_t(1) << 16);
    const int64_t t_start = now_ns();
#pragma omp parallel num_threads(team_n)
    {
      DenormalGuard guard;
      const Team team{&bar, omp_get_thread_num(), omp_get_num_threads()};
      const Part P = partition<Real>(d, G, TU, MR, team.tid, team.nth);
      if (!P.idle) {
        for (int64_t l = 0; l < d.L; ++l) {
          Layer s = layout(d, l, ws, nullptr);
          const int64_t In = d.in_size(l);
          Layer next = l + 1 < d.L ? layout(d, l + 1, ws, nullptr) : Layer{};
          if (l == 0)
            for (int64_t b = 0; b < B; ++b)
              if (P.sync ? team.tid == 0 : P.owns(b))
                for (int64_t i = 0; i < In; ++i) s.cat[b * s.K + i] = x[b * In + i];
          if (l == 0 && P.sync) team.sync();
          FwdRow<Real> row;
          row.bx = s.bx;
          row.bhn = s.bhn;
          row.H = H;
          row.cstore = row.hnstore = nullptr;
          row.zp = Real(d.zoneout);  // zoneout at inference: its expectation
          for (int64_t u = P.u0; u < P.u1; ++u) {
            const Real* w = s.w + u * s.K * G * TU;
            for (int64_t r0 = 0; r0 < B; r0 += MR) {
              if (!P.owns(r0)) continue;
              const int64_t mr = min64(MR, B - r0);
              V acc[MR][NV][G];
              product(s, w, In, H, u, r0, mr, acc);
              for (int64_t i = 0; i < mr; ++i) {
                const int64_t r = r0 + i;
                row.xp = s.xp + r * G * H;
                row.hprev = s.cat + r * s.K + In;
                row.cprev = s.c + r * H;
                row.hnext = s.hnext + r * H;
                row.cnext = s.cnext + r * H;
                row.y = next.cat ? next.cat + r * next.K : y + r * H;
                for (int64_t v = 0; v < NV; ++v) {
                  const int64_t j = u * TU + v * VL, n = min64(VL, H - j);
                  if (n <= 0) break;
                  Cell::template forward<false, kAct>(acc[i][v], row, j, n);
                }
              }
            }
          }
          if (P.sync) team.sync();
          // the new state becomes the carried one (own rows and units only)
          const int64_t j0 = P.u0 * TU, j1 = min64(P.u1 * TU, H);
          for (int64_t b = 0; b < B; ++b) {
            if (!P.owns(b)) continue;
            for (int64_t j = j0; j < j1; ++j) {
              s.cat[b * s.K + In + j] = s.hnext[b * H + j];
              if (Cell::kHasC) s.c[b * H + j] = s.cnext[b * H + j];
            }
          }
        }
      }
    }
    bar.report(team_n, now_ns() - t_start);
  }
};

}  // namespace RNNKIT_NS
}  // namespace rnnkit
