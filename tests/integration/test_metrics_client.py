"""PrometheusClient over real HTTP(S) against a scripted Prometheus API stub: bearer
token, custom CA, retries on 5xx, no retry on 400 or TLS failure, bounded timeouts,
and kopf's event loop keeps running while a query waits."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from goodput.metrics.client import PrometheusClient, QueryError, Sample
from tests.harness.pki import make_pki

pytestmark = pytest.mark.integration

VECTOR = {"status": "success", "data": {"resultType": "vector", "result": [
    {"metric": {"job": "x"}, "value": [1234.5, "42"]}
]}}  # fmt: skip


class Stub:
    """Answers /api/v1/query with scripted (status, delay) pairs, then 200s."""

    def __init__(self, script: list[tuple[int, float]] | None = None, *, tls: Any = None) -> None:
        self.script = list(script or [])
        self.requests: list[dict[str, Any]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlparse(self.path)
                stub.requests.append(
                    {
                        "path": url.path,
                        "params": urllib.parse.parse_qs(url.query),
                        "auth": self.headers.get("Authorization"),
                    }
                )
                status, delay = stub.script.pop(0) if stub.script else (200, 0.0)
                time.sleep(delay)
                body = json.dumps(
                    VECTOR if status == 200 else {"status": "error", "error": "x"}
                ).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stubs() -> Iterator[list[Stub]]:
    made: list[Stub] = []
    yield made
    for s in made:
        s.stop()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_bearer_token_time_and_timeout_are_sent(stubs: list[Stub]) -> None:
    stub = Stub()
    stubs.append(stub)
    client = PrometheusClient(stub.url, bearer_token="s3cret", timeout_s=2.0)
    assert run(client.query("up", 1234.5)) == [Sample({"job": "x"}, 1234.5, 42.0)]
    req = stub.requests[0]
    assert req["path"] == "/api/v1/query"
    assert req["auth"] == "Bearer s3cret"
    assert req["params"] == {"query": ["up"], "time": ["1234.500"], "timeout": ["2000ms"]}


def test_server_errors_are_retried(stubs: list[Stub]) -> None:
    stub = Stub([(503, 0.0), (500, 0.0)])
    stubs.append(stub)
    client = PrometheusClient(stub.url, attempts=3, backoff_s=0.05)
    assert run(client.query("up", 1.0))[0].value == 42.0
    assert len(stub.requests) == 3


def test_bad_request_is_not_retried(stubs: list[Stub]) -> None:
    stub = Stub([(400, 0.0)])
    stubs.append(stub)
    client = PrometheusClient(stub.url, attempts=3, backoff_s=0.05)
    with pytest.raises(QueryError) as e:
        run(client.query("sum(", 1.0))
    assert not e.value.transient
    assert len(stub.requests) == 1


def test_custom_ca(tmp_path: Path, stubs: list[Stub]) -> None:
    pki = make_pki(tmp_path / "pki")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.server_crt, pki.server_key)
    stub = Stub(tls=ctx)
    stubs.append(stub)
    trusted = PrometheusClient(stub.url, ca_file=str(pki.ca_crt), bearer_token="t")
    assert run(trusted.query("up", 1.0))[0].value == 42.0
    assert stub.requests[-1]["auth"] == "Bearer t"
    untrusted = PrometheusClient(stub.url, attempts=3)  # system CAs do not know this one
    with pytest.raises(QueryError) as e:
        run(untrusted.query("up", 1.0))
    assert not e.value.transient and str(e.value).startswith("TLS")
    assert len(stub.requests) == 1  # the TLS failure never reached the handler, nor retried


def test_timeouts_are_bounded_and_the_event_loop_keeps_running(stubs: list[Stub]) -> None:
    stub = Stub([(200, 3.0), (200, 3.0)])
    stubs.append(stub)
    client = PrometheusClient(stub.url, timeout_s=0.5, attempts=2, backoff_s=0.1)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    async def main() -> float:
        task = asyncio.create_task(ticker())
        start = time.monotonic()
        with pytest.raises(QueryError) as e:
            await client.query("up", 1.0)
        elapsed = time.monotonic() - start
        task.cancel()
        assert e.value.transient
        return elapsed

    elapsed = run(main())
    # Two 0.5 s attempts and a 0.1 s pause, not two 3 s waits; the loop ticked throughout.
    assert elapsed < 2.5
    assert ticks >= 10
