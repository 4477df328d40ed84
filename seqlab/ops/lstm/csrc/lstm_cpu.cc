// One LSTM layer on CPU (float32/float64) with a hand-written backward through time.
//
// Same maths and parameter layout as paddle.nn.LSTM (gate order i, f, g, o in the 4H rows of
// weight_ih [4H, I], weight_hh [4H, H], bias_ih [4H], bias_hh [4H]); x is [B, T, I] (batch
// major, nn.LSTM's default):
//
//   pre_t = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh          = [i | f | g | o] (pre-activation)
//   i = s(pre_i)  f = s(pre_f)  g = tanh(pre_g)  o = s(pre_o)   (s = logistic sigmoid)
//   c_t = f c_{t-1} + i g ;  h_t = o tanh(c_t) ;  y[:, t] = h_t
//
// Forward: the input projection of all T steps is ONE GEMM ([B*T, I] x [I, 4H]); the recurrence
// is T small GEMMs ([B, H] x [H, 4H], accumulated into that step's projection rows in place)
// each followed by one fused pass of gate maths. The activated gates and the cell states are
// outputs, kept for the backward.
//
// Backward through time, from the stored gates (dh = dy_t + dh from step t+1, dc from t+1):
//
//   tc = tanh(c_t);  do = dh tc;  dc += dh o (1 - tc^2)
//   di = dc g;  df = dc c_{t-1};  dg = dc i;  dc_{t-1} = dc f
//   dpre = [di i(1-i) | df f(1-f) | dg (1-g^2) | do o(1-o)];  dh_{t-1} = dpre W_hh    (T GEMMs)
//
// then, once for all steps: dx = dPRE W_ih, dW_ih = dPRE^T X, dW_hh = dPRE^T H_prev (H_prev =
// y shifted one step, h0 first) in three big GEMMs; db_ih = db_hh = column sums of dPRE, summed
// in the time loop while each row is still in cache.
//
// BLAS: the big GEMMs (projection, dx, dW_ih, dW_hh) call cblas_{s,d}gemm of the OpenBLAS that
// numpy's wheel bundles (seqlab/ops/lstm/_blas.py finds it and passes its symbol names and
// integer width as macros; it also says why not Paddle's own MKL 2019). The 2T recurrent GEMMs
// reuse one weight matrix, so they run on a copy packed once per call (RecurrentWeight below)
// where the shape allows, and on the same BLAS otherwise.
//
// Threads: the batch is cut into groups of kGroup sequences and the weight gradients into
// blocks of kGateBlock gate rows, FIXED sizes whatever the thread count; threads take whole
// groups (blocks). Every GEMM therefore sees the same shapes at any thread count, and the
// results are bit-identical at 1, 2 or N threads: OpenBLAS's rounding depends on a GEMM's M
// (measured: X[:2048] W^T differs from the first rows of X[:4096] W^T in the last bits), so a
// split by thread count would make a run's numbers depend on how many cores it had. That is
// what lets `--parallel` hand a run the cores other runs have freed mid-run (seqlab/parallel.py)
// without changing a single bit of its result. Sequences are independent, so a thread runs its
// groups' projection GEMMs and time loops with no synchronisation. Each BLAS call runs on one
// thread (the library's own count is set to 1 for the op's duration and restored after): a
// second level of threads would fight ours for the same cores. std::thread, not OpenMP, for the
// reason given in seqlab/ops/fused/csrc/fused_cpu.cc (idle libgomp workers spin).

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <thread>
#include <type_traits>
#include <vector>

#include "paddle/extension.h"

#if !defined(SEQLAB_SGEMM) || !defined(SEQLAB_DGEMM) || !defined(SEQLAB_BLAS_INT) || \
    !defined(SEQLAB_BLAS_SET_THREADS) || !defined(SEQLAB_BLAS_GET_THREADS)
#error "build through seqlab.ops.lstm, which names the BLAS symbols (SEQLAB_SGEMM, ...)"
#endif

using blas_int = SEQLAB_BLAS_INT;

extern "C" {
// CBLAS prototypes (enums passed as int: CblasRowMajor = 101, NoTrans = 111, Trans = 112).
void SEQLAB_SGEMM(int order, int trans_a, int trans_b, blas_int m, blas_int n, blas_int k,
                  float alpha, const float* a, blas_int lda, const float* b, blas_int ldb,
                  float beta, float* c, blas_int ldc);
void SEQLAB_DGEMM(int order, int trans_a, int trans_b, blas_int m, blas_int n, blas_int k,
                  double alpha, const double* a, blas_int lda, const double* b, blas_int ldb,
                  double beta, double* c, blas_int ldc);
void SEQLAB_BLAS_SET_THREADS(int n);
int SEQLAB_BLAS_GET_THREADS(void);
}

namespace {

constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;

// C[m, n] = A[m, k] B[k, n] + beta C  (row-major; ta/tb: A/B are stored transposed).
inline void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                 const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  SEQLAB_SGEMM(kRowMajor, ta ? kTrans : kNoTrans, tb ? kTrans : kNoTrans, m, n, k, 1.0f, a, lda,
               b, ldb, beta, c, ldc);
}
inline void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const double* a,
                 int64_t lda, const double* b, int64_t ldb, double beta, double* c,
                 int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  SEQLAB_DGEMM(kRowMajor, ta ? kTrans : kNoTrans, tb ? kTrans : kNoTrans, m, n, k, 1.0, a, lda, b,
               ldb, beta, c, ldc);
}

// The BLAS runs single-threaded inside the op (see the header); its previous count comes back
// afterwards so numpy in the same process keeps its own setting.
class OneBlasThread {
 public:
  OneBlasThread() : saved_(SEQLAB_BLAS_GET_THREADS()) {
    if (saved_ != 1) SEQLAB_BLAS_SET_THREADS(1);
  }
  ~OneBlasThread() {
    if (saved_ != 1) SEQLAB_BLAS_SET_THREADS(saved_);
  }
  OneBlasThread(const OneBlasThread&) = delete;
  OneBlasThread& operator=(const OneBlasThread&) = delete;

 private:
  int saved_;
};

// The fixed work units (see the header): sequences per group, weight-gradient rows per block.
constexpr int64_t kGroup = 16;
constexpr int64_t kGateBlock = 128;

// body(lo, hi) for each of the ceil(n / unit) units [lo, hi) of [0, n), on up to `threads`
// threads, each taking a contiguous run of whole units (thread 0 is the caller). Which thread
// runs a unit never changes what the unit computes.
template <typename F>
void for_each_unit(int64_t n, int64_t unit, int threads, F&& body) {
  const int64_t units = (n + unit - 1) / unit;
  const int parts = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, units)));
  auto run = [&body, n, unit, units, parts](int p) {
    for (int64_t u = units * p / parts; u < units * (p + 1) / parts; ++u)
      body(u * unit, std::min(n, (u + 1) * unit));
  };
  std::vector<std::thread> pool;
  pool.reserve(parts - 1);
  for (int p = 1; p < parts; ++p) pool.emplace_back(run, p);
  run(0);
  for (auto& th : pool) th.join();
}

// ---------------------------------------------------------------- the recurrent GEMMs
//
// Each step multiplies a [B, K] block by the same weight matrix: h_{t-1} W_hh^T ([B, H] x
// [H, 4H]) forward and dpre_t W_hh ([B, 4H] x [4H, H]) backward. A BLAS call repacks the whole
// weight matrix (64K floats at H = 128) on every one of those T calls, which measured ~25% of
// the call (perf, OpenBLAS sgemm_incopy/oncopy). RecurrentWeight packs it ONCE per op call into
// panels of 16 columns, and gemm_panels() runs an AVX2/FMA kernel of 6 rows x 16 columns
// (12 accumulators) over them. Shapes it does not cover (float64, widths not a multiple of 16,
// no AVX2) use the BLAS for every step.

template <typename T>
class RecurrentWeight {
 public:
  // B_op[k][n] = transposed ? w[n][k] : w[k][n]; w is [N, K] if transposed, else [K, N].
  RecurrentWeight(const T* w, bool transposed, int64_t K, int64_t N)
      : w_(w), transposed_(transposed), K_(K), N_(N) {
#if defined(__AVX2__) && defined(__FMA__)
    if (std::is_same<T, float>::value && N % 16 == 0 && K >= 1) {
      panels_.resize(static_cast<size_t>(K * N));
      for (int64_t p = 0; p < N / 16; ++p)
        for (int64_t k = 0; k < K; ++k)
          for (int64_t c = 0; c < 16; ++c)
            panels_[(p * K + k) * 16 + c] =
                transposed ? w[(p * 16 + c) * K + k] : w[k * N + p * 16 + c];
    }
#endif
  }

  // C[M, N] = A[M, K] B_op + (accumulate ? C : 0), rows of A and C lda / ldc apart.
  void multiply(int64_t M, const T* a, int64_t lda, T* c, int64_t ldc, bool accumulate) const;

 private:
  const T* w_;
  bool transposed_;
  int64_t K_, N_;
  std::vector<float> panels_;  // [N/16][K][16]; empty: use the BLAS
};

#if defined(__AVX2__) && defined(__FMA__)
// Named accumulators, not an array: GCC 12 kept an __m256 acc[R][2] array in registers but
// also stored it to the stack on every k (measured 1.5x slower than the BLAS).
#define SEQLAB_ROW(r, stmt) \
  if constexpr (R > r) {    \
    stmt;                   \
  }
template <int R>
inline void kernel_rows_x16(const float* __restrict a, int64_t lda, const float* __restrict panel,
                            int64_t K, float* __restrict c, int64_t ldc, bool accumulate) {
  static_assert(R >= 1 && R <= 6, "6 rows x 2 vectors = 12 accumulators of 16 registers");
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00,
         c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  if (accumulate) {
#define SEQLAB_LOAD(r)                                   \
  SEQLAB_ROW(r, c##r##0 = _mm256_loadu_ps(c + r * ldc);  \
             c##r##1 = _mm256_loadu_ps(c + r * ldc + 8))
    SEQLAB_LOAD(0) SEQLAB_LOAD(1) SEQLAB_LOAD(2) SEQLAB_LOAD(3) SEQLAB_LOAD(4) SEQLAB_LOAD(5)
#undef SEQLAB_LOAD
  }
  for (int64_t k = 0; k < K; ++k) {
    const __m256 b0 = _mm256_loadu_ps(panel + k * 16);
    const __m256 b1 = _mm256_loadu_ps(panel + k * 16 + 8);
#define SEQLAB_FMA(r)                                                     \
  SEQLAB_ROW(r, const __m256 av = _mm256_broadcast_ss(a + r * lda + k); \
             c##r##0 = _mm256_fmadd_ps(av, b0, c##r##0);                 \
             c##r##1 = _mm256_fmadd_ps(av, b1, c##r##1))
    SEQLAB_FMA(0) SEQLAB_FMA(1) SEQLAB_FMA(2) SEQLAB_FMA(3) SEQLAB_FMA(4) SEQLAB_FMA(5)
#undef SEQLAB_FMA
  }
#define SEQLAB_STORE(r)                                 \
  SEQLAB_ROW(r, _mm256_storeu_ps(c + r * ldc, c##r##0); \
             _mm256_storeu_ps(c + r * ldc + 8, c##r##1))
  SEQLAB_STORE(0) SEQLAB_STORE(1) SEQLAB_STORE(2) SEQLAB_STORE(3) SEQLAB_STORE(4) SEQLAB_STORE(5)
#undef SEQLAB_STORE
}
#undef SEQLAB_ROW

inline void gemm_panels(int64_t M, int64_t N, int64_t K, const float* a, int64_t lda,
                        const float* panels, float* c, int64_t ldc, bool accumulate) {
  for (int64_t r0 = 0; r0 < M; r0 += 6) {  // the 6 rows of A stay in L1 across all panels
    const float* ar = a + r0 * lda;
    float* cr = c + r0 * ldc;
    for (int64_t p = 0; p < N / 16; ++p) {
      const float* panel = panels + p * K * 16;
      switch (std::min<int64_t>(6, M - r0)) {
        case 6: kernel_rows_x16<6>(ar, lda, panel, K, cr + p * 16, ldc, accumulate); break;
        case 5: kernel_rows_x16<5>(ar, lda, panel, K, cr + p * 16, ldc, accumulate); break;
        case 4: kernel_rows_x16<4>(ar, lda, panel, K, cr + p * 16, ldc, accumulate); break;
        case 3: kernel_rows_x16<3>(ar, lda, panel, K, cr + p * 16, ldc, accumulate); break;
        case 2: kernel_rows_x16<2>(ar, lda, panel, K, cr + p * 16, ldc, accumulate); break;
        default: kernel_rows_x16<1>(ar, lda, panel, K, cr + p * 16, ldc, accumulate); break;
      }
    }
  }
}
#endif

template <typename T>
void RecurrentWeight<T>::multiply(int64_t M, const T* a, int64_t lda, T* c, int64_t ldc,
                                  bool accumulate) const {
#if defined(__AVX2__) && defined(__FMA__)
  if (!panels_.empty()) {
    gemm_panels(M, N_, K_, reinterpret_cast<const float*>(a), lda, panels_.data(),
                reinterpret_cast<float*>(c), ldc, accumulate);
    return;
  }
#endif
  gemm(false, transposed_, M, N_, K_, a, lda, w_, transposed_ ? K_ : N_, accumulate ? T(1) : T(0),
       c, ldc);
}

// Threads worth using: below this much work a thread start costs more than it saves.
int threads_for(int64_t work, int num_threads) {
  return work < (int64_t(1) << 18) ? 1 : std::max(1, num_threads);
}

// tanh as a rational function (Eigen 3.4's float coefficients; within ~2e-7 of tanh, relative
// error ~1e-7 near 0 too): plain branch-free arithmetic, so the gate loops below vectorise
// (libm's tanhf/expf calls, or a branch, would not).
inline float tanh_approx(float x) {
  const float kClamp = 7.90531110763549805f;
  const float xc = std::min(kClamp, std::max(-kClamp, x));
  const float x2 = xc * xc;
  float p = -2.76076847742355e-16f;
  p = p * x2 + 2.00018790482477e-13f;
  p = p * x2 + -8.60467152213735e-11f;
  p = p * x2 + 5.12229709037114e-08f;
  p = p * x2 + 1.48572235717979e-05f;
  p = p * x2 + 6.37261928875436e-04f;
  p = p * x2 + 4.89352455891786e-03f;
  float q = 1.19825839466702e-06f;
  q = q * x2 + 1.18534705686654e-04f;
  q = q * x2 + 2.26843463243900e-03f;
  q = q * x2 + 4.89352518554385e-03f;
  return xc * p / q;
}
inline float sigmoid_approx(float x) { return 0.5f + 0.5f * tanh_approx(0.5f * x); }
inline double tanh_approx(double x) { return std::tanh(x); }  // float64: exact libm (tests)
inline double sigmoid_approx(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// One step's gate maths for one sequence (H units). `g` holds the pre-activations without the
// biases on entry and the activated gates [i | f | g | o] on exit.
template <typename T>
inline void cell_forward(T* __restrict g, const T* __restrict bias, const T* __restrict c_prev,
                         T* __restrict c, T* __restrict h, int64_t H) {
  T* __restrict gi = g;
  T* __restrict gf = g + H;
  T* __restrict gg = g + 2 * H;
  T* __restrict go = g + 3 * H;
  const T* __restrict bi = bias;
  const T* __restrict bf = bias + H;
  const T* __restrict bg = bias + 2 * H;
  const T* __restrict bo = bias + 3 * H;
#pragma omp simd
  for (int64_t j = 0; j < H; ++j) {
    const T i = sigmoid_approx(gi[j] + bi[j]);
    const T f = sigmoid_approx(gf[j] + bf[j]);
    const T cand = tanh_approx(gg[j] + bg[j]);
    const T o = sigmoid_approx(go[j] + bo[j]);
    const T cj = f * c_prev[j] + i * cand;
    gi[j] = i;
    gf[j] = f;
    gg[j] = cand;
    go[j] = o;
    c[j] = cj;
    h[j] = o * tanh_approx(cj);
  }
}

// One step's backward for one sequence: reads dh (this step's total) and dc (from step t+1),
// writes dpre and leaves dc_{t-1} in dc.
template <typename T>
inline void cell_backward(const T* __restrict gates, const T* __restrict c,
                          const T* __restrict c_prev, const T* __restrict dh, T* __restrict dc,
                          T* __restrict dpre, int64_t H) {
  const T* __restrict gi = gates;
  const T* __restrict gf = gates + H;
  const T* __restrict gg = gates + 2 * H;
  const T* __restrict go = gates + 3 * H;
#pragma omp simd
  for (int64_t j = 0; j < H; ++j) {
    const T i = gi[j], f = gf[j], cand = gg[j], o = go[j];
    const T tc = tanh_approx(c[j]);
    const T dcj = dc[j] + dh[j] * o * (T(1) - tc * tc);
    dpre[j] = dcj * cand * i * (T(1) - i);
    dpre[H + j] = dcj * c_prev[j] * f * (T(1) - f);
    dpre[2 * H + j] = dcj * i * (T(1) - cand * cand);
    dpre[3 * H + j] = dh[j] * tc * o * (T(1) - o);
    dc[j] = dcj * f;
  }
}

template <typename T>
void lstm_forward(const T* x, const T* h0, const T* c0, const T* w_ih, const T* w_hh,
                  const T* b_ih, const T* b_hh, T* y, T* c_last, T* gates, T* cells, int64_t B,
                  int64_t Tn, int64_t I, int64_t H, int num_threads) {
  const int64_t G = 4 * H;
  std::vector<T> bias(static_cast<size_t>(G));
  for (int64_t r = 0; r < G; ++r) bias[r] = b_ih[r] + b_hh[r];
  OneBlasThread one_blas_thread;
  const RecurrentWeight<T> w_rec(w_hh, /*transposed=*/true, H, G);  // h W_hh^T
  const int threads = threads_for(B * Tn * G * (I + H), num_threads);
  for_each_unit(B, kGroup, threads, [&](int64_t b0, int64_t b1) {
    const int64_t nb = b1 - b0;
    // All T input projections of this group at once: [nb*T, I] x W_ih^T -> [nb*T, 4H].
    gemm(false, true, nb * Tn, G, I, x + b0 * Tn * I, I, w_ih, I, T(0), gates + b0 * Tn * G, G);
    for (int64_t t = 0; t < Tn; ++t) {
      // The step's rows are T apart in the [B, T, ...] buffers: BLAS leading dimensions.
      const T* h_prev = t == 0 ? h0 + b0 * H : y + (b0 * Tn + t - 1) * H;
      const int64_t ld_h = t == 0 ? H : Tn * H;
      w_rec.multiply(nb, h_prev, ld_h, gates + (b0 * Tn + t) * G, Tn * G, /*accumulate=*/true);
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t row = b * Tn + t;
        const T* c_prev = t == 0 ? c0 + b * H : cells + (row - 1) * H;
        cell_forward(gates + row * G, bias.data(), c_prev, cells + row * H, y + row * H, H);
      }
    }
    for (int64_t b = b0; b < b1; ++b)
      std::memcpy(c_last + b * H, cells + (b * Tn + Tn - 1) * H, sizeof(T) * H);
  });
}

template <typename T>
void lstm_backward(const T* x, const T* h0, const T* c0, const T* w_ih, const T* w_hh,
                   const T* y, const T* gates, const T* cells, const T* dy, const T* dc_last,
                   T* dx, T* dh0, T* dc0, T* dw_ih, T* dw_hh, T* db_ih, T* db_hh,
                   T* dpre, T* h_prev, int64_t B, int64_t Tn, int64_t I, int64_t H,
                   int num_threads) {
  // Scratch (from Paddle's allocator, which recycles it: no page faults, no zeroing):
  // dpre [B, T, 4H] = d pre-activations; h_prev [B, T, H] = h_{t-1} per row (h0, then y).
  const int64_t G = 4 * H, rows = B * Tn, groups = (B + kGroup - 1) / kGroup;
  // The bias gradients sum B*T rows: in double, per group, then over the groups in order.
  std::vector<double> group_bias_sum(static_cast<size_t>(groups * G), 0.0);
  OneBlasThread one_blas_thread;
  const RecurrentWeight<T> w_rec(w_hh, /*transposed=*/false, G, H);  // dpre W_hh
  const int threads = threads_for(rows * G * (I + H), num_threads);

  // Phase 1, per group of sequences: the time loop backwards, then dx for the group's rows.
  for_each_unit(B, kGroup, threads, [&](int64_t b0, int64_t b1) {
    const int64_t nb = b1 - b0;
    std::vector<T> dh_rec(static_cast<size_t>(nb * H), T(0));  // dpre_{t+1} W_hh
    std::vector<T> dh(static_cast<size_t>(H));
    std::vector<T> dc(static_cast<size_t>(nb * H), T(0));
    double* __restrict acc = group_bias_sum.data() + (b0 / kGroup) * G;
    if (dc_last != nullptr) std::memcpy(dc.data(), dc_last + b0 * H, sizeof(T) * nb * H);
    for (int64_t t = Tn - 1; t >= 0; --t) {
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t row = b * Tn + t, k = b - b0;
        const T* rec = dh_rec.data() + k * H;
        if (dy != nullptr) {
          const T* dyr = dy + row * H;
#pragma omp simd
          for (int64_t j = 0; j < H; ++j) dh[j] = dyr[j] + rec[j];
        } else {
          std::memcpy(dh.data(), rec, sizeof(T) * H);
        }
        const T* c_prev = t == 0 ? c0 + b * H : cells + (row - 1) * H;
        T* d = dpre + row * G;
        cell_backward(gates + row * G, cells + row * H, c_prev, dh.data(), dc.data() + k * H, d, H);
#pragma omp simd
        for (int64_t j = 0; j < G; ++j) acc[j] += d[j];  // while the row is in cache
      }
      // dh_{t-1} = dpre_t W_hh: [nb, 4H] x [4H, H].
      w_rec.multiply(nb, dpre + (b0 * Tn + t) * G, Tn * G, dh_rec.data(), H, /*accumulate=*/false);
    }
    std::memcpy(dh0 + b0 * H, dh_rec.data(), sizeof(T) * nb * H);
    std::memcpy(dc0 + b0 * H, dc.data(), sizeof(T) * nb * H);
    for (int64_t b = b0; b < b1; ++b) {
      std::memcpy(h_prev + b * Tn * H, h0 + b * H, sizeof(T) * H);
      std::memcpy(h_prev + (b * Tn + 1) * H, y + b * Tn * H, sizeof(T) * (Tn - 1) * H);
    }
    // dx = dPRE W_ih: [nb*T, 4H] x [4H, I].
    gemm(false, false, nb * Tn, I, G, dpre + b0 * Tn * G, G, w_ih, I, T(0), dx + b0 * Tn * I,
         I);
  });
  for (int64_t j = 0; j < G; ++j) {
    double sum = 0.0;
    for (int64_t g = 0; g < groups; ++g) sum += group_bias_sum[g * G + j];
    db_ih[j] = db_hh[j] = static_cast<T>(sum);
  }

  // Phase 2, per block of gate rows: dW = dPRE^T [X | H_prev], K = all B*T rows.
  for_each_unit(G, kGateBlock, threads, [&](int64_t r0, int64_t r1) {
    const int64_t nr = r1 - r0;
    gemm(true, false, nr, I, rows, dpre + r0, G, x, I, T(0), dw_ih + r0 * I, I);
    gemm(true, false, nr, H, rows, dpre + r0, G, h_prev, H, T(0), dw_hh + r0 * H, H);
  });
}

paddle::Tensor dense(const paddle::Tensor& x) { return x.is_contiguous() ? x : x.contiguous(); }

// A gradient Paddle did not materialise (the output was not used) counts as zero.
bool present(const paddle::Tensor& g) { return g.initialized() && g.numel() > 0; }

}  // namespace

std::vector<paddle::Tensor> LstmForward(const paddle::Tensor& x_, const paddle::Tensor& h0_,
                                        const paddle::Tensor& c0_, const paddle::Tensor& w_ih_,
                                        const paddle::Tensor& w_hh_, const paddle::Tensor& b_ih_,
                                        const paddle::Tensor& b_hh_, int num_threads) {
  for (const auto* t : {&x_, &h0_, &c0_, &w_ih_, &w_hh_, &b_ih_, &b_hh_})
    PD_CHECK(t->is_cpu(), "seqlab_lstm: CPU tensors only");
  PD_CHECK(x_.shape().size() == 3, "seqlab_lstm: x must be [B, T, input_size]");
  const int64_t B = x_.shape()[0], Tn = x_.shape()[1], I = x_.shape()[2];
  const int64_t H = w_hh_.shape().size() == 2 ? w_hh_.shape()[1] : -1;
  PD_CHECK(Tn >= 1 && B >= 1, "seqlab_lstm: B and T must be at least 1");
  PD_CHECK(H >= 1 && w_hh_.shape()[0] == 4 * H, "seqlab_lstm: weight_hh must be [4H, H]");
  PD_CHECK(w_ih_.shape().size() == 2 && w_ih_.shape()[0] == 4 * H && w_ih_.shape()[1] == I,
           "seqlab_lstm: weight_ih must be [4H, input_size]");
  PD_CHECK(b_ih_.numel() == 4 * H && b_hh_.numel() == 4 * H, "seqlab_lstm: biases must be [4H]");
  PD_CHECK(h0_.numel() == B * H && c0_.numel() == B * H, "seqlab_lstm: h0, c0 must be [B, H]");
  for (const auto* t : {&h0_, &c0_, &w_ih_, &w_hh_, &b_ih_, &b_hh_})
    PD_CHECK(t->dtype() == x_.dtype(), "seqlab_lstm: all inputs must have x's dtype");
  auto x = dense(x_), h0 = dense(h0_), c0 = dense(c0_), w_ih = dense(w_ih_), w_hh = dense(w_hh_),
       b_ih = dense(b_ih_), b_hh = dense(b_hh_);
  auto y = paddle::empty({B, Tn, H}, x.dtype(), x.place());
  auto c_last = paddle::empty({B, H}, x.dtype(), x.place());
  auto gates = paddle::empty({B, Tn, 4 * H}, x.dtype(), x.place());
  auto cells = paddle::empty({B, Tn, H}, x.dtype(), x.place());
  PD_DISPATCH_FLOATING_TYPES(x.type(), "seqlab_lstm", ([&] {
    lstm_forward<data_t>(x.data<data_t>(), h0.data<data_t>(), c0.data<data_t>(),
                         w_ih.data<data_t>(), w_hh.data<data_t>(), b_ih.data<data_t>(),
                         b_hh.data<data_t>(), y.data<data_t>(), c_last.data<data_t>(),
                         gates.data<data_t>(), cells.data<data_t>(), B, Tn, I, H, num_threads);
  }));
  return {y, c_last, gates, cells};
}

std::vector<paddle::Tensor> LstmBackward(const paddle::Tensor& x_, const paddle::Tensor& h0_,
                                         const paddle::Tensor& c0_, const paddle::Tensor& w_ih_,
                                         const paddle::Tensor& w_hh_, const paddle::Tensor& y_,
                                         const paddle::Tensor& gates_,
                                         const paddle::Tensor& cells_, const paddle::Tensor& dy_,
                                         const paddle::Tensor& dc_last_, int num_threads) {
  auto x = dense(x_), h0 = dense(h0_), c0 = dense(c0_), w_ih = dense(w_ih_), w_hh = dense(w_hh_),
       y = dense(y_), gates = dense(gates_), cells = dense(cells_);
  const bool has_dy = present(dy_), has_dc = present(dc_last_);
  paddle::Tensor dy = has_dy ? dense(dy_) : paddle::Tensor();
  paddle::Tensor dc_last = has_dc ? dense(dc_last_) : paddle::Tensor();
  const int64_t B = x.shape()[0], Tn = x.shape()[1], I = x.shape()[2], H = w_hh.shape()[1];
  auto dx = paddle::empty(x.shape(), x.dtype(), x.place());
  auto dh0 = paddle::empty(h0_.shape(), x.dtype(), x.place());
  auto dc0 = paddle::empty(c0_.shape(), x.dtype(), x.place());
  auto dw_ih = paddle::empty(w_ih_.shape(), x.dtype(), x.place());
  auto dw_hh = paddle::empty(w_hh_.shape(), x.dtype(), x.place());
  auto db_ih = paddle::empty({4 * H}, x.dtype(), x.place());
  auto db_hh = paddle::empty({4 * H}, x.dtype(), x.place());
  auto dpre = paddle::empty({B, Tn, 4 * H}, x.dtype(), x.place());
  auto h_prev = paddle::empty({B, Tn, H}, x.dtype(), x.place());
  PD_DISPATCH_FLOATING_TYPES(x.type(), "seqlab_lstm_grad", ([&] {
    lstm_backward<data_t>(
        x.data<data_t>(), h0.data<data_t>(), c0.data<data_t>(), w_ih.data<data_t>(),
        w_hh.data<data_t>(), y.data<data_t>(), gates.data<data_t>(), cells.data<data_t>(),
        has_dy ? dy.data<data_t>() : nullptr, has_dc ? dc_last.data<data_t>() : nullptr,
        dx.data<data_t>(), dh0.data<data_t>(), dc0.data<data_t>(), dw_ih.data<data_t>(),
        dw_hh.data<data_t>(), db_ih.data<data_t>(), db_hh.data<data_t>(), dpre.data<data_t>(),
        h_prev.data<data_t>(), B, Tn, I, H, num_threads);
  }));
  return {dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh};
}

std::vector<std::vector<int64_t>> LstmInferShape(
    const std::vector<int64_t>& x, const std::vector<int64_t>& h0, const std::vector<int64_t>&,
    const std::vector<int64_t>&, const std::vector<int64_t>& w_hh, const std::vector<int64_t>&,
    const std::vector<int64_t>&, int) {
  const int64_t H = w_hh[1];
  return {{x[0], x[1], H}, {x[0], H}, {x[0], x[1], 4 * H}, {x[0], x[1], H}};
}

std::vector<paddle::DataType> LstmInferDtype(paddle::DataType x, paddle::DataType,
                                             paddle::DataType, paddle::DataType, paddle::DataType,
                                             paddle::DataType, paddle::DataType) {
  return {x, x, x, x};
}

PD_BUILD_OP(seqlab_lstm)
    .Inputs({"x", "h0", "c0", "weight_ih", "weight_hh", "bias_ih", "bias_hh"})
    .Outputs({"y", "c_last", "gates", "cells"})
    .Attrs({"num_threads: int"})
    .SetKernelFn(PD_KERNEL(LstmForward))
    .SetInferShapeFn(PD_INFER_SHAPE(LstmInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(LstmInferDtype));

PD_BUILD_GRAD_OP(seqlab_lstm)
    .Inputs({"x", "h0", "c0", "weight_ih", "weight_hh", "y", "gates", "cells", paddle::Grad("y"),
             paddle::Grad("c_last")})
    .Outputs({paddle::Grad("x"), paddle::Grad("h0"), paddle::Grad("c0"),
              paddle::Grad("weight_ih"), paddle::Grad("weight_hh"), paddle::Grad("bias_ih"),
              paddle::Grad("bias_hh")})
    .Attrs({"num_threads: int"})
    .SetKernelFn(PD_KERNEL(LstmBackward));
