// common.h: what every kernel shares — the problem description, the argument
// block, the workspace carving, thread helpers. No SIMD here; included by the
// per-ISA kernel files, dispatch.cpp and bindings.cpp alike.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "cells.h"

namespace rnnkit {

// One enumerator per line of cells.h, named like the cell (Cell::lstm), in
// the list's order; dispatch tables are indexed by it.
enum class Cell : int {
#define RNNKIT_CELL_ENUM(name, Struct, gates, has_c) name,
  RNNKIT_CELLS(RNNKIT_CELL_ENUM)
#undef RNNKIT_CELL_ENUM
};
constexpr int kNumCells = 0
#define RNNKIT_CELL_COUNT(name, Struct, gates, has_c) +1
    RNNKIT_CELLS(RNNKIT_CELL_COUNT)
#undef RNNKIT_CELL_COUNT
    ;

// G, the gate rows per hidden unit, and whether the cell carries c.
constexpr int64_t cell_gates(Cell cell) {
#define RNNKIT_CELL_GATES(name, Struct, gates, has_c) \
  if (cell == Cell::name) return gates;
  RNNKIT_CELLS(RNNKIT_CELL_GATES)
#undef RNNKIT_CELL_GATES
  return 0;
}
constexpr bool cell_has_c(Cell cell) {
#define RNNKIT_CELL_HAS_C(name, Struct, gates, has_c) \
  if (cell == Cell::name) return has_c;
  RNNKIT_CELLS(RNNKIT_CELL_HAS_C)
#undef RNNKIT_CELL_HAS_C
  return false;
}

// The nonlinearity of the vanilla RNN; a template parameter of the kernels.
enum Act : int { kTanh = 0, kRelu = 1, kSigmoid = 2 };

// What a call does; it decides the workspace (kernels.h) and is exported to
// Python as rnnkit._core.Mode.
enum class Mode : int { kInference = 0, kTrainForward = 1, kBackward = 2 };

// Dimension letters as in STYLE.md: T time, B batch, I input, H hidden,
// L layers, D directions (1 or 2), G gate rows per unit (1, 4, 3).
struct RnnDesc {
  Cell cell = Cell::rnn;
  Act act = kTanh;  // vanilla RNN only
  int64_t T = 0, B = 0, I = 0, H = 0, L = 1, D = 1;
  bool bias = true;
  int threads = 1;
  // Layer options whose masks change the workspace (issue 12): recurrent
  // dropout (rec_mask), zoneout masks of a training forward, dropout between
  // layers (drop_mask). Set from the masks a call passes.
  bool rdrop = false, zone = false, drop = false;
  // Inference zoneout rate p (forward with train false, and the stepper):
  // h = p h_{t-1} + (1 - p) h~ (and c); 0 = off.
  double zoneout = 0;
  int64_t G() const { return cell_gates(cell); }
  int64_t in_size(int64_t layer) const { return layer == 0 ? I : D * H; }
};

// Pointers for one call. Weights come as 4 pointers per (layer, direction) in
// the order W_ih, W_hh, b_ih, b_hh (biases null when desc.bias is false), the
// (layer, direction) pairs ordered l*D + d like PyTorch's h_n.
template <class Real>
struct RnnArgs {
  // forward outputs
  Real* y = nullptr;   // (T, B, D*H)
  Real* hn = nullptr;  // (L*D, B, H)
  Real* cn = nullptr;  // (L*D, B, H), cells with c
  // backward outputs: dx, dh0, dc0 are overwritten; dweights are ADDED into
  Real* dx = nullptr;
  Real* dh0 = nullptr;
  Real* dc0 = nullptr;
  Real* const* dweights = nullptr;
  // workspace: reserve survives from a training forward to its backward,
  // scratch is free between calls. Sizes from <cell>_workspace_size.
  char* reserve = nullptr;
  char* scratch = nullptr;
  // inputs
  const Real* x = nullptr;   // (T, B, I)
  const Real* h0 = nullptr;  // (L*D, B, H)
  const Real* c0 = nullptr;  // (L*D, B, H), cells with c
  const Real* const* weights = nullptr;
  const int64_t* lengths = nullptr;  // (B,), 1 <= len <= T, or null (all T)
  const Real* dy = nullptr;          // (T, B, D*H)
  const Real* dhn = nullptr;         // (L*D, B, H)
  const Real* dcn = nullptr;         // (L*D, B, H), cells with c
  bool train = false;
  // Layer options (issue 12), masks in real time indexed by the original row b;
  // forward and its backward get the same ones. Null: the option is off.
  const Real* const* rec_mask = nullptr;   // L*D of (B, H): 0 or 1/(1-p) on h_{t-1}
  const uint8_t* const* zone_h = nullptr;  // L*D of (T, B, H): 1 keeps h_{t-1}
  const uint8_t* const* zone_c = nullptr;  // L*D of (T, B, H): 1 keeps c_{t-1}
  const Real* const* drop_mask = nullptr;  // L-1 of (T, B, D*H): on layer outputs
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

// Graceful degradation on a loaded machine. A team of n threads is only as fast
// as its slowest member: when another process shares a core, that member is
// descheduled for whole time slices and every barrier waits for it. A call
// whose threads were off their cores for more than an eighth of the call's
// thread time (measured per thread as wall time minus the thread's CPU time,
// team.h) marks the machine as contended, and the next calls run on one
// thread (the results are the same bitwise); a team is tried again after
// `backoff` calls, which doubles while the contention lasts (16 .. 1024) and
// resets when a team runs clean. A thread that waits at a barrier for uneven
// work on a free core stays on it, so a quiet machine does not trip this.
// One per process (contention(), defined in dispatch.cpp, shared by every
// SIMD path); relaxed atomics: a lost update only shifts a probe. `enabled`
// (set_adaptive_threads) turns it on and off; `trips` counts contended calls.
struct Contention {
  int enabled = 1;
  int left = 0;       // calls still to run on one thread
  int backoff = 16;   // calls to back off after the next contended call
  int64_t trips = 0;  // contended calls seen since the last reset
  // Threads for a call that would use `want`.
  int threads(int want) {
    if (want <= 1 || !__atomic_load_n(&enabled, __ATOMIC_RELAXED)) return want;
    if (__atomic_load_n(&left, __ATOMIC_RELAXED) > 0) {
      __atomic_sub_fetch(&left, 1, __ATOMIC_RELAXED);
      return 1;
    }
    return want;
  }
  // After a call of nth threads that took call_ns of wall time, off_cpu_ns of
  // it summed over the threads not running.
  void observe(int64_t off_cpu_ns, int nth, int64_t call_ns) {
    if (nth <= 1 || call_ns <= 0) return;
    const int b = __atomic_load_n(&backoff, __ATOMIC_RELAXED);
    if (off_cpu_ns * 8 > call_ns * nth) {
      __atomic_add_fetch(&trips, 1, __ATOMIC_RELAXED);
      __atomic_store_n(&left, b, __ATOMIC_RELAXED);
      __atomic_store_n(&backoff, b < 1024 ? 2 * b : b, __ATOMIC_RELAXED);
    } else if (b != 16) {
      __atomic_store_n(&backoff, 16, __ATOMIC_RELAXED);
    }
  }
  void reset() {
    __atomic_store_n(&trips, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&left, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&backoff, 16, __ATOMIC_RELAXED);
  }
};
Contention& contention();

struct WorkspaceSize {
  size_t reserve = 0;
  size_t scratch = 0;
};

}  // namespace rnnkit
