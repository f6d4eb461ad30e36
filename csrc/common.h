// common.h: what every kernel shares — the problem description, the argument
// block, the workspace carving, thread helpers. No SIMD here; included by the
// per-ISA kernel files, dispatch.cpp and bindings.cpp alike.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace rnnkit {

enum Cell : int { kRNN = 0, kLSTM = 1, kGRU = 2 };
enum Act : int { kTanh = 0, kRelu = 1, kSigmoid = 2 };

// Dimension letters as in STYLE.md: T time, B batch, I input, H hidden,
// L layers, D directions (1 or 2), G gate rows per unit (1, 4, 3).
struct RnnDesc {
  int cell = kRNN;
  int act = kTanh;  // vanilla RNN only
  int64_t T = 0, B = 0, I = 0, H = 0, L = 1, D = 1;
  bool bias = true;
  int threads = 1;
  int64_t G() const { return cell == kLSTM ? 4 : cell == kGRU ? 3 : 1; }
  int64_t in_size(int64_t layer) const { return layer == 0 ? I : D * H; }
};

// Pointers for one call. Weights come as 4 pointers per (layer, direction) in
// the order W_ih, W_hh, b_ih, b_hh (biases null when desc.bias is false), the
// (layer, direction) pairs ordered l*D + d like PyTorch's h_n.
template <class T>
struct RnnArgs {
  // forward outputs
  T* y = nullptr;   // (T, B, D*H)
  T* hn = nullptr;  // (L*D, B, H)
  T* cn = nullptr;  // (L*D, B, H), LSTM only
  // backward outputs: dx, dh0, dc0 are overwritten; dweights are ADDED into
  T* dx = nullptr;
  T* dh0 = nullptr;
  T* dc0 = nullptr;
  T* const* dweights = nullptr;
  // workspace: reserve survives from a training forward to its backward,
  // scratch is free between calls. Sizes from <cell>_workspace_size.
  char* reserve = nullptr;
  char* scratch = nullptr;
  // inputs
  const T* x = nullptr;   // (T, B, I)
  const T* h0 = nullptr;  // (L*D, B, H)
  const T* c0 = nullptr;  // (L*D, B, H), LSTM only
  const T* const* weights = nullptr;
  const int64_t* lengths = nullptr;  // (B,), 1 <= len <= T, or null (all T)
  const T* dy = nullptr;             // (T, B, D*H)
  const T* dhn = nullptr;            // (L*D, B, H)
  const T* dcn = nullptr;            // (L*D, B, H), LSTM only
  bool train = false;
};

// Carves a buffer into 64-byte aligned pieces. Run over a null base it only
// adds up sizes, so the size query and the real layout are the same code.
struct Carver {
  char* base;
  size_t used = 0;
  explicit Carver(char* b) : base(b) {}
  template <class U>
  U* take(size_t count) {
    used = (used + 63) & ~size_t(63);
    U* p = base ? reinterpret_cast<U*>(base + used) : nullptr;
    used += count * sizeof(U);
    return p;
  }
};

struct WorkspaceSize {
  size_t reserve = 0;
  size_t scratch = 0;
};

}  // namespace rnnkit
