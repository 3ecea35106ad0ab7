"""digitnet's own numbers for the tutorial's config, in one process (what `python -m bench`
runs n times, each in a fresh process):

- per-epoch seconds of `digitnet.fit` without per-epoch validation, as the tutorial's
  model.fit does it (epoch 1 includes compilation; the rest are steady state),
- the 5 epochs' training seconds, compilation included,
- test accuracy, and the seconds to predict the 10k test images after one warm-up call.

Prints one JSON line. The persistent compilation cache is off here (so compilation is
counted); `bench/cli_run.py` measures the CLI with the cache.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("DIGITNET_COMPILE_CACHE", "0")


def cpu_clock():
    """A digitnet training callback that records process CPU seconds per epoch (steadier
    than wall time on a busy machine)."""
    from digitnet.callbacks import Callback

    class CpuClock(Callback):
        def __init__(self):
            self.cpu: list[float] = []

        def on_epoch_begin(self, epoch: int) -> None:
            self.t0 = time.process_time()

        def on_epoch_end(self, state, logs) -> None:
            self.cpu.append(time.process_time() - self.t0)

    return CpuClock()


def main() -> None:
    from digitnet.runtime import set_cpu_threading
    from digitnet.spec import MLPSpec
    from digitnet.trainconfig import TrainConfig

    set_cpu_threading(MLPSpec().sizes, TrainConfig().batch_size)  # as `digitnet train` does
    t0 = time.perf_counter()
    import jax

    import digitnet
    import digitnet.api  # noqa: F401  (JAX, Optax and the engine)

    jax.numpy.zeros(1).block_until_ready()  # the CPU backend starts
    import_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    ds = digitnet.load_dataset()
    load_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    clock = cpu_clock()
    seed = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    model = digitnet.fit(config=TrainConfig(validation="none", seed=seed), dataset=ds,
                         verbose=False, callbacks=[clock])
    train_seconds = time.perf_counter() - t0
    acc = float((model.predict(ds.x_test) == ds.y_test).mean())
    predict = []
    for _ in range(5):
        t = time.perf_counter()
        model.predict(ds.x_test)
        predict.append(time.perf_counter() - t)
    print(json.dumps({"epoch_seconds": [h["seconds"] for h in model.history],
                      "epoch_cpu_seconds": clock.cpu,
                      "train_seconds": train_seconds, "test_accuracy": acc,
                      "predict_seconds": predict, "import_seconds": import_seconds,
                      "load_seconds": load_seconds}))


if __name__ == "__main__":
    main()
