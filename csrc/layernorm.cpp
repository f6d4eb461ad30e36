// layernorm.cpp: the layer-normalised LSTM and GRU over whole sequences
// (equations in layernorm.h; the specification is rnnkit.reference.options),
// forward (training and inference) and backpropagation through time, stacked,
// bidirectional, variable lengths. Compiled once per ISA like the cells.
//
// Forward, per (layer, direction): XP = x W_ih^T for all steps (one GEMM),
// then every row of XP is normalised (rows split across threads) into
// a_x = LN(XP; γ_ih) + b_ih + b_hh (GRU: b_hn kept apart). Per step, the
// recurrent product h W_hh^T runs on the packed tiles of tiles.h (packed once
// per call) into a compact (B, G*H) buffer; after a team barrier each row is
// owned by one thread, which normalises its G*H products, adds a_x, runs the
// cell and (LSTM) normalises c on the way to h. In batch-parallel mode (a
// thread owns whole rows, team.h) the two phases need no barrier at all.
//
// What a training forward keeps (reserve), per (layer, direction): the gate
// activations (T, B, G*H), the normalised input and recurrent products v̂
// (T, B, G*H each), aux (T, B, H: LSTM's raw c_t, GRU's a_h[n]), the LSTM's
// normalised ĉ_t (T, B, H) and the three 1/sqrt(var + eps) per row.
//
// Backward per step: the product dL/dh_t = dA_h W_hh of the carried rows, a
// barrier, then each row: the cell's backward with the LN(c) backward fused in
// (its two row sums), the gate gradients dA (input side, kept over the
// activations), and the LN backward of the recurrent product into dA_h^raw,
// which feeds the next product and, for all steps, dW_hh. After the loop: the
// gains' and biases' gradients as column sums in fixed row order, the input
// side's LN backward per row, then the weight GEMMs over all steps. Every
// element is computed by one thread in a fixed order: bitwise identical
// results for any thread count.
#include <omp.h>

#include "kernels.h"
#include "layernorm.h"
#include "recurrent.h"

namespace rnnkit {
namespace RNNKIT_NS {
namespace {

// The tile shapes of the products (tiles.h reads G, MR, NV, kSplitN; the
// Workspace of recurrent.h, used for sorting the rows, reads kHasC).
template <class Real, int64_t kG>
struct LnTraits {
  static constexpr int64_t G = kG;
  static constexpr bool kHasC = kG == 4, kSplitN = kG == 3, kHasAct = false;
  static constexpr int64_t MR =
      kG == 4 ? (RNNKIT_VBYTES == 64 ? 6 : 3) : (RNNKIT_VBYTES == 64 ? 8 : 3);
  static constexpr int64_t NV = 1;
};

RNNKIT_INLINE float ln_sqrt(float v) { return __builtin_sqrtf(v); }
RNNKIT_INLINE double ln_sqrt(double v) { return __builtin_sqrt(v); }

template <class Real, int64_t kG>
struct LnKernel {
  using V = vec_t<Real>;
  using Tr = LnTraits<Real, kG>;
  using Tl = Tiles<Real, Tr>;
  static constexpr int64_t G = kG;
  static constexpr bool kC = G == 4;  // LSTM: c and LN(c)
  static constexpr int64_t VL = Tl::VL, MR = Tl::MR, NV = Tl::NV, TU = Tl::TU;
  static constexpr int64_t KB = Tl::KB, MRB = Tl::MRB, NVB = Tl::NVB, TUB = Tl::TUB;

  struct Reserve {
    Real *x, *h0, *c0, *y;
    Real *act, *xhat, *hhat, *aux, *chat, *stat;  // per (layer, dir), strides below
    int64_t ys, gs, hs, ss;
  };
  struct Scratch {
    Real* pack;
    Real* wp;
    Real *bx, *bhn;
    Real *h[2], *c[2];
    Real* hw;    // forward: raw W_hh h of the step, compact (B, G*H)
    Real* part;  // forward: per thread partial sums between depth blocks
    Real* xp;    // inference: a_x / activations of the current (layer, dir)
    Real* yl[2];
    Real *dg[2], *dh, *dc, *dhd;  // backward, compact rows
    Real* dhw;                    // backward: raw-product gradient, all steps
    Real* dyl[2];
    Real* hin[2];  // recurrent dropout: R h, the product's input (compact)
    Real* xd;      // dropout between layers: the layer's dropped input
    Real* yin;     // backward, recurrent dropout: R h_{t-1} of all steps
    int64_t *perm, *lens, *nact;
  };

  static Reserve reserve_layout(const RnnDesc& d, char* base, size_t* size) {
    Carver c(base);
    Reserve r;
    const int64_t TB = d.T * d.B, LD = d.L * d.D, GH = G * d.H;
    r.x = c.take<Real>(TB * d.I);
    r.h0 = c.take<Real>(LD * d.B * d.H);
    r.c0 = c.take<Real>(kC ? LD * d.B * d.H : 0);
    r.ys = round16(TB * d.D * d.H);
    r.y = c.take<Real>(r.ys * d.L);
    r.gs = round16(TB * GH);
    r.hs = round16(TB * d.H);
    r.ss = round16(TB * 3);
    r.act = c.take<Real>(r.gs * LD);
    r.xhat = c.take<Real>(r.gs * LD);
    r.hhat = c.take<Real>(r.gs * LD);
    r.aux = c.take<Real>(r.hs * LD);
    r.chat = c.take<Real>(kC ? r.hs * LD : 0);
    r.stat = c.take<Real>(r.ss * LD);
    if (size) *size = c.used;
    return r;
  }

  static Scratch scratch_layout(const RnnDesc& d, Mode mode, char* base, size_t* size) {
    Carver c(base);
    Scratch s;
    const int64_t B = d.B, H = d.H, GH = G * H, TB = d.T * B, DH = d.D * H;
    const int64_t Hp = (H + TU - 1) / TU * TU, Hpb = (H + TUB - 1) / TUB * TUB;
    const bool bwd = mode == Mode::kBackward, inf = mode == Mode::kInference;
    s.pack = c.take<Real>(gemm_pack_size<Real>(d.threads));
    s.wp = c.take<Real>((Hp > Hpb ? Hp : Hpb) * GH);
    s.bx = c.take<Real>(GH);
    s.bhn = c.take<Real>(H);
    for (int i = 0; i < 2; ++i) s.h[i] = c.take<Real>(B * H);
    for (int i = 0; i < 2; ++i) s.c[i] = c.take<Real>(kC && !bwd ? B * H : 0);
    s.hw = c.take<Real>(bwd ? 0 : B * GH);
    s.part = c.take<Real>(bwd ? 0 : int64_t(d.threads) * B * G * TU);
    s.xp = c.take<Real>(inf ? TB * GH : 0);
    for (int i = 0; i < 2; ++i) s.yl[i] = c.take<Real>(inf && d.L > 1 ? TB * DH : 0);
    for (int i = 0; i < 2; ++i) s.dg[i] = c.take<Real>(bwd ? B * GH : 0);
    s.dh = c.take<Real>(bwd ? B * H : 0);
    s.dc = c.take<Real>(bwd && kC ? B * H : 0);
    s.dhd = c.take<Real>(bwd ? B * H : 0);
    s.dhw = c.take<Real>(bwd ? TB * GH : 0);
    for (int i = 0; i < 2; ++i) s.dyl[i] = c.take<Real>(bwd && d.L > 1 ? TB * DH : 0);
    for (int i = 0; i < 2; ++i) s.hin[i] = c.take<Real>(bwd ? 0 : B * H);
    s.xd = c.take<Real>(!inf && d.L > 1 ? TB * DH : 0);
    s.yin = c.take<Real>(bwd ? TB * H : 0);
    s.perm = c.take<int64_t>(B);
    s.lens = c.take<int64_t>(B);
    s.nact = c.take<int64_t>(d.T + 1);
    if (size) *size = c.used;
    return s;
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

  // One (layer, direction).
  struct Pass {
    int64_t l, dir, ld, in;
    const Real* const* w;  // kLnSlots per (layer, dir)
    Real* const* dw;
    const Real* xin;
    Real* y;
    Real *act, *xhat, *hhat, *aux, *chat, *stat;  // rows of (t, b)
    const Real* dy;
    Real* dxin;
    bool rev;
    const Real* rmask;  // (B, H) recurrent dropout, or null
    const uint8_t* zh;  // (T, B, H) zoneout of h, or null
    const uint8_t* zc;  // (T, B, H) zoneout of c, or null
    Real zp;            // inference: zoneout's p (0 in training)
  };

  // The option masks of (layer l, direction dir) (training only) and zoneout's p.
  static void masks(const LnArgs<Real>& a, Pass& p, bool train) {
    p.rmask = train && a.rec ? a.rec[p.ld] : nullptr;
    p.zh = train && a.zh ? a.zh[p.ld] : nullptr;
    p.zc = train && kC && a.zc ? a.zc[p.ld] : nullptr;
    p.zp = train ? Real(0) : Real(a.zoneout);
  }
  // The dropout mask on layer l's input (layer l-1's output), or null.
  static const Real* drop_of(const LnArgs<Real>& a, int64_t l, bool train) {
    return train && l > 0 && a.drop ? a.drop[l - 1] : nullptr;
  }
  // dst = src * m over (T, B, D*H), rows split across threads.
  static void scale_rows(Real* dst, const Real* src, const Real* m, int64_t n,
                         const Team& team) {
    const int64_t i0 = n * team.tid / team.nth, i1 = n * (team.tid + 1) / team.nth;
    for (int64_t i = i0; i < i1; ++i) dst[i] = src[i] * m[i];
  }
  // 1 where a zoneout mask keeps the previous value, else 0.
  static RNNKIT_INLINE V keep_of(const uint8_t* z, int64_t n) {
    V k{};
    for (int64_t i = 0; i < n; ++i) k[i] = z[i] ? Real(1) : Real(0);
    return k;
  }
  // Zoneout of one vector: the mask in training, the expectation at inference.
  static RNNKIT_INLINE V zone(V prev, V nw, const uint8_t* z, Real zp, int64_t n) {
    if (z) {
      for (int64_t i = 0; i < n; ++i)
        if (z[i]) nw[i] = prev[i];
      return nw;
    }
    if (zp != Real(0)) return splat(zp) * prev + splat(Real(1) - zp) * nw;
    return nw;
  }

  struct Call {
    const RnnDesc& d;
    const LnArgs<Real>& a;
    Reserve R;
    Scratch S;
    int64_t smax;
  };

  static RNNKIT_INLINE Real hsum(V v) {
    Real s = Real(0);
    for (int64_t i = 0; i < VL; ++i) s += v[i];
    return s;
  }
  static RNNKIT_INLINE V first_n(V v, int64_t n) {
    if (n == VL) return v;
    for (int64_t i = n; i < VL; ++i) v[i] = Real(0);
    return v;
  }
  // mean and 1 / sqrt(var + eps) of v[0 .. N), the variance about the mean.
  static RNNKIT_INLINE void row_stats(const Real* v, int64_t N, Real& mean,
                                      Real& rstd) {
    V s{};
    for (int64_t k = 0; k < N; k += VL) s += loadn(v + k, min64(VL, N - k));
    mean = hsum(s) / Real(N);
    const V m = splat(mean);
    V q{};
    for (int64_t k = 0; k < N; k += VL) {
      const int64_t n = min64(VL, N - k);
      const V c = first_n(loadn(v + k, n) - m, n);
      q += c * c;
    }
    rstd = Real(1) / ln_sqrt(hsum(q) / Real(N) + Real(kLnEps));
  }

  static void slices(const Call& c, Pass& p, bool train) {
    const Reserve& R = c.R;
    if (train) {
      p.act = R.act + p.ld * R.gs;
      p.xhat = R.xhat + p.ld * R.gs;
      p.hhat = R.hhat + p.ld * R.gs;
      p.aux = R.aux + p.ld * R.hs;
      p.chat = kC ? R.chat + p.ld * R.hs : nullptr;
      p.stat = R.stat + p.ld * R.ss;
    } else {
      p.act = c.S.xp;
      p.xhat = p.hhat = p.aux = p.chat = p.stat = nullptr;
    }
  }

  // ------------------------------------------------------------------ forward
  static void forward(const RnnDesc& d, const LnArgs<Real>& a) {
    const bool train = a.train;
    const Mode mode = train ? Mode::kTrainForward : Mode::kInference;
    Call c{d, a, reserve_layout(d, train ? a.reserve : nullptr, nullptr),
           scratch_layout(d, mode, a.scratch, nullptr), 0};
    const Reserve& R = c.R;
    const Scratch& S = c.S;
    c.smax = sort_rows(d, a.lengths, c.S);
    const int64_t T = d.T, B = d.B, H = d.H, GH = G * H, D = d.D, DH = D * H;
    TeamBarrier bar;
    const int team_n = team_size(d, G, c.smax);
    const int64_t t_start = now_ns();
#pragma omp parallel num_threads(team_n)
    {
      DenormalGuard guard;
      const Team team{&bar, omp_get_thread_num(), omp_get_num_threads()};
      const int tid = team.tid, nth = team.nth;
      const Real* x = a.x;
      if (train) {  // private copies: the caller may reuse its arrays
        copy_part(R.x, a.x, T * B * d.I, tid, nth);
        copy_part(R.h0, a.h0, d.L * D * B * H, tid, nth);
        if (kC) copy_part(R.c0, a.c0, d.L * D * B * H, tid, nth);
        x = R.x;
        team.sync();
      }
      for (int64_t l = 0; l < d.L; ++l) {
        Pass p{};
        p.l = l;
        p.in = d.in_size(l);
        p.xin = l == 0 ? x : train ? R.y + (l - 1) * R.ys : S.yl[(l - 1) & 1];
        p.y = train ? R.y + l * R.ys : l == d.L - 1 ? a.y : S.yl[l & 1];
        if (const Real* m = drop_of(a, l, train)) {  // dropout between layers
          scale_rows(S.xd, p.xin, m, T * B * DH, team);
          p.xin = S.xd;
          team.sync();
        }
        for (int64_t dir = 0; dir < D; ++dir) {
          p.dir = dir;
          p.ld = l * D + dir;
          p.rev = dir == 1;
          p.w = a.weights + kLnSlots * p.ld;
          slices(c, p, train);
          masks(a, p, train);
          // XP = x W_ih^T
          gemm<Real>(T * B, GH, p.in, p.xin, p.in, 1, p.w[kLnWih], 1, p.in, p.act, GH,
                     false, S.pack, team.bar, tid, nth);
          Tl::pack_forward(d, p.w[kLnWhh], S.wp, tid, nth);
          if (tid == 0) Tl::combine_bias(d, p.w[kLnBih], p.w[kLnBhh], S.bx, S.bhn);
          for (int64_t r = tid; r < B; r += nth) {
            const int64_t b = S.perm[r];
            for (int64_t t = S.lens[r]; t < T; ++t)
              for (int64_t j = 0; j < H; ++j)
                p.y[(t * B + b) * DH + dir * H + j] = Real(0);
            for (int64_t j = 0; j < H; ++j) {
              S.h[0][r * H + j] = a.h0[(p.ld * B + b) * H + j];
              if (kC) S.c[0][r * H + j] = a.c0[(p.ld * B + b) * H + j];
              if (p.rmask) S.hin[0][r * H + j] = S.h[0][r * H + j] * p.rmask[b * H + j];
            }
          }
          team.sync();
          input_norm(c, p, team);
          team.sync();
          time_loop_forward(c, p, team);
          team.sync();
        }
      }
      if (train) copy_part(a.y, R.y + (d.L - 1) * R.ys, T * B * DH, tid, nth);
    }
    bar.report(team_n, now_ns() - t_start);
  }

  // a_x = LN(XP; γ_ih) + bx for every (t, b) row; rows split across threads.
  static void input_norm(const Call& c, const Pass& p, const Team& team) {
    const int64_t TB = c.d.T * c.d.B, GH = G * c.d.H;
    const int64_t r0 = TB * team.tid / team.nth, r1 = TB * (team.tid + 1) / team.nth;
    const Real* gain = p.w[kLnGih];
    const Real* bx = c.S.bx;
    for (int64_t tb = r0; tb < r1; ++tb) {
      Real* v = p.act + tb * GH;
      Real mean, rstd;
      row_stats(v, GH, mean, rstd);
      const V m = splat(mean), rs = splat(rstd);
      Real* xh = p.xhat ? p.xhat + tb * GH : nullptr;
      for (int64_t k = 0; k < GH; k += VL) {
        const int64_t n = min64(VL, GH - k);
        const V vh = (loadn(v + k, n) - m) * rs;
        if (xh) storen(xh + k, vh, n);
        storen(v + k, vh * loadn(gain + k, n) + loadn(bx + k, n), n);
      }
      if (p.stat) p.stat[tb * 3] = rstd;
    }
  }

  static RNNKIT_INLINE bool row_mine(const Part& P, const Team& team, int64_t r) {
    return P.sync ? r % team.nth == team.tid : P.owns(r);
  }

  static void time_loop_forward(const Call& c, const Pass& p, const Team& team) {
    const RnnDesc& d = c.d;
    const Scratch& S = c.S;
    const int64_t B = d.B, H = d.H, GH = G * H;
    const int tid = team.tid, nth = team.nth;
    const Part P = partition<Real>(d, G, TU, MR, tid, nth);
    if (P.idle) return;
    Real* part = S.part + int64_t(tid) * B * G * TU;
    Real *hcur = S.h[0], *hnext = S.h[1], *ccur = S.c[0], *cnext = S.c[1];
    Real *icur = S.hin[0], *inext = S.hin[1];
    for (int64_t s = 0; s < c.smax; ++s) {
      const int64_t nact = S.nact[s];
      const Real* hprod = p.rmask ? icur : hcur;  // h_in = R h_{t-1}
      for (int64_t u = P.u0; u < P.u1; ++u) {
        const Real* w = S.wp + u * H * G * TU;
        for (int64_t k0 = 0; k0 < H; k0 += KB) {
          const int64_t kn = min64(KB, H - k0);
          const bool first = k0 == 0, last = k0 + kn == H;
          for (int64_t r0 = 0; r0 < nact; r0 += MR) {
            if (!P.owns(r0)) continue;
            const int64_t mr = min64(MR, nact - r0);
            V acc[MR][NV][G];
            Tl::fused_product_rows(w + k0 * G * TU, hprod + k0, H, kn, r0, mr, acc);
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
              Real* hw = S.hw + (r0 + i) * GH;
              for (int64_t v = 0; v < NV; ++v) {
                const int64_t j = u * TU + v * VL, n = min64(VL, H - j);
                if (n <= 0) break;
                for (int64_t g = 0; g < G; ++g) storen(hw + g * H + j, acc[i][v][g], n);
              }
            }
          }
        }
      }
      if (P.sync) team.sync();
      for (int64_t r = 0; r < nact; ++r)
        if (row_mine(P, team, r))
          row_forward(c, p, r, s, hcur, hnext, ccur, cnext, inext);
      if (P.sync) team.sync();
      Real* tmp = icur;
      icur = inext;
      inext = tmp;
      tmp = hcur;
      hcur = hnext;
      hnext = tmp;
      tmp = ccur;
      ccur = cnext;
      cnext = tmp;
    }
  }

  // The row phase of forward step s for sorted row r.
  static RNNKIT_INLINE void row_forward(const Call& c, const Pass& p, int64_t r,
                                        int64_t s, const Real* hcur, Real* hnext,
                                        const Real* ccur, Real* cnext, Real* inext) {
    const RnnDesc& d = c.d;
    const Scratch& S = c.S;
    const int64_t B = d.B, H = d.H, GH = G * H, DH = d.D * H;
    const int64_t b = S.perm[r], len = S.lens[r];
    const int64_t t = p.rev ? len - 1 - s : s, tb = t * B + b;
    const bool train = p.hhat != nullptr;
    Real* ar = p.act + tb * GH;  // a_x in, activations out
    const Real* hw = S.hw + r * GH;
    Real* hh = train ? p.hhat + tb * GH : nullptr;
    const Real* gh = p.w[kLnGhh];
    const Real* hp = hcur + r * H;
    Real* hn = hnext + r * H;
    Real* y = p.y + tb * DH + p.dir * H;
    Real mh, rh;
    row_stats(hw, GH, mh, rh);
    const V m = splat(mh), rs = splat(rh);
    if constexpr (kC) {
      const Real* cp = ccur + r * H;
      Real* cn = cnext + r * H;
      for (int64_t j = 0; j < H; j += VL) {
        const int64_t n = min64(VL, H - j);
        V a[4];
        for (int64_t g = 0; g < 4; ++g) {
          const V vh = (loadn(hw + g * H + j, n) - m) * rs;
          if (train) storen(hh + g * H + j, vh, n);
          a[g] = loadn(ar + g * H + j, n) + vh * loadn(gh + g * H + j, n);
        }
        const V i = vsigmoid(a[0]), f = vsigmoid(a[1]);
        const V gg = vtanh(a[2]), o = vsigmoid(a[3]);
        const V cc = f * loadn(cp + j, n) + i * gg;  // c_t = f c_{t-1} + i g
        storen(cn + j, cc, n);
        storen(ar + j, i, n);
        storen(ar + H + j, f, n);
        storen(ar + 2 * H + j, gg, n);
        storen(ar + 3 * H + j, o, n);
      }
      // h_t = o tanh(LN(c_t; γ_c, β_c))
      Real mc, rc;
      row_stats(cn, H, mc, rc);
      const V cm = splat(mc), crs = splat(rc);
      const Real* gc = p.w[kLnGc];
      const Real* bc = p.w[kLnBc];
      for (int64_t j = 0; j < H; j += VL) {
        const int64_t n = min64(VL, H - j);
        const V ch = (loadn(cn + j, n) - cm) * crs;
        if (train) storen(p.chat + tb * H + j, ch, n);
        const V tc = vtanh(ch * loadn(gc + j, n) + loadn(bc + j, n));
        // zoneout: h_t = d h_{t-1} + (1-d) h̃_t, c_t likewise (h̃ reads c̃)
        const V h = zone(loadn(hp + j, n), loadn(ar + 3 * H + j, n) * tc,
                         p.zh ? p.zh + tb * H + j : nullptr, p.zp, n);
        const V cz = zone(loadn(cp + j, n), loadn(cn + j, n),
                          p.zc ? p.zc + tb * H + j : nullptr, p.zp, n);
        storen(cn + j, cz, n);
        if (train) storen(p.aux + tb * H + j, cz, n);
        storen(hn + j, h, n);
        storen(y + j, h, n);
        if (p.rmask) storen(inext + r * H + j, h * loadn(p.rmask + b * H + j, n), n);
      }
      if (train) {
        p.stat[tb * 3 + 1] = rh;
        p.stat[tb * 3 + 2] = rc;
      }
      if (s == len - 1)
        for (int64_t j = 0; j < H; ++j) {
          c.a.hn[(p.ld * B + b) * H + j] = hn[j];
          c.a.cn[(p.ld * B + b) * H + j] = cn[j];
        }
    } else {
      for (int64_t j = 0; j < H; j += VL) {
        const int64_t n = min64(VL, H - j);
        V vh[3];
        for (int64_t g = 0; g < 3; ++g) {
          vh[g] = (loadn(hw + g * H + j, n) - m) * rs;
          if (train) storen(hh + g * H + j, vh[g], n);
        }
        // r, z = σ(a_x + a_h);  n = tanh(a_x[n] + r (γ v̂_n + b_hn))
        const V rg = vsigmoid(loadn(ar + j, n) + vh[0] * loadn(gh + j, n));
        const V z = vsigmoid(loadn(ar + H + j, n) + vh[1] * loadn(gh + H + j, n));
        const V ahn = vh[2] * loadn(gh + 2 * H + j, n) + loadn(S.bhn + j, n);
        const V nn = vtanh(loadn(ar + 2 * H + j, n) + rg * ahn);
        const V hv = loadn(hp + j, n);
        const V h = zone(hv, nn + (hv - nn) * z,  // h̃_t = n + z (h_{t-1} - n)
                         p.zh ? p.zh + tb * H + j : nullptr, p.zp, n);
        storen(hn + j, h, n);
        storen(y + j, h, n);
        if (p.rmask) storen(inext + r * H + j, h * loadn(p.rmask + b * H + j, n), n);
        if (train) {
          storen(ar + j, rg, n);
          storen(ar + H + j, z, n);
          storen(ar + 2 * H + j, nn, n);
          storen(p.aux + tb * H + j, ahn, n);
        }
      }
      if (train) p.stat[tb * 3 + 1] = rh;
      if (s == len - 1)
        for (int64_t j = 0; j < H; ++j) c.a.hn[(p.ld * B + b) * H + j] = hn[j];
    }
  }

  // ----------------------------------------------------------------- backward
  static void backward(const RnnDesc& d, const LnArgs<Real>& a) {
    Call c{d, a, reserve_layout(d, a.reserve, nullptr),
           scratch_layout(d, Mode::kBackward, a.scratch, nullptr), 0};
    const Reserve& R = c.R;
    const Scratch& S = c.S;
    c.smax = sort_rows(d, a.lengths, c.S);
    const int64_t T = d.T, B = d.B, H = d.H, GH = G * H, D = d.D, DH = D * H;
    TeamBarrier bar;
    const int team_n = team_size(d, G, c.smax);
    const int64_t t_start = now_ns();
#pragma omp parallel num_threads(team_n)
    {
      DenormalGuard guard;
      const Team team{&bar, omp_get_thread_num(), omp_get_num_threads()};
      const int tid = team.tid, nth = team.nth;
      for (int64_t l = d.L - 1; l >= 0; --l) {
        const Real* drop = drop_of(a, l, true);
        Pass p{};
        p.l = l;
        p.in = d.in_size(l);
        p.dy = l == d.L - 1 ? a.dy : S.dyl[l & 1];
        p.dxin = l == 0 ? a.dx : S.dyl[(l - 1) & 1];
        p.xin = l == 0 ? R.x : R.y + (l - 1) * R.ys;
        p.y = R.y + l * R.ys;
        if (drop) {  // the dropped input the forward's GEMM read, for dW_ih
          scale_rows(S.xd, p.xin, drop, T * B * DH, team);
          p.xin = S.xd;
        }
        for (int64_t dir = 0; dir < D; ++dir) {
          p.dir = dir;
          p.ld = l * D + dir;
          p.rev = dir == 1;
          p.w = a.weights + kLnSlots * p.ld;
          p.dw = a.dweights + kLnSlots * p.ld;
          slices(c, p, true);
          masks(a, p, true);
          Tl::pack_backward(d, p.w[kLnWhh], S.wp, tid, nth);
          for (int64_t r = tid; r < B; r += nth) {  // sorted h0 for the dW_hh term
            const int64_t b = S.perm[r];
            for (int64_t j = 0; j < H; ++j)
              S.h[0][r * H + j] = R.h0[(p.ld * B + b) * H + j] *
                                  (p.rmask ? p.rmask[b * H + j] : Real(1));
          }
          if (p.rmask) {  // h_in = R h_{t-1} of every step, for dW_hh
            const int64_t TB = T * B, i0 = TB * tid / nth, i1 = TB * (tid + 1) / nth;
            for (int64_t tb = i0; tb < i1; ++tb)
              for (int64_t j = 0; j < H; ++j)
                S.yin[tb * H + j] =
                    p.y[tb * DH + dir * H + j] * p.rmask[(tb % B) * H + j];
          }
          team.sync();
          const Real* dg0 = time_loop_backward(c, p, team);
          // Padded steps must not reach the parameter gradients.
          for (int64_t r = tid; r < B; r += nth) {
            const int64_t b = S.perm[r];
            for (int64_t t = S.lens[r]; t < T; ++t) {
              const int64_t tb = t * B + b;
              for (int64_t k = 0; k < GH; ++k) {
                p.act[tb * GH + k] = p.hhat[tb * GH + k] = Real(0);
                S.dhw[tb * GH + k] = Real(0);
              }
              for (int64_t j = 0; j < H; ++j) {
                p.aux[tb * H + j] = Real(0);
                if (kC) p.chat[tb * H + j] = Real(0);
              }
            }
          }
          team.sync();
          param_sums(c, p, team);
          team.sync();
          input_norm_backward(c, p, team);
          team.sync();
          weight_gradients(c, p, dg0, team);
        }
        if (drop) {  // dL/dy of layer l-1 through the dropout
          Real* dyl = S.dyl[(l - 1) & 1];
          scale_rows(dyl, dyl, drop, T * B * DH, team);
          team.sync();
        }
      }
    }
    bar.report(team_n, now_ns() - t_start);
  }

  // Returns the compact dA_h^raw of step 0 (the same on every thread).
  static Real* time_loop_backward(const Call& c, const Pass& p, const Team& team) {
    const RnnDesc& d = c.d;
    const Scratch& S = c.S;
    const int64_t B = d.B, H = d.H, GH = G * H, smax = c.smax;
    const Part P = partition<Real>(d, G, TUB, MRB, team.tid, team.nth);
    Real *dgprev = S.dg[0], *dgcur = S.dg[1];
    // step = smax-1 .. 0, then step -1, which only forms dh0 (and dc0). Rows
    // [0, nprev) ran step+1 and get dh through the recurrence; rows [nprev,
    // nact) end at this step and start from dh_n (and dc_n).
    for (int64_t step = smax - 1; step >= -1; --step) {
      const int64_t nact = step >= 0 ? S.nact[step] : B;
      const int64_t nprev = step + 1 < smax ? S.nact[step + 1] : 0;
      if (!P.idle) {
        for (int64_t u = P.u0; u < P.u1; ++u) {
          const Real* w = S.wp + u * GH * TUB;
          for (int64_t r0 = 0; r0 < nprev; r0 += MRB) {
            if (!P.owns(r0)) continue;
            const int64_t mp = min64(MRB, nprev - r0);
            V prod[MRB][NVB];
            Tl::backward_product_rows(w, dgprev, GH, GH, r0, mp, prod);
            for (int64_t i = 0; i < mp; ++i)
              for (int64_t v = 0; v < NVB; ++v) {
                const int64_t j = u * TUB + v * VL, n = min64(VL, H - j);
                if (n <= 0) break;
                storen(S.dh + (r0 + i) * H + j, prod[i][v], n);
              }
          }
        }
      }
      if (P.sync) team.sync();
      if (!P.idle)
        for (int64_t r = 0; r < nact; ++r)
          if (row_mine(P, team, r)) row_backward(c, p, r, step, r < nprev, dgcur);
      if (P.sync) team.sync();
      if (step >= 0) {
        Real* tmp = dgprev;
        dgprev = dgcur;
        dgcur = tmp;
      }
    }
    return dgprev;
  }

  // The row phase of backward step `step` for sorted row r; S.dh holds the
  // recurrent part of dL/dh_t where `carried`.
  static RNNKIT_INLINE void row_backward(const Call& c, const Pass& p, int64_t r,
                                         int64_t step, bool carried, Real* dgcur) {
    const RnnDesc& d = c.d;
    const LnArgs<Real>& a = c.a;
    const Reserve& R = c.R;
    const Scratch& S = c.S;
    const int64_t B = d.B, H = d.H, GH = G * H, DH = d.D * H;
    const int64_t b = S.perm[r], hidx = (p.ld * B + b) * H;
    Real* dhr = S.dh + r * H;
    Real* dhd = S.dhd + r * H;  // dL/dh_{t-1} straight (GRU's z h, zoneout)
    const Real* rm = p.rmask ? p.rmask + b * H : nullptr;
    const bool direct = !kC || p.zh;
    // dL/dh_t from the next step: (dA_h^raw W_hh) R + the direct path
    auto carried_dh = [&](int64_t j, int64_t n) {
      V v = loadn(dhr + j, n);
      if (rm) v *= loadn(rm + j, n);
      if (direct) v += loadn(dhd + j, n);
      return v;
    };
    if (step < 0) {  // dh0 (and dc0): every row ran step 0, so all are carried
      for (int64_t j = 0; j < H; j += VL) {
        const int64_t n = min64(VL, H - j);
        storen(a.dh0 + hidx + j, carried_dh(j, n), n);
        if (kC) storen(a.dc0 + hidx + j, loadn(S.dc + r * H + j, n), n);
      }
      return;
    }
    const uint8_t* zh =
        p.zh ? p.zh + (p.rev ? S.lens[r] - 1 - step : step) * B * H + b * H : nullptr;
    const int64_t t = p.rev ? S.lens[r] - 1 - step : step, tb = t * B + b;
    const int64_t tp = p.rev ? t + 1 : t - 1;
    const Real* dyr = p.dy + tb * DH + p.dir * H;
    Real* ar = p.act + tb * GH;  // activations in, dA (input side) out
    Real* auxr = p.aux + tb * H;
    const Real* hh = p.hhat + tb * GH;
    const Real rh = p.stat[tb * 3 + 1];
    const Real* gh = p.w[kLnGhh];
    if constexpr (kC) {
      const Real* chat = p.chat + tb * H;
      const Real* cprev = step == 0 ? R.c0 + hidx : p.aux + (tp * B + b) * H;
      const Real* gc = p.w[kLnGc];
      const Real* bc = p.w[kLnBc];
      Real* dcr = S.dc + r * H;
      const Real rc = p.stat[tb * 3 + 2];
      const uint8_t* zc = p.zc ? p.zc + tb * H : nullptr;
      // h_t = o tanh(ĉ γ_c + β_c): do, and dL/d(LN(c)) into aux (c_t is dead:
      // step t+1 read it as its c_{t-1})
      V m1{}, m2{};
      for (int64_t j = 0; j < H; j += VL) {
        const int64_t n = min64(VL, H - j);
        V dh = (carried ? carried_dh(j, n) : loadn(a.dhn + hidx + j, n)) +
               loadn(dyr + j, n);
        if (!carried) storen(dcr + j, loadn(a.dcn + hidx + j, n), n);
        if (zh) {  // h_t = d h_{t-1} + (1-d) h̃_t
          const V keep = keep_of(zh + j, n);
          storen(dhd + j, dh * keep, n);
          dh *= Real(1) - keep;
        }
        const V ch = loadn(chat + j, n), g = loadn(gc + j, n);
        const V tc = vtanh(ch * g + loadn(bc + j, n));
        const V o = loadn(ar + 3 * H + j, n);
        const V dcn = first_n(dh * o * (Real(1) - tc * tc), n);
        storen(ar + 3 * H + j, dh * tc * o * (Real(1) - o), n);
        storen(auxr + j, dcn, n);
        const V u = dcn * g;
        m1 += u;
        m2 += u * ch;
      }
      const V s1 = splat(hsum(m1) / Real(H)), s2 = splat(hsum(m2) / Real(H));
      const V crs = splat(rc);
      for (int64_t j = 0; j < H; j += VL) {
        const int64_t n = min64(VL, H - j);
        const V ch = loadn(chat + j, n);
        // c_t = e c_{t-1} + (1-e) c̃_t
        V dcz = loadn(dcr + j, n), dcp{};
        if (zc) {
          const V keep = keep_of(zc + j, n);
          dcp = dcz * keep;
          dcz *= Real(1) - keep;
        }
        const V dc = crs * (loadn(auxr + j, n) * loadn(gc + j, n) - s1 - ch * s2) + dcz;
        const V i = loadn(ar + j, n), f = loadn(ar + H + j, n);
        const V gg = loadn(ar + 2 * H + j, n);
        storen(ar + j, dc * gg * i * (Real(1) - i), n);
        storen(ar + H + j, dc * loadn(cprev + j, n) * f * (Real(1) - f), n);
        storen(ar + 2 * H + j, dc * i * (Real(1) - gg * gg), n);
        storen(dcr + j, zc ? dc * f + dcp : dc * f, n);
      }
    } else {
      const Real* hprev = step == 0 ? R.h0 + hidx : p.y + (tp * B + b) * DH + p.dir * H;
      for (int64_t j = 0; j < H; j += VL) {
        const int64_t n = min64(VL, H - j);
        V dh = carried ? carried_dh(j, n) : loadn(a.dhn + hidx + j, n);
        dh += loadn(dyr + j, n);
        V dzone{};
        if (zh) {  // h_t = d h_{t-1} + (1-d) h̃_t
          const V keep = keep_of(zh + j, n);
          dzone = dh * keep;
          dh *= Real(1) - keep;
        }
        const V rg = loadn(ar + j, n), z = loadn(ar + H + j, n);
        const V nn = loadn(ar + 2 * H + j, n), ahn = loadn(auxr + j, n);
        // h̃_t = n + z (h_{t-1} - n)
        const V dn = dh * (Real(1) - z);
        const V dz = dh * (loadn(hprev + j, n) - nn);
        storen(dhd + j, zh ? dh * z + dzone : dh * z, n);
        // n = tanh(a_x[n] + r a_h[n])
        const V dnp = dn * (Real(1) - nn * nn);
        storen(ar + j, dnp * ahn * rg * (Real(1) - rg), n);
        storen(ar + H + j, dz * z * (Real(1) - z), n);
        storen(ar + 2 * H + j, dnp, n);
        storen(auxr + j, dnp * rg, n);  // dA_h of the n rows
      }
    }
    // a_h = LN(W_hh h; γ_hh) + b_hh: dA_h^raw = rstd (u - mean u - v̂ mean(u v̂)),
    // u = dA_h γ_hh (dA_h = dA but for the GRU's n rows, kept in aux)
    constexpr int64_t Mx = kC ? 4 : 2;  // gates where dA_h == dA
    V m1{}, m2{};
    for (int64_t g = 0; g < G; ++g) {
      const Real* da = g < Mx ? ar + g * H : auxr;
      for (int64_t j = 0; j < H; j += VL) {
        const int64_t n = min64(VL, H - j), k = g * H + j;
        const V u = first_n(loadn(da + j, n) * loadn(gh + k, n), n);
        m1 += u;
        m2 += u * loadn(hh + k, n);
      }
    }
    const V s1 = splat(hsum(m1) / Real(GH)), s2 = splat(hsum(m2) / Real(GH));
    const V rs = splat(rh);
    Real* dg = dgcur + r * GH;
    Real* dw = S.dhw + tb * GH;
    for (int64_t g = 0; g < G; ++g) {
      const Real* da = g < Mx ? ar + g * H : auxr;
      for (int64_t j = 0; j < H; j += VL) {
        const int64_t n = min64(VL, H - j), k = g * H + j;
        const V v =
            rs * (loadn(da + j, n) * loadn(gh + k, n) - s1 - loadn(hh + k, n) * s2);
        storen(dg + k, v, n);
        storen(dw + k, v, n);
      }
    }
  }

  // dprod[k] += sum_r a[r*lda + k] b[r*ldb + k] and dsum[k] += sum_r a[r*lda + k]
  // (dsum may be null) for k < n, r < rows: rows in order for every column
  // (the order does not depend on how columns are split), accumulated in
  // registers over blocks of rows, columns in blocks of a few vectors.
  static void column_sums(const Real* a, int64_t lda, const Real* b, int64_t ldb,
                          int64_t rows, int64_t n, Real* dprod, Real* dsum) {
    constexpr int64_t CV = 4, RB = 32;
    for (int64_t r0 = 0; r0 < rows; r0 += RB) {
      const int64_t r1 = min64(rows, r0 + RB);
      for (int64_t k0 = 0; k0 < n; k0 += CV * VL) {
        V p[CV], q[CV];
        int64_t m[CV];
        for (int64_t v = 0; v < CV; ++v) {
          m[v] = max64(0, min64(VL, n - k0 - v * VL));
          p[v] = loadn(dprod + k0 + v * VL, m[v]);
          q[v] = dsum ? loadn(dsum + k0 + v * VL, m[v]) : V{};
        }
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t v = 0; v < CV; ++v) {
            const V x = loadn(a + r * lda + k0 + v * VL, m[v]);
            p[v] += x * loadn(b + r * ldb + k0 + v * VL, m[v]);
            q[v] += x;
          }
        for (int64_t v = 0; v < CV; ++v) {
          storen(dprod + k0 + v * VL, p[v], m[v]);
          if (dsum) storen(dsum + k0 + v * VL, q[v], m[v]);
        }
      }
    }
  }

  // The gains' and biases' gradients: column sums over all (t, b) rows,
  // columns split across threads.
  static void param_sums(const Call& c, const Pass& p, const Team& team) {
    const RnnDesc& d = c.d;
    const int64_t TB = d.T * d.B, H = d.H, GH = G * H;
    constexpr int64_t Mx = kC ? 4 : 2;
    const int64_t MxH = Mx * H;
    Real* const* dw = p.dw;
    const int64_t c0 = GH * team.tid / team.nth, c1 = GH * (team.tid + 1) / team.nth;
    // input side: dγ_ih = Σ dA v̂_x, db_ih = Σ dA
    if (c1 > c0)
      column_sums(p.act + c0, GH, p.xhat + c0, GH, TB, c1 - c0, dw[kLnGih] + c0,
                  dw[kLnBih] ? dw[kLnBih] + c0 : nullptr);
    // recurrent side: dγ_hh = Σ dA_h v̂_h, db_hh = Σ dA_h (the GRU's n rows in aux)
    const int64_t cx = min64(c1, MxH);
    if (cx > c0)
      column_sums(p.act + c0, GH, p.hhat + c0, GH, TB, cx - c0, dw[kLnGhh] + c0,
                  dw[kLnBhh] ? dw[kLnBhh] + c0 : nullptr);
    const int64_t cn0 = max64(c0, MxH);
    if (c1 > cn0)
      column_sums(p.aux + (cn0 - MxH), H, p.hhat + cn0, GH, TB, c1 - cn0,
                  dw[kLnGhh] + cn0, dw[kLnBhh] ? dw[kLnBhh] + cn0 : nullptr);
    if (kC) {  // dγ_c = Σ dLN(c) ĉ, dβ_c = Σ dLN(c)
      const int64_t j0 = H * team.tid / team.nth, j1 = H * (team.tid + 1) / team.nth;
      if (j1 > j0)
        column_sums(p.aux + j0, H, p.chat + j0, H, TB, j1 - j0, dw[kLnGc] + j0,
                    dw[kLnBc] + j0);
    }
  }

  // The input side's LN backward in place: dA -> d(x W_ih^T), rows split.
  static void input_norm_backward(const Call& c, const Pass& p, const Team& team) {
    const int64_t TB = c.d.T * c.d.B, GH = G * c.d.H;
    const int64_t r0 = TB * team.tid / team.nth, r1 = TB * (team.tid + 1) / team.nth;
    const Real* gain = p.w[kLnGih];
    for (int64_t tb = r0; tb < r1; ++tb) {
      Real* v = p.act + tb * GH;
      const Real* xh = p.xhat + tb * GH;
      V m1{}, m2{};
      for (int64_t k = 0; k < GH; k += VL) {
        const int64_t n = min64(VL, GH - k);
        const V u = first_n(loadn(v + k, n) * loadn(gain + k, n), n);
        m1 += u;
        m2 += u * loadn(xh + k, n);
      }
      const V s1 = splat(hsum(m1) / Real(GH)), s2 = splat(hsum(m2) / Real(GH));
      const V rs = splat(p.stat[tb * 3]);
      for (int64_t k = 0; k < GH; k += VL) {
        const int64_t n = min64(VL, GH - k);
        const V u = loadn(v + k, n) * loadn(gain + k, n);
        storen(v + k, rs * (u - s1 - loadn(xh + k, n) * s2), n);
      }
    }
  }

  // After the time loop: dx_in, dW_ih from the input side, dW_hh from the
  // raw-product gradients of all steps (h_{t-1} is y_{t-1}, reverse y_{t+1};
  // the h0 term from step 0's compact rows and the sorted h0).
  static void weight_gradients(const Call& c, const Pass& p, const Real* dg0,
                               const Team& team) {
    const RnnDesc& d = c.d;
    const Scratch& S = c.S;
    const int64_t T = d.T, B = d.B, H = d.H, GH = G * H, DH = d.D * H, TB = T * B;
    const int64_t In = p.in, dir = p.dir;
    const int tid = team.tid, nth = team.nth;
    TeamBarrier* bar = team.bar;
    const Real* dgx = p.act;
    const Real* const* w = p.w;
    Real* const* dw = p.dw;
    gemm<Real>(TB, In, GH, dgx, GH, 1, w[kLnWih], In, 1, p.dxin, In, dir > 0, S.pack,
               bar, tid, nth);
    gemm<Real>(GH, In, TB, dgx, 1, GH, p.xin, In, 1, dw[kLnWih], In, true, S.pack, bar,
               tid, nth);
    const int64_t K = (T - 1) * B;
    const Real* dh_t = dir == 0 ? S.dhw + B * GH : S.dhw;
    const Real* y_t = p.rmask ? (dir == 0 ? S.yin : S.yin + B * H)
                              : (dir == 0 ? p.y + dir * H : p.y + B * DH + dir * H);
    const int64_t ldy = p.rmask ? H : DH;
    gemm<Real>(GH, H, K, dh_t, 1, GH, y_t, ldy, 1, dw[kLnWhh], H, true, S.pack, bar,
               tid, nth);
    gemm<Real>(GH, H, B, dg0, 1, GH, S.h[0], H, 1, dw[kLnWhh], H, true, S.pack, bar,
               tid, nth);
    team.sync();
  }
};

}  // namespace

template <class Real>
WorkspaceSize ln_workspace_size(const RnnDesc& d, Mode mode) {
  if (d.cell == Cell::lstm) return LnKernel<Real, 4>::size(d, mode);
  return LnKernel<Real, 3>::size(d, mode);
}

template <class Real>
void ln_forward(const RnnDesc& d, const LnArgs<Real>& a) {
  if (d.cell == Cell::lstm)
    LnKernel<Real, 4>::forward(d, a);
  else
    LnKernel<Real, 3>::forward(d, a);
}

template <class Real>
void ln_backward(const RnnDesc& d, const LnArgs<Real>& a) {
  if (d.cell == Cell::lstm)
    LnKernel<Real, 4>::backward(d, a);
  else
    LnKernel<Real, 3>::backward(d, a);
}

template WorkspaceSize ln_workspace_size<float>(const RnnDesc&, Mode);
template WorkspaceSize ln_workspace_size<double>(const RnnDesc&, Mode);
template void ln_forward<float>(const RnnDesc&, const LnArgs<float>&);
template void ln_forward<double>(const RnnDesc&, const LnArgs<double>&);
template void ln_backward<float>(const RnnDesc&, const LnArgs<float>&);
template void ln_backward<double>(const RnnDesc&, const LnArgs<double>&);

}  // namespace RNNKIT_NS
}  // namespace rnnkit
