"""The web framework's floor for bench/load_serve.py: a FastAPI app on the same uvicorn
(httptools) that reads each request as digitnet does, parses JSON bodies, and returns a fixed
answer of the same shape and size as digitnet's, with no model and no checks.

    uvicorn bench.serve_floor:app                # JSON parsed by FastAPI's own request.json()
    DIGITNET_FLOOR_ORJSON=1 uvicorn bench.serve_floor:app    # parsed and written with orjson
"""

from __future__ import annotations

import json
import os

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

ORJSON = os.environ.get("DIGITNET_FLOOR_ORJSON") == "1"
ANSWER = {"label": 7, "probabilities": [0.0001, 0.0002, 0.0003, 0.0004, 0.0005, 0.0006, 0.0007, 0.9964,
                                        0.0004, 0.0004],
          "model": {"name": "floor", "id": "sha256:0000000000000000", "architecture": "784-64-64-10",
                    "activation": "relu"},
          "input": [[0] * 28 for _ in range(28)]}
BATCH = {"model": ANSWER["model"],
         "predictions": [{"label": 7, "probabilities": ANSWER["probabilities"]}] * 32}

if ORJSON:
    import orjson

    def answer(content: dict) -> Response:
        return Response(orjson.dumps(content), media_type="application/json")

    async def parse(request: Request) -> object:
        return orjson.loads(await request.body())
else:
    def answer(content: dict) -> Response:
        return JSONResponse(content)

    async def parse(request: Request) -> object:
        return await request.json()

app = FastAPI()


@app.post("/predict")
async def predict(request: Request) -> Response:
    if request.headers.get("content-type", "").startswith("application/json"):
        await parse(request)
    else:
        await request.body()
    return answer(ANSWER)


@app.post("/predict/batch")
async def predict_batch(request: Request) -> Response:
    await parse(request)
    return answer(BATCH)


@app.get("/health")
async def health() -> dict:
    return {"status": "ok", "json": "orjson" if ORJSON else json.__name__}
