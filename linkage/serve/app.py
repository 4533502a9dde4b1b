"""The HTTP service of ``linkage serve`` (FastAPI on uvicorn): routes, token, metrics, swaps.

Routes (docs/operations.md, "The online check"):

``GET /healthz``
    200 ``{"status": "ok", "run_id": N}`` once an index is loaded; 503 before.
``POST /v1/check``
    bearer token, JSON body of at most :data:`MAX_BODY` bytes; the reply of
    :meth:`linkage.serve.index.KeyIndex.check`.
``GET /metrics``
    Prometheus text: requests, latencies, errors, the run served and the index's age.
``GET /docs``, ``GET /openapi.json``
    FastAPI's, from the models of :mod:`linkage.serve.models`.

The body is read and checked by :class:`linkage.serve.keys.KeyMaker` rather than by FastAPI's
own validation: the contract wants 400 naming the field (not 422), and the values must be
normalised by ingest's rules anyway. Nothing of a request is logged or kept: logs carry counts,
latencies and run ids only; uvicorn's access log is off.

The served index is one attribute of :class:`ServeState`. A watcher task polls the store for
a newer latest run, builds its index in a worker thread beside the old one, and rebinds the
attribute: a request takes the index once when it starts, so it finishes on the index it
began with, and the old index is freed when the last such request is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from linkage.pseudonymise import Pseudonymiser
from linkage.serve.index import KeyIndex, build_index
from linkage.serve.keys import BadField
from linkage.serve.models import CheckReply, Problem, request_schema
from linkage.store import Store

__all__ = ["MAX_BODY", "ServeState", "create_app"]

log = logging.getLogger("linkage.serve")

MAX_BODY = 1 << 20
"""Largest request body accepted (1 MiB); a larger one is 413."""

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)


class Metrics:
    """The service's Prometheus metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("linkage_serve_requests", "Requests answered.",
                                ["endpoint", "status"], registry=r)
        self.latency = Histogram("linkage_serve_request_seconds",
                                 "Time to answer a request, from routing to reply.",
                                 ["endpoint"], buckets=_LATENCY_BUCKETS, registry=r)
        self.errors = Counter("linkage_serve_errors", "Requests refused or failed, by reason.",
                              ["reason"], registry=r)
        self.run_id = Gauge("linkage_serve_run_id", "Id of the run being served (0: none).",
                            registry=r)
        self.index_keys = Gauge("linkage_serve_index_keys", "Distinct keys in the index.",
                                registry=r)
        self.index_bytes = Gauge("linkage_serve_index_bytes",
                                 "Bytes held by the index's arrays.", registry=r)
        self.build_seconds = Gauge("linkage_serve_index_build_seconds",
                                   "Seconds the served index took to build.", registry=r)
        self.swaps = Counter("linkage_serve_index_swaps", "Indexes loaded (the first included).",
                             registry=r)
        self.reload_errors = Counter("linkage_serve_reload_errors",
                                     "Failed looks for, or builds of, a newer run.", registry=r)
        self.index_age = Gauge("linkage_serve_index_age_seconds",
                               "Seconds since the served run finished (-1: none).", registry=r)


class ServeState:
    """What the service holds: the store, the key, the token, the index and the metrics."""

    def __init__(self, store: Store, pseudo: Pseudonymiser, token: bytes, *,
                 poll_seconds: float = 30.0,
                 builder: Callable[[Store, int, Pseudonymiser], KeyIndex] = build_index) -> None:
        self.store = store
        self.pseudo = pseudo
        self._token = token
        self.poll_seconds = poll_seconds
        self.builder = builder
        self.index: KeyIndex | None = None
        self.metrics = Metrics()
        self.metrics.index_age.set_function(self._age)
        self._refreshing = asyncio.Lock()

    def _age(self) -> float:
        index = self.index
        if index is None:
            return -1.0
        finished = index.finished_at.timestamp() if index.finished_at else index.built_at
        return max(0.0, time.time() - finished)

    def authorised(self, header: str | None) -> bool:
        """Whether ``header`` is ``Bearer <the token>``; the token is compared in constant
        time (:func:`hmac.compare_digest`), whatever the header holds."""
        scheme, _, given = (header or "").partition(" ")
        ok = hmac.compare_digest(given.strip().encode(), self._token)
        return ok and scheme.lower() == "bearer"

    def load(self, run_id: int) -> KeyIndex:
        """Build run ``run_id``'s index and serve it (blocking: the first load, and tests)."""
        index = self.builder(self.store, run_id, self.pseudo)
        self._swap(index)
        return index

    def _swap(self, index: KeyIndex) -> None:
        old, self.index = self.index, index
        m = self.metrics
        m.run_id.set(index.run_id)
        m.index_keys.set(index.n_keys)
        m.index_bytes.set(index.nbytes)
        m.build_seconds.set(index.build_seconds)
        m.swaps.inc()
        log.info("serving run %d: %d keys of %d clusters, %.1f MB, built in %.2f s%s",
                 index.run_id, index.n_keys, len(index.cluster_id), index.nbytes / 1e6,
                 index.build_seconds, f" (was run {old.run_id})" if old else "")

    async def refresh(self) -> bool:
        """Serve the store's latest run if it is not the one served; True if it swapped.

        The store is read and the index built in a worker thread, beside the served index.
        """
        async with self._refreshing:
            latest = await asyncio.to_thread(self.store.latest_run_id)
            current = self.index.run_id if self.index else None
            if latest is None or latest == current:
                return False
            index = await asyncio.to_thread(self.builder, self.store, latest, self.pseudo)
            self._swap(index)
            return True

    async def watch(self) -> None:
        """Poll for a newer run every ``poll_seconds`` until cancelled."""
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                await self.refresh()
            except Exception as exc:  # the old index keeps serving
                self.metrics.reload_errors.inc()
                log.warning("looking for a newer run failed (still serving run %s): %s: %s",
                            self.index.run_id if self.index else "none",
                            type(exc).__name__, str(exc)[:300])


def _problem(status: int, error: str, field: str | None = None,
             detail: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": error}
    if field is not None:
        body["field"] = field
    if detail is not None:
        body["detail"] = detail
    return JSONResponse(body, status_code=status)


def create_app(state: ServeState) -> FastAPI:
    """The FastAPI application over ``state`` (which the caller has usually loaded)."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        watcher = asyncio.create_task(state.watch())
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            checks = sum(s.value for s in _samples(state, "linkage_serve_requests_total",
                                                   endpoint="/v1/check"))
            log.info("stopped after %d checks", int(checks))

    app = FastAPI(
        title="linkage online check",
        summary="Does a new or changed account share keys with the clusters of the latest run?",
        version="1",
        lifespan=lifespan,
        # No OpenTelemetry spans or logs: their exception records may quote request values.
        telemetry={"tracing": False, "metrics": False, "logs": False,
                   "operation_spans": False, "auto_configure": False},
    )
    m = state.metrics
    request_body, definitions = request_schema()
    counted: dict[int, Any] = {}  # the request counter's child per status, bound once
    check_latency = m.latency.labels("/v1/check")

    @app.get("/healthz", responses={503: {"model": Problem}})
    async def healthz() -> Response:
        """200 once the service can answer checks (an index is loaded), else 503."""
        index = state.index
        if index is None:
            m.requests.labels("/healthz", "503").inc()
            return _problem(503, "no finished run to serve yet")
        m.requests.labels("/healthz", "200").inc()
        return JSONResponse({"status": "ok", "run_id": index.run_id})

    @app.post(
        "/v1/check",
        response_model=None,
        responses={200: {"model": CheckReply}, 400: {"model": Problem},
                   401: {"description": "no or a wrong bearer token (no body)"},
                   413: {"model": Problem}, 503: {"model": Problem}},
        openapi_extra={
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": request_body}}},
            "security": [{"bearer": []}],
        },
    )
    async def check(request: Request) -> Response:
        """Which clusters of the latest run the account described links to, and its risk."""
        started = time.perf_counter()
        response = await _check(request)
        status = response.status_code
        counter = counted.get(status) or counted.setdefault(
            status, m.requests.labels("/v1/check", str(status)))
        counter.inc()
        check_latency.observe(time.perf_counter() - started)
        return response

    async def _check(request: Request) -> Response:
        if not state.authorised(request.headers.get("authorization")):
            m.errors.labels("unauthorized").inc()
            return Response(status_code=401, headers={"WWW-Authenticate": "Bearer"})
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            m.errors.labels("too_large").inc()
            return _problem(413, f"body larger than {MAX_BODY} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                m.errors.labels("too_large").inc()
                return _problem(413, f"body larger than {MAX_BODY} bytes")
            chunks.append(chunk)
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            m.errors.labels("bad_request").inc()
            return _problem(400, "the body must be JSON", "Content-Type",
                            "expected application/json")
        try:
            body = json.loads(b"".join(chunks))
        except (ValueError, RecursionError):
            m.errors.labels("bad_request").inc()
            return _problem(400, "the body is not valid JSON", "body")
        index = state.index  # taken once: a swap during this request does not affect it
        if index is None:
            m.errors.labels("not_ready").inc()
            return _problem(503, "no finished run to serve yet")
        try:
            if not isinstance(body, dict):
                raise BadField("body", "expected an object")
            if not isinstance(body.get("account"), dict):
                raise BadField("account", "required: an object with account_id")
            reply = index.check(body)
        except BadField as exc:
            m.errors.labels("bad_request").inc()
            return _problem(400, "the body breaks the contract", exc.field, exc.message)
        return JSONResponse(reply)

    @app.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        """Prometheus text format."""
        return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(Exception)
    async def internal(_request: Request, exc: Exception) -> Response:
        # Only the type: a message may quote a request value.
        m.errors.labels("internal").inc()
        log.error("internal failure answering a request: %s", type(exc).__name__)
        return _problem(500, "internal failure")

    schemes = {"bearer": {"type": "http", "scheme": "bearer"}}
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original()
            components = schema.setdefault("components", {})
            components.setdefault("securitySchemes", {}).update(schemes)
            components.setdefault("schemas", {}).update(definitions)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _samples(state: ServeState, name: str, **labels: str) -> list[Any]:
    return [s for metric in state.metrics.registry.collect() for s in metric.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
