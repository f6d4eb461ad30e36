// cell.h: the contract between a cell (csrc/<cell>.cpp) and the shared driver
// (recurrent.h, step.h). The driver owns layers, directions, lengths, threads,
// the time loop, every matrix product and all memory; a cell owns only the
// pointwise math of one step, applied to one row and n <= VL hidden units
// j .. j+n-1 (one vector; the tail of a row has n < VL).
//
// A cell is a struct template over the element type Real, declared in
// namespace rnnkit::RNNKIT_NS, that provides:
//
//   static constexpr int64_t G;     gate rows per hidden unit (= its line in
//                                   cells.h); XP rows are [gate 0 | gate 1 | ..]
//                                   each H wide, in PyTorch's gate order
//   static constexpr bool kHasC;    carries a cell state c next to h (LSTM)
//   static constexpr bool kSplitN;  the last gate's recurrent product is kept
//                                   apart from its input product (GRU: n =
//                                   tanh(x W_in + r * (h W_hn + b_hn))): b_hh of
//                                   that gate is not folded into bx, and the
//                                   hidden-side gradient of its rows differs
//                                   from the input side
//   static constexpr bool kHasAct;  uses the nonlinearity template argument
//                                   (vanilla RNN); cells without it are
//                                   compiled for kTanh only, which they ignore
//   static constexpr int64_t MR, NV;  forward register tile: MR rows x NV
//                                   vectors of units x G accumulators
//
//   template <bool kTrain, Act kAct>
//   static void forward(const V* acc, const FwdRow<Real>& r, int64_t j, int64_t n);
//     acc[g] = (h W_hh^T)[g*H + j ..] for this row (no bias). Reads r.xp
//     (x W_ih^T), r.bx, r.bhn, r.hprev, r.cprev; writes h' to r.hnext and r.y,
//     c' to r.cnext. With kTrain it also stores what backward needs: the gate
//     activations over r.xp (XP is not read again by the forward), and
//     c' (LSTM) or W_hn h + b_hn (GRU) to r.cstore / r.hnstore (the two alias
//     one (T, B, H) buffer, "aux"). Nothing else survives to backward; what is
//     cheap to recompute from these (tanh(c')) is recomputed.
//
//   template <Act kAct>
//   static void backward(V dh, const BwdRow<Real>& r, int64_t j, int64_t n);
//     dh = dL/dh_t (from the output and the next step). Reads the activations
//     in r.xp and r.c, r.cprev, r.hprev, r.hn as the cell needs them; writes
//     the pre-activation gradients dG over r.xp (input side: the driver turns
//     them into dx, dW_ih, b_ih and, where they agree, dW_hh and b_hh) and
//     into r.dg (compact rows, hidden side: the next step's dG W_hh). An LSTM
//     updates r.dc in place (dL/dc_t in, dL/dc_{t-1} out); a GRU writes the
//     gradient that flows straight to h_{t-1} (z * dh) to r.dhd and the
//     hidden-side dG of the n rows over r.hn.
//
// Both functions are always inlined into the driver's tile loops; they must
// not allocate, branch on data beyond selects, or touch other units' lanes.
// Then csrc/<cell>.cpp ends with RNNKIT_DEFINE_CELL(<cell>, Struct) (see
// cell_entry.h) and the cell gets one line in cells.h.
#pragma once

#include "common.h"
#include "simd/vec.h"

namespace rnnkit {
namespace RNNKIT_NS {

// One row of a forward step (pointers already offset to the row).
template <class Real>
struct FwdRow {
  Real* xp;           // (G*H) x W_ih^T at (t, b); activations stored here (train)
  const Real* bx;     // (G*H) b_ih + b_hh (kSplitN: last gate b_ih only)
  const Real* bhn;    // (H) kSplitN: b_hh of the last gate
  const Real* hprev;  // (H) state before the step
  const Real* cprev;  // (H) kHasC: cell state before the step
  Real* hnext;        // (H) state after the step (compact, sorted rows)
  Real* cnext;        // (H) kHasC: cell state after the step
  Real* y;            // (H) output at (t, b) of this direction
  Real* cstore;       // (H) kHasC: c_t kept for backward (train)
  Real* hnstore;      // (H) kSplitN: W_hn h + b_hn kept for backward (train)
  int64_t H;
  // Layer options (issue 12); null / 0 when off. Cells apply them through
  // zone() and put_h() below, the driver sets the pointers per row.
  const Real* rmask = nullptr;  // (H) recurrent dropout multipliers of the row
  Real* hin = nullptr;          // (H) rmask * h', read by the next step's product
  Real* hinstore = nullptr;     // (H) train: rmask * h' at (t, b), for dW_hh
  const uint8_t* zh = nullptr;  // (H) train: zoneout flags of h at (t, b)
  const uint8_t* zc = nullptr;  // (H) train: zoneout flags of c at (t, b)
  Real zp = 0;                  // inference: zoneout rate (the expectation)
  Real* ctstore = nullptr;      // (H) train, kHasC with zoneout: c~ before zoneout
  const Real* dmask = nullptr;  // (H) dropout multipliers of the output at (t, b)
  Real* ym = nullptr;           // (H) dmask * h', what the next layer reads
};

// One row of a backward step.
template <class Real>
struct BwdRow {
  Real* xp;           // (G*H) activations in, dG (input side) out
  Real* dg;           // (G*H) compact dG (hidden side) for the recurrent product
  const Real* c;      // (H) kHasC: c_t
  const Real* cprev;  // (H) kHasC: c_{t-1} (c0 at the first step)
  Real* dc;           // (H) kHasC: dL/dc_t in (carried), dL/dc_{t-1} out
  const Real* hprev;  // (H) kSplitN: h_{t-1} (h0 at the first step)
  Real* hn;           // (H) kSplitN: W_hn h + b_hn in, its gradient out
  Real* dhd;          // (H) kSplitN: dL/dh_{t-1} through h' = ... + z * h (out);
                      // with zoneout every cell writes d * dh (+ the GRU's z * dh~)
  int64_t H;
  const uint8_t* zh = nullptr;  // (H) zoneout flags of h at (t, b), or null
  const uint8_t* zc = nullptr;  // (H) zoneout flags of c at (t, b), or null
  const Real* ct = nullptr;     // (H) kHasC with zoneout: c~_t (else null: r.c)
};

// sigma of the vanilla RNN, chosen at compile time (no test per tile).
template <Act kAct, class V>
RNNKIT_INLINE V activate(V a) {
  if (kAct == kTanh) return vtanh(a);
  if (kAct == kRelu) return vrelu(a);
  return vsigmoid(a);
}

// n zoneout flags (uint8, nonzero = keep the previous value) as a lane mask.
template <class Real>
RNNKIT_INLINE auto keep_flags(const uint8_t* m, int64_t n) {
  using V = vec_t<Real>;
  Real t[Vec<Real>::kLanes] = {};
  for (int64_t e = 0; e < n; ++e) t[e] = m[e] ? Real(1) : Real(0);
  return loadn(t, n) != V{};
}

// Zoneout of one vector (issue 12): in training the flags select the previous
// value, at inference (zp > 0) the expectation zp * prev + (1 - zp) * now.
template <class Real, class V>
RNNKIT_INLINE V zone(const uint8_t* keep, Real zp, const Real* prev, V now, int64_t j,
                     int64_t n) {
  if (keep) return keep_flags<Real>(keep + j, n) ? loadn(prev + j, n) : now;
  if (zp != Real(0)) return zp * loadn(prev + j, n) + (Real(1) - zp) * now;
  return now;
}

// The new state h' of units j..j+n: to the next step, the output, and with
// the options their masked copies (the next step's product, the next layer).
template <class Real, class V>
RNNKIT_INLINE void put_h(const FwdRow<Real>& r, int64_t j, int64_t n, V h) {
  storen(r.hnext + j, h, n);
  storen(r.y + j, h, n);
  if (r.hin) {
    const V hm = h * loadn(r.rmask + j, n);
    storen(r.hin + j, hm, n);
    if (r.hinstore) storen(r.hinstore + j, hm, n);
  }
  if (r.ym) storen(r.ym + j, h * loadn(r.dmask + j, n), n);
}

// Backward of zoneout on h: returns dL/dh~ = (1 - d) * dh and sets *direct
// to d * dh, the part that flows straight to h_{t-1}. Without zoneout: dh.
template <class Real, class V>
RNNKIT_INLINE V unzone_h(const BwdRow<Real>& r, V dh, int64_t j, int64_t n, V* direct) {
  if (!r.zh) return dh;
  const auto k = keep_flags<Real>(r.zh + j, n);
  *direct = k ? dh : V{};
  return k ? V{} : dh;
}

// An Act as a type, for generic lambdas (cell_entry.h).
template <Act kAct>
struct ActTag {
  static constexpr Act value = kAct;
};

}  // namespace RNNKIT_NS
}  // namespace rnnkit
