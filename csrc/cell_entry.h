// cell_entry.h: defines and instantiates the entry points of kernels.h
// (<cell>_forward / _backward / _workspace_size / _step_*, float and double)
// for one cell struct. Included at the end of csrc/<cell>.cpp, inside
// namespace rnnkit::RNNKIT_NS:
//
//   #include "cell_entry.h"
//   RNNKIT_DEFINE_CELL(lstm, LstmCell)
//
// The nonlinearity becomes a template argument here, once per call: cells
// with kHasAct are compiled for each Act, the others for kTanh alone.
#pragma once

#include "cell.h"
#include "common.h"
#include "recurrent.h"
#include "step.h"

namespace rnnkit {
namespace RNNKIT_NS {

// f(ActTag<kAct>{}) with kAct = act (or kTanh when the cell has no act).
template <class Cell, class F>
RNNKIT_INLINE void with_act(Act act, F f) {
  if constexpr (!Cell::kHasAct) {
    (void)act;
    f(ActTag<kTanh>{});
  } else {
    if (act == kRelu)
      f(ActTag<kRelu>{});
    else if (act == kSigmoid)
      f(ActTag<kSigmoid>{});
    else
      f(ActTag<kTanh>{});
  }
}

}  // namespace RNNKIT_NS
}  // namespace rnnkit

#define RNNKIT_INSTANTIATE_CELL(cell, Real)                                         \
  template WorkspaceSize cell##_workspace_size<Real>(const RnnDesc&, Mode);         \
  template void cell##_forward<Real>(const RnnDesc&, const RnnArgs<Real>&);         \
  template void cell##_backward<Real>(const RnnDesc&, const RnnArgs<Real>&);        \
  template size_t cell##_step_size<Real>(const RnnDesc&);                           \
  template void cell##_step_init<Real>(const RnnDesc&, char*, const Real* const*);  \
  template void cell##_step_state<Real>(const RnnDesc&, char*, Real*, Real*, bool); \
  template void cell##_step<Real>(const RnnDesc&, char*, const Real*, Real*);

#define RNNKIT_DEFINE_CELL(cell, Struct)                                           \
  static_assert(Struct<float>::G == cell_gates(::rnnkit::Cell::cell) &&            \
                    Struct<float>::kHasC == cell_has_c(::rnnkit::Cell::cell),      \
                #Struct " disagrees with its line in cells.h");                    \
  template <class Real>                                                            \
  WorkspaceSize cell##_workspace_size(const RnnDesc& d, Mode mode) {               \
    return Workspace<Real, Struct<Real>>::size(d, mode);                           \
  }                                                                                \
  template <class Real>                                                            \
  void cell##_forward(const RnnDesc& d, const RnnArgs<Real>& a) {                  \
    with_act<Struct<Real>>(d.act, [&](auto act) {                                  \
      Recurrent<Real, Struct<Real>, decltype(act)::value>::forward(d, a);          \
    });                                                                            \
  }                                                                                \
  template <class Real>                                                            \
  void cell##_backward(const RnnDesc& d, const RnnArgs<Real>& a) {                 \
    with_act<Struct<Real>>(d.act, [&](auto act) {                                  \
      Recurrent<Real, Struct<Real>, decltype(act)::value>::backward(d, a);         \
    });                                                                            \
  }                                                                                \
  template <class Real>                                                            \
  size_t cell##_step_size(const RnnDesc& d) {                                      \
    return Step<Real, Struct<Real>>::size(d);                                      \
  }                                                                                \
  template <class Real>                                                            \
  void cell##_step_init(const RnnDesc& d, char* ws, const Real* const* w) {        \
    Step<Real, Struct<Real>>::init(d, ws, w);                                      \
  }                                                                                \
  template <class Real>                                                            \
  void cell##_step_state(const RnnDesc& d, char* ws, Real* h, Real* c, bool set) { \
    Step<Real, Struct<Real>>::state(d, ws, h, c, set);                             \
  }                                                                                \
  template <class Real>                                                            \
  void cell##_step(const RnnDesc& d, char* ws, const Real* x, Real* y) {           \
    with_act<Struct<Real>>(d.act, [&](auto act) {                                  \
      Step<Real, Struct<Real>>::template run<decltype(act)::value>(d, ws, x, y);   \
    });                                                                            \
  }                                                                                \
  RNNKIT_INSTANTIATE_CELL(cell, float)                                             \
  RNNKIT_INSTANTIATE_CELL(cell, double)
