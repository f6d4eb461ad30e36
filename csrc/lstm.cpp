// lstm.cpp: the LSTM cell, PyTorch's gate order i, f, g, o.
//
//   i = σ(W_ii x + b_ii + W_hi h + b_hi)      f = σ(... f rows ...)
//   g = tanh(... g rows ...)                   o = σ(... o rows ...)
//   c' = f * c + i * g                         h' = o * tanh(c')
//
// G = 4: XP rows are [i | f | g | o], each H wide. A training forward stores
// the four activations (in XP) and c' (aux, T x B x H); backward recomputes
// tanh(c') rather than storing it. b_ih + b_hh are folded into one bias.
#include "cell_entry.h"
#include "kernels.h"

namespace rnnkit {
namespace RNNKIT_NS {

template <class Real>
struct LstmCell {
  using V = vec_t<Real>;
  static constexpr int64_t G = 4;
  static constexpr bool kHasC = true, kSplitN = false, kHasAct = false;
  // rows per fused tile: MR x NV x 4 accumulators in registers
  static constexpr int64_t MR = RNNKIT_VBYTES == 64 ? 6 : 3;
  static constexpr int64_t NV = 1;

  template <bool kTrain, Act>
  static RNNKIT_INLINE void forward(const V* acc, const FwdRow<Real>& r, int64_t j,
                                    int64_t n) {
    const int64_t H = r.H;
    V gate[4];
    for (int g = 0; g < 4; ++g)
      gate[g] = loadn(r.xp + g * H + j, n) + loadn(r.bx + g * H + j, n) + acc[g];
    const V i = vsigmoid(gate[0]), f = vsigmoid(gate[1]);
    const V g = vtanh(gate[2]), o = vsigmoid(gate[3]);
    const V ct = f * loadn(r.cprev + j, n) + i * g;  // c' = f * c + i * g
    const V ht = o * vtanh(ct);                      // h' = o * tanh(c')
    // zoneout (off: c = ct, h = ht): h~ reads the new c~, as in the paper
    const V c = zone(r.zc, r.zp, r.cprev, ct, j, n);
    put_h(r, j, n, zone(r.zh, r.zp, r.hprev, ht, j, n));
    storen(r.cnext + j, c, n);
    if (kTrain) {
      storen(r.xp + j, i, n);
      storen(r.xp + H + j, f, n);
      storen(r.xp + 2 * H + j, g, n);
      storen(r.xp + 3 * H + j, o, n);
      storen(r.cstore + j, c, n);
      if (r.ctstore) storen(r.ctstore + j, ct, n);
    }
  }

  template <Act>
  static RNNKIT_INLINE void backward(V dh, const BwdRow<Real>& r, int64_t j,
                                     int64_t n) {
    const int64_t H = r.H;
    const V i = loadn(r.xp + j, n), f = loadn(r.xp + H + j, n);
    const V g = loadn(r.xp + 2 * H + j, n), o = loadn(r.xp + 3 * H + j, n);
    if (r.zh) {  // zoneout of h: d * dh goes straight to h_{t-1}
      V direct{};
      dh = unzone_h(r, dh, j, n, &direct);
      storen(r.dhd + j, direct, n);
    }
    const V tc = vtanh(loadn((r.ct ? r.ct : r.c) + j, n));
    V dcin = loadn(r.dc + j, n), dcd{};
    if (r.zc) {  // zoneout of c: e * dc goes straight to c_{t-1}
      const auto k = keep_flags<Real>(r.zc + j, n);
      dcd = k ? dcin : V{};
      dcin = k ? V{} : dcin;
    }
    // h' = o * tanh(c')
    const V dout = dh * tc;
    const V dc = dcin + dh * o * (Real(1) - tc * tc);
    // c' = f * c + i * g
    const V di = dc * g, dg = dc * i, df = dc * loadn(r.cprev + j, n);
    storen(r.dc + j, r.zc ? dc * f + dcd : dc * f, n);
    // through the nonlinearities: σ' = s (1 - s), tanh' = 1 - t^2
    const V dpre[4] = {di * i * (Real(1) - i), df * f * (Real(1) - f),
                       dg * (Real(1) - g * g), dout * o * (Real(1) - o)};
    for (int k = 0; k < 4; ++k) {
      storen(r.xp + k * H + j, dpre[k], n);
      storen(r.dg + k * H + j, dpre[k], n);
    }
  }
};

RNNKIT_DEFINE_CELL(lstm, LstmCell)

}  // namespace RNNKIT_NS
}  // namespace rnnkit
