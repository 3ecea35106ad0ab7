"""`digitnet serve RUN --ray` against a real Ray cluster (a head started with `ray start` on
127.0.0.1, inside a fresh network and PID namespace, as tests/test_sweep_ray.py does): the same
requests get the same statuses, labels and error codes as from `digitnet serve`.

test_ray_serve_answers_as_digitnet_serve re-runs this file's inner test under
`unshare --net --pid --fork --mount-proc` (needs root); the inner test is skipped elsewhere.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

INNER = "DIGITNET_RAY_SERVE_INNER"
ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"


def ray_cli() -> str:
    return shutil.which("ray") or str(Path(sys.executable).with_name("ray"))


@pytest.mark.slow
def test_ray_serve_answers_as_digitnet_serve(run_dir):
    pytest.importorskip("ray.serve")
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) to give Ray a loopback-only network namespace")
    env = {**os.environ, INNER: "1", "DIGITNET_SERVE_RUN": str(run_dir),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), str(ROOT / "tests"),
                                                       os.environ.get("PYTHONPATH")]))}
    cmd = ["unshare", "--net", "--pid", "--fork", "--mount-proc", "sh", "-c",
           'ip link set lo up && exec "$@"', "sh",
           sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
           f"{__file__}::test_inner_ray_serve"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=500)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "1 passed" in r.stdout


def requests() -> list[tuple[str, dict]]:
    """(path, httpx keyword arguments): answers, and the mistakes digitnet serve refuses."""
    from PIL import Image

    import digitnet

    x = digitnet.load_dataset().x_test
    page = Image.new("L", (200, 160), 255)
    page.paste(Image.fromarray(255 - x[0]).resize((112, 112)), (70, 30))
    buf = io.BytesIO()
    page.save(buf, "PNG")
    return [
        ("/predict", {"json": {"pixels": x[i].reshape(-1).tolist()}}) for i in range(5)
    ] + [
        ("/predict", {"content": buf.getvalue(), "headers": {"content-type": "image/png"}}),
        ("/predict/batch", {"json": {"pixels": [d.tolist() for d in x[:8]]}}),
        ("/predict", {"json": {"pixels": [0] * 783}}),
        ("/predict", {"json": {"pixels": [True] * 784}}),
        ("/predict", {"content": b"{nope", "headers": {"content-type": "application/json"}}),
        ("/predict", {"content": b"x" * 300_000, "headers": {"content-type": "image/png"}}),
        ("/predict", {"content": b"hello", "headers": {"content-type": "text/plain"}}),
        ("/predict/batch", {"json": {"pixels": [x[0].tolist()] * 9}}),
    ]


def answers(url: str, reqs: list[tuple[str, dict]]) -> list[tuple[int, object]]:
    import httpx

    out = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for path, kwargs in reqs:
            r = client.post(path, **kwargs)
            doc = r.json()
            if r.status_code != 200:
                out.append((r.status_code, doc["error"]))
            elif "predictions" in doc:
                out.append((200, [p["label"] for p in doc["predictions"]]))
            else:
                out.append((200, (doc["label"], np.round(doc["probabilities"], 5).tolist(), doc["input"])))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(os.environ.get(INNER) != "1", reason="run by test_ray_serve_answers_as_digitnet_serve")
def test_inner_ray_serve(tmp_path):
    import reliability

    run_dir = Path(os.environ["DIGITNET_SERVE_RUN"])
    limits = ["--max-body-bytes=262144", "--max-batch=8"]
    reqs = requests()
    ray_tmp = tempfile.mkdtemp(prefix="dnray-")  # Ray's socket paths must stay short
    head = 6381
    # The head starts while `digitnet serve` gives the reference answers (the PID namespace
    # ends whatever is left of either if the test fails).
    starting = subprocess.Popen([ray_cli(), "start", "--head", "--node-ip-address=127.0.0.1",
                                 f"--port={head}", "--num-cpus=2", "--include-dashboard=false",
                                 "--disable-usage-stats", f"--temp-dir={ray_tmp}"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with reliability.serving(run_dir, tmp_path, *limits) as url:
        local = answers(url, reqs)
    started = starting.communicate(timeout=180)[0]
    assert starting.returncode == 0, started[-3000:]
    port = free_port()
    log = tmp_path / "ray-serve.log"
    env = {**os.environ, "RAY_ADDRESS": f"127.0.0.1:{head}"}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "digitnet", "serve", str(run_dir), "--ray",
                                 "--replicas", "1", "--port", str(port), *limits],
                                env=env, stdout=out, stderr=out)
    try:
        url = f"http://127.0.0.1:{port}"
        reliability.wait_for_health(url, proc, log, seconds=300)
        remote = answers(url, reqs)
        import httpx

        metrics = httpx.get(url + "/metrics", timeout=30).text
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        subprocess.run([ray_cli(), "stop", "--force"], capture_output=True, timeout=60)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert remote == local, log.read_text()[-3000:]
    assert [a[0] for a in local].count(200) == 7
    assert 'digitnet_requests_total{path="/predict",status="200"}' in metrics
