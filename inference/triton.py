"""The Triton client the Celery workers call models through, and where Triton finds the reference models.

Why more than `client.infer`: a worker must tell a model server that is down (transient: retry with
backoff, then let the analysis retry later) from a model that answers the wrong thing (permanent: no
retry helps), must not hammer a dead server from every worker (a per-model circuit breaker), and
must check every answer against the tensors the profile expects before reading it.

Errors, and who retries them:
- `TritonUnavailable`: unreachable, connection refused or reset, deadline exceeded, gRPC UNAVAILABLE
  or INTERNAL, HTTP 5xx, after `TRITON_RETRIES` retries here. Transient.
- `ModelNotReady`: the server answers but does not serve the model (or version): unknown, unloaded,
  loading. Not retried here (asking again at once does not load it) but transient for the caller,
  since a model repository is reloaded while the platform runs.
- `CircuitOpen`: the breaker of that model is open; Triton was not called. Transient.
- `BadModelAnswer`: a missing output, a wrong dtype or shape, or a request the model rejects as not
  its tensors (gRPC INVALID_ARGUMENT, HTTP 4xx): the service and its model do not agree. Permanent.
Log lines name the model, the request id, the attempt and timings only, never tensors or messages.
"""

import atexit
import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path

import numpy as np
from django.conf import settings
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

MODEL_REPOSITORY = Path(__file__).resolve().parent / "models"
MAX_BACKOFF_SECONDS = 30.0
_TRANSIENT_STATUSES = {"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.INTERNAL",
                       "StatusCode.RESOURCE_EXHAUSTED", "StatusCode.CANCELLED", "StatusCode.UNKNOWN"}
_NOT_READY_STATUSES = {"StatusCode.NOT_FOUND", "404"}

logger = logging.getLogger(__name__)


class TritonError(Exception):
    """Any failure of a model call."""


class TritonUnavailable(TritonError):
    """The server could not be reached or failed, retries included; the caller may retry later."""


class ModelNotReady(TritonError):
    """The server does not serve the model (version) now; the caller may retry later."""


class CircuitOpen(TritonError):
    """The model failed too often in a row; it is not called until its breaker's reset time passed."""


class BadModelAnswer(TritonError):
    """The model and the caller disagree on tensors; retrying cannot help."""


@dataclass(frozen=True)
class OutputSpec:
    """An output the caller reads: its numpy dtype and shape, -1 matching any size."""

    dtype: type | str
    shape: tuple[int, ...]

    def check(self, name: str, array: np.ndarray | None) -> np.ndarray:
        if array is None:
            raise BadModelAnswer(f"output {name} missing")
        if array.dtype != np.dtype(self.dtype):
            raise BadModelAnswer(f"output {name}: dtype {array.dtype}, expected {np.dtype(self.dtype)}")
        if array.ndim != len(self.shape) or any(e not in (-1, a) for a, e in zip(array.shape, self.shape, strict=True)):
            raise BadModelAnswer(f"output {name}: shape {list(array.shape)}, expected {list(self.shape)}")
        return array


@dataclass(frozen=True)
class InferAnswer:
    outputs: dict[str, np.ndarray]
    model_version: str = ""  # the version that answered, "" when the server did not say


@dataclass
class _Breaker:
    """Closed while failures < limit; open for the reset time; then half-open: one trial call at a time."""

    failures: int = 0
    opened_at: float | None = None
    trial: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def allow(self, reset_s: float) -> bool:
        with self.lock:
            if self.opened_at is None:
                return True
            if self.trial or time.monotonic() - self.opened_at < reset_s:
                return False
            self.trial = True
            return True

    def record(self, ok: bool, limit: int) -> None:
        with self.lock:
            self.trial = False
            self.failures = 0 if ok else self.failures + 1
            if ok:
                self.opened_at = None
            elif self.failures >= limit:
                self.opened_at = time.monotonic()


_lock = threading.Lock()
_breakers: dict[tuple[str, str, str], _Breaker] = {}
_clients: dict[tuple, object] = {}


def breakers_reset() -> None:
    """Close every breaker (tests, or an operator after a fixed outage)."""
    with _lock:
        _breakers.clear()


def infer(
    model: str, inputs: dict[str, np.ndarray], outputs: dict[str, OutputSpec], *, version: str = "",
    priority: int = 0, timeout_s: float | None = None, request_id: str = "", url: str | None = None,
    protocol: str | None = None,
) -> InferAnswer:
    """One inference, checked against `outputs`. `priority` 1 is the most urgent, 0 the model's default.
    `url`, `protocol` and `timeout_s` default to the TRITON_* settings."""
    url = url or settings.TRITON_URL
    protocol = protocol or settings.TRITON_PROTOCOL
    timeout_s = timeout_s if timeout_s is not None else settings.TRITON_TIMEOUT_SECONDS
    with _lock:
        breaker = _breakers.setdefault((protocol, url, model), _Breaker())
    if not breaker.allow(settings.TRITON_BREAKER_RESET_SECONDS):
        raise CircuitOpen(f"model {model}: circuit open")
    answered = False  # the server answered, whatever it said: the breaker counts outages only
    try:
        answer = _with_retries(model, inputs, version, priority, timeout_s, request_id, url, protocol)
        answered = True
    except BadModelAnswer:
        answered = True
        raise
    finally:
        breaker.record(answered, settings.TRITON_BREAKER_FAILURES)
    return InferAnswer({name: spec.check(name, answer.as_numpy(name)) for name, spec in outputs.items()},
                       _served_version(answer, protocol))


def _with_retries(model, inputs, version, priority, timeout_s, request_id, url, protocol):
    """Transient failures are retried TRITON_RETRIES times, after 1, 2, 4... x TRITON_RETRY_BACKOFF_SECONDS."""
    attempt = 0
    while True:
        started = time.monotonic()
        try:
            answer = _call(model, inputs, version, priority, timeout_s, request_id, url, protocol)
        except TritonUnavailable:
            logger.warning("triton %s request %s attempt %s failed after %.2f s", model, request_id, attempt + 1,
                           time.monotonic() - started)
            _client_drop(protocol, url, timeout_s)
            if attempt >= settings.TRITON_RETRIES:
                raise
            time.sleep(min(settings.TRITON_RETRY_BACKOFF_SECONDS * 2**attempt, MAX_BACKOFF_SECONDS))
            attempt += 1
            continue
        logger.info("triton %s request %s answered in %.3f s", model, request_id, time.monotonic() - started)
        return answer


def _call(model, inputs, version, priority, timeout_s, request_id, url, protocol):
    """One attempt, its failure translated into this module's errors."""
    module = _module(protocol)
    tensors = []
    for name, array in inputs.items():
        tensor = module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    extra = {"client_timeout": timeout_s} if protocol == "grpc" else {}
    try:
        return _client(protocol, url, timeout_s).infer(
            model, tensors, model_version=version, request_id=request_id, priority=priority,
            **extra,
        )
    except InferenceServerException as exc:
        status = str(exc.status())
        message = exc.message() or ""
        if status in _NOT_READY_STATUSES or "unknown model" in message or "not ready" in message:
            raise ModelNotReady(f"model {model} version {version or 'latest'} not served") from exc
        if status in _TRANSIENT_STATUSES or status.startswith("5"):
            raise TritonUnavailable(f"model {model}: {status}") from exc
        raise BadModelAnswer(f"model {model} rejected the request: {status}") from exc
    except (OSError, HTTPException) as exc:  # HTTP: refused, reset, closed, timed out
        raise TritonUnavailable(f"model {model}: {type(exc).__name__}") from exc


def _module(protocol: str):
    if protocol == "grpc":
        import tritonclient.grpc as module
    elif protocol == "http":
        import tritonclient.http as module
    else:
        raise ValueError(f"TRITON_PROTOCOL must be grpc or http, not {protocol!r}")
    return module


def _client_key(protocol: str, url: str, timeout_s: float) -> tuple:
    """gRPC clients are thread-safe and take the timeout per call; an HTTP client (geventhttpclient) is
    neither, so it is kept per thread and per timeout."""
    if protocol == "grpc":
        return (protocol, url)
    return (protocol, url, timeout_s, threading.get_ident())


def _client(protocol: str, url: str, timeout_s: float):
    key = _client_key(protocol, url, timeout_s)
    with _lock:
        client = _clients.get(key)
        if client is None:
            module = _module(protocol)
            if protocol == "grpc":
                client = module.InferenceServerClient(url)
            else:
                client = module.InferenceServerClient(url.removeprefix("http://"), connection_timeout=timeout_s,
                                                      network_timeout=timeout_s)
            _clients[key] = client
    return client


def _client_drop(protocol: str, url: str, timeout_s: float) -> None:
    """A fresh connection for the next attempt, not a gRPC channel stuck in its reconnect backoff."""
    with _lock:
        client = _clients.pop(_client_key(protocol, url, timeout_s), None)
    if client is not None:
        _close_quietly(client)


@atexit.register
def _clients_close() -> None:
    """Close the cached connections at exit, while the gRPC module is still there: a client left to its
    finaliser after the module's teardown prints a traceback instead of closing."""
    with _lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        _close_quietly(client)


def _close_quietly(client) -> None:
    with contextlib.suppress(Exception):  # a connection that failed may fail to close too
        client.close()


def _served_version(answer, protocol: str) -> str:
    response = answer.get_response()
    return str(response.model_version if protocol == "grpc" else response.get("model_version", ""))
