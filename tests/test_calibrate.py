"""Per-machine settings (digitnet.calibrate): the choice rule, the store and its key, and how a
stored choice reaches XLA's flags and the engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from digitnet import calibrate, tuning

SRC = str(Path(__file__).resolve().parents[1] / "src")
DEFAULT = "default/unroll-2"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DIGITNET_HOME", str(tmp_path))
    tuning.chosen.cache_clear()
    yield tmp_path
    tuning.chosen.cache_clear()


def rounds(**seconds):
    """Per-round timings from per-candidate lists (the default's key spelled default)."""
    names = {k.replace("__", "/").replace("_", "-"): v for k, v in seconds.items()}
    n = len(next(iter(names.values())))
    return [{k: v[i] for k, v in names.items()} for i in range(n)]


def test_the_default_stays_unless_a_candidate_is_clearly_faster_with_the_same_bits():
    same = {DEFAULT: True, "one-thread/unroll-2": True, "default/unroll-4": True}
    fast = rounds(default__unroll_2=[1.0, 1.0, 1.1], default__unroll_4=[0.9, 0.92, 0.95],
                  one_thread__unroll_2=[1.0, 0.99, 1.2])
    best, ratios = calibrate.decide(fast, same, DEFAULT)
    assert best == "default/unroll-4" and ratios[DEFAULT] == 1.0
    assert ratios["default/unroll-4"] == pytest.approx(0.9)
    # 2% faster is within the margin: the default stays.
    close = rounds(default__unroll_2=[1.0, 1.0, 1.0], default__unroll_4=[0.98, 0.98, 0.98])
    assert calibrate.decide(close, same, DEFAULT)[0] == DEFAULT
    # Faster, but other bits: never chosen.
    assert calibrate.decide(fast, {**same, "default/unroll-4": False}, DEFAULT)[0] == DEFAULT
    # One lucky round does not elect a candidate that loses the others.
    lucky = rounds(default__unroll_2=[1.0, 1.0, 1.0], default__unroll_4=[0.5, 1.1, 1.2])
    assert calibrate.decide(lucky, same, DEFAULT)[0] == DEFAULT
    # A slower candidate never replaces the default.
    slow = rounds(default__unroll_2=[1.0, 1.0], default__unroll_4=[1.2, 1.3])
    assert calibrate.decide(slow, same, DEFAULT)[0] == DEFAULT
    # Of candidates within the margin of the fastest, the shorter loop body (less to compile).
    tie = rounds(default__unroll_2=[1.0, 1.0, 1.0], one_thread__unroll_4=[0.80, 0.80, 0.81],
                 one_thread__unroll_2=[0.82, 0.82, 0.82])
    tie_bits = {DEFAULT: True, "one-thread/unroll-2": True, "one-thread/unroll-4": True}
    assert calibrate.decide(tie, tie_bits, DEFAULT)[0] == "one-thread/unroll-2"


def test_a_shorter_loop_body_as_fast_as_the_default_replaces_it():
    """No candidate clearly faster, but one with fewer steps per loop iteration is as fast: it
    is chosen, since it compiles in about half the time; slower, or other bits, it is not."""
    bits = {DEFAULT: True, "one-thread/unroll-1": True, "default/unroll-4": True}
    even = rounds(default__unroll_2=[1.0, 1.02, 1.05, 1.0], one_thread__unroll_1=[0.99, 1.03, 1.0, 1.0],
                  default__unroll_4=[0.99, 1.0, 1.0, 1.0])
    assert calibrate.decide(even, bits, DEFAULT)[0] == "one-thread/unroll-1"
    assert calibrate.decide(even, {**bits, "one-thread/unroll-1": False}, DEFAULT)[0] == DEFAULT
    slower = rounds(default__unroll_2=[1.0, 1.0, 1.0], one_thread__unroll_1=[1.01, 0.99, 1.02])
    assert calibrate.decide(slower, bits, DEFAULT)[0] == DEFAULT  # its best round is slower
    losing = rounds(default__unroll_2=[1.0, 1.0, 1.0, 1.0], one_thread__unroll_1=[0.95, 1.1, 1.1, 1.1])
    assert calibrate.decide(losing, bits, DEFAULT)[0] == DEFAULT  # slower in most rounds


def test_the_machine_key_covers_the_cpu_its_flags_cores_and_versions():
    m = tuning.machine()
    assert m["cpu"] and m["cores"] >= 1 and m["versions"]["jax"] and m["versions"]["digitnet"]
    key = tuning.machine_key(m)
    assert key == tuning.machine_key() and len(key) == 16
    for change in ({"cpu": "Intel(R) Xeon(R) Platinum 8488C"}, {"cpu_id": "GenuineIntel/6/143/8"},
                   {"flags": [*m["flags"], "avx512f"]}, {"cores": m["cores"] + 1},
                   {"versions": {**m["versions"], "jaxlib": "0.0.1"}}):
        assert tuning.machine_key({**m, **change}) != key, change


def run_threading(monkeypatch, name: str) -> None:
    """This process's environment as runtime.set_cpu_threading leaves it for candidate `name`."""
    flags, env = tuning.THREADING[name]
    monkeypatch.setenv("XLA_FLAGS", " ".join(flags))
    monkeypatch.delenv("NPROC", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def test_a_stored_choice_is_reused_and_a_new_cpu_or_version_gets_none(home, monkeypatch):
    tutorial = ([784, 64, 64, 10], 32)
    assert tuning.chosen() is None and tuning.threading_env(*tutorial) == tuning.THREADING["default"]
    entry = {"threading": "one-thread", "unroll": 4, "sizes": [784, 64, 64, 10], "batch": 32}
    path = tuning.save(entry)
    assert path == home / tuning.FILE
    assert tuning.chosen()["unroll"] == 4
    assert tuning.threading_env(*tutorial) == (tuning.THREADING["one-thread"][0], {"NPROC": "1"})
    # The threading holds for the whole process: other shapes, or none known, get the default's.
    for shapes in (([784, 128, 10], 32), ([784, 64, 64, 10], 64), (None, None)):
        assert tuning.threading_env(*shapes) == (tuning.THREADING["default"][0], {}), shapes
    run_threading(monkeypatch, "one-thread")
    assert tuning.chosen_unroll([784, 64, 64, 10], 32) == 4
    assert tuning.chosen_unroll([784, 64, 64, 10], 64) is None  # measured at batch 32 only
    assert tuning.chosen_unroll([784, 128, 10], 32) is None

    # Another CPU (or a new jaxlib) reading the same home finds no choice of its own.
    real = tuning.machine
    for change in ({"cpu": "Intel(R) Xeon(R) Platinum 8488C"},
                   {"versions": {**real()["versions"], "jaxlib": "9.9.9"}}):
        monkeypatch.setattr(tuning, "machine", lambda change=change: {**real(), **change})
        tuning.chosen.cache_clear()
        assert tuning.chosen() is None and tuning.chosen_unroll([784, 64, 64, 10], 32) is None
        # Calibrating there adds its choice beside the first machine's.
        tuning.save({**entry, "threading": "default", "unroll": 1})
        assert tuning.chosen()["unroll"] == 1
    monkeypatch.setattr(tuning, "machine", real)
    tuning.chosen.cache_clear()
    assert tuning.chosen()["unroll"] == 4
    assert len(json.loads(path.read_text())["choices"]) == 3


def test_a_damaged_or_foreign_store_means_no_choice(home):
    (home / tuning.FILE).write_text("{not json")
    assert tuning.chosen() is None
    tuning.save({"threading": "default", "unroll": 2})  # rewritten whole
    tuning.chosen.cache_clear()
    assert tuning.chosen()["threading"] == "default"
    store = json.loads((home / tuning.FILE).read_text())
    store["choices"][tuning.machine_key()]["threading"] = "no-such-candidate"
    (home / tuning.FILE).write_text(json.dumps(store))
    tuning.chosen.cache_clear()
    assert tuning.chosen() is None


def xla_env(home: Path, sizes: list[int] | None = None, batch: int | None = None, **env: str) -> dict:
    """XLA_FLAGS and NPROC as digitnet's CLI leaves them for a run of these shapes, in a fresh
    process."""
    code = ("import os, json; from digitnet.runtime import set_cpu_threading;"
            f"set_cpu_threading({sizes!r}, {batch!r});"
            "print(json.dumps({k: os.environ.get(k) for k in ('XLA_FLAGS', 'NPROC')}))")
    base = {k: v for k, v in os.environ.items()
            if k not in ("XLA_FLAGS", "NPROC", "DIGITNET_XLA_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**base, "PYTHONPATH": SRC, "DIGITNET_HOME": str(home), **env})
    return json.loads(out.stdout)


def test_the_stored_threading_reaches_xla_for_its_shapes_and_explicit_switches_win(home):
    default_flags = " ".join(tuning.THREADING["default"][0])
    sizes = [784, 64, 64, 10]
    assert xla_env(home, sizes, 32) == {"XLA_FLAGS": default_flags, "NPROC": None}
    tuning.save({"threading": "one-thread", "unroll": 2, "sizes": sizes, "batch": 32})
    assert xla_env(home, sizes, 32) == {"XLA_FLAGS": default_flags, "NPROC": "1"}
    # Other shapes, or shapes not known before JAX starts: the default threading.
    assert xla_env(home, [784, 128, 10], 32) == {"XLA_FLAGS": default_flags, "NPROC": None}
    assert xla_env(home, sizes, 128) == {"XLA_FLAGS": default_flags, "NPROC": None}
    assert xla_env(home) == {"XLA_FLAGS": default_flags, "NPROC": None}
    assert xla_env(home, sizes, 32, NPROC="2")["NPROC"] == "2"  # the user's NPROC is kept
    assert xla_env(home, sizes, 32, DIGITNET_XLA_THREADS="auto") == {"XLA_FLAGS": None, "NPROC": None}
    given = "--xla_cpu_multi_thread_eigen=true"
    assert xla_env(home, sizes, 32, XLA_FLAGS=given)["XLA_FLAGS"] == (
        f"{given} --xla_cpu_enable_concurrency_optimized_scheduler=false")
    tuning.save({"threading": "jax-default", "unroll": 2, "sizes": sizes, "batch": 32})
    assert xla_env(home, sizes, 32) == {"XLA_FLAGS": None, "NPROC": None}
    assert xla_env(home, [784, 32, 10], 32) == {"XLA_FLAGS": default_flags, "NPROC": None}


def cli_xla(home: Path, *argv: str) -> dict:
    """What digitnet's CLI sets up for XLA for a command line, in a fresh process (nothing
    runs: the parse and the setup that precede the command), and whether JAX was imported."""
    code = ("import os, sys, json; from digitnet.cli import build_parser, setup_xla;"
            f"args = build_parser().parse_args({list(argv)!r}); setup_xla(args);"
            "print(json.dumps({**{k: os.environ.get(k) for k in ('XLA_FLAGS', 'NPROC')},"
            " 'jax': 'jax' in sys.modules}))")
    base = {k: v for k, v in os.environ.items()
            if k not in ("XLA_FLAGS", "NPROC", "DIGITNET_XLA_THREADS", "DIGITNET_POPULATION_DEVICES")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**base, "PYTHONPATH": SRC, "DIGITNET_HOME": str(home)})
    return json.loads(out.stdout)


def test_the_cli_applies_a_calibrated_threading_only_to_the_calibrated_shapes(home, tmp_path):
    from digitnet.cli import build_parser, training_shapes
    from digitnet.config import recipe

    def shapes(*argv):
        return training_shapes(build_parser().parse_args(argv))

    assert shapes("train") == ([784, 64, 64, 10], 32)
    assert shapes("train", "--hidden", "128", "--batch-size", "64") == ([784, 128, 10], 64)
    fast_spec, fast_cfg, _ = recipe("fast")
    assert shapes("train", "--recipe", "fast") == (list(fast_spec.sizes), fast_cfg.batch_size)
    toml = tmp_path / "run.toml"
    toml.write_text("hidden = [32]\nbatch_size = 16\n")
    assert shapes("train", "--config", str(toml)) == ([784, 32, 10], 16)
    assert shapes("train", "--dataset", "fashion-mnist") == ([784, 64, 64, 10], 32)
    # Shapes that need the data or a saved run are not resolved before JAX starts.
    assert shapes("train", "--data-dir", str(tmp_path)) is None
    assert shapes("train", "--resume", "--out", str(tmp_path)) is None
    assert shapes("evaluate", str(tmp_path)) is None
    # Calibration timed one model: a population keeps the default threading.
    assert shapes("train", "--seeds", "0-3") is None
    assert shapes("train", "--ensemble", "4") is None

    default_flags = " ".join(tuning.THREADING["default"][0])
    tuning.save({"threading": "one-thread", "unroll": 1, "split_rows": 740,
                 "sizes": [784, 64, 64, 10], "batch": 32})
    assert cli_xla(home, "train") == {"XLA_FLAGS": default_flags, "NPROC": "1", "jax": False}
    other = {"XLA_FLAGS": default_flags, "NPROC": None, "jax": False}
    assert cli_xla(home, "train", "--hidden", "32") == other
    assert cli_xla(home, "train", "--batch-size", "64") == other
    assert cli_xla(home, "train", "--data-dir", str(tmp_path)) == other
    assert cli_xla(home, "evaluate", str(tmp_path)) == other


def test_the_engine_takes_the_stored_unroll_for_its_shapes_only(home, monkeypatch):
    from digitnet.engine import DEFAULT_UNROLL, EngineSettings

    run_threading(monkeypatch, "default")
    sizes = [784, 64, 64, 10]
    assert EngineSettings.default(sizes, 32).unroll == DEFAULT_UNROLL["cpu"]
    tuning.save({"threading": "default", "unroll": 4, "sizes": sizes, "batch": 32})
    assert EngineSettings.default(sizes, 32).unroll == 4
    assert EngineSettings.default(sizes, 128).unroll == DEFAULT_UNROLL["cpu"]
    assert EngineSettings.default().unroll == DEFAULT_UNROLL["cpu"]


def test_the_engine_takes_the_stored_gradient_split_for_its_shapes_and_threading_only(home,
                                                                                       monkeypatch):
    from digitnet.engine import EngineSettings

    run_threading(monkeypatch, "one-thread")
    sizes = [784, 64, 64, 10]
    assert EngineSettings.default(sizes, 32).split_rows == 0
    tuning.save({"threading": "one-thread", "unroll": 2, "split_rows": 740, "sizes": sizes,
                 "batch": 32})
    assert tuning.chosen_settings(sizes, 32) == (2, 740)
    assert EngineSettings.default(sizes, 32).split_rows == 740
    assert EngineSettings.default(sizes, 64).split_rows == 0
    # The split gives the default's bits on its own threading only: a process that runs
    # another (the API without the CLI's setup, the user's NPROC) trains the defaults.
    for name in ("default", "jax-default"):
        run_threading(monkeypatch, name)
        assert tuning.active_threading() == name
        assert tuning.chosen_settings(sizes, 32) is None
        assert EngineSettings.default(sizes, 32) == EngineSettings(unroll=2, host_gather=True)
    monkeypatch.setenv("NPROC", "2")
    assert tuning.active_threading() is None and tuning.chosen_settings(sizes, 32) is None
    run_threading(monkeypatch, "one-thread")
    assert calibrate.parse_name(calibrate.candidate_name("one-thread", 4, 740)) == ("one-thread", 4, 740)
    assert calibrate.parse_name("default/unroll-2") == ("default", 2, 0)
    tuning.save({"threading": "one-thread", "unroll": 2, "split_rows": -1})
    assert tuning.chosen() is None


def test_find_split_returns_a_split_with_the_reference_bits():
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 784)).astype(np.float32)
    g = rng.standard_normal((32, 64)).astype(np.float32)
    assert calibrate.find_split(x, g, calibrate.product_bits(x, g)) == 0
    assert calibrate.find_split(x, g, None) == 0
    reference = calibrate.product_bits(x, g, 740)
    split = calibrate.find_split(x, g, reference)
    assert split == 0 or calibrate.product_bits(x, g, split) == reference
    assert calibrate.find_split(x, g, "no such bits", tries=3) == 0


@pytest.mark.slow
def test_calibrate_measures_chooses_and_stores(home):
    """A real, small calibration: two candidates' workers train and report the same bits."""
    lines: list[str] = []
    entry = calibrate.calibrate(hidden=(16,), batch=64, rounds=2, examples=2048,
                                threadings=("default",), unrolls=(1,), log=lines.append)
    assert set(entry["measured"]) == {"default/unroll-1", "default/unroll-2"}
    assert all(m["same_bits"] for m in entry["measured"].values())
    assert entry["threading"] == "default" and entry["unroll"] in (1, 2)
    assert entry["sizes"] == [784, 16, 10] and entry["batch"] == 64
    assert "calibrating on" in lines[0] and len([ln for ln in lines if "round" in ln]) == 2
    assert len(entry["load_average"]) == 2
    assert tuning.chosen()["unroll"] == entry["unroll"]


def test_the_cli_shows_the_choice_and_refuses_bad_options(home, capsys):
    from digitnet.cli import main

    assert main(["calibrate", "--show"]) == 0
    assert "no stored choice for this machine" in capsys.readouterr().out
    tuning.save({"threading": "default", "unroll": 4, "sizes": [784, 64, 64, 10], "batch": 32})
    assert main(["calibrate", "--show"]) == 0
    assert json.loads(capsys.readouterr().out)["unroll"] == 4
    for bad in (["--hidden", "x"], ["--rounds", "0"], ["--batch-size", "-1"]):
        assert main(["calibrate", *bad]) == 2
        assert capsys.readouterr().err.startswith("digitnet: error: --")


def test_train_options_are_resolved_once_and_fitted_to_data_as_fit_does(tmp_path):
    from digitnet.cli import build_parser, training_shapes
    from digitnet.cli.train import resolved_options
    from digitnet.spec import MLPSpec

    toml = tmp_path / "run.toml"
    toml.write_text("hidden = [32]\n")
    args = build_parser().parse_args(["train", "--config", str(toml), "--batch-size", "16"])
    assert training_shapes(args) == ([784, 32, 10], 16)
    first = args.resolved
    toml.write_text("hidden = [8]\n")  # cmd_train takes the resolution the XLA setup used
    assert resolved_options(args) is first and first[0].hidden == (32,)
    # Over another base (a resumed run's options) it resolves again: --config (now [8]) and
    # flags still win over the base, and the base fills what they leave.
    assert resolved_options(args, {"hidden": [64], "activation": "tanh"})[0].hidden == (8,)
    assert resolved_options(args, {"activation": "tanh"})[0].activation == "tanh"
    assert resolved_options(args)[0].activation == "relu"
    # The rule fit applies (api.setup_run) and the CLI applies before JAX starts.
    spec = MLPSpec(input_shape=(5,), num_classes=3)
    assert spec.for_data((5,), 3) is spec and spec.for_data((5,), 2) is spec
    assert spec.for_data((5,), 4).num_classes == 4
    assert spec.for_data((2, 2), 1).input_shape == (2, 2) and spec.for_data((2, 2), 1).num_classes == 2
