"""The sweep report's statistics: t quantiles, the t CDF, Welch's test, against values known
independently (closed forms and printed tables), and the report's held-out seeds, tuning budget
and results.json on hand-written point folders (no training)."""

import json
import math
import statistics

import pytest

from seqlab.report.stats import betainc, mean_interval, overlap, t_cdf, t_quantile, welch_test
from seqlab.summary import RunSummary
from seqlab.sweep import (
    MANIFEST,
    held_out_request,
    load_settings,
    parse_prior_points,
    record_held_out,
    record_prior_points,
    write_sweep_report,
)

# Two-sided 95% critical values of Student's t (the 0.975 quantile), from printed tables
# (e.g. NIST/SEMATECH e-Handbook, table 1.3.6.7.2), to the 3 decimals they give.
T_TABLE = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 10: 2.228, 20: 2.086, 30: 2.042, 100: 1.984}


@pytest.mark.parametrize("df,expected", sorted(T_TABLE.items()))
def test_t_quantile_matches_the_printed_table(df, expected):
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=6e-4)


def test_t_cdf_and_quantile_match_closed_forms():
    # df = 1 is the Cauchy distribution: F(t) = 1/2 + atan(t)/pi, quantile tan(pi (p - 1/2)).
    # df = 2: F(t) = 1/2 + t / (2 sqrt(2 + t^2)), quantile (2p - 1) / sqrt(2 p (1 - p)).
    for t in (-7.5, -1.0, -0.2, 0.0, 0.3, 1.7, 12.0):
        assert t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)
        assert t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)
    for p in (0.6, 0.9, 0.975, 0.995):
        assert t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-9)
        assert t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-9)
        assert t_quantile(1 - p, 2) == pytest.approx(-t_quantile(p, 2), rel=1e-12)
    # Many degrees of freedom: the normal distribution's 1.959964.
    assert t_quantile(0.975, 1e7) == pytest.approx(1.959964, abs=1e-5)


def test_incomplete_beta_closed_forms():
    # I_x(a, 1) = x^a; I_x(1, b) = 1 - (1 - x)^b; I_x(a, b) = 1 - I_{1-x}(b, a).
    for x in (0.01, 0.3, 0.5, 0.77, 0.99):
        assert betainc(2.5, 1.0, x) == pytest.approx(x**2.5, rel=1e-11)
        assert betainc(1.0, 3.0, x) == pytest.approx(1 - (1 - x) ** 3, rel=1e-11)
        assert betainc(0.7, 4.2, x) == pytest.approx(1 - betainc(4.2, 0.7, 1 - x), abs=1e-12)
    assert betainc(3.0, 3.0, 0.5) == pytest.approx(0.5, abs=1e-14)


def test_welch_on_an_exact_small_case_and_a_published_example():
    # Two samples of two with equal spread: Welch's df is exactly 2, t = -3/sqrt(2), and the
    # two-sided p of t with 2 df is 1 - |t| / sqrt(2 + t^2).
    w = welch_test([0.0, 2.0], [3.0, 5.0])
    assert w.t == pytest.approx(-3 / math.sqrt(2), rel=1e-12)
    assert w.df == pytest.approx(2.0, rel=1e-12)
    assert w.p == pytest.approx(1 - abs(w.t) / math.sqrt(2 + w.t**2), rel=1e-10)
    # Wikipedia, "Welch's t-test", example 1: t = -2.46, df = 25.0, p = 0.021.
    a1 = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
    a2 = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]
    w = welch_test(a1, a2)
    assert (round(w.t, 2), round(w.df, 1), round(w.p, 3)) == (-2.46, 25.0, 0.021)
    # Undefined: a sample of one, or no spread in either sample.
    assert welch_test([1.0], [1.0, 2.0]) is None and welch_test([1.0, 1.0], [2.0, 2.0]) is None


def test_mean_interval_uses_the_sample_std_and_t():
    iv = mean_interval([0.9098, 0.9178, 0.9449])
    assert iv.std == pytest.approx(statistics.stdev([0.9098, 0.9178, 0.9449]))  # n - 1
    half = 4.302652729749 * iv.std / math.sqrt(3)  # t(0.975, 2), exact: 2 sqrt(... ) form above
    assert (iv.lo, iv.hi) == (pytest.approx(iv.mean - half, rel=1e-10), pytest.approx(iv.mean + half, rel=1e-10))
    one = mean_interval([0.5])
    assert one.std is None and one.lo is None and overlap(one, iv) is None
    assert mean_interval([]) is None
    assert overlap(mean_interval([0.0, 0.1]), mean_interval([0.05, 0.2])) is True
    assert overlap(mean_interval([0.0, 0.01]), mean_interval([0.9, 0.91])) is False


# ---------------------------------------------------------------------------- the report, on files
def _point(folder, name, run, lr, seed, val, test, wall=10.0):
    (folder / name).mkdir(parents=True)
    summary = RunSummary(
        run=name,
        experiment="x/sweep",
        model=run,
        params=1,
        steps=100,
        tested_checkpoint="best",
        tested_step=100,
        wall_time_s=wall,
        val={"acc": val},
        test={"acc": test},
    )
    (folder / name / RunSummary.FILENAME).write_text(summary.to_json())
    return name, {"run": run, "settings": {"trainer.optimizer.lr": lr}, "seed": seed}


def _sweep_dir(tmp_path):
    """Model a: lr 1 and 2 at seeds 1-3 (lr 2 wins on validation), then held-out seeds 4-5 at lr 2;
    model b: one setting, seeds 1-3, no held-out seeds."""
    folder = tmp_path / "x" / "sweep"
    points = {}
    rows = [
        ("a", "1", {1: 0.50, 2: 0.52, 3: 0.48}),
        ("a", "2", {1: 0.60, 2: 0.70, 3: 0.65}),
        ("b", "1", {1: 0.30, 2: 0.20, 3: 0.25}),
    ]
    for run, lr, by_seed in rows:
        for seed, acc in by_seed.items():
            name, info = _point(folder, f"{run}-lr={lr}-seed{seed}", run, lr, seed, acc, acc + 0.01)
            points[name] = info
    held = {4: 0.80, 5: 0.74}
    for seed, acc in held.items():
        name, info = _point(folder, f"a-lr=2-seed{seed}", "a", "2", seed, 0.0, acc)  # val 0: never selected on
        points[name] = info
    (folder / "a-lr=4-seed1").mkdir()  # started, never finished, manifest entry lost: still tuning
    grids = {"a": {"trainer.optimizer.lr": ["1", "2", "4"]}, "b": {"trainer.optimizer.lr": ["1"]}}
    (folder / MANIFEST).write_text(json.dumps({"grids": grids, "points": points}))
    record_held_out(folder, ["a-lr=2-seed4", "a-lr=2-seed5"])
    return folder


def test_report_held_out_seeds_budget_and_results_json(tmp_path):
    folder = _sweep_dir(tmp_path)
    record_prior_points(folder, parse_prior_points(["a=12"]))
    settings = load_settings(folder)
    a2 = next(s for s in settings if s.run == "a" and s.settings["trainer.optimizer.lr"] == "2")
    assert sorted(seed for seed, _ in a2.points) == [1, 2, 3] and sorted(seed for seed, _ in a2.held) == [4, 5]
    write_sweep_report(folder, "acc", "max")
    data = json.loads((folder / "results.json").read_text())
    models = {m["run"]: m for m in data["models"]}
    a, b = models["a"], models["b"]
    assert a["settings"] == {"trainer.optimizer.lr": "2"} and a["selection_seeds"] == [1, 2, 3]
    assert a["val_selection_mean"]["acc"] == pytest.approx(0.65)
    assert a["test_seeds"] == [4, 5] and a["test_seeds_held_out"] is True
    assert a["test"]["acc"]["values"] == [0.80, 0.74]
    assert a["test"]["acc"]["mean"] == pytest.approx(0.77)
    assert a["test"]["acc"]["sample_std"] == pytest.approx(math.sqrt(0.0018))  # ((0.03)^2 * 2) / (2 - 1)
    half = 12.706204736 * math.sqrt(0.0018) / math.sqrt(2)
    assert a["test"]["acc"]["ci"] == [pytest.approx(0.77 - half), pytest.approx(0.77 + half)]
    # Points in this sweep: 6 selection points + the unfinished lr=4 folder; the held-out 2 are not tuning.
    assert a["tuning_budget"] == {"points_in_this_sweep": 7, "prior_points": 12, "total": 19}
    assert b["tuning_budget"]["total"] == 3 and b["test_seeds_held_out"] is False and b["test_seeds"] == [1, 2, 3]
    [pair] = data["comparisons"]
    w = welch_test([0.80, 0.74], [0.31, 0.21, 0.26])
    assert (pair["a"], pair["b"], pair["overlap"]) == ("a", "b", False)
    assert pair["welch"]["p"] == pytest.approx(w.p) and pair["welch"]["df"] == pytest.approx(w.df)
    report = (folder / "report.md").read_text()
    assert "| a | lr=2 | 7 + 12 earlier | 1, 2, 3 | 65.00% | 4, 5 (held out) | 77.00 |" in report
    assert "1, 2, 3 (selection) *" in report  # b: no held-out seeds, and the report says so
    assert "sample std" in report and "Student t" in report
    table = report.split("## Best setting per model\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert len({line.count("|") for line in table}) == 1 and len(table) == 4  # header, rule, a, b
    assert "**a vs b**" in report and "the 95% intervals do not overlap" in report
    assert f"p = {w.p:.3g}" in report


def test_the_selection_never_sees_held_out_points(tmp_path):
    """Held-out points with a huge validation score, at a setting with no other points, do not make
    it win (counted as selection points, they would: seeds 1-3, mean 0.99)."""
    folder = _sweep_dir(tmp_path)
    data = json.loads((folder / MANIFEST).read_text())
    names = []
    for seed in (1, 2, 3):
        name, info = _point(folder, f"a-lr=8-seed{seed}", "a", "8", seed, 0.99, 0.99)
        data["points"][name] = info
        names.append(name)
    (folder / MANIFEST).write_text(json.dumps(data))
    record_held_out(folder, names)
    write_sweep_report(folder, "acc", "max")
    models = {m["run"]: m for m in json.loads((folder / "results.json").read_text())["models"]}
    assert models["a"]["settings"] == {"trainer.optimizer.lr": "2"}
    unmarked = {**json.loads((folder / MANIFEST).read_text()), "held_out": ["a-lr=2-seed4", "a-lr=2-seed5"]}
    (folder / MANIFEST).write_text(json.dumps(unmarked))  # the same points, not marked held out
    write_sweep_report(folder, "acc", "max")
    models = {m["run"]: m for m in json.loads((folder / "results.json").read_text())["models"]}
    assert models["a"]["settings"] == {"trainer.optimizer.lr": "8"}


def test_held_out_request_names_the_new_seeds_or_says_why_not(tmp_path):
    folder = _sweep_dir(tmp_path)
    request, note = held_out_request(folder, "acc", "max", {"a": 1, "b": 1}, seeds=3, test_seeds=2, failed=False)
    assert note == "" and request["seed"] == 4
    assert request["grid"] == ["a:trainer.optimizer.lr=2", "b:trainer.optimizer.lr=1"]
    assert request["points"] == ["a-lr=2-seed4", "a-lr=2-seed5", "b-lr=1-seed4", "b-lr=1-seed5"]
    assert held_out_request(folder, "acc", "max", {"a": 1, "b": 7}, 3, 2, False)[0] is None
    request, note = held_out_request(folder, "acc", "max", {"a": 1}, 3, 2, failed=True)
    assert request is None and "selection is incomplete" in note
    with pytest.raises(Exception, match="RUN=N"):
        parse_prior_points(["rwkv7"])
