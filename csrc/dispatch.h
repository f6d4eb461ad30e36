// dispatch.h: picks one instruction-set build of the kernels at run time.
//
// Priority avx512 > avx2 > generic among the builds this binary contains and
// the CPU supports; RNNKIT_SIMD=<name> in the environment (read when the
// module loads) or set_isa() overrides it.
#pragma once

#include "blocks.h"
#include "common.h"
#include "layernorm.h"
#include "lstmp.h"

namespace rnnkit {

enum Isa : int { kGeneric = 0, kAvx2 = 1, kAvx512 = 2, kNumIsa = 3 };

const char* isa_name(int isa);
int isa_from_name(const char* name);  // -1 if unknown
bool isa_compiled(int isa);
bool isa_supported(int isa);  // compiled in and runnable on this CPU
int isa_best();
int isa_active();
void isa_set(int isa);  // caller checked isa_supported

// The isa argument is read once per call (isa_active()) so that the size
// query and the kernel agree even if another thread switches paths meanwhile.
template <class Real>
WorkspaceSize workspace_size(int isa, const RnnDesc& desc, Mode mode);
template <class Real>
void forward(int isa, const RnnDesc& desc, const RnnArgs<Real>& args);
template <class Real>
void backward(int isa, const RnnDesc& desc, const RnnArgs<Real>& args);

// Single steps (generation): sizes, packing and state of a workspace that
// must be used with the isa it was initialised with.
template <class Real>
size_t step_size(int isa, const RnnDesc& desc);
template <class Real>
void step_init(int isa, const RnnDesc& desc, char* ws, const Real* const* weights);
template <class Real>
void step_state(int isa, const RnnDesc& desc, char* ws, Real* h, Real* c, bool set);
template <class Real>
void step(int isa, const RnnDesc& desc, char* ws, const Real* x, Real* y);

// The block kernels (blocks.h) of one ISA; a size query and the call it sizes
// must use the same isa.
template <class Real>
int64_t gemm_pack_size(int isa, int threads);
template <class Real>
void linear_forward(int isa, const LinearArgs<Real>& a);
template <class Real>
void linear_backward(int isa, const LinearArgs<Real>& a);
template <class Real>
void xent(int isa, const XentArgs<Real>& a);
template <class Real>
void embedding_forward(int isa, const EmbeddingArgs<Real>& a);
template <class Real>
void embedding_backward(int isa, const EmbeddingArgs<Real>& a);
template <class Real>
void optim_step(int isa, const OptimArgs<Real>& a);
template <class Real>
double sum_squares(int isa, const Real* x, int64_t n, double scale, double* partial,
                   int threads);
template <class Real>
void scale_buffer(int isa, Real* x, int64_t n, Real s, int threads);
// Out = uint8_t, float, double (BernoulliArgs in blocks.h).
template <class Out>
void bernoulli(int isa, const BernoulliArgs<Out>& a);

double fma_peak_gflops(double seconds, int threads);
double gemm_gflops(int64_t M, int64_t N, int64_t K, bool ta, bool tb, int reps,
                   int threads);

// The projected LSTM (lstmp.h) of one ISA; the size query and the call it
// sizes must use the same isa.
template <class Real>
WorkspaceSize lstmp_workspace_size(int isa, const LstmpDesc& desc, Mode mode);
template <class Real>
void lstmp_forward(int isa, const LstmpDesc& desc, const LstmpArgs<Real>& args);
template <class Real>
void lstmp_backward(int isa, const LstmpDesc& desc, const LstmpArgs<Real>& args);

// The layer-normalised LSTM and GRU (layernorm.h); size and call on one isa.
template <class Real>
WorkspaceSize ln_workspace_size(int isa, const RnnDesc& desc, Mode mode);
template <class Real>
void ln_forward(int isa, const RnnDesc& desc, const LnArgs<Real>& args);
template <class Real>
void ln_backward(int isa, const RnnDesc& desc, const LnArgs<Real>& args);

}  // namespace rnnkit
