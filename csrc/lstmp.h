// lstmp.h: the projected LSTM (PyTorch's LSTMP, torch.nn.LSTM(proj_size=P)):
// its problem description and argument block, shared by the kernel
// (lstmp.cpp, compiled once per ISA), dispatch.cpp and bindings.cpp. No SIMD.
//
//   i, f, g, o = σ, σ, tanh, σ (W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
//   c_t = f * c_{t-1} + i * g          (H wide)
//   m_t = o * tanh(c_t)                (H wide)
//   h_t = W_hr m_t                     (P wide: the state and the output)
//
// Letters: T time, B batch, I input, H hidden (c, gates), P projection (h, y),
// L layers, D directions; layer k > 0 reads D*P features. Weights come as 5
// pointers per (layer, direction) l*D + d, in the order W_ih (4H, I_l),
// W_hh (4H, P), b_ih (4H), b_hh (4H), W_hr (P, H); biases null without bias.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "common.h"

namespace rnnkit {

//
// Masks (the options' contract, reference/options.py; training only, in real
// time, indexed by the original row b), each kind given for every (layer,
// direction) or not at all:
//   rec   (B, P) per l*D + d, multipliers on h_{t-1} entering W_hh
//         (recurrent dropout): gates read R * h_{t-1}
//   zh    (T, B, P) uint8 per l*D + d, 1 = h keeps h_{t-1} (zoneout)
//   zc    (T, B, H) uint8 per l*D + d, 1 = c keeps c_{t-1} (zoneout); m_t
//         reads the new c~_t
//   drop  (T, B, D*P) per layer l < L-1, multipliers on its output (dropout)
// Inference takes no mask; zoneout > 0 there uses the expectation
// h_t = p h_{t-1} + (1 - p) h~_t (and c alike).
struct LstmpDesc {
  int64_t T = 0, B = 0, I = 0, H = 0, P = 0, L = 1, D = 1;
  bool bias = true;
  bool rec = false, zh = false, zc = false, drop = false;  // masks given
  int threads = 1;
  int64_t in_size(int64_t layer) const { return layer == 0 ? I : D * P; }
};

constexpr int kLstmpWeights = 5;  // W_ih, W_hh, b_ih, b_hh, W_hr

// The reserve opens with kLstmpHeader int64 that the bindings fill in a
// training forward (sizes and masks) and check in its backward; the kernels
// skip them.
constexpr int64_t kLstmpHeader = 16;

// Pointers for one call; as RnnArgs (common.h) with h, y P wide and c H wide.
// Backward overwrites dx, dh0, dc0 and ADDS into dweights (zeroing them is the
// caller's job).
template <class Real>
struct LstmpArgs {
  Real* y = nullptr;   // (T, B, D*P)
  Real* hn = nullptr;  // (L*D, B, P)
  Real* cn = nullptr;  // (L*D, B, H)
  Real* dx = nullptr;  // (T, B, I)
  Real* dh0 = nullptr;
  Real* dc0 = nullptr;
  Real* const* dweights = nullptr;  // 5 per (layer, direction)
  char* reserve = nullptr;          // training forward -> backward
  char* scratch = nullptr;          // free between calls
  const Real* x = nullptr;          // (T, B, I)
  const Real* h0 = nullptr;         // (L*D, B, P)
  const Real* c0 = nullptr;         // (L*D, B, H)
  const Real* const* weights = nullptr;
  const int64_t* lengths = nullptr;  // (B,), 1 <= len <= T, or null
  const Real* dy = nullptr;          // (T, B, D*P)
  const Real* dhn = nullptr;         // (L*D, B, P)
  const Real* dcn = nullptr;         // (L*D, B, H)
  // masks (forward, training; copied into the reserve for backward)
  const Real* const* rec = nullptr;    // L*D of (B, P)
  const uint8_t* const* zh = nullptr;  // L*D of (T, B, P)
  const uint8_t* const* zc = nullptr;  // L*D of (T, B, H)
  const Real* const* drop = nullptr;   // L-1 of (T, B, D*P)
  Real zoneout = 0;                    // inference: expectation of zoneout
  bool train = false;
};

}  // namespace rnnkit
