// rnn.cpp: the Elman cell, h' = σ(W_ih x + b_ih + W_hh h + b_hh) with
// σ ∈ {tanh, relu, sigmoid}.
//
// G = 1. A training forward stores h' (in XP): each derivative is a function
// of the output — tanh' = 1 - h'^2, σ' = h' (1 - h'), relu' = [h' > 0].
#include "kernels.h"
#include "recurrent.h"

namespace rnnkit {
namespace RNNKIT_NS {

template <class T>
struct RnnCell {
  using V = vec_t<T>;
  static constexpr int64_t G = 1;
  static constexpr bool kHasC = false, kSplitN = false;
  static constexpr int64_t MR = RNNKIT_VBYTES == 64 ? 12 : 6;
  static constexpr int64_t NV = 2;

  template <bool kTrain>
  static RNNKIT_INLINE void forward(const V* acc, const FwdRow<T>& r, int64_t j, int64_t n,
                                    int act) {
    const V a = loadn(r.xp + j, n) + loadn(r.bx + j, n) + acc[0];
    const V h = act == kTanh ? vtanh(a) : act == kRelu ? vrelu(a) : vsigmoid(a);
    storen(r.hnext + j, h, n);
    storen(r.y + j, h, n);
    if (kTrain) storen(r.xp + j, h, n);
  }

  static RNNKIT_INLINE void backward(V dh, const BwdRow<T>& r, int64_t j, int64_t n,
                                     int act) {
    const V h = loadn(r.xp + j, n);
    const V one = splat<T>(1), zero = splat<T>(0);
    const V da = act == kTanh   ? dh * (one - h * h)
                 : act == kRelu ? (h > zero ? dh : zero)
                                : dh * h * (one - h);
    storen(r.xp + j, da, n);
    storen(r.dg + j, da, n);
  }
};

#include "cell_entry.h"
RNNKIT_DEFINE_CELL(rnn, RnnCell)

}  // namespace RNNKIT_NS
}  // namespace rnnkit
