"""The web application of `cnnlab serve`: the page and its JSON API, on Starlette.

    GET  /               the page (static/index.html, app.js, style.css: no build step,
                         nothing from the internet; a Content-Security-Policy says so)
    GET  /healthz        {"status": "ok", "model": name}
    GET  /api/model      the architecture, classes, input size, stages, output kind
    POST /api/predict    PNG or JPEG bytes (Content-Type image/png or image/jpeg), ?k=3
                         -> top-k, every class's probability, the input the model saw
    POST /api/explain    the same, plus each stage's maps, the classifier's input vector,
                         the RBF distances and Grad-CAM and saliency overlays

Every error is JSON {"error": "one line"}: 400 bad image or parameter, 404, 405, 413
body too large, 415 not PNG or JPEG, 421 foreign Host. The model's work runs in worker
threads, one request at a time (session.py), so the event loop keeps accepting requests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cnnlab.errors import CnnlabError
from cnnlab.serve.host_check import HostCheck
from cnnlab.serve.image_bytes import MAX_PIXELS
from cnnlab.serve.payload import json_safe
from cnnlab.serve.request_body import MAX_BODY_BYTES, check_media_type, read_body
from cnnlab.serve.session import ModelSession

STATIC = {"/": "index.html", "/app.js": "app.js", "/style.css": "style.css"}
MEDIA = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css"}
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
DEFAULT_K = 3


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _user_error(request: Request, exc: Exception) -> JSONResponse:
    return _error(getattr(exc, "status", 400), str(exc))


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    if exc.status_code == 404:
        message = f"no such page or endpoint: {request.url.path}"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    else:
        message = exc.detail
    return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)


async def _server_error(request: Request, exc: Exception) -> JSONResponse:
    """Never for a user's mistake; uvicorn logs the traceback after this answer."""
    return _error(500, "internal server error (a bug in cnnlab: please report it)")


def top_k(request: Request) -> int:
    """The ?k= parameter: a positive integer (larger than the class count means all)."""
    text = request.query_params.get("k", str(DEFAULT_K))
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise CnnlabError(f"k={text!r}: expected a positive whole number of classes")
    return int(text)


def _static_route(path: str, name: str) -> Route:
    """GET `path` -> static/`name`, read once from the package (no path from a request)."""
    content = (resources.files("cnnlab.serve") / "static" / name).read_bytes()
    media_type = MEDIA[Path(name).suffix]

    async def page(request: Request) -> Response:
        return Response(content, media_type=media_type, headers=PAGE_HEADERS)

    return Route(path, page, methods=["GET"])


def create_app(
    checkpoint: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    allow_hosts: Iterable[str] = (),
    max_body_bytes: int = MAX_BODY_BYTES,
    max_pixels: int = MAX_PIXELS,
    device: str | torch.device = "cpu",
) -> Starlette:
    """The application for `checkpoint`, answering requests addressed to host:port.

    `host` and `port` are those the server is bound to (the Host check compares them);
    `allow_hosts` adds names clients may use. `app.state.session` is the ModelSession.
    """
    session = ModelSession(checkpoint, device, max_pixels)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "model": session.meta.model})

    async def model(request: Request) -> JSONResponse:
        return JSONResponse(json_safe(session.describe()))

    async def image_request(
        request: Request, method: Callable[[bytes, int], dict[str, Any]]
    ) -> JSONResponse:
        k = top_k(request)
        check_media_type(request)
        data = await read_body(request, max_body_bytes)
        return JSONResponse(json_safe(await run_in_threadpool(method, data, k)))

    async def predict(request: Request) -> JSONResponse:
        return await image_request(request, session.predict)

    async def explain(request: Request) -> JSONResponse:
        return await image_request(request, session.explain)

    app = Starlette(
        routes=[
            *(_static_route(path, name) for path, name in STATIC.items()),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/api/model", model, methods=["GET"]),
            Route("/api/predict", predict, methods=["POST"]),
            Route("/api/explain", explain, methods=["POST"]),
        ],
        middleware=[Middleware(HostCheck, host=host, port=port, allow=tuple(allow_hosts))],
        exception_handlers={
            CnnlabError: _user_error,
            HTTPException: _http_error,
            Exception: _server_error,
        },
    )
    app.state.session = session
    return app
