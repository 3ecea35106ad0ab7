"""The FastAPI app: routes, error handling, the drawing page.

Every client mistake is answered with a 4xx and {"error": code, "detail": message}; a 500
means a bug in digitnet. JSON pixels are parsed in the event loop (microseconds, with orjson);
image files and batches are decoded in the thread pool. The forward pass goes through the
micro-batcher (digitnet.serve.batching), or through `infer` where a host brings its own
(Ray Serve's serve.batch, digitnet.serve.ray).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from digitnet import __version__
from digitnet.errors import DigitnetError
from digitnet.serve import inputs
from digitnet.serve.batching import Admission, MicroBatcher
from digitnet.serve.guard import HostGuard
from digitnet.serve.limits import BodyLimit, ClientError, Limits
from digitnet.serve.metrics import CONTENT_TYPE, Instrument, Metrics
from digitnet.serve.predictor import Predictor

PREDICT_PATHS = frozenset({"/predict", "/predict/batch"})
KNOWN_PATHS = PREDICT_PATHS | {"/", "/health", "/model", "/metrics", "/docs", "/openapi.json"}
# JSON bodies up to this size are parsed in the event loop; larger ones in the thread pool.
INLINE_JSON_BYTES = 64 * 1024
Infer = Callable[[np.ndarray], Awaitable[np.ndarray]]
# Image decodes, large bodies and explanations run on as many threads as there are cores, not on
# the 40 of the default pool: they hold the GIL most of the time, and more threads than cores
# only add switching (bench/serve_tail.py measures it; docs/serving.md).
WORKERS = ThreadPoolExecutor(max_workers=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                             else (os.cpu_count() or 1), thread_name_prefix="digitnet-decode")

# FastAPI's own OpenTelemetry hooks (in its newer releases) look up three global providers on
# every request even when none is set up; digitnet reports through /metrics instead.
NO_TELEMETRY = ({"telemetry": {"tracing": False, "metrics": False, "logs": False}}
                if "telemetry" in inspect.signature(FastAPI.__init__).parameters else {})


async def off_loop(fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args) on the worker threads, awaited from the event loop."""
    return await asyncio.get_running_loop().run_in_executor(WORKERS, functools.partial(fn, *args))


class FastJSON(JSONResponse):
    """JSON answers written by orjson; NumPy arrays go in as they are."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)

CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large",
         415: "unsupported_media_type", 422: "invalid_input"}

ONE_IMAGE_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": {"oneOf": [
            {"type": "object", "required": ["pixels"], "properties": {"pixels": {
                "type": "array", "items": {"type": "number", "minimum": 0, "maximum": 255},
                "description": "784 values (or 28 rows of 28) in MNIST form: white ink on black"}}},
            {"type": "object", "required": ["image"], "properties": {"image": {
                "type": "string", "description": "an image file (PNG, JPEG, …) in base64 or a data: URL"}}},
        ]}},
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "file": {"type": "string", "format": "binary"}}}},
        "image/png": {"schema": {"type": "string", "format": "binary"}},
        "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
    },
}

BATCH_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": {"oneOf": [
            {"type": "object", "required": ["pixels"], "properties": {"pixels": {
                "type": "array", "items": {"type": "array", "items": {"type": "number"}},
                "description": "a list of images, each 784 values 0–255 in MNIST form"}}},
            {"type": "object", "required": ["images"], "properties": {"images": {
                "type": "array", "items": {"type": "string"},
                "description": "a list of base64 image files"}}},
        ]}},
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
    },
}


EXPLAIN_PARAM = {"name": "explain", "in": "query", "required": False, "schema": {"type": "boolean"},
                 "description": "also answer `explanation`: which pixels pushed the label"}


class ModelId(BaseModel):
    name: str
    id: str = Field(description="sha256 of the weights file (first 16 hex digits)")
    architecture: str
    activation: str


class Scores(BaseModel):
    label: int
    probabilities: list[float] = Field(description="one per class, summing to 1")


class Prediction(Scores):
    model: ModelId
    input: list[list[float]] = Field(description="the 28×28 image the model saw (MNIST form)")
    explanation: list[list[float]] | None = Field(
        None, description="with ?explain=true: gradient × input of the label's logit over that "
                          "image, scaled to [-1, 1]; positive pixels pushed towards the label")


class BatchPrediction(BaseModel):
    model: ModelId
    predictions: list[Scores]


def create_app(model_dir: str | os.PathLike, limits: Limits | None = None, *, max_queue: int = 64,
               batch_wait_ms: float = 1.0, predictor: Predictor | None = None,
               infer: Infer | None = None, allowed_hosts: tuple[str, ...] = ("*",)) -> FastAPI:
    """The service for the run directory `model_dir`; the model loads here, once.

    At most `max_queue` prediction requests are in progress at once (the rest get 429); requests
    arriving together are batched for up to `batch_wait_ms`. `predictor` and `infer` let a host
    (Ray Serve) bring its own loaded model and batching. Requests whose Host header is not in
    `allowed_hosts` are refused (serve.guard)."""
    limits = limits or Limits()
    predictor = predictor or Predictor(model_dir, limits.max_batch)
    metrics = Metrics(predictor.info, limits.max_batch, KNOWN_PATHS)
    if infer is None:
        infer = MicroBatcher(predictor, limits.max_batch, batch_wait_ms / 1000, metrics.batch.observe)
    shape = predictor.model.spec.input_shape
    started = time.time()
    page = resources.files("digitnet.serve").joinpath("static/index.html").read_text()

    # /docs and /redoc from Swagger UI and ReDoc files shipped in fastapi-offline: no CDN.
    app = FastAPIOffline(title="digitnet", version=__version__, default_response_class=FastJSON,
                         description="Classify handwritten digits with a trained digitnet MLP.",
                         **NO_TELEMETRY)
    handlers: dict[str, Callable[[Request], Awaitable[Response]]] = {}
    app.add_middleware(Direct, handlers=handlers)
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    app.add_middleware(Admission, max_queue=max_queue, paths=PREDICT_PATHS, on_depth=metrics.depth.set)
    app.add_middleware(Instrument, metrics=metrics)
    app.add_middleware(HostGuard, allowed=allowed_hosts)  # outermost: checked first
    app.mount("/static", StaticFiles(packages=[("digitnet.serve", "static")]), name="static")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return FastJSON({"error": "invalid_request", "detail": detail}, 422)

    @app.exception_handler(DigitnetError)
    async def digitnet_error(request: Request, exc: DigitnetError) -> JSONResponse:
        return error_response(exc)

    async def decoder(request: Request, batch: bool) -> Callable[[], np.ndarray]:
        """Read the body (async, limited) and return the CPU-bound rest as a function."""
        ctype = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if ctype == "application/json" or ctype.endswith("+json"):
            body = await request.body()
            if not batch and len(body) <= INLINE_JSON_BYTES:
                # The common case, 784 numbers, costs less than a trip to the thread pool.
                doc = inputs.parse_json(body)
                x = inputs.plain_pixels(doc, body, shape)
                if x is not None:
                    return inline(x)
                return lambda: inputs.from_json(doc, shape, limits.max_image_pixels)
            if batch:
                def decode_batch() -> np.ndarray:
                    doc = inputs.parse_json(body)
                    x = inputs.plain_pixels(doc, body, shape, limits.max_batch)
                    if x is not None:
                        return x
                    return inputs.batch_from_json(doc, shape, limits.max_image_pixels,
                                                  limits.max_batch)
                return decode_batch
            return lambda: inputs.from_json(inputs.parse_json(body), shape, limits.max_image_pixels)
        if ctype == "multipart/form-data":
            files = await uploaded_files(request, limits.max_batch, single=not batch)
            return lambda: inputs.images(files, limits.max_image_pixels)
        if not batch and (ctype.startswith("image/") or ctype == "application/octet-stream"):
            body = await request.body()
            return lambda: inputs.image(body, limits.max_image_pixels)[None]
        accepted = "application/json or multipart/form-data"
        if not batch:
            accepted += ", or an image/* body"
        raise ClientError(415, "unsupported_media_type",
                          f"Content-Type {ctype or '(none)'} is not accepted; send {accepted}")

    async def classify(request: Request, batch: bool) -> tuple[np.ndarray, np.ndarray]:
        decode = await decoder(request, batch)
        x = decode() if getattr(decode, "inline", False) else await off_loop(decode)
        return x, await infer(x)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/health", summary="Liveness and the model being served")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": predictor.info,
                "uptime_seconds": round(time.time() - started, 1)}

    @app.get("/metrics", response_class=Response, include_in_schema=False)  # for Prometheus, not clients
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    # Rendered once: a run's history may hold up to 100,000 epochs (megabytes of JSON), and a
    # GET must not cost its rendering each time (a 500,000-row history cost 1.5 s per request).
    model_doc = orjson.dumps({**predictor.describe(), "limits": limits.to_dict()},
                             option=orjson.OPT_SERIALIZE_NUMPY)

    @app.get("/model", summary="The model: layers, training configuration, test metrics, limits")
    async def model_info() -> Response:
        return Response(model_doc, media_type="application/json")

    @app.post("/predict", summary="Classify one digit",
              description="One image as JSON pixels, a base64 image, a multipart upload, or a raw "
                          "image/* body. The answer includes `input`: the 28×28 image the model saw.",
              openapi_extra={"requestBody": ONE_IMAGE_BODY, "parameters": [EXPLAIN_PARAM]},
              responses={200: {"model": Prediction}})
    async def predict(request: Request) -> Response:
        x, probs = await classify(request, batch=False)
        label = int(probs[0].argmax())
        answer = {"label": label, "probabilities": probs[0], "model": predictor.info,
                  "input": as_image(x[0], shape)}
        if request.query_params.get("explain", "").lower() in ("1", "true"):  # a second pass: asked for
            answer["explanation"] = await off_loop(predictor.explain, x, label)
        return FastJSON(answer)

    @app.post("/predict/batch", summary="Classify many digits in one request",
              description=f"At most {limits.max_batch} images: JSON pixels, base64 images, or "
                          "multipart files (in order).",
              openapi_extra={"requestBody": BATCH_BODY}, responses={200: {"model": BatchPrediction}})
    async def predict_batch(request: Request) -> Response:
        _, probs = await classify(request, batch=True)
        return FastJSON({"model": predictor.info,
                         "predictions": [{"label": int(p.argmax()), "probabilities": p} for p in probs]})

    handlers.update({"/predict": predict, "/predict/batch": predict_batch})
    return app


def error_response(exc: Exception) -> FastJSON:
    """{"error": code, "detail": message} with the status a ClientError, HTTPException or
    DigitnetError carries."""
    if isinstance(exc, HTTPException):
        code = getattr(exc, "code", None) or CODES.get(exc.status_code, "error")
        return FastJSON({"error": code, "detail": exc.detail}, exc.status_code, exc.headers)
    return FastJSON({"error": "invalid_input", "detail": str(exc)}, 422)


class Direct:
    """ASGI middleware: POST to a prediction path goes straight to its handler.

    FastAPI's routing, dependency solving and exception middleware cost more CPU per request
    than parsing 784 pixels and running the model (docs/serving.md); the prediction routes take
    a plain Request and answer a Response, so they need none of it. The same handlers stay
    declared as FastAPI routes, which is what /openapi.json and /docs describe."""

    def __init__(self, app: ASGIApp, handlers: dict[str, Callable[[Request], Awaitable[Response]]]):
        self.app, self.handlers = app, handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.handlers.get(scope["path"]) if scope["type"] == "http" else None
        if handler is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await handler(request)
        except (HTTPException, DigitnetError) as exc:
            response = error_response(exc)
        await response(scope, receive, send)


async def uploaded_files(request: Request, max_files: int, single: bool) -> list[tuple[str, bytes]]:
    form = await request.form(max_files=max_files)
    files = [(f.filename or key, await f.read()) for key, f in form.multi_items()
             if isinstance(f, UploadFile)]
    if not files:
        raise ClientError(422, "invalid_input", "the multipart body has no file part")
    if single and len(files) > 1:
        raise ClientError(422, "invalid_input", "send one file to /predict; use /predict/batch for more")
    return files


def inline(x: np.ndarray) -> Callable[[], np.ndarray]:
    """A decoder whose work is already done: classify() calls it in the event loop."""
    def decoded() -> np.ndarray:
        return x
    decoded.inline = True  # type: ignore[attr-defined]
    return decoded


def as_image(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The model's input as rows of pixels; whole numbers as ints to keep the JSON short.
    (Probabilities go out as float32, whose shortest form has at most 9 significant digits.)"""
    img = x.reshape(shape)
    ints = img.astype(np.int64)
    return ints if (ints == img).all() else img
