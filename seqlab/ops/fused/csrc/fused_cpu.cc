// Fused CPU ops for the RWKV-7 block (float32/float64, OpenMP), with exact backward passes.
//
// Why: in Paddle's eager mode these small formulas cost several kernels each, and some
// gradients are very slow on CPU (FACTS.md: the [1,1,C] broadcast-multiply gradients of the
// token-shift mixes ~330 ms/step, pow(relu(x), 2) ~100 ms, F.normalize backward ~41 ms/layer).
//
//   token_shift_mix(x [B,T,C], m [K,C]) -> out [K,B,T,C]
//       out[i,b,t,:] = x[b,t,:] + (x[b,t-1,:] - x[b,t,:]) * m[i,:]     (x[b,-1,:] = 0)
//       dx[b,t,:] = sum_i dout[i,b,t,:] (1 - m[i,:]) + sum_i dout[i,b,t+1,:] m[i,:]
//       dm[i,:]   = sum_{b,t} dout[i,b,t,:] (x[b,t-1,:] - x[b,t,:])
//   squared_relu(x) = max(x, 0)^2 ;  dx = 2 max(x, 0) dy
//   l2_normalize(x) over the last axis, as paddle.nn.functional.normalize:
//       y = x / max(|x|, eps) ;  dx = (dy - y (y . dy)) / |x|   if |x| > eps,  dy / eps otherwise
//       (eps travels as a float32 attribute, so rows with |x| < eps differ from a float64
//       Paddle formula by ~1e-8 relative; rows above eps are exact)

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "paddle/extension.h"

namespace {

paddle::Tensor dense(const paddle::Tensor& x) { return x.is_contiguous() ? x : x.contiguous(); }

// Small tensors are not worth waking the thread team for.
int threads_for(int64_t work, int num_threads) {
  return work < (1 << 15) ? 1 : std::max(1, num_threads);
}

template <typename T>
void token_shift_mix_fwd(const T* __restrict x, const T* __restrict m, T* __restrict out,
                         int64_t B, int64_t Tn, int64_t C, int64_t K, int nt) {
  const int64_t rows = B * Tn, BTC = rows * C;
#pragma omp parallel for schedule(static) num_threads(threads_for(BTC * K, nt))
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * C;
    const bool first = (r % Tn) == 0;
    for (int64_t i = 0; i < K; ++i) {
      const T* mi = m + i * C;
      T* o = out + i * BTC + r * C;
      if (first) {
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) o[c] = xr[c] - xr[c] * mi[c];
      } else {
        const T* xp = xr - C;
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) o[c] = xr[c] + (xp[c] - xr[c]) * mi[c];
      }
    }
  }
}

template <typename T>
void token_shift_mix_bwd(const T* __restrict x, const T* __restrict m, const T* __restrict dout,
                         T* __restrict dx, T* __restrict dm, int64_t B, int64_t Tn, int64_t C,
                         int64_t K, int nt) {
  const int64_t rows = B * Tn, BTC = rows * C;
  const int threads = threads_for(BTC * K, nt);
  // dm sums B*T terms: accumulate in double so float32 stays accurate (~1e-7) for long sums.
  std::vector<double> partial(static_cast<size_t>(threads) * K * C, 0.0);
#pragma omp parallel num_threads(threads)
  {
    double* __restrict dmp = partial.data() + static_cast<size_t>(omp_get_thread_num()) * K * C;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const T* xr = x + r * C;
      const bool first = (r % Tn) == 0;
      const bool last = (r % Tn) == Tn - 1;
      T* d = dx + r * C;
      for (int64_t c = 0; c < C; ++c) d[c] = 0;
      for (int64_t i = 0; i < K; ++i) {
        const T* mi = m + i * C;
        const T* g = dout + i * BTC + r * C;
        double* dmi = dmp + i * C;
        if (first) {
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) {
            d[c] += g[c] * (T(1) - mi[c]);
            dmi[c] -= g[c] * xr[c];
          }
        } else {
          const T* xp = xr - C;
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) {
            d[c] += g[c] * (T(1) - mi[c]);
            dmi[c] += g[c] * (xp[c] - xr[c]);
          }
        }
        if (!last) {  // x[t] is also the shifted input of step t + 1
          const T* gn = g + C;
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) d[c] += gn[c] * mi[c];
        }
      }
    }
  }
  for (int64_t j = 0; j < K * C; ++j) {
    double s = 0;
    for (int th = 0; th < threads; ++th) s += partial[static_cast<size_t>(th) * K * C + j];
    dm[j] = static_cast<T>(s);
  }
}

}  // namespace

std::vector<paddle::Tensor> TokenShiftMixForward(const paddle::Tensor& x_, const paddle::Tensor& m_,
                                                 int num_threads) {
  PD_CHECK(x_.is_cpu() && m_.is_cpu(), "seqlab token_shift_mix: CPU tensors only");
  PD_CHECK(x_.shape().size() == 3 && m_.shape().size() == 2 && x_.shape()[2] == m_.shape()[1],
           "seqlab token_shift_mix: x must be [B, T, C] and mixes [K, C]");
  PD_CHECK(x_.dtype() == m_.dtype(), "seqlab token_shift_mix: x and mixes dtypes differ");
  auto x = dense(x_), m = dense(m_);
  const int64_t B = x.shape()[0], T = x.shape()[1], C = x.shape()[2], K = m.shape()[0];
  auto out = paddle::empty({K, B, T, C}, x.dtype(), x.place());
  PD_DISPATCH_FLOATING_TYPES(x.type(), "seqlab_token_shift_mix", ([&] {
    token_shift_mix_fwd<data_t>(x.data<data_t>(), m.data<data_t>(), out.data<data_t>(), B, T, C,
                                K, num_threads);
  }));
  return {out};
}

std::vector<paddle::Tensor> TokenShiftMixBackward(const paddle::Tensor& x_,
                                                  const paddle::Tensor& m_,
                                                  const paddle::Tensor& dout_, int num_threads) {
  auto x = dense(x_), m = dense(m_), dout = dense(dout_);
  const int64_t B = x.shape()[0], T = x.shape()[1], C = x.shape()[2], K = m.shape()[0];
  auto dx = paddle::empty(x.shape(), x.dtype(), x.place());
  auto dm = paddle::empty(m.shape(), m.dtype(), m.place());
  PD_DISPATCH_FLOATING_TYPES(x.type(), "seqlab_token_shift_mix_grad", ([&] {
    token_shift_mix_bwd<data_t>(x.data<data_t>(), m.data<data_t>(), dout.data<data_t>(),
                                dx.data<data_t>(), dm.data<data_t>(), B, T, C, K, num_threads);
  }));
  return {dx, dm};
}

std::vector<std::vector<int64_t>> TokenShiftMixInferShape(const std::vector<int64_t>& x,
                                                          const std::vector<int64_t>& m, int) {
  return {{m[0], x[0], x[1], x[2]}};
}

std::vector<paddle::DataType> SameDtype1(paddle::DataType x, paddle::DataType) { return {x}; }

PD_BUILD_OP(seqlab_token_shift_mix)
    .Inputs({"x", "mixes"})
    .Outputs({"out"})
    .Attrs({"num_threads: int"})
    .SetKernelFn(PD_KERNEL(TokenShiftMixForward))
    .SetInferShapeFn(PD_INFER_SHAPE(TokenShiftMixInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(SameDtype1));

PD_BUILD_GRAD_OP(seqlab_token_shift_mix)
    .Inputs({"x", "mixes", paddle::Grad("out")})
    .Outputs({paddle::Grad("x"), paddle::Grad("mixes")})
    .Attrs({"num_threads: int"})
    .SetKernelFn(PD_KERNEL(TokenShiftMixBackward));

// ---------------------------------------------------------------- squared_relu

namespace {

// (Loops with pragmas cannot sit inside PD_DISPATCH_FLOATING_TYPES' macro argument.)
template <typename T>
void squared_relu_fwd(const T* __restrict x, T* __restrict y, int64_t n, int nt) {
#pragma omp parallel for simd schedule(static) num_threads(threads_for(n, nt))
  for (int64_t i = 0; i < n; ++i) {
    const T r = x[i] > T(0) ? x[i] : T(0);
    y[i] = r * r;
  }
}

template <typename T>
void squared_relu_bwd(const T* __restrict x, const T* __restrict g, T* __restrict dx, int64_t n,
                      int nt) {
#pragma omp parallel for simd schedule(static) num_threads(threads_for(n, nt))
  for (int64_t i = 0; i < n; ++i) {
    const T r = x[i] > T(0) ? x[i] : T(0);
    dx[i] = T(2) * r * g[i];
  }
}

template <typename T>
void l2_normalize_fwd(const T* __restrict x, T* __restrict y, int64_t rows, int64_t C, T eps,
                      int nt) {
#pragma omp parallel for schedule(static) num_threads(threads_for(rows * C, nt))
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * C;
    T ss = 0;
#pragma omp simd reduction(+ : ss)
    for (int64_t c = 0; c < C; ++c) ss += xr[c] * xr[c];
    const T inv = T(1) / std::max(std::sqrt(ss), eps);
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) y[r * C + c] = xr[c] * inv;
  }
}

template <typename T>
void l2_normalize_bwd(const T* __restrict x, const T* __restrict g, T* __restrict dx,
                      int64_t rows, int64_t C, T eps, int nt) {
#pragma omp parallel for schedule(static) num_threads(threads_for(rows * C, nt))
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * C;
    const T* gr = g + r * C;
    T ss = 0, xg = 0;
#pragma omp simd reduction(+ : ss, xg)
    for (int64_t c = 0; c < C; ++c) {
      ss += xr[c] * xr[c];
      xg += xr[c] * gr[c];
    }
    const T norm = std::sqrt(ss);
    if (norm > eps) {
      const T inv = T(1) / norm;
      const T coef = xg * inv * inv * inv;  // (y . dy) / |x| with y = x / |x|
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) dx[r * C + c] = gr[c] * inv - xr[c] * coef;
    } else {  // y = x / eps: constant denominator
      const T inv = T(1) / eps;
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) dx[r * C + c] = gr[c] * inv;
    }
  }
}

}  // namespace

std::vector<paddle::Tensor> SquaredReluForward(const paddle::Tensor& x_, int num_threads) {
  PD_CHECK(x_.is_cpu(), "seqlab squared_relu: CPU tensors only");
  auto x = dense(x_);
  auto y = paddle::empty(x.shape(), x.dtype(), x.place());
  PD_DISPATCH_FLOATING_TYPES(x.type(), "seqlab_squared_relu", ([&] {
    squared_relu_fwd<data_t>(x.data<data_t>(), y.data<data_t>(), x.numel(), num_threads);
  }));
  return {y};
}

std::vector<paddle::Tensor> SquaredReluBackward(const paddle::Tensor& x_,
                                                const paddle::Tensor& dy_, int num_threads) {
  auto x = dense(x_), dy = dense(dy_);
  auto dx = paddle::empty(x.shape(), x.dtype(), x.place());
  PD_DISPATCH_FLOATING_TYPES(x.type(), "seqlab_squared_relu_grad", ([&] {
    squared_relu_bwd<data_t>(x.data<data_t>(), dy.data<data_t>(), dx.data<data_t>(), x.numel(),
                             num_threads);
  }));
  return {dx};
}

PD_BUILD_OP(seqlab_squared_relu)
    .Inputs({"x"})
    .Outputs({"y"})
    .Attrs({"num_threads: int"})
    .SetKernelFn(PD_KERNEL(SquaredReluForward));

PD_BUILD_GRAD_OP(seqlab_squared_relu)
    .Inputs({"x", paddle::Grad("y")})
    .Outputs({paddle::Grad("x")})
    .Attrs({"num_threads: int"})
    .SetKernelFn(PD_KERNEL(SquaredReluBackward));

// ---------------------------------------------------------------- l2_normalize (last axis)

std::vector<paddle::Tensor> L2NormalizeForward(const paddle::Tensor& x_, float eps,
                                               int num_threads) {
  PD_CHECK(x_.is_cpu(), "seqlab l2_normalize: CPU tensors only");
  auto x = dense(x_);
  auto y = paddle::empty(x.shape(), x.dtype(), x.place());
  const int64_t C = x.shape().empty() ? 1 : x.shape().back();
  const int64_t rows = C == 0 ? 0 : x.numel() / C;
  PD_DISPATCH_FLOATING_TYPES(x.type(), "seqlab_l2_normalize", ([&] {
    l2_normalize_fwd<data_t>(x.data<data_t>(), y.data<data_t>(), rows, C,
                             static_cast<data_t>(eps), num_threads);
  }));
  return {y};
}

std::vector<paddle::Tensor> L2NormalizeBackward(const paddle::Tensor& x_,
                                                const paddle::Tensor& dy_, float eps,
                                                int num_threads) {
  auto x = dense(x_), dy = dense(dy_);
  auto dx = paddle::empty(x.shape(), x.dtype(), x.place());
  const int64_t C = x.shape().empty() ? 1 : x.shape().back();
  const int64_t rows = C == 0 ? 0 : x.numel() / C;
  PD_DISPATCH_FLOATING_TYPES(x.type(), "seqlab_l2_normalize_grad", ([&] {
    l2_normalize_bwd<data_t>(x.data<data_t>(), dy.data<data_t>(), dx.data<data_t>(), rows, C,
                             static_cast<data_t>(eps), num_threads);
  }));
  return {dx};
}

PD_BUILD_OP(seqlab_l2_normalize)
    .Inputs({"x"})
    .Outputs({"y"})
    .Attrs({"eps: float", "num_threads: int"})
    .SetKernelFn(PD_KERNEL(L2NormalizeForward));

PD_BUILD_GRAD_OP(seqlab_l2_normalize)
    .Inputs({"x", paddle::Grad("y")})
    .Outputs({paddle::Grad("x")})
    .Attrs({"eps: float", "num_threads: int"})
    .SetKernelFn(PD_KERNEL(L2NormalizeBackward));
