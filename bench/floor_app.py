"""The floor: the least a FastAPI hook endpoint can do with the same request.

Same path, same server flags and the same JSON library as the service (orjson both ways), and the
same ``gc.freeze()`` after start-up, so the service/floor ratio measures only what the service
adds: envelope validation, mapping, rules, card rendering, middleware.

    uvicorn --app-dir bench floor_app:app --loop uvloop --http httptools --no-access-log
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

CARD = {"cards": [{
    "uuid": "00000000-0000-4000-8000-000000000000",
    "summary": "Floor card",
    "indicator": "info",
    "source": {"label": "bench floor"},
}]}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    gc.collect()
    gc.freeze()  # the service does the same at start-up (service/edge/app.py)
    yield


app = FastAPI(lifespan=lifespan)


@app.post("/cds-services/mbc-patient-view")
async def hook(request: Request) -> Response:
    data = orjson.loads(await request.body())
    return Response(orjson.dumps(CARD if isinstance(data, dict) else {"cards": []}), media_type="application/json")
