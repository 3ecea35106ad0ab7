"""Record real Keras 3's behaviour for the scenarios in tests/keras_oracle/scenarios.py.

Run in an environment with Keras 3 (never a digitnet dependency), from the repository root:

    python3 -m venv /work/venvs/keras && /work/venvs/keras/bin/pip install keras jax jaxlib numpy h5py
    KERAS_BACKEND=jax /work/venvs/keras/bin/python scripts/keras_record.py tests/fixtures/keras/behaviour.json

For each scenario it stores what the scenario returned, what it printed, and the exception it
raised, if any. tests/test_keras_behaviour.py runs the same scenarios on digitnet.keras and
compares with this file. `--scenarios MODULE` records another scenario module's (see
tests/keras_oracle/layer_scenarios.py).
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import sys
import tempfile
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run_scenario(fn, keras) -> dict:
    out = io.StringIO()
    result: dict = {}
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(out):
        try:
            args = (keras, tmp) if len(inspect.signature(fn).parameters) == 2 else (keras,)
            keras.utils.set_random_seed(0)
            result["returned"] = fn(*args)
        except Exception as exc:  # noqa: BLE001
            result["error"] = [type(exc).__name__, str(exc)[:300]]
            result["traceback"] = traceback.format_exc()[-2000:]
    result["printed"] = out.getvalue()
    return result


def main() -> None:
    import importlib

    import keras

    args = sys.argv[2:]
    module = "tests.keras_oracle.scenarios"
    if args[:1] == ["--scenarios"]:  # another scenario module (tests.keras_oracle.layer_scenarios)
        module, args = args[1], args[2:]
    SCENARIOS = importlib.import_module(module).SCENARIOS  # noqa: N806

    names = args or list(SCENARIOS)
    path = Path(sys.argv[1])
    recorded = json.loads(path.read_text()) if path.exists() else {}
    recorded["_keras"] = {"version": keras.__version__, "backend": keras.backend.backend()}
    for name in names:
        recorded[name] = run_scenario(SCENARIOS[name], keras)
        print(name, "error" if "error" in recorded[name] else "ok", file=sys.stderr)
    path.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
