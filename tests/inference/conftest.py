"""Fixtures of AI analysis: S3 storage only, a RIS stand-in receiving webhooks, `finished` and `wait_for`. (The
reference services, archived studies and the in-process worker are in tests/conftest.py: billing uses
them too.)

Imports of Django code stay inside the fixtures: pytest loads this file before Django is set up
when it is named on the command line."""

import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@pytest.fixture(scope="session")
def storage_backend() -> dict[str, str]:
    """AI analysis reads and writes through the archive, whose tests cover both backends: S3 suffices here."""
    return {"S3_ENDPOINT_URL": os.environ["S3_ENDPOINT_URL"]}


def finished(analysis):
    """The analysis, read again, once it has ended with its SR (a result or a refusal) stored; else None."""
    from inference.records import Analysis

    analysis.refresh_from_db()
    return analysis if analysis.status in Analysis.FINAL and analysis.sr_sop_instance_uid else None


def wait_for(condition, timeout: float = 60.0, interval: float = 0.2):
    """Poll until `condition()` is truthy; returns its value, or fails the test with what it last saw."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            assert value, f"still not true after {timeout} s"
            return value
        time.sleep(interval)


class Receiver:
    """A RIS stand-in: records each POST; hangs for the first `hang_first`, then answers `fail_status` to the
    next `fail_first` (or to all with `always_fail`), then 200."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.hang_first = 0
        self.fail_first = 0
        self.always_fail = False
        self.fail_status = 500
        self.released = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver._lock:
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    n = len(receiver.requests)
                if n <= receiver.hang_first:
                    receiver.released.wait(30)
                    return
                failing = receiver.always_fail or n <= receiver.hang_first + receiver.fail_first
                self.send_response(receiver.fail_status if failing else 200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/medai"

    def count(self) -> int:
        with self._lock:
            return len(self.requests)


@pytest.fixture
def receiver():
    server = Receiver()
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.released.set()
    server.server.shutdown()
    server.server.server_close()
