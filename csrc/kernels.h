// kernels.h: the entry points each instruction-set build provides, declared in
// namespace rnnkit::RNNKIT_NS for every cell of cells.h. No include guard on
// purpose: dispatch.cpp includes it once per ISA with RNNKIT_NS redefined.
//
//   <cell>_workspace_size(desc, mode)  bytes of reserve (kept from a training
//                                      forward to its backward) and scratch
//   <cell>_forward(desc, args)         inference (args.train false) or training
//   <cell>_backward(desc, args)        BPTT for the last training forward whose
//                                      reserve is passed; adds into dweights
//   <cell>_step_size / _step_init / _step_state / _step
//                                      one step of a unidirectional stack with
//                                      packed weights and the state kept in a
//                                      workspace between calls (generation)
//
// Defined by RNNKIT_DEFINE_CELL (cell_entry.h) at the end of csrc/<cell>.cpp.
#include "blocks.h"
#include "common.h"
#include "layernorm.h"
#include "lstmp.h"

namespace rnnkit {
namespace RNNKIT_NS {

#define RNNKIT_DECLARE_CELL(cell, Struct, gates, has_c)                              \
  template <class Real>                                                              \
  WorkspaceSize cell##_workspace_size(const RnnDesc& desc, Mode mode);               \
  template <class Real>                                                              \
  void cell##_forward(const RnnDesc& desc, const RnnArgs<Real>& args);               \
  template <class Real>                                                              \
  void cell##_backward(const RnnDesc& desc, const RnnArgs<Real>& args);              \
  template <class Real>                                                              \
  size_t cell##_step_size(const RnnDesc& desc);                                      \
  template <class Real>                                                              \
  void cell##_step_init(const RnnDesc& desc, char* ws, const Real* const* w);        \
  template <class Real>                                                              \
  void cell##_step_state(const RnnDesc& desc, char* ws, Real* h, Real* c, bool set); \
  template <class Real>                                                              \
  void cell##_step(const RnnDesc& desc, char* ws, const Real* x, Real* y);

RNNKIT_CELLS(RNNKIT_DECLARE_CELL)
#undef RNNKIT_DECLARE_CELL

// The kernels around the recurrent layers (blocks.h): linear.cpp, xent.cpp,
// embedding.cpp, optim.cpp, masks.cpp.
template <class Real>
void linear_forward(const LinearArgs<Real>& a);
template <class Real>
void linear_backward(const LinearArgs<Real>& a);
template <class Real>
void xent(const XentArgs<Real>& a);
template <class Real>
void embedding_forward(const EmbeddingArgs<Real>& a);
template <class Real>
void embedding_backward(const EmbeddingArgs<Real>& a);
template <class Real>
void optim_step(const OptimArgs<Real>& a);
template <class Real>
double sum_squares(const Real* x, int64_t n, double scale, double* partial,
                   int threads);
template <class Real>
void scale_buffer(Real* x, int64_t n, Real s, int threads);
template <class Real>
int64_t gemm_pack_size(int nth);
// masks.cpp: Out = uint8_t (flags), float, double (multipliers).
template <class Out>
void bernoulli(const BernoulliArgs<Out>& a);

double fma_peak_gflops(double seconds, int nth);
double gemm_gflops(int64_t M, int64_t N, int64_t K, bool ta, bool tb, int reps,
                   int nth);

// The projected LSTM (lstmp.h, lstmp.cpp): the same three entry points as a
// cell's, on its own description and argument block.
template <class Real>
WorkspaceSize lstmp_workspace_size(const LstmpDesc& desc, Mode mode);
template <class Real>
void lstmp_forward(const LstmpDesc& desc, const LstmpArgs<Real>& args);
template <class Real>
void lstmp_backward(const LstmpDesc& desc, const LstmpArgs<Real>& args);

// The layer-normalised LSTM and GRU (layernorm.cpp; arguments in layernorm.h:
// weights and dweights hold 8 pointers per layer and direction).
template <class Real>
WorkspaceSize ln_workspace_size(const RnnDesc& desc, Mode mode);
template <class Real>
void ln_forward(const RnnDesc& desc, const LnArgs<Real>& args);
template <class Real>
void ln_backward(const RnnDesc& desc, const LnArgs<Real>& args);

}  // namespace RNNKIT_NS
}  // namespace rnnkit
