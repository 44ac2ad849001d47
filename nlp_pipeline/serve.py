"""An HTTP prediction server for a predict bundle: `nlp-pipeline serve --model runs/NAME` (FastAPI on uvicorn).

    POST /predict  {"texts": ["great film", "dull"]} or {"text": "great film"}
                   -> {"predictions": [{"label": "pos", "probabilities": {"neg": 0.1, "pos": 0.9}}, ...]}
                   (multi-label bundles: {"labels": [...], "probabilities": {...}}; regression: {"value": 3.7})
    GET  /health   {"status": "ok", ...}: the model is loaded and the batcher answers
    GET  /info     labels, target type, the model card (bundle config, metrics, run.json), versions, limits
    GET  /openapi.json, /docs    the OpenAPI schema and its browsable page

Takes a bundle folder or a run folder (Classifier.load: every check of `nlp-pipeline predict`). Every text gets the
answer Classifier.predict gives it, in request order: an empty string included (the model's answer for a document
without words), a lone surrogate escape ("\\ud83d") read as U+FFFD.
Batching: requests go into one queue; a single worker thread takes what is queued (whole requests, up to
max_batch texts, a request larger than that alone) and classifies it in one call, so concurrent requests share
forward passes. While a batch runs the next one gathers; batch_wait adds a pause after the first request of an
idle queue for more to arrive (0 by default: no added latency).
Limits, each a JSON error {"error": "..."} and never a crash: a body over max_request_bytes is 413 (refused from
its Content-Length before it is read, or as soon as a streamed body passes the limit); more than max_texts texts
is 413; a Content-Type other than application/json is 415; a body that is not UTF-8 JSON, or not one object
holding "text" (a string) or "texts" (a non-empty list of strings) and nothing else, is 400; more than
max_queued_texts waiting is 503 (with Retry-After); an unexpected failure of one request is a 500 for that
request only (a failed batch is retried request by request). A 404/405 for unknown paths and methods comes as
JSON too. Memory: one request body at a time per connection, at most max_queued_texts queued texts; serve() caps
oneDNN's primitive cache at 16 (ONEDNN_PRIMITIVE_CACHE_CAPACITY, unless set), since its default of 1,024 shapes
grew the server by hundreds of MB (create_app alone, in a process where torch already ran, cannot change it).
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations (Request, imported inside
# create_app so that this module imports without the serve extra) when they are defined.

import asyncio
import collections
import contextlib
import errno
import json
import math
import os
import platform
import signal
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from nlp_pipeline import __version__
from nlp_pipeline.core.errors import ConfigError

EXTRA_HINT = "pip install 'nlp-pipeline[serve]'"
ONEDNN_CACHE = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"  # oneDNN's environment variable (see serve())
SERVE_ONEDNN_CACHE = 16                           # primitives kept by a server, unless the variable is set
JSON_TYPES = ("application/json",)


@dataclass(frozen=True)
class ServeLimits:
    """What one server accepts and how it batches (the `serve` options)."""

    max_batch: int = 64                  # texts per forward pass; a batch is filled with whole requests up to this
    max_request_bytes: int = 1 << 20     # a larger body is refused with 413
    max_texts: int = 1000                # texts per request; more is refused with 413
    batch_wait_ms: float = 0.0           # pause after a request reaches an idle queue, for others to join its batch
    max_queued_texts: int = 20_000       # texts waiting beyond this: 503 with Retry-After

    def validate(self) -> None:
        for name in ("max_batch", "max_request_bytes", "max_texts", "max_queued_texts"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.batch_wait_ms <= 10_000:
            raise ConfigError(f"--batch-wait-ms must be 0 to 10000, got {self.batch_wait_ms}")


class RequestError(Exception):
    """A request the server refuses: HTTP status and a one-line message for {"error": ...}."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


# --- the request body ----------------------------------------------------------------------------------------

def parse_predict_body(body: bytes, max_texts: int) -> list[str]:
    """The texts of a POST /predict body, or a RequestError (400, or 413 for too many texts).

    parse_predict_body(b'{"text": "hi"}', 10) -> ['hi']; b'{"texts": ["a", "b"]}' -> ['a', 'b'];
    b'{"texts": []}' -> 400 (empty); b'{"texts": ["a", 1]}' -> 400 naming texts[1]; b'[' * 10**6 -> 400.
    """
    try:
        payload = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise RequestError(400, f"the body is not UTF-8 (byte {exc.start}); send JSON encoded as UTF-8") from None
    except RecursionError:
        raise RequestError(400, "the body is not valid JSON (nested too deeply)") from None
    except ValueError as exc:  # JSONDecodeError, and numbers too long to convert
        raise RequestError(400, f"the body is not valid JSON ({str(exc)[:200]})") from None
    example = 'send {"texts": ["a text", ...]} or {"text": "a text"}'
    if not isinstance(payload, dict):
        raise RequestError(400, f"the body is {_json_type(payload)}, not a JSON object; {example}")
    unknown = sorted(set(payload) - {"text", "texts"})
    if unknown:
        raise RequestError(400, f"unknown field {unknown[0][:60]!r}; {example}")
    if ("text" in payload) == ("texts" in payload):
        raise RequestError(400, f"give exactly one of \"text\" and \"texts\"; {example}")
    if "text" in payload:
        if not isinstance(payload["text"], str):
            raise RequestError(400, f"\"text\" is {_json_type(payload['text'])}, not a string; {example}")
        return [payload["text"]]
    texts = payload["texts"]
    if not isinstance(texts, list):
        raise RequestError(400, f"\"texts\" is {_json_type(texts)}, not a list of strings; {example}")
    if not texts:
        raise RequestError(400, f"\"texts\" is empty; {example}")
    if len(texts) > max_texts:
        raise RequestError(413, f"{len(texts)} texts in one request; this server takes at most {max_texts} (--max-texts): "
                                f"split the request")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise RequestError(400, f"texts[{i}] is {_json_type(text)}, not a string; every item of \"texts\" must be a string")
    return texts


def _json_type(value: Any) -> str:
    """What a parsed JSON value is, for messages: _json_type(1.5) -> 'a number', [] -> 'an array', None -> 'null'."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return {str: "a string", list: "an array", dict: "an object"}.get(type(value), type(value).__name__)


def finite(value: Any) -> Any:
    """Predictions with NaN/inf as null, so the response is valid JSON whatever the model computed."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


# --- micro-batching ------------------------------------------------------------------------------------------

class Busy(Exception):
    """The queue is full; the request is refused with 503."""


@dataclass
class _Job:
    texts: list[str]
    future: asyncio.Future


class MicroBatcher:
    """One queue in front of predict(texts) -> answers, run by one worker thread (see the module notes).

    submit(texts) awaits the answers of these texts, in order; run() is the worker loop (a task of the server's
    event loop); stats counts requests, texts, batches and the largest batch.
    """

    def __init__(self, predict: Callable[[list[str]], list[Any]], limits: ServeLimits):
        self.predict, self.limits = predict, limits
        self._queue: collections.deque[_Job] = collections.deque()
        self._queued_texts = 0
        self._wake = asyncio.Event()  # bound to the loop that first waits on it (the server's)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="nlp-pipeline-predict")
        self.stats = {"requests": 0, "texts": 0, "batches": 0, "largest_batch": 0, "failed_batches": 0}

    async def submit(self, texts: list[str]) -> list[Any]:
        if self._queued_texts + len(texts) > self.limits.max_queued_texts:
            raise Busy()
        job = _Job(texts, asyncio.get_running_loop().create_future())
        self._queue.append(job)
        self._queued_texts += len(texts)
        self._wake.set()
        return await job.future

    @property
    def queued(self) -> int:
        return self._queued_texts

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                if self.limits.batch_wait_ms > 0 and self._queued_texts < self.limits.max_batch:
                    await self._gather(loop.time() + self.limits.batch_wait_ms / 1000)
                batch = self._take()
                try:
                    await self._answer(loop, batch)
                except Exception as exc:  # noqa: BLE001: whatever happened, the worker lives on for the next requests
                    for job in batch:
                        _settle(job, exc=exc)

    async def _gather(self, deadline: float) -> None:
        """Wait until max_batch texts are queued or the deadline passes."""
        loop = asyncio.get_running_loop()
        while self._queued_texts < self.limits.max_batch and (left := deadline - loop.time()) > 0:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), left)
            except TimeoutError:
                return

    def _take(self) -> list[_Job]:
        """Whole requests from the queue's front, up to max_batch texts (at least one request)."""
        batch, size = [], 0
        while self._queue and (not batch or size + len(self._queue[0].texts) <= self.limits.max_batch):
            job = self._queue.popleft()
            batch.append(job)
            size += len(job.texts)
        self._queued_texts -= size
        return batch

    async def _answer(self, loop: asyncio.AbstractEventLoop, batch: list[_Job]) -> None:
        live = [job for job in batch if not job.future.done()]  # a client that went away has a cancelled future
        if not live:
            return
        texts = [text for job in live for text in job.texts]
        try:
            answers = await loop.run_in_executor(self._executor, self.predict, texts)
        except Exception as exc:  # noqa: BLE001: one bad request must not fail the others
            self.stats["failed_batches"] += 1
            if len(live) == 1:
                _settle(live[0], exc=exc)
                return
            for job in live:  # find the request that fails: each alone
                await self._answer(loop, [job])
            return
        self.stats["requests"] += len(live)
        self.stats["texts"] += len(texts)
        self.stats["batches"] += 1
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(texts))
        start = 0
        for job in live:
            _settle(job, answers[start:start + len(job.texts)])
            start += len(job.texts)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _settle(job: _Job, answers: list[Any] | None = None, exc: BaseException | None = None) -> None:
    if job.future.done():
        return
    if exc is not None:
        job.future.set_exception(exc)
    else:
        job.future.set_result(answers)


# --- the application -----------------------------------------------------------------------------------------

def model_card(classifier: Any) -> dict[str, Any]:
    """What /info says about the model: the bundle's config.json fields a user reads, and the run it came from."""
    config = classifier.config or {}
    arch = config.get("arch", {})
    card: dict[str, Any] = {
        "path": str(classifier.path) if classifier.path else None,
        "format_version": config.get("format_version"),
        "made_by_nlp_pipeline": config.get("nlp_pipeline_version"),
        "target_type": classifier.target_type,
        "labels": list(classifier.label_names),
        "max_length": classifier.max_length,
        "vocab_size": len(classifier.vocab),
        "encoder": {key: arch.get(key) for key in ("rnn_type", "embedding_dim", "hidden_dim", "num_layers", "members",
                                                    "backward") if key in arch},
        "linear_blend": config.get("linear"),
        "metrics": config.get("metrics", {}),
        "tokenizer": classifier.tokenizer_settings,
    }
    if classifier.target_type == "multi_label":
        card["threshold"] = arch.get("threshold", 0.5)
    run_dir = Path(classifier.path).parent if classifier.path else None
    if run_dir is not None and (run_dir / "run.json").is_file():  # served from runs/<name>/ (model/ inside it)
        try:
            record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
            card["run"] = {k: record.get(k) for k in ("name", "written_at", "nlp_pipeline_version")} if isinstance(record, dict) else None
        except (OSError, ValueError):
            card["run"] = None
    return card


def versions() -> dict[str, str]:
    import fastapi
    import numpy
    import torch
    import uvicorn

    return {"nlp_pipeline": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__, "fastapi": fastapi.__version__, "uvicorn": uvicorn.__version__}


def create_app(classifier: Any, limits: ServeLimits = ServeLimits()) -> Any:
    """The FastAPI application answering for `classifier` (an export.bundle.Classifier)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import Response
    from pydantic import BaseModel, ConfigDict, Field
    from starlette.exceptions import HTTPException as StarletteHTTPException

    limits.validate()
    batcher = MicroBatcher(lambda texts: finite(classifier.predict(texts, batch_size=limits.max_batch)), limits)
    info = {"labels": list(classifier.label_names), "target_type": classifier.target_type,
            "model": model_card(classifier), "versions": versions(), "limits": asdict(limits)}

    @asynccontextmanager
    async def lifespan(app):
        worker = asyncio.create_task(batcher.run())
        try:
            yield
        finally:
            worker.cancel()
            batcher.close()

    class PredictRequest(BaseModel):
        """Exactly one of text and texts."""

        model_config = ConfigDict(extra="forbid", json_schema_extra={"oneOf": [{"required": ["text"]}, {"required": ["texts"]}]})
        text: str = Field(None, description="one text")  # None: absent (the schema lists the JSON types accepted)
        texts: list[str] = Field(None, min_length=1, max_length=limits.max_texts, description="texts, answered in this order")

    class Prediction(BaseModel):
        label: str | None = Field(None, description="the most probable label (single-label bundles)")
        labels: list[str] | None = Field(None, description="labels at or above the threshold (multi-label bundles)")
        probabilities: dict[str, float] | None = Field(None, description="label -> probability")
        value: float | None = Field(None, description="the predicted number (regression bundles)")

    class PredictResponse(BaseModel):
        predictions: list[Prediction]

    class Error(BaseModel):
        error: str

    class Health(BaseModel):
        status: str
        queued_texts: int
        stats: dict[str, int]

    def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        # ASCII escapes: any label or path (even one holding a lone surrogate) is valid JSON; finite() removed NaN
        body = json.dumps(payload, allow_nan=False, separators=(",", ":")).encode("ascii")
        return Response(body, status_code=status, media_type="application/json", headers=headers)

    def error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        return json_response({"error": message}, status, headers)

    errors = {code: {"model": Error} for code in (400, 413, 415, 500, 503)}
    app = FastAPI(title="nlp-pipeline classifier", version=__version__, lifespan=lifespan,
                  description=f"Predictions of the bundle {info['model']['path'] or '(in memory)'}: "
                              f"{classifier.target_type}, labels {', '.join(classifier.label_names[:20])}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:  # 404, 405, ...
        return error(exc.status_code, f"{exc.detail}: {request.method} {request.url.path}; this server answers "
                                      f"POST /predict, GET /health, GET /info (see /docs)", getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return error(400, str(exc)[:300])

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        return error(500, f"internal error ({type(exc).__name__}: {str(exc)[:200]}); the server keeps running")

    @app.post("/predict", response_model=None, responses={200: {"model": PredictResponse}, **errors},
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                  "schema": PredictRequest.model_json_schema(ref_template="#/components/schemas/{model}")}}}},
              summary="Classify one text or a list of texts")
    async def predict(request: Request) -> Response:
        try:
            body = await read_body(request, limits.max_request_bytes)
            texts = parse_predict_body(body, limits.max_texts)
            answers = await batcher.submit(texts)
        except RequestError as exc:
            return error(exc.status, exc.message, exc.headers)
        except Busy:
            return error(503, f"the server has {batcher.queued} texts queued (at most {limits.max_queued_texts}); "
                              f"retry shortly", {"Retry-After": "1"})
        return json_response({"predictions": answers})

    @app.get("/health", response_model=Health, summary="Whether the model is loaded and the batcher answers")
    async def health() -> Response:
        return json_response({"status": "ok", "queued_texts": batcher.queued, "stats": batcher.stats})

    @app.get("/info", summary="Labels, the model card, versions and limits")
    async def get_info() -> Response:
        return json_response(info)

    app.state.batcher = batcher
    app.state.info = info
    return app


async def read_body(request: Any, limit: int) -> bytes:
    """The request body, at most `limit` bytes (RequestError 413 past it, 415 unless JSON)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in JSON_TYPES:
        shown = f"Content-Type {kind[:60]!r}" if kind else "no Content-Type"
        raise RequestError(415, f"the body must be JSON: got {shown}; send Content-Type: application/json")
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise RequestError(400, f"Content-Length {declared[:40]!r} is not a number") from None
        if size > limit:
            raise RequestError(413, f"the body has {size:,} bytes; this server takes at most {limit:,} (--max-request-bytes)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"the body passed {limit:,} bytes, the most this server takes (--max-request-bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


# --- the command ---------------------------------------------------------------------------------------------

def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one), or a one-line ConfigError."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host!r} is not an address of this machine ({exc.strerror}); try 127.0.0.1") from None
    family, kind, _, _, address = infos[0]
    # proto IPPROTO_TCP, not 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on sockets that say TCP, and
    # without it every answer on a keep-alive connection waited ~40 ms for the client's delayed ACK
    sock = socket.socket(family, kind, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"port {port} on {host} is in use; pass another --port (or --port 0 for a free one)") from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise ConfigError(f"no permission to listen on {host}:{port}; use a port above 1023") from None
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pass another --host or --port") from None
    sock.set_inheritable(True)
    return sock


def serve(model: str | Path, host: str = "127.0.0.1", port: int = 8000, limits: ServeLimits = ServeLimits(),
          num_threads: int = 0, echo: Callable[[str], None] = print) -> None:
    """Load the bundle at `model`, listen on host:port and answer until interrupted (Ctrl-C or SIGTERM)."""
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise ConfigError(f"nlp-pipeline serve needs FastAPI and uvicorn ({exc.name} is missing): {EXTRA_HINT}") from None
    # before torch loads oneDNN: its cache of compiled primitives keeps one per input shape (1,024 by default), and
    # a server sees a new (batch, length) shape with nearly every batch: RSS grew 562 -> 690 MB over 100k requests
    # with the default, stayed at 496 -> 503 MB with 16, at no measurable speed cost (decision 0010)
    os.environ.setdefault(ONEDNN_CACHE, str(SERVE_ONEDNN_CACHE))
    from nlp_pipeline.export.bundle import Classifier, resolve_bundle_dir

    limits.validate()
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be 0 to 65535, got {port}")
    resolve_bundle_dir(model)  # a missing or wrong folder before the port is taken
    sock = bind(host, port)
    try:
        classifier = Classifier.load(model, num_threads=num_threads)
        app = create_app(classifier, limits)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", timeout_keep_alive=30,
                                server_header=False)
        server = uvicorn.Server(config)
        actual = sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        echo(f"serving {classifier.path} ({classifier.target_type}, {len(classifier.label_names)} labels) on "
             f"http://{shown}:{actual}  (POST /predict, GET /health, GET /info, docs at /docs; Ctrl-C stops)")
        with _quiet_stop_signals() as stops:
            server.run(sockets=[sock])
    finally:
        sock.close()
    echo(f"stopped ({signal.Signals(stops[0]).name if stops else 'shut down'}); "
         f"{server_stats(app)}")


def server_stats(app: Any) -> str:
    stats = app.state.batcher.stats
    return f"answered {stats['requests']:,} requests ({stats['texts']:,} texts) in {stats['batches']:,} batches"


@contextlib.contextmanager
def _quiet_stop_signals():
    """uvicorn stops gracefully on SIGINT/SIGTERM, then raises the signal again for the handler it found: here that
    handler only records it, so Ctrl-C or a SIGTERM ends `serve` with a line and exit status 0, not a
    KeyboardInterrupt or a death by signal. Yields the list of signals received. (Main thread only, as uvicorn.)"""
    stops: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield stops
        return
    previous = {number: signal.signal(number, lambda received, frame: stops.append(received))
                for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stops
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


__all__ = ["ServeLimits", "MicroBatcher", "create_app", "parse_predict_body", "serve", "bind"]
