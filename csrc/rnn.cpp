// rnn.cpp: the Elman cell, h' = σ(W_ih x + b_ih + W_hh h + b_hh) with
// σ ∈ {tanh, relu, sigmoid}.
//
// G = 1. A training forward stores h' (in XP): each derivative is a function
// of the output — tanh' = 1 - h'^2, σ' = h' (1 - h'), relu' = [h' > 0].
#include "cell_entry.h"
#include "kernels.h"

namespace rnnkit {
namespace RNNKIT_NS {

template <class Real>
struct RnnCell {
  using V = vec_t<Real>;
  static constexpr int64_t G = 1;
  static constexpr bool kHasC = false, kSplitN = false, kHasAct = true;
  static constexpr int64_t MR = RNNKIT_VBYTES == 64 ? 12 : 6;
  static constexpr int64_t NV = 2;

  template <bool kTrain, Act kAct>
  static RNNKIT_INLINE void forward(const V* acc, const FwdRow<Real>& r, int64_t j,
                                    int64_t n) {
    const V a = loadn(r.xp + j, n) + loadn(r.bx + j, n) + acc[0];
    const V h = activate<kAct>(a);  // h~; zoneout below (h~ stays in XP)
    if (kTrain) storen(r.xp + j, h, n);
    put_h(r, j, n, zone(r.zh, r.zp, r.hprev, h, j, n));
  }

  template <Act kAct>
  static RNNKIT_INLINE void backward(V dh, const BwdRow<Real>& r, int64_t j,
                                     int64_t n) {
    if (r.zh) {  // zoneout: d * dh goes straight to h_{t-1}
      V direct{};
      dh = unzone_h(r, dh, j, n, &direct);
      storen(r.dhd + j, direct, n);
    }
    const V h = loadn(r.xp + j, n);
    const V one = splat<Real>(1), zero = splat<Real>(0);
    V da;
    if (kAct == kTanh)
      da = dh * (one - h * h);
    else if (kAct == kRelu)
      da = h > zero ? dh : zero;
    else
      da = dh * h * (one - h);
    storen(r.xp + j, da, n);
    storen(r.dg + j, da, n);
  }
};

RNNKIT_DEFINE_CELL(rnn, RnnCell)

}  // namespace RNNKIT_NS
}  // namespace rnnkit
