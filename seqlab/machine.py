"""The machine a run trained on, in one line, for ``metrics.json`` and the results scripts.

The same run gives other floating-point results on another CPU (MKL, which Paddle calls, picks
its kernels by the processor; seqlab sets ``MKL_DEBUG_CPU_TYPE=5`` on AMD CPUs with AVX2, see
:mod:`seqlab._paddle`), and its wall time says nothing without the machine. So every run records
where it ran, and a comparison can tell points of one machine from another's.
"""

from __future__ import annotations

import os
import platform


def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo``), else what :mod:`platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def describe() -> str:
    """``"Intel(R) Xeon(R) Processor, 2 cores"``, and MKL's forced kernel path when one is set."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 0
    text = f"{cpu_name()}, {cores} cores"
    forced = os.environ.get("MKL_DEBUG_CPU_TYPE")
    return f"{text}, MKL_DEBUG_CPU_TYPE={forced}" if forced else text
