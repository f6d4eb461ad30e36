// dispatch.cpp: one table of entry points per compiled instruction set.
#include "dispatch.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#define RNNKIT_NS generic
#include "kernels.h"
#undef RNNKIT_NS
#ifdef RNNKIT_BUILD_AVX2
#define RNNKIT_NS avx2
#include "kernels.h"
#undef RNNKIT_NS
#endif
#ifdef RNNKIT_BUILD_AVX512
#define RNNKIT_NS avx512
#include "kernels.h"
#undef RNNKIT_NS
#endif

namespace rnnkit {

namespace {

template <class T>
struct Table {
  WorkspaceSize (*size[3])(const RnnDesc&, int);
  void (*fwd[3])(const RnnDesc&, const RnnArgs<T>&);
  void (*bwd[3])(const RnnDesc&, const RnnArgs<T>&);
  size_t (*step_size[3])(const RnnDesc&);
  void (*step_init[3])(const RnnDesc&, char*, const T* const*);
  void (*step_state[3])(const RnnDesc&, char*, T*, T*, bool);
  void (*step[3])(const RnnDesc&, char*, const T*, T*);
  double (*peak)(double, int);
  double (*gemm)(int64_t, int64_t, int64_t, bool, bool, int, int);
};

#define RNNKIT_TABLE(ns, T)                                                   \
  Table<T> {                                                                  \
    {ns::rnn_workspace_size<T>, ns::lstm_workspace_size<T>,                   \
     ns::gru_workspace_size<T>},                                              \
        {ns::rnn_forward<T>, ns::lstm_forward<T>, ns::gru_forward<T>},        \
        {ns::rnn_backward<T>, ns::lstm_backward<T>, ns::gru_backward<T>},     \
        {ns::rnn_step_size<T>, ns::lstm_step_size<T>, ns::gru_step_size<T>},  \
        {ns::rnn_step_init<T>, ns::lstm_step_init<T>, ns::gru_step_init<T>},  \
        {ns::rnn_step_state<T>, ns::lstm_step_state<T>,                       \
         ns::gru_step_state<T>},                                              \
        {ns::rnn_step<T>, ns::lstm_step<T>, ns::gru_step<T>},                 \
        ns::fma_peak_gflops, ns::gemm_gflops                                  \
  }

template <class T>
const Table<T>* table(int isa) {
  static const Table<T> generic_table = RNNKIT_TABLE(generic, T);
#ifdef RNNKIT_BUILD_AVX2
  static const Table<T> avx2_table = RNNKIT_TABLE(avx2, T);
  if (isa == kAvx2) return &avx2_table;
#endif
#ifdef RNNKIT_BUILD_AVX512
  static const Table<T> avx512_table = RNNKIT_TABLE(avx512, T);
  if (isa == kAvx512) return &avx512_table;
#endif
  (void)isa;
  return &generic_table;
}

int initial_isa() {
  const char* env = std::getenv("RNNKIT_SIMD");
  if (env && *env) {
    int isa = isa_from_name(env);
    if (isa >= 0 && isa_supported(isa)) return isa;
    // An unusable request falls back to the best path; show_config() reports
    // the request so the mismatch is visible.
  }
  return isa_best();
}

std::atomic<int>& active() {
  static std::atomic<int> isa{initial_isa()};
  return isa;
}

}  // namespace

const char* isa_name(int isa) {
  static const char* names[kNumIsa] = {"generic", "avx2", "avx512"};
  return isa >= 0 && isa < kNumIsa ? names[isa] : "unknown";
}

int isa_from_name(const char* name) {
  for (int i = 0; i < kNumIsa; ++i)
    if (std::strcmp(name, isa_name(i)) == 0) return i;
  return -1;
}

bool isa_compiled(int isa) {
  switch (isa) {
    case kGeneric:
      return true;
#ifdef RNNKIT_BUILD_AVX2
    case kAvx2:
      return true;
#endif
#ifdef RNNKIT_BUILD_AVX512
    case kAvx512:
      return true;
#endif
    default:
      return false;
  }
}

bool isa_supported(int isa) {
  if (!isa_compiled(isa)) return false;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (isa == kAvx2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (isa == kAvx512)
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
           __builtin_cpu_supports("fma");
#endif
  return isa == kGeneric;
}

int isa_best() {
  for (int isa = kNumIsa - 1; isa > 0; --isa)
    if (isa_supported(isa)) return isa;
  return kGeneric;
}

int isa_active() { return active().load(); }
void isa_set(int isa) { active().store(isa); }

template <class T>
WorkspaceSize workspace_size(int isa, const RnnDesc& d, int mode) {
  return table<T>(isa)->size[d.cell](d, mode);
}
template <class T>
void forward(int isa, const RnnDesc& d, const RnnArgs<T>& a) {
  table<T>(isa)->fwd[d.cell](d, a);
}
template <class T>
void backward(int isa, const RnnDesc& d, const RnnArgs<T>& a) {
  table<T>(isa)->bwd[d.cell](d, a);
}
template <class T>
size_t step_size(int isa, const RnnDesc& d) {
  return table<T>(isa)->step_size[d.cell](d);
}
template <class T>
void step_init(int isa, const RnnDesc& d, char* ws, const T* const* w) {
  table<T>(isa)->step_init[d.cell](d, ws, w);
}
template <class T>
void step_state(int isa, const RnnDesc& d, char* ws, T* h, T* c, bool set) {
  table<T>(isa)->step_state[d.cell](d, ws, h, c, set);
}
template <class T>
void step(int isa, const RnnDesc& d, char* ws, const T* x, T* y) {
  table<T>(isa)->step[d.cell](d, ws, x, y);
}
#define RNNKIT_INSTANTIATE_STEP(T)                                        \
  template size_t step_size<T>(int, const RnnDesc&);                      \
  template void step_init<T>(int, const RnnDesc&, char*, const T* const*); \
  template void step_state<T>(int, const RnnDesc&, char*, T*, T*, bool);  \
  template void step<T>(int, const RnnDesc&, char*, const T*, T*);
RNNKIT_INSTANTIATE_STEP(float)
RNNKIT_INSTANTIATE_STEP(double)

double gemm_gflops(int64_t M, int64_t N, int64_t K, bool ta, bool tb, int reps, int threads) {
  return table<float>(isa_active())->gemm(M, N, K, ta, tb, reps, threads);
}

double fma_peak_gflops(double seconds, int threads) {
  return table<float>(isa_active())->peak(seconds, threads);
}

template WorkspaceSize workspace_size<float>(int, const RnnDesc&, int);
template WorkspaceSize workspace_size<double>(int, const RnnDesc&, int);
template void forward<float>(int, const RnnDesc&, const RnnArgs<float>&);
template void forward<double>(int, const RnnDesc&, const RnnArgs<double>&);
template void backward<float>(int, const RnnDesc&, const RnnArgs<float>&);
template void backward<double>(int, const RnnDesc&, const RnnArgs<double>&);

}  // namespace rnnkit
