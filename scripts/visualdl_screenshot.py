"""Render docs/visualdl.png: two short runs of one experiment, overlaid in VisualDL's scalar page.

    .venv/bin/python scripts/visualdl_screenshot.py [--out docs/visualdl.png] [--steps 200]

Trains an MLP and a small LSTM for ``--steps`` steps each on digit reversal of up to 12
digits (under a minute on 2 CPU cores), serves the experiment with the venv's ``visualdl`` on a
free local port, and takes a screenshot with headless Chromium (Debian:
``apt-get install -y chromium``).

VisualDL opens only the first tag group (alphabetically); seqlab logs the final test as
``trial/*``, so that group is ``train``: the page as it opens shows the training curves, and the
screenshot is taken without clicking anything. ``--page hparams`` captures the Hyper Parameters
tab instead (every run a row, its final test metrics as columns). Chromium is driven over the
DevTools protocol on a pipe (``--remote-debugging-pipe``, standard library only), which waits for
the charts to draw before capturing.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def train(runs_root: Path, steps: int) -> Path:
    from seqlab._paddle import import_paddle
    from seqlab.callbacks import CosineWarmupLR, GradientClip
    from seqlab.models.lstm import LSTM
    from seqlab.models.mlp import MLP
    from seqlab.optim import AdamW
    from seqlab.tasks.reverse_digits import ReverseDigits
    from seqlab.trainer import Trainer

    paddle = import_paddle()
    for name, make in [("mlp", MLP), ("lstm", lambda: LSTM(hidden_sizes=[64, 64]))]:
        paddle.seed(0)
        trainer = Trainer(
            max_steps=steps,
            val_every=50,
            log_every=50,
            save_every=steps,
            seed=0,
            root_dir=str(runs_root),
            experiment="demo",
            run_name=name,
            optimizer=AdamW(lr=5e-3),
            callbacks=[CosineWarmupLR(warmup_steps=10), GradientClip(1.0)],
        )
        # Short numbers, so that a curve moves within a couple of hundred CPU steps.
        trainer.fit(ReverseDigits(batch_size=32, digit_max=12, seq_len=65), make())
    return runs_root / "demo"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DevTools:
    """A minimal Chrome DevTools Protocol client over --remote-debugging-pipe (fds 3 and 4)."""

    def __init__(self, chromium: str, width: int, height: int, profile: str):
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def wire_fds():  # in the child: its fd 3 reads our commands, its fd 4 writes replies
            a, b = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            preexec_fn=wire_fds,
            pass_fds=(3, 4),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._id = 0
        self.session = None
        self.width, self.height = width, height

    def send(self, method: str, params: dict | None = None, timeout: float = 30.0) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if self.session and not method.startswith("Target."):
            msg["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply.get("result", {})
            if time.monotonic() > deadline:
                raise TimeoutError(method)
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buf += chunk

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False},
        )
        self.send("Page.enable")
        self.send("Page.navigate", {"url": url})

    def js(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.js(expression):
            if time.monotonic() > deadline:
                raise TimeoutError(expression)
            time.sleep(0.25)

    def screenshot(self, path: Path) -> None:
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


PAGES = {
    # path under /app/, and what must be on the page before the capture
    "scalar": ("scalar", "document.querySelectorAll('canvas').length >= 1"),
    "hparams": ("hyper-parameter", "document.body.innerText.includes('Trial ID')"),
}


def screenshot(logdir: Path, out: Path, width: int, height: int, page: str = "scalar") -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        sys.exit("error: chromium not found; install it (apt-get install -y chromium).")
    visualdl = Path(sys.executable).with_name("visualdl")
    port = free_port()
    server = subprocess.Popen(
        [
            str(visualdl),
            "--logdir",
            str(logdir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--disable-telemetry",
            "--cache-timeout",
            "2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    profile = tempfile.mkdtemp(prefix="chromium-")
    browser = None
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                urllib.request.urlopen(base + "/alive", timeout=1)
                break
            except OSError:
                time.sleep(0.25)
        browser = DevTools(chromium, width, height, profile)
        path, ready = PAGES[page]
        browser.open(f"{base}/app/{path}")
        browser.wait_for(ready, timeout=60)
        time.sleep(3)  # chart animations
        out.parent.mkdir(parents=True, exist_ok=True)
        browser.screenshot(out)
    finally:
        if browser is not None:
            browser.close()
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(profile, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "visualdl.png")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument(
        "--logdir", type=Path, default=None, help="screenshot an existing experiment folder instead of training"
    )
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--page", choices=sorted(PAGES), default="scalar")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        logdir = args.logdir
        if logdir is None:
            print(f"training 2 x {args.steps} steps ...", flush=True)
            logdir = train(Path(tmp) / "runs", args.steps)
        screenshot(logdir, args.out, args.width, args.height, args.page)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
