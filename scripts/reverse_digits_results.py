"""Collect one digit-reversal sweep (issue 26) into docs/results/<name>/ and the README's table.

    .venv/bin/python scripts/reverse_digits_results.py --sweep runs/reverse_digits_cpu_uniform/sweep \\
        --out docs/results/reverse_digits_cpu_uniform --mark reverse-digits-uniform [--wall_s S]

The sweep is a ``seqlab sweep --seeds 3 --test_seeds 3`` of recipes/reverse_digits_cpu.yaml: every
model at 5 learning rates x 3 seeds (the selection seeds), then each model's winner at 3 more seeds
(the held-out seeds). This script reads every point's ``metrics.json`` and the sweep's manifest,
and writes

* ``results.json``: every point (model, lr, seed, role, validation and test figures, params, state
  size, wall time), the selection recomputed here from the points (the lr with the best mean
  validation masked accuracy over the selection seeds; the test rows never choose anything), the
  held-out figures with their t intervals, Welch's test for every pair of models, and the stage's
  command, wall time and machine, so every figure below can be recomputed;
* ``report.md``, ``sweep.png`` and ``sweep_results.json``: the sweep's own report, plot and
  results.json, copied as ``seqlab sweep`` wrote them (the test checks that its winners are the
  ones selected here);
* ``raw/``: the sweep's manifest and every finished point's ``metrics.json``, a sweep folder
  that ``cp -r raw runs/<experiment>/sweep`` restores (nothing trained is needed again);
* the table and the pairs' lines between ``<!-- MARK -->`` markers, in the folder's README.md and
  (unless ``--no_top_readme``) in the top-level README.md, and the validation accuracy at every lr
  between ``<!-- MARK-lrs -->`` in the folder's README.md; a README without its markers is an
  error. tests/test_results_docs.py rebuilds them from the committed results.json and fails when
  one was edited by hand.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # seqlab's statistics, from this checkout

from seqlab.report.stats import INTERVAL_METHOD, mean_interval, overlap, welch_test  # noqa: E402

SELECT_ON = "masked_acc"  # the validation metric the sweep selects on (the task's primary)
TEST_METRICS = ("masked_acc", "exact_acc", "probe_masked_acc", "probe_exact_acc")
NAMES = {  # run name -> what the table calls it
    "rwkv7": "rwkv7",
    "transformer": "transformer",
    "transformer_modern": "transformer_modern",
    "lstm": "lstm",
    "mlp": "mlp (our baseline)",
}
LR = "trainer.optimizer.lr"


def prior_points(sweep: Path) -> dict[str, int]:
    """The points each model was tuned with before this sweep (``seqlab sweep --prior_points``)."""
    manifest = json.loads((sweep / "sweep.json").read_text())
    return {str(k): int(v) for k, v in (manifest.get("prior_points") or {}).items()}


def collect(sweep: Path) -> list[dict]:
    """Every finished point of the sweep: its settings, role and figures."""
    manifest = json.loads((sweep / "sweep.json").read_text())
    held = set(manifest.get("held_out", []))
    points = []
    for name, info in manifest["points"].items():
        path = sweep / name / "metrics.json"
        if not path.is_file():
            continue
        m = json.loads(path.read_text())
        points.append(
            {
                "point": name,
                "model": info["run"],
                "lr": float(info["settings"][LR]),
                "settings": info["settings"],
                "seed": int(info["seed"]),
                "role": "held_out" if name in held else "selection",
                "val": {SELECT_ON: m["val"][SELECT_ON]},
                "test": {k: m.get(k) for k in TEST_METRICS},
                "params": m["params"],
                "state_size": m["state_size"],
                "steps": m["steps"],
                "wall_time_s": m["wall_time_s"],
                "tokens_per_s": m["tokens_per_s"],
                "machine": m.get("machine"),  # None: trained before seqlab recorded it
            }
        )
    return points


def select(points: list[dict], prior: dict[str, int] | None = None) -> list[dict]:
    """Per model: the setting with the best mean validation accuracy over the seeds every setting
    of it finished with a finite value (the selection seeds; all seeds when they share none), as
    ``seqlab sweep`` selects (the first setting in grid order wins an exact tie), and its test
    figures on the held-out seeds. ``prior``: model -> points of tuning before this sweep, which
    the tuning budget counts beside this sweep's selection points."""
    prior = prior or {}
    chosen = []
    for model in dict.fromkeys(p["model"] for p in points):
        mine = [p for p in points if p["model"] == model]
        keys = list(dict.fromkeys(k for p in mine for k in p["settings"]))
        varied = [k for k in keys if len({p["settings"].get(k) for p in mine}) > 1]
        by_setting: dict[str, dict[int, float]] = {}  # label -> seed -> value, in grid order
        setting_of: dict[str, dict] = {}
        for p in mine:
            label = _label(p["settings"], varied)
            setting_of[label] = p["settings"]
            value = p["val"][SELECT_ON]
            if p["role"] == "selection" and isinstance(value, (int, float)) and math.isfinite(value):
                by_setting.setdefault(label, {})[p["seed"]] = value
        common = set.intersection(*(set(s) for s in by_setting.values()))
        seeds = sorted(common or {seed for s in by_setting.values() for seed in s})
        val = {k: statistics.fmean(v for seed, v in runs.items() if seed in seeds) for k, runs in by_setting.items()}
        best = max(val, key=lambda x: val[x])  # max keeps the first of equal values: grid order
        setting = setting_of[best]
        held = sorted(
            (p for p in mine if p["role"] == "held_out" and p["settings"] == setting), key=lambda p: p["seed"]
        )
        edges = []
        for key in varied:
            tried = sorted({float(s[key]) for label, s in setting_of.items() if label in by_setting})
            if float(setting[key]) in (tried[0], tried[-1]):
                edges.append(key)
        chosen.append(
            {
                "model": model,
                "setting": setting,
                "label": best,
                "varied": varied,
                "lr": setting[LR],
                "tried": list(by_setting),
                "at_grid_edge": edges,
                "val_mean_by_setting": val,
                "selection_seeds": seeds,
                "tuning_points_here": sum(1 for p in mine if p["role"] == "selection"),
                "tuning_points_before": prior.get(model, 0),
                "tuning_points": sum(1 for p in mine if p["role"] == "selection") + prior.get(model, 0),
                "held_out_seeds": [p["seed"] for p in held],
                "test": {k: _interval([p["test"][k] for p in held]) for k in TEST_METRICS},
                "params": mine[0]["params"],
                "state_size": mine[0]["state_size"],
                "wall_time_s_median": statistics.median(p["wall_time_s"] for p in mine),
            }
        )
    return sorted(chosen, key=lambda c: -(c["test"][SELECT_ON] or {}).get("mean", -1))


def _label(settings: dict, varied: list[str]) -> str:
    """A setting as the tables name it: the lr alone in an lr sweep, else the swept keys' values."""
    if varied == [LR] or not varied:
        return settings[LR]
    return ", ".join(f"{k.rsplit('.', 1)[-1]} {settings[k]}" for k in varied)


def _interval(values: list) -> dict | None:
    v = [x for x in values if isinstance(x, (int, float)) and math.isfinite(x)]
    iv = mean_interval(v)
    if iv is None:
        return None
    return {"n": iv.n, "mean": iv.mean, "std": iv.std, "lo": iv.lo, "hi": iv.hi, "values": v}


def pairs(selected: list[dict]) -> list[dict]:
    """Every pair of models on the held-out test masked accuracy: intervals' overlap and Welch's test."""
    out = []
    for i, a in enumerate(selected):
        for b in selected[i + 1 :]:
            va, vb = a["test"][SELECT_ON]["values"], b["test"][SELECT_ON]["values"]
            w = welch_test(va, vb)
            out.append(
                {
                    "a": a["model"],
                    "b": b["model"],
                    "overlap": overlap(mean_interval(va), mean_interval(vb)),
                    "welch_p": None if w is None else w.p,
                }
            )
    return out


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}%"


def _ms(cell: dict | None, bold: bool = False) -> str:
    if cell is None:
        return "n/a"
    text = f"{100 * cell['mean']:.2f}% ± {100 * cell['std']:.2f}" if cell["std"] is not None else _pct(cell["mean"])
    return f"**{text}**" if bold else text


def _seeds(seeds: list[int]) -> str:
    return f"{seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) else ", ".join(map(str, seeds))


def table(selected: list[dict]) -> str:
    """The markdown table (one row per model, best held-out test mean first) and a line per pair."""
    first = selected[0]
    for key in ("selection_seeds", "held_out_seeds", "varied"):
        if any(c[key] != first[key] for c in selected):
            raise SystemExit(f"the models have different {key.replace('_', ' ')}; one header cannot name them")
    if first["varied"] in ([LR], []):
        ratios = {round(float(b) / float(a), 2) for c in selected for a, b in zip(c["tried"], c["tried"][1:])}
        spacing = f", {ratios.pop():g}x apart" if len(ratios) == 1 else ""
        column = f"chosen lr (of the rates tried{spacing})"
    else:
        column = f"chosen {', '.join(k.rsplit('.', 1)[-1] for k in first['varied'])} (of the values tried), at lr"
    rows = [
        f"| model | params | state / sequence (floats) | {column} | "
        f"tuning budget (points: here + before) | val masked acc, seeds {_seeds(first['selection_seeds'])} | "
        f"test masked acc, held-out seeds {_seeds(first['held_out_seeds'])}: mean ± sample std | "
        "95% interval (t) | exact match¹ | probe: 61-80 digits | median s per run² |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i, c in enumerate(selected):
        acc = c["test"][SELECT_ON]
        interval = "–" if acc is None or acc["lo"] is None else f"[{100 * acc['lo']:.2f}, {100 * acc['hi']:.2f}]"
        if acc is not None and acc["hi"] is not None and acc["hi"] > 1:
            interval += "³"  # the t interval passes 100%: the README's footnote says why
        edge = " (grid edge)" if c["at_grid_edge"] else ""
        chosen = f"{c['label']} (of {len(c['tried'])})" + ("" if c["label"] == c["lr"] else f", lr {c['lr']}")
        name = f"**{NAMES.get(c['model'], c['model'])}**" if i == 0 else NAMES.get(c["model"], c["model"])
        rows.append(
            f"| {name} | {c['params']:,} | {c['state_size']:,} | {chosen}{edge} | {_budget(c)} | "
            f"{_pct(c['val_mean_by_setting'][c['label']])} | {_ms(acc, i == 0)} | {interval} | "
            f"{_ms(c['test']['exact_acc'])} | {_ms(c['test']['probe_masked_acc'])} | "
            f"{c['wall_time_s_median']:.0f} |"
        )
    lines = ["", "Pairs of models, test masked accuracy on the held-out seeds:", ""]
    for p in pairs(selected):
        verdict = "the 95% intervals overlap" if p["overlap"] else "the 95% intervals do not overlap"
        test = "Welch's test undefined" if p["welch_p"] is None else f"Welch's p = {p['welch_p']:.2g}"
        lines.append(f"- {p['a']} vs {p['b']}: {verdict}; {test}.")
    return "\n".join(rows + lines)


def _budget(c: dict) -> str:
    here, before = c["tuning_points_here"], c["tuning_points_before"]
    return f"{here + before} ({here} + {before})" if before else str(here)


def settings_table(selected: list[dict]) -> str:
    """Markdown: each model's mean validation masked accuracy at every setting tried (selection seeds)."""
    width = max(len(c["tried"]) for c in selected)
    rows = ["| model | " + " | ".join(f"setting {i + 1}" for i in range(width)) + " |"]
    rows.append("|---|" + "---:|" * width)
    for c in selected:
        cells = []
        for label in c["tried"]:
            text = f"{label}: {_pct(c['val_mean_by_setting'][label])}"
            cells.append(f"**{text}**" if label == c["label"] else text)
        cells += [""] * (width - len(cells))
        rows.append(f"| {NAMES.get(c['model'], c['model'])} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def copy_raw(sweep: Path, raw: Path, points: list[dict]) -> None:
    """The sweep's manifest and every finished point's metrics.json, as a sweep folder: copied to
    runs/<experiment>/sweep, it is that sweep finished (``seqlab sweep`` skips every point there,
    and the warmup and ladder scripts can reuse its points) on a machine that never trained it."""
    if raw.exists():
        shutil.rmtree(raw)
    raw.mkdir(parents=True)
    shutil.copyfile(sweep / "sweep.json", raw / "sweep.json")
    for p in points:
        (raw / p["point"]).mkdir()
        shutil.copyfile(sweep / p["point"] / "metrics.json", raw / p["point"] / "metrics.json")


def update_readme(readme: Path, mark: str, text: str) -> None:
    marker = f"<!-- {mark} -->"
    body = readme.read_text()
    head, first, rest = body.partition(marker)
    _, second, tail = rest.partition(marker)
    if not (first and second):
        raise SystemExit(f"{readme}: no pair of {marker} markers to put the table between")
    readme.write_text(f"{head}{marker}\n{text}\n{marker}{tail}")


def machines(points: list[dict]) -> dict[str, int]:
    """Points per machine they trained on (metrics.json's ``machine``; "not recorded" before it was)."""
    out: dict[str, int] = {}
    for p in points:
        key = p["machine"] or "not recorded"
        out[key] = out.get(key, 0) + 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweep", type=Path, required=True, help="the sweep's folder, e.g. runs/<experiment>/sweep")
    parser.add_argument("--out", type=Path, required=True, help="docs/results/<name>")
    parser.add_argument("--mark", required=True, help="the README markers' name, e.g. reverse-digits-uniform")
    parser.add_argument("--protocol", default="uniform", help="what the table's rules were (recorded)")
    parser.add_argument("--command", default="", help="the sweep's command line (recorded)")
    parser.add_argument("--wall_s", type=float, default=None, help="the stage's wall time (recorded)")
    parser.add_argument("--no_top_readme", action="store_true", help="leave the top-level README.md alone")
    args = parser.parse_args()
    points = collect(args.sweep)
    if not points:
        raise SystemExit(f"no finished sweep points under {args.sweep}")
    selected = select(points, prior_points(args.sweep))
    missing = [c["model"] for c in selected if len(c["held_out_seeds"]) < 2]
    if missing:
        raise SystemExit(f"{', '.join(missing)}: fewer than 2 held-out seeds finished; let the sweep end first")
    args.out.mkdir(parents=True, exist_ok=True)
    results = {
        "protocol": args.protocol,
        "select_on": f"val {SELECT_ON} (max), mean over the selection seeds",
        "interval_method": INTERVAL_METHOD,
        "std": "sample (n-1)",
        "stage": {
            "command": args.command,
            "wall_time_s": args.wall_s,
            "runs_wall_time_s_sum": math.fsum(p["wall_time_s"] for p in points),
            "machines": machines(points),
        },
        "prior_points": prior_points(args.sweep),
        "points": points,
        "selected": selected,
        "pairs": pairs(selected),
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    for name, copy in (("report.md", "report.md"), ("sweep.png", "sweep.png"), ("results.json", "sweep_results.json")):
        if (args.sweep / name).is_file():
            shutil.copyfile(args.sweep / name, args.out / copy)
    copy_raw(args.sweep, args.out / "raw", points)
    text = table(selected)
    readme = args.out / "README.md"
    if not readme.is_file():  # a first run: the folder's README starts as the two tables
        readme.write_text(
            f"<!-- {args.mark} -->\n<!-- {args.mark} -->\n\n<!-- {args.mark}-lrs -->\n<!-- {args.mark}-lrs -->\n"
        )
    update_readme(readme, args.mark, text)
    update_readme(readme, f"{args.mark}-lrs", settings_table(selected))
    if not args.no_top_readme:
        update_readme(ROOT / "README.md", args.mark, text)
    print(text)
    print(f"{len(points)} points, {results['stage']['runs_wall_time_s_sum'] / 3600:.2f} run-hours (summed over points)")


if __name__ == "__main__":
    main()
