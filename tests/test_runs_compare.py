"""`digitnet runs` and `digitnet compare`: the listing of run directories, McNemar's exact test
on paired predictions (checked against SciPy's binomial test), the disputed images."""

from __future__ import annotations

import json

import numpy as np
import pytest

import digitnet
from digitnet.compare import compare_report, compare_runs, mcnemar_exact, text
from digitnet.errors import ConfigError
from digitnet.runlist import list_runs, table
from digitnet.train import TrainConfig


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, small_data):
    root = tmp_path_factory.mktemp("runs")
    data = small_data
    spec = digitnet.MLP(hidden=(16,))
    for name, lr in (("slow", 1e-4), ("quick", 3e-3)):
        digitnet.fit(spec, TrainConfig(epochs=2, batch_size=50, lr=lr, validation="test"), "small",
                     data_dir=data, out=root / "runs" / name, verbose=False)
    return root / "runs"


@pytest.mark.parametrize("b,c", [(0, 0), (0, 5), (3, 7), (12, 2), (40, 61), (250, 260)])
def test_mcnemar_matches_scipy_binomtest(b, c):
    stats = pytest.importorskip("scipy.stats")
    expected = 1.0 if b + c == 0 else stats.binomtest(b, b + c, 0.5).pvalue
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9)


def test_runs_lists_every_run_with_its_numbers(two_runs, tmp_path):
    runs = list_runs(two_runs)
    assert [r.name for r in runs] == ["slow", "quick"]  # oldest first
    for r in runs:
        cfg = json.loads((r.path / "config.json").read_text())
        assert r.layers == "784-16-10" and r.epochs == 2
        assert r.test_accuracy == cfg["metrics"]["test_accuracy"]
        assert r.seconds == cfg["metrics"]["train_seconds"]
        assert r.date == cfg["finished"]
    out = table(runs).splitlines()
    assert out[0].split() == ["NAME", "DATE", "(UTC)", "LAYERS", "EPOCHS", "TEST", "ACC", "SECONDS"]
    assert out[2].startswith("quick") and f"{runs[1].test_accuracy:.4f}" in out[2]
    (tmp_path / "empty").mkdir()
    assert list_runs(tmp_path / "empty") == []
    with pytest.raises(ConfigError, match="no such folder"):
        list_runs(tmp_path / "missing")


def test_compare_pairs_predictions_on_the_same_images(two_runs, small_data, tmp_path):
    cmp = compare_runs([two_runs / "slow", two_runs / "quick"])
    slow, quick = digitnet.load(two_runs / "slow"), digitnet.load(two_runs / "quick")
    ds = digitnet.load_dataset(path=small_data)
    right_s, right_q = slow.predict(ds.x_test) == ds.y_test, quick.predict(ds.x_test) == ds.y_test
    (pair,) = cmp.pairs
    assert pair.a_only.tolist() == np.flatnonzero(right_s & ~right_q).tolist()
    assert pair.b_only.tolist() == np.flatnonzero(right_q & ~right_s).tolist()
    assert cmp.run("quick").accuracy == pytest.approx(right_q.mean())
    assert cmp.run("quick").accuracy > cmp.run("slow").accuracy
    assert pair.p_value < 0.05 and pair.verdict == "quick is better (p < 0.05)"
    diff = cmp.run("quick").recall - cmp.run("slow").recall
    assert diff.shape == (10,)
    out = text(cmp)
    assert "McNemar exact p" in out and f"{len(pair.b_only)} only quick" in out
    doc = cmp.to_dict()
    assert doc["pairs"][0]["b_right_a_wrong"] == len(pair.b_only)

    from digitnet.report import save

    page = save(compare_report(cmp), tmp_path / "cmp").read_text()
    assert "compare-curves.png" in page and "McNemar" in page and "Right for quick" in page


def test_compare_refuses_other_data_and_single_runs(two_runs, trained_run):
    with pytest.raises(ConfigError, match="other data"):
        compare_runs([two_runs / "slow", trained_run])
    with pytest.raises(ConfigError, match="at least two"):
        compare_runs([two_runs / "slow"])


@pytest.mark.slow
def test_cli_runs_compare_and_report(two_runs, tmp_path, capsys):
    from digitnet.cli import main

    assert main(["runs", str(two_runs)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("NAME") and [ln.split()[0] for ln in lines[1:]] == ["slow", "quick"]
    assert main(["runs", str(two_runs), "--json"]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == ["slow", "quick"]
    assert main(["runs", str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err

    a, b = str(two_runs / "slow"), str(two_runs / "quick")
    assert main(["compare", a, b, "--html", "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "McNemar exact p" in out and "quick is better" in out
    assert {"report.html", "compare-curves.png"} <= {p.name for p in (tmp_path / "cmp").iterdir()}
    assert main(["compare", a, b, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pairs"][0]["mcnemar_exact_p"] < 0.05
    assert main(["report", a, b, "--out", str(tmp_path / "rep")]) == 0
    assert "wrote" in capsys.readouterr().out and (tmp_path / "rep" / "report.html").is_file()
    assert main(["compare", a]) == 2
    assert "at least two" in capsys.readouterr().err


def test_cli_predict_explain(trained_run, trained_model, mnist, capsys):
    from digitnet.cli import main
    from digitnet.explain import gradient_x_input, normalized

    assert main(["predict", str(trained_run), "--indices", "0:2", "--explain"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("test[0]: 7") and "pixels that pushed 7" in out and "##" in out
    assert main(["predict", str(trained_run), "--indices", "0:2", "--explain", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    _, attr = gradient_x_input(trained_model, mnist.x_test[:2])
    for row, expected in zip(rows, normalized(attr), strict=True):
        np.testing.assert_allclose(row["explanation"], expected, atol=6e-4)
