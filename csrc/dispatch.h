// dispatch.h: picks one instruction-set build of the kernels at run time.
//
// Priority avx512 > avx2 > generic among the builds this binary contains and
// the CPU supports; RNNKIT_SIMD=<name> in the environment (read when the
// module loads) or set_isa() overrides it.
#pragma once

#include "common.h"

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

double fma_peak_gflops(double seconds, int threads);
double gemm_gflops(int64_t M, int64_t N, int64_t K, bool ta, bool tb, int reps,
                   int threads);

}  // namespace rnnkit
