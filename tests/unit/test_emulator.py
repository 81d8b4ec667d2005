"""The fleet emulator's pure half (goodput.sim.emulator): pods map to twin replicas,
the start-up delay holds, a terminating pod drains, a deleted pod loses what it ran,
each pod's exposition is its own replica's."""

from __future__ import annotations

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from goodput.api.spec import GoodputPolicySpec
from goodput.sim.emulator import Fleet, FleetSpec, PodView, exposition
from goodput.sim.traces import Trace


def _spec(startup: str = "20s") -> GoodputPolicySpec:
    return GoodputPolicySpec.model_validate(
        {
            "mode": "Enforce",
            "gpuBudget": 8,
            "pools": [
                {
                    "role": r,
                    "targetRef": {"name": r},
                    "minReplicas": 1,
                    "maxReplicas": 4,
                    "profile": "llama-3.1-8b-h100-tp1",
                }
                for r in ("prefill", "decode")
            ],
            "slo": {"ttft": "500ms", "itl": "50ms", "attainment": 0.9},
            "behavior": {"interval": "10s", "startupDelay": startup, "forecastHorizon": "30s"},
        }
    )


def _trace(rate: float = 20.0, seconds: float = 120.0, out: int = 200) -> Trace:
    rng = np.random.default_rng(3)
    n = int(rate * seconds)
    return Trace(
        "poisson",
        np.sort(rng.random(n) * seconds),
        rng.integers(200, 1500, n),
        np.full(n, out, dtype=np.int64),
    )


def _fleet(**kw: object) -> Fleet:
    return Fleet(FleetSpec("ns", "chat", _spec(), _trace(), **kw))  # type: ignore[arg-type]


def _pods(*names: str, ready: bool = True, terminating: bool = False) -> list[PodView]:
    return [PodView(n, n.split("-")[0], ready, terminating) for n in names]


def test_warm_start_serves_at_once_and_later_pods_wait_for_the_startup_delay() -> None:
    f = _fleet()
    ch = f.sync(0.0, _pods("prefill-a", "decode-a"))
    assert [c.what for c in ch] == ["serve-now", "serve-now"]
    assert set(f.exposed()) == {"prefill-a", "decode-a"}
    ch = f.sync(5.0, _pods("prefill-a", "decode-a", "decode-b"))
    assert [(c.pod, c.what) for c in ch] == [("decode-b", "start")]
    f.advance(24.9)
    assert "decode-b" not in f.exposed() and "decode-b" not in f.pod_samples()
    assert f.replicas()["decode"] == {"starting": 1, "serving": 1, "draining": 0}
    f.advance(25.1)
    assert "decode-b" in f.exposed() and "decode-b" in f.pod_samples()


def test_an_unready_pod_gets_no_replica_and_a_terminating_one_drains() -> None:
    f = _fleet()
    f.sync(0.0, _pods("prefill-a", "decode-a", "decode-b") + _pods("decode-c", ready=False))
    assert f.replicas()["decode"]["serving"] == 2
    f.advance(30.0)
    ch = f.sync(30.0, _pods("prefill-a", "decode-a") + _pods("decode-b", terminating=True))
    assert [(c.pod, c.what) for c in ch] == [("decode-b", "drain")]
    assert ch[0].inflight > 0  # 20 req/s x 200 tokens: the decode pods are busy
    assert f.drained() == []  # still running its requests
    # Draining: no new requests, its running ones finish; then it is gone (no series),
    # and its pod, still terminating, is one a kubelet would now remove.
    f.advance(60.0)
    assert "decode-b" not in f.exposed()
    assert f.drained() == ["decode-b"]
    assert f.lost == []
    served = np.asarray(f.twin.served_by)
    rid = f._bound["decode-b"].replica
    arrived_after = np.asarray(f.twin.arrival) > 30.5
    assert not np.any(served[arrived_after] == rid)


def test_a_pod_deleted_before_it_drained_loses_its_running_requests() -> None:
    f = _fleet()
    f.sync(0.0, _pods("prefill-a", "decode-a", "decode-b"))
    f.advance(30.0)
    running = f.pod_samples()["decode-b"].gauges["vllm:num_requests_running"]
    assert running > 0
    ch = f.sync(30.0, _pods("prefill-a", "decode-a"))  # gone: no terminating state seen
    assert [(c.pod, c.what, c.inflight) for c in ch] == [("decode-b", "gone", int(running))]
    assert len(f.lost) == int(running)
    f.advance(200.0)
    o = f.truth()
    assert np.all(np.isnan(o.ttft[f.lost]) | np.isnan(o.itl[f.lost]))
    assert not o.met[f.lost].any()
    # Everything else arrived and finished (the other pods carry the load).
    done = ~np.isnan(np.asarray(f.twin.finish))
    assert done.sum() == len(o.arrival) - len(f.lost)


def test_each_pods_exposition_is_its_own_replicas_with_only_model_name() -> None:
    f = _fleet()
    f.sync(0.0, _pods("prefill-a", "decode-a", "decode-b"))
    f.advance(60.0)
    samples = f.pod_samples()
    total = 0.0
    for pod in ("decode-a", "decode-b"):
        fams = {
            m.name: m for m in text_string_to_metric_families(exposition(samples[pod]).decode())
        }
        (s,) = [s for s in fams["vllm:request_success"].samples if s.name.endswith("_total")]
        assert set(s.labels) == {"model_name"}
        assert s.value == samples[pod].counters["vllm:request_success_total"]
        total += s.value
        assert not fams["vllm:prompt_tokens"].samples  # a decode pod: no prompt side
    done = int(np.sum(np.asarray(f.twin.finish) <= 60.0))
    assert total == done > 0
    text = exposition(samples["prefill-a"]).decode()
    fams = {m.name: m for m in text_string_to_metric_families(text)}
    assert fams["vllm:time_to_first_token_seconds"].samples
    assert not fams["vllm:request_success"].samples
