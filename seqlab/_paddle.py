"""Import Paddle once, quietly, or explain in one sentence how to install it.

seqlab cannot depend on both ``paddlepaddle`` and ``paddlepaddle-gpu`` (they install the same
module), so neither is a hard dependency and this check replaces the usual ImportError.
"""

import os
import sys
import warnings

INSTALL_HINT = (
    "seqlab needs PaddlePaddle and neither wheel is installed: run "
    "`pip install 'seqlab[cpu]'` (CPU) or install `paddlepaddle-gpu` from Paddle's own index "
    "(https://www.paddlepaddle.org.cn/packages/stable/cu126/) for a CUDA build."
)


def import_paddle():
    """Return the ``paddle`` module, or exit 2 with :data:`INSTALL_HINT` when it is missing."""
    # Idle OpenMP threads of the WKV7 op otherwise spin and take the core from the Paddle kernel
    # that runs next (measured: benchmarks/RESULTS.md, "RWKV-7 step: profile and fixes", item 4,
    # Threads). It must be set before libgomp starts, i.e.
    # before Paddle is imported; a user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if _amd_with_avx2():
        # Paddle's CPU wheel ships MKL 2019, which runs its generic (SSE) kernels on AMD CPUs.
        # This long-standing MKL switch selects its AVX2 kernels, which made training steps of
        # Paddle's own layers faster here (benchmarks/bench_mkl.py; benchmarks/RESULTS.md, "What
        # MKL's switch does" in "Summary: 2026-11-29"). MKL
        # reads it at its first call; it is set before Paddle is even imported, only where the
        # CPU has AVX2 and FMA, and a user's own value wins.
        os.environ.setdefault("MKL_DEBUG_CPU_TYPE", "5")
    # Paddle prints a "No ccache found" UserWarning on every import; it is noise for our users.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ccache.*")
        try:
            import paddle
        except ModuleNotFoundError as exc:
            if exc.name != "paddle":
                raise
            print(f"error: {INSTALL_HINT}", file=sys.stderr)
            raise SystemExit(2) from None
    return paddle


def _amd_with_avx2() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            head = f.read(8192)
    except OSError:
        return False
    flags = next((ln.split(":", 1)[1].split() for ln in head.splitlines() if ln.startswith("flags")), [])
    return "AuthenticAMD" in head and "avx2" in flags and "fma" in flags


def configure_cpu_defaults(paddle) -> None:
    """Apply the CPU settings measured in benchmarks/RESULTS.md; the Trainer calls it in setup.

    Strided views make transpose/slice kernels and their gradients slow on CPU (the flag on
    against off: ``benchmarks/RESULTS.md``, "RWKV-7 step: profile and fixes", "Other checks"). It
    is a process-wide Paddle flag, so seqlab sets it only when a Trainer (or a benchmark) runs on
    CPU, never at import.
    ``SEQLAB_STRIDE_KERNEL=1`` keeps Paddle's default for anyone who wants to compare.
    """
    if paddle.device.is_compiled_with_cuda() and paddle.device.get_device().startswith("gpu"):
        return
    from seqlab.ops.settings import setting

    if setting("SEQLAB_STRIDE_KERNEL") != "1":
        paddle.set_flags({"FLAGS_use_stride_kernel": False})
