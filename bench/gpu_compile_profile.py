"""Where a cold start's seconds go on a GPU: JAX's compile log for the deskewing pass and for
`digitnet.fit(recipe=...)`, the programs that took over 0.3 s to compile, and each epoch's
seconds. Run on the GPU machine with the persistent cache off:

    DIGITNET_COMPILE_CACHE=0 python3 bench/gpu_compile_profile.py fast best

(bench/results/gpu-compile-profile.txt holds one such run on an H100, with and without XLA's
GEMM autotuning: `XLA_FLAGS=--xla_gpu_autotune_level=0`.)
"""

import logging
import sys
import time
from pathlib import Path

t0 = time.perf_counter()
import jax  # noqa: E402

jax.numpy.zeros(1).block_until_ready()
print(f"backend start {time.perf_counter() - t0:.2f}s", flush=True)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import digitnet  # noqa: E402
from digitnet.deskew import deskew_dataset  # noqa: E402


class SlowCompiles(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if msg.startswith("Finished XLA compilation") and float(msg.split()[-2]) > 0.3:
            print("compiled" + msg.split("compilation of", 1)[1], flush=True)


logging.getLogger("jax").addHandler(SlowCompiles())
jax.config.update("jax_log_compiles", True)
ds = digitnet.load_dataset()
x = ds.x_train.reshape(-1, 28, 28)
for i in range(2):
    t = time.perf_counter()
    jax.block_until_ready(deskew_dataset(x))
    print(f"deskew call {i}: {time.perf_counter() - t:.2f}s", flush=True)
for name in sys.argv[1:]:
    t = time.perf_counter()
    m = digitnet.fit(recipe=name, dataset=ds, verbose=False)
    print(f"recipe {name}: {time.perf_counter() - t:.2f}s epochs "
          f"{[round(h['seconds'], 3) for h in m.history]}", flush=True)
