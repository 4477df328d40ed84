"""The MQAR task (Zoology's multi-query associative recall): its generator and its scoring."""

import numpy as np
import paddle
import pytest

from seqlab.errors import SeqlabError
from seqlab.metrics import IGNORE_INDEX
from seqlab.task import Batch
from seqlab.tasks.mqar import MQAR, distinct_draws, multiquery_ar, power_law, weighted_draws


def small(**overrides) -> MQAR:
    args = dict(vocab_size=64, seq_len=32, num_kv_pairs=4, num_train_examples=300, num_val_examples=40)
    args.update(num_test_examples=50, batch_size=16)
    args.update(overrides)
    return MQAR(**args)


@pytest.mark.parametrize("random_non_queries", [False, True])
def test_every_query_is_a_context_key_and_its_target_is_that_keys_value(random_non_queries):
    V, L, k = 128, 64, 6
    inputs, targets = multiquery_ar(np.random.default_rng(1), 200, V, L, k, 0.01, random_non_queries)
    assert inputs.shape == targets.shape == (200, L)
    context = 2 * k
    for row, labels in zip(inputs, targets):
        keys, values = row[0:context:2], row[1:context:2]
        assert len(set(keys)) == k and len(set(values)) == k  # distinct within a row
        assert keys.min() >= 1 and keys.max() < V // 2  # keys: lower half, never the filler 0
        assert values.min() >= V // 2 and values.max() < V  # values: upper half
        answers = np.flatnonzero(labels != IGNORE_INDEX)
        assert len(answers) == k  # each key queried exactly once
        assert (answers >= context).all() and ((answers - context) % 2 == 0).all()
        lookup = dict(zip(keys, values))
        assert sorted(row[answers]) == sorted(keys)
        assert all(labels[a] == lookup[row[a]] for a in answers)
        others = np.setdiff1d(np.arange(context, L), answers)
        if not random_non_queries:
            assert (row[others] == 0).all()  # token 0 fills the gaps
        else:
            assert row[others].max() > V // 2  # random tokens of the whole vocabulary


def test_query_distances_follow_zoologys_power_law():
    # One query per row: its gap is a single draw from p. Against p itself, over 40k rows.
    space, a = 12, 0.01
    p = power_law(space, a)
    assert np.isclose(p.sum(), 1) and (np.diff(p) < 0).all()  # near gaps are the likely ones
    inputs, targets = multiquery_ar(np.random.default_rng(2), 40_000, 64, 2 + 2 * space, 1, a, False)
    gaps = (np.argmax(targets != IGNORE_INDEX, axis=1) - 2) // 2
    freq = np.bincount(gaps, minlength=space) / len(gaps)
    assert np.abs(freq - p).max() < 0.01  # binomial sd at 40k rows is below 0.0025

    # Several queries: draws without replacement, as np.random.choice(replace=False, p=p).
    rng = np.random.default_rng(3)
    ours = weighted_draws(rng, 20_000, p, 3)
    assert all(len(set(r)) == 3 for r in ours[:500])
    ref = np.stack([rng.choice(space, 3, replace=False, p=p) for _ in range(20_000)])
    for col in range(3):  # the first, second and third draw each have the reference's distribution
        f_ours = np.bincount(ours[:, col], minlength=space) / len(ours)
        f_ref = np.bincount(ref[:, col], minlength=space) / len(ref)
        assert np.abs(f_ours - f_ref).max() < 0.02


@pytest.mark.parametrize("n, k", [(9, 2), (5, 4)])  # the redraw path (k*k <= n) and the dense path
def test_distinct_draws_make_every_ordered_subset_equally_likely(n, k):
    draws = distinct_draws(np.random.default_rng(4), 30_000, n, k)
    assert all(len(set(r)) == k for r in draws) and draws.min() >= 0 and draws.max() < n
    first_two = draws[:, 0] * n + draws[:, 1]
    counts = np.bincount(first_two, minlength=n * n).reshape(n, n)
    assert (np.diag(counts) == 0).all()
    off = counts[~np.eye(n, dtype=bool)]
    expected = len(draws) / (n * (n - 1))
    assert np.abs(off - expected).max() < 5 * np.sqrt(expected)


def test_the_sets_depend_on_data_seed_only_and_the_run_seed_orders_training():
    a, b, c = small(), small(), small(data_seed=1)
    a.setup(1)
    b.setup(2)
    for split in ("train", "val", "test"):
        assert np.array_equal(a.dataset(split)[0], b.dataset(split)[0])
        assert not np.array_equal(a.dataset(split)[0], c.dataset(split)[0])
    assert not np.array_equal(a.indices(0), b.indices(0))  # another run seed, another order
    a2 = small()
    a2.setup(1)
    assert np.array_equal(a.indices(7), a2.indices(7))  # the same (seed, step), the same rows
    # An epoch (300 rows, 16 a step) visits every training row once before any repeats.
    seen = np.concatenate([a.indices(s) for s in range(300 // 16)])
    assert len(np.unique(seen)) == len(seen)


def test_held_out_rows_never_occur_in_training():
    # A space so small that random rows collide often: 7 keys x 8 values x 3 gaps = 168 rows.
    task = MQAR(vocab_size=16, seq_len=8, num_kv_pairs=1, random_non_queries=False, num_train_examples=100)
    task.num_val_examples, task.num_test_examples = 20, 20
    train = {r.tobytes() for r in task.dataset("train")[0]}
    assert len(train) < 100  # the training set itself repeats rows: collisions are real here
    for split in ("val", "test"):
        rows = task.dataset(split)[0]
        assert len(rows) == 20
        assert not {r.tobytes() for r in rows} & train
        assert len({r.tobytes() for r in rows}) == 20


def test_loss_and_accuracy_count_only_the_answer_positions():
    task = small()
    task.setup(0)
    batch = task.val_batches()[0]
    inputs, targets = np.asarray(batch.inputs), np.asarray(batch.targets)
    # Logits right at every answer and wrong everywhere else: a perfect score.
    logits = np.zeros((*targets.shape, task.vocab_size), dtype=np.float32)
    logits[..., 0] = 30.0
    rows, cols = np.nonzero(targets != IGNORE_INDEX)
    logits[rows, cols, :] = 0.0
    logits[rows, cols, targets[rows, cols]] = 30.0
    scores = {m.name: m(logits, targets) for m in task.metrics()}
    assert scores["query_acc"] == 1.0 and scores["loss"] < 1e-6
    # One query wrong out of all of them.
    logits[rows[0], cols[0], :] = 0.0
    logits[rows[0], cols[0], 0] = 30.0
    acc = {m.name: m(logits, targets) for m in task.metrics()}["query_acc"]
    assert acc == pytest.approx(1 - 1 / len(rows))
    # The training loss ignores the same positions.
    loss = task.loss(paddle.to_tensor(logits), Batch(paddle.to_tensor(inputs), paddle.to_tensor(targets)))
    assert loss.item() == pytest.approx(30.0 / len(rows), rel=1e-3)


def test_bad_settings_are_one_sentence():
    with pytest.raises(SeqlabError, match="seq_len must be an even"):
        MQAR(seq_len=63)
    with pytest.raises(SeqlabError, match="need seq_len >= 64"):
        MQAR(seq_len=32, num_kv_pairs=16)
    with pytest.raises(SeqlabError, match="raise vocab_size"):
        MQAR(vocab_size=64, seq_len=64, num_kv_pairs=4)


def test_the_cpu_recipe_fits_each_model_for_a_few_steps(run_seqlab, tmp_path):
    """`seqlab fit --recipe mqar_cpu --runs rwkv7` end to end: 4 steps, smaller sets."""
    import json

    code, out, err = run_seqlab(
        "fit",
        "--recipe",
        "mqar_cpu",
        "--runs",
        "rwkv7",
        "--parallel",
        "1",
        "--trainer.max_steps",
        "4",
        "--trainer.val_every",
        "2",
        "--task.init_args.num_train_examples",
        "2000",
        "--task.init_args.num_val_examples",
        "64",
        "--task.init_args.num_test_examples",
        "64",
        "--trainer.root_dir",
        tmp_path,
    )
    assert code == 0, err
    for run in ("rwkv7",):
        metrics = json.loads((tmp_path / "mqar_cpu" / run / "metrics.json").read_text())
        assert 0.0 <= metrics["query_acc"] <= 1.0 and metrics["steps"] == 4
    assert (tmp_path / "mqar_cpu" / "report.md").is_file()


def test_the_results_readme_table_is_the_one_results_json_gives():
    """docs/results/mqar_cpu/README.md quotes its table from results.json, rebuilt here by the
    same code that wrote it (scripts/mqar_cpu_results.py): a hand edit to either shows up."""
    import importlib.util
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("mqar_cpu_results", root / "scripts" / "mqar_cpu_results.py")
    results_script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(results_script)
    docs = root / "docs" / "results" / "mqar_cpu"
    results = json.loads((docs / "results.json").read_text())
    # The selection is recomputed from the raw points, not read back from the file.
    assert results_script.select(results["points"]) == results["selected"]
    readme = (docs / "README.md").read_text()
    assert f"{results_script.MARK}\n{results_script.table(results['selected'])}\n{results_script.MARK}" in readme
    cells = {(s["model"], s["seq_len"], s["width"]) for s in results["selected"]}
    assert (
        len({m for m, _, _ in cells}) >= 3 and len({n for _, n, _ in cells}) >= 2 and len({w for _, _, w in cells}) >= 2
    )
    assert all(len(s["seeds"]) >= 2 for s in results["selected"])
