// masks.cpp: the random masks of the dropout family (dropout, recurrent
// dropout, zoneout), drawn by a counter-based generator: element i of a mask
// is a function of (key, i) only,
//
//   x_j = splitmix64(key + (j + 1) * 0x9E3779B97F4A7C15)     (mod 2^64)
//   u_{2j} = x_j mod 2^32,  u_{2j+1} = x_j >> 32              (both halves)
//   splitmix64(z): z = (z ^ z >> 30) * 0xBF58476D1CE4E5B9
//                  z = (z ^ z >> 27) * 0x94D049BB133111EB
//                  return z ^ z >> 31
//
// (Steele, Lea and Flood's SplitMix64 finaliser, whose 64 output bits are all
// well mixed: the key picks the stream, the counter j the pair of elements),
// so a mask does not depend on the thread count, the
// SIMD path or the array's size (a prefix of a longer draw is the shorter
// draw). Integer arithmetic only: every path gives the same bits. u is
// compared with thr = round(p 2^32) (BernoulliArgs in blocks.h). The loops are
// plain elementwise code the compiler vectorises: the hashes of a block of 128
// pairs (64-bit lanes; AVX-512F builds the 64-bit products from vpmuludq),
// then the block's compare and store. Compiled once per ISA.
#include <omp.h>

#include "blocks.h"
#include "simd/vec.h"
#include "team.h"

namespace rnnkit {

// The masks' contention tracker (dispatch.cpp): one per process, apart from the
// recurrent kernels' contention(), so a mask call never shortens their back-off.
Contention& mask_contention();

namespace RNNKIT_NS {

namespace {

constexpr int64_t kChunk = 4096;  // a thread's share starts at a multiple of it
constexpr int64_t kBlock = 256;   // uniforms made at a time (stay in L1)

RNNKIT_INLINE uint64_t splitmix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// u[0, m) = u_{i0 + e} for e < m (i0 even, m <= kBlock): one hash per pair.
RNNKIT_INLINE void uniforms(uint64_t key, int64_t i0, int64_t m, uint32_t* u) {
  alignas(64) uint64_t h[kBlock / 2];
  const int64_t pairs = (m + 1) / 2;
  uint64_t z = key + (uint64_t(i0 / 2) + 1) * 0x9E3779B97F4A7C15ull;
#pragma omp simd
  for (int64_t j = 0; j < pairs; ++j) {
    uint64_t x = splitmix64(z + uint64_t(j) * 0x9E3779B97F4A7C15ull);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    x = (x << 32) | (x >> 32);  // element 2j is the low half on every machine
#endif
    h[j] = x;
  }
  __builtin_memcpy(u, h, size_t(m) * 4);
}

// Elements [i0, i1), i0 even: flags (uint8, 1 where u < thr) or multipliers
// (value where u >= thr, else 0).
template <class Out>
void fill(const BernoulliArgs<Out>& a, int64_t i0, int64_t i1) {
  Out* __restrict out = a.out;
  if (a.thr > 0xFFFFFFFFull) {  // p = 1: every u is below 2^32
    const Out v = sizeof(Out) == 1 ? Out(1) : Out(0);
    for (int64_t i = i0; i < i1; ++i) out[i] = v;
    return;
  }
  const uint32_t thr = uint32_t(a.thr);
  const Out value = a.value;
  alignas(64) uint32_t u[kBlock];
  for (int64_t b = i0; b < i1; b += kBlock) {
    const int64_t m = min64(kBlock, i1 - b);
    uniforms(a.key, b, m, u);
    Out* __restrict o = out + b;
    if (sizeof(Out) == 1) {
#pragma omp simd
      for (int64_t e = 0; e < m; ++e) o[e] = Out(u[e] < thr);
    } else {
#pragma omp simd
      for (int64_t e = 0; e < m; ++e) o[e] = u[e] >= thr ? value : Out(0);
    }
  }
}

}  // namespace

template <class Out>
void bernoulli(const BernoulliArgs<Out>& a) {
  // ~10 integer operations per element: a second thread pays from ~64k on. The
  // call lasts a fraction of a millisecond, so a second thread that starts a
  // time slice late (another process on its core) costs more than it saves:
  // such calls are reported to the masks' own contention tracker (its back-off
  // runs the next calls on one thread; the recurrent kernels keep theirs), which
  // set_adaptive_threads turns off with the kernels' one.
  Contention& c = mask_contention();
  const bool adaptive = __atomic_load_n(&contention().enabled, __ATOMIC_RELAXED);
  int nth = block_team(a.n, a.threads, int64_t(1) << 16);
  if (adaptive) nth = c.threads(nth);
  const int64_t t0 = now_ns();
  int64_t late_ns = 0;
#pragma omp parallel num_threads(nth)
  {
    const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
    if (tid != 0) __atomic_add_fetch(&late_ns, now_ns() - t0, __ATOMIC_RELAXED);
    const int64_t nc = (a.n + kChunk - 1) / kChunk;
    const int64_t c0 = nc * tid / nt, c1 = nc * (tid + 1) / nt;
    if (c1 > c0) fill(a, c0 * kChunk, min64(a.n, c1 * kChunk));
  }
  if (adaptive && nth > 1) c.observe(late_ns, nth, now_ns() - t0);
}

template void bernoulli<uint8_t>(const BernoulliArgs<uint8_t>&);
template void bernoulli<float>(const BernoulliArgs<float>&);
template void bernoulli<double>(const BernoulliArgs<double>&);

}  // namespace RNNKIT_NS
}  // namespace rnnkit
