"""The Ray backend against a real Ray cluster: a head started with `ray start` on 127.0.0.1,
inside a fresh network and PID namespace (Ray binds more than loopback, and `ray stop` must see
only the processes of this test). The 4-trial sweep must give exactly the in-process results.

test_ray_backend_matches_local re-runs this file's inner test under
`unshare --net --pid --fork --mount-proc` (needs root); the inner test is skipped elsewhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

INNER = "DIGITNET_RAY_TEST_INNER"
SRC = Path(__file__).resolve().parents[1] / "src"


def ray_cli() -> str:
    return shutil.which("ray") or str(Path(sys.executable).with_name("ray"))


@pytest.mark.slow
def test_ray_backend_matches_local(tiny_sweep, tiny_sweep_file, small_data):
    pytest.importorskip("ray")
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) to give Ray a loopback-only network namespace")
    env = {**os.environ, INNER: "1", "DIGITNET_TINY_SWEEP": str(tiny_sweep),
           "DIGITNET_TINY_SWEEP_FILE": str(tiny_sweep_file), "DIGITNET_SMALL_DATA": str(small_data),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    cmd = ["unshare", "--net", "--pid", "--fork", "--mount-proc", "sh", "-c",
           'ip link set lo up && exec "$@"', "sh",
           sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
           f"{__file__}::test_inner_ray_sweep"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "1 passed" in r.stdout


@pytest.mark.skipif(os.environ.get(INNER) != "1", reason="run by test_ray_backend_matches_local")
def test_inner_ray_sweep(tmp_path):
    from digitnet import artifacts as art
    from digitnet.cli import main
    from digitnet.sweep import read_results

    local = Path(os.environ["DIGITNET_TINY_SWEEP"])
    port = 6380
    # Ray's socket paths must stay short, so not pytest's deep tmp_path.
    ray_tmp = tempfile.mkdtemp(prefix="dnray-")
    subprocess.run([ray_cli(), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                    "--num-cpus=2", "--include-dashboard=false", "--include-log-monitor=false",
                    "--disable-usage-stats",
                    f"--temp-dir={ray_tmp}"], check=True, capture_output=True, timeout=180)
    try:
        out = tmp_path / "ray-sweep"
        assert main(["sweep", os.environ["DIGITNET_TINY_SWEEP_FILE"], "--out", str(out),
                     "--data-dir", os.environ["DIGITNET_SMALL_DATA"], "--backend", "ray",
                     "--address", f"127.0.0.1:{port}", "--quiet"]) == 0
    finally:
        # Inside this PID namespace `ray stop` sees only the cluster started above.
        subprocess.run([ray_cli(), "stop", "--force"], capture_output=True, timeout=60)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    got, want = read_results(out), read_results(local)
    assert got["backend"] == "ray" and got["finished"] == 4
    assert [r["id"] for r in got["trials"]] == [r["id"] for r in want["trials"]]
    for g, w in zip(got["trials"], want["trials"], strict=True):
        assert without_seconds(g["metrics"]) == without_seconds(w["metrics"])
        ray_run, local_run = out / g["run_dir"], local / w["run_dir"]
        assert ((ray_run / art.WEIGHTS).read_bytes() == (local_run / art.WEIGHTS).read_bytes())
        assert ([without_seconds(h) for h in art.read_history(ray_run / art.HISTORY)]
                == [without_seconds(h) for h in art.read_history(local_run / art.HISTORY)])


def without_seconds(d: dict) -> dict:
    return {k: v for k, v in d.items() if k not in ("seconds", "train_seconds")}
