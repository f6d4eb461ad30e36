// recurrent.h: the driver shared by the three cells — layers, directions,
// variable lengths, the persistent thread team, the time loop with the fused
// recurrent product, and backpropagation through time. A cell (rnn.cpp,
// lstm.cpp, gru.cpp) supplies only its gate count and two functions applied to
// one row and one tile of L hidden units:
//
//   Cell::forward<kTrain>(acc, FwdRow, j, n, act)  acc[g] = (W_hh h)[g*H + j ..]
//   Cell::backward(dh, BwdRow, j, n, act)          dh = dL/dh_t for units j..j+n
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
// Threads: one parallel region per call, threads own disjoint tiles of hidden
// units (and the matching slice of the packed W_hh, which stays in their
// cache), one barrier per step. Every output element is computed by one
// thread in a fixed order: results do not depend on the thread count.
#pragma once

#include <omp.h>

#include "common.h"
#include "gemm.h"
#include "simd/vec.h"

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#define RNNKIT_HAVE_MXCSR 1
#endif


namespace rnnkit {
namespace RNNKIT_NS {

// Flush denormals to zero (FTZ) and treat denormal inputs as zero (DAZ) in
// this thread while a kernel runs; the caller's state is restored after.
struct DenormalGuard {
#ifdef RNNKIT_HAVE_MXCSR
  unsigned int saved;
  DenormalGuard() : saved(_mm_getcsr()) { _mm_setcsr(saved | 0x8040u); }
  ~DenormalGuard() { _mm_setcsr(saved); }
#endif
};

// One row of a forward step (pointers already offset to the row).
template <class T>
struct FwdRow {
  T* xp;            // (G*H) x W_ih^T at (t, b); activations stored here (train)
  const T* bx;      // (G*H) b_ih + b_hh (GRU: n part b_ih only)
  const T* bhn;     // (H) GRU b_hh of the n gate
  const T* hprev;   // (H) state before the step
  const T* cprev;   // (H) LSTM cell state before the step
  T* hnext;         // (H) state after the step (compact, sorted rows)
  T* cnext;         // (H) LSTM cell state after the step
  T* y;             // (H) output at (t, b) of this direction
  T* cstore;        // (H) LSTM: c_t kept for backward (train)
  T* hnstore;       // (H) GRU: W_hn h + b_hn kept for backward (train)
  int64_t H;
};

// One row of a backward step.
template <class T>
struct BwdRow {
  T* xp;            // (G*H) activations in, dG (input side) out
  T* dg;            // (G*H) compact dG (hidden side) for the recurrent product
  const T* c;       // (H) LSTM c_t
  const T* cprev;   // (H) LSTM c_{t-1} (c0 at the first step)
  T* dc;            // (H) LSTM dL/dc_t in (carried), dL/dc_{t-1} out
  const T* hprev;   // (H) GRU h_{t-1} (h0 at the first step)
  T* hn;            // (H) GRU W_hn h + b_hn in, its gradient out
  T* dhd;           // (H) GRU: dL/dh_{t-1} through h' = ... + z * h (out)
  int64_t H;
};

inline int64_t round16(int64_t n) { return (n + 15) & ~int64_t(15); }

template <class T, class Cell>
struct Recurrent {
  using V = vec_t<T>;
  static constexpr int64_t L = Vec<T>::L;
  static constexpr int64_t G = Cell::G;
  // Register tiles. Forward: MR rows x NV vectors of units x G gates of
  // accumulators; backward: MRB rows x NVB vectors of units. Sized so the
  // accumulators fill most of the register file (16 vector registers below
  // AVX-512, 32 with it); the weights come from L1/L2 as memory operands.
  static constexpr int64_t MR = Cell::MR;
  static constexpr int64_t NV = Cell::NV;
  static constexpr int64_t TU = NV * L;  // units per forward tile
  static constexpr int64_t MRB = RNNKIT_VBYTES == 64 ? 12 : 5;
  // Depth block of the forward product: a KB x (G*TU) slice of the packed
  // W_hh tile stays in L1 across all row blocks of a step; partial sums wait
  // in a per-thread buffer between blocks.
  static constexpr int64_t KB = 128;
  static constexpr int64_t NVB = 2;
  static constexpr int64_t TUB = NVB * L;  // units per backward tile

  // reserve: what a training forward keeps for backward.
  struct Reserve {
    T *x, *h0, *c0;
    T* y;            // per layer (T, B, D*H), stride ys
    T* xp;           // per (layer, dir) (T, B, G*H), stride xs
    T* aux;          // per (layer, dir) (T, B, H): LSTM c_t, GRU hn; stride as
    int64_t ys, xs, as;
  };
  // scratch: free between calls.
  struct Scratch {
    T* pack;         // GEMM panels
    T* wp;           // packed W_hh of the current (layer, dir)
    T *bx, *bhn;     // combined biases of the current (layer, dir)
    T *h[2], *c[2];  // compact states, ping-pong (forward); h[0] = sorted h0 (backward)
    T *dg[2], *dc, *dhd;
    T* part;         // per thread (B, NV, G, L): partial sums between depth blocks
    T* xp;           // inference: XP of the current (layer, dir)
    T* yl[2];        // inference: outputs of the lower layers, ping-pong
    T* dyl[2];       // backward: dL/dY of the lower layers, ping-pong
    int64_t *perm, *lens, *nact;
  };

  static Reserve reserve_layout(const RnnDesc& d, char* base, size_t* size) {
    Carver c(base);
    Reserve r;
    const int64_t TB = d.T * d.B, LD = d.L * d.D;
    r.x = c.take<T>(TB * d.I);
    r.h0 = c.take<T>(LD * d.B * d.H);
    r.c0 = c.take<T>(Cell::kHasC ? LD * d.B * d.H : 0);
    r.ys = round16(TB * d.D * d.H);
    r.y = c.take<T>(r.ys * d.L);
    r.xs = round16(TB * G * d.H);
    r.xp = c.take<T>(r.xs * LD);
    r.as = G > 1 ? round16(TB * d.H) : 0;
    r.aux = c.take<T>(r.as * LD);
    if (size) *size = c.used;
    return r;
  }

  static Scratch scratch_layout(const RnnDesc& d, Mode mode, char* base, size_t* size) {
    Carver c(base);
    Scratch s;
    const int64_t B = d.B, H = d.H, GH = G * d.H;
    const int64_t Hp = (H + TU - 1) / TU * TU, Hpb = (H + TUB - 1) / TUB * TUB;
    s.pack = c.take<T>(gemm_pack_size<T>(d.threads));
    s.wp = c.take<T>((Hp > Hpb ? Hp : Hpb) * G * H);
    s.bx = c.take<T>(GH);
    s.bhn = c.take<T>(H);
    for (int i = 0; i < 2; ++i) s.h[i] = c.take<T>(B * H);
    for (int i = 0; i < 2; ++i) s.c[i] = c.take<T>(Cell::kHasC ? B * H : 0);
    const bool bwd = mode == Mode::kBackward;
    for (int i = 0; i < 2; ++i) s.dg[i] = c.take<T>(bwd ? B * GH : 0);
    s.dc = c.take<T>(bwd ? B * H : 0);
    s.dhd = c.take<T>(bwd ? B * H : 0);
    const bool inf = mode == Mode::kInference;
    s.part = c.take<T>(mode == Mode::kBackward ? 0 : int64_t(d.threads) * B * G * TU);
    s.xp = c.take<T>(inf ? d.T * B * GH : 0);
    for (int i = 0; i < 2; ++i)
      s.yl[i] = c.take<T>(inf && d.L > 1 ? d.T * B * d.D * H : 0);
    for (int i = 0; i < 2; ++i)
      s.dyl[i] = c.take<T>(bwd && d.L > 1 ? d.T * B * d.D * H : 0);
    s.perm = c.take<int64_t>(B);
    s.lens = c.take<int64_t>(B);
    s.nact = c.take<int64_t>(d.T + 1);
    if (size) *size = c.used;
    return s;
  }

  static WorkspaceSize workspace_size(const RnnDesc& d, Mode mode) {
    WorkspaceSize w;
    if (mode != Mode::kInference) reserve_layout(d, nullptr, &w.reserve);
    scratch_layout(d, mode, nullptr, &w.scratch);
    return w;
  }

  // Rows sorted by decreasing length (stable); nact[s] = rows with len > s.
  // Returns the longest length.
  static int64_t sort_rows(const RnnDesc& d, const int64_t* lengths, Scratch& s) {
    const int64_t B = d.B, nT = d.T;
    for (int64_t t = 0; t <= nT; ++t) s.nact[t] = 0;
    for (int64_t b = 0; b < B; ++b) ++s.nact[lengths ? lengths[b] - 1 : nT - 1];
    // nact[t] := number of rows with len > t, via a suffix sum of counts.
    int64_t running = 0;
    for (int64_t t = nT - 1; t >= 0; --t) {
      int64_t count = s.nact[t];
      s.nact[t] = running;  // first sorted slot of rows with len == t+1
      running += count;
    }
    for (int64_t b = 0; b < B; ++b) {
      int64_t len = lengths ? lengths[b] : nT;
      int64_t slot = s.nact[len - 1]++;
      s.perm[slot] = b;
      s.lens[slot] = len;
    }
    int64_t n = B;  // rows are sorted: shrink the prefix as lengths run out
    for (int64_t t = 0; t < nT; ++t) {
      while (n > 0 && s.lens[n - 1] <= t) --n;
      s.nact[t] = n;
    }
    s.nact[nT] = 0;
    return s.lens[0];
  }

  static RNNKIT_INLINE int64_t time_of(const Scratch& s, int64_t r, int64_t step, bool rev) {
    return rev ? s.lens[r] - 1 - step : step;
  }

  // ------------------------------------------------------------------ packing
  // Forward: tile u (TU units) as [k][v][g][L] = W[g*H + u*TU + v*L + l][k].
  // pack_rows writes rows of W (G*H x K, leading dimension lda) at depth
  // [k0, k0 + K) of tiles Ktot deep, so [W_ih | W_hh] can share one packing.
  static void pack_rows(int64_t H, const T* W, int64_t lda, int64_t K, int64_t k0,
                        int64_t Ktot, T* wp, int tid, int nth) {
    const int64_t ntiles = (H + TU - 1) / TU;
    for (int64_t u = tid; u < ntiles; u += nth) {
      T* out = wp + u * Ktot * G * TU;
      for (int64_t v = 0; v < NV; ++v)
        for (int64_t g = 0; g < G; ++g)
          for (int64_t l = 0; l < L; ++l) {
            const int64_t j = u * TU + v * L + l;
            const T* w = W + (g * H + j) * lda;
            T* o = out + k0 * G * TU + (v * G + g) * L + l;
            for (int64_t k = 0; k < K; ++k) o[k * G * TU] = j < H ? w[k] : T(0);
          }
    }
  }

  static void pack_forward(const RnnDesc& d, const T* whh, T* wp, int tid, int nth) {
    pack_rows(d.H, whh, d.H, d.H, 0, d.H, wp, tid, nth);
  }

  // Backward: tile u (TUB units) as [gk][TUB] = W_hh[gk][u*TUB + l] (dh = dG W_hh).
  static void pack_backward(const RnnDesc& d, const T* whh, T* wp, int tid, int nth) {
    const int64_t H = d.H, GH = G * H, ntiles = (H + TUB - 1) / TUB;
    for (int64_t u = tid; u < ntiles; u += nth) {
      T* out = wp + u * GH * TUB;
      for (int64_t k = 0; k < GH; ++k)
        for (int64_t l = 0; l < TUB; ++l) {
          const int64_t j = u * TUB + l;
          out[k * TUB + l] = j < H ? whh[k * H + j] : T(0);
        }
    }
  }

  // How a thread shares a time loop. Hidden-parallel: threads own tiles of
  // units (and that slice of W_hh stays in their cache), one barrier per step.
  // Batch-parallel: threads own blocks of rows, which never interact, so no
  // barrier at all; chosen when W_hh fits in a core's L2 and there are rows
  // enough. Solo: thread 0 alone, for steps too small to pay for a barrier.
  // The choice changes who computes an element, never how: results are the
  // same bitwise for every thread count.
  struct Part {
    int64_t u0, u1;      // tiles of units [u0, u1)
    int64_t qmod, qrem;  // row blocks q with q % qmod == qrem
    int64_t rows;        // rows per block
    bool sync;           // barrier after each step
    bool idle;           // this thread sits the loop out
    bool owns(int64_t r) const { return (r / rows) % qmod == qrem; }
  };

  // Threads for a whole call: one when the work is too small to pay for
  // waking a second thread (a few microseconds; far worse when the cores are
  // busy and a spinning thread waits for a descheduled one).
  static int team_size(const RnnDesc& d, int64_t steps, int64_t min_fma = int64_t(1) << 20) {
    int64_t fma = 0;
    for (int64_t l = 0; l < d.L; ++l) fma += d.D * steps * d.B * G * d.H * (d.in_size(l) + d.H);
    return fma < min_fma ? 1 : d.threads;
  }

  static Part partition(const RnnDesc& d, int64_t tu, int64_t rows, int tid, int nth) {
    const int64_t H = d.H, ntiles = (H + tu - 1) / tu;
    const int64_t wbytes = G * H * H * int64_t(sizeof(T));
    const int64_t step_fma = d.B * G * H * H;
    Part p{0, ntiles, 1, 0, rows, false, false};
    if (nth == 1) return p;
    if (d.B >= 2 * rows * nth && wbytes <= (256 << 10)) {
      p.qmod = nth;
      p.qrem = tid;
    } else if (step_fma < (1 << 17)) {
      p.idle = tid != 0;
    } else {
      p.u0 = ntiles * tid / nth;
      p.u1 = ntiles * (tid + 1) / nth;
      p.sync = true;
    }
    return p;
  }

  // ------------------------------------------------------------------ forward
  static void forward(const RnnDesc& d, const RnnArgs<T>& a) {
    const bool train = a.train;
    Reserve R = reserve_layout(d, train ? a.reserve : nullptr, nullptr);
    Scratch S = scratch_layout(d, train ? Mode::kTrainForward : Mode::kInference, a.scratch, nullptr);
    const int64_t smax = sort_rows(d, a.lengths, S);
    const int64_t T_ = d.T, B = d.B, H = d.H, GH = G * H, D = d.D, DH = D * H;
    TeamBarrier bar;
#pragma omp parallel num_threads(team_size(d, smax))
    {
      DenormalGuard guard;
      const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
      const T* x = a.x;
      if (train) {  // keep private copies: the caller may reuse its arrays
        copy_part(R.x, a.x, T_ * B * d.I, tid, nth);
        copy_part(R.h0, a.h0, d.L * D * B * H, tid, nth);
        if (Cell::kHasC) copy_part(R.c0, a.c0, d.L * D * B * H, tid, nth);
        x = R.x;
        bar.wait(nth);
      }
      for (int64_t l = 0; l < d.L; ++l) {
        const int64_t In = d.in_size(l);
        const T* xin = l == 0 ? x : train ? R.y + (l - 1) * R.ys : S.yl[(l - 1) & 1];
        T* yl = train ? R.y + l * R.ys : l == d.L - 1 ? a.y : S.yl[l & 1];
        for (int64_t dir = 0; dir < D; ++dir) {
          const int64_t ld = l * D + dir;
          const T* const* w = a.weights + 4 * ld;
          T* xp = train ? R.xp + ld * R.xs : S.xp;
          T* aux = train ? R.aux + ld * R.as : nullptr;
          // XP = x W_ih^T: B(k, j) = W_ih[j*In + k].
          gemm<T>(T_ * B, GH, In, xin, In, 1, w[0], 1, In, xp, GH, false, S.pack, &bar, tid, nth);
          pack_forward(d, w[1], S.wp, tid, nth);
          if (tid == 0) combine_bias(d, w[2], w[3], S.bx, S.bhn);
          for (int64_t r = tid; r < B; r += nth) {
            const int64_t b = S.perm[r];
            for (int64_t t = S.lens[r]; t < T_; ++t)
              for (int64_t j = 0; j < H; ++j) yl[(t * B + b) * DH + dir * H + j] = T(0);
            for (int64_t j = 0; j < H; ++j) {
              S.h[0][r * H + j] = a.h0[(ld * B + b) * H + j];
              if (Cell::kHasC) S.c[0][r * H + j] = a.c0[(ld * B + b) * H + j];
            }
          }
          bar.wait(nth);
          time_loop_forward(d, a, S, xp, aux, yl, ld, dir == 1, smax, train, bar, tid, nth);
          bar.wait(nth);
        }
      }
      if (train) copy_part(a.y, R.y + (d.L - 1) * R.ys, T_ * B * DH, tid, nth);
    }
  }

  static void copy_part(T* dst, const T* src, int64_t n, int tid, int nth) {
    const int64_t i0 = n * tid / nth, i1 = n * (tid + 1) / nth;
    if (i1 > i0) __builtin_memcpy(dst + i0, src + i0, size_t(i1 - i0) * sizeof(T));
  }

  static void combine_bias(const RnnDesc& d, const T* bih, const T* bhh, T* bx, T* bhn) {
    const int64_t H = d.H, GH = G * H;
    // GRU keeps b_hn apart: it is scaled by r. The others fold b_hh into bx.
    const int64_t folded = Cell::kSplitN ? GH - H : GH;
    for (int64_t k = 0; k < GH; ++k)
      bx[k] = (bih ? bih[k] : T(0)) + (bhh && k < folded ? bhh[k] : T(0));
    for (int64_t j = 0; j < H; ++j) bhn[j] = Cell::kSplitN && bhh ? bhh[folded + j] : T(0);
  }

  static void time_loop_forward(const RnnDesc& d, const RnnArgs<T>& a, Scratch& S, T* xp,
                                T* aux, T* yl, int64_t ld, bool rev, int64_t smax,
                                bool train, TeamBarrier& bar, int tid, int nth) {
    const int64_t B = d.B, H = d.H, GH = G * H, DH = d.D * H, dir = rev ? 1 : 0;
    const Part P = partition(d, TU, MR, tid, nth);
    if (P.idle) return;
    T* part = S.part + int64_t(tid) * B * G * TU;
    T *hcur = S.h[0], *hnext = S.h[1], *ccur = S.c[0], *cnext = S.c[1];
    FwdRow<T> row;
    row.bx = S.bx;
    row.bhn = S.bhn;
    row.H = H;
    row.cstore = row.hnstore = nullptr;
    for (int64_t s = 0; s < smax; ++s) {
      const int64_t nact = S.nact[s];
      if (s > 0) save_final(d, a, S, P, hcur, ccur, nact, S.nact[s - 1], ld, TU);
      for (int64_t u = P.u0; u < P.u1; ++u) {
        const T* w = S.wp + u * H * G * TU;
        for (int64_t k0 = 0; k0 < H; k0 += KB) {
          const int64_t kn = min64(KB, H - k0);
          const bool first = k0 == 0, last = k0 + kn == H;
          for (int64_t r0 = 0; r0 < nact; r0 += MR) {
            if (!P.owns(r0)) continue;
            const int64_t mr = min64(MR, nact - r0);
            V acc[MR][NV][G];
            if (mr == 1)
              fused_product<1>(w + k0 * G * TU, hcur + k0, H, kn, r0, mr, acc);
            else
              fused_product<MR>(w + k0 * G * TU, hcur + k0, H, kn, r0, mr, acc);
            if (!first || !last) {  // carry partial sums across depth blocks
              for (int64_t i = 0; i < mr; ++i)
                for (int64_t v = 0; v < NV; ++v)
                  for (int64_t g = 0; g < G; ++g) {
                    T* p = part + ((r0 + i) * NV * G + v * G + g) * L;
                    if (!first) acc[i][v][g] += load(p);
                    if (!last) store(p, acc[i][v][g]);
                  }
            }
            if (!last) continue;
            for (int64_t i = 0; i < mr; ++i) {
              const int64_t r = r0 + i, b = S.perm[r], t = time_of(S, r, s, rev);
              row.xp = xp + (t * B + b) * GH;
              row.hprev = hcur + r * H;
              row.cprev = ccur + r * H;
              row.hnext = hnext + r * H;
              row.cnext = cnext + r * H;
              row.y = yl + (t * B + b) * DH + dir * H;
              if (train) row.cstore = row.hnstore = aux + (t * B + b) * H;
              for (int64_t v = 0; v < NV; ++v) {
                const int64_t j = u * TU + v * L, n = min64(L, H - j);
                if (n <= 0) break;
                if (train)
                  Cell::template forward<true>(acc[i][v], row, j, n, d.act);
                else
                  Cell::template forward<false>(acc[i][v], row, j, n, d.act);
              }
            }
          }
        }
      }
      if (P.sync) bar.wait(nth);
      T* tmp = hcur; hcur = hnext; hnext = tmp;
      tmp = ccur; ccur = cnext; cnext = tmp;
    }
    save_final(d, a, S, P, hcur, ccur, 0, S.nact[smax - 1], ld, TU);
  }

  // h_n (and c_n) of sorted rows [r0, r1), which have just finished.
  static void save_final(const RnnDesc& d, const RnnArgs<T>& a, const Scratch& S,
                         const Part& P, const T* hcur, const T* ccur, int64_t r0, int64_t r1,
                         int64_t ld, int64_t tu) {
    const int64_t B = d.B, H = d.H, j0 = P.u0 * tu, j1 = min64(P.u1 * tu, H);
    for (int64_t r = r0; r < r1; ++r) {
      if (!P.owns(r)) continue;
      const int64_t b = S.perm[r];
      for (int64_t j = j0; j < j1; ++j) {
        a.hn[(ld * B + b) * H + j] = hcur[r * H + j];
        if (Cell::kHasC) a.cn[(ld * B + b) * H + j] = ccur[r * H + j];
      }
    }
  }

  // acc[i][v][g] = sum_k h[r0+i][k] W[g*H + tile unit v*L..][k], k < K, for
  // mr <= MR rows of h (leading dimension ldh); rows past mr repeat row r0 (in
  // bounds, discarded), so there are no branches inside.
  template <int64_t MRt>
  static RNNKIT_INLINE void fused_product(const T* w, const T* h, int64_t ldh, int64_t K,
                                          int64_t r0, int64_t mr, V (&acc)[MR][NV][G]) {
    if (MRt == 1) return fused_product_row(w, h + r0 * ldh, K, acc[0]);
    const T* hr[MRt];
#pragma GCC unroll 16
    for (int64_t i = 0; i < MRt; ++i) {
      hr[i] = h + (r0 + (i < mr ? i : 0)) * ldh;
#pragma GCC unroll 4
      for (int64_t v = 0; v < NV; ++v)
#pragma GCC unroll 4
        for (int64_t g = 0; g < G; ++g) acc[i][v][g] = V{};
    }
    for (int64_t k = 0; k < K; ++k) {
      const T* wk = w + k * G * TU;
#pragma GCC unroll 4
      for (int64_t v = 0; v < NV; ++v)
#pragma GCC unroll 4
        for (int64_t g = 0; g < G; ++g) {
          const V wv = load(wk + (v * G + g) * L);
#pragma GCC unroll 16
          for (int64_t i = 0; i < MRt; ++i) acc[i][v][g] += hr[i][k] * wv;
        }
    }
  }

  // One row (batch 1, generation): too few accumulators to hide the FMA
  // latency, so even and odd k run in separate chains, added at the end.
  static RNNKIT_INLINE void fused_product_row(const T* w, const T* h, int64_t K,
                                              V (&acc)[NV][G]) {
    V odd[NV][G];
#pragma GCC unroll 4
    for (int64_t v = 0; v < NV; ++v)
#pragma GCC unroll 4
      for (int64_t g = 0; g < G; ++g) acc[v][g] = odd[v][g] = V{};
    int64_t k = 0;
    for (; k + 1 < K; k += 2) {
      const T* wk = w + k * G * TU;
      const T h0 = h[k], h1 = h[k + 1];
#pragma GCC unroll 4
      for (int64_t v = 0; v < NV; ++v)
#pragma GCC unroll 4
        for (int64_t g = 0; g < G; ++g) {
          acc[v][g] += h0 * load(wk + (v * G + g) * L);
          odd[v][g] += h1 * load(wk + G * TU + (v * G + g) * L);
        }
    }
    for (; k < K; ++k)
#pragma GCC unroll 4
      for (int64_t v = 0; v < NV; ++v)
#pragma GCC unroll 4
        for (int64_t g = 0; g < G; ++g) acc[v][g] += h[k] * load(w + k * G * TU + (v * G + g) * L);
#pragma GCC unroll 4
    for (int64_t v = 0; v < NV; ++v)
#pragma GCC unroll 4
      for (int64_t g = 0; g < G; ++g) acc[v][g] += odd[v][g];
  }

  // ------------------------------------------------------------ single steps
  // For generation: one step of a unidirectional stack on B rows, with the
  // weights packed once (step_init) and the state kept in the workspace
  // between calls. Each layer is one fused product over [x | h] against the
  // packed [W_ih | W_hh]: no GEMM, no packing, no allocation per call. (GRU
  // needs W_in x apart from W_hn h: it runs the two halves of the depth one
  // after the other and passes the first through xp.)
  struct StepLayer {
    T *w, *bx, *bhn;
    T* xp;             // (B, G*H): zeros, or GRU's x W_ih^T of this step
    T* cat;            // (B, I_l + H): [x_l | h_l], h_l the carried state
    T *hnext, *c, *cnext;
    int64_t K;         // I_l + H
  };

  static StepLayer step_layout(const RnnDesc& d, int64_t layer, char* base, size_t* size) {
    Carver c(base);
    StepLayer out{};
    const int64_t B = d.B, H = d.H, GH = G * H, Hp = (H + TU - 1) / TU * TU;
    for (int64_t l = 0; l < d.L; ++l) {
      StepLayer s;
      s.K = d.in_size(l) + H;
      s.w = c.take<T>(Hp * G * s.K);
      s.bx = c.take<T>(GH);
      s.bhn = c.take<T>(H);
      s.xp = c.take<T>(B * GH);
      s.cat = c.take<T>(B * s.K);
      s.hnext = c.take<T>(B * H);
      s.c = c.take<T>(Cell::kHasC ? B * H : 0);
      s.cnext = c.take<T>(Cell::kHasC ? B * H : 0);
      if (l == layer) out = s;
    }
    if (size) *size = c.used;
    return out;
  }

  static size_t step_size(const RnnDesc& d) {
    size_t size = 0;
    step_layout(d, 0, nullptr, &size);
    return size;
  }

  static void step_init(const RnnDesc& d, char* ws, const T* const* weights) {
    const int64_t H = d.H, GH = G * H;
    for (int64_t l = 0; l < d.L; ++l) {
      StepLayer s = step_layout(d, l, ws, nullptr);
      const int64_t In = d.in_size(l);
      const T* const* w = weights + 4 * l;
      pack_rows(H, w[0], In, In, 0, s.K, s.w, 0, 1);
      pack_rows(H, w[1], H, H, In, s.K, s.w, 0, 1);
      combine_bias(d, w[2], w[3], s.bx, s.bhn);
      for (int64_t k = 0; k < d.B * GH; ++k) s.xp[k] = T(0);
      for (int64_t i = 0; i < d.B * s.K; ++i) s.cat[i] = T(0);
      if (Cell::kHasC)
        for (int64_t i = 0; i < d.B * H; ++i) s.c[i] = T(0);
    }
  }

  // Reads (set=false) or writes (set=true) the carried state, (L, B, H).
  static void step_state(const RnnDesc& d, char* ws, T* h, T* c, bool set) {
    const int64_t B = d.B, H = d.H;
    for (int64_t l = 0; l < d.L; ++l) {
      StepLayer s = step_layout(d, l, ws, nullptr);
      const int64_t In = d.in_size(l);
      for (int64_t b = 0; b < B; ++b)
        for (int64_t j = 0; j < H; ++j) {
          T& hs = s.cat[b * s.K + In + j];
          T* hu = h + (l * B + b) * H + j;
          if (set) hs = *hu; else *hu = hs;
          if (Cell::kHasC && c) {
            T* cu = c + (l * B + b) * H + j;
            if (set) s.c[b * H + j] = *cu; else *cu = s.c[b * H + j];
          }
        }
      if (set && l + 1 < d.L) {  // layer l+1 reads h_l as its input
        StepLayer n = step_layout(d, l + 1, ws, nullptr);
        for (int64_t b = 0; b < B; ++b)
          for (int64_t j = 0; j < H; ++j) n.cat[b * n.K + j] = s.cat[b * s.K + In + j];
      }
    }
  }

  // x (B, I) in, y (B, H) = top layer's new h out; the state advances.
  static void step(const RnnDesc& d, char* ws, const T* x, T* y) {
    const int64_t B = d.B, H = d.H;
    TeamBarrier bar;
    // A single step is bound by reading the weights: a second thread pays as
    // soon as they outgrow one core's L2 (then each core holds half).
#pragma omp parallel num_threads(team_size(d, 1, int64_t(1) << 16))
    {
      DenormalGuard guard;
      const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
      const Part P = partition(d, TU, MR, tid, nt);
      if (!P.idle) {
        for (int64_t l = 0; l < d.L; ++l) {
          StepLayer s = step_layout(d, l, ws, nullptr);
          const int64_t In = d.in_size(l);
          StepLayer next = l + 1 < d.L ? step_layout(d, l + 1, ws, nullptr) : StepLayer{};
          if (l == 0)
            for (int64_t b = 0; b < B; ++b)
              if (P.sync ? tid == 0 : P.owns(b))
                for (int64_t i = 0; i < In; ++i) s.cat[b * s.K + i] = x[b * In + i];
          if (l == 0 && P.sync) bar.wait(nt);
          FwdRow<T> row;
          row.bx = s.bx;
          row.bhn = s.bhn;
          row.H = H;
          row.cstore = row.hnstore = nullptr;
          for (int64_t u = P.u0; u < P.u1; ++u) {
            const T* w = s.w + u * s.K * G * TU;
            for (int64_t r0 = 0; r0 < B; r0 += MR) {
              if (!P.owns(r0)) continue;
              const int64_t mr = min64(MR, B - r0);
              V acc[MR][NV][G];
              if (Cell::kSplitN) {  // x W_ih^T first, kept in xp
                if (mr == 1)
                  fused_product<1>(w, s.cat, s.K, In, r0, mr, acc);
                else
                  fused_product<MR>(w, s.cat, s.K, In, r0, mr, acc);
                for (int64_t i = 0; i < mr; ++i)
                  for (int64_t v = 0; v < NV; ++v) {
                    const int64_t j = u * TU + v * L, n = min64(L, H - j);
                    for (int64_t g = 0; g < G && n > 0; ++g)
                      storen(s.xp + (r0 + i) * G * H + g * H + j, acc[i][v][g], n);
                  }
                const T* wh = w + In * G * TU;
                if (mr == 1)
                  fused_product<1>(wh, s.cat + In, s.K, H, r0, mr, acc);
                else
                  fused_product<MR>(wh, s.cat + In, s.K, H, r0, mr, acc);
              } else {
                if (mr == 1)
                  fused_product<1>(w, s.cat, s.K, s.K, r0, mr, acc);
                else
                  fused_product<MR>(w, s.cat, s.K, s.K, r0, mr, acc);
              }
              for (int64_t i = 0; i < mr; ++i) {
                const int64_t r = r0 + i;
                row.xp = s.xp + r * G * H;
                row.hprev = s.cat + r * s.K + In;
                row.cprev = s.c + r * H;
                row.hnext = s.hnext + r * H;
                row.cnext = s.cnext + r * H;
                row.y = next.cat ? next.cat + r * next.K : y + r * H;
                for (int64_t v = 0; v < NV; ++v) {
                  const int64_t j = u * TU + v * L, n = min64(L, H - j);
                  if (n <= 0) break;
                  Cell::template forward<false>(acc[i][v], row, j, n, d.act);
                }
              }
            }
          }
          if (P.sync) bar.wait(nt);
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
  }

  // ----------------------------------------------------------------- backward
  static void backward(const RnnDesc& d, const RnnArgs<T>& a) {
    Reserve R = reserve_layout(d, a.reserve, nullptr);
    Scratch S = scratch_layout(d, Mode::kBackward, a.scratch, nullptr);
    const int64_t smax = sort_rows(d, a.lengths, S);
    const int64_t T_ = d.T, B = d.B, H = d.H, GH = G * H, D = d.D;
    TeamBarrier bar;
#pragma omp parallel num_threads(team_size(d, smax))
    {
      DenormalGuard guard;
      const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
      for (int64_t l = d.L - 1; l >= 0; --l) {
        const int64_t In = d.in_size(l);
        const T* dyl = l == d.L - 1 ? a.dy : S.dyl[l & 1];
        T* dxin = l == 0 ? a.dx : S.dyl[(l - 1) & 1];
        const T* xin = l == 0 ? R.x : R.y + (l - 1) * R.ys;
        const T* yl = R.y + l * R.ys;
        for (int64_t dir = 0; dir < D; ++dir) {
          const int64_t ld = l * D + dir;
          const T* const* w = a.weights + 4 * ld;
          T* const* dw = a.dweights + 4 * ld;
          T* xp = R.xp + ld * R.xs;
          T* aux = R.aux + ld * R.as;
          pack_backward(d, w[1], S.wp, tid, nth);
          for (int64_t r = tid; r < B; r += nth) {  // sorted h0 for the dW_hh term
            const int64_t b = S.perm[r];
            for (int64_t j = 0; j < H; ++j) S.h[0][r * H + j] = R.h0[(ld * B + b) * H + j];
          }
          bar.wait(nth);
          const T* dg0 =
              time_loop_backward(d, a, R, S, xp, aux, yl, dyl, ld, dir == 1, smax, bar, tid,
                                 nth);
          // Padded steps must not reach the weight gradients.
          for (int64_t r = tid; r < B; r += nth) {
            const int64_t b = S.perm[r];
            for (int64_t t = S.lens[r]; t < T_; ++t) {
              for (int64_t k = 0; k < GH; ++k) xp[(t * B + b) * GH + k] = T(0);
              if (Cell::kSplitN)
                for (int64_t j = 0; j < H; ++j) aux[(t * B + b) * H + j] = T(0);
            }
          }
          bar.wait(nth);
          weight_gradients(d, S, bar, dg0, xp, aux, xin, yl, w, dw, dxin, In, dir, tid, nth);
        }
      }
    }
  }

  static T* time_loop_backward(const RnnDesc& d, const RnnArgs<T>& a, const Reserve& R,
                                 Scratch& S, T* xp, T* aux, const T* yl, const T* dyl,
                                 int64_t ld, bool rev, int64_t smax, TeamBarrier& bar,
                                 int tid, int nth) {
    const int64_t B = d.B, H = d.H, GH = G * H, DH = d.D * H, dir = rev ? 1 : 0;
    const Part P = partition(d, TUB, MRB, tid, nth);
    T *dgprev = S.dg[0], *dgcur = S.dg[1];
    BwdRow<T> row;
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
        const T* w = S.wp + u * GH * TUB;
        for (int64_t r0 = 0; r0 < nact; r0 += MRB) {
          if (!P.owns(r0)) continue;
          const int64_t mr = min64(MRB, nact - r0);
          V prod[MRB][NVB];
          if (r0 < nprev) {
            const int64_t mp = min64(mr, nprev - r0);
            if (mp == 1)
              backward_product<1>(w, dgprev, GH, r0, mp, prod);
            else
              backward_product<MRB>(w, dgprev, GH, r0, mp, prod);
          }
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
              row.dg = dgcur + r * GH;
              row.dc = S.dc + r * H;
              row.dhd = S.dhd + r * H;
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
              const int64_t j = u * TUB + v * L, n = min64(L, H - j);
              if (n <= 0) break;
              const int64_t hidx = (ld * B + b) * H + j;
              V dh;
              if (carried) {
                dh = prod[i][v];
                if (Cell::kSplitN) dh += loadn(S.dhd + r * H + j, n);
              } else {
                dh = loadn(a.dhn + hidx, n);
                if (Cell::kHasC) storen(S.dc + r * H + j, loadn(a.dcn + hidx, n), n);
              }
              if (step < 0) {  // dh0, dc0
                storen(a.dh0 + hidx, dh, n);
                if (Cell::kHasC) storen(a.dc0 + hidx, loadn(S.dc + r * H + j, n), n);
                continue;
              }
              dh += loadn(dyl + tb * DH + dir * H + j, n);
              Cell::backward(dh, row, j, n, d.act);
            }
          }
        }
      }
      if (P.sync) bar.wait(nth);
      if (step >= 0) {
        T* tmp = dgprev; dgprev = dgcur; dgcur = tmp;
      }
    }
    return dgprev;  // dG of step 0, compact rows (the same on every thread)
  }

  // prod[i][v] = sum_k dG[r0+i][k] W_hh[k][tile unit v*L..] over k < G*H.
  template <int64_t MRt>
  static RNNKIT_INLINE void backward_product(const T* w, const T* dg, int64_t GH, int64_t r0,
                                             int64_t mr, V (&prod)[MRB][NVB]) {
    const T* dr[MRt];
#pragma GCC unroll 16
    for (int64_t i = 0; i < MRt; ++i) {
      dr[i] = dg + (r0 + (i < mr ? i : 0)) * GH;
#pragma GCC unroll 2
      for (int64_t v = 0; v < NVB; ++v) prod[i][v] = V{};
    }
    for (int64_t k = 0; k < GH; ++k) {
#pragma GCC unroll 2
      for (int64_t v = 0; v < NVB; ++v) {
        const V wv = load(w + k * TUB + v * L);
#pragma GCC unroll 16
        for (int64_t i = 0; i < MRt; ++i) prod[i][v] += dr[i][k] * wv;
      }
    }
  }

  // After the time loop of one (layer, dir): every large product at once.
  static void weight_gradients(const RnnDesc& d, const Scratch& S, TeamBarrier& bar,
                               const T* dg0, const T* dgx,
                               const T* aux, const T* xin, const T* yl, const T* const* w,
                               T* const* dw, T* dxin, int64_t In, int64_t dir, int tid,
                               int nth) {
    const int64_t T_ = d.T, B = d.B, H = d.H, GH = G * H, DH = d.D * H, TB = T_ * B;
    // dx_in (+)= dG W_ih (both directions add into one input gradient)
    gemm<T>(TB, In, GH, dgx, GH, 1, w[0], In, 1, dxin, In, dir > 0, S.pack, &bar, tid, nth);
    // dW_ih += dG^T x_in
    gemm<T>(GH, In, TB, dgx, 1, GH, xin, In, 1, dw[0], In, true, S.pack, &bar, tid, nth);
    // dW_hh += dG_h^T h_prev: h_prev of step t is y_{t-1} (reverse: y_{t+1}),
    // zero past a row's end; the first step's h0 term comes from the compact
    // dG of step 0 and the sorted h0.
    const int64_t Mx = Cell::kSplitN ? GH - H : GH;  // rows where dG_h == dG_x
    const int64_t K = (T_ - 1) * B;
    const T* dgx_t = dir == 0 ? dgx + B * GH : dgx;
    const T* y_t = dir == 0 ? yl + dir * H : yl + B * DH + dir * H;
    gemm<T>(Mx, H, K, dgx_t, 1, GH, y_t, DH, 1, dw[1], H, true, S.pack, &bar, tid, nth);
    if (Cell::kSplitN) {
      const T* hn_t = dir == 0 ? aux + B * H : aux;
      gemm<T>(H, H, K, hn_t, 1, H, y_t, DH, 1, dw[1] + Mx * H, H, true, S.pack, &bar, tid, nth);
    }
    gemm<T>(GH, H, B, dg0, 1, GH, S.h[0], H, 1, dw[1], H, true, S.pack, &bar, tid, nth);
    // biases: column sums over all steps, columns split across threads.
    if (dw[2] || dw[3]) {
      const int64_t c0 = GH * tid / nth, c1 = GH * (tid + 1) / nth;
      const int64_t cx = min64(c1, Mx);  // [c0, cx): dG_h == dG_x
      for (int64_t r = 0; r < TB; ++r) {
        const T* g = dgx + r * GH;
        for (int64_t c = c0; c < c1; ++c) {
          if (dw[2]) dw[2][c] += g[c];
          if (dw[3] && c < cx) dw[3][c] += g[c];
        }
        if (dw[3])
          for (int64_t c = max64(c0, Mx); c < c1; ++c) dw[3][c] += aux[r * H + (c - Mx)];
      }
    }
    bar.wait(nth);
  }
};

}  // namespace RNNKIT_NS
}  // namespace rnnkit
