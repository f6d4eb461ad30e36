// layernorm.h: the arguments of the layer-normalised LSTM and GRU kernels
// (csrc/layernorm.cpp), haste's LayerNormLSTM / LayerNormGRU. ISA-independent:
// included by the kernel file, dispatch.cpp and bindings.cpp alike.
//
// Equations (the specification is python/rnnkit/reference/options.py), per
// layer and direction, LN(v; γ, β) = γ (v - mean v) / sqrt(var v + eps) + β over
// the whole G*H row (biased variance, eps = kLnEps):
//
//   a_x = LN(W_ih x_t; γ_ih) + b_ih          a_h = LN(W_hh h_{t-1}; γ_hh) + b_hh
//   LSTM: i, f, g, o from a_x + a_h;  c_t = f c_{t-1} + i g (carried as is)
//         h_t = o tanh(LN(c_t; γ_c, β_c))
//   GRU:  r, z = σ(a_x + a_h) on their rows;  n = tanh(a_x[n] + r a_h[n])
//         h_t = n + z (h_{t-1} - n)
//
// The argument block is RnnArgs (common.h) with 8 weight pointers per (layer,
// direction) instead of 4, in the order of LnSlot; dweights likewise (ADDED
// into). b_ih, b_hh are null without bias; γ_c, β_c are null for the GRU.
// Plus the option masks of the shared mask contract (training only; forward
// and backward get the same ones), in real time, indexed by the original row:
//
//   rec   L*D entries (B, H) multipliers on h_{t-1} before W_hh, or null
//         (recurrent dropout: h_in = R h_{t-1}; everything else sees h_{t-1})
//   zh    L*D entries (T, B, H) uint8, 1 = h keeps its previous value, or null
//   zc    L*D entries (T, B, H) uint8 for the LSTM's c, or null (zoneout; the
//         LSTM's h reads the new c, LN(c̃_t), as in the paper)
//   drop  L-1 entries (T, B, D*H) multipliers on layer k's output before layer
//         k+1 reads it, or null (dropout between layers)
//   zoneout  p: at inference (train false) h_t = p h_{t-1} + (1-p) h̃_t (and c)
//
// A null list means no entry is given.
#pragma once

#include "common.h"

namespace rnnkit {

enum LnSlot : int {
  kLnWih = 0,
  kLnWhh = 1,
  kLnBih = 2,
  kLnBhh = 3,
  kLnGih = 4,  // ln_weight_ih (G*H)
  kLnGhh = 5,  // ln_weight_hh (G*H)
  kLnGc = 6,   // ln_weight_c (H), LSTM
  kLnBc = 7,   // ln_bias_c (H), LSTM
  kLnSlots = 8
};

// The layer-norm epsilon (rnnkit.reference.options.LN_EPS, PyTorch's default).
constexpr double kLnEps = 1e-5;

// The cells the layer-norm kernels serve.
constexpr bool ln_cell_supported(Cell cell) {
  return cell == Cell::lstm || cell == Cell::gru;
}

template <class Real>
struct LnArgs : RnnArgs<Real> {
  const Real* const* rec = nullptr;
  const uint8_t* const* zh = nullptr;
  const uint8_t* const* zc = nullptr;
  const Real* const* drop = nullptr;
  double zoneout = 0.0;
};

}  // namespace rnnkit
