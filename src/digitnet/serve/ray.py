"""`digitnet serve RUN --ray --replicas N`: the same app as a Ray Serve deployment.

Each replica loads the model and builds the app that `digitnet serve` runs (create_app: same
routes, answers, errors, limits, admission and /metrics), with Ray Serve's `serve.batch` in
place of the in-process micro-batcher. Ray's HTTP proxy listens on --host/--port; the cluster is
RAY_ADDRESS's, or a new local one.

Back-pressure: each replica takes up to 2 × max_queue requests from Ray's router and answers
those beyond max_queue with the app's own 429; Ray's router holds at most max_queue more per
deployment and answers past that with its own 503 (Ray Serve's back-pressure error).
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
from ray import serve

from digitnet.errors import ConfigError
from digitnet.serve.limits import Limits
from digitnet.serve.server import ServerOptions, bind

APP_NAME = "digitnet"
# serve.batch counts requests, not rows; a request brings up to max_batch rows.
REQUESTS_PER_BATCH = 32


@serve.ingress()
class Digitnet:
    def __init__(self, app_args: dict[str, Any]):
        from digitnet.serve.predictor import Predictor

        self.app_args = {**app_args, "limits": Limits(**app_args["limits"])}
        self.predictor = Predictor(app_args["model_dir"], self.app_args["limits"].max_batch)
        self.forward.set_batch_wait_timeout_s(app_args.get("batch_wait_ms", 1.0) / 1000)

    @serve.batch(max_batch_size=REQUESTS_PER_BATCH, batch_wait_timeout_s=0.001)
    async def forward(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        out = self.predictor(xs[0] if len(xs) == 1 else np.concatenate(xs))
        ends = np.cumsum([len(x) for x in xs])
        return np.split(out, ends[:-1])

    def __serve_build_asgi_app__(self) -> Any:
        from digitnet.serve.app import create_app
        from digitnet.serve.server import settle_heap

        app = create_app(**self.app_args, predictor=self.predictor, infer=self.forward)
        settle_heap()
        return app


def deployment(app_args: dict[str, Any], replicas: int) -> Any:
    queue = int(app_args.get("max_queue", 64))
    return serve.deployment(Digitnet, name=APP_NAME, num_replicas=replicas,
                            max_ongoing_requests=2 * queue, max_queued_requests=queue,
                            ray_actor_options={"num_cpus": 1}).bind(app_args)


def start(app_args: dict[str, Any], options: ServerOptions, replicas: int) -> None:
    """Deploy on the Ray cluster (RAY_ADDRESS or a new local one) and return once it answers."""
    import ray

    if replicas < 1:
        raise ConfigError("--replicas must be at least 1")
    bind(options.host, options.port).close()  # a busy port: one line, before Ray starts
    app_args = {**app_args, "model_dir": os.path.abspath(app_args["model_dir"])}
    ray.init(address=os.environ.get("RAY_ADDRESS"), ignore_reinit_error=True, log_to_driver=False)
    serve.start(http_options={"host": options.host, "port": options.port})
    serve.run(deployment(app_args, replicas), name=APP_NAME, route_prefix="/")


def serve_on_ray(app_args: dict[str, Any], options: ServerOptions, replicas: int) -> int:
    """The `serve --ray` command: deploy, announce, wait for Ctrl-C, then take it down."""
    start(app_args, options, replicas)
    print(f"digitnet: serving {app_args['model_dir']} on http://{options.host}:{options.port}/ "
          f"with Ray Serve, {replicas} replica{'s' if replicas > 1 else ''} (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
    return 0
