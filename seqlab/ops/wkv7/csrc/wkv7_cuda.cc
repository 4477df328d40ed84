// Paddle op registration for the CUDA WKV7 kernels in wkv7_cuda.cu (float32, N in {16,32,64}).
// NEVER COMPILED: no CUDA build of Paddle was available (the kernels were checked, see .cu). Same inputs/outputs as seqlab_wkv7_cpu (see
// wkv7_cpu.cc), under its own name so both extensions can live in one process.

#include <cuda_runtime.h>

#include <vector>

#include "paddle/extension.h"

bool seqlab_wkv7_cuda_forward(int B, int T, int H, int N, const float* w, const float* q,
                              const float* k, const float* v, const float* a, const float* b,
                              float* y, float* sa, float* ckpt, cudaStream_t stream);
bool seqlab_wkv7_cuda_backward(int B, int T, int H, int N, const float* w, const float* q,
                               const float* k, const float* v, const float* a, const float* b,
                               const float* sa, const float* ckpt, const float* dy, float* dw,
                               float* dq, float* dk, float* dv, float* da, float* db,
                               cudaStream_t stream);

namespace {

constexpr int64_t kChunk = 16;

paddle::Tensor dense(const paddle::Tensor& x) { return x.is_contiguous() ? x : x.contiguous(); }

void check_inputs(const std::vector<const paddle::Tensor*>& xs) {
  const auto& shape = xs[0]->shape();
  PD_CHECK(shape.size() == 4, "seqlab wkv7: inputs must be [B, T, H, N]");
  for (auto* x : xs) {
    PD_CHECK(x->is_gpu(), "seqlab wkv7 (cuda): inputs must be on the GPU");
    PD_CHECK(x->dtype() == paddle::DataType::FLOAT32, "seqlab wkv7 (cuda): float32 only");
    PD_CHECK(x->shape() == shape, "seqlab wkv7: all inputs must have the same shape");
  }
}

}  // namespace

std::vector<paddle::Tensor> Wkv7CudaForward(const paddle::Tensor& w_, const paddle::Tensor& q_,
                                            const paddle::Tensor& k_, const paddle::Tensor& v_,
                                            const paddle::Tensor& a_, const paddle::Tensor& b_) {
  check_inputs({&w_, &q_, &k_, &v_, &a_, &b_});
  auto w = dense(w_), q = dense(q_), k = dense(k_), v = dense(v_), a = dense(a_), b = dense(b_);
  const auto s = w.shape();
  const int64_t B = s[0], T = s[1], H = s[2], N = s[3];
  const int64_t NC = (T + kChunk - 1) / kChunk;
  auto y = paddle::empty(s, w.dtype(), w.place());
  auto sa = paddle::empty(s, w.dtype(), w.place());
  auto ckpt = paddle::empty({B, H, NC, N, N}, w.dtype(), w.place());
  const bool ok = seqlab_wkv7_cuda_forward(
      B, T, H, N, w.data<float>(), q.data<float>(), k.data<float>(), v.data<float>(),
      a.data<float>(), b.data<float>(), y.data<float>(), sa.data<float>(), ckpt.data<float>(),
      w.stream());
  PD_CHECK(ok, "seqlab wkv7 (cuda): head size N must be 16, 32 or 64");
  return {y, sa, ckpt};
}

std::vector<paddle::Tensor> Wkv7CudaBackward(const paddle::Tensor& w_, const paddle::Tensor& q_,
                                             const paddle::Tensor& k_, const paddle::Tensor& v_,
                                             const paddle::Tensor& a_, const paddle::Tensor& b_,
                                             const paddle::Tensor& sa_,
                                             const paddle::Tensor& ckpt_,
                                             const paddle::Tensor& dy_) {
  auto w = dense(w_), q = dense(q_), k = dense(k_), v = dense(v_), a = dense(a_), b = dense(b_);
  auto sa = dense(sa_), ckpt = dense(ckpt_), dy = dense(dy_);
  const auto s = w.shape();
  const int64_t B = s[0], T = s[1], H = s[2], N = s[3];
  auto dw = paddle::empty(s, w.dtype(), w.place()), dq = paddle::empty(s, w.dtype(), w.place());
  auto dk = paddle::empty(s, w.dtype(), w.place()), dv = paddle::empty(s, w.dtype(), w.place());
  auto da = paddle::empty(s, w.dtype(), w.place()), db = paddle::empty(s, w.dtype(), w.place());
  const bool ok = seqlab_wkv7_cuda_backward(
      B, T, H, N, w.data<float>(), q.data<float>(), k.data<float>(), v.data<float>(),
      a.data<float>(), b.data<float>(), sa.data<float>(), ckpt.data<float>(), dy.data<float>(),
      dw.data<float>(), dq.data<float>(), dk.data<float>(), dv.data<float>(), da.data<float>(),
      db.data<float>(), w.stream());
  PD_CHECK(ok, "seqlab wkv7 (cuda): head size N must be 16, 32 or 64");
  return {dw, dq, dk, dv, da, db};
}

std::vector<std::vector<int64_t>> Wkv7CudaInferShape(
    const std::vector<int64_t>& w, const std::vector<int64_t>&, const std::vector<int64_t>&,
    const std::vector<int64_t>&, const std::vector<int64_t>&, const std::vector<int64_t>&) {
  const int64_t NC = w[1] < 0 ? -1 : (w[1] + kChunk - 1) / kChunk;
  return {w, w, {w[0], w[2], NC, w[3], w[3]}};
}

std::vector<paddle::DataType> Wkv7CudaInferDtype(paddle::DataType w, paddle::DataType,
                                                 paddle::DataType, paddle::DataType,
                                                 paddle::DataType, paddle::DataType) {
  return {w, w, w};
}

PD_BUILD_OP(seqlab_wkv7_cuda)
    .Inputs({"w", "q", "k", "v", "a", "b"})
    .Outputs({"y", "sa", "ckpt"})
    .SetKernelFn(PD_KERNEL(Wkv7CudaForward))
    .SetInferShapeFn(PD_INFER_SHAPE(Wkv7CudaInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(Wkv7CudaInferDtype));

PD_BUILD_GRAD_OP(seqlab_wkv7_cuda)
    .Inputs({"w", "q", "k", "v", "a", "b", "sa", "ckpt", paddle::Grad("y")})
    .Outputs({paddle::Grad("w"), paddle::Grad("q"), paddle::Grad("k"), paddle::Grad("v"),
              paddle::Grad("a"), paddle::Grad("b")})
    .SetKernelFn(PD_KERNEL(Wkv7CudaBackward));
