"""The Prometheus client's parsing and its retry/backoff/deadline rules (no network:
one attempt is replaced by a script)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence

import pytest

from goodput.api.spec import Metrics
from goodput.metrics.client import PrometheusClient, QueryError, Sample, parse_result


def test_parse_vector_with_special_values() -> None:
    raw = [
        {"metric": {"le": "0.5"}, "value": [100.5, "3"]},
        {"metric": {"le": "+Inf"}, "value": [100.5, "NaN"]},
    ]
    out = parse_result(raw)
    assert out[0] == Sample({"le": "0.5"}, 100.5, 3.0)
    assert math.isnan(out[1].value)


def test_parse_scalar() -> None:
    assert parse_result([100.0, "+Inf"]) == [Sample({}, 100.0, math.inf)]


def test_parse_unparseable_value_is_nan() -> None:
    assert math.isnan(parse_result([{"metric": {}, "value": [1, "abc"]}])[0].value)


@pytest.mark.parametrize("raw", [{"x": 1}, [{"metric": {}, "values": [[1, "2"]]}]])
def test_parse_rejects_non_instant_results(raw: object) -> None:
    with pytest.raises(QueryError) as e:
        parse_result(raw)
    assert not e.value.transient


class Scripted(PrometheusClient):
    def __init__(self, outcomes: Sequence[Exception | list[Sample]], **kw: float) -> None:
        self.sleeps: list[float] = []

        async def sleep(s: float) -> None:
            self.sleeps.append(s)

        super().__init__("http://127.0.0.1:1", sleep=sleep, backoff_s=0.2, **kw)  # type: ignore[arg-type]
        self.outcomes = list(outcomes)
        self.timeouts: list[float] = []

    def query_sync(self, promql: str, at: float, timeout_s: float | None = None) -> list[Sample]:
        self.timeouts.append(timeout_s or 0.0)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


OK = [Sample({}, 1.0, 2.0)]


def transient() -> QueryError:
    return QueryError("ConnectionError", transient=True)


def test_retries_transient_errors_with_exponential_backoff() -> None:
    c = Scripted([transient(), transient(), OK])
    assert asyncio.run(c.query("up", 1.0)) == OK
    assert c.sleeps == [0.2, 0.4]


def test_gives_up_after_the_attempts() -> None:
    c = Scripted([transient(), transient(), transient(), OK])
    with pytest.raises(QueryError):
        asyncio.run(c.query("up", 1.0))
    assert c.sleeps == [0.2, 0.4]
    assert len(c.outcomes) == 1  # the fourth attempt never ran


def test_bad_query_is_not_retried() -> None:
    c = Scripted([QueryError("HTTP Status Code 400", transient=False), OK])
    with pytest.raises(QueryError):
        asyncio.run(c.query("sum(", 1.0))
    assert c.sleeps == []


def test_backoff_is_capped() -> None:
    c = Scripted([transient()] * 5 + [OK], attempts=6, max_backoff_s=0.5)
    asyncio.run(c.query("up", 1.0))
    assert c.sleeps == [0.2, 0.4, 0.5, 0.5, 0.5]


def test_deadline_bounds_attempt_timeout_and_retries() -> None:
    c = Scripted([transient(), OK], timeout_s=5.0)
    with pytest.raises(QueryError):
        asyncio.run(c.query("up", 1.0, deadline=time.monotonic() + 0.1))
    assert len(c.timeouts) == 1 and c.timeouts[0] <= 0.1  # no time left for a retry


def test_past_deadline_never_queries() -> None:
    c = Scripted([OK])
    with pytest.raises(QueryError):
        asyncio.run(c.query("up", 1.0, deadline=time.monotonic() - 1))
    assert c.timeouts == []


def test_real_connection_refused_is_transient() -> None:
    # Port 1 on loopback refuses at once: no timeout is involved.
    c = PrometheusClient("http://127.0.0.1:1", attempts=1)
    with pytest.raises(QueryError) as e:
        c.query_sync("up", 1.0)
    assert e.value.transient
    c.close()


def test_for_policy_reads_url_and_tls_setting() -> None:
    m = Metrics.model_validate(
        {"prometheusUrl": "https://prom.example:9091/", "auth": {"insecureSkipVerify": True}}
    )
    c = PrometheusClient.for_policy(m, bearer_token="t")
    assert c.url == "https://prom.example:9091"
    assert c._prom._session.verify is False
    assert c._prom.headers == {"Authorization": "Bearer t"}
    with_ca = PrometheusClient.for_policy(Metrics(), ca_file="/etc/ca.pem")
    assert with_ca._prom._session.verify == "/etc/ca.pem"
    assert with_ca._prom.headers is None
