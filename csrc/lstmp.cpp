// lstmp.cpp: the projected LSTM over whole sequences (PyTorch's LSTMP), forward
// and backpropagation through time; the equations are in lstmp.h. Compiled
// once per ISA.
//
// Per layer and direction: XP = x W_ih^T for all steps in one GEMM (gemm.h);
// then per step two register-tiled products with weights packed once per call
// (tiles.h): the gates (h_{t-1} W_hh^T, 4 gates of a unit in one tile, fused
// with the LSTM pointwise math, which writes c_t and m_t = o * tanh(c_t)), and
// the projection h_t = m_t W_hr^T. A training forward keeps the gate
// activations (over XP), c_t (aux) and every layer's output y (= h_t).
//
// Backward, per step in reverse: dh_t = dy_t + dG_{t+1} W_hh (P wide, kept as
// dH for dW_hr), dm_t = dh_t W_hr, the pointwise LSTM backward (dG over XP,
// dc carried) — and, since c_t is not read again once its step is done, m_t
// recomputed from o and tanh(c_t) over aux. Then every weight gradient is one
// GEMM over all steps: dx = dG W_ih, dW_ih += dG^T x, dW_hh += dG^T h_prev,
// dW_hr += dH^T m, biases += column sums of dG.
//
// Masks (lstmp.h; the options' contract): a training forward copies them into
// the reserve and backward reads them there. Recurrent dropout: the gates read
// a compact R * h kept next to h (dW_hh then uses R * y_{t-1}). Zoneout: the
// projection's epilogue selects h_{t-1} where z, the gate epilogue c_{t-1}
// (the carried c_t is kept apart from c~_t, which m_t reads); backward routes
// dh and dc around the cell where a unit was zoned out. Dropout between layers:
// layer k+1 reads y_k * mask (kept), and dL/dy_k is multiplied by it.
//
// Variable lengths and threads as recurrent.h: rows sorted by decreasing
// length (the running rows are a prefix), one OpenMP region per call, threads
// own disjoint tiles of units (a barrier after each of the two products of a
// step) or disjoint blocks of rows (no barrier), every element computed by one
// thread in a fixed order: results are bitwise identical for any thread count.
#include "lstmp.h"

#include <omp.h>

#include "gemm.h"
#include "kernels.h"
#include "recurrent.h"
#include "simd/vec.h"
#include "team.h"
#include "tiles.h"

namespace rnnkit {
namespace RNNKIT_NS {

namespace {

// The register-tile shapes (tiles.h reads G, MR, NV, kSplitN): the gate
// product (4 gates of VL units per tile, as the LSTM cell) and the one-output
// products (projection, and the backward products dG W_hh and dh W_hr).
struct GateShape {
  static constexpr int64_t G = 4;
  static constexpr int64_t MR = RNNKIT_VBYTES == 64 ? 6 : 3;
  static constexpr int64_t NV = 1;
  static constexpr bool kSplitN = false, kHasC = true;
};
// MR x NV accumulators plus MR broadcasts and a weight vector fit the register
// file (32 vectors with AVX-512, 16 below), so nothing spills in the k loop.
struct OneShape {
  static constexpr int64_t G = 1;
  static constexpr int64_t MR = RNNKIT_VBYTES == 64 ? 6 : 3;
  static constexpr int64_t NV = 4;
  static constexpr bool kSplitN = false, kHasC = false;
};

// Rows are owned in blocks of RB (a multiple of every MR above) when threads
// split the batch.
constexpr int64_t RB = 24;

template <class Real>
struct Lstmp {
  using V = vec_t<Real>;
  using Tg = Tiles<Real, GateShape>;
  using T1 = Tiles<Real, OneShape>;
  static constexpr int64_t VL = Tg::VL, KB = Tg::KB;
  static constexpr int64_t TU4 = Tg::TU, TU1 = T1::TU;

  struct Reserve {
    Real *x, *h0, *c0;
    Real* y;           // per layer (T, B, D*P), stride ys
    Real* xp;          // per (layer, dir) (T, B, 4H), stride xs
    Real* aux;         // per (layer, dir) (T, B, H): c~_t; backward turns it into m_t
    Real* cz;          // zc: per (layer, dir) (T, B, H) the carried c_t (after zoneout)
    Real* rec;         // rec: per (layer, dir) (B, P), stride B*P
    uint8_t *zh, *zc;  // zh, zc: per (layer, dir) (T, B, P) / (T, B, H)
    Real* drop;        // drop: per layer < L-1 (T, B, D*P), stride ys
    Real* xd;          // drop: per layer < L-1 its output times the mask
    int64_t ys, xs, as;
  };
  struct Scratch {
    Real* pack;              // GEMM panels
    Real *wg, *wr;           // packed weights of the current (layer, dir)
    Real* bx;                // b_ih + b_hh
    Real *h[2], *c[2];       // compact states; backward: h[0] = sorted h0
    Real* m;                 // forward: compact m_t (B, H)
    Real *dg[2], *dc, *dhc;  // backward: compact dG, dc, dh
    Real* dH;                // backward: (T, B, P) dL/dh~_t of the (layer, dir)
    Real* dhz;               // backward, zh: compact dL/dh~_t (zoned-out units 0)
    Real* hin;               // rec: forward (B, P) R * h; backward (T, B, P)
    Real* part;              // per thread partial sums between depth blocks
    Real* xp;                // inference: XP of the current (layer, dir)
    Real* yl[2];             // inference: lower layers' outputs
    Real* dyl[2];            // backward: dL/dy of the lower layers
    int64_t *perm, *lens, *nact;
    int64_t part_stride;
  };

  static int64_t tiles_of(int64_t n, int64_t tu) { return (n + tu - 1) / tu; }

  static Reserve reserve_layout(const LstmpDesc& d, char* base, size_t* size) {
    Carver c(base);
    Reserve r;
    const int64_t TB = d.T * d.B, LD = d.L * d.D;
    c.take<int64_t>(kLstmpHeader);  // the bindings' header
    r.x = c.take<Real>(TB * d.I);
    r.h0 = c.take<Real>(LD * d.B * d.P);
    r.c0 = c.take<Real>(LD * d.B * d.H);
    r.ys = round16(TB * d.D * d.P);
    r.y = c.take<Real>(r.ys * d.L);
    r.xs = round16(TB * 4 * d.H);
    r.xp = c.take<Real>(r.xs * LD);
    r.as = round16(TB * d.H);
    r.aux = c.take<Real>(r.as * LD);
    r.cz = c.take<Real>(d.zc ? r.as * LD : 0);
    r.rec = c.take<Real>(d.rec ? LD * d.B * d.P : 0);
    r.zh = c.take<uint8_t>(d.zh ? LD * TB * d.P : 0);
    r.zc = c.take<uint8_t>(d.zc ? LD * TB * d.H : 0);
    r.drop = c.take<Real>(d.drop ? r.ys * (d.L - 1) : 0);
    r.xd = c.take<Real>(d.drop ? r.ys * (d.L - 1) : 0);
    if (size) *size = c.used;
    return r;
  }

  static Scratch scratch_layout(const LstmpDesc& d, Mode mode, char* base,
                                size_t* size) {
    Carver c(base);
    Scratch s;
    const int64_t B = d.B, H = d.H, P = d.P, GH = 4 * H, T = d.T;
    const bool bwd = mode == Mode::kBackward, inf = mode == Mode::kInference;
    s.pack = c.take<Real>(gemm_pack_size<Real>(d.threads));
    // forward: gates [u][P][4][TU4], projection [u][H][TU1] over P units;
    // backward: W_hh^T [u][4H][TU1] over P units, W_hr [u][P][TU1] over H units
    const int64_t wg =
        bwd ? tiles_of(P, TU1) * TU1 * GH : tiles_of(H, TU4) * TU4 * 4 * P;
    const int64_t wr = bwd ? tiles_of(H, TU1) * TU1 * P : tiles_of(P, TU1) * TU1 * H;
    s.wg = c.take<Real>(wg);
    s.wr = c.take<Real>(wr);
    s.bx = c.take<Real>(GH);
    for (int i = 0; i < 2; ++i) s.h[i] = c.take<Real>(B * P);
    for (int i = 0; i < 2; ++i) s.c[i] = c.take<Real>(bwd ? 0 : B * H);
    s.m = c.take<Real>(bwd ? 0 : B * H);
    for (int i = 0; i < 2; ++i) s.dg[i] = c.take<Real>(bwd ? B * GH : 0);
    s.dc = c.take<Real>(bwd ? B * H : 0);
    s.dhc = c.take<Real>(bwd ? B * P : 0);
    s.dH = c.take<Real>(bwd ? T * B * P : 0);
    s.dhz = c.take<Real>(bwd && d.zh ? B * P : 0);
    s.hin = c.take<Real>(!d.rec || inf ? 0 : bwd ? T * B * P : B * P);
    const int64_t pg = 4 * TU4, p1 = TU1;
    s.part_stride = round16(B * (pg > p1 ? pg : p1));
    s.part = c.take<Real>(int64_t(d.threads) * s.part_stride);
    s.xp = c.take<Real>(inf ? T * B * GH : 0);
    for (int i = 0; i < 2; ++i)
      s.yl[i] = c.take<Real>(inf && d.L > 1 ? T * B * d.D * P : 0);
    for (int i = 0; i < 2; ++i)
      s.dyl[i] = c.take<Real>(bwd && d.L > 1 ? T * B * d.D * P : 0);
    s.perm = c.take<int64_t>(B);
    s.lens = c.take<int64_t>(B);
    s.nact = c.take<int64_t>(T + 1);
    if (size) *size = c.used;
    return s;
  }

  static WorkspaceSize size(const LstmpDesc& d, Mode mode) {
    WorkspaceSize w;
    if (mode != Mode::kInference) reserve_layout(d, nullptr, &w.reserve);
    scratch_layout(d, mode, nullptr, &w.scratch);
    return w;
  }

  // Rows sorted by decreasing length (team.h); returns the longest length.
  static int64_t sort_rows(const LstmpDesc& d, const int64_t* lengths, Scratch& s) {
    return rnnkit::RNNKIT_NS::sort_rows(d.T, d.B, lengths, s.perm, s.lens, s.nact);
  }

  // How a thread shares the time loop (team.h's Part, with two unit ranges):
  // tiles [a0, a1) of the first product of a step and [b0, b1) of the second,
  // row blocks q with q % qmod == qrem.
  struct Share {
    int64_t a0, a1, b0, b1, qmod, qrem;
    bool sync, idle;
    bool owns(int64_t r) const { return (r / RB) % qmod == qrem; }
  };

  static Share share(const LstmpDesc& d, int64_t na, int64_t nb, int tid, int nth) {
    Share s{0, na, 0, nb, 1, 0, false, false};
    if (nth == 1) return s;
    const int64_t H = d.H, P = d.P;
    const int64_t wbytes = (4 * H * P + P * H) * int64_t(sizeof(Real));
    const int64_t step_fma = d.B * (4 * H * P + P * H);
    if (d.B >= 2 * RB * nth && wbytes <= (256 << 10)) {
      s.qmod = nth;
      s.qrem = tid;
    } else if (step_fma < (1 << 17)) {
      s.idle = tid != 0;
    } else {
      s.a0 = na * tid / nth, s.a1 = na * (tid + 1) / nth;
      s.b0 = nb * tid / nth, s.b1 = nb * (tid + 1) / nth;
      s.sync = true;
    }
    return s;
  }

  static int team(const LstmpDesc& d, int64_t steps) {
    int64_t fma = 0;
    for (int64_t l = 0; l < d.L; ++l)
      fma += d.D * steps * d.B * (4 * d.H * (d.in_size(l) + d.P) + d.P * d.H);
    const int64_t pays = fma >> 20;
    const int want = pays < 1 ? 1 : pays < d.threads ? int(pays) : d.threads;
    return contention().threads(want);
  }

  // Tile u's columns (Tl::TU units of N) of X (rows [0, n), leading dimension
  // ldx) times the packed tile wt (K deep), in depth blocks of KB with partial
  // sums in part; epi(r0, mr, acc) gets each finished register tile.
  template <class Tl, class Epi>
  static RNNKIT_INLINE void product(const Real* wt, const Real* X, int64_t ldx,
                                    int64_t K, int64_t n, const Share& sh, Real* part,
                                    Epi epi) {
    constexpr int64_t MR = Tl::MR, NV = Tl::NV, G = Tl::G, TU = Tl::TU;
    for (int64_t k0 = 0; k0 < K; k0 += KB) {
      const int64_t kn = min64(KB, K - k0);
      const bool first = k0 == 0, last = k0 + kn == K;
      for (int64_t q0 = 0; q0 < n; q0 += RB) {
        if (!sh.owns(q0)) continue;
        const int64_t qe = min64(q0 + RB, n);
        for (int64_t r0 = q0; r0 < qe; r0 += MR) {
          const int64_t mr = min64(MR, qe - r0);
          V acc[MR][NV][G];
          Tl::fused_product_rows(wt + k0 * G * TU, X + k0, ldx, kn, r0, mr, acc);
          if (!first || !last) {
            for (int64_t i = 0; i < mr; ++i)
              for (int64_t v = 0; v < NV; ++v)
                for (int64_t g = 0; g < G; ++g) {
                  Real* pp = part + ((r0 + i) * NV * G + v * G + g) * VL;
                  if (!first) acc[i][v][g] += load(pp);
                  if (!last) store(pp, acc[i][v][g]);
                }
          }
          if (last) epi(r0, mr, acc);
        }
      }
    }
  }

  // [u][k][TU1] = W[k*ld + j] for units j = u*TU1 + e < N (the columns of W).
  static void pack_cols(int64_t N, const Real* W, int64_t ld, int64_t K, Real* wp,
                        int tid, int nth) {
    const int64_t ntiles = tiles_of(N, TU1);
    for (int64_t u = tid; u < ntiles; u += nth) {
      Real* out = wp + u * K * TU1;
      for (int64_t k = 0; k < K; ++k)
        for (int64_t e = 0; e < TU1; ++e) {
          const int64_t j = u * TU1 + e;
          out[k * TU1 + e] = j < N ? W[k * ld + j] : Real(0);
        }
    }
  }

  struct Pass {
    int64_t l, dir, ld, in;
    const Real* const* w;  // W_ih, W_hh, b_ih, b_hh, W_hr
    Real* const* dw;
    const Real* xin;  // (T, B, I_l)
    Real* y;          // (T, B, D*P)
    Real* xp;         // (T, B, 4H)
    Real* aux;        // (T, B, H)
    const Real* dy;   // backward: (T, B, D*P)
    Real* dxin;       // backward: (T, B, I_l)
    // masks of the (layer, dir) in the reserve, or null (the reserve's copies)
    const Real* rec;         // (B, P)
    const uint8_t *zh, *zc;  // (T, B, P), (T, B, H)
    Real* cz;                // zc: (T, B, H) the carried c_t
    void set_masks(const LstmpDesc& d, const Reserve& R) {
      const int64_t TB = d.T * d.B;
      rec = d.rec ? R.rec + ld * d.B * d.P : nullptr;
      zh = d.zh ? R.zh + ld * TB * d.P : nullptr;
      zc = d.zc ? R.zc + ld * TB * d.H : nullptr;
      cz = d.zc ? R.cz + ld * R.as : nullptr;
    }
  };

  // prev where the zoneout mask z (n bytes) keeps a unit, next elsewhere.
  static RNNKIT_INLINE V keep(const uint8_t* z, int64_t n, V prev, V next) {
    typename Vec<Real>::I k = {};
    for (int64_t e = 0; e < n; ++e) k[e] = z[e];
    return k != 0 ? prev : next;
  }

  // dst[i] = a[i] * b[i] for this thread's share of [0, n).
  static void mul_part(Real* dst, const Real* a, const Real* b, int64_t n, int tid,
                       int nth) {
    const int64_t i0 = n * tid / nth, i1 = n * (tid + 1) / nth;
    for (int64_t i = i0; i < i1; ++i) dst[i] = a[i] * b[i];
  }

  struct Call {
    const LstmpDesc& d;
    const LstmpArgs<Real>& a;
    Reserve R;
    Scratch S;
    int64_t smax;
  };

  static RNNKIT_INLINE int64_t time_of(const Scratch& s, int64_t r, int64_t step,
                                       bool rev) {
    return rev ? s.lens[r] - 1 - step : step;
  }

  // ---------------------------------------------------------------- forward
  static void forward(const LstmpDesc& d, const LstmpArgs<Real>& a) {
    const bool train = a.train;
    Call c{d, a, reserve_layout(d, train ? a.reserve : nullptr, nullptr),
           scratch_layout(d, train ? Mode::kTrainForward : Mode::kInference, a.scratch,
                          nullptr),
           0};
    c.smax = sort_rows(d, a.lengths, c.S);
    const Reserve& R = c.R;
    const Scratch& S = c.S;
    const int64_t T = d.T, B = d.B, H = d.H, P = d.P, GH = 4 * H, D = d.D, DP = D * P;
    TeamBarrier bar;
    const int team_n = team(d, c.smax);
    const int64_t t_start = now_ns();
#pragma omp parallel num_threads(team_n)
    {
      DenormalGuard guard;
      const Team tm{&bar, omp_get_thread_num(), omp_get_num_threads()};
      const int tid = tm.tid, nth = tm.nth;
      const Real* x = a.x;
      if (train) {  // private copies: the caller may reuse its arrays
        copy_part(R.x, a.x, T * B * d.I, tid, nth);
        copy_part(R.h0, a.h0, d.L * D * B * P, tid, nth);
        copy_part(R.c0, a.c0, d.L * D * B * H, tid, nth);
        for (int64_t ld = 0; ld < d.L * D; ++ld) {  // the masks, for backward
          if (d.rec) copy_part(R.rec + ld * B * P, a.rec[ld], B * P, tid, nth);
          if (d.zh) copy_part(R.zh + ld * T * B * P, a.zh[ld], T * B * P, tid, nth);
          if (d.zc) copy_part(R.zc + ld * T * B * H, a.zc[ld], T * B * H, tid, nth);
        }
        for (int64_t l = 0; d.drop && l + 1 < d.L; ++l)
          copy_part(R.drop + l * R.ys, a.drop[l], T * B * DP, tid, nth);
        x = R.x;
        tm.sync();
      }
      for (int64_t l = 0; l < d.L; ++l) {
        Pass p{};
        p.l = l;
        p.in = d.in_size(l);
        p.xin = l == 0   ? x
                : !train ? S.yl[(l - 1) & 1]
                : d.drop ? R.xd + (l - 1) * R.ys
                         : R.y + (l - 1) * R.ys;
        p.y = train ? R.y + l * R.ys : l == d.L - 1 ? a.y : S.yl[l & 1];
        for (int64_t dir = 0; dir < D; ++dir) {
          p.dir = dir;
          p.ld = l * D + dir;
          p.set_masks(d, R);
          p.w = a.weights + kLstmpWeights * p.ld;
          p.xp = train ? R.xp + p.ld * R.xs : S.xp;
          p.aux = train ? R.aux + p.ld * R.as : nullptr;
          // XP = x W_ih^T: B(k, j) = W_ih[j*In + k]
          gemm<Real>(T * B, GH, p.in, p.xin, p.in, 1, p.w[0], 1, p.in, p.xp, GH, false,
                     S.pack, tm.bar, tid, nth);
          Tg::pack_rows(H, p.w[1], P, P, 0, P, S.wg, tid, nth);
          T1::pack_rows(P, p.w[4], H, H, 0, H, S.wr, tid, nth);
          if (tid == 0)
            for (int64_t k = 0; k < GH; ++k)
              S.bx[k] = (p.w[2] ? p.w[2][k] : Real(0)) + (p.w[3] ? p.w[3][k] : Real(0));
          for (int64_t r = tid; r < B; r += nth) {
            const int64_t b = S.perm[r];
            for (int64_t t = S.lens[r]; t < T; ++t)
              for (int64_t j = 0; j < P; ++j)
                p.y[(t * B + b) * DP + dir * P + j] = Real(0);
            for (int64_t j = 0; j < P; ++j)
              S.h[0][r * P + j] = a.h0[(p.ld * B + b) * P + j];
            for (int64_t j = 0; j < H; ++j)
              S.c[0][r * H + j] = a.c0[(p.ld * B + b) * H + j];
            if (p.rec)  // h_in = R * h0
              for (int64_t j = 0; j < P; ++j)
                S.hin[r * P + j] = S.h[0][r * P + j] * p.rec[b * P + j];
          }
          tm.sync();
          time_loop_forward(c, p, tm);
          tm.sync();
        }
        if (train && d.drop && l + 1 < d.L) {  // the next layer reads y * mask
          mul_part(R.xd + l * R.ys, R.y + l * R.ys, R.drop + l * R.ys, T * B * DP, tid,
                   nth);
          tm.sync();
        }
      }
      if (train) copy_part(a.y, R.y + (d.L - 1) * R.ys, T * B * DP, tid, nth);
    }
    bar.report(team_n, now_ns() - t_start);
  }

  static void time_loop_forward(const Call& c, const Pass& p, const Team& tm) {
    const LstmpDesc& d = c.d;
    const Scratch& S = c.S;
    const bool train = c.a.train, rev = p.dir == 1;
    const int64_t B = d.B, H = d.H, P = d.P, GH = 4 * H, DP = d.D * P, dir = p.dir;
    const Share sh = share(d, tiles_of(H, TU4), tiles_of(P, TU1), tm.tid, tm.nth);
    if (sh.idle) return;
    Real* part = S.part + int64_t(tm.tid) * S.part_stride;
    Real *hcur = S.h[0], *hnext = S.h[1], *ccur = S.c[0], *cnext = S.c[1];
    Real* m = S.m;
    const Real* bx = S.bx;
    const Real zo = train ? Real(0) : c.a.zoneout;  // inference: zoneout's mean
    const Real* hin = p.rec ? S.hin : nullptr;
    for (int64_t s = 0; s < c.smax; ++s) {
      const int64_t nact = S.nact[s];
      if (s > 0) save_final(c, sh, hcur, ccur, nact, S.nact[s - 1], p.ld);
      // gates, c_t and m_t = o * tanh(c_t) of this thread's units
      for (int64_t u = sh.a0; u < sh.a1; ++u) {
        const Real* wt = S.wg + u * P * 4 * TU4;
        product<Tg>(wt, hin ? hin : hcur, P, P, nact, sh, part,
                    [&](int64_t r0, int64_t mr, V(&acc)[Tg::MR][1][4]) {
                      const int64_t j = u * TU4, n = min64(VL, H - j);
                      for (int64_t i = 0; i < mr; ++i) {
                        const int64_t r = r0 + i, b = S.perm[r],
                                      t = time_of(S, r, s, rev);
                        Real* xp = p.xp + (t * B + b) * GH;
                        V gate[4];
                        for (int g = 0; g < 4; ++g)
                          gate[g] = loadn(xp + g * H + j, n) +
                                    loadn(bx + g * H + j, n) + acc[i][0][g];
                        const V ig = vsigmoid(gate[0]), fg = vsigmoid(gate[1]);
                        const V gg = vtanh(gate[2]), og = vsigmoid(gate[3]);
                        const V cn = fg * loadn(ccur + r * H + j, n) +
                                     ig * gg;                      // c_t = f c + i g
                        storen(m + r * H + j, og * vtanh(cn), n);  // m_t = o tanh c_t
                        V cc = cn;  // the carried c_t: zoneout keeps c_{t-1}
                        if (p.zc)
                          cc = keep(p.zc + (t * B + b) * H + j, n,
                                    loadn(ccur + r * H + j, n), cn);
                        else if (zo != Real(0))
                          cc = zo * loadn(ccur + r * H + j, n) + (Real(1) - zo) * cn;
                        storen(cnext + r * H + j, cc, n);
                        if (p.cz) storen(p.cz + (t * B + b) * H + j, cc, n);
                        if (train) {
                          storen(xp + j, ig, n);
                          storen(xp + H + j, fg, n);
                          storen(xp + 2 * H + j, gg, n);
                          storen(xp + 3 * H + j, og, n);
                          storen(p.aux + (t * B + b) * H + j, cn, n);
                        }
                      }
                    });
      }
      if (sh.sync) tm.sync();
      // h_t = m_t W_hr^T
      for (int64_t u = sh.b0; u < sh.b1; ++u) {
        const Real* wt = S.wr + u * H * TU1;
        product<T1>(
            wt, m, H, H, nact, sh, part,
            [&](int64_t r0, int64_t mr, V(&acc)[T1::MR][T1::NV][1]) {
              for (int64_t i = 0; i < mr; ++i) {
                const int64_t r = r0 + i, b = S.perm[r], t = time_of(S, r, s, rev);
                for (int64_t v = 0; v < T1::NV; ++v) {
                  const int64_t j = u * TU1 + v * VL, n = min64(VL, P - j);
                  if (n <= 0) break;
                  V h = acc[i][v][0];  // zoneout keeps h_{t-1}
                  if (p.zh)
                    h = keep(p.zh + (t * B + b) * P + j, n, loadn(hcur + r * P + j, n),
                             h);
                  else if (zo != Real(0))
                    h = zo * loadn(hcur + r * P + j, n) + (Real(1) - zo) * h;
                  storen(hnext + r * P + j, h, n);
                  storen(p.y + (t * B + b) * DP + dir * P + j, h, n);
                  if (hin)  // the next step's gates read R * h_t
                    storen(S.hin + r * P + j, h * loadn(p.rec + b * P + j, n), n);
                }
              }
            });
      }
      if (sh.sync) tm.sync();
      Real* tmp = hcur;
      hcur = hnext;
      hnext = tmp;
      tmp = ccur;
      ccur = cnext;
      cnext = tmp;
    }
    save_final(c, sh, hcur, ccur, 0, S.nact[c.smax - 1], p.ld);
  }

  // h_n (P units of tiles [b0, b1)) and c_n (H units of tiles [a0, a1)) of
  // sorted rows [r0, r1), which have just finished.
  static void save_final(const Call& c, const Share& sh, const Real* hcur,
                         const Real* ccur, int64_t r0, int64_t r1, int64_t ld) {
    const LstmpDesc& d = c.d;
    const int64_t B = d.B, H = d.H, P = d.P;
    const int64_t hj0 = sh.b0 * TU1, hj1 = min64(sh.b1 * TU1, P);
    const int64_t cj0 = sh.a0 * TU4, cj1 = min64(sh.a1 * TU4, H);
    for (int64_t r = r0; r < r1; ++r) {
      if (!sh.owns(r)) continue;
      const int64_t b = c.S.perm[r];
      for (int64_t j = hj0; j < hj1; ++j)
        c.a.hn[(ld * B + b) * P + j] = hcur[r * P + j];
      for (int64_t j = cj0; j < cj1; ++j)
        c.a.cn[(ld * B + b) * H + j] = ccur[r * H + j];
    }
  }

  // --------------------------------------------------------------- backward
  static void backward(const LstmpDesc& d, const LstmpArgs<Real>& a) {
    Call c{d, a, reserve_layout(d, a.reserve, nullptr),
           scratch_layout(d, Mode::kBackward, a.scratch, nullptr), 0};
    c.smax = sort_rows(d, a.lengths, c.S);
    const Reserve& R = c.R;
    const Scratch& S = c.S;
    const int64_t T = d.T, B = d.B, H = d.H, P = d.P, GH = 4 * H, D = d.D;
    TeamBarrier bar;
    const int team_n = team(d, c.smax);
    const int64_t t_start = now_ns();
#pragma omp parallel num_threads(team_n)
    {
      DenormalGuard guard;
      const Team tm{&bar, omp_get_thread_num(), omp_get_num_threads()};
      const int tid = tm.tid, nth = tm.nth;
      for (int64_t l = d.L - 1; l >= 0; --l) {
        Pass p{};
        p.l = l;
        p.in = d.in_size(l);
        p.dy = l == d.L - 1 ? a.dy : S.dyl[l & 1];
        p.dxin = l == 0 ? a.dx : S.dyl[(l - 1) & 1];
        p.xin = l == 0 ? R.x : d.drop ? R.xd + (l - 1) * R.ys : R.y + (l - 1) * R.ys;
        p.y = R.y + l * R.ys;
        if (d.drop && l + 1 < d.L) {  // through the dropout on this layer's output
          Real* dyl = S.dyl[l & 1];
          mul_part(dyl, dyl, R.drop + l * R.ys, T * B * D * P, tid, nth);
          tm.sync();
        }
        for (int64_t dir = 0; dir < D; ++dir) {
          p.dir = dir;
          p.ld = l * D + dir;
          p.set_masks(d, R);
          p.w = a.weights + kLstmpWeights * p.ld;
          p.dw = a.dweights + kLstmpWeights * p.ld;
          p.xp = R.xp + p.ld * R.xs;
          p.aux = R.aux + p.ld * R.as;
          pack_cols(P, p.w[1], P, GH, S.wg, tid, nth);  // dh = dG W_hh
          pack_cols(H, p.w[4], H, P, S.wr, tid, nth);   // dm = dh W_hr
          for (int64_t r = tid; r < B; r += nth) {      // sorted h0 for dW_hh
            const int64_t b = S.perm[r];
            for (int64_t j = 0; j < P; ++j)
              S.h[0][r * P + j] =
                  R.h0[(p.ld * B + b) * P + j] * (p.rec ? p.rec[b * P + j] : Real(1));
          }
          tm.sync();
          const Real* dg0 = time_loop_backward(c, p, tm);
          // padded steps must not reach the weight gradients
          for (int64_t r = tid; r < B; r += nth) {
            const int64_t b = S.perm[r];
            for (int64_t t = S.lens[r]; t < T; ++t) {
              const int64_t tb = t * B + b;
              for (int64_t k = 0; k < GH; ++k) p.xp[tb * GH + k] = Real(0);
              for (int64_t j = 0; j < H; ++j) p.aux[tb * H + j] = Real(0);
              for (int64_t j = 0; j < P; ++j) S.dH[tb * P + j] = Real(0);
            }
          }
          tm.sync();
          weight_gradients(c, p, dg0, tm);
        }
      }
    }
    bar.report(team_n, now_ns() - t_start);
  }

  // Returns the compact dG of step 0.
  static Real* time_loop_backward(const Call& c, const Pass& p, const Team& tm) {
    const LstmpDesc& d = c.d;
    const LstmpArgs<Real>& a = c.a;
    const Reserve& R = c.R;
    const Scratch& S = c.S;
    const bool rev = p.dir == 1;
    const int64_t B = d.B, H = d.H, P = d.P, GH = 4 * H, DP = d.D * P, dir = p.dir;
    const int64_t ld = p.ld, smax = c.smax;
    // first product: P units (dh), second: H units (dm and the pointwise step)
    const Share sh = share(d, tiles_of(P, TU1), tiles_of(H, TU1), tm.tid, tm.nth);
    Real* part = S.part + int64_t(tm.tid) * S.part_stride;
    Real *dgprev = S.dg[0], *dgcur = S.dg[1];
    Real* dhc = S.dhc;
    Real* dc = S.dc;
    const int64_t pj0 = sh.a0 * TU1, pj1 = min64(sh.a1 * TU1, P);
    const int64_t hj0 = sh.b0 * TU1, hj1 = min64(sh.b1 * TU1, H);
    // step = smax-1 .. 0, then step -1, which only forms dh0 and dc0. Rows
    // [0, nprev) ran step+1 and get dh through the recurrence; rows
    // [nprev, nact) end at this step and start from dh_n and dc_n.
    for (int64_t step = smax - 1; step >= -1; --step) {
      const int64_t nact = step >= 0 ? S.nact[step] : B;
      const int64_t nprev = step + 1 < smax ? S.nact[step + 1] : 0;
      if (!sh.idle) {
        // dh_t = dy_t + dG_{t+1} W_hh   (h_{t+1} gates read h_t through W_hh)
        // With masks: h_in = R * h_t, and zoneout's h_{t+1} = h_t where z_{t+1}.
        auto finish_dh = [&](int64_t r, int64_t j, int64_t n, V dh, bool carried) {
          const int64_t b = S.perm[r];
          if (carried) {
            if (p.rec) dh *= loadn(p.rec + b * P + j, n);
            if (p.zh) {
              const int64_t tn = time_of(S, r, step + 1, rev) * B + b;
              dh += keep(p.zh + tn * P + j, n, loadn(dhc + r * P + j, n), V{});
            }
          }
          if (step < 0) {
            storen(a.dh0 + (ld * B + b) * P + j, dh, n);
            return;
          }
          const int64_t tb = time_of(S, r, step, rev) * B + b;
          dh += loadn(p.dy + tb * DP + dir * P + j, n);
          storen(dhc + r * P + j, dh, n);
          V dz = dh;  // dL/dh~_t: zoned-out units take no gradient from h_t
          if (p.zh) {
            dz = keep(p.zh + tb * P + j, n, V{}, dh);
            storen(S.dhz + r * P + j, dz, n);
          }
          storen(S.dH + tb * P + j, dz, n);
        };
        for (int64_t u = sh.a0; u < sh.a1; ++u) {
          const Real* wt = S.wg + u * GH * TU1;
          if (nprev > 0)
            product<T1>(wt, dgprev, GH, GH, nprev, sh, part,
                        [&](int64_t r0, int64_t mr, V(&acc)[T1::MR][T1::NV][1]) {
                          for (int64_t i = 0; i < mr; ++i)
                            for (int64_t v = 0; v < T1::NV; ++v) {
                              const int64_t j = u * TU1 + v * VL, n = min64(VL, P - j);
                              if (n <= 0) break;
                              finish_dh(r0 + i, j, n, acc[i][v][0], true);
                            }
                        });
        }
        for (int64_t r = nprev; r < nact; ++r) {  // rows whose last step this is
          if (!sh.owns(r)) continue;
          const int64_t b = S.perm[r];
          for (int64_t j = pj0; j < pj1; j += VL) {
            const int64_t n = min64(VL, pj1 - j);
            finish_dh(r, j, n, loadn(a.dhn + (ld * B + b) * P + j, n), false);
          }
          for (int64_t j = hj0; j < hj1; j += VL) {
            const int64_t n = min64(VL, hj1 - j);
            storen(dc + r * H + j, loadn(a.dcn + (ld * B + b) * H + j, n), n);
          }
        }
      }
      if (sh.sync) tm.sync();
      if (step < 0) {  // dc0
        if (!sh.idle)
          for (int64_t r = 0; r < B; ++r) {
            if (!sh.owns(r)) continue;
            const int64_t b = S.perm[r];
            for (int64_t j = hj0; j < hj1; ++j)
              a.dc0[(ld * B + b) * H + j] = dc[r * H + j];
          }
        break;
      }
      if (!sh.idle) {
        // dm_t = dh_t W_hr, then the LSTM step backward of this thread's units
        for (int64_t u = sh.b0; u < sh.b1; ++u) {
          const Real* wt = S.wr + u * P * TU1;
          product<T1>(
              wt, p.zh ? S.dhz : dhc, P, P, nact, sh, part,
              [&](int64_t r0, int64_t mr, V(&acc)[T1::MR][T1::NV][1]) {
                for (int64_t i = 0; i < mr; ++i) {
                  const int64_t r = r0 + i, b = S.perm[r];
                  const int64_t t = time_of(S, r, step, rev), tb = t * B + b;
                  const int64_t tp = rev ? t + 1 : t - 1;
                  Real* xp = p.xp + tb * GH;
                  Real* ct = p.aux + tb * H;
                  const Real* cp = step == 0 ? R.c0 + (ld * B + b) * H
                                   : p.cz    ? p.cz + (tp * B + b) * H
                                             : p.aux + (tp * B + b) * H;
                  const uint8_t* zc = p.zc ? p.zc + tb * H : nullptr;
                  for (int64_t v = 0; v < T1::NV; ++v) {
                    const int64_t j = u * TU1 + v * VL, n = min64(VL, H - j);
                    if (n <= 0) break;
                    const V dm = acc[i][v][0];
                    const V ig = loadn(xp + j, n), fg = loadn(xp + H + j, n);
                    const V gg = loadn(xp + 2 * H + j, n),
                            og = loadn(xp + 3 * H + j, n);
                    const V tc = vtanh(loadn(ct + j, n));
                    // m_t = o * tanh(c_t)
                    const V dout = dm * tc;
                    // zoneout: c_t = c_{t-1} where z, else c~_t
                    const V dcin = loadn(dc + r * H + j, n);
                    const V dcz = zc ? keep(zc + j, n, V{}, dcin) : dcin;
                    const V dct = dcz + dm * og * (Real(1) - tc * tc);
                    // c~_t = f * c_{t-1} + i * g
                    const V di = dct * gg, dgg = dct * ig, df = dct * loadn(cp + j, n);
                    V dcp = dct * fg;
                    if (zc) dcp += keep(zc + j, n, dcin, V{});
                    storen(dc + r * H + j, dcp, n);
                    const V dpre[4] = {
                        di * ig * (Real(1) - ig), df * fg * (Real(1) - fg),
                        dgg * (Real(1) - gg * gg), dout * og * (Real(1) - og)};
                    for (int k = 0; k < 4; ++k) {
                      storen(xp + k * H + j, dpre[k], n);
                      storen(dgcur + r * GH + k * H + j, dpre[k], n);
                    }
                    storen(ct + j, og * tc, n);  // c_t is done: keep m_t for dW_hr
                  }
                }
              });
        }
      }
      if (sh.sync) tm.sync();
      Real* tmp = dgprev;
      dgprev = dgcur;
      dgcur = tmp;
    }
    return dgprev;
  }

  // Every large product of one (layer, dir) at once: p.xp holds dG of all
  // steps, p.aux m_t, S.dH dL/dh_t; dg0 is the compact dG of step 0.
  static void weight_gradients(const Call& c, const Pass& p, const Real* dg0,
                               const Team& tm) {
    const LstmpDesc& d = c.d;
    const Scratch& S = c.S;
    const int64_t T = d.T, B = d.B, H = d.H, P = d.P, GH = 4 * H, DP = d.D * P;
    const int64_t TB = T * B, In = p.in, dir = p.dir;
    const int tid = tm.tid, nth = tm.nth;
    TeamBarrier* bar = tm.bar;
    const Real* dgx = p.xp;
    const Real* const* w = p.w;
    Real* const* dw = p.dw;
    // dx_in (+)= dG W_ih (both directions add into one input gradient)
    gemm<Real>(TB, In, GH, dgx, GH, 1, w[0], In, 1, p.dxin, In, dir > 0, S.pack, bar,
               tid, nth);
    // dW_ih += dG^T x_in
    gemm<Real>(GH, In, TB, dgx, 1, GH, p.xin, In, 1, dw[0], In, true, S.pack, bar, tid,
               nth);
    // dW_hh += dG^T h_prev: h_prev of step t is y_{t-1} (reverse: y_{t+1}), zero
    // past a row's end; the first step's h0 term from dg0 and the sorted h0
    // With recurrent dropout the gates read h_in = R * h_prev: S.hin (T, B, P).
    const Real* hsrc = p.y + dir * P;
    int64_t ldh = DP;
    if (p.rec) {
      for (int64_t tb = TB * tid / nth; tb < TB * (tid + 1) / nth; ++tb)
        for (int64_t j = 0; j < P; ++j)
          S.hin[tb * P + j] = hsrc[tb * DP + j] * p.rec[(tb % B) * P + j];
      tm.sync();
      hsrc = S.hin;
      ldh = P;
    }
    const int64_t K = (T - 1) * B;
    const Real* dgx_t = dir == 0 ? dgx + B * GH : dgx;
    const Real* y_t = dir == 0 ? hsrc : hsrc + B * ldh;
    gemm<Real>(GH, P, K, dgx_t, 1, GH, y_t, ldh, 1, dw[1], P, true, S.pack, bar, tid,
               nth);
    gemm<Real>(GH, P, B, dg0, 1, GH, S.h[0], P, 1, dw[1], P, true, S.pack, bar, tid,
               nth);
    // dW_hr += dH^T m   (h_t = W_hr m_t)
    gemm<Real>(P, H, TB, S.dH, 1, P, p.aux, H, 1, dw[4], H, true, S.pack, bar, tid,
               nth);
    // biases: column sums over all steps, columns split across threads
    if (dw[2] || dw[3]) {
      const int64_t c0 = GH * tid / nth, c1 = GH * (tid + 1) / nth;
      for (int64_t r = 0; r < TB; ++r) {
        const Real* g = dgx + r * GH;
        for (int64_t k = c0; k < c1; ++k) {
          if (dw[2]) dw[2][k] += g[k];
          if (dw[3]) dw[3][k] += g[k];
        }
      }
    }
    tm.sync();
  }
};

}  // namespace

template <class Real>
WorkspaceSize lstmp_workspace_size(const LstmpDesc& d, Mode mode) {
  return Lstmp<Real>::size(d, mode);
}
template <class Real>
void lstmp_forward(const LstmpDesc& d, const LstmpArgs<Real>& a) {
  Lstmp<Real>::forward(d, a);
}
template <class Real>
void lstmp_backward(const LstmpDesc& d, const LstmpArgs<Real>& a) {
  Lstmp<Real>::backward(d, a);
}

template WorkspaceSize lstmp_workspace_size<float>(const LstmpDesc&, Mode);
template WorkspaceSize lstmp_workspace_size<double>(const LstmpDesc&, Mode);
template void lstmp_forward<float>(const LstmpDesc&, const LstmpArgs<float>&);
template void lstmp_forward<double>(const LstmpDesc&, const LstmpArgs<double>&);
template void lstmp_backward<float>(const LstmpDesc&, const LstmpArgs<float>&);
template void lstmp_backward<double>(const LstmpDesc&, const LstmpArgs<double>&);

}  // namespace RNNKIT_NS
}  // namespace rnnkit
