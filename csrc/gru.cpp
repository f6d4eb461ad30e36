// gru.cpp: the GRU cell, PyTorch's gate order r, z, n, reset after the product.
//
//   r = σ(W_ir x + b_ir + W_hr h + b_hr)       z = σ(... z rows ...)
//   n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
//   h' = (1 - z) * n + z * h
//
// G = 3. The hidden-side gradient of the n rows differs from the input side
// (it is scaled by r), so a training forward keeps hn = W_hn h + b_hn (aux,
// T x B x H) next to the activations r, z, n (in XP); backward overwrites XP
// with the input-side dG and aux with the hidden-side dG of the n rows.
#include "cell_entry.h"
#include "kernels.h"

namespace rnnkit {
namespace RNNKIT_NS {

template <class Real>
struct GruCell {
  using V = vec_t<Real>;
  static constexpr int64_t G = 3;
  static constexpr bool kHasC = false, kSplitN = true, kHasAct = false;
  static constexpr int64_t MR = RNNKIT_VBYTES == 64 ? 8 : 3;
  static constexpr int64_t NV = 1;

  template <bool kTrain, Act>
  static RNNKIT_INLINE void forward(const V* acc, const FwdRow<Real>& r, int64_t j,
                                    int64_t n) {
    const int64_t H = r.H;
    const V rg = vsigmoid(loadn(r.xp + j, n) + loadn(r.bx + j, n) + acc[0]);
    const V z = vsigmoid(loadn(r.xp + H + j, n) + loadn(r.bx + H + j, n) + acc[1]);
    const V hn = acc[2] + loadn(r.bhn + j, n);
    // n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    const V nn =
        vtanh(loadn(r.xp + 2 * H + j, n) + loadn(r.bx + 2 * H + j, n) + rg * hn);
    // h' = (1 - z) * n + z * h
    const V h = (Real(1) - z) * nn + z * loadn(r.hprev + j, n);
    put_h(r, j, n, zone(r.zh, r.zp, r.hprev, h, j, n));  // zoneout (off: h)
    if (kTrain) {
      storen(r.xp + j, rg, n);
      storen(r.xp + H + j, z, n);
      storen(r.xp + 2 * H + j, nn, n);
      storen(r.hnstore + j, hn, n);
    }
  }

  template <Act>
  static RNNKIT_INLINE void backward(V dh, const BwdRow<Real>& r, int64_t j,
                                     int64_t n) {
    const int64_t H = r.H;
    const V rg = loadn(r.xp + j, n), z = loadn(r.xp + H + j, n);
    const V nn = loadn(r.xp + 2 * H + j, n), hn = loadn(r.hn + j, n);
    V direct{};  // zoneout: d * dh goes straight to h_{t-1}
    if (r.zh) dh = unzone_h(r, dh, j, n, &direct);
    // h' = (1 - z) * n + z * h
    const V dn = dh * (Real(1) - z);
    const V dz = dh * (loadn(r.hprev + j, n) - nn);
    storen(r.dhd + j, r.zh ? dh * z + direct : dh * z, n);
    // n = tanh(a_n + r * hn)
    const V dnp = dn * (Real(1) - nn * nn);
    const V dr = dnp * hn, dhn = dnp * rg;
    const V drp = dr * rg * (Real(1) - rg), dzp = dz * z * (Real(1) - z);
    storen(r.xp + j, drp, n);
    storen(r.xp + H + j, dzp, n);
    storen(r.xp + 2 * H + j, dnp, n);
    storen(r.dg + j, drp, n);
    storen(r.dg + H + j, dzp, n);
    storen(r.dg + 2 * H + j, dhn, n);
    storen(r.hn + j, dhn, n);
  }
};

RNNKIT_DEFINE_CELL(gru, GruCell)

}  // namespace RNNKIT_NS
}  // namespace rnnkit
