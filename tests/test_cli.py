"""The command line, end to end, in fresh processes."""

import json

import pytest
from cli_runner import run_cli


@pytest.mark.slow
def test_train_then_predict_evaluate_summary(tmp_path):
    out = tmp_path / "run"
    r = run_cli("train", "--epochs", "1", "--hidden", "32", "--quiet", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "test accuracy 0.9" in r.stdout
    assert "first five test predictions [7, 2, 1, 0, 4]" in r.stdout
    assert f"saved to {out}" in r.stdout

    r = run_cli("predict", str(out), "--indices", "0:5", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["label"] for row in rows] == [7, 2, 1, 0, 4]
    assert all(abs(sum(row["probabilities"]) - 1) < 1e-4 for row in rows)

    r = run_cli("evaluate", str(out), "--json")
    ev = json.loads(r.stdout)
    assert ev["accuracy"] > 0.9 and len(ev["per_class"]) == 10
    assert sum(map(sum, ev["confusion_matrix"])) == 10_000

    r = run_cli("summary", str(out))
    assert "Total params: 25,450" in r.stdout  # 784*32+32 + 32*10+10


@pytest.mark.slow
def test_train_from_a_toml_config_with_flags_winning(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('hidden = [16]\nepochs = 3\nactivation = "tanh"\ndeskew = true\n')
    out = tmp_path / "run"
    r = run_cli("train", "--config", str(cfg), "--epochs", "1", "--quiet", "--out", str(out))
    assert r.returncode == 0, r.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["hidden"] == [16] and config["model"]["activation"] == "tanh"
    assert config["model"]["deskew"] is True
    r = run_cli("summary", str(out))
    assert "preprocess deskew, center" in r.stdout
    assert config["train"]["epochs"] == 1


@pytest.mark.slow
def test_bad_usage_and_bad_input_exit_2_with_one_line(tmp_path):
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("epochs = [")
    not_image = tmp_path / "digit.png"
    not_image.write_text("hello")
    cases = [
        ("train", "--hidden", "a,b"),
        ("train", "--optimizer", "adafactor"),
        ("train", "--lr", "-1"),
        ("train", "--config", str(bad_toml)),
        ("train", "--no-such-flag"),
        ("evaluate", str(tmp_path / "missing")),
        ("predict", str(tmp_path / "missing"), "--indices", "0:5"),
        ("datasets", "verify", "no-such-set"),
        ("trian",),
        ("train", "--learning_rate", "0.1"),
    ]
    for args in cases:
        r = run_cli(*args)
        assert r.returncode == 2, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("digitnet"), (args, r.stderr)
        assert "Traceback" not in r.stderr


def test_serve_flag_errors_come_before_the_servers_imports(tmp_path):
    # A bad --port or --max-queue is refused from the flags alone, as cheaply as --help.
    import subprocess
    import sys

    code = ("import sys; from digitnet.cli import main; rc = main(sys.argv[1:]);"
            "print(rc, 'jax' in sys.modules, 'digitnet.serve' in sys.modules)")
    for flags in (["--port", "99999"], ["--port", "-1"], ["--max-queue", "0"]):
        r = subprocess.run([sys.executable, "-c", code, "serve", str(tmp_path), *flags],
                           capture_output=True, text=True, timeout=60)
        assert r.stdout.split() == ["2", "False", "False"], (flags, r.stdout, r.stderr)
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("digitnet: error: --")


def test_predict_on_a_bad_image_file_exits_2(trained_run, tmp_path):
    not_image = tmp_path / "digit.png"
    not_image.write_text("hello")
    r = run_cli("predict", str(trained_run), str(not_image))
    assert r.returncode == 2
    assert "not a readable image" in r.stderr


def test_help_lists_every_verb():
    r = run_cli("--help")
    assert r.returncode == 0
    for verb in ("train", "evaluate", "predict", "summary", "datasets"):
        assert verb in r.stdout


def test_bare_command_prints_usage_and_the_commands():
    r = run_cli()
    assert r.returncode == 2 and "usage: digitnet" in r.stderr
    assert all(verb in r.stderr for verb in ("train", "evaluate", "predict", "serve", "sweep"))


def test_did_you_mean_for_commands_and_flags():
    r = run_cli("trian")
    assert "unknown command 'trian'; did you mean train?" in r.stderr
    r = run_cli("train", "--learning_rate", "0.1")
    assert "unknown option --learning_rate; did you mean --lr?" in r.stderr
    r = run_cli("train", "--batchsize", "8")
    assert "did you mean --batch-size?" in r.stderr


def test_an_empty_index_range_is_a_one_line_error(trained_run):
    r = run_cli("predict", str(trained_run), "--indices", "5:2")
    assert r.returncode == 2
    assert r.stderr.strip() == ("digitnet: error: --indices 5:2 selects no test images "
                                "(START:STOP needs START < STOP ≤ 10000)")


def test_help_wording():
    r = run_cli("evaluate", "--help")
    assert "confusion matrix" not in r.stdout.split("options:")[0]
    assert "--json" in r.stdout and "adds the confusion matrix" in r.stdout
    r = run_cli("serve", "--help")
    assert "address to listen on" in r.stdout and "TCP port" in r.stdout
    r = run_cli("train", "--help")
    assert "linear" in r.stdout and "--chunks-per-epoch" in r.stdout


@pytest.mark.slow
def test_one_epoch_is_singular_and_a_resumed_run_counts_only_its_own(tmp_path, small_data):
    out = tmp_path / "run"
    common = ("--data-dir", str(small_data), "--hidden", "8", "--quiet", "--out", str(out))
    r = run_cli("train", "--epochs", "1", *common)
    assert r.returncode == 0, r.stderr
    assert "(1 epoch," in r.stdout
    r = run_cli("train", "--epochs", "3", "--resume", *common)
    assert r.returncode == 0, r.stderr
    assert "(2 epochs after the 1 resumed," in r.stdout


def test_the_fast_exit_runs_exit_handlers_and_flushes_first(tmp_path):
    """run() ends a train's process with os._exit: what a normal exit would still do (atexit
    handlers, buffered output, non-daemon threads) happens before it."""
    import subprocess
    import sys

    from cli_runner import ROOT

    marker = tmp_path / "joined"
    code = ("import atexit, sys, threading, time\n"
            "from digitnet.cli import exit_now\n"
            f"t = threading.Thread(target=lambda: (time.sleep(0.2), open({str(marker)!r}, 'w').close()))\n"
            "t.start()\n"
            "atexit.register(lambda: print('handler ran'))\n"
            "sys.stdout.write('buffered ')\n"
            "exit_now(3)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={"PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": ""})
    assert r.returncode == 3 and r.stdout == "buffered handler ran\n" and marker.exists()


@pytest.mark.slow
def test_trace_phases_marks_a_train_run_from_start_to_exit(tmp_path):
    r = run_cli("train", "--epochs", "2", "--hidden", "16", "--quiet", "--out", str(tmp_path / "run"),
                env={"DIGITNET_TRACE_PHASES": "1"})
    assert r.returncode == 0, r.stderr
    records = [json.loads(line.split(" ", 1)[1]) for line in r.stderr.splitlines()
               if line.startswith("digitnet-trace ")]
    marks = [rec["mark"] for rec in records if "mark" in rec]
    assert marks[0] == "cli imported" and marks[-1] == "atexit"
    assert "epoch 2" in marks and "tested and saved" in marks
    times = [rec["t"] for rec in records if "mark" in rec]
    assert times == sorted(times)
    assert any(rec.get("span") == "backend_compile_duration" for rec in records)
    assert run_cli("train", "--epochs", "1", "--hidden", "16", "--quiet",
                   "--out", str(tmp_path / "quiet")).stderr == ""


def test_a_reader_that_stops_reading_ends_the_command_quietly(tmp_path):
    # `digitnet runs DIR | head -0`: the pipe closes before the command prints. No traceback,
    # the shell's code for a broken pipe (128 + SIGPIPE).
    import os
    import subprocess
    import sys
    from pathlib import Path

    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "digitnet", "runs", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait() == 141 and err == "", err
