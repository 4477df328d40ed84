// Fused CPU ops for the RWKV-7 block (float32/float64), with exact backward passes.
//
// Threads: every op takes an explicit thread count (seqlab.ops._build.num_threads()) and runs
// on std::threads via parallel_rows() below, not OpenMP: libgomp's idle workers spin after each
// parallel region and, on a 2-core machine, steal the core from the Paddle kernel that runs next.
// (`#pragma omp simd` is still used, for vectorisation only.) The RWKV-7 TimeMix ops, the
// small-width linear and layer_norm are documented where they are defined, further down.
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

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "paddle/extension.h"

namespace {

paddle::Tensor dense(const paddle::Tensor& x) { return x.is_contiguous() ? x : x.contiguous(); }

// Small tensors are not worth waking the thread team for.
int threads_for(int64_t work, int num_threads) {
  return work < (1 << 15) ? 1 : std::max(1, num_threads);
}

// body(tid, lo, hi) over [0, n) in chunks of `grain`, on `threads` threads (tid 0 = the caller),
// chunks handed out dynamically. std::thread, not OpenMP: libgomp's idle workers spin-wait after
// every parallel region (OMP_WAIT_POLICY cannot change once Paddle has started libgomp), which
// on a 2-core machine steals the core from the Paddle kernels that run next (the RWKV-7 step
// measured 2.6x slower with 2 OpenMP threads than with 1).
template <typename F>
void parallel_rows(int64_t n, int threads, F&& body, int64_t grain) {
  if (n <= 0) return;
  const int64_t chunks = (n + grain - 1) / grain;
  const int nth = static_cast<int>(std::min<int64_t>(std::max(threads, 1), chunks));
  if (nth <= 1) {
    body(0, int64_t(0), n);
    return;
  }
  std::atomic<int64_t> next{0};
  auto work = [&](int tid) {
    for (;;) {
      const int64_t c = next.fetch_add(1);
      if (c >= chunks) break;
      body(tid, c * grain, std::min(n, (c + 1) * grain));
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(nth - 1);
  for (int t = 1; t < nth; ++t) pool.emplace_back(work, t);
  work(0);
  for (auto& th : pool) th.join();
}

template <typename T>
void token_shift_mix_fwd(const T* __restrict x, const T* __restrict m, T* __restrict out,
                         int64_t B, int64_t Tn, int64_t C, int64_t K, int nt) {
  const int64_t rows = B * Tn, BTC = rows * C;
parallel_rows(rows, threads_for(BTC * K, nt), [&](int, int64_t lo_, int64_t hi_) {
  for (int64_t r = lo_; r < hi_; ++r) {
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
}, 1024);
}

template <typename T>
void token_shift_mix_bwd(const T* __restrict x, const T* __restrict m, const T* __restrict dout,
                         T* __restrict dx, T* __restrict dm, int64_t B, int64_t Tn, int64_t C,
                         int64_t K, int nt) {
  const int64_t rows = B * Tn, BTC = rows * C;
  const int threads = threads_for(BTC * K, nt);
  // dm sums B*T terms: accumulate in double so float32 stays accurate (~1e-7) for long sums.
  std::vector<double> partial(static_cast<size_t>(threads) * K * C, 0.0);
  parallel_rows(rows, threads, [&](int tid_, int64_t lo_, int64_t hi_) {
    double* __restrict dmp = partial.data() + static_cast<size_t>(tid_) * K * C;
    for (int64_t r = lo_; r < hi_; ++r) {
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
  }, 1024);
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
parallel_rows(n, threads_for(n, nt), [&](int, int64_t lo_, int64_t hi_) {
#pragma omp simd
  for (int64_t i = lo_; i < hi_; ++i) {
      const T r = x[i] > T(0) ? x[i] : T(0);
      y[i] = r * r;
    }
}, 65536);
}

template <typename T>
void squared_relu_bwd(const T* __restrict x, const T* __restrict g, T* __restrict dx, int64_t n,
                      int nt) {
parallel_rows(n, threads_for(n, nt), [&](int, int64_t lo_, int64_t hi_) {
#pragma omp simd
  for (int64_t i = lo_; i < hi_; ++i) {
      const T r = x[i] > T(0) ? x[i] : T(0);
      dx[i] = T(2) * r * g[i];
    }
}, 65536);
}

template <typename T>
void l2_normalize_fwd(const T* __restrict x, T* __restrict y, int64_t rows, int64_t C, T eps,
                      int nt) {
parallel_rows(rows, threads_for(rows * C, nt), [&](int, int64_t lo_, int64_t hi_) {
  for (int64_t r = lo_; r < hi_; ++r) {
      const T* xr = x + r * C;
      T ss = 0;
#pragma omp simd reduction(+ : ss)
      for (int64_t c = 0; c < C; ++c) ss += xr[c] * xr[c];
      const T inv = T(1) / std::max(std::sqrt(ss), eps);
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) y[r * C + c] = xr[c] * inv;
    }
}, 1024);
}

template <typename T>
void l2_normalize_bwd(const T* __restrict x, const T* __restrict g, T* __restrict dx,
                      int64_t rows, int64_t C, T eps, int nt) {
parallel_rows(rows, threads_for(rows * C, nt), [&](int, int64_t lo_, int64_t hi_) {
  for (int64_t r = lo_; r < hi_; ++r) {
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
}, 1024);
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

// ================================================================ RWKV-7 TimeMix block ops
//
// The element-wise work of one RWKV-7 TimeMix layer, between its matmuls, in three ops (rows =
// B*T, each row C = H*N channels; [C] parameters may be passed with any shape of C elements,
// e.g. the seed's [1,1,C] or [H,N]). Each op recomputes what its backward needs from its inputs
// and reduces parameter gradients over rows in double, per thread, like token_shift_mix.
//
//   token_shift_mix6(x [B,T,C], m0..m5) -> o_i = x + (shift(x) - x) * m_i   (six outputs)
//   rwkv7_tmix_pre(k, wl, al, w0, a0, k_k, k_a):
//       decay = exp(-exp(-softplus(-(w0 + wl)) - 0.5))     (Paddle softplus, threshold 20)
//       a = sigmoid(a0 + al);  kkn = per-head l2 normalise(k * k_k)  (eps 1e-12)
//       kout = k * (1 + (a - 1) * k_a);  wa = -kkn;  wb = kkn * a
//   rwkv7_vres(v, vf, vl, v0) = v + (vf - v) * sigmoid(v0 + vl)
//   rwkv7_tmix_post(y, r, k, v, g, r_k, gn_w, gn_b):
//       z = (GroupNorm_H(y) * gn_w + gn_b + sum_head(r * k * r_k) * v) * g

namespace {

// exp that GCC vectorises inside `omp simd` loops (std::exp is a scalar libm call here; the
// TimeMix ops need ~3 per element, which made them ~80 ms at B*T*C = 1M). float: Cephes-style
// range reduction plus a degree-6 polynomial, within 2 ulp of expf for |x| < 87; saturates
// to 0 / inf outside. double: std::exp.
inline float vexp(float x) {
  x = std::min(std::max(x, -87.3f), 88.3f);
  const float fx = std::nearbyint(x * 1.44269504088896341f);
  float r = x - fx * 0.693359375f;
  r = r + fx * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t e = static_cast<int32_t>(fx) + 127;
  float scale;
  const int32_t bits = e << 23;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}
inline double vexp(double x) { return std::exp(x); }

template <typename T>
inline T sigmoid_(T x) { return T(1) / (T(1) + vexp(-x)); }

// Per-thread double accumulators for parameter gradients: P vectors of C each.
struct ParamGrads {
  int threads, P;
  int64_t C;
  std::vector<double> buf;
  ParamGrads(int threads_, int P_, int64_t C_)
      : threads(threads_), P(P_), C(C_), buf(static_cast<size_t>(threads_) * P_ * C_, 0.0) {}
  double* get(int tid, int p) { return buf.data() + (static_cast<size_t>(tid) * P + p) * C; }
  template <typename T>
  void write(int p, T* out) const {
    for (int64_t c = 0; c < C; ++c) {
      double s = 0;
      for (int th = 0; th < threads; ++th) s += buf[(static_cast<size_t>(th) * P + p) * C + c];
      out[c] = static_cast<T>(s);
    }
  }
};

constexpr int kMix = 6;

template <typename T>
void mix6_fwd(const T* __restrict x, const T* const* m, T* const* o, int64_t rows, int64_t Tn,
              int64_t C, int nt) {
parallel_rows(rows, threads_for(rows * C * kMix, nt), [&](int, int64_t lo_, int64_t hi_) {
  for (int64_t r = lo_; r < hi_; ++r) {
      const T* xr = x + r * C;
      const bool first = (r % Tn) == 0;
      for (int i = 0; i < kMix; ++i) {
        const T* mi = m[i];
        T* oi = o[i] + r * C;
        if (first) {
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) oi[c] = xr[c] + (T(0) - xr[c]) * mi[c];
        } else {
          const T* xp = xr - C;
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) oi[c] = xr[c] + (xp[c] - xr[c]) * mi[c];
        }
      }
    }
}, 1024);
}

template <typename T>
void mix6_bwd(const T* __restrict x, const T* const* m, const T* const* g, T* __restrict dx,
              T* const* dm, int64_t rows, int64_t Tn, int64_t C, int nt) {
  const int threads = threads_for(rows * C * kMix, nt);
  ParamGrads acc(threads, kMix, C);
  parallel_rows(rows, threads, [&](int tid_, int64_t lo_, int64_t hi_) {
    for (int64_t r = lo_; r < hi_; ++r) {
      const T* xr = x + r * C;
      const bool first = (r % Tn) == 0;
      const bool last = (r % Tn) == Tn - 1;
      T* d = dx + r * C;
      for (int64_t c = 0; c < C; ++c) d[c] = 0;
      for (int i = 0; i < kMix; ++i) {
        const T* mi = m[i];
        const T* gi = g[i] + r * C;
        double* dmi = acc.get(tid_, i);
        const T* xp = first ? nullptr : xr - C;
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) {
          const T diff = (first ? T(0) : xp[c]) - xr[c];
          d[c] += gi[c] * (T(1) - mi[c]);
          dmi[c] += gi[c] * diff;
        }
        if (!last) {
          const T* gn = gi + C;
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) d[c] += gn[c] * mi[c];
        }
      }
    }
  }, 1024);
  for (int i = 0; i < kMix; ++i) acc.write(i, dm[i]);
}

// Paddle's softplus (beta 1, threshold 20) of u, and its derivative.
// exp(w) for w = -softplus(-wpre) - 0.5 (Paddle softplus: beta 1, threshold 20), without a
// log: exp(-log1p(e^u)) = 1 / (1 + e^u) with u = -wpre; and dw/dwpre = softplus'(u) = sigmoid(u).
template <typename T>
inline T decay_ew(T wpre, T* dw_dwpre = nullptr) {
  const T u = -wpre;
  if (u > T(20)) {  // softplus(u) = u there
    if (dw_dwpre) *dw_dwpre = T(1);
    return vexp(wpre - T(0.5));
  }
  const T eu = vexp(u);
  const T inv = T(1) / (T(1) + eu);
  if (dw_dwpre) *dw_dwpre = eu * inv;
  return T(0.60653065971263342) * inv;  // exp(-0.5) / (1 + e^u)
}

template <typename T>
void tmix_pre_fwd(const T* __restrict k, const T* __restrict wl, const T* __restrict al,
                  const T* __restrict w0, const T* __restrict a0, const T* __restrict kk_,
                  const T* __restrict ka, T* __restrict decay, T* __restrict kout,
                  T* __restrict wa, T* __restrict wb, int64_t rows, int64_t C, int64_t N, int nt) {
  const T eps = T(1e-12f);
parallel_rows(rows, threads_for(rows * C * 8, nt), [&](int, int64_t lo_, int64_t hi_) {
  for (int64_t r = lo_; r < hi_; ++r) {
      const int64_t o = r * C;
      T kk[512], av[512];
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) {
        const T wpre = w0[c] + wl[o + c];
        decay[o + c] = vexp(-decay_ew(wpre));
        const T a = sigmoid_(a0[c] + al[o + c]);
        av[c] = a;
        kout[o + c] = k[o + c] * (T(1) + (a - T(1)) * ka[c]);
        kk[c] = k[o + c] * kk_[c];
      }
      for (int64_t h = 0; h < C; h += N) {
        T ss = 0;
#pragma omp simd reduction(+ : ss)
        for (int64_t n = 0; n < N; ++n) ss += kk[h + n] * kk[h + n];
        const T den = std::max(std::sqrt(ss), eps);
#pragma omp simd
        for (int64_t n = 0; n < N; ++n) {
          const int64_t c = h + n;
          const T kkn = kk[c] / den;
          wa[o + c] = -kkn;
          wb[o + c] = kkn * av[c];
        }
      }
    }
}, 1024);
}

template <typename T>
void tmix_pre_bwd(const T* __restrict k, const T* __restrict wl, const T* __restrict al,
                  const T* __restrict w0, const T* __restrict a0, const T* __restrict kk_,
                  const T* __restrict ka, const T* __restrict gdecay, const T* __restrict gkout,
                  const T* __restrict gwa, const T* __restrict gwb, T* __restrict dk,
                  T* __restrict dwl, T* __restrict dal, T* dw0, T* da0, T* dkk_, T* dka,
                  int64_t rows, int64_t C, int64_t N, int nt) {
  const T eps = T(1e-12f);
  const int threads = threads_for(rows * C * 8, nt);
  ParamGrads acc(threads, 4, C);
  parallel_rows(rows, threads, [&](int tid_, int64_t lo_, int64_t hi_) {
    double* pw0 = acc.get(tid_, 0);
    double* pa0 = acc.get(tid_, 1);
    double* pkk = acc.get(tid_, 2);
    double* pka = acc.get(tid_, 3);
    for (int64_t r = lo_; r < hi_; ++r) {
      const int64_t o = r * C;
      T kk[512], av[512];
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) {
        // decay
        const T wpre = w0[c] + wl[o + c];
        T sg;
        const T ew = decay_ew(wpre, &sg);
        const T dec = vexp(-ew);
        const T gw = gdecay[o + c] * (-ew * dec) * sg;
        dwl[o + c] = gw;
        pw0[c] += gw;
        av[c] = sigmoid_(a0[c] + al[o + c]);
        kk[c] = k[o + c] * kk_[c];
      }
      for (int64_t h = 0; h < C; h += N) {
        T ss = 0;
#pragma omp simd reduction(+ : ss)
        for (int64_t n = 0; n < N; ++n) ss += kk[h + n] * kk[h + n];
        const T norm = std::sqrt(ss);
        // g_kkn = -gwa + gwb * a ; g_a (partial) = gwb * kkn
        T gkkn[512];
        T dot = 0;
        const T den = std::max(norm, eps);
#pragma omp simd reduction(+ : dot)
        for (int64_t n = 0; n < N; ++n) {
          const int64_t c = h + n;
          gkkn[n] = -gwa[o + c] + gwb[o + c] * av[c];
          dot += kk[c] * gkkn[n];
        }
        // normalise's backward: (g - y (y . g)) / |x| above eps, g / eps below (constant den)
        const bool big = norm > eps;
        const T inv = big ? T(1) / norm : T(1) / eps;
        const T coef = big ? dot * inv * inv * inv : T(0);
#pragma omp simd
        for (int64_t n = 0; n < N; ++n) {
          const int64_t c = h + n;
          const T kkn = kk[c] / den;
          const T gkk = gkkn[n] * inv - kk[c] * coef;
          const T a = av[c];
          const T kv = k[o + c];
          const T gk_out = gkout[o + c];
          const T ga = gwb[o + c] * kkn + gk_out * kv * ka[c];
          pka[c] += gk_out * kv * (a - T(1));
          pkk[c] += gkk * kv;
          dk[o + c] = gk_out * (T(1) + (a - T(1)) * ka[c]) + gkk * kk_[c];
          const T gapre = ga * a * (T(1) - a);
          dal[o + c] = gapre;
          pa0[c] += gapre;
        }
      }
    }
  }, 1024);
  acc.write(0, dw0);
  acc.write(1, da0);
  acc.write(2, dkk_);
  acc.write(3, dka);
}

template <typename T>
void vres_fwd(const T* __restrict v, const T* __restrict vf, const T* __restrict vl,
              const T* __restrict v0, T* __restrict out, int64_t rows, int64_t C, int nt) {
parallel_rows(rows, threads_for(rows * C * 4, nt), [&](int, int64_t lo_, int64_t hi_) {
  for (int64_t r = lo_; r < hi_; ++r) {
      const int64_t o = r * C;
      for (int64_t c = 0; c < C; ++c) {
        const T s = sigmoid_(v0[c] + vl[o + c]);
        out[o + c] = v[o + c] + (vf[o + c] - v[o + c]) * s;
      }
    }
}, 1024);
}

template <typename T>
void vres_bwd(const T* __restrict v, const T* __restrict vf, const T* __restrict vl,
              const T* __restrict v0, const T* __restrict g, T* __restrict dv, T* __restrict dvf,
              T* __restrict dvl, T* dv0, int64_t rows, int64_t C, int nt) {
  const int threads = threads_for(rows * C * 4, nt);
  ParamGrads acc(threads, 1, C);
  parallel_rows(rows, threads, [&](int tid_, int64_t lo_, int64_t hi_) {
    double* p0 = acc.get(tid_, 0);
    for (int64_t r = lo_; r < hi_; ++r) {
      const int64_t o = r * C;
      for (int64_t c = 0; c < C; ++c) {
        const T s = sigmoid_(v0[c] + vl[o + c]);
        const T gg = g[o + c];
        dv[o + c] = gg * (T(1) - s);
        dvf[o + c] = gg * s;
        const T gp = gg * (vf[o + c] - v[o + c]) * s * (T(1) - s);
        dvl[o + c] = gp;
        p0[c] += gp;
      }
    }
  }, 1024);
  acc.write(0, dv0);
}

template <typename T>
void tmix_post_fwd(const T* __restrict y, const T* __restrict r_, const T* __restrict k,
                   const T* __restrict v, const T* __restrict g, const T* __restrict rk,
                   const T* __restrict gw, const T* __restrict gb, T* __restrict z, int64_t rows,
                   int64_t C, int64_t N, T eps, int nt) {
parallel_rows(rows, threads_for(rows * C * 8, nt), [&](int, int64_t lo_, int64_t hi_) {
  for (int64_t r = lo_; r < hi_; ++r) {
      const int64_t o = r * C;
      for (int64_t h = 0; h < C; h += N) {
        T mu = 0, s = 0;
        for (int64_t n = 0; n < N; ++n) {
          mu += y[o + h + n];
          s += r_[o + h + n] * k[o + h + n] * rk[h + n];
        }
        mu /= T(N);
        T var = 0;
        for (int64_t n = 0; n < N; ++n) {
          const T d = y[o + h + n] - mu;
          var += d * d;
        }
        const T rstd = T(1) / std::sqrt(var / T(N) + eps);
        for (int64_t n = 0; n < N; ++n) {
          const int64_t c = h + n;
          const T yn = (y[o + c] - mu) * rstd * gw[c] + gb[c];
          z[o + c] = (yn + s * v[o + c]) * g[o + c];
        }
      }
    }
}, 1024);
}

template <typename T>
void tmix_post_bwd(const T* __restrict y, const T* __restrict r_, const T* __restrict k,
                   const T* __restrict v, const T* __restrict g, const T* __restrict rk,
                   const T* __restrict gw, const T* __restrict gb, const T* __restrict gz,
                   T* __restrict dy, T* __restrict dr, T* __restrict dk, T* __restrict dv,
                   T* __restrict dg, T* drk, T* dgw, T* dgb, int64_t rows, int64_t C, int64_t N,
                   T eps, int nt) {
  const int threads = threads_for(rows * C * 8, nt);
  ParamGrads acc(threads, 3, C);
  parallel_rows(rows, threads, [&](int tid_, int64_t lo_, int64_t hi_) {
    double* prk = acc.get(tid_, 0);
    double* pgw = acc.get(tid_, 1);
    double* pgb = acc.get(tid_, 2);
    for (int64_t r = lo_; r < hi_; ++r) {
      const int64_t o = r * C;
      for (int64_t h = 0; h < C; h += N) {
        T mu = 0, s = 0;
        for (int64_t n = 0; n < N; ++n) {
          mu += y[o + h + n];
          s += r_[o + h + n] * k[o + h + n] * rk[h + n];
        }
        mu /= T(N);
        T var = 0;
        for (int64_t n = 0; n < N; ++n) {
          const T d = y[o + h + n] - mu;
          var += d * d;
        }
        const T rstd = T(1) / std::sqrt(var / T(N) + eps);
        T ds = 0, m1 = 0, m2 = 0;
        for (int64_t n = 0; n < N; ++n) {
          const int64_t c = h + n;
          const T yhat = (y[o + c] - mu) * rstd;
          const T yn = yhat * gw[c] + gb[c];
          const T gzc = gz[o + c];
          const T gsum = gzc * g[o + c];  // gradient of (yn + bonus)
          dg[o + c] = gzc * (yn + s * v[o + c]);
          dv[o + c] = gsum * s;
          ds += gsum * v[o + c];
          pgw[c] += gsum * yhat;
          pgb[c] += gsum;
          const T dyhat = gsum * gw[c];
          m1 += dyhat;
          m2 += dyhat * yhat;
        }
        m1 /= T(N);
        m2 /= T(N);
        for (int64_t n = 0; n < N; ++n) {
          const int64_t c = h + n;
          const T yhat = (y[o + c] - mu) * rstd;
          const T dyhat = gz[o + c] * g[o + c] * gw[c];
          dy[o + c] = rstd * (dyhat - m1 - yhat * m2);
          dr[o + c] = ds * k[o + c] * rk[c];
          dk[o + c] = ds * r_[o + c] * rk[c];
          prk[c] += ds * r_[o + c] * k[o + c];
        }
      }
    }
  }, 1024);
  acc.write(0, drk);
  acc.write(1, dgw);
  acc.write(2, dgb);
}

int64_t rows_of(const paddle::Tensor& x) {
  return x.shape().empty() ? 1 : x.numel() / x.shape().back();
}

}  // namespace

// ---------------------------------------------------------------- token_shift_mix6

std::vector<paddle::Tensor> Mix6Forward(const paddle::Tensor& x_, const paddle::Tensor& m0,
                                        const paddle::Tensor& m1, const paddle::Tensor& m2,
                                        const paddle::Tensor& m3, const paddle::Tensor& m4,
                                        const paddle::Tensor& m5, int num_threads) {
  PD_CHECK(x_.is_cpu(), "seqlab token_shift_mix6: CPU tensors only");
  PD_CHECK(x_.shape().size() == 3, "seqlab token_shift_mix6: x must be [B, T, C]");
  auto x = dense(x_);
  const int64_t B = x.shape()[0], Tn = x.shape()[1], C = x.shape()[2];
  std::vector<paddle::Tensor> ms = {dense(m0), dense(m1), dense(m2), dense(m3), dense(m4), dense(m5)};
  std::vector<paddle::Tensor> outs;
  for (int i = 0; i < kMix; ++i) {
    PD_CHECK(ms[i].numel() == C, "seqlab token_shift_mix6: each mix needs C elements");
    outs.push_back(paddle::empty(x.shape(), x.dtype(), x.place()));
  }
  PD_DISPATCH_FLOATING_TYPES(x.type(), "seqlab_token_shift_mix6", ([&] {
    const data_t* mp[kMix];
    data_t* op[kMix];
    for (int i = 0; i < kMix; ++i) {
      mp[i] = ms[i].data<data_t>();
      op[i] = outs[i].data<data_t>();
    }
    mix6_fwd<data_t>(x.data<data_t>(), mp, op, B * Tn, Tn, C, num_threads);
  }));
  return outs;
}

std::vector<paddle::Tensor> Mix6Backward(
    const paddle::Tensor& x_, const paddle::Tensor& m0, const paddle::Tensor& m1,
    const paddle::Tensor& m2, const paddle::Tensor& m3, const paddle::Tensor& m4,
    const paddle::Tensor& m5, const paddle::Tensor& g0, const paddle::Tensor& g1,
    const paddle::Tensor& g2, const paddle::Tensor& g3, const paddle::Tensor& g4,
    const paddle::Tensor& g5, int num_threads) {
  auto x = dense(x_);
  const int64_t B = x.shape()[0], Tn = x.shape()[1], C = x.shape()[2];
  std::vector<paddle::Tensor> ms = {dense(m0), dense(m1), dense(m2), dense(m3), dense(m4), dense(m5)};
  std::vector<paddle::Tensor> gs = {dense(g0), dense(g1), dense(g2), dense(g3), dense(g4), dense(g5)};
  auto dx = paddle::empty(x.shape(), x.dtype(), x.place());
  std::vector<paddle::Tensor> outs = {dx};
  for (int i = 0; i < kMix; ++i) outs.push_back(paddle::empty(ms[i].shape(), x.dtype(), x.place()));
  PD_DISPATCH_FLOATING_TYPES(x.type(), "seqlab_token_shift_mix6_grad", ([&] {
    const data_t* mp[kMix];
    const data_t* gp[kMix];
    data_t* dmp[kMix];
    for (int i = 0; i < kMix; ++i) {
      mp[i] = ms[i].data<data_t>();
      gp[i] = gs[i].data<data_t>();
      dmp[i] = outs[i + 1].data<data_t>();
    }
    mix6_bwd<data_t>(x.data<data_t>(), mp, gp, dx.data<data_t>(), dmp, B * Tn, Tn, C,
                     num_threads);
  }));
  return outs;
}

std::vector<std::vector<int64_t>> Mix6InferShape(
    const std::vector<int64_t>& x, const std::vector<int64_t>&, const std::vector<int64_t>&,
    const std::vector<int64_t>&, const std::vector<int64_t>&, const std::vector<int64_t>&,
    const std::vector<int64_t>&, int) {
  return {x, x, x, x, x, x};
}

std::vector<paddle::DataType> Mix6InferDtype(paddle::DataType x, paddle::DataType,
                                             paddle::DataType, paddle::DataType, paddle::DataType,
                                             paddle::DataType, paddle::DataType) {
  return {x, x, x, x, x, x};
}

PD_BUILD_OP(seqlab_token_shift_mix6)
    .Inputs({"x", "m0", "m1", "m2", "m3", "m4", "m5"})
    .Outputs({"o0", "o1", "o2", "o3", "o4", "o5"})
    .Attrs({"num_threads: int"})
    .SetKernelFn(PD_KERNEL(Mix6Forward))
    .SetInferShapeFn(PD_INFER_SHAPE(Mix6InferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(Mix6InferDtype));

PD_BUILD_GRAD_OP(seqlab_token_shift_mix6)
    .Inputs({"x", "m0", "m1", "m2", "m3", "m4", "m5", paddle::Grad("o0"), paddle::Grad("o1"),
             paddle::Grad("o2"), paddle::Grad("o3"), paddle::Grad("o4"), paddle::Grad("o5")})
    .Outputs({paddle::Grad("x"), paddle::Grad("m0"), paddle::Grad("m1"), paddle::Grad("m2"),
              paddle::Grad("m3"), paddle::Grad("m4"), paddle::Grad("m5")})
    .Attrs({"num_threads: int"})
    .SetKernelFn(PD_KERNEL(Mix6Backward));

// ---------------------------------------------------------------- rwkv7_tmix_pre

std::vector<paddle::Tensor> TmixPreForward(const paddle::Tensor& k_, const paddle::Tensor& wl_,
                                           const paddle::Tensor& al_, const paddle::Tensor& w0_,
                                           const paddle::Tensor& a0_, const paddle::Tensor& kk_,
                                           const paddle::Tensor& ka_, int head_size,
                                           int num_threads) {
  PD_CHECK(k_.is_cpu(), "seqlab rwkv7_tmix_pre: CPU tensors only");
  auto k = dense(k_), wl = dense(wl_), al = dense(al_);
  auto w0 = dense(w0_), a0 = dense(a0_), kkp = dense(kk_), ka = dense(ka_);
  const int64_t C = k.shape().back(), rows = rows_of(k);
  PD_CHECK(C <= 512 && C % head_size == 0, "seqlab rwkv7_tmix_pre: C <= 512, multiple of N");
  PD_CHECK(wl.numel() == k.numel() && al.numel() == k.numel() && w0.numel() == C &&
               a0.numel() == C && kkp.numel() == C && ka.numel() == C,
           "seqlab rwkv7_tmix_pre: shape mismatch");
  std::vector<paddle::Tensor> outs;
  for (int i = 0; i < 4; ++i) outs.push_back(paddle::empty(k.shape(), k.dtype(), k.place()));
  PD_DISPATCH_FLOATING_TYPES(k.type(), "seqlab_rwkv7_tmix_pre", ([&] {
    tmix_pre_fwd<data_t>(k.data<data_t>(), wl.data<data_t>(), al.data<data_t>(),
                         w0.data<data_t>(), a0.data<data_t>(), kkp.data<data_t>(),
                         ka.data<data_t>(), outs[0].data<data_t>(), outs[1].data<data_t>(),
                         outs[2].data<data_t>(), outs[3].data<data_t>(), rows, C, head_size,
                         num_threads);
  }));
  return outs;
}

std::vector<paddle::Tensor> TmixPreBackward(
    const paddle::Tensor& k_, const paddle::Tensor& wl_, const paddle::Tensor& al_,
    const paddle::Tensor& w0_, const paddle::Tensor& a0_, const paddle::Tensor& kk_,
    const paddle::Tensor& ka_, const paddle::Tensor& gd_, const paddle::Tensor& gk_,
    const paddle::Tensor& gwa_, const paddle::Tensor& gwb_, int head_size, int num_threads) {
  auto k = dense(k_), wl = dense(wl_), al = dense(al_);
  auto w0 = dense(w0_), a0 = dense(a0_), kkp = dense(kk_), ka = dense(ka_);
  auto gd = dense(gd_), gk = dense(gk_), gwa = dense(gwa_), gwb = dense(gwb_);
  const int64_t C = k.shape().back(), rows = rows_of(k);
  std::vector<paddle::Tensor> outs;
  for (int i = 0; i < 3; ++i) outs.push_back(paddle::empty(k.shape(), k.dtype(), k.place()));
  for (const auto* p : {&w0, &a0, &kkp, &ka})
    outs.push_back(paddle::empty(p->shape(), k.dtype(), k.place()));
  PD_DISPATCH_FLOATING_TYPES(k.type(), "seqlab_rwkv7_tmix_pre_grad", ([&] {
    tmix_pre_bwd<data_t>(k.data<data_t>(), wl.data<data_t>(), al.data<data_t>(),
                         w0.data<data_t>(), a0.data<data_t>(), kkp.data<data_t>(),
                         ka.data<data_t>(), gd.data<data_t>(), gk.data<data_t>(),
                         gwa.data<data_t>(), gwb.data<data_t>(), outs[0].data<data_t>(),
                         outs[1].data<data_t>(), outs[2].data<data_t>(), outs[3].data<data_t>(),
                         outs[4].data<data_t>(), outs[5].data<data_t>(), outs[6].data<data_t>(),
                         rows, C, head_size, num_threads);
  }));
  return outs;
}

std::vector<std::vector<int64_t>> TmixPreInferShape(
    const std::vector<int64_t>& k, const std::vector<int64_t>&, const std::vector<int64_t>&,
    const std::vector<int64_t>&, const std::vector<int64_t>&, const std::vector<int64_t>&,
    const std::vector<int64_t>&, int, int) {
  return {k, k, k, k};
}

std::vector<paddle::DataType> TmixPreInferDtype(paddle::DataType k, paddle::DataType,
                                                paddle::DataType, paddle::DataType,
                                                paddle::DataType, paddle::DataType,
                                                paddle::DataType) {
  return {k, k, k, k};
}

PD_BUILD_OP(seqlab_rwkv7_tmix_pre)
    .Inputs({"k", "wl", "al", "w0", "a0", "k_k", "k_a"})
    .Outputs({"decay", "kout", "wa", "wb"})
    .Attrs({"head_size: int", "num_threads: int"})
    .SetKernelFn(PD_KERNEL(TmixPreForward))
    .SetInferShapeFn(PD_INFER_SHAPE(TmixPreInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(TmixPreInferDtype));

PD_BUILD_GRAD_OP(seqlab_rwkv7_tmix_pre)
    .Inputs({"k", "wl", "al", "w0", "a0", "k_k", "k_a", paddle::Grad("decay"),
             paddle::Grad("kout"), paddle::Grad("wa"), paddle::Grad("wb")})
    .Outputs({paddle::Grad("k"), paddle::Grad("wl"), paddle::Grad("al"), paddle::Grad("w0"),
              paddle::Grad("a0"), paddle::Grad("k_k"), paddle::Grad("k_a")})
    .Attrs({"head_size: int", "num_threads: int"})
    .SetKernelFn(PD_KERNEL(TmixPreBackward));

// ---------------------------------------------------------------- rwkv7_vres

std::vector<paddle::Tensor> VresForward(const paddle::Tensor& v_, const paddle::Tensor& vf_,
                                        const paddle::Tensor& vl_, const paddle::Tensor& v0_,
                                        int num_threads) {
  PD_CHECK(v_.is_cpu(), "seqlab rwkv7_vres: CPU tensors only");
  auto v = dense(v_), vf = dense(vf_), vl = dense(vl_), v0 = dense(v0_);
  const int64_t C = v.shape().back(), rows = rows_of(v);
  PD_CHECK(vf.numel() == v.numel() && vl.numel() == v.numel() && v0.numel() == C,
           "seqlab rwkv7_vres: shape mismatch");
  auto out = paddle::empty(v.shape(), v.dtype(), v.place());
  PD_DISPATCH_FLOATING_TYPES(v.type(), "seqlab_rwkv7_vres", ([&] {
    vres_fwd<data_t>(v.data<data_t>(), vf.data<data_t>(), vl.data<data_t>(), v0.data<data_t>(),
                     out.data<data_t>(), rows, C, num_threads);
  }));
  return {out};
}

std::vector<paddle::Tensor> VresBackward(const paddle::Tensor& v_, const paddle::Tensor& vf_,
                                         const paddle::Tensor& vl_, const paddle::Tensor& v0_,
                                         const paddle::Tensor& g_, int num_threads) {
  auto v = dense(v_), vf = dense(vf_), vl = dense(vl_), v0 = dense(v0_), g = dense(g_);
  const int64_t C = v.shape().back(), rows = rows_of(v);
  auto dv = paddle::empty(v.shape(), v.dtype(), v.place());
  auto dvf = paddle::empty(v.shape(), v.dtype(), v.place());
  auto dvl = paddle::empty(v.shape(), v.dtype(), v.place());
  auto dv0 = paddle::empty(v0.shape(), v.dtype(), v.place());
  PD_DISPATCH_FLOATING_TYPES(v.type(), "seqlab_rwkv7_vres_grad", ([&] {
    vres_bwd<data_t>(v.data<data_t>(), vf.data<data_t>(), vl.data<data_t>(), v0.data<data_t>(),
                     g.data<data_t>(), dv.data<data_t>(), dvf.data<data_t>(), dvl.data<data_t>(),
                     dv0.data<data_t>(), rows, C, num_threads);
  }));
  return {dv, dvf, dvl, dv0};
}

std::vector<std::vector<int64_t>> VresInferShape(const std::vector<int64_t>& v,
                                                 const std::vector<int64_t>&,
                                                 const std::vector<int64_t>&,
                                                 const std::vector<int64_t>&, int) {
  return {v};
}

std::vector<paddle::DataType> VresInferDtype(paddle::DataType v, paddle::DataType,
                                             paddle::DataType, paddle::DataType) {
  return {v};
}

PD_BUILD_OP(seqlab_rwkv7_vres)
    .Inputs({"v", "vf", "vl", "v0"})
    .Outputs({"out"})
    .Attrs({"num_threads: int"})
    .SetKernelFn(PD_KERNEL(VresForward))
    .SetInferShapeFn(PD_INFER_SHAPE(VresInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(VresInferDtype));

PD_BUILD_GRAD_OP(seqlab_rwkv7_vres)
    .Inputs({"v", "vf", "vl", "v0", paddle::Grad("out")})
    .Outputs({paddle::Grad("v"), paddle::Grad("vf"), paddle::Grad("vl"), paddle::Grad("v0")})
    .Attrs({"num_threads: int"})
    .SetKernelFn(PD_KERNEL(VresBackward));

// ---------------------------------------------------------------- rwkv7_tmix_post

std::vector<paddle::Tensor> TmixPostForward(
    const paddle::Tensor& y_, const paddle::Tensor& r_, const paddle::Tensor& k_,
    const paddle::Tensor& v_, const paddle::Tensor& g_, const paddle::Tensor& rk_,
    const paddle::Tensor& gw_, const paddle::Tensor& gb_, int head_size, float eps,
    int num_threads) {
  PD_CHECK(y_.is_cpu(), "seqlab rwkv7_tmix_post: CPU tensors only");
  auto y = dense(y_), r = dense(r_), k = dense(k_), v = dense(v_), g = dense(g_);
  auto rk = dense(rk_), gw = dense(gw_), gb = dense(gb_);
  const int64_t C = y.shape().back(), rows = rows_of(y);
  PD_CHECK(C % head_size == 0 && rk.numel() == C && gw.numel() == C && gb.numel() == C &&
               r.numel() == y.numel() && k.numel() == y.numel() && v.numel() == y.numel() &&
               g.numel() == y.numel(),
           "seqlab rwkv7_tmix_post: shape mismatch");
  auto z = paddle::empty(y.shape(), y.dtype(), y.place());
  PD_DISPATCH_FLOATING_TYPES(y.type(), "seqlab_rwkv7_tmix_post", ([&] {
    tmix_post_fwd<data_t>(y.data<data_t>(), r.data<data_t>(), k.data<data_t>(),
                          v.data<data_t>(), g.data<data_t>(), rk.data<data_t>(),
                          gw.data<data_t>(), gb.data<data_t>(), z.data<data_t>(), rows, C,
                          head_size, static_cast<data_t>(eps), num_threads);
  }));
  return {z};
}

std::vector<paddle::Tensor> TmixPostBackward(
    const paddle::Tensor& y_, const paddle::Tensor& r_, const paddle::Tensor& k_,
    const paddle::Tensor& v_, const paddle::Tensor& g_, const paddle::Tensor& rk_,
    const paddle::Tensor& gw_, const paddle::Tensor& gb_, const paddle::Tensor& gz_,
    int head_size, float eps, int num_threads) {
  auto y = dense(y_), r = dense(r_), k = dense(k_), v = dense(v_), g = dense(g_);
  auto rk = dense(rk_), gw = dense(gw_), gb = dense(gb_), gz = dense(gz_);
  const int64_t C = y.shape().back(), rows = rows_of(y);
  std::vector<paddle::Tensor> outs;
  for (int i = 0; i < 5; ++i) outs.push_back(paddle::empty(y.shape(), y.dtype(), y.place()));
  for (const auto* p : {&rk, &gw, &gb}) outs.push_back(paddle::empty(p->shape(), y.dtype(), y.place()));
  PD_DISPATCH_FLOATING_TYPES(y.type(), "seqlab_rwkv7_tmix_post_grad", ([&] {
    tmix_post_bwd<data_t>(y.data<data_t>(), r.data<data_t>(), k.data<data_t>(),
                          v.data<data_t>(), g.data<data_t>(), rk.data<data_t>(),
                          gw.data<data_t>(), gb.data<data_t>(), gz.data<data_t>(),
                          outs[0].data<data_t>(), outs[1].data<data_t>(), outs[2].data<data_t>(),
                          outs[3].data<data_t>(), outs[4].data<data_t>(), outs[5].data<data_t>(),
                          outs[6].data<data_t>(), outs[7].data<data_t>(), rows, C, head_size,
                          static_cast<data_t>(eps), num_threads);
  }));
  return outs;
}

std::vector<std::vector<int64_t>> TmixPostInferShape(
    const std::vector<int64_t>& y, const std::vector<int64_t>&, const std::vector<int64_t>&,
    const std::vector<int64_t>&, const std::vector<int64_t>&, const std::vector<int64_t>&,
    const std::vector<int64_t>&, const std::vector<int64_t>&, int, float, int) {
  return {y};
}

std::vector<paddle::DataType> TmixPostInferDtype(paddle::DataType y, paddle::DataType,
                                                 paddle::DataType, paddle::DataType,
                                                 paddle::DataType, paddle::DataType,
                                                 paddle::DataType, paddle::DataType) {
  return {y};
}

PD_BUILD_OP(seqlab_rwkv7_tmix_post)
    .Inputs({"y", "r", "k", "v", "g", "r_k", "gn_w", "gn_b"})
    .Outputs({"z"})
    .Attrs({"head_size: int", "eps: float", "num_threads: int"})
    .SetKernelFn(PD_KERNEL(TmixPostForward))
    .SetInferShapeFn(PD_INFER_SHAPE(TmixPostInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(TmixPostInferDtype));

PD_BUILD_GRAD_OP(seqlab_rwkv7_tmix_post)
    .Inputs({"y", "r", "k", "v", "g", "r_k", "gn_w", "gn_b", paddle::Grad("z")})
    .Outputs({paddle::Grad("y"), paddle::Grad("r"), paddle::Grad("k"), paddle::Grad("v"),
              paddle::Grad("g"), paddle::Grad("r_k"), paddle::Grad("gn_w"), paddle::Grad("gn_b")})
    .Attrs({"head_size: int", "eps: float", "num_threads: int"})
    .SetKernelFn(PD_KERNEL(TmixPostBackward));

// ================================================================ small-width linear
//
//   linear(x [..., K], W [K, N]) = x @ W        (K, N <= 1024; made for the model's 8..128)
//   dx = dy @ W^T ;  dW = x^T dy  (one pass over the rows for both; dW summed per thread in
//   float blocks of 64 rows, then in double)
// Why: on this CPU Paddle's matmul backward for [B*T, 32] x [32, 32] costs ~3x its forward;
// these loops keep W (and the per-thread dW) in L1 and vectorise over N.

namespace {

constexpr int64_t kRowChunk = 512;

template <typename T, int NN>
void linear_fwd(const T* __restrict x, const T* __restrict w, T* __restrict y, int64_t rows,
                int64_t K, int64_t N_, int nt) {
  const int64_t N = NN > 0 ? NN : N_;
  const int64_t chunks = (rows + kRowChunk - 1) / kRowChunk;
parallel_rows(chunks, threads_for(rows * N * 4, nt), [&](int, int64_t lo_, int64_t hi_) {
  for (int64_t ch = lo_; ch < hi_; ++ch) {
      const int64_t r1 = std::min(rows, (ch + 1) * kRowChunk);
      T acc[1024];
      for (int64_t r = ch * kRowChunk; r < r1; ++r) {
        const T* xr = x + r * K;
#pragma omp simd
        for (int64_t n = 0; n < N; ++n) acc[n] = 0;
        for (int64_t k = 0; k < K; ++k) {
          const T xv = xr[k];
          const T* wk = w + k * N;
#pragma omp simd
          for (int64_t n = 0; n < N; ++n) acc[n] += xv * wk[n];
        }
        T* yr = y + r * N;
#pragma omp simd
        for (int64_t n = 0; n < N; ++n) yr[n] = acc[n];
      }
    }
}, 1);
}

template <typename T, int NN>
void linear_bwd(const T* __restrict x, const T* __restrict w, const T* __restrict g,
                T* __restrict dx, T* __restrict dw, int64_t rows, int64_t K, int64_t N_, int nt,
                bool need_dx, bool need_dw) {
  const int64_t N = NN > 0 ? NN : N_;
  std::vector<T> wt(static_cast<size_t>(K * N));  // W^T [N, K]
  for (int64_t k = 0; k < K; ++k)
    for (int64_t n = 0; n < N; ++n) wt[n * K + k] = w[k * N + n];
  const int threads = threads_for(rows * N * 4, nt);
  const int64_t chunks = (rows + kRowChunk - 1) / kRowChunk;
  std::vector<double> dwsum(static_cast<size_t>(threads) * K * N, 0.0);
  parallel_rows(chunks, threads, [&](int tid_, int64_t lo_, int64_t hi_) {
    std::vector<T> blk(need_dw ? static_cast<size_t>(K * N) : 0, T(0));
    double* mine = dwsum.data() + static_cast<size_t>(tid_) * K * N;
    T* __restrict b = blk.data();
    const T* __restrict wtp = wt.data();
    for (int64_t ch = lo_; ch < hi_; ++ch) {
      const int64_t r0 = ch * kRowChunk, r1 = std::min(rows, r0 + kRowChunk);
      for (int64_t r = r0; r < r1; ++r) {
        const T* xr = x + r * K;
        const T* gr = g + r * N;
        if (need_dx) {
          T acc[1024];
#pragma omp simd
          for (int64_t k = 0; k < K; ++k) acc[k] = 0;
          for (int64_t n = 0; n < N; ++n) {
            const T gv = gr[n];
            const T* wn = wtp + n * K;
#pragma omp simd
            for (int64_t k = 0; k < K; ++k) acc[k] += gv * wn[k];
          }
          T* d = dx + r * K;
#pragma omp simd
          for (int64_t k = 0; k < K; ++k) d[k] = acc[k];
        }
        if (need_dw) {
          for (int64_t k = 0; k < K; ++k) {
            const T xv = xr[k];
            T* bk = b + k * N;
#pragma omp simd
            for (int64_t n = 0; n < N; ++n) bk[n] += xv * gr[n];
          }
          if (((r - r0) & 63) == 63 || r == r1 - 1) {
            for (int64_t j = 0; j < K * N; ++j) {
              mine[j] += b[j];
              b[j] = 0;
            }
          }
        }
      }
    }
  }, 1);
  if (need_dw) {
    for (int64_t j = 0; j < K * N; ++j) {
      double s = 0;
      for (int th = 0; th < threads; ++th) s += dwsum[static_cast<size_t>(th) * K * N + j];
      dw[j] = static_cast<T>(s);
    }
  }
}

#if defined(__AVX2__) && defined(__FMA__)
// float32 AVX2/FMA micro-kernels (register tiles of 8 accumulators).
//   C[r, :] = A[r, :] @ B   for rows [r0, r1); B is [K, N] row-major, N % 8 == 0.
template <int NV, int RB>
void gemm_rows_avx(const float* __restrict A, const float* __restrict B, float* __restrict Cm,
                   int64_t r0, int64_t r1, int64_t K, int64_t N) {
  for (int64_t n0 = 0; n0 < N; n0 += 8 * NV) {
    int64_t r = r0;
    for (; r + RB <= r1; r += RB) {
      __m256 acc[RB][NV];
      for (int i = 0; i < RB; ++i)
        for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_setzero_ps();
      for (int64_t k = 0; k < K; ++k) {
        __m256 w[NV];
        for (int v = 0; v < NV; ++v) w[v] = _mm256_loadu_ps(B + k * N + n0 + 8 * v);
        for (int i = 0; i < RB; ++i) {
          const __m256 a = _mm256_broadcast_ss(A + (r + i) * K + k);
          for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_fmadd_ps(a, w[v], acc[i][v]);
        }
      }
      for (int i = 0; i < RB; ++i)
        for (int v = 0; v < NV; ++v) _mm256_storeu_ps(Cm + (r + i) * N + n0 + 8 * v, acc[i][v]);
    }
    for (; r < r1; ++r) {
      __m256 acc[NV];
      for (int v = 0; v < NV; ++v) acc[v] = _mm256_setzero_ps();
      for (int64_t k = 0; k < K; ++k) {
        const __m256 a = _mm256_broadcast_ss(A + r * K + k);
        for (int v = 0; v < NV; ++v)
          acc[v] = _mm256_fmadd_ps(a, _mm256_loadu_ps(B + k * N + n0 + 8 * v), acc[v]);
      }
      for (int v = 0; v < NV; ++v) _mm256_storeu_ps(Cm + r * N + n0 + 8 * v, acc[v]);
    }
  }
}

void gemm_rows_f32(const float* A, const float* B, float* Cm, int64_t r0, int64_t r1, int64_t K,
                   int64_t N) {
  if (N % 32 == 0) return gemm_rows_avx<4, 2>(A, B, Cm, r0, r1, K, N);
  if (N % 16 == 0) return gemm_rows_avx<2, 4>(A, B, Cm, r0, r1, K, N);
  return gemm_rows_avx<1, 8>(A, B, Cm, r0, r1, K, N);
}

//   D[k, n] += sum_{r in [r0, r1)} X[r, k] G[r, n]   (D double [K, N]; K % KT == 0, N % 8 == 0)
template <int NV, int KT>
void gemm_tn_avx(const float* __restrict X, const float* __restrict G, double* __restrict D,
                 int64_t r0, int64_t r1, int64_t K, int64_t N) {
  for (int64_t k0 = 0; k0 < K; k0 += KT) {
    for (int64_t n0 = 0; n0 < N; n0 += 8 * NV) {
      __m256 acc[KT][NV];
      for (int i = 0; i < KT; ++i)
        for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_setzero_ps();
      for (int64_t r = r0; r < r1; ++r) {
        __m256 g[NV];
        for (int v = 0; v < NV; ++v) g[v] = _mm256_loadu_ps(G + r * N + n0 + 8 * v);
        for (int i = 0; i < KT; ++i) {
          const __m256 a = _mm256_broadcast_ss(X + r * K + k0 + i);
          for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_fmadd_ps(a, g[v], acc[i][v]);
        }
      }
      for (int i = 0; i < KT; ++i)
        for (int v = 0; v < NV; ++v) {
          alignas(32) float tmp[8];
          _mm256_store_ps(tmp, acc[i][v]);
          double* d = D + (k0 + i) * N + n0 + 8 * v;
          for (int j = 0; j < 8; ++j) d[j] += tmp[j];
        }
    }
  }
}

bool gemm_tn_f32(const float* X, const float* G, double* D, int64_t r0, int64_t r1, int64_t K,
                 int64_t N) {
  if (N % 32 == 0 && K % 2 == 0) return gemm_tn_avx<4, 2>(X, G, D, r0, r1, K, N), true;
  if (N % 16 == 0 && K % 4 == 0) return gemm_tn_avx<2, 4>(X, G, D, r0, r1, K, N), true;
  if (N % 8 == 0 && K % 8 == 0) return gemm_tn_avx<1, 8>(X, G, D, r0, r1, K, N), true;
  return false;
}

// y = x @ w, dx = g @ w^T, dw = x^T g with the kernels above; false if a shape does not fit.
bool linear_fwd_fast(const float* x, const float* w, float* y, int64_t rows, int64_t K,
                     int64_t N, int nt) {
  if (N % 8) return false;
  const int64_t chunks = (rows + kRowChunk - 1) / kRowChunk;
parallel_rows(chunks, threads_for(rows * N * 4, nt), [&](int, int64_t lo_, int64_t hi_) {
  for (int64_t ch = lo_; ch < hi_; ++ch) {
      gemm_rows_f32(x, w, y, ch * kRowChunk, std::min(rows, (ch + 1) * kRowChunk), K, N);
    }
}, 1);
  return true;
}

bool linear_bwd_fast(const float* x, const float* w, const float* g, float* dx, float* dw,
                     int64_t rows, int64_t K, int64_t N, int nt) {
  if (K % 8 || N % 8 || !((N % 32 == 0 && K % 2 == 0) || (N % 16 == 0 && K % 4 == 0) || K % 8 == 0))
    return false;
  std::vector<float> wt(static_cast<size_t>(K * N));  // W^T [N, K]
  for (int64_t k = 0; k < K; ++k)
    for (int64_t n = 0; n < N; ++n) wt[n * K + k] = w[k * N + n];
  const int threads = threads_for(rows * N * 4, nt);
  const int64_t chunks = (rows + kRowChunk - 1) / kRowChunk;
  std::vector<double> dwsum(static_cast<size_t>(threads) * K * N, 0.0);
  parallel_rows(chunks, threads, [&](int tid_, int64_t lo_, int64_t hi_) {
    double* mine = dwsum.data() + static_cast<size_t>(tid_) * K * N;
    for (int64_t ch = lo_; ch < hi_; ++ch) {
      const int64_t r0 = ch * kRowChunk, r1 = std::min(rows, r0 + kRowChunk);
      gemm_rows_f32(g, wt.data(), dx, r0, r1, N, K);
      gemm_tn_f32(x, g, mine, r0, r1, K, N);
    }
  }, 1);
  for (int64_t j = 0; j < K * N; ++j) {
    double s = 0;
    for (int th = 0; th < threads; ++th) s += dwsum[static_cast<size_t>(th) * K * N + j];
    dw[j] = static_cast<float>(s);
  }
  return true;
}
#else
bool linear_fwd_fast(const float*, const float*, float*, int64_t, int64_t, int64_t, int) {
  return false;
}
bool linear_bwd_fast(const float*, const float*, const float*, float*, float*, int64_t, int64_t,
                     int64_t, int) {
  return false;
}
#endif
inline bool linear_fwd_fast(const double*, const double*, double*, int64_t, int64_t, int64_t,
                            int) {
  return false;
}
inline bool linear_bwd_fast(const double*, const double*, const double*, double*, double*,
                            int64_t, int64_t, int64_t, int) {
  return false;
}

template <typename T>
void linear_fwd_any(const T* x, const T* w, T* y, int64_t rows, int64_t K, int64_t N, int nt) {
  if (linear_fwd_fast(x, w, y, rows, K, N, nt)) return;
  switch (N) {
    case 8: return linear_fwd<T, 8>(x, w, y, rows, K, N, nt);
    case 32: return linear_fwd<T, 32>(x, w, y, rows, K, N, nt);
    case 128: return linear_fwd<T, 128>(x, w, y, rows, K, N, nt);
    default: return linear_fwd<T, 0>(x, w, y, rows, K, N, nt);
  }
}

template <typename T>
void linear_bwd_any(const T* x, const T* w, const T* g, T* dx, T* dw, int64_t rows, int64_t K,
                    int64_t N, int nt, bool need_dx, bool need_dw) {
  if (need_dx && need_dw && linear_bwd_fast(x, w, g, dx, dw, rows, K, N, nt)) return;
  switch (N) {
    case 8: return linear_bwd<T, 8>(x, w, g, dx, dw, rows, K, N, nt, need_dx, need_dw);
    case 32: return linear_bwd<T, 32>(x, w, g, dx, dw, rows, K, N, nt, need_dx, need_dw);
    case 128: return linear_bwd<T, 128>(x, w, g, dx, dw, rows, K, N, nt, need_dx, need_dw);
    default: return linear_bwd<T, 0>(x, w, g, dx, dw, rows, K, N, nt, need_dx, need_dw);
  }
}

}  // namespace

std::vector<paddle::Tensor> LinearForward(const paddle::Tensor& x_, const paddle::Tensor& w_,
                                          int num_threads) {
  PD_CHECK(x_.is_cpu() && w_.is_cpu(), "seqlab linear: CPU tensors only");
  PD_CHECK(w_.shape().size() == 2 && x_.shape().size() >= 1 && x_.shape().back() == w_.shape()[0],
           "seqlab linear: x [..., K] and W [K, N]");
  PD_CHECK(w_.shape()[0] <= 1024 && w_.shape()[1] <= 1024, "seqlab linear: K, N <= 1024");
  auto x = dense(x_), w = dense(w_);
  const int64_t K = w.shape()[0], N = w.shape()[1], rows = rows_of(x);
  auto shape = x.shape();
  shape.back() = N;
  auto y = paddle::empty(shape, x.dtype(), x.place());
  PD_DISPATCH_FLOATING_TYPES(x.type(), "seqlab_linear", ([&] {
    linear_fwd_any<data_t>(x.data<data_t>(), w.data<data_t>(), y.data<data_t>(), rows, K, N,
                           num_threads);
  }));
  return {y};
}

std::vector<paddle::Tensor> LinearBackward(const paddle::Tensor& x_, const paddle::Tensor& w_,
                                           const paddle::Tensor& g_, int num_threads) {
  auto x = dense(x_), w = dense(w_), g = dense(g_);
  const int64_t K = w.shape()[0], N = w.shape()[1], rows = rows_of(x);
  auto dx = paddle::empty(x.shape(), x.dtype(), x.place());
  auto dw = paddle::empty(w.shape(), w.dtype(), w.place());
  PD_DISPATCH_FLOATING_TYPES(x.type(), "seqlab_linear_grad", ([&] {
    linear_bwd_any<data_t>(x.data<data_t>(), w.data<data_t>(), g.data<data_t>(),
                           dx.data<data_t>(), dw.data<data_t>(), rows, K, N, num_threads, true,
                           true);
  }));
  return {dx, dw};
}

std::vector<std::vector<int64_t>> LinearInferShape(const std::vector<int64_t>& x,
                                                   const std::vector<int64_t>& w, int) {
  auto y = x;
  y.back() = w[1];
  return {y};
}

PD_BUILD_OP(seqlab_linear)
    .Inputs({"x", "w"})
    .Outputs({"y"})
    .Attrs({"num_threads: int"})
    .SetKernelFn(PD_KERNEL(LinearForward))
    .SetInferShapeFn(PD_INFER_SHAPE(LinearInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(SameDtype1));

PD_BUILD_GRAD_OP(seqlab_linear)
    .Inputs({"x", "w", paddle::Grad("y")})
    .Outputs({paddle::Grad("x"), paddle::Grad("w")})
    .Attrs({"num_threads: int"})
    .SetKernelFn(PD_KERNEL(LinearBackward));

// ================================================================ layer_norm (last axis)
//
//   y = (x - mean) / sqrt(var + eps) * w + b   over the last axis (C <= 1024), as nn.LayerNorm
//   dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)),  dxhat = dy w;  dw, db: row sums
// Why: Paddle's LayerNorm backward took ~20 ms per call at [256*128, 32] here.

namespace {

template <typename T>
inline void row_stats(const T* __restrict xr, int64_t C, T eps, T* mu_out, T* rstd_out) {
  T mu = 0;
#pragma omp simd reduction(+ : mu)
  for (int64_t c = 0; c < C; ++c) mu += xr[c];
  mu /= T(C);
  T var = 0;
#pragma omp simd reduction(+ : var)
  for (int64_t c = 0; c < C; ++c) var += (xr[c] - mu) * (xr[c] - mu);
  *mu_out = mu;
  *rstd_out = T(1) / std::sqrt(var / T(C) + eps);
}

template <typename T>
void layer_norm_fwd(const T* __restrict x, const T* __restrict w, const T* __restrict b,
                    T* __restrict y, int64_t rows, int64_t C, T eps, int nt) {
parallel_rows(rows, threads_for(rows * C * 4, nt), [&](int, int64_t lo_, int64_t hi_) {
  for (int64_t r = lo_; r < hi_; ++r) {
      const T* xr = x + r * C;
      T mu, rstd;
      row_stats(xr, C, eps, &mu, &rstd);
      T* yr = y + r * C;
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) yr[c] = (xr[c] - mu) * rstd * w[c] + b[c];
    }
}, 1024);
}

template <typename T>
void layer_norm_bwd(const T* __restrict x, const T* __restrict w, const T* __restrict g,
                    T* __restrict dx, T* dw, T* db, int64_t rows, int64_t C, T eps, int nt) {
  const int threads = threads_for(rows * C * 4, nt);
  ParamGrads acc(threads, 2, C);
  parallel_rows(rows, threads, [&](int tid_, int64_t lo_, int64_t hi_) {
    double* pw = acc.get(tid_, 0);
    double* pb = acc.get(tid_, 1);
    for (int64_t r = lo_; r < hi_; ++r) {
      const T* xr = x + r * C;
      const T* gr = g + r * C;
      T mu, rstd;
      row_stats(xr, C, eps, &mu, &rstd);
      T m1 = 0, m2 = 0;
#pragma omp simd reduction(+ : m1, m2)
      for (int64_t c = 0; c < C; ++c) {
        const T xhat = (xr[c] - mu) * rstd;
        const T dxhat = gr[c] * w[c];
        pw[c] += gr[c] * xhat;
        pb[c] += gr[c];
        m1 += dxhat;
        m2 += dxhat * xhat;
      }
      m1 /= T(C);
      m2 /= T(C);
      T* d = dx + r * C;
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) {
        const T xhat = (xr[c] - mu) * rstd;
        d[c] = rstd * (gr[c] * w[c] - m1 - xhat * m2);
      }
    }
  }, 1024);
  acc.write(0, dw);
  acc.write(1, db);
}

}  // namespace

std::vector<paddle::Tensor> LayerNormForward(const paddle::Tensor& x_, const paddle::Tensor& w_,
                                             const paddle::Tensor& b_, float eps,
                                             int num_threads) {
  PD_CHECK(x_.is_cpu(), "seqlab layer_norm: CPU tensors only");
  auto x = dense(x_), w = dense(w_), b = dense(b_);
  const int64_t C = x.shape().back(), rows = rows_of(x);
  PD_CHECK(w.numel() == C && b.numel() == C, "seqlab layer_norm: weight/bias need C elements");
  auto y = paddle::empty(x.shape(), x.dtype(), x.place());
  PD_DISPATCH_FLOATING_TYPES(x.type(), "seqlab_layer_norm", ([&] {
    layer_norm_fwd<data_t>(x.data<data_t>(), w.data<data_t>(), b.data<data_t>(),
                           y.data<data_t>(), rows, C, static_cast<data_t>(eps), num_threads);
  }));
  return {y};
}

std::vector<paddle::Tensor> LayerNormBackward(const paddle::Tensor& x_, const paddle::Tensor& w_,
                                              const paddle::Tensor& b_, const paddle::Tensor& g_,
                                              float eps, int num_threads) {
  auto x = dense(x_), w = dense(w_), g = dense(g_);
  const int64_t C = x.shape().back(), rows = rows_of(x);
  auto dx = paddle::empty(x.shape(), x.dtype(), x.place());
  auto dw = paddle::empty(w_.shape(), x.dtype(), x.place());
  auto db = paddle::empty(b_.shape(), x.dtype(), x.place());
  PD_DISPATCH_FLOATING_TYPES(x.type(), "seqlab_layer_norm_grad", ([&] {
    layer_norm_bwd<data_t>(x.data<data_t>(), w.data<data_t>(), g.data<data_t>(),
                           dx.data<data_t>(), dw.data<data_t>(), db.data<data_t>(), rows, C,
                           static_cast<data_t>(eps), num_threads);
  }));
  return {dx, dw, db};
}

std::vector<std::vector<int64_t>> LayerNormInferShape(const std::vector<int64_t>& x,
                                                      const std::vector<int64_t>&,
                                                      const std::vector<int64_t>&, float, int) {
  return {x};
}

std::vector<paddle::DataType> LayerNormInferDtype(paddle::DataType x, paddle::DataType,
                                                  paddle::DataType) {
  return {x};
}

PD_BUILD_OP(seqlab_layer_norm)
    .Inputs({"x", "w", "b"})
    .Outputs({"y"})
    .Attrs({"eps: float", "num_threads: int"})
    .SetKernelFn(PD_KERNEL(LayerNormForward))
    .SetInferShapeFn(PD_INFER_SHAPE(LayerNormInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(LayerNormInferDtype));

PD_BUILD_GRAD_OP(seqlab_layer_norm)
    .Inputs({"x", "w", "b", paddle::Grad("y")})
    .Outputs({paddle::Grad("x"), paddle::Grad("w"), paddle::Grad("b")})
    .Attrs({"eps: float", "num_threads: int"})
    .SetKernelFn(PD_KERNEL(LayerNormBackward));

// ================================================================ RWKV-7 RNN step (inference)
//
// One token through a whole RWKV-7 model, for every sequence of a batch, in ONE op:
//
//   x = emb[token]
//   per layer:  h = LN1(x);  TimeMix(h, carried previous h, carried WKV state);  x += ...
//               h2 = LN2(x); x += FFN(h2, carried previous h2)
//   logits = LN_out(x) @ head_w + head_b
//
// Why: the same step in Paddle eager runs ~110 small ops at B = 1 (2 layers), each ~3-20 us of
// dispatch overhead for a few dozen flops; generation was bound by that overhead
// (benchmarks/RESULTS.md, "Generation"). One op per token removes it.
//
// No formula of its own beyond the one-step recurrence and the token-shift mix with a carried
// previous token: the rest calls the row kernels of the training ops above (layer_norm_fwd,
// linear, tmix_pre_fwd, vres_fwd, tmix_post_fwd, squared_relu_fwd). Its Paddle form is
// RWKV7.step_plain (seqlab/models/rwkv7.py), built from seqlab/ops/fused's reference forms and
// seqlab/ops/wkv7/reference.py's wkv7_step; tests/test_rwkv7_fast.py compares them.
//
// state [B, L, 2C + H*N*N]: per layer att_prev (C), ffn_prev (C), S (H x N x N, S[h][i][j] with
// i the value channel, j the key channel). A new state tensor is returned; the input is unchanged.
// params: emb, ln_out.w, ln_out.b, head.w, head.b, then kLayerParams per layer in LayerParam
// order (RWKV7.step_params()).

namespace {

enum LayerParam {
  kLn1W, kLn1B, kXr, kXw, kXk, kXv, kXa, kXg, kW0, kW1, kW2, kA0, kA1, kA2, kV0, kV1, kV2,
  kG1, kG2, kKk, kKa, kRk, kWr, kWk, kWv, kWo, kGnW, kGnB, kLn2W, kLn2B, kFx, kFk, kFv,
  kLayerParams
};
constexpr int kModelParams = 5;  // emb, ln_out.w, ln_out.b, head.w, head.b

// y [rows, N] = x [rows, K] @ w [K, N], any sizes (the AVX kernel when it applies).
template <typename T>
void matmul_rows(const T* x, const T* w, T* y, int64_t rows, int64_t K, int64_t N, int nt) {
  if (linear_fwd_fast(x, w, y, rows, K, N, nt)) return;
  for (int64_t r = 0; r < rows; ++r) {
    T* yr = y + r * N;
    std::fill(yr, yr + N, T(0));
    for (int64_t k = 0; k < K; ++k) {
      const T xv = x[r * K + k];
      const T* wk = w + k * N;
#pragma omp simd
      for (int64_t n = 0; n < N; ++n) yr[n] += xv * wk[n];
    }
  }
}

// One WKV7 step per (b, h) (seqlab/ops/wkv7/reference.py: wkv7_step), S read from s_in and
// written to s_out (row layout, value x key), batch stride `stride` elements:
//   sa = S a;  S' = S diag(w) + sa b^T + v k^T;  y = S' q
template <typename T>
void wkv7_one_step(const T* s_in, T* s_out, int64_t stride, const T* w, const T* q, const T* k,
                   const T* v, const T* a, const T* b, T* y, int64_t B, int64_t H, int64_t N,
                   int nt) {
  parallel_rows(B * H, threads_for(B * H * N * N * 4, nt), [&](int, int64_t lo, int64_t hi) {
    for (int64_t bh = lo; bh < hi; ++bh) {
      const int64_t bi = bh / H, h = bh % H;
      const T* S = s_in + bi * stride + h * N * N;
      T* So = s_out + bi * stride + h * N * N;
      const int64_t o = bi * H * N + h * N;  // [B, C] rows, head h at channel h * N
      const T *wv = w + o, *qv = q + o, *kv = k + o, *vv = v + o, *av = a + o, *bv = b + o;
      for (int64_t i = 0; i < N; ++i) {
        const T* Si = S + i * N;
        T* Soi = So + i * N;
        T sa = 0;
#pragma omp simd reduction(+ : sa)
        for (int64_t j = 0; j < N; ++j) sa += Si[j] * av[j];
        const T vi = vv[i];
        T yi = 0;
#pragma omp simd reduction(+ : yi)
        for (int64_t j = 0; j < N; ++j) {
          const T s = Si[j] * wv[j] + sa * bv[j] + vi * kv[j];
          Soi[j] = s;
          yi += s * qv[j];
        }
        y[o + i] = yi;
      }
    }
  }, 1);
}

// out_i = x + (prev - x) * m_i for each of `count` mixes m_i [C]; rows of x, prev: stride C / ps.
template <typename T>
void mix_with_prev(const T* x, const T* prev, int64_t prev_stride, const T* const* m, T* const* out,
                   int count, int64_t B, int64_t C) {
  for (int64_t bi = 0; bi < B; ++bi) {
    const T* xr = x + bi * C;
    const T* pr = prev + bi * prev_stride;
    for (int i = 0; i < count; ++i) {
      T* o = out[i] + bi * C;
      const T* mi = m[i];
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) o[c] = xr[c] + (pr[c] - xr[c]) * mi[c];
    }
  }
}

template <typename T>
void rwkv7_step(const int64_t* tokens, const T* state, T* new_state, const std::vector<const T*>& P,
                T* logits, int64_t B, int64_t L, int64_t C, int64_t H, int64_t N, int64_t V,
                int64_t rw, int64_t ra, int64_t rv, int64_t rg, T ln_eps, T gn_eps, int nt) {
  const int64_t S = 2 * C + H * N * N, stride = L * S, F4 = 4 * C;
  const int64_t rmax = std::max(std::max(rw, ra), std::max(rv, rg));
  std::vector<T> buf(static_cast<size_t>(B) * (22 * C + 2 * F4 + rmax));
  T* p = buf.data();
  auto take = [&](int64_t n) { T* q = p; p += B * n; return q; };
  T *x = take(C), *h = take(C), *vf = take(C), *xr = take(C), *xw = take(C), *xk = take(C),
    *xv = take(C), *xa = take(C), *xg = take(C), *r = take(C), *k = take(C), *v = take(C),
    *v2 = take(C), *wl = take(C), *al = take(C), *g = take(C), *dec = take(C), *kout = take(C),
    *wa = take(C), *wb = take(C), *y = take(C), *z = take(C), *hid = take(F4), *hid2 = take(F4),
    *lo = take(rmax);
  const T* emb = P[0];
  for (int64_t bi = 0; bi < B; ++bi) std::copy(emb + tokens[bi] * C, emb + (tokens[bi] + 1) * C, x + bi * C);

  for (int64_t l = 0; l < L; ++l) {
    const T* const* W = P.data() + kModelParams + l * kLayerParams;
    const T* s_in = state + l * S;
    T* s_out = new_state + l * S;
    // ---- TimeMix
    layer_norm_fwd(x, W[kLn1W], W[kLn1B], h, B, C, ln_eps, nt);
    const T* mixes[6] = {W[kXr], W[kXw], W[kXk], W[kXv], W[kXa], W[kXg]};
    T* mixed[6] = {xr, xw, xk, xv, xa, xg};
    mix_with_prev(h, s_in, stride, mixes, mixed, 6, B, C);
    matmul_rows(xr, W[kWr], r, B, C, C, nt);
    matmul_rows(xk, W[kWk], k, B, C, C, nt);
    matmul_rows(xv, W[kWv], v, B, C, C, nt);
    if (l == 0) {
      std::copy(v, v + B * C, vf);
    } else {  // value residual
      matmul_rows(xv, W[kV1], lo, B, C, rv, nt);
      matmul_rows(lo, W[kV2], wl, B, rv, C, nt);  // wl as scratch
      vres_fwd(v, vf, wl, W[kV0], v2, B, C, nt);
      std::copy(v2, v2 + B * C, v);
    }
    matmul_rows(xw, W[kW1], lo, B, C, rw, nt);
    for (int64_t i = 0; i < B * rw; ++i) lo[i] = std::tanh(lo[i]);
    matmul_rows(lo, W[kW2], wl, B, rw, C, nt);
    matmul_rows(xa, W[kA1], lo, B, C, ra, nt);
    matmul_rows(lo, W[kA2], al, B, ra, C, nt);
    matmul_rows(xg, W[kG1], lo, B, C, rg, nt);
    for (int64_t i = 0; i < B * rg; ++i) lo[i] = sigmoid_(lo[i]);
    matmul_rows(lo, W[kG2], g, B, rg, C, nt);
    tmix_pre_fwd(k, wl, al, W[kW0], W[kA0], W[kKk], W[kKa], dec, kout, wa, wb, B, C, N, nt);
    wkv7_one_step(s_in + 2 * C, s_out + 2 * C, stride, dec, r, kout, v, wa, wb, y, B, H, N, nt);
    tmix_post_fwd(y, r, kout, v, g, W[kRk], W[kGnW], W[kGnB], z, B, C, N, gn_eps, nt);
    matmul_rows(z, W[kWo], y, B, C, C, nt);
    for (int64_t bi = 0; bi < B; ++bi) {
      std::copy(h + bi * C, h + (bi + 1) * C, s_out + bi * stride);  // next token's att_prev
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) x[bi * C + c] += y[bi * C + c];
    }
    // ---- ChannelMix
    layer_norm_fwd(x, W[kLn2W], W[kLn2B], h, B, C, ln_eps, nt);
    const T* fmix[1] = {W[kFx]};
    T* fout[1] = {xk};
    mix_with_prev(h, s_in + C, stride, fmix, fout, 1, B, C);
    matmul_rows(xk, W[kFk], hid, B, C, F4, nt);
    squared_relu_fwd(hid, hid2, B * F4, nt);
    matmul_rows(hid2, W[kFv], y, B, F4, C, nt);
    for (int64_t bi = 0; bi < B; ++bi) {
      std::copy(h + bi * C, h + (bi + 1) * C, s_out + bi * stride + C);  // next ffn_prev
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) x[bi * C + c] += y[bi * C + c];
    }
  }
  layer_norm_fwd(x, P[1], P[2], h, B, C, ln_eps, nt);
  matmul_rows(h, P[3], logits, B, C, V, nt);
  for (int64_t bi = 0; bi < B; ++bi)
    for (int64_t n = 0; n < V; ++n) logits[bi * V + n] += P[4][n];
}

}  // namespace

std::vector<paddle::Tensor> Rwkv7StepForward(const paddle::Tensor& tokens_,
                                             const paddle::Tensor& state_,
                                             const std::vector<paddle::Tensor>& params_,
                                             int n_layer, int head_size, float ln_eps,
                                             float gn_eps, int num_threads) {
  PD_CHECK(state_.is_cpu() && tokens_.is_cpu(), "seqlab rwkv7_step: CPU tensors only");
  PD_CHECK(tokens_.dtype() == paddle::DataType::INT64, "seqlab rwkv7_step: tokens must be int64");
  PD_CHECK(state_.shape().size() == 3 && state_.shape()[1] == n_layer,
           "seqlab rwkv7_step: state must be [B, n_layer, 2C + H*N*N]");
  PD_CHECK(static_cast<int64_t>(params_.size()) == kModelParams + int64_t(n_layer) * kLayerParams,
           "seqlab rwkv7_step: wrong number of parameters (see RWKV7.step_params)");
  auto tokens = dense(tokens_), state = dense(state_);
  std::vector<paddle::Tensor> params;
  for (const auto& t : params_) {
    PD_CHECK(t.dtype() == state.dtype(), "seqlab rwkv7_step: parameter dtype differs from state");
    params.push_back(dense(t));
  }
  const int64_t B = state.shape()[0], L = n_layer, N = head_size;
  const int64_t V = params[3].shape()[1];
  const int64_t C = params[0].shape()[1], H = C / N;
  PD_CHECK(C % N == 0 && C <= 512, "seqlab rwkv7_step: C must be a multiple of head_size, <= 512");
  PD_CHECK(state.shape()[2] == 2 * C + H * N * N, "seqlab rwkv7_step: state width != 2C + H*N*N");
  PD_CHECK(tokens.numel() == B, "seqlab rwkv7_step: one token per sequence");
  const int64_t vocab = params[0].shape()[0];
  const int64_t* tk = tokens.data<int64_t>();
  for (int64_t bi = 0; bi < B; ++bi)
    PD_CHECK(tk[bi] >= 0 && tk[bi] < vocab, "seqlab rwkv7_step: token id out of range");
  const paddle::Tensor* W0 = params.data() + kModelParams;
  const int64_t rw = W0[kW1].shape()[1], ra = W0[kA1].shape()[1], rv = W0[kV1].shape()[1],
                rg = W0[kG1].shape()[1];
  auto logits = paddle::empty({B, V}, state.dtype(), state.place());
  auto new_state = paddle::empty(state.shape(), state.dtype(), state.place());
  PD_DISPATCH_FLOATING_TYPES(state.type(), "seqlab_rwkv7_step", ([&] {
    std::vector<const data_t*> P;
    for (const auto& t : params) P.push_back(t.data<data_t>());
    rwkv7_step<data_t>(tk, state.data<data_t>(), new_state.data<data_t>(), P,
                       logits.data<data_t>(), B, L, C, H, N, V, rw, ra, rv, rg,
                       static_cast<data_t>(ln_eps), static_cast<data_t>(gn_eps), num_threads);
  }));
  return {logits, new_state};
}

std::vector<std::vector<int64_t>> Rwkv7StepInferShape(
    const std::vector<int64_t>& tokens, const std::vector<int64_t>& state,
    const std::vector<std::vector<int64_t>>& params, int, int, float, float, int) {
  return {{state[0], params[3][1]}, state};
}

std::vector<paddle::DataType> Rwkv7StepInferDtype(paddle::DataType, paddle::DataType state,
                                                  const std::vector<paddle::DataType>&) {
  return {state, state};
}

PD_BUILD_OP(seqlab_rwkv7_step)
    .Inputs({"tokens", "state", paddle::Vec("params")})
    .Outputs({"logits", "new_state"})
    .Attrs({"n_layer: int", "head_size: int", "ln_eps: float", "gn_eps: float",
            "num_threads: int"})
    .SetKernelFn(PD_KERNEL(Rwkv7StepForward))
    .SetInferShapeFn(PD_INFER_SHAPE(Rwkv7StepInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(Rwkv7StepInferDtype));
