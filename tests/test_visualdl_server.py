"""End to end with a real VisualDL server: two runs of one experiment appear side by side, and a
resumed run's loss curve is continuous (no gap, no duplicate step).

The server is started from the venv (``visualdl`` next to ``sys.executable``) on a free port and
always terminated by the fixture's finalizer.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

import seqlab  # noqa: F401
from seqlab._paddle import import_paddle
from seqlab.models.lstm import LSTM
from seqlab.models.mlp import MLP
from seqlab.tasks.reverse_digits import ReverseDigits
from seqlab.trainer import Trainer

paddle = import_paddle()

VISUALDL = Path(sys.executable).with_name("visualdl")
pytestmark = pytest.mark.skipif(not VISUALDL.exists(), reason="visualdl executable not found")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        body = resp.read().decode()
    return json.loads(body) if body.startswith("{") else body


class Server:
    def __init__(self, logdir: Path):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                str(VISUALDL),
                "--logdir",
                str(logdir),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--disable-telemetry",
                "--cache-timeout",
                "2",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"visualdl exited with {self.proc.returncode}")
            try:
                get(self.base + "/alive", timeout=1)
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("visualdl did not answer /alive within 30 s") from None
                time.sleep(0.3)

    def api(self, path: str, **params):
        query = ("?" + urllib.parse.urlencode(params)) if params else ""
        reply = get(f"{self.base}/app/api/{path}{query}")
        assert reply["status"] == 0, reply
        return reply["data"]

    def wait_for(self, predicate, path: str, timeout: float = 15.0, **params):
        """Poll until ``predicate(data)``: the server caches answers for --cache-timeout s."""
        deadline = time.monotonic() + timeout
        while True:
            data = self.api(path, **params)
            if predicate(data) or time.monotonic() > deadline:
                return data
            time.sleep(0.5)

    def loss_steps(self, run: str, expected_last: int):
        points = self.wait_for(
            lambda d: d and max(p[1] for p in d) >= expected_last, "scalar/list", run=run, tag="train/loss"
        )
        return [p[1] for p in points]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def start_server(request):
    servers = []

    def start(logdir):
        server = Server(logdir)
        servers.append(server)
        return server

    def stop_all():
        for server in servers:
            server.stop()

    request.addfinalizer(stop_all)
    return start


def task():
    return ReverseDigits(
        batch_size=8, seq_len=33, digit_max=8, eval_samples=8, probe_digit_min=9, probe_digit_max=12, probe_samples=4
    )


def fit(root, make_model, run_name, max_steps, ckpt_path=None, make_task=task):
    paddle.seed(0)
    trainer = Trainer(
        max_steps=max_steps,
        val_every=10,
        log_every=10,
        save_every=10,
        seed=1,
        root_dir=str(root),
        experiment="exp",
        run_name=run_name,
    )
    trainer.fit(make_task(), make_model(), ckpt_path=ckpt_path)


def mlp():
    return MLP(embed_dim=8, window=4, hidden_dim=16)


def lstm():
    return LSTM(embed_dim=8, hidden_sizes=[8])


def test_two_runs_and_a_resume_over_http(tmp_path, start_server, capsys):
    logdir = tmp_path / "exp"
    fit(tmp_path, mlp, "mlp", 20)
    fit(tmp_path, lstm, "lstm", 20)

    server = start_server(logdir)
    runs = server.wait_for(lambda d: {"mlp", "lstm"} <= set(d), "runs")
    assert {"mlp", "lstm"} <= set(runs), runs  # display names, not "mlp/vdl"
    tags = server.api("scalar/tags")
    assert "train/loss" in tags["tags"][tags["runs"].index("mlp")]
    for run in ("mlp", "lstm"):
        assert server.loss_steps(run, 20) == list(range(1, 21)), run

    # Resume the MLP from its last checkpoint (step 20) to 35 steps.
    fit(tmp_path, mlp, "mlp", 35, ckpt_path="last")
    assert len(list((logdir / "mlp" / "vdl").glob("vdlrecords*"))) == 2  # old file untouched
    # The running server keeps answering. It keeps the points it had read (VisualDL never drops
    # a point), so it shows steps 1..20 twice; a fresh server shows what the user should see.
    live = server.loss_steps("mlp", 35)
    assert sorted(set(live)) == list(range(1, 36))
    server.stop()
    fresh = start_server(logdir)
    assert fresh.loss_steps("mlp", 35) == list(range(1, 36))
    assert fresh.loss_steps("lstm", 20) == list(range(1, 21))
    val = fresh.api("scalar/list", run="mlp", tag="val/masked_acc")
    assert [p[1] for p in val] == [10, 20, 30, 35]
    samples = fresh.api("text/list", run="mlp", tag="val/sample")
    assert [s["step"] for s in samples] == [10, 20, 30, 35]
    hparams = {Path(h["name"]).parent.name: h for h in fresh.api("hparams/list")}
    assert hparams["mlp"]["hparams"]["max_steps"] == 35
    assert set(hparams["lstm"]["metrics"]) >= {"trial/masked_acc", "trial/exact_acc"}
    # The Scalars page opens on its first group by name: the training curves, not the final test.
    groups = sorted({t.split("/")[0] for run_tags in fresh.api("scalar/tags")["tags"] for t in run_tags})
    assert groups[0] == "train" and "test" not in groups, groups


def test_a_run_with_nan_metrics_stays_in_the_hparams_table(tmp_path, start_server):
    """A Transformer's probe is NaN (its positions stop short of the probe rows): the run must still
    be listed, with its finite metrics (VisualDL dropped it when a listed metric was NaN)."""
    from seqlab.models.transformer import Transformer

    def long_probe():  # probe rows of 43 tokens, past the Transformer's 32 positions
        return ReverseDigits(
            batch_size=8,
            seq_len=33,
            digit_max=8,
            eval_samples=8,
            probe_digit_min=13,
            probe_digit_max=20,
            probe_samples=4,
        )

    fit(tmp_path, mlp, "mlp", 10, make_task=long_probe)
    fit(tmp_path, lambda: Transformer(max_len=32, n_layer=1), "transformer", 10, make_task=long_probe)
    server = start_server(tmp_path / "exp")
    hparams = {Path(h["name"]).parent.name: h for h in server.wait_for(lambda d: len(d) == 2, "hparams/list")}
    assert set(hparams) == {"mlp", "transformer"}
    assert "trial/probe_masked_acc" in hparams["mlp"]["metrics"]
    assert "trial/probe_masked_acc" not in hparams["transformer"]["metrics"]
    assert all(v is not None for v in hparams["transformer"]["metrics"].values())
    indicator = server.api("hparams/indicators")
    assert {m["name"] for m in indicator["metrics"]} >= {"trial/masked_acc", "trial/loss"}
