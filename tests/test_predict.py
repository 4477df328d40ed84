"""seqlab predict: a run's checkpoint continues prompts, token by token, through the CLI."""

import os
import subprocess

import pytest
import yaml
from tiny import RWKV7, SEQLAB, tiny_recipe

RECIPE = tiny_recipe(
    {"rwkv7": RWKV7}, trainer={"max_steps": 4, "val_every": 0, "save_every": 4, "optimizer": {"lr": 3e-3}}
)


def seqlab(*args):
    return subprocess.run(
        [*SEQLAB, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("predict")
    recipe = folder / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    fit = seqlab("fit", "--recipe", recipe, "--trainer.root_dir", folder / "runs")
    assert fit.returncode == 0, fit.stderr
    return recipe, folder / "runs"


def test_predict_streams_each_prompt_and_judges_the_reversal(trained):
    recipe, root = trained
    result = seqlab(
        "predict",
        "--recipe",
        recipe,
        "--trainer.root_dir",
        root,
        "--prompt",
        "12345,",
        "--prompt",
        "907,",
        "--max_new_tokens",
        "7",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "== rwkv7: last.safetensors (step 4)"
    # The same greedy continuation as the Python API gives for the same weights.
    from seqlab.checkpoint import load_checkpoint
    from seqlab.generate import generate_text
    from seqlab.models.rwkv7 import RWKV7
    from seqlab.tasks.reverse_digits import ReverseDigits

    model = RWKV7()
    model.set_state_dict(load_checkpoint(root / "tiny/rwkv7/checkpoints/last.safetensors")["model"])
    task = ReverseDigits(**RECIPE["task"]["init_args"])
    for line, prompt in zip(lines[1:], ["12345,", "907,"]):
        text = generate_text(model, task, prompt, max_new_tokens=7)
        verdict = "right" if text.startswith(task.expected_continuation(prompt)) else "wrong"
        assert line.startswith(prompt + text + "   " + verdict), (line, text)


def test_a_prompt_ending_mid_answer_is_continued_without_a_verdict(trained):
    recipe, root = trained
    result = seqlab("predict", "--recipe", recipe, "--trainer.root_dir", root, "--prompt", "12345,54", "--prompt", "7,")
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()[1:]
    assert first.startswith("12345,54") and "right" not in first and "wrong" not in first
    assert second.startswith("7,") and second.endswith(("right", ")"))  # the next prompt still runs


def test_a_byte_level_token_file_takes_text_prompts(tmp_path):
    """tiny_text's kind of task: UTF-8 prompts in, whole characters streamed out."""
    from seqlab.tasks.token_file import TokenFile
    from seqlab.tokenize import tokenize_file

    text = tmp_path / "text.txt"
    text.write_text("Müller's Dhammapada, verse by verse. " * 40)
    tokenize_file(text, tmp_path / "text.bin")
    task = TokenFile(path=str(tmp_path / "text.bin"), seq_len=16, batch_size=4)
    assert task.encode("Mü") == [77, 195, 188] and task.decode([77, 195, 188]) == "Mü"
    recipe = tmp_path / "bytes.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "name": "bytes",
                "task": {
                    "class_path": "token_file",
                    "init_args": {"path": str(tmp_path / "text.bin"), "seq_len": 16, "batch_size": 4},
                },
                "trainer": {"max_steps": 2, "val_every": 0, "save_every": 2},
                "runs": {"rwkv7": {"model": "rwkv7"}},
            }
        )
    )
    root = tmp_path / "runs"
    assert seqlab("fit", "--recipe", recipe, "--trainer.root_dir", root).returncode == 0
    result = seqlab(
        "predict", "--recipe", recipe, "--trainer.root_dir", root, "--prompt", "Mü", "--max_new_tokens", "6"
    )
    assert result.returncode == 0, result.stderr
    from seqlab.checkpoint import load_checkpoint
    from seqlab.generate import generate_text
    from seqlab.models.rwkv7 import RWKV7

    model = RWKV7(vocab_size=256)
    model.set_state_dict(load_checkpoint(root / "bytes/rwkv7/checkpoints/last.safetensors")["model"])
    expected = "Mü" + generate_text(model, task, "Mü", max_new_tokens=6)
    assert result.stdout == f"== rwkv7: last.safetensors (step 2)\n{expected}\n"


def test_prompts_file_sampling_and_bad_input(trained, tmp_path):
    recipe, root = trained
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("12,\n\n345,\n")
    args = [
        "predict",
        "--recipe",
        recipe,
        "--trainer.root_dir",
        root,
        "--prompts_file",
        prompts,
        "--temperature",
        "1.5",
        "--top_k",
        "3",
        "--seed",
        "7",
        "--max_new_tokens",
        "5",
    ]
    first, again = seqlab(*args), seqlab(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout == again.stdout and len(first.stdout.splitlines()) == 3  # seeded sampling
    for bad, needle in (
        (["--prompt", "12a4,"], "the character 'a' (position 3 of '12a4,')"),
        (["--prompt", "1,", "--temperature", "-1"], "--temperature must be at least 0.0"),
        ([], "needs --prompt"),
        (["--prompt", "1,", "--trainer.root_dir", tmp_path / "none"], "train this run first"),
    ):
        result = seqlab("predict", "--recipe", recipe, "--trainer.root_dir", root, *bad)
        assert result.returncode == 2, result.stderr
        lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and needle in lines[0], result.stderr


def test_the_task_judges_a_continuation_and_the_base_task_judges_none():
    from seqlab.task import Task
    from seqlab.tasks.reverse_digits import ReverseDigits
    from seqlab.tasks.reverse_digits_padded import ReverseDigitsPadded

    for task in (ReverseDigits(**RECIPE["task"]["init_args"]), ReverseDigitsPadded()):
        assert task.judge("12345,", "54321#9") == "right"
        assert task.judge("12345,", "54320#") == "wrong (the reversal is 54321#)"
        assert task.judge("12345,54", "321#") is None  # ends mid-answer: nothing to judge
    assert Task.judge(Task(), "any", "thing") is None
