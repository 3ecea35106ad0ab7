"""Run each peer's idiomatic script (bench/peers/*.py) in that peer's own virtual environment,
one after another, never two at once. A peer whose environment is missing is 'skipped'."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from bench.proc import run

PEERS_DIR = Path(__file__).parent / "peers"

# name: (venv folder under the peers root, script, extra environment)
PEERS: dict[str, tuple[str, str, dict[str, str]]] = {
    "torch": ("torch", "torch_mlp.py", {}),
    "keras-tf": ("keras-tf", "keras_mlp.py", {"KERAS_BACKEND": "tensorflow",
                                              "TF_CPP_MIN_LOG_LEVEL": "2"}),
    "keras-jax": ("keras-jax", "keras_mlp.py", {"KERAS_BACKEND": "jax"}),
    "sklearn": ("sklearn", "sklearn_mlp.py", {}),
}


def thread_env(threads: str) -> dict[str, str]:
    """Environment that caps a peer's compute threads; 'default' leaves each library alone."""
    if threads == "default":
        return {}
    return {k: threads for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                 "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")} | (
        {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false"} if threads == "1" else {})


def peers_root() -> Path:
    return Path(os.environ.get("DIGITNET_PEERS", "/work/peers"))


def peer_python(name: str, root: Path | None = None) -> Path | None:
    exe = (root or peers_root()) / PEERS[name][0] / "bin" / "python"
    return exe if exe.exists() else None


def write_data(path: Path) -> Path:
    """The embedded MNIST as one .npz, the form every peer script reads."""
    from digitnet.data.datasets import load_dataset

    ds = load_dataset()
    np.savez(path, x_train=ds.x_train, y_train=ds.y_train, x_test=ds.x_test, y_test=ds.y_test)
    return path


def run_peer(name: str, data: Path, n: int, epochs: int = 5, batch: int = 32,
             root: Path | None = None, budget: float = 900, threads: str = "default",
             log=print, python: str | None = None, device: str | None = None) -> dict:
    """n fresh processes of one peer: each run's report, wall and peak RSS; or skipped.
    Once the runs so far took `budget` seconds, no further run starts (the table shows n);
    a run still going at `budget` seconds is killed. `python` is an interpreter that has the
    peer's library (else its environment under the peers root); `device` is passed on to the
    peer scripts that take one (bench/gpu.py: "cuda")."""
    exe = Path(python) if python else peer_python(name, root)
    venv, script, env = PEERS[name]
    if exe is None:
        return {"name": name, "threads": threads,
                "skipped": f"no environment at {(root or peers_root()) / venv}"}
    runs = []
    for i in range(n):
        # run i uses seed i + 1, as digitnet's runs do (digitnet's default seed is 1)
        r = run([str(exe), str(PEERS_DIR / script), str(data), str(epochs), str(batch),
                 str(i + 1), *([device] if device else [])],
                env={**env, **thread_env(threads), "PYTHONPATH": str(PEERS_DIR)},
                cwd=str(PEERS_DIR),
                timeout=budget)
        if r.returncode == -9:  # killed at the budget
            if not runs:
                return {"name": name, "threads": threads,
                        "skipped": f"one run took over {budget:.0f} s (killed)"}
            break
        try:
            rep = r.json()
        except (RuntimeError, ValueError) as exc:
            return {"name": name, "threads": threads,
                    "skipped": f"failed: {str(exc).splitlines()[-1][:200]}"}
        runs.append({**rep, "wall": r.wall, "rss_mib": r.rss_mib})
        spent = sum(x["wall"] for x in runs)
        log(f"  {name} ({threads} threads) run {i + 1}/{n}: {sum(rep['epoch_seconds']):.2f} s training, "
            f"acc {rep['test_accuracy']:.4f}, peak RSS {r.rss_mib:.0f} MiB")
        if spent >= budget:
            break
    return {"name": name, "threads": threads, "label": runs[0]["peer"],
            "version": runs[0]["version"], "runs": runs}
