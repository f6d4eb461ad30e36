// linear.cpp: the dense layer y = act(x W^T + b) on the kernels' GEMM (gemm.h),
// the bias and the activation fused into one pass over y, and its backward
// (da = dy act', dW += da^T x, db += column sums of da, dx = da W) in one
// OpenMP region. Arguments: LinearArgs in blocks.h. Compiled once per ISA.
#include <omp.h>

#include "blocks.h"
#include "cell.h"
#include "gemm.h"

namespace rnnkit {
namespace RNNKIT_NS {

namespace {

template <Act kAct, class Real>
void bias_act_rows(const LinearArgs<Real>& a, int64_t r0, int64_t r1, bool act) {
  using V = vec_t<Real>;
  constexpr int64_t VL = Vec<Real>::kLanes;
  const int64_t O = a.O;
  for (int64_t r = r0; r < r1; ++r) {
    Real* y = a.y + r * O;
    for (int64_t j = 0; j < O; j += VL) {
      const int64_t n = min64(VL, O - j);
      V v = loadn(y + j, n);
      if (a.b) v += loadn(a.b + j, n);
      if (act) v = activate<kAct>(v);
      storen(y + j, v, n);
    }
  }
}

// da = dy * act'(y) from the output y.
template <Act kAct, class Real>
void act_grad_rows(const LinearArgs<Real>& a, int64_t r0, int64_t r1) {
  using V = vec_t<Real>;
  constexpr int64_t VL = Vec<Real>::kLanes;
  const int64_t O = a.O;
  for (int64_t r = r0; r < r1; ++r) {
    const Real* y = a.y + r * O;
    const Real* dy = a.dy + r * O;
    Real* da = a.da + r * O;
    for (int64_t j = 0; j < O; j += VL) {
      const int64_t n = min64(VL, O - j);
      V h = loadn(y + j, n), d = loadn(dy + j, n), g;
      if (kAct == kTanh)
        g = Real(1) - h * h;
      else if (kAct == kSigmoid)
        g = (Real(1) - h) * h;
      else
        g = h > Real(0) ? splat<Real>(1) : splat<Real>(0);
      storen(da + j, g * d, n);
    }
  }
}

template <class F>
void with_act(int act, F f) {
  if (act == kRelu)
    f(ActTag<kRelu>{});
  else if (act == kSigmoid)
    f(ActTag<kSigmoid>{});
  else
    f(ActTag<kTanh>{});
}

}  // namespace

template <class Real>
void linear_forward(const LinearArgs<Real>& a) {
  const int64_t N = a.N, I = a.I, O = a.O;
  const int nth = block_team(N * I * O, a.threads);
  const bool act = a.act >= 0;
  TeamBarrier bar;
#pragma omp parallel num_threads(nth)
  {
    DenormalGuard guard;
    const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
    // y = x W^T: B(k=i, j=o) = W[o*I + i]
    gemm<Real>(N, O, I, a.x, I, 1, a.W, 1, I, a.y, O, false, a.pack, &bar, tid, nt);
    if (a.b || act) {
      const int64_t r0 = N * tid / nt, r1 = N * (tid + 1) / nt;
      with_act(a.act,
               [&](auto tag) { bias_act_rows<decltype(tag)::value>(a, r0, r1, act); });
    }
  }
}

template <class Real>
void linear_backward(const LinearArgs<Real>& a) {
  using V = vec_t<Real>;
  constexpr int64_t VL = Vec<Real>::kLanes;
  const int64_t N = a.N, I = a.I, O = a.O;
  const int nth = block_team(N * I * O * (a.dx ? 2 : 1), a.threads);
  const Real* da = a.act >= 0 ? a.da : a.dy;
  TeamBarrier bar;
#pragma omp parallel num_threads(nth)
  {
    DenormalGuard guard;
    const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
    if (a.act >= 0) {
      const int64_t r0 = N * tid / nt, r1 = N * (tid + 1) / nt;
      with_act(a.act,
               [&](auto tag) { act_grad_rows<decltype(tag)::value>(a, r0, r1); });
      bar.wait(nt);
    }
    // dW += da^T x: A(i=o, k=n) = da[n*O + o], B(k=n, j=i) = x[n*I + i]
    gemm<Real>(O, I, N, da, 1, O, a.x, I, 1, a.dW, I, true, a.pack, &bar, tid, nt);
    if (a.db) {
      // db += sum over rows, in row order; threads own vectors of columns
      const int64_t nv = (O + VL - 1) / VL;
      for (int64_t v = nv * tid / nt; v < nv * (tid + 1) / nt; ++v) {
        const int64_t j = v * VL, n = min64(VL, O - j);
        V s{};
        for (int64_t r = 0; r < N; ++r) s += loadn(da + r * O + j, n);
        storen(a.db + j, loadn(a.db + j, n) + s, n);
      }
    }
    // dx = da W: B(k=o, j=i) = W[o*I + i]
    if (a.dx)
      gemm<Real>(N, I, O, da, O, 1, a.W, I, 1, a.dx, I, false, a.pack, &bar, tid, nt);
  }
}

template void linear_forward<float>(const LinearArgs<float>&);
template void linear_forward<double>(const LinearArgs<double>&);
template void linear_backward<float>(const LinearArgs<float>&);
template void linear_backward<double>(const LinearArgs<double>&);

}  // namespace RNNKIT_NS
}  // namespace rnnkit
