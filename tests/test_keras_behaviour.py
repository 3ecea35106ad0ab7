"""digitnet.keras against recorded Keras 3 behaviour (tests/fixtures/keras/behaviour.json, written
by scripts/keras_record.py with real Keras): each scenario of tests/keras_oracle/scenarios.py runs
here on digitnet.keras; what it returns and prints must match what Keras returned and printed.

Printed text is compared line by line, as a terminal shows it (the last redraw of a progress
bar), with numbers masked where they come from training or timing, and with the numeric suffixes
of automatic layer names dropped (Keras numbers them per process)."""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
from pathlib import Path

import pytest

from digitnet import keras
from tests.keras_oracle.scenarios import SCENARIOS

RECORDED = json.loads((Path(__file__).parent / "fixtures/keras/behaviour.json").read_text())
# Scenarios whose printed numbers come from training or the clock: masked before comparing.
MASK_NUMBERS = {"fit_verbose2", "fit_verbose1", "evaluate", "lr_scheduler", "binary_fit"}
# Returned values that depend on training (random draws differ from Keras'): not compared.
SKIP_RETURNED: dict[str, tuple[str, ...]] = {"custom_metric": ("evaluate",)}


NAME_COUNTER = re.compile(r"\b([a-z]+(?:_[a-z]+)*)_\d+\b")


def screen(text: str, mask: bool) -> list[str]:
    """The lines a terminal ends up showing, layer-name counters dropped, numbers masked."""
    lines = [line.split("\r")[-1].replace("\b", "") for line in text.split("\n")]
    lines = [NAME_COUNTER.sub(r"\1", line).rstrip() for line in lines]
    if mask:
        lines = [re.sub(r"\d+(\.\d+)?(e[+-]\d+)?", "#", line) for line in lines]
        lines = [re.sub(r"#(s|ms|us)/step", "#/step", line) for line in lines]
    lines = [re.sub(r" +", " ", line) for line in lines]  # column widths follow the names
    return [line for line in lines if line]


def same(got, want, path="") -> None:
    if isinstance(want, float) or isinstance(got, float):
        assert isinstance(got, int | float) and (
            math.isclose(got, want, rel_tol=1e-4, abs_tol=1e-5) or (math.isnan(got) and math.isnan(want))
        ), f"{path}: {got} != {want}"
    elif isinstance(want, dict):
        assert sorted(got) == sorted(want), f"{path}: keys {sorted(got)} != {sorted(want)}"
        for k in want:
            same(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list | tuple) and len(got) == len(want), f"{path}: {got} != {want}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            same(g, w, f"{path}[{i}]")
    elif isinstance(want, str) and isinstance(got, str):
        assert NAME_COUNTER.sub(r"\1", got) == NAME_COUNTER.sub(r"\1", want), f"{path}: {got!r} != {want!r}"
    else:
        assert got == want, f"{path}: {got!r} != {want!r}"


def run(name: str, tmp_path: Path) -> tuple[object, str, object]:
    fn = SCENARIOS[name]
    out = io.StringIO()
    returned = error = None
    keras.utils.set_random_seed(0)
    with contextlib.redirect_stdout(out):
        try:
            returned = fn(keras, str(tmp_path)) if fn.__code__.co_argcount == 2 else fn(keras)
        except Exception as exc:  # noqa: BLE001 - compared with what Keras raised
            error = [type(exc).__name__, str(exc)]
    return returned, out.getvalue(), error


@pytest.mark.parametrize("name", sorted(SCENARIOS))
@pytest.mark.slow
def test_scenario_matches_keras(name, tmp_path):
    want = RECORDED[name]
    assert "error" not in want, want.get("traceback")
    returned, printed, error = run(name, tmp_path)
    assert error is None, error
    if name == "errors":
        for case, expected in want["returned"].items():
            got = returned[case]
            assert got is not None and expected[0] in got[2], (case, got, expected)
            strip = re.compile(r"^\w+\.")  # the class Keras' fit/compile belong to
            assert strip.sub("", got[1]) == strip.sub("", expected[1]), (case, got)
    else:
        expected = want["returned"]
        for key in SKIP_RETURNED.get(name, ()):
            expected, returned = dict(expected), dict(returned)
            expected.pop(key), returned.pop(key)
        same(json.loads(json.dumps(returned)), expected, name)
    mask = name in MASK_NUMBERS
    assert screen(printed, mask) == screen(want["printed"], mask)
