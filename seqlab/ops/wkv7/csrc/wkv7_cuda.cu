// WKV7 recurrence, CUDA kernels (float32). NOT RUN ON A GPU (none was available): checked only
// by `nvcc -c` (sm_90, no spills) and by running the kernels in a CPU emulation of the thread
// block (cuda_emulation.h, tests/test_wkv7.py). Compiled only by a CUDA build of Paddle
// (seqlab/ops/wkv7/cuda.py), never on CPU.
//
// Maths (per batch b, head h; S is N x N, rows i = value channel, cols j = key channel):
//     sa_t = S_{t-1} a_t ;  S_t = S_{t-1} diag(w_t) + sa_t b_t^T + v_t k_t^T ;  y_t = S_t q_t
// Backward with G = dL/dS_t (see wkv7_cpu.cc for the same formulas):
//     G += dy q^T ; dq = S_t^T dy ; dv = G k ; dk = G^T v ; dsa = G b ; db = G^T sa ;
//     dw = colsum(G o S_{t-1}) ; da = S_{t-1}^T dsa ;  G <- G diag(w) + dsa a^T
//
// Design, after RWKV-LM's clamped-w training kernel (RWKV-v7 wkv7_cuda.cu): one thread block
// per (b, h) with N threads; each thread keeps one row of the state in registers; a chunk of
// 16 steps of inputs is staged in shared memory; the forward writes the state at the start of
// every 16-step chunk (and sa_t) for the backward. Unlike RWKV-LM's kernel, the backward does
// not run the recurrence backwards by dividing by w: it recomputes each chunk's states from
// its checkpoint, so it is exact for any w in [0, 1].
//
// Backward thread roles: thread `tid` is row i = tid for the i-indexed gradients (dv, dsa:
// sums over j of its row of G, kept in registers as Gr) and column j = tid for the j-indexed
// ones (dq, dw, db, dk, da: sums over i, using its column of G, Gc, and its column of the
// recomputed states). Column j of S evolves on its own given the vectors sa_t and v_t:
// S_t[:, j] = S_{t-1}[:, j] w_j + sa_t b_j + v_t k_j, so no thread needs another's state.

#ifndef SEQLAB_CUDA_EMULATION
#include <cuda_runtime.h>
#endif

#include <cstdint>

// Kernel launches go through this macro so that tests/test_wkv7.py can compile this file with
// g++ and cuda_emulation.h (which runs a block as N std::threads) to check the kernels' logic
// on machines without a GPU.
#ifndef SEQLAB_LAUNCH
#define SEQLAB_LAUNCH(kernel, grid, block, stream, ...) \
  kernel<<<(grid), (block), 0, (stream)>>>(__VA_ARGS__)
#endif

namespace {

constexpr int kChunk = 16;

__device__ __forceinline__ int64_t row_offset(int bi, int t, int hi, int T, int H, int N) {
  return ((static_cast<int64_t>(bi) * T + t) * H + hi) * N;
}

template <int N>
__global__ void __launch_bounds__(N)
    wkv7_forward_kernel(int T, int H, const float* __restrict__ w, const float* __restrict__ q,
                        const float* __restrict__ k, const float* __restrict__ v,
                        const float* __restrict__ a, const float* __restrict__ b,
                        float* __restrict__ y, float* __restrict__ sa_out,
                        float* __restrict__ ckpt) {
  const int bh = blockIdx.x, bi = bh / H, hi = bh % H, i = threadIdx.x;
  const int NC = (T + kChunk - 1) / kChunk;
  __shared__ float sw[kChunk][N], sq[kChunk][N], sk[kChunk][N], sv[kChunk][N], sA[kChunk][N],
      sb[kChunk][N];
  float S[N];  // row i of the state
#pragma unroll
  for (int j = 0; j < N; ++j) S[j] = 0.f;

  for (int c = 0; c < NC; ++c) {
    const int t0 = c * kChunk;
    const int L = min(kChunk, T - t0);
    float* ck = ckpt + (static_cast<int64_t>(bh) * NC + c) * N * N + i * N;  // row layout
#pragma unroll
    for (int j = 0; j < N; ++j) ck[j] = S[j];
    __syncthreads();  // all threads are done reading the previous chunk's shared inputs
    for (int s = 0; s < L; ++s) {
      const int64_t off = row_offset(bi, t0 + s, hi, T, H, N) + i;
      sw[s][i] = w[off];
      sq[s][i] = q[off];
      sk[s][i] = k[off];
      sv[s][i] = v[off];
      sA[s][i] = a[off];
      sb[s][i] = b[off];
    }
    __syncthreads();
    for (int s = 0; s < L; ++s) {
      float sa = 0.f;
#pragma unroll
      for (int j = 0; j < N; ++j) sa += S[j] * sA[s][j];
      const float vi = sv[s][i];
      float acc = 0.f;
#pragma unroll
      for (int j = 0; j < N; ++j) {
        S[j] = S[j] * sw[s][j] + sa * sb[s][j] + vi * sk[s][j];
        acc += S[j] * sq[s][j];
      }
      const int64_t off = row_offset(bi, t0 + s, hi, T, H, N) + i;
      y[off] = acc;
      sa_out[off] = sa;
    }
  }
}

template <int N>
__global__ void __launch_bounds__(N)
    wkv7_backward_kernel(int T, int H, const float* __restrict__ w, const float* __restrict__ q,
                         const float* __restrict__ k, const float* __restrict__ v,
                         const float* __restrict__ a, const float* __restrict__ b,
                         const float* __restrict__ sa_in, const float* __restrict__ ckpt,
                         const float* __restrict__ dy, float* __restrict__ dw,
                         float* __restrict__ dq, float* __restrict__ dk, float* __restrict__ dv,
                         float* __restrict__ da, float* __restrict__ db) {
  const int bh = blockIdx.x, bi = bh / H, hi = bh % H, tid = threadIdx.x;
  const int NC = (T + kChunk - 1) / kChunk;
  __shared__ float sw[kChunk][N], sq[kChunk][N], sk[kChunk][N], sv[kChunk][N], sA[kChunk][N],
      sb[kChunk][N], sdy[kChunk][N], ssa[kChunk][N], sdsa[N];
  float Gr[N], Gc[N];              // row tid / column tid of G = dL/dS
  float Sbuf[(kChunk + 1) * N];    // column tid of S_{t0-1+s}, s = 0..L (local memory)
#pragma unroll
  for (int n = 0; n < N; ++n) Gr[n] = Gc[n] = 0.f;

  for (int c = NC - 1; c >= 0; --c) {
    const int t0 = c * kChunk;
    const int L = min(kChunk, T - t0);
    __syncthreads();  // previous chunk's shared inputs no longer needed
    for (int s = 0; s < L; ++s) {
      const int64_t off = row_offset(bi, t0 + s, hi, T, H, N) + tid;
      sw[s][tid] = w[off];
      sq[s][tid] = q[off];
      sk[s][tid] = k[off];
      sv[s][tid] = v[off];
      sA[s][tid] = a[off];
      sb[s][tid] = b[off];
      sdy[s][tid] = dy[off];
      ssa[s][tid] = sa_in[off];
    }
    const float* ck = ckpt + (static_cast<int64_t>(bh) * NC + c) * N * N;
    for (int i = 0; i < N; ++i) Sbuf[i] = ck[i * N + tid];  // coalesced over tid
    __syncthreads();
    // Recompute column tid of the chunk's states (exact: same arithmetic as the forward).
    for (int s = 0; s < L; ++s) {
      const float wj = sw[s][tid], bj = sb[s][tid], kj = sk[s][tid];
#pragma unroll
      for (int i = 0; i < N; ++i)
        Sbuf[(s + 1) * N + i] = Sbuf[s * N + i] * wj + ssa[s][i] * bj + sv[s][i] * kj;
    }
    for (int s = L - 1; s >= 0; --s) {
      // Row role: i = tid.
      const float dyi = sdy[s][tid];
      float dvi = 0.f, dsai = 0.f;
#pragma unroll
      for (int j = 0; j < N; ++j) {
        const float x = Gr[j] + dyi * sq[s][j];
        dvi += x * sk[s][j];
        dsai += x * sb[s][j];
        Gr[j] = x;
      }
#pragma unroll
      for (int j = 0; j < N; ++j) Gr[j] = Gr[j] * sw[s][j] + dsai * sA[s][j];
      sdsa[tid] = dsai;
      __syncthreads();
      // Column role: j = tid.
      const float qj = sq[s][tid], wj = sw[s][tid], aj = sA[s][tid];
      float dqj = 0.f, dwj = 0.f, dbj = 0.f, dkj = 0.f, daj = 0.f;
#pragma unroll
      for (int i = 0; i < N; ++i) {
        const float sp = Sbuf[s * N + i], sc = Sbuf[(s + 1) * N + i];
        const float x = Gc[i] + sdy[s][i] * qj;
        dqj += sc * sdy[s][i];
        dwj += x * sp;
        dbj += x * ssa[s][i];
        dkj += x * sv[s][i];
        daj += sp * sdsa[i];
        Gc[i] = x * wj + sdsa[i] * aj;
      }
      const int64_t off = row_offset(bi, t0 + s, hi, T, H, N) + tid;
      dv[off] = dvi;
      dq[off] = dqj;
      dw[off] = dwj;
      db[off] = dbj;
      dk[off] = dkj;
      da[off] = daj;
      __syncthreads();  // sdsa is rewritten by the next step
    }
  }
}

}  // namespace

// Returns false for an unsupported head size (the caller raises a Python error).
bool seqlab_wkv7_cuda_forward(int B, int T, int H, int N, const float* w, const float* q,
                              const float* k, const float* v, const float* a, const float* b,
                              float* y, float* sa, float* ckpt, cudaStream_t stream) {
  const int grid = B * H;
#define SEQLAB_WKV7_FWD(NN) \
  SEQLAB_LAUNCH(wkv7_forward_kernel<NN>, grid, NN, stream, T, H, w, q, k, v, a, b, y, sa, ckpt)
  switch (N) {
    case 16: SEQLAB_WKV7_FWD(16); break;
    case 32: SEQLAB_WKV7_FWD(32); break;
    case 64: SEQLAB_WKV7_FWD(64); break;
    default: return false;
  }
#undef SEQLAB_WKV7_FWD
  return true;
}

bool seqlab_wkv7_cuda_backward(int B, int T, int H, int N, const float* w, const float* q,
                               const float* k, const float* v, const float* a, const float* b,
                               const float* sa, const float* ckpt, const float* dy, float* dw,
                               float* dq, float* dk, float* dv, float* da, float* db,
                               cudaStream_t stream) {
  const int grid = B * H;
#define SEQLAB_WKV7_BWD(NN)                                                                 \
  SEQLAB_LAUNCH(wkv7_backward_kernel<NN>, grid, NN, stream, T, H, w, q, k, v, a, b, sa, ckpt, \
                dy, dw, dq, dk, dv, da, db)
  switch (N) {
    case 16: SEQLAB_WKV7_BWD(16); break;
    case 32: SEQLAB_WKV7_BWD(32); break;
    case 64: SEQLAB_WKV7_BWD(64); break;
    default: return false;
  }
#undef SEQLAB_WKV7_BWD
  return true;
}
