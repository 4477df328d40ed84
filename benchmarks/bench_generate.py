"""Generation cost per token: RWKV-7's RNN state against a Transformer's KV cache.

    python benchmarks/bench_generate.py                      # the RESULTS.md run
    python benchmarks/bench_generate.py --contexts 128,1024 --rounds 2 --settings default

Two parts, in one process. Models (or paths) alternate in blocks of ``--block`` steps, round
after round; the first ``--settle`` steps of a block are not counted (caches re-warm after the
switch, which a generation with one model never has). Medians of the rest are reported, as
this thread's CPU time (``time.thread_time``: the work of a step, whatever the shared machine
does meanwhile) and as wall time.

1. **RWKV-7 step, before and after fusing.** ``step_plain`` (Paddle eager: the same maths in
   ~280 small ops per token at the seed's size) against ``step`` (one C++ op per token), at
   each setting. A ``paddle.profiler`` trace of plain steps gives the ops per token and the
   share of their time spent in kernels.
2. **Per-token latency and state bytes at a context of L tokens**, for ``rwkv7`` (fused step)
   and ``transformer_modern`` (preallocated KV cache sized for the timed steps, so the masked
   tail is short: the Transformer measured at its best), every L in the same rounds. RWKV-7
   really steps through the L tokens (its state has one size whatever L is, but it is measured
   at L anyway); the Transformer's cache is filled to L with random keys and values (a step
   costs what it attends over, whatever the values). Each timed step decodes one more token.

Settings: ``default`` (each model's defaults: 2 layers, C = 32) and ``wide`` (4 layers, C =
256, 4 heads of 64 channels in both models: RWKV-7's usual head size is 64, so the Transformer
gets the same head count and width; RWKV-7's LoRA ranks follow BlinkDL's sizing rule for C = 256
(decay/ICLR/value 32, gate 64); the Transformer's SwiGLU hidden is 3.5 C = 896, as at its
default). Batch 1: one sequence, the latency a user waits for.

Threads: ``--threads`` (default 1) sets both Paddle's CPU threads and seqlab's C++ op threads,
so neither model gets a core the other does not.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import glob
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("GLOG_minloglevel", "1")  # the profiler's "writing profiling data" lines

import numpy as np  # noqa: E402

import seqlab  # noqa: E402,F401  (quiet Paddle import)
from seqlab import MODELS  # noqa: E402
from seqlab._paddle import configure_cpu_defaults, import_paddle  # noqa: E402

paddle = import_paddle()

SETTINGS = {
    "default": {"rwkv7": {}, "transformer_modern": {}},
    "wide": {
        "rwkv7": dict(n_layer=4, n_embd=256, head_size=64, rank_w=32, rank_a=32, rank_v=32, rank_g=64),
        "transformer_modern": dict(n_layer=4, n_embd=256, n_head=4, ffn_hidden=896),
    },
}


def _build(name, kwargs, seed=0):
    paddle.seed(seed)
    model = MODELS.get(name)(**kwargs)
    model.eval()
    return model


def _timed(fn):
    """(wall seconds, this thread's CPU seconds, result). With one thread for Paddle and the ops,
    the CPU time is the work of the step, unaffected by the time the shared machine gives other
    processes; the wall time includes it."""
    wall, cpu = time.perf_counter(), time.thread_time()
    out = fn()
    return time.perf_counter() - wall, time.thread_time() - cpu, out


def _top(profile) -> str:
    return ", ".join(f"{name} {us:.0f} us" for name, us in profile["top_kernels_us"])


def _fmt_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


# ------------------------------------------------------------------------------ part 1


def profile(step, state, steps: int) -> dict:
    """A ``paddle.profiler`` trace of ``steps`` calls of ``step(token, state)``, per token:
    Paddle ops, time inside them (dispatch + kernel), time in their kernels, and the three ops
    with the most kernel time. Profiler times are wall times (and include its own overhead):
    read them as shares, on a shared machine."""
    import paddle.profiler as profiler

    tok = paddle.to_tensor([1], dtype="int64")
    with tempfile.TemporaryDirectory() as tmp:
        prof = profiler.Profiler(
            targets=[profiler.ProfilerTarget.CPU], on_trace_ready=profiler.export_chrome_tracing(tmp)
        )
        prof.start()
        for _ in range(steps):
            _, state = step(tok, state)
            prof.step()
        with contextlib.redirect_stdout(io.StringIO()):  # its "Perf Summary" table
            prof.stop()
        (trace,) = glob.glob(os.path.join(tmp, "*.json"))
        with open(trace) as f:
            events = json.load(f)["traceEvents"]
    # "Operator": a Paddle op from the Python call to its return; "DygraphKernelLaunch": the
    # kernel that does the arithmetic, inside it. (Custom C++ ops record no "Operator" event.)
    # Per op name: its time in each profiled step, then the median over the steps, so that a
    # step preempted by another process on the shared machine does not dominate.
    bounds = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("cat") == "ProfileStep")

    def per_token(cat):
        per_step: dict[str, list[float]] = {}
        for e in events:
            if e.get("cat") != cat:
                continue
            k = next((i for i, (lo, hi) in enumerate(bounds) if lo <= e["ts"] < hi), None)
            if k is not None:
                name = e["name"].split(" ")[0].split("[")[0]
                per_step.setdefault(name, [0.0] * len(bounds))[k] += e["dur"]
        return {name: statistics.median(d) for name, d in per_step.items()}

    ops, kernels = per_token("Operator"), per_token("DygraphKernelLaunch")
    n_ops = sum(1 for e in events if e.get("cat") == "Operator") / steps
    return {
        "ops_per_token": n_ops,
        "op_us_per_token": sum(ops.values()),
        "kernel_us_per_token": sum(kernels.values()),
        "top_kernels_us": sorted(kernels.items(), key=lambda kv: -kv[1])[:3],
    }


def step_before_after(setting: str, rounds: int, block: int, settle: int, profile_steps: int) -> dict:
    """``step_plain`` against ``step`` on one model, in alternating blocks (as latency_table)."""
    model = _build("rwkv7", SETTINGS[setting]["rwkv7"])
    tok = paddle.to_tensor([3], dtype="int64")
    states = {"plain": model.init_state(1), "fused": model.init_state(1)}
    steps = {"plain": model.step_plain, "fused": model.step}
    times = {"plain": [], "fused": []}
    for r in range(rounds + 1):  # round 0 warms up (and loads the op)
        for key in ("plain", "fused"):
            for i in range(block):
                *dt, (_, states[key]) = _timed(lambda: steps[key](tok, states[key]))
                if r > 0 and i >= settle:
                    times[key].append(dt)
    result = {"setting": setting, "params": model.num_parameters()}
    for key, ts in times.items():
        result[key + "_ms"] = statistics.median(t[0] for t in ts) * 1e3
        result[key + "_cpu_ms"] = statistics.median(t[1] for t in ts) * 1e3
    result["speedup_cpu"] = result["plain_cpu_ms"] / result["fused_cpu_ms"]
    result["profile"] = profile(model.step_plain, states["plain"], profile_steps)
    return result


# ------------------------------------------------------------------------------ part 2


def _rwkv_advance(model, state, n, rng):
    for tok in rng.integers(0, model.vocab_size, n):
        _, state = model.step(paddle.to_tensor([int(tok)], dtype="int64"), state)
    return state


def _filled_cache(model, context: int, extra: int, seed: int):
    """A KV cache of capacity context + extra holding random keys/values at 0..context-1."""
    cache = model.init_state(1, max_len=context + extra)
    paddle.seed(seed)
    cache.keys = [paddle.randn(k.shape) for k in cache.keys]
    cache.values = [paddle.randn(v.shape) for v in cache.values]
    cache.mask[:, :, :, :context] = 0.0
    cache.length = context
    expected = model.state_size(context + extra)
    assert cache.floats_per_sequence() == expected, (cache.floats_per_sequence(), expected)
    return cache


def latency_table(setting: str, contexts: list[int], rounds: int, block: int, settle: int):
    """Per-token CPU and wall medians of both models at every context, measured round-robin.

    First RWKV-7 steps through max(contexts) tokens, keeping its state at each L, and one KV
    cache per L is filled. Then, ``rounds`` times, for every L in turn (rotated each round):
    ``block`` RWKV-7 steps, then ``block`` Transformer steps. So every context and both models
    share the machine's good and bad moments alike, and the ratios are side by side.

    The first ``settle`` steps of each block are not counted: right after the other model ran,
    a step finds its weights and buffers out of the CPU caches (measured: the default RWKV-7's
    first step after a Transformer block took ~3x a settled one, the second ~1.3x). A
    generation runs one model only and never sees that switch.
    """
    rwkv = _build("rwkv7", SETTINGS[setting]["rwkv7"])
    tf = _build("transformer_modern", SETTINGS[setting]["transformer_modern"])
    rng = np.random.default_rng(0)
    steps = (rounds + 1) * block  # + a warm-up round
    states, state, position = {}, rwkv.init_state(1), 0
    start = time.perf_counter()
    for context in sorted(contexts):
        state = _rwkv_advance(rwkv, state, context - position, rng)
        position = context
        states[context] = state  # steps return new tensors: this one stays the state at L
    advance_s = time.perf_counter() - start
    # room for the timed steps and the profiled ones, so no cache grows here
    caches = {L: _filled_cache(tf, L, steps + 8, seed=L) for L in contexts}
    times = {(name, L): [] for name in ("rwkv7", "transformer_modern") for L in contexts}
    tok = paddle.to_tensor([5], dtype="int64")
    for r in range(rounds + 1):
        for L in contexts[r % len(contexts) :] + contexts[: r % len(contexts)]:
            for name, model, store in (("rwkv7", rwkv, states), ("transformer_modern", tf, caches)):
                for i in range(block):
                    *dt, (_, store[L]) = _timed(lambda: model.step(tok, store[L]))
                    if r > 0 and i >= settle:
                        times[(name, L)].append(dt)
    # RWKV-7 alone, the same rounds over its states at every L: its flatness without the
    # Transformer's cache reads in between.
    alone = {L: [] for L in contexts}
    for r in range(rounds + 1):
        for L in contexts[r % len(contexts) :] + contexts[: r % len(contexts)]:
            for i in range(block):
                *dt, (_, states[L]) = _timed(lambda: rwkv.step(tok, states[L]))
                if r > 0 and i >= settle:
                    alone[L].append(dt)
    rows = []
    for L in contexts:
        rwkv_bytes = int(states[L].numel()) * states[L].element_size()
        assert rwkv_bytes == rwkv.state_size(L) * 4
        row = {
            "setting": setting,
            "context": L,
            "rwkv7_state_bytes": rwkv_bytes,
            # the keys and values of L tokens: what a cache filled to L must hold
            "transformer_modern_state_bytes": tf.state_size(L) * 4,
        }
        for name in ("rwkv7", "transformer_modern"):
            row[name + "_ms"] = statistics.median(t[0] for t in times[(name, L)]) * 1e3
            row[name + "_cpu_ms"] = statistics.median(t[1] for t in times[(name, L)]) * 1e3
        row["rwkv7_alone_cpu_ms"] = statistics.median(t[1] for t in alone[L]) * 1e3
        row["ratio_cpu"] = row["transformer_modern_cpu_ms"] / row["rwkv7_cpu_ms"]
        if L in (contexts[0], contexts[-1]):  # what the Transformer's time is made of
            row["transformer_profile"] = profile(tf.step, caches[L], 8)
        rows.append(row)
        print(
            f"  {setting:8s} L={L:>6,}: CPU ms/token rwkv7 {row['rwkv7_cpu_ms']:.3f}, "
            f"transformer_modern {row['transformer_modern_cpu_ms']:.3f} ({row['ratio_cpu']:.1f}x)",
            flush=True,
        )
    print(f"  {setting}: stepped RWKV-7 through {max(contexts):,} tokens in {advance_s:.0f} s", flush=True)
    return rows, rwkv.num_parameters(), tf.num_parameters()


# ------------------------------------------------------------------------------ report


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(next(line.split()[1] for line in f if line.startswith("MemTotal")))
        mem = f", {kb / (1 << 20):.0f} GiB"
    except (OSError, StopIteration):
        pass
    return (
        f"{cpu}, {os.cpu_count()} logical CPUs{mem}, {platform.system()} {platform.machine()}; "
        f"Python {platform.python_version()}, Paddle {paddle.__version__}"
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--contexts", default="128,1024,8192,32768")
    ap.add_argument("--settings", default="default,wide")
    ap.add_argument("--rounds", type=int, default=20, help="round-robin rounds over the contexts")
    ap.add_argument("--block", type=int, default=8, help="steps per model, context and round")
    ap.add_argument("--settle", type=int, default=3, help="uncounted first steps of each block")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--profile-steps", type=int, default=20)
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args(argv)
    os.environ["SEQLAB_NUM_THREADS"] = str(args.threads)
    paddle.base.core.set_num_threads(args.threads)
    configure_cpu_defaults(paddle)
    contexts = [int(c) for c in args.contexts.split(",")]
    settings = args.settings.split(",")

    started = datetime.datetime.now(datetime.timezone.utc)
    print(f"# bench_generate, {started:%Y-%m-%d %H:%M} UTC; {machine()}")
    print(f"# threads {args.threads}; load average at start {os.getloadavg()}", flush=True)

    with paddle.no_grad():  # inference, as seqlab.generate runs it (the fused step needs it)
        before_after = [
            step_before_after(s, args.rounds, args.block, args.settle, args.profile_steps) for s in settings
        ]
        tables, params = [], {}
        for s in settings:
            rows, p_rwkv, p_tf = latency_table(s, contexts, args.rounds, args.block, args.settle)
            tables += rows
            params[s] = (p_rwkv, p_tf)
    load_end = os.getloadavg()

    print("\n## RWKV-7 step before and after fusing (batch 1, median per token: CPU ms / wall ms)\n")
    print(
        "| setting | params | plain Paddle step | fused step (1 C++ op) | speed-up (CPU) | "
        "plain: Paddle ops/token | plain: CPU us per op | plain: kernel share of op time |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in before_after:
        pr = r["profile"]
        print(
            f"| {r['setting']} | {r['params']:,} | {r['plain_cpu_ms']:.3f} / {r['plain_ms']:.3f} | "
            f"{r['fused_cpu_ms']:.3f} / {r['fused_ms']:.3f} | {r['speedup_cpu']:.1f}x | "
            f"{pr['ops_per_token']:.0f} | {r['plain_cpu_ms'] * 1e3 / pr['ops_per_token']:.1f} | "
            f"{pr['kernel_us_per_token'] / pr['op_us_per_token']:.0%} |"
        )
    for r in before_after:
        print(f"- {r['setting']}: plain step's top kernels {_top(r['profile'])}")

    print("\n## Per-token latency and state at context L (batch 1, median per token: CPU ms / wall ms)\n")
    print(
        "| setting | L | rwkv7 | transformer_modern | Transformer / RWKV-7 (CPU) | rwkv7 alone (CPU) "
        "| rwkv7 state | transformer_modern KV cache |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in tables:
        print(
            f"| {r['setting']} | {r['context']:,} | {r['rwkv7_cpu_ms']:.3f} / {r['rwkv7_ms']:.3f} | "
            f"{r['transformer_modern_cpu_ms']:.3f} / {r['transformer_modern_ms']:.3f} | "
            f"{r['ratio_cpu']:.1f}x | {r['rwkv7_alone_cpu_ms']:.3f} | "
            f"{_fmt_bytes(r['rwkv7_state_bytes'])} | {_fmt_bytes(r['transformer_modern_state_bytes'])} |"
        )
    for s in settings:
        rows = [r for r in tables if r["setting"] == s]

        def spread(key):
            values = [r[key] for r in rows]
            return f"+{max(values) / min(values) - 1:.1%}"

        growth = rows[-1]["transformer_modern_cpu_ms"] / rows[0]["transformer_modern_cpu_ms"]
        print(
            f"\n{s}: params rwkv7 {params[s][0]:,}, transformer_modern {params[s][1]:,}. "
            f"RWKV-7 per token, largest vs smallest over L: CPU {spread('rwkv7_cpu_ms')}, "
            f"wall {spread('rwkv7_ms')}, alone (CPU) {spread('rwkv7_alone_cpu_ms')}; Transformer "
            f"L={rows[-1]['context']:,} vs L={rows[0]['context']:,}: {growth:.1f}x (CPU)."
        )
        for r in rows:
            if "transformer_profile" in r:
                p = r["transformer_profile"]
                print(
                    f"- transformer_modern step at L={r['context']:,}: {p['ops_per_token']:.0f} "
                    f"Paddle ops/token, kernels {p['kernel_us_per_token'] / p['op_us_per_token']:.0%} "
                    f"of the time in ops; top kernels {_top(p)} (profiler wall times)"
                )
    took = (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds()
    print(f"\n# load average at end {load_end}; took {took:.0f} s")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"before_after": before_after, "table": tables, "params": params}, indent=1)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
