"""Drain-aware scale-down: the pure choice of the pods to go first and their
pod-deletion-cost annotations (goodput.actuator.drain), the per-pod query and its
reading (metrics layer), the pods of a Deployment's ReplicaSet (the Kubernetes edge's
pure part) and the tick's wiring (mark, then scale; never blocking the scale-down).
The live behaviour, against the real ReplicaSet controller, is
tests/integration/test_drain_scale_down.py."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from typing import Any

import pytest
from kubernetes import client as k8s

from goodput.actuator.drain import DELETION_COST, DrainChoice, Pod, Skip, choose, summary
from goodput.actuator.kube import DrainUnavailable, WorkloadScale, pods_of_replica_set
from goodput.api.spec import GoodputPolicySpec, Metrics, Preset, TargetRef
from goodput.metrics.client import Sample
from goodput.metrics.promql import build_plan, per_pod_running_query
from goodput.metrics.source import PrometheusObservationSource
from goodput.observation import Observation, PoolObservation
from goodput.operator.reconcile import PolicyRef, Reconciler
from goodput.reasons import Reason
from goodput.sim.cluster import SimCluster, inflight_lost
from goodput.sim.engine import DECODE, FEWEST_RUNNING, NEWEST, PREFILL, SERVING, Twin
from tests.unit.test_metrics_source import NOW, FakeProm, fresh_for, healthy_values
from tests.unit.test_sim_cluster import busy
from tests.unit.test_sim_cluster import scenario as sim_scenario

# ---- the pure choice ----------------------------------------------------------------


def _pods(*names: str, ready: bool = True, **kw: Any) -> list[Pod]:
    return [Pod(n, ready=ready, **kw) for n in names]


def test_the_least_busy_go_first_and_every_ready_pod_is_costed() -> None:
    pods = _pods("a", "b", "c", "d")
    running = {"a": 7.0, "b": 0.0, "c": 3.0, "d": 12.0}
    c = choose(pods, running, to_replicas=2)
    assert c.skip is None and c.marked
    assert c.chosen == ("b", "c")
    assert c.loads == {"b": 0.0, "c": 3.0}
    # Chosen: their running requests; kept: running + 1, above every chosen pod.
    assert c.marks == {"b": 0, "c": 3, "a": 8, "d": 13}
    assert max(c.marks[n] for n in c.chosen) < min(c.marks[n] for n in ("a", "d"))


def test_ties_at_the_boundary_are_broken_by_name_and_the_costs_keep_them_apart() -> None:
    pods = _pods("p-z", "p-y", "p-x")
    c = choose(pods, {"p-x": 4.0, "p-y": 4.0, "p-z": 4.0}, to_replicas=2)
    assert c.chosen == ("p-x",)
    # Equal loads, yet the kept pods cost more: the ReplicaSet's own tie-break (newest
    # ready first) cannot pick another pod than the one chosen.
    assert c.marks == {"p-x": 4, "p-y": 5, "p-z": 5}


def test_only_changed_annotations_are_written() -> None:
    pods = [Pod("a", True, cost="0"), Pod("b", True, cost="9"), Pod("c", True, cost="2")]
    c = choose(pods, {"a": 0.0, "b": 5.0, "c": 1.0}, to_replicas=2)
    assert c.chosen == ("a",)
    assert c.marks == {"b": 6}  # a: 0 already; c: 1 + 1 = 2 already


def test_not_ready_pods_go_first_whatever_their_load() -> None:
    """The ReplicaSet removes not-ready pods before ready ones regardless of cost, so the
    choice counts them first; costs order only the ready ones."""
    pods = [Pod("warm", True), Pod("idle", True), Pod("cold", False)]
    c = choose(pods, {"warm": 5.0, "idle": 1.0}, to_replicas=1)
    assert c.chosen == ("cold", "idle")
    assert c.loads == {"cold": None, "idle": 1.0}
    assert c.marks == {"idle": 1, "warm": 6}


def test_as_many_not_ready_pods_as_go_mark_nothing() -> None:
    pods = [Pod("a", True), Pod("b", False), Pod("c", False)]
    c = choose(pods, {"a": 3.0}, to_replicas=1)
    assert c.skip is Skip.NotReadyGoFirst and not c.marks and not c.chosen
    assert "b, c" in c.why


def test_terminating_and_finished_pods_are_not_counted() -> None:
    pods = [
        Pod("a", True),
        Pod("b", True),
        Pod("old", True, terminating=True),
        Pod("done", False, finished=True),
    ]
    c = choose(pods, {"a": 2.0, "b": 1.0, "old": 0.0}, to_replicas=1)
    assert c.chosen == ("b",)
    assert set(c.marks) == {"a", "b"}


def test_missing_per_pod_data_is_not_zero_nothing_is_marked() -> None:
    pods = _pods("a", "b", "c")
    none = choose(pods, None, to_replicas=2)
    assert none.skip is Skip.NoPerPodData and not none.marks and not none.chosen
    # One ready pod without a figure: which pods go cannot be determined.
    some = choose(pods, {"a": 1.0, "b": 2.0}, to_replicas=2)
    assert some.skip is Skip.LoadUnknown and not some.marks
    assert "c" in some.why
    # A NaN or negative figure is no figure.
    bad = choose(pods, {"a": 1.0, "b": 2.0, "c": float("nan")}, to_replicas=2)
    assert bad.skip is Skip.LoadUnknown


def test_no_scale_down_marks_nothing() -> None:
    pods = _pods("a", "b")
    for to in (2, 3):
        c = choose(pods, {"a": 1.0, "b": 2.0}, to_replicas=to)
        assert c.skip is Skip.NotShrinking and not c.marks


def test_costs_are_int32_and_not_negative() -> None:
    pods = _pods("a", "b")
    c = choose(pods, {"a": 2.6, "b": 1e12}, to_replicas=1)
    assert c.chosen == ("a",)
    assert c.marks == {"a": 3, "b": 2**31 - 1}


def test_the_event_says_which_pods_with_their_load_and_any_refusal() -> None:
    c = choose(_pods("a", "b", "c"), {"a": 4.0, "b": 0.0, "c": 2.0}, to_replicas=1)
    warn, msg = summary("before Deployment/x 3 -> 1", c, {})
    assert not warn
    assert msg == (
        "before Deployment/x 3 -> 1: pods to go first b (0 running), c (2 running); "
        "3 pod-deletion-cost annotation(s) written, 0 refused"
    )
    warn, msg = summary("before Deployment/x 3 -> 1", c, {"c": "403 Forbidden"})
    assert warn and "2 pod-deletion-cost annotation(s) written, 1 refused" in msg
    assert "c: 403 Forbidden" in msg and "the scale-down goes ahead" in msg
    s = choose(_pods("a", "b"), None, to_replicas=1)
    warn, msg = summary("before Deployment/x 2 -> 1", s, {})
    assert not warn and msg.startswith("before Deployment/x 2 -> 1: no pod marked (NoPerPodData)")


# ---- the per-pod query and its reading ---------------------------------------------


def test_per_pod_query_reads_running_and_newest_by_pod_label() -> None:
    q = per_pod_running_query("vllm:num_requests_running", 'job="x",pool="decode"')
    assert q == (
        'label_replace(sum by (pod) (vllm:num_requests_running{job="x",pool="decode"}), '
        '"stat", "running", "", "") or label_replace(max by (pod) '
        '(timestamp(vllm:num_requests_running{job="x",pool="decode"})), "stat", "newest", "", "")'
    )


@pytest.mark.parametrize(
    ("preset", "names"),
    [
        (Preset.vllm, ["vllm:num_requests_running", "vllm_num_requests_running"]),
        (Preset.sglang, ["sglang:num_running_reqs", "sglang_num_running_reqs"]),
        (Preset.dynamo, []),  # the frontend's gauge is not a worker pod's
    ],
)
def test_every_pool_gets_a_per_pod_query_of_its_preset(preset: Preset, names: list[str]) -> None:
    plan = build_plan(
        Metrics(prometheusUrl="http://p", preset=preset, selectors={"decode": 'pool="d"'}),
        ["prefill", "decode"],
    )
    got = plan.pools["decode"].per_pod_running
    assert got == tuple(per_pod_running_query(n, 'pool="d"') for n in names)


class PerPodProm(FakeProm):
    """FakeProm, plus per-pod answers: pod -> (running, newest sample timestamp)."""

    def __init__(self, pods: dict[str, tuple[float, float]], **kw: Any) -> None:
        values = healthy_values()
        super().__init__(fresh_for(values), values, **kw)
        self.pods = pods

    async def query(self, promql: str, at: float, *, deadline: float | None = None) -> list[Sample]:
        if '"stat", "running"' in promql:
            self.calls.append(promql)
            if "vllm_num_requests_running" in promql.split(" or ")[0]:
                return []  # the escaped name has no series
            out = [Sample({"pod": p, "stat": "running"}, at, v) for p, (v, _) in self.pods.items()]
            out += [Sample({"pod": p, "stat": "newest"}, at, t) for p, (_, t) in self.pods.items()]
            return out
        return await super().query(promql, at, deadline=deadline)


def _spec() -> GoodputPolicySpec:
    return GoodputPolicySpec.model_validate(
        {
            "gpuBudget": 4,
            "pools": [
                {
                    "role": "aggregated",
                    "targetRef": {"kind": "Deployment", "name": "llm"},
                    "gpusPerReplica": 1,
                    "maxReplicas": 4,
                    "profile": "llama-3.1-8b-h100-tp1",
                }
            ],
            "slo": {"ttft": "500ms", "itl": "50ms", "attainment": 0.9},
            "metrics": {"prometheusUrl": "http://p", "window": "1m", "maxStaleness": "30s"},
        }
    )


def test_the_source_lists_fresh_valid_pods_only() -> None:
    prom = PerPodProm(
        {
            "llm-a": (3.0, NOW - 2),
            "llm-b": (0.0, NOW - 2),  # idle: 0 is a figure
            "llm-c": (5.0, NOW - 300),  # stale: unknown
            "llm-d": (float("nan"), NOW - 2),  # garbage: unknown
        }
    )
    obs = asyncio.run(PrometheusObservationSource(_spec(), prom).observe(NOW))
    pool = obs.pools["aggregated"]
    assert pool.running_requests_by_pod == {"llm-a": 3.0, "llm-b": 0.0}
    assert any("llm-c, llm-d" in n and "unknown" in n for n in obs.notes)
    assert "aggregated.running_requests" not in obs.missing
    assert not any("by_pod" in m for m in obs.missing)  # not a signal


def test_no_per_pod_series_is_none_not_empty() -> None:
    obs = asyncio.run(PrometheusObservationSource(_spec(), PerPodProm({})).observe(NOW))
    assert obs.pools["aggregated"].running_requests_by_pod is None
    assert obs.pools["aggregated"].running_requests == 5.0  # the pool signal is unchanged


# ---- the edge's pure part: the pods of the Deployment's one ReplicaSet --------------

DEPLOY = TargetRef(kind="Deployment", name="llm")


def _v1pod(
    name: str,
    rs: str | None = "llm-5f7",
    ready: bool = True,
    phase: str = "Running",
    node: str | None = "kwok-0",
    deleting: bool = False,
    cost: str | None = None,
) -> k8s.V1Pod:
    owners = (
        [
            k8s.V1OwnerReference(
                api_version="apps/v1", controller=True, kind="ReplicaSet", name=rs, uid="uid"
            )
        ]
        if rs
        else None
    )
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(
            name=name,
            owner_references=owners,
            annotations={DELETION_COST: cost} if cost is not None else None,
            deletion_timestamp="2026-12-02T00:00:00Z" if deleting else None,
        ),
        spec=k8s.V1PodSpec(containers=[], node_name=node),
        status=k8s.V1PodStatus(
            phase=phase,
            conditions=[k8s.V1PodCondition(type="Ready", status="True" if ready else "False")],
        ),
    )


def test_pods_are_read_as_the_replica_set_ranks_them() -> None:
    pods = pods_of_replica_set(
        DEPLOY,
        [
            _v1pod("a", cost="3"),
            _v1pod("b", ready=False),
            _v1pod("c", node=None, phase="Pending", ready=False),
            _v1pod("d", deleting=True),
            _v1pod("e", phase="Succeeded", ready=False),
        ],
    )
    assert pods == [Pod("a", True, cost="3"), Pod("b", False), Pod("c", False)]


def test_a_rollout_or_another_kind_is_refused_with_the_reason() -> None:
    with pytest.raises(DrainUnavailable) as err:
        pods_of_replica_set(DEPLOY, [_v1pod("a"), _v1pod("b", rs="llm-new")])
    assert err.value.skip is Skip.SeveralReplicaSets
    # A terminating pod of the old ReplicaSet is not a rollout in progress.
    assert len(pods_of_replica_set(DEPLOY, [_v1pod("a"), _v1pod("b", "old", deleting=True)])) == 1
    for kind, words in (
        ("StatefulSet", "highest ordinals"),
        ("LeaderWorkerSet", "highest-index groups"),
    ):
        api = "leaderworkerset.x-k8s.io/v1" if kind == "LeaderWorkerSet" else "apps/v1"
        with pytest.raises(DrainUnavailable) as err:
            pods_of_replica_set(TargetRef(kind=kind, name="x", apiVersion=api), [])
        assert err.value.skip is Skip.Unsupported and words in err.value.message


# ---- the tick: mark, then scale ------------------------------------------------------


class DrainScale:
    """A scale client with the drain edge, recording the order of what it is asked."""

    def __init__(self, replicas: dict[str, int], marks_fail: bool = False) -> None:
        self.replicas = replicas
        self.calls: list[tuple[Any, ...]] = []
        self.marks_fail = marks_fail

    async def read(self, ref: TargetRef, namespace: str) -> WorkloadScale:
        n = self.replicas[ref.name]
        return WorkloadScale(n, n, f"app={ref.name}", n, 0, n, 1)

    async def write(self, ref: TargetRef, namespace: str, replicas: int) -> None:
        self.calls.append(("write", ref.name, replicas))
        self.replicas[ref.name] = replicas

    async def other_autoscalers(self, ref: TargetRef, namespace: str) -> list[str]:
        return []

    async def claims(self, namespace: str) -> list[Any]:
        return []

    async def drain_before_scale_down(
        self,
        ref: TargetRef,
        namespace: str,
        running: Mapping[str, float] | None,
        to_replicas: int,
    ) -> tuple[DrainChoice, dict[str, str]]:
        pods = [Pod(f"{ref.name}-{i}", True) for i in range(self.replicas[ref.name])]
        choice = choose(pods, running, to_replicas)
        self.calls.append(("mark", ref.name, dict(choice.marks)))
        failed = {n: "403 Forbidden" for n in choice.marks} if self.marks_fail else {}
        return choice, failed


class FixedSource:
    def __init__(self, obs: Observation) -> None:
        self.obs = obs

    async def observe(self, now: float) -> Observation:
        return self.obs


def _over_budget_tick(
    by_pod: dict[str, float] | None, drain_aware: bool = True, marks_fail: bool = False
) -> tuple[DrainScale, Any]:
    """decode at 3 x 1 GPU with gpuBudget 2 (prefill 1): the emergency shrink of
    decode to 1, whatever the metrics say."""
    spec = {
        "mode": "Enforce",
        "gpuBudget": 2,
        "pools": [
            {
                "role": role,
                "targetRef": {"kind": "Deployment", "name": role},
                "minReplicas": 1,
                "maxReplicas": 5,
                "profile": "llama-3.1-8b-h100-tp1",
            }
            for role in ("prefill", "decode")
        ],
        "slo": {"ttft": "500ms", "itl": "50ms", "attainment": 0.9},
        "metrics": {"prometheusUrl": "http://p"},
    }
    obs = Observation(
        timestamp=NOW,
        pools={
            "prefill": PoolObservation(role="prefill"),
            "decode": PoolObservation(role="decode", running_requests_by_pod=by_pod),
        },
        missing=["decode.arrival_rate_rps"],
    )
    scale = DrainScale({"prefill": 1, "decode": 3}, marks_fail=marks_fail)

    async def factory(_spec: GoodputPolicySpec, _ns: str) -> FixedSource:
        return FixedSource(obs)

    rec = Reconciler(scale, factory, clock=lambda: NOW, drain_aware=drain_aware)
    out = asyncio.run(rec.tick(PolicyRef("ns", "chat"), 1, spec, {}))
    return scale, out


def test_the_tick_marks_the_least_busy_pods_then_scales() -> None:
    scale, out = _over_budget_tick({"decode-0": 9.0, "decode-1": 0.0, "decode-2": 4.0})
    assert scale.calls == [
        ("mark", "decode", {"decode-1": 0, "decode-2": 4, "decode-0": 10}),
        ("write", "decode", 1),
    ]
    drains = [e for e in out.events if e.reason is Reason.DrainMarked]
    assert len(drains) == 1 and drains[0].type == "Normal"
    assert "decode-1 (0 running), decode-2 (4 running)" in drains[0].message
    assert any(e.reason is Reason.OverBudget for e in out.events)


def test_a_refused_annotation_does_not_block_the_scale_down() -> None:
    scale, out = _over_budget_tick({"decode-0": 9.0, "decode-1": 0.0, "decode-2": 4.0}, True, True)
    assert scale.calls[-1] == ("write", "decode", 1)
    (ev,) = [e for e in out.events if e.reason is Reason.DrainMarked]
    assert ev.type == "Warning" and "403 Forbidden" in ev.message


def test_without_per_pod_data_the_tick_says_so_and_scales() -> None:
    scale, out = _over_budget_tick(None)
    assert scale.calls == [("mark", "decode", {}), ("write", "decode", 1)]
    (ev,) = [e for e in out.events if e.reason is Reason.DrainMarked]
    assert "no pod marked (NoPerPodData)" in ev.message


def test_no_drain_marks_nothing_and_posts_nothing() -> None:
    scale, out = _over_budget_tick({"decode-0": 9.0}, drain_aware=False)
    assert scale.calls == [("write", "decode", 1)]
    assert not [e for e in out.events if e.reason is Reason.DrainMarked]


# ---- the twin: in-flight requests on the replicas a scale-down removes -------------


@pytest.mark.parametrize("choice", [FEWEST_RUNNING, NEWEST])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_twin_counts_the_requests_on_the_replicas_it_removes(choice: str, seed: int) -> None:
    """Four decode replicas serving a busy trace (one added later, so "newest" is a
    choice); a shrink by two removes, one at a time, the serving replica the choice
    names, and its in-flight requests are the write's ``inflight_lost``."""
    sc = sim_scenario(budget=6)
    sc = dataclasses.replace(sc, twin=dataclasses.replace(sc.twin, scale_down_choice=choice))
    tw = Twin(sc.twin, busy(n=900, span=60.0, seed=seed))
    cl = SimCluster(tw, sc, startup_delay_s=0.0)
    cl.start({PREFILL: 2, DECODE: 3})
    tw.run_until(10.0)
    cl.set_replicas(DECODE, 4)  # ready at once: the newest replica
    tw.run_until(30.0)
    expected = 0
    for _ in range(2):
        serving = [r for r in tw.replicas if r.role == DECODE and r.state == SERVING]
        if choice == NEWEST:
            victim = max(serving, key=lambda r: (r.ready_at, r.id))
        else:
            victim = min(serving, key=lambda r: (r.running_requests(), -r.id))
        expected += victim.running_requests()
        assert tw.remove_replica(DECODE, tw.now)
        assert tw.removals[-1].replica == victim.id
    assert tw.inflight_lost == expected
    # Through a write: the same accounting lands in the write's log.
    serving = [r for r in tw.replicas if r.role == DECODE and r.state == SERVING]
    cl.spec[DECODE] = len(serving)
    before = tw.inflight_lost
    cl.set_replicas(DECODE, len(serving) - 1)
    assert cl.writes[-1].inflight_lost == tw.inflight_lost - before
    assert inflight_lost(cl.writes) == tw.inflight_lost - expected


def test_fewest_running_never_loses_more_than_newest_at_the_same_instant() -> None:
    """From the same state (a fork), removing the least busy replica puts no more
    requests at risk than removing the newest: the deletion cost's point."""
    sc = sim_scenario(budget=6)
    tw = Twin(sc.twin, busy(n=900, span=60.0, seed=3))
    cl = SimCluster(tw, sc, startup_delay_s=0.0)
    cl.start({PREFILL: 2, DECODE: 4})
    tw.run_until(20.0)
    lost = {}
    for choice in (FEWEST_RUNNING, NEWEST):
        f = tw.fork()
        f.cfg = dataclasses.replace(f.cfg, scale_down_choice=choice)
        f.remove_replica(DECODE, f.now)
        lost[choice] = f.inflight_lost
    assert lost[FEWEST_RUNNING] <= lost[NEWEST]


def test_an_unknown_choice_is_refused() -> None:
    sc = sim_scenario()
    with pytest.raises(ValueError, match="scale_down_choice"):
        dataclasses.replace(sc.twin, scale_down_choice="oldest")
