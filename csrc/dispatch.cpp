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

Contention& contention() {
  static Contention c;
  return c;
}

// The mask kernels' own (masks.cpp declares it).
Contention& mask_contention() {
  static Contention c;
  return c;
}

namespace {

// The entry points of one ISA build, one slot per cell (indexed by Cell).
template <class Real>
struct Table {
  WorkspaceSize (*size[kNumCells])(const RnnDesc&, Mode);
  void (*fwd[kNumCells])(const RnnDesc&, const RnnArgs<Real>&);
  void (*bwd[kNumCells])(const RnnDesc&, const RnnArgs<Real>&);
  size_t (*step_size[kNumCells])(const RnnDesc&);
  void (*step_init[kNumCells])(const RnnDesc&, char*, const Real* const*);
  void (*step_state[kNumCells])(const RnnDesc&, char*, Real*, Real*, bool);
  void (*step[kNumCells])(const RnnDesc&, char*, const Real*, Real*);
  double (*peak)(double, int);
  double (*gemm)(int64_t, int64_t, int64_t, bool, bool, int, int);
};

// Table<Real>{...} of the ISA namespace RNNKIT_TABLE_NS (defined where it is
// used). Every slot list expands cells.h in order, so it lines up with Cell.
#define RNNKIT_ENTRY(cell, entry) RNNKIT_TABLE_NS::cell##entry<Real>,
#define RNNKIT_SLOT_SIZE(cell, Struct, gates, has_c) RNNKIT_ENTRY(cell, _workspace_size)
#define RNNKIT_SLOT_FWD(cell, Struct, gates, has_c) RNNKIT_ENTRY(cell, _forward)
#define RNNKIT_SLOT_BWD(cell, Struct, gates, has_c) RNNKIT_ENTRY(cell, _backward)
#define RNNKIT_SLOT_STEP_SIZE(cell, Struct, gates, has_c) RNNKIT_ENTRY(cell, _step_size)
#define RNNKIT_SLOT_STEP_INIT(cell, Struct, gates, has_c) RNNKIT_ENTRY(cell, _step_init)
#define RNNKIT_SLOT_STEP_STATE(cell, Struct, gates, has_c) \
  RNNKIT_ENTRY(cell, _step_state)
#define RNNKIT_SLOT_STEP(cell, Struct, gates, has_c) RNNKIT_ENTRY(cell, _step)
#define RNNKIT_TABLE                                                                   \
  Table<Real> {                                                                        \
    {RNNKIT_CELLS(RNNKIT_SLOT_SIZE)}, {RNNKIT_CELLS(RNNKIT_SLOT_FWD)},                 \
        {RNNKIT_CELLS(RNNKIT_SLOT_BWD)}, {RNNKIT_CELLS(RNNKIT_SLOT_STEP_SIZE)},        \
        {RNNKIT_CELLS(RNNKIT_SLOT_STEP_INIT)}, {RNNKIT_CELLS(RNNKIT_SLOT_STEP_STATE)}, \
        {RNNKIT_CELLS(RNNKIT_SLOT_STEP)}, RNNKIT_TABLE_NS::fma_peak_gflops,            \
        RNNKIT_TABLE_NS::gemm_gflops                                                   \
  }

template <class Real>
const Table<Real>* table(int isa) {
#define RNNKIT_TABLE_NS generic
  static const Table<Real> generic_table = RNNKIT_TABLE;
#undef RNNKIT_TABLE_NS
#ifdef RNNKIT_BUILD_AVX2
#define RNNKIT_TABLE_NS avx2
  static const Table<Real> avx2_table = RNNKIT_TABLE;
#undef RNNKIT_TABLE_NS
  if (isa == kAvx2) return &avx2_table;
#endif
#ifdef RNNKIT_BUILD_AVX512
#define RNNKIT_TABLE_NS avx512
  static const Table<Real> avx512_table = RNNKIT_TABLE;
#undef RNNKIT_TABLE_NS
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
  if (isa == kAvx2)
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
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

template <class Real>
WorkspaceSize workspace_size(int isa, const RnnDesc& d, Mode mode) {
  return table<Real>(isa)->size[int(d.cell)](d, mode);
}
template <class Real>
void forward(int isa, const RnnDesc& d, const RnnArgs<Real>& a) {
  table<Real>(isa)->fwd[int(d.cell)](d, a);
}
template <class Real>
void backward(int isa, const RnnDesc& d, const RnnArgs<Real>& a) {
  table<Real>(isa)->bwd[int(d.cell)](d, a);
}
template <class Real>
size_t step_size(int isa, const RnnDesc& d) {
  return table<Real>(isa)->step_size[int(d.cell)](d);
}
template <class Real>
void step_init(int isa, const RnnDesc& d, char* ws, const Real* const* w) {
  table<Real>(isa)->step_init[int(d.cell)](d, ws, w);
}
template <class Real>
void step_state(int isa, const RnnDesc& d, char* ws, Real* h, Real* c, bool set) {
  table<Real>(isa)->step_state[int(d.cell)](d, ws, h, c, set);
}
template <class Real>
void step(int isa, const RnnDesc& d, char* ws, const Real* x, Real* y) {
  table<Real>(isa)->step[int(d.cell)](d, ws, x, y);
}
#define RNNKIT_INSTANTIATE_STEP(Real)                                             \
  template size_t step_size<Real>(int, const RnnDesc&);                           \
  template void step_init<Real>(int, const RnnDesc&, char*, const Real* const*);  \
  template void step_state<Real>(int, const RnnDesc&, char*, Real*, Real*, bool); \
  template void step<Real>(int, const RnnDesc&, char*, const Real*, Real*);
RNNKIT_INSTANTIATE_STEP(float)
RNNKIT_INSTANTIATE_STEP(double)

double gemm_gflops(int64_t M, int64_t N, int64_t K, bool ta, bool tb, int reps,
                   int threads) {
  return table<float>(isa_active())->gemm(M, N, K, ta, tb, reps, threads);
}

double fma_peak_gflops(double seconds, int threads) {
  return table<float>(isa_active())->peak(seconds, threads);
}

// The block kernels: one small table per ISA, next to the cells' one.
namespace {
template <class Real>
struct BlockTable {
  int64_t (*pack)(int);
  void (*lin_fwd)(const LinearArgs<Real>&);
  void (*lin_bwd)(const LinearArgs<Real>&);
  void (*xent)(const XentArgs<Real>&);
  void (*emb_fwd)(const EmbeddingArgs<Real>&);
  void (*emb_bwd)(const EmbeddingArgs<Real>&);
  void (*optim)(const OptimArgs<Real>&);
  double (*sumsq)(const Real*, int64_t, double, double*, int);
  void (*scale)(Real*, int64_t, Real, int);
};
#define RNNKIT_BLOCK_TABLE(ns)                                                     \
  BlockTable<Real> {                                                               \
    ns::gemm_pack_size<Real>, ns::linear_forward<Real>, ns::linear_backward<Real>, \
        ns::xent<Real>, ns::embedding_forward<Real>, ns::embedding_backward<Real>, \
        ns::optim_step<Real>, ns::sum_squares<Real>, ns::scale_buffer<Real>        \
  }
template <class Real>
const BlockTable<Real>* blocks(int isa) {
  static const BlockTable<Real> generic_blocks = RNNKIT_BLOCK_TABLE(generic);
#ifdef RNNKIT_BUILD_AVX2
  static const BlockTable<Real> avx2_blocks = RNNKIT_BLOCK_TABLE(avx2);
  if (isa == kAvx2) return &avx2_blocks;
#endif
#ifdef RNNKIT_BUILD_AVX512
  static const BlockTable<Real> avx512_blocks = RNNKIT_BLOCK_TABLE(avx512);
  if (isa == kAvx512) return &avx512_blocks;
#endif
  (void)isa;
  return &generic_blocks;
}
#undef RNNKIT_BLOCK_TABLE
}  // namespace

template <class Real>
int64_t gemm_pack_size(int isa, int threads) {
  return blocks<Real>(isa)->pack(threads);
}
template <class Real>
void linear_forward(int isa, const LinearArgs<Real>& a) {
  blocks<Real>(isa)->lin_fwd(a);
}
template <class Real>
void linear_backward(int isa, const LinearArgs<Real>& a) {
  blocks<Real>(isa)->lin_bwd(a);
}
template <class Real>
void xent(int isa, const XentArgs<Real>& a) {
  blocks<Real>(isa)->xent(a);
}
template <class Real>
void embedding_forward(int isa, const EmbeddingArgs<Real>& a) {
  blocks<Real>(isa)->emb_fwd(a);
}
template <class Real>
void embedding_backward(int isa, const EmbeddingArgs<Real>& a) {
  blocks<Real>(isa)->emb_bwd(a);
}
template <class Real>
void optim_step(int isa, const OptimArgs<Real>& a) {
  blocks<Real>(isa)->optim(a);
}
template <class Real>
double sum_squares(int isa, const Real* x, int64_t n, double scale, double* partial,
                   int threads) {
  return blocks<Real>(isa)->sumsq(x, n, scale, partial, threads);
}
template <class Real>
void scale_buffer(int isa, Real* x, int64_t n, Real s, int threads) {
  blocks<Real>(isa)->scale(x, n, s, threads);
}
#define RNNKIT_INSTANTIATE_BLOCKS(Real)                                               \
  template int64_t gemm_pack_size<Real>(int, int);                                    \
  template void linear_forward<Real>(int, const LinearArgs<Real>&);                   \
  template void linear_backward<Real>(int, const LinearArgs<Real>&);                  \
  template void xent<Real>(int, const XentArgs<Real>&);                               \
  template void embedding_forward<Real>(int, const EmbeddingArgs<Real>&);             \
  template void embedding_backward<Real>(int, const EmbeddingArgs<Real>&);            \
  template void optim_step<Real>(int, const OptimArgs<Real>&);                        \
  template double sum_squares<Real>(int, const Real*, int64_t, double, double*, int); \
  template void scale_buffer<Real>(int, Real*, int64_t, Real, int);
RNNKIT_INSTANTIATE_BLOCKS(float)
RNNKIT_INSTANTIATE_BLOCKS(double)
#undef RNNKIT_INSTANTIATE_BLOCKS

// The mask kernels (masks.cpp): one small table per ISA, one slot per output type.
namespace {
template <class Out>
struct MaskTable {
  void (*bernoulli)(const BernoulliArgs<Out>&);
};
template <class Out>
const MaskTable<Out>* mask_table(int isa) {
  static const MaskTable<Out> generic_masks = {generic::bernoulli<Out>};
#ifdef RNNKIT_BUILD_AVX2
  static const MaskTable<Out> avx2_masks = {avx2::bernoulli<Out>};
  if (isa == kAvx2) return &avx2_masks;
#endif
#ifdef RNNKIT_BUILD_AVX512
  static const MaskTable<Out> avx512_masks = {avx512::bernoulli<Out>};
  if (isa == kAvx512) return &avx512_masks;
#endif
  (void)isa;
  return &generic_masks;
}
}  // namespace

template <class Out>
void bernoulli(int isa, const BernoulliArgs<Out>& a) {
  mask_table<Out>(isa)->bernoulli(a);
}
template void bernoulli<uint8_t>(int, const BernoulliArgs<uint8_t>&);
template void bernoulli<float>(int, const BernoulliArgs<float>&);
template void bernoulli<double>(int, const BernoulliArgs<double>&);

// The layer-norm kernels: one small table per ISA.
namespace {
template <class Real>
struct LnTable {
  WorkspaceSize (*size)(const RnnDesc&, Mode);
  void (*fwd)(const RnnDesc&, const LnArgs<Real>&);
  void (*bwd)(const RnnDesc&, const LnArgs<Real>&);
};
#define RNNKIT_LN_TABLE(ns)                                                  \
  LnTable<Real> {                                                            \
    ns::ln_workspace_size<Real>, ns::ln_forward<Real>, ns::ln_backward<Real> \
  }
template <class Real>
const LnTable<Real>* ln_table(int isa) {
  static const LnTable<Real> generic_ln = RNNKIT_LN_TABLE(generic);
#ifdef RNNKIT_BUILD_AVX2
  static const LnTable<Real> avx2_ln = RNNKIT_LN_TABLE(avx2);
  if (isa == kAvx2) return &avx2_ln;
#endif
#ifdef RNNKIT_BUILD_AVX512
  static const LnTable<Real> avx512_ln = RNNKIT_LN_TABLE(avx512);
  if (isa == kAvx512) return &avx512_ln;
#endif
  (void)isa;
  return &generic_ln;
}
#undef RNNKIT_LN_TABLE
}  // namespace

template <class Real>
WorkspaceSize ln_workspace_size(int isa, const RnnDesc& d, Mode mode) {
  return ln_table<Real>(isa)->size(d, mode);
}
template <class Real>
void ln_forward(int isa, const RnnDesc& d, const LnArgs<Real>& a) {
  ln_table<Real>(isa)->fwd(d, a);
}
template <class Real>
void ln_backward(int isa, const RnnDesc& d, const LnArgs<Real>& a) {
  ln_table<Real>(isa)->bwd(d, a);
}
template WorkspaceSize ln_workspace_size<float>(int, const RnnDesc&, Mode);
template WorkspaceSize ln_workspace_size<double>(int, const RnnDesc&, Mode);
template void ln_forward<float>(int, const RnnDesc&, const LnArgs<float>&);
template void ln_forward<double>(int, const RnnDesc&, const LnArgs<double>&);
template void ln_backward<float>(int, const RnnDesc&, const LnArgs<float>&);
template void ln_backward<double>(int, const RnnDesc&, const LnArgs<double>&);

template WorkspaceSize workspace_size<float>(int, const RnnDesc&, Mode);
template WorkspaceSize workspace_size<double>(int, const RnnDesc&, Mode);
template void forward<float>(int, const RnnDesc&, const RnnArgs<float>&);
template void forward<double>(int, const RnnDesc&, const RnnArgs<double>&);
template void backward<float>(int, const RnnDesc&, const RnnArgs<float>&);
template void backward<double>(int, const RnnDesc&, const RnnArgs<double>&);

// The projected LSTM: one small table per ISA.
namespace {
template <class Real>
struct LstmpTable {
  WorkspaceSize (*size)(const LstmpDesc&, Mode);
  void (*fwd)(const LstmpDesc&, const LstmpArgs<Real>&);
  void (*bwd)(const LstmpDesc&, const LstmpArgs<Real>&);
};
#define RNNKIT_LSTMP_TABLE(ns)                                                        \
  LstmpTable<Real> {                                                                  \
    ns::lstmp_workspace_size<Real>, ns::lstmp_forward<Real>, ns::lstmp_backward<Real> \
  }
template <class Real>
const LstmpTable<Real>* lstmp_table(int isa) {
  static const LstmpTable<Real> generic_lstmp = RNNKIT_LSTMP_TABLE(generic);
#ifdef RNNKIT_BUILD_AVX2
  static const LstmpTable<Real> avx2_lstmp = RNNKIT_LSTMP_TABLE(avx2);
  if (isa == kAvx2) return &avx2_lstmp;
#endif
#ifdef RNNKIT_BUILD_AVX512
  static const LstmpTable<Real> avx512_lstmp = RNNKIT_LSTMP_TABLE(avx512);
  if (isa == kAvx512) return &avx512_lstmp;
#endif
  (void)isa;
  return &generic_lstmp;
}
#undef RNNKIT_LSTMP_TABLE
}  // namespace

template <class Real>
WorkspaceSize lstmp_workspace_size(int isa, const LstmpDesc& d, Mode mode) {
  return lstmp_table<Real>(isa)->size(d, mode);
}
template <class Real>
void lstmp_forward(int isa, const LstmpDesc& d, const LstmpArgs<Real>& a) {
  lstmp_table<Real>(isa)->fwd(d, a);
}
template <class Real>
void lstmp_backward(int isa, const LstmpDesc& d, const LstmpArgs<Real>& a) {
  lstmp_table<Real>(isa)->bwd(d, a);
}
template WorkspaceSize lstmp_workspace_size<float>(int, const LstmpDesc&, Mode);
template WorkspaceSize lstmp_workspace_size<double>(int, const LstmpDesc&, Mode);
template void lstmp_forward<float>(int, const LstmpDesc&, const LstmpArgs<float>&);
template void lstmp_forward<double>(int, const LstmpDesc&, const LstmpArgs<double>&);
template void lstmp_backward<float>(int, const LstmpDesc&, const LstmpArgs<float>&);
template void lstmp_backward<double>(int, const LstmpDesc&, const LstmpArgs<double>&);

}  // namespace rnnkit
