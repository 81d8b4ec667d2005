"""The pure parts of `kubectl goodput`: when approve refuses, what explain says, and
what-if plans made offline with the real planner (the cluster part is
tests/integration/test_kubectl_goodput.py)."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from goodput.kubectl_plugin import (
    Kube,
    Policy,
    _load_factor,
    _scaled_load,
    approval_problem,
    approve,
    explain_text,
    offline_plan,
    whatif_text,
)
from goodput.planner.cli import EXAMPLE_OBSERVATION

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def _condition(type_: str, status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-01-01T11:00:00Z",
    }


def _object(
    mode: str = "Recommend",
    age_s: float = 5,
    ready: str = "True",
    hold: bool = False,
    reason: str = "RecommendOnly",
    generation: int = 1,
    observed_generation: int = 1,
) -> dict[str, Any]:
    pool = {"minReplicas": 1, "maxReplicas": 8, "profile": "llama-3.1-8b-h100-tp1"}
    return {
        "metadata": {"name": "chat", "namespace": "llm", "generation": generation},
        "spec": {
            "mode": mode,
            "gpuBudget": 8,
            "pools": [
                {"role": "prefill", "targetRef": {"name": "prefill"}, **pool},
                {"role": "decode", "targetRef": {"name": "decode"}, **pool},
            ],
            "slo": {"ttft": "500ms", "itl": "50ms", "attainment": 0.9},
            "metrics": {"prometheusUrl": "http://prom:9090", "preset": "vllm"},
            "behavior": {"interval": "15s"},
        },
        "status": {
            "observedGeneration": observed_generation,
            "gpuBudget": 8,
            "gpusAllocated": 4,
            "pools": [
                {
                    "role": "prefill",
                    "currentReplicas": 2,
                    "desiredReplicas": 3,
                    "gpusPerReplica": 1,
                },
                {"role": "decode", "currentReplicas": 2, "desiredReplicas": 4, "gpusPerReplica": 1},
            ],
            "conditions": [
                _condition(
                    "Ready", ready, "RecommendOnly" if ready == "True" else "MetricsMissing"
                ),
                _condition("BudgetSatisfiable", "True", "Succeeded"),
                _condition("ScalingLimited", "True", "GpuBudget", "GpuBudget: the budget binds"),
            ],
            "lastDecision": {
                "time": (NOW - timedelta(seconds=age_s)).isoformat(),
                "reason": reason,
                "message": "Recommend mode, nothing applied: scaled up",
                "hold": hold,
                "pools": {"prefill": 3, "decode": 4} if not hold else {"prefill": 2, "decode": 2},
                "totalGpus": 7 if not hold else 4,
                "bindingConstraint": "GpuBudget",
                "runnerUp": {
                    "pools": {"prefill": 2, "decode": 5},
                    "totalGpus": 7,
                    "predictedGoodput": 900.0,
                    "predictedAttainment": 0.8,
                },
            },
            "goodput": {
                "observedTokensPerSecond": 800.0,
                "observedAttainment": 0.7,
                "predictedTokensPerSecond": 1000.0,
                "predictedAttainment": 0.92,
            },
            "lastObservation": EXAMPLE_OBSERVATION.model_dump(mode="json", exclude_none=True),
        },
    }


def test_approve_refuses_with_reasons() -> None:
    ok = Policy.from_object(_object())
    assert approval_problem(ok, NOW) is None
    cases = {
        "is in mode Enforce": _object(mode="Enforce"),
        "is not Ready (MetricsMissing": _object(ready="False"),
        "is 60s old, more than 3 intervals (15s each)": _object(age_s=60),
        "changed (generation 2) since the decision (generation 1)": _object(generation=2),
        "is a hold (MetricsMissing)": _object(hold=True, reason="MetricsMissing"),
    }
    for words, obj in cases.items():
        problem = approval_problem(Policy.from_object(obj), NOW)
        assert problem is not None and words in problem, (words, problem)
    # A short interval still allows 30 s, so a slow kubectl is not refused at once.
    fast = _object(age_s=20)
    fast["spec"]["behavior"]["interval"] = "2s"
    assert approval_problem(Policy.from_object(fast), NOW) is None


def test_gpus_per_replica_come_from_the_status_when_the_spec_omits_them() -> None:
    p = Policy.from_object(_object())
    assert p.gpus_per_replica() == {"prefill": 1, "decode": 1}
    assert p.running() == {"prefill": 2, "decode": 2}
    assert p.decided() == {"prefill": 3, "decode": 4}


def test_explain_names_the_limit_runner_up_conditions_and_changes() -> None:
    text = explain_text(Policy.from_object(_object()), NOW)
    assert "Decision, 5s ago: RecommendOnly" in text
    assert "Bound by: GpuBudget: no pool below its maxReplicas" in text
    assert "Runner-up: prefill 2, decode 5 (7 GPUs), predicted 900 tokens/s at 0.800." in text
    assert "Writes: none (mode Recommend" in text
    assert "ScalingLimited True (GpuBudget)" in text and "BudgetSatisfiable" not in text
    assert "kubectl goodput approve chat -n llm" in text
    assert "gpuBudget 9 (+1): " in text  # computed by the planner
    hold = explain_text(Policy.from_object(_object(hold=True, reason="MetricsMissing")), NOW)
    assert "MetricsMissing (a hold: nothing changes)" in hold
    assert "Bound by: nothing (a hold: no plan was made)." in hold
    assert "the serving metrics" in hold


def test_whatif_plans_offline_with_the_real_planner() -> None:
    p = Policy.from_object(_object())
    base, _ = offline_plan(p)
    more, _ = offline_plan(p, budget=16)
    assert more.budget == 16 and more.total_gpus <= 16 and base.total_gpus <= 8
    assert more.predicted_goodput >= base.predicted_goodput
    text, alt = whatif_text(p, 16, None, NOW)
    assert alt == more
    assert "What if gpuBudget 16 (now 8)" in text
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines()[4:] if line.strip()}
    assert rows["gpuBudget"] == ["8", "8", "8", "16"]
    assert rows["GPUs"] == ["4", "7", str(base.total_gpus), str(more.total_gpus)]


def test_load_factor_scales_rates_and_queues_not_shapes() -> None:
    obs = _scaled_load(EXAMPLE_OBSERVATION, 2.0)
    pre, before = obs.pools["prefill"], EXAMPLE_OBSERVATION.pools["prefill"]
    assert pre.arrival_rate_rps == 2 * (before.arrival_rate_rps or 0)
    assert pre.waiting_requests == 2 * (before.waiting_requests or 0)
    assert pre.mean_input_tokens == before.mean_input_tokens
    assert pre.ttft == before.ttft
    for text, k in (("x1.5", 1.5), ("1.5x", 1.5), ("0.5", 0.5), ("X2", 2.0)):
        assert _load_factor(text) == k
    for bad in ("lots", "0", "-1", "nan", "inf"):
        with pytest.raises(argparse.ArgumentTypeError):
            _load_factor(bad)


class FakeScale:
    """Deployments whose shrunk pods terminate after ``linger`` reads, holding GPUs."""

    def __init__(self, replicas: dict[str, int], linger: int = 2) -> None:
        self.spec = dict(replicas)
        self.pods = dict(replicas)  # live pods
        self.terminating: dict[str, list[int]] = {k: [] for k in replicas}  # reads left
        self.linger = linger
        self.writes: list[tuple[str, int, int]] = []  # (name, replicas, GPUs held after)

    def held(self) -> int:
        return sum(max(self.spec[k], self.pods[k]) + len(self.terminating[k]) for k in self.spec)

    async def read(self, ref: Any, namespace: str) -> Any:
        from goodput.actuator.kube import WorkloadScale

        k = ref.name
        self.terminating[k] = [n - 1 for n in self.terminating[k] if n > 1]
        self.pods[k] = self.spec[k]  # grows get their pods at once
        term = len(self.terminating[k])
        return WorkloadScale(
            self.spec[k], self.spec[k], f"app={k}", self.pods[k] + term, term, self.pods[k], 1
        )

    async def write(self, ref: Any, namespace: str, replicas: int) -> None:
        k = ref.name
        if replicas < self.pods[k]:
            self.terminating[k] += [self.linger] * (self.pods[k] - replicas)
            self.pods[k] = replicas
        self.spec[k] = replicas
        self.writes.append((k, replicas, self.held()))


class FakeKube(Kube):
    def event(self, policy: Policy, reason: Any, message: str) -> str | None:
        self.events.append(message)
        return None


def _rebalance() -> Policy:
    obj = _object()
    st = obj["status"]
    st["pools"][0]["currentReplicas"], st["pools"][1]["currentReplicas"] = 2, 6
    st["lastDecision"]["pools"] = {"prefill": 5, "decode": 3}
    st["lastDecision"]["totalGpus"] = 8
    return Policy.from_object(obj)


def test_approve_rebalances_shrink_first_and_grows_into_released_gpus() -> None:
    policy = _rebalance()
    scale = FakeScale({"prefill": 2, "decode": 6})
    kube = FakeKube(None, "llm")
    kube.events = []
    lines: list[str] = []
    code = asyncio.run(
        approve(kube, policy, lines.append, 10, scale=scale, poll_s=0, now=lambda: NOW)
    )
    assert code == 0, lines
    # decode shrinks first; its 3 terminating pods keep 8 GPUs held, so prefill grows
    # only once they are gone, and then at once; never more than the budget held.
    assert scale.writes == [("decode", 3, 8), ("prefill", 5, 8)]
    assert all(held <= 8 for _, _, held in scale.writes), scale.writes
    assert scale.spec == {"prefill": 5, "decode": 3}
    assert any(
        line.startswith("waiting for released GPUs before growing prefill to 5") for line in lines
    )
    assert len(kube.events) == len(scale.writes)
    assert "approved with kubectl goodput" in kube.events[0]


def test_approve_times_out_while_gpus_stay_held_and_dry_run_writes_nothing() -> None:
    policy = _rebalance()
    stuck = FakeScale({"prefill": 2, "decode": 6}, linger=10**6)
    kube = FakeKube(None, "llm")
    kube.events = []
    lines: list[str] = []
    code = asyncio.run(
        approve(kube, policy, lines.append, 0, scale=stuck, poll_s=0, now=lambda: NOW)
    )
    assert code == 3 and "timed out" in lines[-1] and "prefill to 5" in lines[-1]
    assert stuck.spec["decode"] == 3 and stuck.held() <= 8
    dry = FakeScale({"prefill": 2, "decode": 6})
    code = asyncio.run(
        approve(kube, policy, lines.append, 10, dry_run=True, scale=dry, poll_s=0, now=lambda: NOW)
    )
    assert code == 0 and not dry.writes and lines[-1] == "Dry run: nothing written."
    assert "would scale Deployment/decode (decode) 6 -> 3" in lines
