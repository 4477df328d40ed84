// Test aid, not part of any build: lets g++ compile wkv7_cuda.cu and run its kernels on the
// CPU, one std::thread per CUDA thread and a std::barrier for __syncthreads(), one block at a
// time. It checks the kernels' logic (indexing, shared-memory staging, synchronisation,
// maths) on machines without a GPU; it says nothing about their speed. Used by
// tests/test_wkv7.py::test_cuda_kernels_in_cpu_emulation.
#pragma once
#define SEQLAB_CUDA_EMULATION 1
#include <algorithm>
#include <barrier>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static  // one block at a time: function statics play shared memory
#define __restrict__ __restrict
#define __launch_bounds__(x)

struct seqlab_emu_idx { int x = 0; };
inline thread_local seqlab_emu_idx threadIdx;
inline seqlab_emu_idx blockIdx;
inline std::barrier<>* seqlab_emu_barrier = nullptr;
inline void __syncthreads() { seqlab_emu_barrier->arrive_and_wait(); }
typedef void* cudaStream_t;
using std::min;

template <class F>
void seqlab_emu_launch(int grid, int block, F f) {
  for (int g = 0; g < grid; ++g) {
    blockIdx.x = g;
    std::barrier<> bar(block);
    seqlab_emu_barrier = &bar;
    std::vector<std::thread> threads;
    for (int t = 0; t < block; ++t) threads.emplace_back([&, t] { threadIdx.x = t; f(); });
    for (auto& th : threads) th.join();
  }
}

#define SEQLAB_LAUNCH(kernel, grid, block, stream, ...) \
  seqlab_emu_launch((grid), (block), [&] { kernel(__VA_ARGS__); })
