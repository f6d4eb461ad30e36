// blocks.h: the argument blocks of the kernels around the recurrent layers —
// the dense layer (linear.cpp), softmax cross-entropy (xent.cpp), the
// embedding table (embedding.cpp), gradient norms and the optimizer updates
// (optim.cpp). Each kernel runs its own OpenMP team of `threads` threads (one
// when the call is too small to pay for a second) and computes every output
// element on one thread in a fixed order, so results are bitwise identical for
// any thread count on one SIMD path. Kernels never allocate, never throw: the
// bindings validate every pointer and size (and the ids and targets) first.
// Also the dropout family's random masks (masks.cpp).
#pragma once

#include <stdint.h>

#include "common.h"

namespace rnnkit {

// y = act(x W^T + b) over N rows (linear_forward) and its gradients
// (linear_backward).
//
//   N, I, O        rows, input features, output features (all >= 1)
//   x  (N, I)      input (forward: read; backward: the forward's input)
//   W  (O, I)      weight, PyTorch's layout
//   b  (O)         bias, or null
//   act            -1: identity, else the Act of common.h (kTanh, kRelu,
//                  kSigmoid); the backward reads the activation's derivative
//                  from y (tanh' = 1 - y^2, sigmoid' = y (1 - y), relu' = y > 0)
//   y  (N, O)      forward: written; backward: the forward's output (read only
//                  when act >= 0)
//   dy (N, O)      backward: dL/dy
//   da (N, O)      backward scratch for dy * act'(.) (act >= 0 only; may be dy
//                  itself, which is then overwritten)
//   dW (O, I), db (O)  backward: ADDED into (db null without bias)
//   dx (N, I)      backward: overwritten with dL/dx, or null (not needed)
//   pack           gemm_pack_size<Real>(threads) elements of scratch
template <class Real>
struct LinearArgs {
  int64_t N = 0, I = 0, O = 0;
  int act = -1;
  const Real* x = nullptr;
  const Real* W = nullptr;
  const Real* b = nullptr;
  Real* y = nullptr;
  const Real* dy = nullptr;
  Real* da = nullptr;
  Real* dW = nullptr;
  Real* db = nullptr;
  Real* dx = nullptr;
  Real* pack = nullptr;
  int threads = 1;
};

// Softmax cross-entropy over rows of C logits, loss and gradient in one
// sweep of each row (it stays in L1 between the max, the sum and the write):
//
//   nll[n]  = log sum_c exp(z[n,c] - m) - (z[n,t] - m),  m = max_c z[n,c]
//   dz[n,:] = scale * (softmax(z[n,:]) - onehot(t)) on rows that count, 0 else
//
//   N, C           rows (>= 1), classes (>= 1)
//   z (N, C)       logits
//   target (N)     class ids; read only where valid[n] (bindings checked them
//                  to be in [0, C) there)
//   valid (N)      1 where the row counts (not ignore_index, mask true), 0 else
//   scale          1 / (rows that count) for "mean", 1 for "sum"
//   dz (N, C)      gradient out; may be z itself (the logits are overwritten)
//   nll (N)        per-row loss out, in double (0 on rows that do not count);
//                  the bindings add them up in row order
template <class Real>
struct XentArgs {
  int64_t N = 0, C = 0;
  const Real* z = nullptr;
  const int64_t* target = nullptr;
  const uint8_t* valid = nullptr;
  Real scale = 1;
  Real* dz = nullptr;
  double* nll = nullptr;
  int threads = 1;
};

// Embedding lookup y[n,:] = W[ids[n],:] (embedding_forward) and its gradient
// dW[ids[n],:] += dy[n,:] for n in order (embedding_backward): the threads
// split the E columns, each walks every row in order, so a row of dW sees its
// additions in position order for any thread count, without atomics.
//
//   N, V, E        positions, vocabulary rows, features
//   ids (N)        token ids in [0, V) (checked by the bindings)
//   padding        an id whose rows get no gradient, or -1
//   W (V, E), y (N, E)          forward
//   dy (N, E), dW (V, E)        backward (dW ADDED into)
template <class Real>
struct EmbeddingArgs {
  int64_t N = 0, V = 0, E = 0;
  const int64_t* ids = nullptr;
  int64_t padding = -1;
  const Real* W = nullptr;
  Real* y = nullptr;
  const Real* dy = nullptr;
  Real* dW = nullptr;
  int threads = 1;
};

// One optimizer update over a flat buffer of n parameters, PyTorch's
// semantics (python/rnnkit/optim.py documents each; the NumPy transcription in
// rnnkit/reference/blocks.py is the specification):
//
//   kind           which update (OptimKind)
//   p, g (n)       parameters (updated in place), gradients (read)
//   s0, s1, s2     state slots (n each, updated in place), by kind:
//                    SGD      s0 momentum buffer (momentum != 0)
//                    Adagrad  s0 sum of squares
//                    RMSprop  s0 square_avg, s1 momentum buffer (momentum != 0),
//                             s2 grad_avg (centered)
//                    Adam(W)  s0 exp_avg, s1 exp_avg_sq, s2 max_exp_avg_sq
//                             (amsgrad)
//   lr             the rate of this step (Adagrad: already decayed)
//   weight_decay   L2 added to g (AdamW: decoupled, p *= 1 - lr wd)
//   momentum, dampening, nesterov, first   SGD (first: the first step, when
//                  the buffer is set to g)
//   alpha, centered                         RMSprop (momentum as above)
//   beta1, beta2, bc1, bc2, amsgrad, decoupled   Adam (bc = 1 - beta^t)
//   eps            the denominator's epsilon (Adagrad, RMSprop, Adam)
enum class OptimKind : int { kSgd = 0, kAdagrad = 1, kRmsprop = 2, kAdam = 3 };

template <class Real>
struct OptimArgs {
  OptimKind kind = OptimKind::kSgd;
  int64_t n = 0;
  Real* p = nullptr;
  const Real* g = nullptr;
  Real* s0 = nullptr;
  Real* s1 = nullptr;
  Real* s2 = nullptr;
  double lr = 0, weight_decay = 0, eps = 0;
  double momentum = 0, dampening = 0, alpha = 0, beta1 = 0, beta2 = 0, bc1 = 1, bc2 = 1;
  bool nesterov = false, first = false, centered = false, amsgrad = false,
       decoupled = false;
  int threads = 1;
};

// The random masks of the dropout family (masks.cpp), drawn in place by a
// counter-based generator: elements 2j and 2j+1 get u, the low and the high
// 32 bits of the SplitMix64 finaliser of key + (j + 1) * 0x9E3779B97F4A7C15, a
// function of (key, i) only (masks.cpp spells it out), so any thread count,
// SIMD path or array size gives the same element i.
//
//   n              elements (>= 0)
//   out (n)        written: Out = uint8_t: out[i] = 1 where u_i < thr, else 0
//                  (zoneout flags: 1 keeps the previous value, probability p);
//                  Out = float/double: out[i] = value where u_i >= thr, else 0
//                  (inverted-dropout multipliers, value = 1/(1-p))
//   key            the mask's 64-bit key (the layer's generator draws one per
//                  mask)
//   thr            round(p 2^32), in [0, 2^32] (2^32: p = 1, every u_i < thr)
//   value          the kept multiplier (float outputs only)
template <class Out>
struct BernoulliArgs {
  int64_t n = 0;
  Out* out = nullptr;
  uint64_t key = 0;
  uint64_t thr = 0;
  Out value = 1;
  int threads = 1;
};

// Elements per block of the norm's partial sums: sum_squares writes one double
// per block of the buffer (ceil(n / kNormBlock) of them, caller's scratch) and
// adds them in block order, so the result does not depend on the team size.
constexpr int64_t kNormBlock = 4096;
inline int64_t norm_blocks(int64_t n) { return (n + kNormBlock - 1) / kNormBlock; }

}  // namespace rnnkit

namespace rnnkit {

// Threads for a block kernel of `work` element operations: one below
// `min_work` (waking a second thread costs microseconds), else all of them.
inline int block_team(int64_t work, int threads, int64_t min_work = int64_t(1) << 16) {
  return work < min_work || threads < 1 ? 1 : threads;
}

}  // namespace rnnkit
