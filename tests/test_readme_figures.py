"""The README's and docs' load figures are the bench's: rendered from bench/results/serving.json by
bench/load_serve.py, never typed by hand (a rerun of the bench rewrites both)."""

from __future__ import annotations

import json
from pathlib import Path

from bench import load_serve

ROOT = Path(__file__).resolve().parents[1]


def test_serving_figures_are_rendered_from_the_bench_results():
    res = json.loads((ROOT / "bench" / "results" / "serving.json").read_text())
    assert load_serve.readme(res) in (ROOT / "README.md").read_text()
    assert load_serve.markdown(res) in (ROOT / "docs" / "serving.md").read_text()


def test_a_changed_result_would_show(tmp_path):
    res = json.loads((ROOT / "bench" / "results" / "serving.json").read_text())
    res["overload"]["5xx"] = 7
    assert load_serve.readme(res) not in (ROOT / "README.md").read_text()
