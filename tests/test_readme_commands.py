"""Every command line of README.md's "Command line" block runs, as written, in a fresh shell.

Training lines get `--epochs 1` (2 to resume), `calibrate` one timed round of a small model at
batch 500 (tests/test_calibrate.py tests what it measures and chooses), and, like sweeps,
a small IDX folder cut from MNIST (`--data-dir`), so the block runs in about a minute; the files
the lines name (my.toml, my_digit.png, scan.jpg, ~/data/my-set, the sweep file) are made first.
`serve` is started, asked for /health, and stopped.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_command_lines() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Command line", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)[1]
    lines = block.replace("\\\n", " ").splitlines()
    return [" ".join(shlex.split(line, comments=True)) for line in lines if line.strip()]


def small_sweep(src: Path, dst: Path) -> None:
    """The sweep file cut to one seed, one epoch and the first two points of its first grid."""
    doc = tomllib.loads(src.read_text(encoding="utf-8"))
    base = {**doc.get("base", {}), "epochs": 1}
    name, grid = next(iter(doc.get("grid", {}).items()))
    axis, values = next((k, v) for k, v in grid.items() if k not in ("description", "points"))
    lines = ["seeds = [1]", "[base]", *(f"{k} = {toml_value(v)}" for k, v in base.items()),
             f"[grid.{name}]", f"{axis} = {toml_value(values[:2])}"]
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text("\n".join(lines) + "\n", encoding="utf-8")


def toml_value(v) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(map(toml_value, v)) + "]"
    return f'"{v}"' if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else repr(v)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, mnist, small_data):
    from PIL import Image

    work = tmp_path_factory.mktemp("readme")
    home = work / "home"
    small = shutil.copytree(small_data, home / "data" / "my-set")
    (work / "my.toml").write_text('hidden = [32]\nactivation = "tanh"\ndropout = 0.1\n')
    for name, i in (("my_digit.png", 0), ("scan.jpg", 1)):  # dark ink on white, as drawn
        Image.fromarray(255 - mnist.x_test[i]).resize((112, 112)).save(work / name)
    for line in readme_command_lines():
        if line.startswith("digitnet sweep "):
            path = shlex.split(line)[2]
            small_sweep(ROOT / path, work / path)
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(ROOT / "src"),
           "DIGITNET_HOME": str(work / "cache"), "PY": sys.executable}
    return work, small, env


def as_run(line: str, small: Path) -> str:
    words = shlex.split(line)
    if words[1] in ("train", "sweep") and "--data-dir" not in words:
        line += f" --data-dir {small}"
    if words[1] == "train":
        line += f" --quiet --epochs {2 if '--resume' in words else 1}"
    if words[1] == "calibrate":  # one timed epoch per candidate instead of seven, of large batches
        line += " --rounds 1 --batch-size 500 --hidden 16"
    return line


def shell(line: str, work: Path, env: dict, **kw) -> subprocess.Popen:
    script = 'digitnet() { "$PY" -m digitnet "$@"; }\n' + line
    return subprocess.Popen(["bash", "-c", script], cwd=work, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


# Lines that neither read nor write the runs the others make run one after the other beside
# the rest, as a person with two terminals would (most of each line is one core's start-up and
# compiling); `digitnet runs` lists runs/sweeps/ too, so it waits for the sweep.
BESIDE = ("digitnet sweep ", "digitnet calibrate")
WAITS_FOR_SWEEP = "digitnet runs"


def run_line(line: str, small: Path, work: Path, env: dict) -> str | None:
    """None if the line exits 0, else what it printed."""
    p = shell(as_run(line, small), work, env)
    out, err = p.communicate(timeout=300)
    return None if p.returncode == 0 else f"{line}\n{out}\n{err}"


@pytest.mark.slow
def test_readme_command_block_runs(workdir):
    from concurrent.futures import ThreadPoolExecutor

    work, small, env = workdir
    lines = readme_command_lines()
    assert len(lines) >= 10 and lines[0] == "digitnet train"
    assert sum(line.startswith(WAITS_FOR_SWEEP) for line in lines) == 1
    with ThreadPoolExecutor(1) as second:  # its tasks run in the order given
        beside = {line: second.submit(run_line, line, small, work, env)
                  for line in lines if line.startswith(BESIDE)}
        assert len(beside) == 2
        for line in lines:
            if line in beside:
                continue
            if line.startswith(WAITS_FOR_SWEEP):
                sweeps = [f for b, f in beside.items() if b.startswith("digitnet sweep ")]
                assert [f.result() for f in sweeps] == [None]
            if line.startswith("digitnet serve "):
                check_serve(line, work, env)
                continue
            failed = run_line(line, small, work, env)
            assert failed is None, failed
        for failed in (f.result() for f in beside.values()):
            assert failed is None, failed
    assert (work / "runs" / "mine" / "model.onnx").exists()
    assert list((work / "runs").glob("my-set-*"))  # --data-dir without --out: named after the folder
    assert (work / "compare-report" / "report.html").exists()  # compare --html


def check_serve(line: str, work: Path, env: dict) -> None:
    port = free_port()
    p = shell(f"exec {line} --port {port}".replace("exec digitnet", 'exec "$PY" -m digitnet'),
              work, env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert p.poll() is None, p.communicate()
                assert time.monotonic() < deadline, "serve did not answer /health"
                time.sleep(0.3)
    finally:
        p.terminate()
        p.communicate(timeout=30)
