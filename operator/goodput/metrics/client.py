"""Prometheus HTTP API access for the operator: prometheus-api-client underneath,
bounded in time, retried with backoff, and run in a worker thread so kopf's event
loop never blocks on the network.

The operator reads the bearer token from the policy's Secret and writes any CA
bundle to a file; this client only takes the token string and the CA file path.
The token is sent as an ``Authorization`` header and never logged.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from goodput.api.spec import Metrics

log = logging.getLogger(__name__)

_TRANSIENT_STATUS = ("HTTP Status Code 408", "HTTP Status Code 429", "HTTP Status Code 5")


@dataclass(frozen=True)
class Sample:
    """One element of an instant-query result."""

    labels: dict[str, str]
    timestamp: float
    value: float


class QueryError(Exception):
    """A query that failed after its retries. ``transient`` errors (connection, timeout,
    408/429/5xx) were retried; the others (bad PromQL, 401/403, TLS) were not."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class PrometheusClient:
    """``await client.query(promql, at)`` -> list of :class:`Sample`, or :class:`QueryError`.

    Every attempt is bounded by ``timeout_s`` (connect and read); at most ``attempts``
    tries with exponential backoff starting at ``backoff_s`` (capped at
    ``max_backoff_s``); an optional per-call ``deadline`` (monotonic seconds) cuts
    both the retries and each attempt's timeout.
    """

    def __init__(
        self,
        url: str,
        *,
        bearer_token: str | None = None,
        ca_file: str | None = None,
        insecure_skip_verify: bool = False,
        timeout_s: float = 5.0,
        attempts: int = 3,
        backoff_s: float = 0.2,
        max_backoff_s: float = 2.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._sleep = sleep
        session = requests.Session()
        # A CA bundle path verifies against that CA; otherwise the system store,
        # unless verification is explicitly disabled.
        session.verify = ca_file if ca_file else not insecure_skip_verify
        headers = {"Authorization": f"Bearer {bearer_token}"} if bearer_token else None
        # Retries happen here, with our own bounds; the library's urllib3 retries are off.
        self._prom = PrometheusConnect(
            url=self.url,
            headers=headers,
            session=session,
            retry=Retry(total=0, connect=0, read=0, redirect=0, status=0, raise_on_status=False),
        )

    @classmethod
    def for_policy(
        cls, metrics: Metrics, *, bearer_token: str | None = None, ca_file: str | None = None
    ) -> PrometheusClient:
        """The client for a policy's ``spec.metrics``; the operator passes the token read
        from ``auth.bearerTokenSecretRef`` and a file holding ``auth.caSecretRef``."""
        insecure = bool(metrics.auth and metrics.auth.insecure_skip_verify)
        return cls(
            metrics.prometheus_url,
            bearer_token=bearer_token,
            ca_file=ca_file,
            insecure_skip_verify=insecure,
        )

    def close(self) -> None:
        self._prom.close()

    def query_sync(self, promql: str, at: float, timeout_s: float | None = None) -> list[Sample]:
        """One attempt, blocking: for threads and scripts, never for the event loop."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        try:
            raw = self._prom.custom_query(
                promql,
                params={"time": f"{at:.3f}", "timeout": f"{max(1, round(timeout * 1000))}ms"},
                timeout=timeout,
            )
        except PrometheusApiClientException as e:
            msg = str(e)
            raise QueryError(msg[:500], transient=msg.startswith(_TRANSIENT_STATUS)) from e
        except requests.exceptions.SSLError as e:  # a wrong CA does not heal on retry
            raise QueryError(f"TLS: {e}"[:500], transient=False) from e
        except (requests.ConnectionError, requests.Timeout) as e:
            raise QueryError(f"{type(e).__name__}: {e}"[:500], transient=True) from e
        except (requests.RequestException, ValueError, KeyError, TypeError) as e:
            raise QueryError(f"{type(e).__name__}: {e}"[:500], transient=False) from e
        return parse_result(raw)

    async def query(self, promql: str, at: float, *, deadline: float | None = None) -> list[Sample]:
        """The query in a worker thread, retried on transient errors within the bounds."""
        delay = self.backoff_s
        last: QueryError | None = None
        for attempt in range(self.attempts):
            timeout = self.timeout_s
            if deadline is not None:
                timeout = min(timeout, deadline - time.monotonic())
                if timeout <= 0.05:
                    break
            try:
                return await asyncio.to_thread(self.query_sync, promql, at, timeout)
            except QueryError as e:
                last = e
                if not e.transient or attempt + 1 >= self.attempts:
                    break
                log.debug("prometheus query failed (attempt %d): %s", attempt + 1, e)
            pause = min(delay, self.max_backoff_s)
            if deadline is not None and time.monotonic() + pause >= deadline:
                break
            await self._sleep(pause)
            delay *= 2
        raise last or QueryError("deadline reached before the query could run", transient=True)


def parse_result(raw: Any) -> list[Sample]:
    """The ``data.result`` of an instant query (vector or scalar) as samples.

    Values Prometheus sends as strings ("NaN", "+Inf") become floats; deciding what is
    garbage is the caller's business.
    """
    if isinstance(raw, list) and len(raw) == 2 and not isinstance(raw[0], dict):
        return [Sample({}, float(raw[0]), _to_float(raw[1]))]  # scalar result
    if not isinstance(raw, list):
        raise QueryError(f"unexpected result type {type(raw).__name__}", transient=False)
    out = []
    for item in raw:
        if not isinstance(item, dict) or "value" not in item:
            raise QueryError(
                "range vector or malformed result; expected an instant vector", transient=False
            )
        ts, val = item["value"]
        out.append(Sample(dict(item.get("metric", {})), float(ts), _to_float(val)))
    return out


def _to_float(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan
