// vec.h: one vector type per instruction set, chosen by the translation unit.
//
// Every kernel body (gemm.cpp, rnn.cpp, lstm.cpp, gru.cpp) is compiled once per
// ISA with -DRNNKIT_NS=<isa> and that ISA's flags; this header turns the choice
// into a vector width. GCC/Clang vector extensions keep the code one body: the
// portable 16-byte path builds on any target (SSE2 on x86-64, NEON on ARM,
// scalar code elsewhere). Everything lives in namespace rnnkit::RNNKIT_NS so no
// inline function compiled with AVX-512 flags can be picked by the linker for
// another path; kernel files therefore use no C++ standard library templates.
#pragma once

#include <stdint.h>

#ifndef RNNKIT_NS
#error "RNNKIT_NS must name the instruction set namespace (avx512, avx2, generic)"
#endif

#if defined(RNNKIT_TARGET_AVX512)
#define RNNKIT_VBYTES 64
#define RNNKIT_GEMM_MR 12
#elif defined(RNNKIT_TARGET_AVX2)
#define RNNKIT_VBYTES 32
#define RNNKIT_GEMM_MR 6
#else
#define RNNKIT_VBYTES 16
#define RNNKIT_GEMM_MR 6
#endif

#define RNNKIT_INLINE inline __attribute__((always_inline))

namespace rnnkit {
namespace RNNKIT_NS {

template <class Real>
struct Vec;

template <>
struct Vec<float> {
  typedef float V __attribute__((vector_size(RNNKIT_VBYTES)));
  typedef int32_t I __attribute__((vector_size(RNNKIT_VBYTES)));
  static constexpr int kLanes = RNNKIT_VBYTES / 4;
};

template <>
struct Vec<double> {
  typedef double V __attribute__((vector_size(RNNKIT_VBYTES)));
  typedef int64_t I __attribute__((vector_size(RNNKIT_VBYTES)));
  static constexpr int kLanes = RNNKIT_VBYTES / 8;
};

template <class Real>
using vec_t = typename Vec<Real>::V;

// The element type of a vector type, so the math below deduces from its argument.
template <class V>
struct ElemOf;
template <>
struct ElemOf<Vec<float>::V> {
  typedef float Real;
};
template <>
struct ElemOf<Vec<double>::V> {
  typedef double Real;
};

template <class Real>
RNNKIT_INLINE vec_t<Real> splat(Real x) {
  return x - vec_t<Real>{};  // (x - 0 keeps -0.0, which 0 + x would not)
}

template <class Real>
RNNKIT_INLINE vec_t<Real> load(const Real* p) {
  vec_t<Real> v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}

template <class Real>
RNNKIT_INLINE void store(Real* p, vec_t<Real> v) {
  __builtin_memcpy(p, &v, sizeof v);
}

// Loads n <= kLanes lanes (the rest zero) / stores n lanes: the tails of rows whose
// length is not a multiple of the vector width.
template <class Real>
RNNKIT_INLINE vec_t<Real> loadn(const Real* p, int64_t n) {
  if (n == Vec<Real>::kLanes) return load(p);
  vec_t<Real> v = {};
  for (int64_t i = 0; i < n; ++i) v[i] = p[i];
  return v;
}

template <class Real>
RNNKIT_INLINE void storen(Real* p, vec_t<Real> v, int64_t n) {
  if (n == Vec<Real>::kLanes) return store(p, v);
  for (int64_t i = 0; i < n; ++i) p[i] = v[i];
}

// Clamps that keep NaN (a comparison with NaN is false, so x passes through).
template <class Real>
RNNKIT_INLINE vec_t<Real> clamp_hi(vec_t<Real> x, Real hi) {
  vec_t<Real> h = splat(hi);
  return x > h ? h : x;
}
template <class Real>
RNNKIT_INLINE vec_t<Real> clamp_lo(vec_t<Real> x, Real lo) {
  vec_t<Real> l = splat(lo);
  return x < l ? l : x;
}

// Constants of exp(x) = 2^n * exp(r), n = round(x / ln 2), r = x - n ln 2 with
// ln 2 split in a high part exact in few bits and a low correction (Cody-Waite).
template <class Real>
struct ExpConst;
template <>
struct ExpConst<float> {
  static constexpr float lo = -87.3f, hi = 88.3f;
  static constexpr float magic = 12582912.0f;  // 1.5 * 2^23: adds round-to-int
  static constexpr float ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
  static constexpr int bias = 127, mant = 23, terms = 8;  // Taylor terms 1/k!, k<8
};
template <>
struct ExpConst<double> {
  static constexpr double lo = -708.0, hi = 709.0;
  static constexpr double magic = 6755399441055744.0;  // 1.5 * 2^52
  static constexpr double ln2_hi = 6.93147180369123816490e-01;
  static constexpr double ln2_lo = 1.90821492927058770002e-10;
  static constexpr int bias = 1023, mant = 52, terms = 14;
};

// exp(x) to about one ulp for |r| <= ln2/2 (Taylor series to r^7 in float,
// r^13 in double: the first dropped term is below half an ulp). NaN stays NaN;
// x is clamped to the finite, normal range.
template <class V, class Real = typename ElemOf<V>::Real>
RNNKIT_INLINE V vexp(V x) {
  using C = ExpConst<Real>;
  using I = typename Vec<Real>::I;
  x = clamp_lo(clamp_hi(x, C::hi), C::lo);
  const vec_t<Real> magic = splat<Real>(C::magic);
  vec_t<Real> t = x * Real(1.4426950408889634) + magic;
  vec_t<Real> n = t - magic;
  vec_t<Real> r = x - n * C::ln2_hi - n * C::ln2_lo;
  // Horner on sum_k r^k / k!
  Real coef[C::terms];
  coef[0] = 1;
  for (int k = 1; k < C::terms; ++k) coef[k] = coef[k - 1] / Real(k);
  vec_t<Real> p = splat(coef[C::terms - 1]);
  for (int k = C::terms - 2; k >= 0; --k) p = p * r + coef[k];
  I ni = (I)t - (I)magic;
  I scale = (ni + C::bias) << C::mant;
  return p * (vec_t<Real>)scale;
}

template <class V, class Real = typename ElemOf<V>::Real>
RNNKIT_INLINE V vabs(V x) {
  using I = typename Vec<Real>::I;
  I sign = (I)splat<Real>(Real(-0.0));
  return (vec_t<Real>)((I)x & ~sign);
}

// tanh(x) = sign(x) (1 - e) / (1 + e), e = exp(-2|x|). |x| is capped at 20,
// where tanh is 1 to the last bit in both precisions.
template <class V, class Real = typename ElemOf<V>::Real>
RNNKIT_INLINE V vtanh(V x) {
  vec_t<Real> a = clamp_hi(vabs(x), Real(20));
  vec_t<Real> e = vexp(a * Real(-2));
  vec_t<Real> t = (Real(1) - e) / (Real(1) + e);
  return x < Real(0) ? -t : t;
}

template <class V, class Real = typename ElemOf<V>::Real>
RNNKIT_INLINE V vsigmoid(V x) {
  return Real(1) / (Real(1) + vexp(-x));
}

template <class V, class Real = typename ElemOf<V>::Real>
RNNKIT_INLINE V vrelu(V x) {
  return x < Real(0) ? splat<Real>(0) : x;  // NaN passes through, like np.maximum
}

RNNKIT_INLINE int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
RNNKIT_INLINE int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

}  // namespace RNNKIT_NS
}  // namespace rnnkit
