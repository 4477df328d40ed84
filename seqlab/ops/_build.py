"""Build and load seqlab's custom Paddle ops, once per process.

Why this module exists:

* ``paddle.utils.cpp_extension.load`` JIT-compiles C++/CUDA sources: slowly the first time,
  quickly from its cache (one extension's build and cached load are timed in
  ``benchmarks/RESULTS.md``, "Fused LSTM"). We key the cache folder on a hash of the sources, the
  flags, the Paddle and Python versions, so an edited source or a new Paddle never loads a stale
  library.
* Custom op names are global to the process and registering one twice ABORTS the process (no
  Python exception). Each extension is therefore loaded at most once per process and kept in
  ``_LOADED``; a failed build is remembered too, so we do not retry (and re-warn) on every call.
* Several processes (pytest workers, other engineers) may build the same extension at once:
  a file lock in the cache folder serialises them.

All CPU ops live in ONE extension (``seqlab_cpu_ops``: the WKV7 recurrence plus the fused
RWKV-7 block ops when present) so a process pays for one build/load only.

Environment: ``SEQLAB_CACHE_DIR`` (default ``~/.cache/seqlab``); ops go to ``<dir>/ops/<name>-<hash>``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

log = logging.getLogger("seqlab.ops")

_HERE = Path(__file__).resolve().parent

CPU_CFLAGS = ["-O3", "-march=native", "-fopenmp", "-ffp-contract=fast", "-std=c++17"]
CPU_LDFLAGS = ["-fopenmp"]
CUDA_CFLAGS = ["-O3", "--use_fast_math", "-Xptxas=-O3", "--extra-device-vectorization"]

_LOADED: dict[str, object] = {}
_FAILED: dict[str, BaseException] = {}
_LOCK = threading.Lock()


class OpBuildError(RuntimeError):
    """A custom op could not be compiled or loaded (compiler missing, compile error, ...)."""


def cpu_sources() -> list[Path]:
    """The C++ sources of the single CPU extension (fused ops only if that package exists)."""
    srcs = [_HERE / "wkv7" / "csrc" / "wkv7_cpu.cc"]
    fused = _HERE / "fused" / "csrc" / "fused_cpu.cc"
    if fused.exists():
        srcs.append(fused)
    return srcs


THREADS_FILE = "SEQLAB_THREADS_FILE"  # set by a --parallel parent: this child's current share
_SHARE_REFRESH_S = 1.0
_share: dict[str, object] = {"read_at": None, "threads": None}


def num_threads(elastic: bool = False) -> int:
    """Threads for our C++ ops: ``SEQLAB_NUM_THREADS``, else the CPUs this process may use.

    ``elastic=True`` is for ops whose results are bit-identical at any thread count (the LSTM
    op): in a ``--parallel`` child they take the share the parent gives this process, which grows
    when other runs finish (see :mod:`seqlab.parallel`). The RWKV-7 ops sum parameter gradients
    per thread, so their bits could depend on the count: they keep the count the run started with.

    Passed explicitly to every op because ``import paddle`` sets ``OMP_NUM_THREADS=1`` after
    libgomp has already started, so OpenMP's own default is not reliable here.
    """
    from seqlab.ops.settings import setting

    shared = _shared_threads() if elastic else None
    if shared:
        return shared
    env = setting("SEQLAB_NUM_THREADS")
    if env:
        return int(env)
    return available_cpus()


def available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _shared_threads() -> int | None:
    """The thread count in ``$SEQLAB_THREADS_FILE``, re-read at most once a second (the ops call
    this ~15 times a step). None when unset or unreadable: then the usual rules apply."""
    path = os.environ.get(THREADS_FILE)
    if not path:
        return None
    now = time.monotonic()
    read_at = _share["read_at"]
    if read_at is not None and now - read_at < _SHARE_REFRESH_S:
        return _share["threads"]
    try:
        threads = int(Path(path).read_text().strip())
    except (OSError, ValueError):
        threads = None
    if threads is not None and threads > 0 and threads != _share["threads"] and read_at is not None:
        log.info(
            "seqlab: the C++ ops now run on %d thread%s (cores freed by finished runs)", threads, "s" * (threads > 1)
        )
    _share.update(read_at=now, threads=threads if threads and threads > 0 else None)
    return _share["threads"]


def cache_root() -> Path:
    base = os.environ.get("SEQLAB_CACHE_DIR") or os.path.join(Path.home(), ".cache", "seqlab")
    return Path(base) / "ops"


def _fingerprint(sources, cflags, cuda_cflags, ldflags) -> str:
    import paddle

    h = hashlib.sha256()
    for src in sources:
        # The full path: Paddle's own build signature includes it, so two checkouts sharing one
        # cache folder would otherwise rebuild each other's extension on every switch.
        h.update(str(Path(src).resolve()).encode())
        h.update(Path(src).read_bytes())
    for part in (cflags, cuda_cflags, ldflags):
        h.update(repr(list(part)).encode())
    h.update(paddle.__version__.encode())
    h.update(str(getattr(paddle.version, "commit", "")).encode())
    h.update(sys.version.encode())
    # -march=native: a build is only valid on a CPU with the same instruction set, so a cache on a
    # shared home folder or restored on another runner must not load it (SIGILL).
    h.update(_cpu_signature().encode())
    return h.hexdigest()[:16]


def _cpu_signature() -> str:
    import platform

    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        pass
    return f"{platform.machine()}|{platform.processor()}|{flags.strip()}"


def load_extension(name, sources, *, what, cflags=(), cuda_cflags=(), ldflags=()):
    """Compile (if needed) and load extension ``name`` once per process; return its module.

    ``what`` names the ops for the one-line build notice. Raises :class:`OpBuildError` on any
    failure, and again (without rebuilding) on later calls in the same process.
    """
    with _LOCK:
        if name in _LOADED:
            return _LOADED[name]
        if name in _FAILED:
            raise OpBuildError(f"{what} is unavailable: {_FAILED[name]}") from _FAILED[name]
        try:
            module = _build_and_load(name, sources, what, cflags, cuda_cflags, ldflags)
        except BaseException as exc:  # noqa: BLE001 - compiler errors come as many types
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            _FAILED[name] = exc
            raise OpBuildError(f"{what} is unavailable: {exc}") from exc
        _LOADED[name] = module
        return module


def _build_and_load(name, sources, what, cflags, cuda_cflags, ldflags):
    sources = [str(s) for s in sources]
    build_dir = cache_root() / f"{name}-{_fingerprint(sources, cflags, cuda_cflags, ldflags)}"
    build_dir.mkdir(parents=True, exist_ok=True)  # Paddle requires it to exist already
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ccache.*")
        from paddle.utils import cpp_extension
    with open(build_dir / ".lock", "w") as lock, _quiet_subprocess_warnings():
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same thing
        try:
            if not any(build_dir.rglob("*.so")):
                log.warning("building the %s (once, ~15 s; longer on a busy machine) in %s ...", what, build_dir)
            # Paddle prints "Compiling user custom op...", its build subprocess logs distutils
            # lines, on every load, built or cached. Our own notice above is what users need; the
            # output is kept only to explain a failed build.
            paddle_log = logging.getLogger("utils.cpp_extension")
            level = paddle_log.level
            paddle_log.setLevel(logging.WARNING)
            try:
                with _captured_output() as captured:
                    try:
                        return cpp_extension.load(
                            name=name,
                            sources=sources,
                            extra_cxx_cflags=list(cflags),
                            extra_cuda_cflags=list(cuda_cflags) or None,
                            extra_ldflags=list(ldflags),
                            build_directory=str(build_dir),
                            verbose=False,
                        )
                    except Exception as exc:
                        failure, detail = exc, captured.read()[-2000:]
                raise OpBuildError(f"{failure} {detail}".strip()) from failure
            finally:
                paddle_log.setLevel(level)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class _Captured:
    def __init__(self, file):
        self._file = file

    def read(self) -> str:
        sys.stdout.flush()
        sys.stderr.flush()
        self._file.seek(0)
        return self._file.read().decode(errors="replace")


@contextlib.contextmanager
def _captured_output():
    """Send this process's stdout/stderr file descriptors (and its children's) to a temp file."""
    with tempfile.TemporaryFile() as tmp:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(tmp.fileno(), 1)
        os.dup2(tmp.fileno(), 2)
        try:
            yield _Captured(tmp)
        finally:
            sys.stdout.flush()  # Python-level prints land in the file before the fds come back
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


@contextlib.contextmanager
def _quiet_subprocess_warnings():
    """Hide Paddle's "No ccache found" warning, in this process and in its compiler subprocess."""
    old = os.environ.get("PYTHONWARNINGS")
    os.environ["PYTHONWARNINGS"] = ",".join(x for x in (old, "ignore:No ccache found") if x)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*ccache.*")
            yield
    finally:
        if old is None:
            os.environ.pop("PYTHONWARNINGS", None)
        else:
            os.environ["PYTHONWARNINGS"] = old


def load_cpu_ops():
    """The single CPU extension with all seqlab C++ ops (``seqlab_wkv7_cpu``, fused ops)."""
    return load_extension(
        "seqlab_cpu_ops",
        cpu_sources(),
        what="WKV7 C++ op (and fused RWKV-7 ops)",
        cflags=CPU_CFLAGS,
        ldflags=CPU_LDFLAGS,
    )


def load_cuda_ops():
    """The CUDA extension (``seqlab_wkv7_cuda``); only call on a CUDA build of Paddle."""
    import paddle

    if not paddle.is_compiled_with_cuda():
        raise OpBuildError("the WKV7 CUDA op needs a CUDA build of Paddle")
    d = _HERE / "wkv7" / "csrc"
    return load_extension(
        "seqlab_cuda_ops",
        [d / "wkv7_cuda.cc", d / "wkv7_cuda.cu"],
        what="WKV7 CUDA op",
        cflags=["-O3", "-std=c++17"],
        cuda_cflags=CUDA_CFLAGS,
    )
