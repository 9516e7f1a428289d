"""The FastAPI app: ``/predict``, the Open Inference Protocol (``/v2``), ``/metrics`` and ``/admin``.

Built for throughput on one uvicorn worker per process:

* handlers take the raw ``Request`` and parse JSON themselves (the pydantic models in ``schemas`` only
  document the API) with orjson, and answer bytes orjson serialised;
* scoring runs on the event loop through ``MicroBatcher``: requests that arrive while batches wait
  for the feature store (an awaited read, the loop keeps serving) are scored together next, so
  concurrent callers share one feature-store round trip and one onnxruntime call (adaptive
  micro-batching, no waiting when idle; two batches may wait for the store at once);
* metrics are recorded in the handler with cached label children, no middleware.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import importlib.metadata
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from patterns.rest_api import v2
from patterns.rest_api.batching import MicroBatcher
from patterns.rest_api.metrics import CONTENT_TYPE_LATEST, ServiceMetrics
from patterns.rest_api.schemas import (
    MAX_BATCH,
    BatchResponse,
    InputError,
    PredictResponse,
    decode_predict_body,
    explain_flag,
)
from patterns.rest_api.service import FlightDelayService, Prediction, StoreUnavailable

__all__ = ["MAX_BATCH", "MAX_BODY_BYTES", "create_app"]

#: Largest request body accepted (a full batch of flights is far below it).
MAX_BODY_BYTES = 4 << 20
_JSON = "application/json"
_log = logging.getLogger(__name__)


def _package_version() -> str:
    try:
        return importlib.metadata.version("mlpatterns")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type=_JSON)


def _parse(body: bytes) -> Any:
    """JSON of a request body; ``ValueError`` for anything that is not (too big, too deep, bad bytes)."""
    if len(body) > MAX_BODY_BYTES:
        raise ValueError(f"body larger than {MAX_BODY_BYTES} bytes")
    with contextlib.suppress(orjson.JSONDecodeError):
        return orjson.loads(body)  # a fifth of json.loads's CPU on a request body
    # json still reads NaN and Infinity (then the validation names the field) or says what is wrong.
    try:
        return json.loads(body)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _error(message: str, status: int, field: str | None = None) -> Response:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    return _json(body, status)


def create_app(
    service: FlightDelayService,
    *,
    admin_token: str | None = None,
    max_batch_rows: int = 256,
    title: str = "mlpatterns REST: flight delay",
) -> FastAPI:
    """The ASGI app serving ``service``; ``admin_token`` enables ``/admin`` (disabled when None)."""
    metrics = ServiceMetrics(service.version, service.slot)
    batcher = MicroBatcher(service, metrics, max_batch_rows)
    server_meta = json.dumps(v2.server_metadata(_package_version())).encode()
    model_meta = json.dumps(v2.model_metadata(service)).encode()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Everything loaded so far (frameworks, model, vocabularies) lives as long as the process:
        # frozen, it is no longer walked by every full garbage collection, a pause of milliseconds
        # that otherwise lands in the p99 of whichever requests are in flight.
        gc.collect()
        gc.freeze()
        yield
        await batcher.join()

    app = FastAPI(
        title=title,
        version=service.version,
        description=service.description + " Also speaks the Open Inference Protocol (V2).",
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.metrics = metrics

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> Response:
        return _error(str(exc.detail), exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        return _error(str(first.get("msg", "invalid request")), 422, ".".join(loc) or None)

    @app.exception_handler(Exception)
    async def _server_error(_: Request, exc: Exception) -> Response:
        # A bug, never the caller's input (that is a 4xx above): answer JSON like every other error.
        return _error(f"internal error: {type(exc).__name__}", 500)

    def _admin(request: Request) -> Response | None:
        if admin_token is None:
            return _error("admin endpoints are disabled: start the server with --admin-token", 403)
        given = request.headers.get("x-admin-token")
        auth = request.headers.get("authorization", "")
        if given is None and auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if not given:
            return Response(
                b'{"error":"admin token required"}', 401, {"www-authenticate": "Bearer"}, media_type=_JSON
            )
        if not hmac.compare_digest(given.encode(), admin_token.encode()):
            return _error("wrong admin token", 403)
        return None

    async def _score_and_answer(
        endpoint: str, start: float, flights: list[dict[str, Any]], ids: Sequence[str | None]
    ) -> tuple[list[Prediction] | None, Response | None]:
        field: str | None = None
        try:
            scored = await batcher.score(flights, list(ids))
            # A model that returns NaN or inf is a bug (a broken export, a custom hook), not the
            # caller's input: a counted 5xx the bake guardrails see, for both endpoints, instead of
            # a 200 with null (JSON) or an uncounted 500 (V2). One sum: probabilities are in [0, 1].
            if math.isfinite(sum([p.probability for p in scored])):
                return scored, None
            _log.error("the model returned a non-finite probability")
            status, message = 500, "internal error: model returned a non-finite probability"
        except StoreUnavailable as exc:
            status, message = 503, str(exc)
        except InputError as exc:
            status, message, field = 422, str(exc), exc.field
        except Exception as exc:  # a bug in a hook: a counted 5xx the bake guardrails can see
            _log.exception("scoring failed")
            status, message = 500, f"internal error: {type(exc).__name__}"
        response = _error(message, status, field)
        seconds = time.perf_counter() - start
        metrics.observe(endpoint, seconds, status)
        metrics.observe_scoring(seconds, status, None)
        return None, response

    # --- baseline -------------------------------------------------------------------------------

    async def noop(request: Request) -> Response:
        """Does nothing but read the body: the same stack's ceiling, for benchmarks."""
        await request.body()
        return Response(b'{"ok":true}', media_type=_JSON)

    # One documented route per method: a single GET+POST route gives both the same operationId.
    app.get("/noop", tags=["baseline"], operation_id="noop_get")(noop)
    app.post("/noop", tags=["baseline"], operation_id="noop_post")(noop)

    # --- JSON prediction ------------------------------------------------------------------------

    @app.post(
        "/predict",
        tags=["predict"],
        openapi_extra=dict(service.predict_body_doc),
        responses={200: {"model": PredictResponse | BatchResponse}, 422: {"description": "bad field"}},
    )
    async def predict(request: Request) -> Response:
        """Score one flight (object), or several (`{"flights": [...]}` or an array).

        Add `?explain=true` (or `"explain": true`) to get the feature values used.
        """
        start = time.perf_counter()
        try:
            payload = _parse(await request.body())
        except ValueError as exc:
            metrics.observe("predict", time.perf_counter() - start, 400)
            return _error(f"body is not valid JSON: {exc}", 400, "body")
        try:
            query = request.query_params.get("explain") if request.scope["query_string"] else None
            explain = explain_flag(query, payload)
            flights, ids, is_batch = decode_predict_body(payload, service.decode_request)
        except InputError as exc:
            metrics.observe("predict", time.perf_counter() - start, 422)
            return _error(str(exc), 422, exc.field)
        scored, failed = await _score_and_answer("predict", start, flights, ids)
        if scored is None:
            return failed  # type: ignore[return-value]
        if is_batch:
            answer: Any = {
                "model_version": service.version,
                "predictions": [service.encode_response(p, explain) for p in scored],
            }
        else:
            answer = service.encode_response(scored[0], explain)
        probabilities = [p.probability for p in scored]
        seconds = time.perf_counter() - start
        metrics.observe("predict", seconds, 200, probabilities)
        metrics.observe_scoring(seconds, 200, probabilities)
        return _json(answer)

    # --- Open Inference Protocol ----------------------------------------------------------------

    def _check_model(name: str, version: str | None) -> Response | None:
        if name != service.model_name:
            return _error(f"unknown model '{name}': this server has '{service.model_name}'", 404)
        if version is not None and version != service.version:
            return _error(f"model '{name}' has no version '{version}': it serves '{service.version}'", 404)
        return None

    @app.get("/v2", tags=["v2"])
    async def v2_server() -> Response:
        return Response(server_meta, media_type=_JSON)

    @app.get("/v2/health/live", tags=["v2"])
    async def v2_live() -> Response:
        return Response(b'{"live":true}', media_type=_JSON)

    async def _ready() -> bool:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, service.ready)

    @app.get("/v2/health/ready", tags=["v2"])
    async def v2_ready() -> Response:
        """Ready = model loaded and the feature store answers a ping (503 otherwise)."""
        ok = await _ready()
        return _json({"ready": ok}, 200 if ok else 503)

    async def _model_ready(name: str, version: str | None) -> Response:
        wrong = _check_model(name, version)
        if wrong is not None:
            return wrong
        ok = await _ready()
        return _json({"name": name, "ready": ok}, 200 if ok else 503)

    @app.get("/v2/models/{name}/ready", tags=["v2"])
    async def v2_model_ready(name: str) -> Response:
        return await _model_ready(name, None)

    @app.get("/v2/models/{name}/versions/{version}/ready", tags=["v2"])
    async def v2_model_version_ready(name: str, version: str) -> Response:
        return await _model_ready(name, version)

    @app.get("/v2/models/{name}", tags=["v2"])
    async def v2_model(name: str) -> Response:
        return _check_model(name, None) or Response(model_meta, media_type=_JSON)

    @app.get("/v2/models/{name}/versions/{version}", tags=["v2"])
    async def v2_model_version(name: str, version: str) -> Response:
        return _check_model(name, version) or Response(model_meta, media_type=_JSON)

    async def _infer(request: Request, name: str, version: str | None) -> Response:
        start = time.perf_counter()
        wrong = _check_model(name, version)
        if wrong is not None:
            metrics.observe("v2_infer", time.perf_counter() - start, 404)
            return wrong
        try:
            header, binary = v2.split_body(await request.body(), request.headers.get(v2.HEADER_LENGTH))
            body = _parse(header)
        except ValueError as exc:  # a V2Error names what is wrong with the binary framing
            metrics.observe("v2_infer", time.perf_counter() - start, 400)
            message = exc.message if isinstance(exc, v2.V2Error) else f"body is not valid JSON: {exc}"
            return _error(message, 400)
        try:
            infer = v2.decode_infer(service, body, binary)
        except v2.V2Error as exc:
            metrics.observe("v2_infer", time.perf_counter() - start, exc.status)
            return _error(exc.message, exc.status)
        ids = [None] * len(infer.flights)
        scored, failed = await _score_and_answer("v2_infer", start, infer.flights, ids)
        if scored is None:
            return failed  # type: ignore[return-value]
        content, headers = v2.encode_infer(service, scored, infer)
        probabilities = [p.probability for p in scored]
        seconds = time.perf_counter() - start
        metrics.observe("v2_infer", seconds, 200, probabilities)
        metrics.observe_scoring(seconds, 200, probabilities)
        return Response(content, 200, headers)

    @app.post("/v2/models/{name}/infer", tags=["v2"])
    async def v2_infer(request: Request, name: str) -> Response:
        """Open Inference Protocol inference: one input tensor per raw field, output `probability`.

        Tensors as JSON `data`, or as binary tensor data after a JSON header whose length is in the
        `Inference-Header-Content-Length` header (what tritonclient sends by default).
        """
        return await _infer(request, name, None)

    @app.post("/v2/models/{name}/versions/{version}/infer", tags=["v2"])
    async def v2_infer_version(request: Request, name: str, version: str) -> Response:
        return await _infer(request, name, version)

    # --- operations -------------------------------------------------------------------------------

    @app.get("/metrics", tags=["ops"])
    async def prometheus() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/admin/info", tags=["admin"])
    async def admin_info(request: Request) -> Response:
        """Model version, feature fingerprints and slot of this process (token required)."""
        return _admin(request) or _json(service.info() | {"ready": await _ready()})

    @app.post("/admin/score", tags=["admin"])
    async def admin_score(request: Request) -> Response:
        """Probabilities for a ready feature matrix `{"features": [[...], ...]}` (golden-set checks)."""
        denied = _admin(request)
        if denied is not None:
            return denied
        try:
            matrix = np.asarray(_parse(await request.body())["features"], dtype=np.float32)
        except OverflowError:  # an integer beyond the largest float
            return _error("must be finite numbers", 422, "features")
        except (ValueError, KeyError, TypeError) as exc:
            return _error(f'expected {{"features": [[number, ...], ...]}}: {exc}', 400, "features")
        n = len(service.feature_names)
        if matrix.ndim != 2 or matrix.shape[1] != n:
            return _error(f"expected a (rows, {n}) matrix, got shape {list(matrix.shape)}", 422, "features")
        probabilities = await asyncio.get_running_loop().run_in_executor(
            None, service.predict_features, matrix
        )
        return _json({"model_version": service.version, "probabilities": probabilities.tolist()})

    @app.get("/admin/window", tags=["admin"])
    async def admin_window(request: Request) -> Response:
        """Requests, errors (5xx), p99 latency and predictions of scoring calls since the last reset."""
        return _admin(request) or _json(metrics.window.snapshot() | {"model_version": service.version})

    @app.post("/admin/window/reset", tags=["admin"])
    async def admin_window_reset(request: Request) -> Response:
        denied = _admin(request)
        if denied is not None:
            return denied
        metrics.window.reset()
        return _json({"reset": True})

    @app.post("/admin/flush-log", tags=["admin"])
    async def admin_flush_log(request: Request) -> Response:
        """Wait until every prediction served so far is in the prediction log.

        `{"flushed": false}` when that timed out or a write failed (rows dropped: see the server log).
        """
        denied = _admin(request)
        if denied is not None:
            return denied
        flushed = await asyncio.get_running_loop().run_in_executor(None, service.flush_log)
        return _json({"flushed": flushed})

    # The hot paths are served by plain Starlette routes placed first: same handlers, without
    # FastAPI's per-request dependency solving (about 1.5x the requests per second of an APIRoute
    # for a no-op). The APIRoutes above stay in ``app.routes`` and keep documenting them in /docs.
    async def _infer_raw(request: Request) -> Response:
        return await _infer(request, request.path_params["name"], request.path_params.get("version"))

    async def _live_raw(_: Request) -> Response:
        return Response(b'{"live":true}', media_type=_JSON)

    fast = [
        Route("/predict", predict, methods=["POST"]),
        Route("/noop", noop, methods=["GET", "POST"]),
        Route("/v2/health/live", _live_raw, methods=["GET"]),
        Route("/v2/models/{name}/infer", _infer_raw, methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}/infer", _infer_raw, methods=["POST"]),
    ]
    app.router.routes[:0] = fast
    return app
