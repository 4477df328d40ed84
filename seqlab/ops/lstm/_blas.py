"""Find the BLAS the LSTM op links against: the OpenBLAS that numpy's wheel bundles.

Why this one: every seqlab install has numpy (a dependency) and numpy's Linux wheels ship a
complete OpenBLAS (``numpy.libs/libscipy_openblas64_-<hash>.so`` since numpy 2,
``libopenblas64_p-...so`` before), so a fresh ``pip install`` has a fast GEMM with nothing else to
install. Paddle's wheel ships MKL 2019 (``paddle/libs/libmklml_intel.so``), but that version
takes its generic (non-AVX2) code path on AMD CPUs: its sgemm ran several times slower than
OpenBLAS on the AMD EPYC we measured (the GEMM table of ``benchmarks/RESULTS.md``, "Fused LSTM").
``MKL_DEBUG_CPU_TYPE=5`` lifts that, but only when set before Paddle loads MKL and only for
MKL <= 2020.0; OpenBLAS needs neither and picks its kernels by CPU on both vendors.

The bundled file name carries a build hash and its symbols a prefix/suffix (``scipy_``, ``64_``
for 64-bit integers), so we find the file, read its exported symbol names with ctypes, and pass
them to the compiler as macros; the link line names the file and sets an rpath to its folder.
Those flags are part of the op's build fingerprint, so another numpy gets its own build.

``SEQLAB_BLAS_LIB=/path/to/libopenblas.so`` chooses another OpenBLAS build (same symbol rules).
"""

from __future__ import annotations

import ctypes
import glob
import os
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "SEQLAB_BLAS_LIB"

# (prefix, suffix) of the exported names, most specific first: numpy >= 2 (scipy-openblas64),
# numpy 1.x (openblas64_), a plain LP64 OpenBLAS.
_NAMINGS = (("scipy_", "64_"), ("", "64_"), ("scipy_", ""), ("", ""))


class BlasNotFound(RuntimeError):
    """No usable OpenBLAS was found (the LSTM op then falls back to ``paddle.nn.LSTM``)."""


@dataclass(frozen=True)
class Blas:
    path: Path
    sgemm: str
    dgemm: str
    set_threads: str
    get_threads: str
    int64: bool  # ILP64 build: integer arguments are int64

    def cflags(self) -> list[str]:
        return [
            f"-DSEQLAB_SGEMM={self.sgemm}",
            f"-DSEQLAB_DGEMM={self.dgemm}",
            f"-DSEQLAB_BLAS_SET_THREADS={self.set_threads}",
            f"-DSEQLAB_BLAS_GET_THREADS={self.get_threads}",
            f"-DSEQLAB_BLAS_INT={'int64_t' if self.int64 else 'int'}",
        ]

    def ldflags(self) -> list[str]:
        folder = str(self.path.parent)
        return [f"-L{folder}", f"-l:{self.path.name}", f"-Wl,-rpath,{folder}"]


def _candidates() -> list[Path]:
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return [Path(env)]
    import numpy

    pkg = Path(numpy.__file__).resolve().parent
    found: list[Path] = []
    for folder in (pkg.parent / "numpy.libs", pkg / ".libs"):
        for pattern in ("libscipy_openblas*.so*", "libopenblas*.so*"):
            found += sorted(Path(p) for p in glob.glob(str(folder / pattern)))
    return found


def _naming(lib) -> tuple[str, str] | None:
    for prefix, suffix in _NAMINGS:
        names = (
            f"{prefix}cblas_sgemm{suffix}",
            f"{prefix}cblas_dgemm{suffix}",
            f"{prefix}openblas_set_num_threads{suffix}",
            f"{prefix}openblas_get_num_threads{suffix}",
        )
        if all(hasattr(lib, n) for n in names):
            return prefix, suffix
    return None


def find_blas() -> Blas:
    """The OpenBLAS to link: ``SEQLAB_BLAS_LIB`` if set, else numpy's bundled one."""
    candidates = _candidates()
    for path in candidates:
        try:
            lib = ctypes.CDLL(str(path))
        except OSError:
            continue
        naming = _naming(lib)
        if naming is None:
            continue
        prefix, suffix = naming
        return Blas(
            path=path.resolve(),
            sgemm=f"{prefix}cblas_sgemm{suffix}",
            dgemm=f"{prefix}cblas_dgemm{suffix}",
            set_threads=f"{prefix}openblas_set_num_threads{suffix}",
            get_threads=f"{prefix}openblas_get_num_threads{suffix}",
            int64=suffix == "64_",
        )
    where = f"{ENV_VAR}={os.environ[ENV_VAR]}" if os.environ.get(ENV_VAR, "").strip() else "numpy's wheel"
    tried = ", ".join(str(p) for p in candidates) or "no candidate files"
    raise BlasNotFound(f"no OpenBLAS with cblas_sgemm found in {where} (tried: {tried})")
