"""Grid values that hold commas (a list option) and sweeps kept apart by --trainer.experiment:
what the MQAR sweep (scripts/mqar_cpu_sweep.sh) relies on, one sweep per sequence length."""

import json

import pytest
import yaml
from tiny import LSTM, TRAINER, tiny_recipe

from seqlab.errors import SeqlabError
from seqlab.sweep import parse_grid, plan


def test_commas_inside_brackets_stay_in_one_value():
    grids = parse_grid(["lstm:model.init_args.hidden_sizes=[8,8],[16, 16]", "x.y={a: 1, b: 2},3"], ["lstm"])
    assert grids == {"lstm": {"model.init_args.hidden_sizes": ["[8,8]", "[16, 16]"], "x.y": ["{a: 1, b: 2}", "3"]}}
    names = [p.name for p in plan({"lstm": 1}, {"lstm": {"model.init_args.hidden_sizes": ["[8,8]"]}}, 1)]
    assert names == ["lstm-hidden_sizes=_8_8_-seed1"]  # a folder name without brackets or commas
    with pytest.raises(SeqlabError, match="write KEY=v1,v2"):
        parse_grid(["model.init_args.hidden_sizes="], ["lstm"])


def test_a_sweep_goes_under_the_experiment_the_command_line_names(run_seqlab, tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe({"lstm": LSTM}, trainer={**TRAINER, "max_steps": 2, "val_every": 2})))
    root = tmp_path / "runs"
    args = ["--recipe", recipe, "--trainer.root_dir", root, "--trainer.experiment", "tiny/L33"]
    code, out, err = run_seqlab("sweep", *args, "--grid", "lstm:model.init_args.hidden_sizes=[8,8],[4,4]")
    assert code == 0, err
    folder = root / "tiny" / "L33" / "sweep"
    points = json.loads((folder / "sweep.json").read_text())["points"]
    assert sorted(points) == ["lstm-hidden_sizes=_4_4_-seed42", "lstm-hidden_sizes=_8_8_-seed42"]
    for name, point in points.items():
        config = yaml.safe_load((folder / name / "config.yaml").read_text())
        assert config["model"]["init_args"]["hidden_sizes"] == json.loads(
            point["settings"]["model.init_args.hidden_sizes"]
        )
        assert config["trainer"]["experiment"] == "tiny/L33/sweep"
        assert (folder / name / "metrics.json").is_file()
    assert (folder / "report.md").is_file() and not (root / "tiny" / "sweep").exists()
