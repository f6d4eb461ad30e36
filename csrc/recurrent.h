// recurrent.h: the driver shared by the cells over whole sequences: layers,
// directions, variable lengths, the workspace, the time loop with the fused
// recurrent product, and backpropagation through time. A cell (csrc/<cell>.cpp)
// supplies only its pointwise steps, applied to one row and one vector of
// hidden units (the contract is in cell.h):
//
//   Cell::forward<kTrain, kAct>(acc, FwdRow, j, n)  acc[g] = (W_hh h)[g*H + j ..]
//   Cell::backward<kAct>(dh, BwdRow, j, n)          dh = dL/dh_t for units j..j+n
//
// Layout (time-major inside, PyTorch's weights): XP (T, B, G*H) holds x W_ih^T
// for all steps, one GEMM per layer and direction. In training, the fused step
// overwrites XP with the gate activations, which backward overwrites with the
// gate gradients dG, so the weight gradients are one GEMM over all steps.
//
// Variable lengths: rows are sorted by decreasing length (a stable counting
// sort), so the rows still running at step s are a prefix 0..nact[s]; padded
// steps cost nothing in the recurrence. Step s of a row of length len touches
// time s (forward) or len-1-s (reverse), so the reverse direction starts at
// each sequence's own last step. Outputs at padded steps are zero; h_n is the
// state after each row's own last step.
//
// Threads (team.h): one parallel region per call, threads own disjoint tiles
// of hidden units (and the matching slice of the packed W_hh, which stays in
// their cache), one barrier per step. Every output element is computed by one
// thread in a fixed order: results do not depend on the thread count.
#pragma once

#include <omp.h>

#include "cell.h"
#include "common.h"
#include "direct.h"
#include "gemm.h"
#include "simd/vec.h"
#include "team.h"
#include "tiles.h"

namespace rnnkit {
namespace RNNKIT_NS {

inline int64_t round16(int64_t n) { return (n + 15) & ~int64_t(15); }

// The two buffers of a call, carved (Carver) the same way for the size query
// and for the kernel.
template <class Real, class Cell>
struct Workspace {
  using Tl = Tiles<Real, Cell>;
  static constexpr int64_t G = Cell::G;

  // reserve: what a training forward keeps for backward.
  struct Reserve {
    Real *x, *h0, *c0;
    Real* y;    // per layer (T, B, D*H), stride ys
    Real* xp;   // per (layer, dir) (T, B, G*H), stride xs
    Real* aux;  // per (layer, dir) (T, B, H): LSTM c_t, GRU hn; stride as
    int64_t ys, xs, as;
    // layer options (issue 12), empty when off:
    Real* hs;  // recurrent dropout: per (layer, dir) (T, B, H) R * h_t, for dW_hh
    Real* ct;  // LSTM zoneout: per (layer, dir) (T, B, H) c~_t before zoneout
    Real* ym;  // dropout: per layer < L-1 (T, B, D*H) the masked output
    int64_t hss, cts, yms;
  };
  // scratch: free between calls.
  struct Scratch {
    Real* pack;         // GEMM panels
    Real* wp;           // packed W_hh of the current (layer, dir)
    Real *bx, *bhn;     // combined biases of the current (layer, dir)
    Real *h[2], *c[2];  // compact states, ping-pong; backward: h[0] = sorted h0
    Real *dg[2], *dc, *dhd;
    Real* part;    // per thread (B, NV, G, VL): sums between depth blocks
    Real* xp;      // inference: XP of the current (layer, dir)
    Real* yl[2];   // inference: outputs of the lower layers, ping-pong
    Real* dyl[2];  // backward: dL/dY of the lower layers, ping-pong
    int64_t *perm, *lens, *nact;
    Real* bsum;    // backward: bias gradient sums, G*H (input side) then H (kSplitN)
    Real* bpart;   // backward: per thread (B, TUB), dG W_hh between depth blocks
    Real* hin[2];  // recurrent dropout, forward: R * h, ping-pong (the product's h)
  };

  static Reserve reserve_layout(const RnnDesc& d, char* base, size_t* size) {
    Carver c(base);
    Reserve r;
    const int64_t TB = d.T * d.B, LD = d.L * d.D;
    r.x = c.take<Real>(TB * d.I);
    r.h0 = c.take<Real>(LD * d.B * d.H);
    r.c0 = c.take<Real>(Cell::kHasC ? LD * d.B * d.H : 0);
    r.ys = round16(TB * d.D * d.H);
    r.y = c.take<Real>(r.ys * d.L);
    r.xs = round16(TB * G * d.H);
    r.xp = c.take<Real>(r.xs * LD);
    r.as = G > 1 ? round16(TB * d.H) : 0;
    r.aux = c.take<Real>(r.as * LD);
    r.hss = d.rdrop ? round16(TB * d.H) : 0;
    r.hs = c.take<Real>(r.hss * LD);
    r.cts = Cell::kHasC && d.zone ? round16(TB * d.H) : 0;
    r.ct = c.take<Real>(r.cts * LD);
    r.yms = d.drop ? round16(TB * d.D * d.H) : 0;
    r.ym = c.take<Real>(r.yms * (d.L - 1));
    if (size) *size = c.used;
    return r;
  }

  static Scratch scratch_layout(const RnnDesc& d, Mode mode, char* base, size_t* size) {
    constexpr int64_t TU = Tl::TU, TUB = Tl::TUB;
    Carver c(base);
    Scratch s;
    const int64_t B = d.B, H = d.H, GH = G * d.H;
    const int64_t Hp = (H + TU - 1) / TU * TU, Hpb = (H + TUB - 1) / TUB * TUB;
    s.pack = c.take<Real>(gemm_pack_size<Real>(d.threads));
    s.wp = c.take<Real>((Hp > Hpb ? Hp : Hpb) * G * H);
    s.bx = c.take<Real>(GH);
    s.bhn = c.take<Real>(H);
    for (int i = 0; i < 2; ++i) s.h[i] = c.take<Real>(B * H);
    for (int i = 0; i < 2; ++i) s.c[i] = c.take<Real>(Cell::kHasC ? B * H : 0);
    const bool bwd = mode == Mode::kBackward;
    for (int i = 0; i < 2; ++i) s.dg[i] = c.take<Real>(bwd ? B * dg_ld(d) : 0);
    s.dc = c.take<Real>(bwd ? B * H : 0);
    s.dhd = c.take<Real>(bwd ? B * H : 0);
    const bool inf = mode == Mode::kInference;
    s.part = c.take<Real>(bwd ? 0 : int64_t(d.threads) * B * G * TU);
    s.xp = c.take<Real>(inf ? d.T * B * GH : 0);
    for (int i = 0; i < 2; ++i)
      s.yl[i] = c.take<Real>(inf && d.L > 1 ? d.T * B * d.D * H : 0);
    for (int i = 0; i < 2; ++i)
      s.dyl[i] = c.take<Real>(bwd && d.L > 1 ? d.T * B * d.D * H : 0);
    s.perm = c.take<int64_t>(B);
    s.lens = c.take<int64_t>(B);
    s.nact = c.take<int64_t>(d.T + 1);
    s.bsum = c.take<Real>(bwd ? G * H + H : 0);
    s.bpart = c.take<Real>(bwd ? int64_t(d.threads) * B * TUB : 0);
    for (int i = 0; i < 2; ++i) s.hin[i] = c.take<Real>(d.rdrop && !bwd ? B * H : 0);
    if (size) *size = c.used;
    return s;
  }

  // Row stride of the compact dG rows of backward: G*H plus a cache line, so
  // the rows of one tile (read together by the recurrent product) do not all
  // map to one L1 set when G*H is a multiple of 4 KiB.
  static int64_t dg_ld(const RnnDesc& d) {
    return round16(G * d.H) + 64 / int64_t(sizeof(Real));
  }

  static WorkspaceSize size(const RnnDesc& d, Mode mode) {
    WorkspaceSize w;
    if (mode != Mode::kInference) reserve_layout(d, nullptr, &w.reserve);
    scratch_layout(d, mode, nullptr, &w.scratch);
    return w;
  }

  // Rows sorted by decreasing length (team.h); returns the longest length.
  static int64_t sort_rows(const RnnDesc& d, const int64_t* lengths, Scratch& s) {
    return rnnkit::RNNKIT_NS::sort_rows(d.T, d.B, lengths, s.perm, s.lens, s.nact);
  }
};

// One (layer, direction) of a call: its weights, where it reads its input and
// writes its output, and its slices of the reserve. Built by every thread of
// the team alike.
template <class Real>
struct LayerPass {
  int64_t l, dir, ld;    // layer, direction (1: reverse), l * D + dir
  int64_t in;            // I_l, the width of the layer's input
  const Real* const* w;  // W_ih, W_hh, b_ih, b_hh
  Real* const* dw;       // backward: their gradients (added into)
  const Real* xin;       // (T, B, I_l) the layer's input
  Real* y;               // (T, B, D*H) the layer's output (read by backward)
  Real* xp;              // (T, B, G*H) x W_ih^T -> activations -> dG
  Real* aux;             // (T, B, H) LSTM c_t, GRU hn (train and backward)
  const Real* dy;        // backward: (T, B, D*H) dL/dy of the layer
  Real* dxin;            // backward: (T, B, I_l) dL/dx_in (direction 1 adds)
  // layer options (issue 12), null when off; masks in real time, row b
  const Real* rm;     // (B, H) recurrent dropout multipliers
  const uint8_t* zh;  // (T, B, H) zoneout flags of h (training)
  const uint8_t* zc;  // (T, B, H) zoneout flags of c (training, LSTM)
  const Real* dm;     // (T, B, D*H) dropout multipliers on this layer's output
  Real* hs;           // reserve: (T, B, H) R * h_t (training)
  Real* ct;           // reserve: (T, B, H) LSTM c~_t (training with zoneout)
  Real* ym;           // reserve: (T, B, D*H) dm * y (training, layers < L-1)
  Real zp;            // inference: the zoneout rate
  bool rev() const { return dir == 1; }
};

template <class Real, class Cell, Act kAct>
struct Recurrent {
  using V = vec_t<Real>;
  using Tl = Tiles<Real, Cell>;
  using Ws = Workspace<Real, Cell>;
  using Reserve = typename Ws::Reserve;
  using Scratch = typename Ws::Scratch;
  using Pass = LayerPass<Real>;
  static constexpr int64_t VL = Tl::VL, G = Cell::G;
  static constexpr int64_t MR = Tl::MR, NV = Tl::NV, TU = Tl::TU, KB = Tl::KB;
  static constexpr int64_t MRB = Tl::MRB, NVB = Tl::NVB, TUB = Tl::TUB;

  // What every thread of one call shares.
  struct Call {
    const RnnDesc& d;
    const RnnArgs<Real>& a;
    Reserve R;
    Scratch S;
    int64_t smax;  // the longest row: steps of the time loop
  };

  static RNNKIT_INLINE int64_t time_of(const Scratch& s, int64_t r, int64_t step,
                                       bool rev) {
    return rev ? s.lens[r] - 1 - step : step;
  }

  // ------------------------------------------------------------------ forward
  static void forward(const RnnDesc& d, const RnnArgs<Real>& a) {
    const bool train = a.train;
    const Mode mode = train ? Mode::kTrainForward : Mode::kInference;
    Call c{d, a, Ws::reserve_layout(d, train ? a.reserve : nullptr, nullptr),
           Ws::scratch_layout(d, mode, a.scratch, nullptr), 0};
    const Reserve& R = c.R;
    const Scratch& S = c.S;
    c.smax = Ws::sort_rows(d, a.lengths, c.S);
    const int64_t T = d.T, B = d.B, H = d.H, GH = G * H, D = d.D, DH = D * H;
    const bool direct = use_direct(d, c.smax);
    TeamBarrier bar;
    const int team_n =
        direct ? team_size(d, G, c.smax, kDirectFmaPerThread) : team_size(d, G, c.smax);
    const int64_t t_start = now_ns();
#pragma omp parallel num_threads(team_n)
    {
      DenormalGuard guard;
      const Team team{&bar, omp_get_thread_num(), omp_get_num_threads()};
      const int tid = team.tid, nth = team.nth;
      const Real* x = a.x;
      if (train) {  // keep private copies: the caller may reuse its arrays
        copy_part(R.x, a.x, T * B * d.I, tid, nth);
        copy_part(R.h0, a.h0, d.L * D * B * H, tid, nth);
        if (Cell::kHasC) copy_part(R.c0, a.c0, d.L * D * B * H, tid, nth);
        x = R.x;
        team.sync();
      }
      for (int64_t l = 0; l < d.L; ++l) {
        Pass p{};
        p.l = l;
        p.in = d.in_size(l);
        p.xin = l == 0 ? x : train ? layer_output(R, l - 1) : S.yl[(l - 1) & 1];
        p.y = train ? R.y + l * R.ys : l == d.L - 1 ? a.y : S.yl[l & 1];
        const bool dropped = train && a.drop_mask && l < d.L - 1;
        p.dm = dropped ? a.drop_mask[l] : nullptr;
        p.ym = dropped ? R.ym + l * R.yms : nullptr;
        p.zp = train ? Real(0) : Real(d.zoneout);
        for (int64_t dir = 0; dir < D; ++dir) {
          p.dir = dir;
          p.ld = l * D + dir;
          p.w = a.weights + 4 * p.ld;
          p.xp = train ? R.xp + p.ld * R.xs : S.xp;
          p.aux = train ? R.aux + p.ld * R.as : nullptr;
          set_options(c, p);
          if (!direct) {
            // XP = x W_ih^T: B(k, j) = W_ih[j*In + k].
            gemm<Real>(T * B, GH, p.in, p.xin, p.in, 1, p.w[0], 1, p.in, p.xp, GH,
                       false, S.pack, team.bar, tid, nth);
            Tl::pack_forward(d, p.w[1], S.wp, tid, nth);
          }
          if (tid == 0) Tl::combine_bias(d, p.w[2], p.w[3], S.bx, S.bhn);
          for (int64_t r = tid; r < B; r += nth) {
            const int64_t b = S.perm[r];
            for (int64_t t = S.lens[r]; t < T; ++t)
              for (int64_t j = 0; j < H; ++j) {
                p.y[(t * B + b) * DH + dir * H + j] = Real(0);
                if (p.ym) p.ym[(t * B + b) * DH + dir * H + j] = Real(0);
                if (train && p.rm) p.hs[(t * B + b) * H + j] = Real(0);
              }
            for (int64_t j = 0; j < H; ++j) {
              S.h[0][r * H + j] = a.h0[(p.ld * B + b) * H + j];
              if (Cell::kHasC) S.c[0][r * H + j] = a.c0[(p.ld * B + b) * H + j];
              if (p.rm) S.hin[0][r * H + j] = S.h[0][r * H + j] * p.rm[b * H + j];
            }
          }
          team.sync();
          if (direct)
            time_loop_direct(c, p, team);
          else
            time_loop_forward(c, p, team);
          team.sync();
        }
      }
      if (train) copy_part(a.y, R.y + (d.L - 1) * R.ys, T * B * DH, tid, nth);
    }
    bar.report(team_n, now_ns() - t_start);
  }

  // Layer l's output as the next layer reads it: masked by dropout or not.
  static RNNKIT_INLINE Real* layer_output(const Reserve& R, int64_t l) {
    return R.yms ? R.ym + l * R.yms : R.y + l * R.ys;
  }

  // The per-(layer, direction) option pointers of p (masks and reserve).
  static void set_options(const Call& c, Pass& p) {
    const RnnArgs<Real>& a = c.a;
    const int64_t ld = p.ld;
    p.rm = a.rec_mask ? a.rec_mask[ld] : nullptr;
    p.zh = a.zone_h ? a.zone_h[ld] : nullptr;
    p.zc = Cell::kHasC && a.zone_c ? a.zone_c[ld] : nullptr;
    p.hs = c.R.hs && c.R.hss ? c.R.hs + ld * c.R.hss : nullptr;
    p.ct = c.R.ct && c.R.cts ? c.R.ct + ld * c.R.cts : nullptr;
  }

  // The options' pointers of one forward row: sorted row r (batch row b) at
  // time t; hin the compact R * h buffer the step writes.
  static RNNKIT_INLINE void row_options(const Pass& p, FwdRow<Real>& row, int64_t B,
                                        int64_t DH, int64_t t, int64_t b, int64_t r,
                                        Real* hin, bool train) {
    const int64_t H = row.H, tb = t * B + b;
    if (p.rm) {
      row.rmask = p.rm + b * H;
      row.hin = hin + r * H;
      row.hinstore = train ? p.hs + tb * H : nullptr;
    }
    if (p.zh) row.zh = p.zh + tb * H;
    if (p.zc) row.zc = p.zc + tb * H;
    if (p.ct) row.ctstore = p.ct + tb * H;
    if (p.ym) {
      row.dmask = p.dm + tb * DH + p.dir * H;
      row.ym = p.ym + tb * DH + p.dir * H;
    }
  }

  // Fetch the line of p into L2 (not L1: the tile's weights live there).
  static RNNKIT_INLINE void prefetch_l2(const Real* p) { __builtin_prefetch(p, 0, 2); }

  // The lines the cell step of rows [r0, r0 + mr) reads and writes in tile u
  // at step s (their XP gates, the reserve's aux, y): a step's rows are T x B
  // apart in arrays far larger than the caches, and the hardware prefetcher
  // does not follow them; fetched before the tile's product, they arrive
  // while it runs (it lasts ~1000 cycles).
  static RNNKIT_INLINE void prefetch_rows_forward(const Pass& p, const Scratch& S,
                                                  int64_t B, int64_t H, int64_t DH,
                                                  int64_t u, int64_t r0, int64_t mr,
                                                  int64_t s, bool rev, bool train) {
    const int64_t GH = G * H;
    for (int64_t i = 0; i < mr; ++i) {
      const int64_t r = r0 + i, tb = time_of(S, r, s, rev) * B + S.perm[r];
      for (int64_t v = 0; v < NV; ++v) {
        const int64_t j = u * TU + v * VL;
        if (j >= H) break;
        for (int64_t g = 0; g < G; ++g) prefetch_l2(p.xp + tb * GH + g * H + j);
        if (train) prefetch_l2(p.aux + tb * H + j);
        prefetch_l2(p.y + tb * DH + p.dir * H + j);
      }
    }
  }

  static void time_loop_forward(const Call& c, const Pass& p, const Team& team) {
    const RnnDesc& d = c.d;
    const RnnArgs<Real>& a = c.a;
    const Scratch& S = c.S;
    const bool train = a.train, rev = p.rev();
    const int64_t B = d.B, H = d.H, GH = G * H, DH = d.D * H, dir = p.dir;
    const int tid = team.tid, nth = team.nth;
    const Part P = partition<Real>(d, G, TU, MR, tid, nth);
    if (P.idle) return;
    Real* part = S.part + int64_t(tid) * B * G * TU;
    Real *hcur = S.h[0], *hnext = S.h[1], *ccur = S.c[0], *cnext = S.c[1];
    Real *hincur = S.hin[0], *hinnext = S.hin[1];  // recurrent dropout: R * h
    FwdRow<Real> row;
    row.bx = S.bx;
    row.bhn = S.bhn;
    row.H = H;
    row.cstore = row.hnstore = nullptr;
    row.zp = p.zp;
    for (int64_t s = 0; s < c.smax; ++s) {
      const int64_t nact = S.nact[s];
      if (s > 0) save_final(c, P, hcur, ccur, nact, S.nact[s - 1], p.ld);
      for (int64_t u = P.u0; u < P.u1; ++u) {
        const Real* w = S.wp + u * H * G * TU;
        for (int64_t k0 = 0; k0 < H; k0 += KB) {
          const int64_t kn = min64(KB, H - k0);
          const bool first = k0 == 0, last = k0 + kn == H;
          for (int64_t r0 = 0; r0 < nact; r0 += MR) {
            if (!P.owns(r0)) continue;
            const int64_t mr = min64(MR, nact - r0);
            V acc[MR][NV][G];
            const Real* hsrc = p.rm ? hincur : hcur;  // the product's h_{t-1}
            if (last) prefetch_rows_forward(p, S, B, H, DH, u, r0, mr, s, rev, train);
            Tl::fused_product_rows(w + k0 * G * TU, hsrc + k0, H, kn, r0, mr, acc);
            if (!first || !last) {  // carry partial sums across depth blocks
              for (int64_t i = 0; i < mr; ++i)
                for (int64_t v = 0; v < NV; ++v)
                  for (int64_t g = 0; g < G; ++g) {
                    Real* pp = part + ((r0 + i) * NV * G + v * G + g) * VL;
                    if (!first) acc[i][v][g] += load(pp);
                    if (!last) store(pp, acc[i][v][g]);
                  }
            }
            if (!last) continue;
            for (int64_t i = 0; i < mr; ++i) {
              const int64_t r = r0 + i, b = S.perm[r], t = time_of(S, r, s, rev);
              row.xp = p.xp + (t * B + b) * GH;
              row.hprev = hcur + r * H;
              row.cprev = ccur + r * H;
              row.hnext = hnext + r * H;
              row.cnext = cnext + r * H;
              row.y = p.y + (t * B + b) * DH + dir * H;
              if (train) row.cstore = row.hnstore = p.aux + (t * B + b) * H;
              row_options(p, row, B, DH, t, b, r, hinnext, train);
              for (int64_t v = 0; v < NV; ++v) {
                const int64_t j = u * TU + v * VL, n = min64(VL, H - j);
                if (n <= 0) break;
                if (train)
                  Cell::template forward<true, kAct>(acc[i][v], row, j, n);
                else
                  Cell::template forward<false, kAct>(acc[i][v], row, j, n);
              }
            }
          }
        }
      }
      if (P.sync) team.sync();
      Real* tmp = hcur;
      hcur = hnext;
      hnext = tmp;
      tmp = ccur;
      ccur = cnext;
      cnext = tmp;
      tmp = hincur;
      hincur = hinnext;
      hinnext = tmp;
    }
    save_final(c, P, hcur, ccur, 0, S.nact[c.smax - 1], p.ld);
  }

  // Calls of a few steps of a few rows (direct.h): packing the weights would
  // cost more than the steps. Rows times steps, so that forward(T=1) and a
  // short decoder chunk take this path and a batch of sequences does not.
  static constexpr int64_t kDirectRowSteps = 8;
  static constexpr int64_t kDirectFmaPerThread = int64_t(1) << 18;
  static bool use_direct(const RnnDesc& d, int64_t smax) {
    return d.B * smax <= kDirectRowSteps;
  }

  // The direct time loop: thread tid owns tiles [u0, u1) of units, computes
  // their columns of XP for every (t, b) from the unpacked W_ih, then runs
  // their steps with the recurrent product read from the unpacked W_hh; one
  // barrier per step. Each output is one rows_dot of fixed order.
  static void time_loop_direct(const Call& c, const Pass& p, const Team& team) {
    using Dt = Direct<Real>;
    const RnnDesc& d = c.d;
    const Scratch& S = c.S;
    const bool train = c.a.train, rev = p.rev();
    const int64_t T = d.T, B = d.B, H = d.H, GH = G * H, DH = d.D * H, In = p.in;
    const int64_t dir = p.dir, ntiles = (H + TU - 1) / TU;
    const Part P{ntiles * team.tid / team.nth,
                 ntiles * (team.tid + 1) / team.nth,
                 1,
                 0,
                 1,
                 team.nth > 1,
                 false};
    const int64_t j0 = P.u0 * TU, j1 = min64(P.u1 * TU, H);
    const Real* wih = p.w[0];
    const Real* whh = p.w[1];
    for (int64_t tb = 0; tb < T * B; ++tb)
      for (int64_t g = 0; g < G; ++g)
        for (int64_t j = j0; j < j1; j += VL) {
          const int64_t n = min64(VL, H - j);
          const V v = Dt::rows_dot(wih + (g * H + j) * In, In, n, p.xin + tb * In, In);
          storen(p.xp + tb * GH + g * H + j, v, n);
        }
    Real *hcur = S.h[0], *hnext = S.h[1], *ccur = S.c[0], *cnext = S.c[1];
    Real *hincur = S.hin[0], *hinnext = S.hin[1];  // recurrent dropout: R * h
    FwdRow<Real> row;
    row.bx = S.bx;
    row.bhn = S.bhn;
    row.H = H;
    row.cstore = row.hnstore = nullptr;
    row.zp = p.zp;
    for (int64_t s = 0; s < c.smax; ++s) {
      const int64_t nact = S.nact[s];
      if (s > 0) save_final(c, P, hcur, ccur, nact, S.nact[s - 1], p.ld);
      for (int64_t r = 0; r < nact; ++r) {
        const int64_t b = S.perm[r], t = time_of(S, r, s, rev);
        row.xp = p.xp + (t * B + b) * GH;
        row.hprev = hcur + r * H;
        row.cprev = ccur + r * H;
        row.hnext = hnext + r * H;
        row.cnext = cnext + r * H;
        row.y = p.y + (t * B + b) * DH + dir * H;
        if (train) row.cstore = row.hnstore = p.aux + (t * B + b) * H;
        row_options(p, row, B, DH, t, b, r, hinnext, train);
        const Real* hsrc = (p.rm ? hincur : hcur) + r * H;  // the product's h_{t-1}
        for (int64_t j = j0; j < j1; j += VL) {
          const int64_t n = min64(VL, H - j);
          V acc[G];
          for (int64_t g = 0; g < G; ++g)
            acc[g] = Dt::rows_dot(whh + (g * H + j) * H, H, n, hsrc, H);
          if (train)
            Cell::template forward<true, kAct>(acc, row, j, n);
          else
            Cell::template forward<false, kAct>(acc, row, j, n);
        }
      }
      if (P.sync) team.sync();
      Real* tmp = hcur;
      hcur = hnext;
      hnext = tmp;
      tmp = ccur;
      ccur = cnext;
      cnext = tmp;
      tmp = hincur;
      hincur = hinnext;
      hinnext = tmp;
    }
    save_final(c, P, hcur, ccur, 0, S.nact[c.smax - 1], p.ld);
  }

  // h_n (and c_n) of sorted rows [r0, r1), which have just finished.
  static void save_final(const Call& c, const Part& P, const Real* hcur,
                         const Real* ccur, int64_t r0, int64_t r1, int64_t ld) {
    const RnnDesc& d = c.d;
    const int64_t B = d.B, H = d.H, j0 = P.u0 * TU, j1 = min64(P.u1 * TU, H);
    for (int64_t r = r0; r < r1; ++r) {
      if (!P.owns(r)) continue;
      const int64_t b = c.S.perm[r];
      for (int64_t j = j0; j < j1; ++j) {
        c.a.hn[(ld * B + b) * H + j] = hcur[r * H + j];
        if (Cell::kHasC) c.a.cn[(ld * B + b) * H + j] = ccur[r * H + j];
      }
    }
  }

  // ----------------------------------------------------------------- backward
  static void backward(const RnnDesc& d, const RnnArgs<Real>& a) {
    Call c{d, a, Ws::reserve_layout(d, a.reserve, nullptr),
           Ws::scratch_layout(d, Mode::kBackward, a.scratch, nullptr), 0};
    const Reserve& R = c.R;
    const Scratch& S = c.S;
    c.smax = Ws::sort_rows(d, a.lengths, c.S);
    const int64_t T = d.T, B = d.B, H = d.H, GH = G * H, D = d.D;
    TeamBarrier bar;
    const int team_n = team_size(d, G, c.smax);
    const int64_t t_start = now_ns();
#pragma omp parallel num_threads(team_n)
    {
      DenormalGuard guard;
      const Team team{&bar, omp_get_thread_num(), omp_get_num_threads()};
      const int tid = team.tid, nth = team.nth;
      for (int64_t l = d.L - 1; l >= 0; --l) {
        Pass p{};
        p.l = l;
        p.in = d.in_size(l);
        p.dy = l == d.L - 1 ? a.dy : S.dyl[l & 1];
        p.dxin = l == 0 ? a.dx : S.dyl[(l - 1) & 1];
        p.xin = l == 0 ? R.x : layer_output(R, l - 1);
        p.y = R.y + l * R.ys;
        p.dm = a.drop_mask && l < d.L - 1 ? a.drop_mask[l] : nullptr;
        for (int64_t dir = 0; dir < D; ++dir) {
          p.dir = dir;
          p.ld = l * D + dir;
          p.w = a.weights + 4 * p.ld;
          p.dw = a.dweights + 4 * p.ld;
          p.xp = R.xp + p.ld * R.xs;
          p.aux = R.aux + p.ld * R.as;
          set_options(c, p);
          Tl::pack_backward(d, p.w[1], S.wp, tid, nth);
          for (int64_t r = tid; r < B; r += nth) {  // sorted h0 for the dW_hh term
            const int64_t b = S.perm[r];
            for (int64_t j = 0; j < H; ++j)  // (R * h0 with recurrent dropout)
              S.h[0][r * H + j] = p.rm ? R.h0[(p.ld * B + b) * H + j] * p.rm[b * H + j]
                                       : R.h0[(p.ld * B + b) * H + j];
          }
          team.sync();
          const Real* dg0 = time_loop_backward(c, p, team);
          // Padded steps must not reach the weight gradients.
          for (int64_t r = tid; r < B; r += nth) {
            const int64_t b = S.perm[r];
            for (int64_t t = S.lens[r]; t < T; ++t) {
              for (int64_t k = 0; k < GH; ++k) p.xp[(t * B + b) * GH + k] = Real(0);
              if (Cell::kSplitN)
                for (int64_t j = 0; j < H; ++j) p.aux[(t * B + b) * H + j] = Real(0);
            }
          }
          team.sync();
          weight_gradients(c, p, dg0, team);
        }
      }
    }
    bar.report(team_n, now_ns() - t_start);
  }

  // Returns dG of step 0, compact rows (the same on every thread).
  static Real* time_loop_backward(const Call& c, const Pass& p, const Team& team) {
    const RnnDesc& d = c.d;
    const RnnArgs<Real>& a = c.a;
    const Reserve& R = c.R;
    const Scratch& S = c.S;
    const bool rev = p.rev();
    const int64_t B = d.B, H = d.H, GH = G * H, DH = d.D * H, dir = p.dir, ld = p.ld;
    const int64_t smax = c.smax;
    const Part P = partition<Real>(d, G, TUB, MRB, team.tid, team.nth);
    const int64_t ldg = Ws::dg_ld(d);
    Real* part = S.bpart + int64_t(team.tid) * B * TUB;
    Real* xp = p.xp;
    Real* aux = p.aux;
    const Real* yl = p.y;
    const Real* dyl = p.dy;
    Real *dgprev = S.dg[0], *dgcur = S.dg[1];
    BwdRow<Real> row;
    row.H = H;
    row.c = row.cprev = row.hprev = nullptr;
    row.hn = nullptr;
    // step = smax-1 .. 0, then a last pass (step -1) that only forms dh0 from
    // the product with step 0's dG. Rows [0, nprev) ran step+1 and receive dh
    // through the recurrence; rows [nprev, nact) end at this step and start
    // from dh_n (and dc_n).
    for (int64_t step = smax - 1; step >= -1; --step) {
      const int64_t nact = step >= 0 ? S.nact[step] : B;
      const int64_t nprev = step + 1 < smax ? S.nact[step + 1] : 0;
      for (int64_t u = P.u0; u < P.u1 && !P.idle; ++u) {
        // the lines of the cell steps below, fetched while the product runs:
        // rows of row block r0, spread over the product's depth blocks
        auto fetch = [&](int64_t r0, int64_t i0, int64_t i1) {
          if (step < 0) return;
          for (int64_t r = r0 + i0; r < r0 + i1; ++r) {
            const int64_t b = S.perm[r], t = time_of(S, r, step, rev);
            const int64_t tb = t * B + b, tp = rev ? t + 1 : t - 1;
            for (int64_t v = 0; v < NVB; ++v) {
              const int64_t j = u * TUB + v * VL;
              if (j >= H) break;
              for (int64_t g = 0; g < G; ++g) prefetch_l2(xp + tb * GH + g * H + j);
              prefetch_l2(dyl + tb * DH + dir * H + j);
              if (Cell::kHasC || Cell::kSplitN) prefetch_l2(aux + tb * H + j);
              if (step > 0 && Cell::kHasC) prefetch_l2(aux + (tp * B + b) * H + j);
              if (step > 0 && Cell::kSplitN)
                prefetch_l2(yl + (tp * B + b) * DH + dir * H + j);
            }
          }
        };
        product_tile(P, S.wp + u * GH * TUB, dgprev, ldg, GH, nprev, part, fetch);
        for (int64_t r0 = 0; r0 < nact; r0 += MRB) {
          if (!P.owns(r0)) continue;
          const int64_t mr = min64(MRB, nact - r0);
          V prod[MRB][NVB];
          for (int64_t i = 0; i < mr && r0 + i < nprev; ++i)
            for (int64_t v = 0; v < NVB; ++v)
              prod[i][v] = load(part + (r0 + i) * TUB + v * VL);
          for (int64_t i = 0; i < mr; ++i) {
            const int64_t r = r0 + i, b = S.perm[r];
            const bool carried = r < nprev;
            int64_t t = 0, tb = 0, tp = 0;
            if (step >= 0) {
              t = time_of(S, r, step, rev);
              tb = t * B + b;
              tp = rev ? t + 1 : t - 1;
              const bool first = step == 0;
              row.xp = xp + tb * GH;
              row.dg = dgcur + r * ldg;
              row.dc = S.dc + r * H;
              row.dhd = S.dhd + r * H;
              row.zh = p.zh ? p.zh + tb * H : nullptr;
              row.zc = p.zc ? p.zc + tb * H : nullptr;
              row.ct = p.ct ? p.ct + tb * H : nullptr;
              if (Cell::kHasC) {
                row.c = aux + tb * H;
                row.cprev = first ? R.c0 + (ld * B + b) * H : aux + (tp * B + b) * H;
              }
              if (Cell::kSplitN) {
                row.hn = aux + tb * H;
                row.hprev =
                    first ? R.h0 + (ld * B + b) * H : yl + (tp * B + b) * DH + dir * H;
              }
            }
            for (int64_t v = 0; v < NVB; ++v) {
              const int64_t j = u * TUB + v * VL, n = min64(VL, H - j);
              if (n <= 0) break;
              const int64_t hidx = (ld * B + b) * H + j;
              V dh;
              if (carried) {
                dh = prod[i][v];
                if (p.rm) dh *= loadn(p.rm + b * H + j, n);  // W_hh (R * h_{t-1})
                if (Cell::kSplitN || p.zh) dh += loadn(S.dhd + r * H + j, n);
              } else {
                dh = loadn(a.dhn + hidx, n);
                if (Cell::kHasC) storen(S.dc + r * H + j, loadn(a.dcn + hidx, n), n);
              }
              if (step < 0) {  // dh0, dc0
                storen(a.dh0 + hidx, dh, n);
                if (Cell::kHasC) storen(a.dc0 + hidx, loadn(S.dc + r * H + j, n), n);
                continue;
              }
              if (p.dm)  // dropout on this layer's output
                dh += loadn(dyl + tb * DH + dir * H + j, n) *
                      loadn(p.dm + tb * DH + dir * H + j, n);
              else
                dh += loadn(dyl + tb * DH + dir * H + j, n);
              Cell::template backward<kAct>(dh, row, j, n);
            }
          }
        }
      }
      if (P.sync) team.sync();
      if (step >= 0) {
        Real* tmp = dgprev;
        dgprev = dgcur;
        dgcur = tmp;
      }
    }
    return dgprev;
  }

  // part[r][0, TUB) = (dG W_hh) of the carried rows r < nprev that this thread
  // owns, for one tile of TUB units (w: its packed W_hh). In depth blocks of
  // KBB, so a block of the tile's weights stays in L1 across the row blocks;
  // the sums wait in part between blocks (fixed order: bitwise the same for
  // any team).
  // fetch(r0, i0, i1) is called for rows r0 + [i0, i1) of each row block,
  // every row once, spread over the depth blocks.
  template <class Fetch>
  static void product_tile(const Part& P, const Real* w, const Real* dg, int64_t ldg,
                           int64_t GH, int64_t nprev, Real* part, Fetch&& fetch) {
    constexpr int64_t KBB = Tl::KBB;
    const int64_t nkb = (GH + KBB - 1) / KBB;
    for (int64_t k0 = 0, kb = 0; k0 < GH; k0 += KBB, ++kb) {
      const int64_t kn = min64(KBB, GH - k0);
      for (int64_t r0 = 0; r0 < nprev; r0 += MRB) {
        if (!P.owns(r0)) continue;
        const int64_t mp = min64(MRB, nprev - r0);
        fetch(r0, mp * kb / nkb, mp * (kb + 1) / nkb);
        V prod[MRB][NVB];
        Tl::backward_product_rows(w + k0 * TUB, dg + k0, ldg, kn, r0, mp, prod);
        for (int64_t i = 0; i < mp; ++i)
          for (int64_t v = 0; v < NVB; ++v) {
            Real* pp = part + (r0 + i) * TUB + v * VL;
            if (k0 > 0) prod[i][v] += load(pp);
            store(pp, prod[i][v]);
          }
      }
    }
  }

  // After the time loop of one (layer, dir): every large product at once.
  // dgx = p.xp holds dG (input side) of all steps, p.aux the hidden-side dG of
  // the kSplitN rows, dg0 the compact dG of step 0.
  static void weight_gradients(const Call& c, const Pass& p, const Real* dg0,
                               const Team& team) {
    const RnnDesc& d = c.d;
    const Scratch& S = c.S;
    const int64_t T = d.T, B = d.B, H = d.H, GH = G * H, DH = d.D * H, TB = T * B;
    const int64_t In = p.in, dir = p.dir;
    const int tid = team.tid, nth = team.nth;
    TeamBarrier* bar = team.bar;
    const Real* dgx = p.xp;
    const Real* aux = p.aux;
    const Real* yl = p.y;
    const Real* const* w = p.w;
    Real* const* dw = p.dw;
    // dx_in (+)= dG W_ih (both directions add into one input gradient)
    gemm<Real>(TB, In, GH, dgx, GH, 1, w[0], In, 1, p.dxin, In, dir > 0, S.pack, bar,
               tid, nth);
    // dW_ih += dG^T x_in and dW_hh += dG_h^T h_prev in one pass over dG:
    // [x_in | h_prev] as two panels of one product. h_prev of step t is y_{t-1}
    // (reverse: y_{t+1}), zero past a row's end; the first step's rows read
    // zero there, its h0 term comes from the compact dG of step 0 and the
    // sorted h0. The bias gradients are the row sums of the same dG^T.
    const int64_t Mx = Cell::kSplitN ? GH - H : GH;  // rows where dG_h == dG_x
    Real* bsum = dw[2] || dw[3] ? S.bsum : nullptr;
    // With recurrent dropout the product read R * h_prev, kept in p.hs.
    const int64_t hld = p.hs ? H : DH;
    const Real* hbase = p.hs ? p.hs : yl + dir * H;
    const Real* hp = dir == 0 ? hbase : hbase + B * hld;
    const int64_t hk0 = dir == 0 ? B : 0, hk1 = dir == 0 ? TB : TB - B;
    Panel<Real> panels[2] = {{p.xin, In, 1, In, 0, TB, dw[0], In},
                             {hp, hld, 1, H, hk0, hk1, dw[1], H}};
    gemm_panels<Real>(Mx, TB, dgx, 1, GH, panels, 2, true, bsum, S.pack, bar, tid, nth);
    if (Cell::kSplitN) {  // the n rows: dW_ih from dG_x, dW_hh from dG_h (aux)
      Panel<Real> pn = panels[0];
      pn.C = dw[0] + Mx * In;
      gemm_panels<Real>(H, TB, dgx + Mx, 1, GH, &pn, 1, true,
                        bsum ? bsum + Mx : nullptr, S.pack, bar, tid, nth);
      pn = panels[1];
      pn.C = dw[1] + Mx * H;
      gemm_panels<Real>(H, TB, aux, 1, H, &pn, 1, true, bsum ? bsum + GH : nullptr,
                        S.pack, bar, tid, nth);
    }
    gemm<Real>(GH, H, B, dg0, 1, Ws::dg_ld(d), S.h[0], H, 1, dw[1], H, true, S.pack,
               bar, tid, nth);
    // b_ih and b_hh gradients: the sums, columns split across threads.
    if (bsum) {
      const int64_t k0 = GH * tid / nth, k1 = GH * (tid + 1) / nth;
      for (int64_t k = k0; k < k1; ++k) {
        if (dw[2]) dw[2][k] += bsum[k];
        if (dw[3]) dw[3][k] += k < Mx ? bsum[k] : bsum[GH + k - Mx];
      }
    }
    team.sync();
  }
};

}  // namespace RNNKIT_NS
}  // namespace rnnkit
