"""WKV7 back ends against the float64 Python-loop oracle: forward and all six input gradients.

Errors are max |x - ref| / max |ref| per tensor; the bound is 1e-5 for float32 back ends.
Shapes cover B in {1, 3}, T in {1, 16, 100, 256} (T = 1 and 100 are not multiples of the
16-step chunk), N in {16, 32, 64}, without the full product (the oracle is slow).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*ccache.*")
    import paddle

import importlib

from seqlab.ops import resolve_backend, wkv7
from seqlab.ops._build import OpBuildError
from seqlab.ops.wkv7 import cpp as cpp_mod
from seqlab.ops.wkv7.reference import wkv7_reference

# `seqlab.ops.wkv7` the function shadows the package of the same name on `seqlab.ops`.
wkv7_pkg = importlib.import_module("seqlab.ops.wkv7")

TOL32 = 1e-5


def rwkv7_inputs(B, T, H, N, seed=0, w_min=0.545):
    """Float64 numpy inputs shaped like RWKV-7's: soft-clamped decay incl. ~1, a = -kk, b = kk*iclr."""
    rng = np.random.default_rng(seed)
    shape = (B, T, H, N)
    w_log = -0.6065 - np.logaddexp(0, -rng.normal(-1.0, 2.0, shape))  # RWKV-7's soft clamp
    w = np.exp(-np.exp(w_log))
    w.reshape(-1)[:: max(1, w.size // 7)] = 0.9999  # decays very close to 1
    w = np.clip(w, w_min, 0.9999)
    q, k, v = (rng.normal(size=shape) for _ in range(3))
    kk = rng.normal(size=shape)
    kk /= np.maximum(np.linalg.norm(kk, axis=-1, keepdims=True), 1e-12)
    iclr = 1 / (1 + np.exp(-rng.normal(size=shape)))
    return [w, q, k, v, -kk, kk * iclr]


def run(fn, arrays, dy, dtype):
    xs = [paddle.to_tensor(x.astype(dtype), stop_gradient=False) for x in arrays]
    y = fn(*xs)
    grads = paddle.grad([y], xs, [paddle.to_tensor(dy.astype(dtype))])
    return [y.numpy().astype(np.float64)] + [g.numpy().astype(np.float64) for g in grads]


def rel_errors(got, ref):
    # An all-zero reference (dw at T = 1: S_0 = 0) is compared in absolute terms.
    return [float(np.abs(g - r).max() / (np.abs(r).max() or 1.0)) for g, r in zip(got, ref)]


_ORACLE: dict = {}


def oracle(B, T, H, N, seed=0, w_min=0.545):
    key = (B, T, H, N, seed, w_min)
    if key not in _ORACLE:
        arrays = rwkv7_inputs(B, T, H, N, seed, w_min)
        dy = np.random.default_rng(seed + 1).normal(size=(B, T, H, N))
        _ORACLE[key] = (arrays, dy, run(wkv7_reference, arrays, dy, "float64"))
    return _ORACLE[key]


def check(backend, shape, dtype="float32", tol=TOL32, **kw):
    arrays, dy, ref = oracle(*shape, **kw)
    got = run(lambda *xs: wkv7(*xs, backend=backend), arrays, dy, dtype)
    errs = rel_errors(got, ref)
    names = ["y", "dw", "dq", "dk", "dv", "da", "db"]
    assert max(errs) <= tol, dict(zip(names, errs))


CPP_SHAPES = [  # (B, T, H, N)
    (1, 1, 1, 16),
    (3, 1, 2, 64),
    (1, 16, 1, 64),
    (3, 16, 2, 32),
    (1, 100, 2, 64),
    (3, 100, 1, 16),
    (1, 256, 1, 32),
    (3, 256, 2, 16),
]
CHUNKED_SHAPES = [(1, 1, 1, 16), (3, 16, 1, 32), (3, 100, 2, 16), (1, 256, 1, 64)]


@pytest.mark.parametrize("shape", CPP_SHAPES, ids=lambda s: "B{}T{}H{}N{}".format(*s))
def test_cpp_matches_reference_float32(shape):
    check("cpp", shape)


@pytest.mark.parametrize("shape", [(3, 100, 2, 16), (1, 37, 1, 24)], ids=str)
def test_cpp_float64_is_exact(shape):
    check("cpp", shape, dtype="float64", tol=1e-12)


def test_cpp_exact_for_any_decay_in_0_1():
    """The backward recomputes from checkpoints (never divides by w), so w = 0 is fine."""
    check("cpp", (1, 40, 1, 16), dtype="float64", tol=1e-12, w_min=0.0, seed=3)


@pytest.mark.parametrize("shape", CHUNKED_SHAPES, ids=lambda s: "B{}T{}H{}N{}".format(*s))
def test_chunked_matches_reference_float32(shape):
    check("chunked", shape)


def test_chunked_float64_is_exact():
    check("chunked", (3, 100, 2, 16), dtype="float64", tol=1e-12)


@pytest.mark.parametrize("backend", ["cpp", "chunked"])
def test_non_contiguous_inputs(backend):
    B, T, H, N = 2, 37, 2, 16
    arrays, dy, ref = oracle(B, T, H, N, seed=5)
    xs = []
    for x in arrays:  # same values, stored as [B, H, T, N] and viewed as [B, T, H, N]
        t = paddle.to_tensor(np.ascontiguousarray(x.transpose(0, 2, 1, 3)).astype("float32"))
        t.stop_gradient = False
        xs.append(t)
    views = [t.transpose([0, 2, 1, 3]) for t in xs]
    y = wkv7(*views, backend=backend)
    grads = paddle.grad([y], xs, [paddle.to_tensor(dy.astype("float32"))])
    got = [y.numpy()] + [g.numpy().transpose(0, 2, 1, 3) for g in grads]
    assert max(rel_errors(got, ref)) <= TOL32


def test_failed_build_falls_back_to_chunked_with_one_warning(monkeypatch):
    def broken():
        raise OpBuildError("simulated compiler failure")

    monkeypatch.delenv("SEQLAB_WKV7", raising=False)
    monkeypatch.setattr(cpp_mod, "load", broken)
    monkeypatch.setattr(wkv7_pkg, "_AUTO", {})
    arrays, dy, ref = oracle(1, 20, 1, 16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = run(wkv7, arrays, dy, "float32")
        run(wkv7, arrays, dy, "float32")
        assert resolve_backend() == "chunked"
    ours = [w for w in caught if "could not be built" in str(w.message)]
    assert len(ours) == 1 and "chunked" in str(ours[0].message), [str(w.message) for w in caught]
    assert max(rel_errors(got, ref)) <= TOL32
    # An explicit request for the broken back end is an error, not a silent fallback.
    with pytest.raises(OpBuildError):
        wkv7(*[paddle.to_tensor(x.astype("float32")) for x in arrays], backend="cpp")


def test_env_override_and_validation(monkeypatch):
    monkeypatch.setenv("SEQLAB_WKV7", "reference")
    assert resolve_backend() == "reference"
    assert resolve_backend("chunked") == "chunked"  # the argument beats the environment
    monkeypatch.setenv("SEQLAB_WKV7", "CPP")
    assert resolve_backend() == "cpp"
    monkeypatch.setenv("SEQLAB_WKV7", "bogus")
    with pytest.raises(ValueError, match="reference, chunked, cpp, cuda"):
        resolve_backend()
    monkeypatch.delenv("SEQLAB_WKV7")
    with pytest.raises(ValueError, match="valid"):
        resolve_backend("fast")
    assert resolve_backend() in ("cpp", "chunked")  # CPU default


def test_env_override_is_used_by_wkv7(monkeypatch):
    calls = []
    monkeypatch.setattr(wkv7_pkg, "wkv7_reference", lambda *xs: calls.append(1) or xs[0])
    monkeypatch.setenv("SEQLAB_WKV7", "reference")
    x = paddle.ones([1, 2, 1, 16])
    wkv7(x, x, x, x, x, x)
    assert calls == [1]


def test_shape_mismatch_is_a_clear_error():
    x = paddle.ones([1, 2, 1, 16])
    with pytest.raises(ValueError, match="shape"):
        wkv7(x, x, x, x, x, paddle.ones([1, 2, 1, 32]), backend="chunked")


def test_available_backends_on_cpu():
    names = wkv7_pkg.available_backends()
    assert names[:2] == ["reference", "chunked"] and "cpp" in names
    if not paddle.is_compiled_with_cuda():
        assert "cuda" not in names


_EMU_MAIN = r"""
#include "cuda_emulation.h"
#include "wkv7_cuda.cu"
#include <cstdio>
#include <vector>
int main(int argc, char** argv) {
  int B, T, H, N;
  FILE* f = std::fopen(argv[1], "rb");
  if (std::fread(&B, 4, 1, f) + std::fread(&T, 4, 1, f) + std::fread(&H, 4, 1, f) +
      std::fread(&N, 4, 1, f) != 4) return 2;
  const size_t S = size_t(B) * T * H * N, NC = (T + 15) / 16;
  std::vector<float> in(7 * S), out(9 * S), ck(size_t(B) * H * NC * N * N);
  if (std::fread(in.data(), 4, 7 * S, f) != 7 * S) return 3;
  std::fclose(f);
  const float* x[7];
  for (int i = 0; i < 7; ++i) x[i] = in.data() + i * S;
  float* o[9];
  for (int i = 0; i < 9; ++i) o[i] = out.data() + i * S;
  // y, sa, then dw dq dk dv da db
  if (!seqlab_wkv7_cuda_forward(B, T, H, N, x[0], x[1], x[2], x[3], x[4], x[5], o[0], o[1],
                                ck.data(), nullptr)) return 4;
  if (!seqlab_wkv7_cuda_backward(B, T, H, N, x[0], x[1], x[2], x[3], x[4], x[5], o[1],
                                 ck.data(), x[6], o[2], o[3], o[4], o[5], o[6], o[7], nullptr))
    return 5;
  f = std::fopen(argv[2], "wb");
  std::fwrite(out.data(), 4, 9 * S, f);
  std::fclose(f);
  return 0;
}
"""


def test_cuda_kernels_in_cpu_emulation(tmp_path):
    """No GPU here: compile wkv7_cuda.cu with g++ and cuda_emulation.h (a block = N threads
    with a barrier) and check its kernels against the oracle. Logic only, not the Paddle glue."""
    import shutil
    import subprocess
    from pathlib import Path

    if shutil.which("g++") is None:
        pytest.skip("g++ not available")
    csrc = Path(wkv7_pkg.__file__).parent / "csrc"
    (tmp_path / "main.cc").write_text(_EMU_MAIN)
    exe = tmp_path / "emu"
    subprocess.run(
        ["g++", "-O1", "-std=c++20", "-pthread", f"-I{csrc}", str(tmp_path / "main.cc"), "-o", str(exe)],
        check=True,
        capture_output=True,
    )
    for shape in [(2, 37, 2, 16), (1, 20, 1, 32)]:
        arrays, dy, ref = oracle(*shape, seed=7)
        blob = (
            np.array(shape, dtype=np.int32).tobytes()
            + np.concatenate([x.astype(np.float32).ravel() for x in arrays + [dy]]).tobytes()
        )
        (tmp_path / "in.bin").write_bytes(blob)
        subprocess.run([str(exe), str(tmp_path / "in.bin"), str(tmp_path / "out.bin")], check=True)
        out = np.fromfile(tmp_path / "out.bin", dtype=np.float32).reshape(9, *shape)
        got = [out[0]] + list(out[2:8])  # y, then dw dq dk dv da db (same order as ref)
        assert max(rel_errors(got, ref)) <= TOL32


def test_one_step_recurrence_continues_a_sequence():
    """RNN mode: wkv7_step, one token at a time with the state carried, gives the C++ sequence
    op's output at every position (float64; the two share no code)."""
    from seqlab.ops import wkv7_step

    B, T, H, N = 2, 40, 2, 16
    arrays = [paddle.to_tensor(a.astype("float64")) for a in rwkv7_inputs(B, T, H, N, seed=5)]
    whole = wkv7(*arrays, backend="cpp").numpy()
    state = paddle.zeros([B, H, N, N], dtype="float64")
    for t in range(T):
        y, state = wkv7_step(state, *(a[:, t] for a in arrays))
        np.testing.assert_allclose(y.numpy(), whole[:, t], rtol=1e-10, atol=1e-12)
    assert float(paddle.abs(state).max()) > 0.1  # a state was really carried
