"""`digitnet train --tensorboard DIR`: event files that hold the per-epoch history."""

from __future__ import annotations

import struct

import pytest

from digitnet import artifacts as art
from digitnet.cli import main


def read_events(path):
    """The Event protos of a TFRecord event file (length, crc, payload, crc per record)."""
    from tensorboardX.proto.event_pb2 import Event

    data, i, events = path.read_bytes(), 0, []
    while i < len(data):
        (n,) = struct.unpack("<Q", data[i:i + 8])
        events.append(Event.FromString(data[i + 12:i + 12 + n]))
        i += 12 + n + 4
    assert i == len(data)
    return events


def test_tensorboard_event_files_hold_the_history(small_data, tmp_path):
    pytest.importorskip("tensorboardX")
    logdir, out = tmp_path / "tb", tmp_path / "run"
    assert main(["train", "--quiet", "--hidden", "16", "--epochs", "2", "--batch-size", "50",
                 "--data-dir", str(small_data), "--out", str(out), "--tensorboard", str(logdir)]) == 0
    [path] = logdir.glob("events.out.tfevents.*")
    scalars = {(v.tag, e.step): v.simple_value for e in read_events(path) for v in e.summary.value
               if v.HasField("simple_value")}
    history = art.read_history(out / art.HISTORY)
    assert len(scalars) == 4 * len(history) == 8
    for h in history:
        for key, tag in (("loss", "loss/train"), ("accuracy", "accuracy/train"),
                         ("val_loss", "loss/validation"), ("val_accuracy", "accuracy/validation")):
            assert scalars[(tag, h["epoch"])] == pytest.approx(h[key], rel=1e-6)
    texts = [v.tag for e in read_events(path) for v in e.summary.value if v.tag.startswith("config")]
    assert texts
