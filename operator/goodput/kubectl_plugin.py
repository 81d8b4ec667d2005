"""`kubectl goodput`: a kubectl plugin (the ``kubectl-goodput`` console script) that reads a
GoodputPolicy the way a person asks about it.

* ``explain NAME``: what the operator decided, why, the limit that bound it, the
  runner-up, the writes, the conditions that are not fine, and what would change it.
* ``whatif NAME --budget N | --load xK``: the pure planner (``goodput.planner.plan``) run
  offline on the observation the operator decided from (``status.lastObservation``),
  printed beside the running allocation and the operator's own decision.
* ``approve NAME``: applies a Recommend-mode policy's current recommendation once,
  through the targets' /scale subresource in the budget-safe order
  (``goodput.actuator.budget.budget_safe_writes``: shrinks first, grows only into GPUs
  that are free). Refused in mode Enforce, when the policy is not Ready, when the spec
  changed since the decision, or when the recommendation is older than
  ``MAX_AGE_INTERVALS`` intervals.

It uses the caller's kubeconfig (``$KUBECONFIG``, ``--kubeconfig``, ``--context``) and
needs: get on goodputpolicies; for approve also get/patch on the targets' /scale, get on
the targets, list pods, and create events (best effort: the approval is recorded as one
event per write on the policy). Exit codes: 0 done, 1 refused or failed, 2 usage, 3
approve timed out with grows still waiting for GPUs.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError

from goodput.actuator.behavior import tier_key
from goodput.actuator.budget import TargetState, budget_safe_writes
from goodput.actuator.kube import api_error
from goodput.api.spec import (
    GROUP,
    PLURAL,
    VERSION,
    GoodputPolicySpec,
    Mode,
    TargetRef,
    format_validation_error,
    parse_duration,
)
from goodput.api.status import GoodputPolicyStatus
from goodput.observation import Observation
from goodput.plan import Allocation, Plan
from goodput.planner import plan as plan_step
from goodput.reasons import Limit, Reason

MAX_AGE_INTERVALS = 3  # approve refuses a recommendation older than this many intervals
MIN_MAX_AGE_S = 30.0  # ... but never demands one younger than this
_LIMIT_WORDS = {
    Limit.None_: "nothing: the demand and the SLO sized the plan",
    Limit.GpuBudget: "no pool below its maxReplicas could fit one more replica that adds goodput"
    " within gpuBudget",
    Limit.MaxReplicas: "a pool that needs more is at its maxReplicas",
    Limit.MinReplicas: "the demand needs less than the pools' minReplicas",
    Limit.SloFloor: "no replica count meets the SLO of this stage",
    Limit.ObservedViolation: "a pool missing its SLO is not shrunk",
    Limit.ScaleDownPatience: "recent plans wanted more replicas: the shrink waits",
    Limit.StabilizationWindow: "a behavior stabilization window held a change",
    Limit.StepLimit: "the behavior step limits capped a change",
    Limit.WaitingForScaleDown: "a grow waits for the GPUs of pods still terminating",
}
_METRIC_HOLDS = {
    Reason.MetricsMissing,
    Reason.MetricsStale,
    Reason.MetricsPartial,
    Reason.PrometheusUnreachable,
}


if TYPE_CHECKING:
    from goodput.actuator.kube import WorkloadScale


class ScaleClient(Protocol):
    """The part of ``goodput.actuator.kube.KubeScaleClient`` that approve uses."""

    async def read(self, ref: TargetRef, namespace: str) -> WorkloadScale: ...
    async def write(self, ref: TargetRef, namespace: str, replicas: int) -> None: ...


class Refused(Exception):
    """A command that cannot be done, in words a person can act on."""


# -- reading a policy ----------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """A GoodputPolicy as read from the API server, with its spec's GPU counts resolved
    from the status (the operator resolves them from the pod templates)."""

    namespace: str
    name: str
    generation: int
    spec: GoodputPolicySpec
    status: GoodputPolicyStatus

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> Policy:
        meta = obj.get("metadata") or {}
        where = f"GoodputPolicy {meta.get('namespace')}/{meta.get('name')}"
        try:
            spec = GoodputPolicySpec.model_validate(obj.get("spec") or {})
        except ValidationError as err:
            raise Refused(
                f"{where} has an invalid spec: " + "; ".join(format_validation_error(err, "spec"))
            ) from None
        try:
            status = GoodputPolicyStatus.model_validate(obj.get("status") or {})
        except ValidationError:
            raise Refused(f"{where}: its status is unreadable (another version's?)") from None
        resolved = {p.role: p.gpus_per_replica for p in status.pools}
        pools = [
            p
            if p.gpus_per_replica is not None or not resolved.get(p.role.value)
            else p.model_copy(update={"gpus_per_replica": resolved[p.role.value]})
            for p in spec.pools
        ]
        return cls(
            namespace=str(meta.get("namespace") or "default"),
            name=str(meta.get("name") or ""),
            generation=int(meta.get("generation") or 0),
            spec=spec.model_copy(update={"pools": pools}),
            status=status,
        )

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def interval_s(self) -> float:
        return parse_duration(self.spec.behavior.interval)

    def gpus_per_replica(self) -> dict[str, int]:
        out = {p.role.value: p.gpus_per_replica or 0 for p in self.spec.pools}
        out.update({tier_key(t.name): t.gpus_per_replica for t in self.spec.kv_cache.tiers})
        return out

    def refs(self) -> dict[str, TargetRef]:
        out = {p.role.value: p.target_ref for p in self.spec.pools}
        out.update({tier_key(t.name): t.target_ref for t in self.spec.kv_cache.tiers})
        return out

    def running(self) -> dict[str, int]:
        """Replicas per key as the operator last saw them (status.pools and tiers)."""
        out = {p.role: p.current_replicas for p in self.status.pools}
        out.update({tier_key(t.name): t.current_replicas for t in self.status.tiers})
        return out

    def decided(self) -> dict[str, int]:
        d = self.status.last_decision
        if d is None:
            return {}
        out = dict(d.pools)
        out.update({tier_key(k): v for k, v in d.tiers.items()})
        return out

    def observation(self) -> Observation:
        raw = self.status.last_observation
        if not raw:
            raise Refused(
                f"GoodputPolicy {self.ref} has no status.lastObservation yet: the operator has"
                " not observed Prometheus for it (see `kubectl describe gp`)"
            )
        try:
            return Observation.model_validate(raw)
        except ValidationError as err:
            raise Refused(f"status.lastObservation of {self.ref} is unreadable: {err}") from None

    def allocation(self) -> Allocation:
        run = self.running()
        return Allocation(
            pools={p.role.value: run.get(p.role.value, p.min_replicas) for p in self.spec.pools},
            tiers={
                t.name: run.get(tier_key(t.name), t.min_replicas) for t in self.spec.kv_cache.tiers
            },
        )


# -- words ---------------------------------------------------------------------------------


def _age(seconds: float) -> str:
    s = max(0, round(seconds))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def _tokens(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f} tokens/s"


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _keys(policy: Policy) -> list[str]:
    return [p.role.value for p in policy.spec.pools] + [
        tier_key(t.name) for t in policy.spec.kv_cache.tiers
    ]


def _replicas_words(replicas: Mapping[str, int], keys: Sequence[str]) -> str:
    return ", ".join(f"{k} {replicas[k]}" for k in keys if k in replicas)


def _gpus(policy: Policy, replicas: Mapping[str, int]) -> int:
    per = policy.gpus_per_replica()
    return sum(n * per.get(k, 0) for k, n in replicas.items())


def _plan_replicas(p: Plan) -> dict[str, int]:
    out = {r: d.replicas for r, d in p.pools.items()}
    out.update({tier_key(k): v for k, v in p.tiers.items()})
    return out


def _limit_words(limit: Limit, pool: str | None) -> str:
    if limit == Limit.None_:
        return _LIMIT_WORDS[limit]
    where = f" ({pool})" if pool else ""
    return f"{limit.value}{where}: {_LIMIT_WORDS.get(limit, limit.value)}"


def _scaled_load(obs: Observation, factor: float) -> Observation:
    """The observation at ``factor`` times the load: arrivals, token rates and queue
    lengths scale; request shapes and the observed latencies are kept as they were."""
    fields = (
        "arrival_rate_rps",
        "prompt_tokens_per_s",
        "generation_tokens_per_s",
        "running_requests",
        "waiting_requests",
    )
    pools = {}
    for role, p in obs.pools.items():
        update = {f: getattr(p, f) * factor for f in fields if getattr(p, f) is not None}
        pools[role] = p.model_copy(update=update)
    return obs.model_copy(update={"pools": pools})


def offline_plan(
    policy: Policy, budget: int | None = None, load: float | None = None
) -> tuple[Plan, Observation]:
    """The planner's plan from the policy's last observation, optionally with another
    gpuBudget or load. Stateless: no forecast history, no patience, no corrections."""
    obs = policy.observation()
    spec = policy.spec
    missing = [p.role.value for p in spec.pools if p.gpus_per_replica is None]
    if missing:
        raise Refused(
            f"gpusPerReplica of {', '.join(missing)} is not known yet (not in the spec, not"
            " resolved in status.pools): wait for the operator's first tick"
        )
    if budget is not None:
        spec = spec.model_copy(update={"gpu_budget": budget})
    if load is not None:
        obs = _scaled_load(obs, load)
    result, _ = plan_step(spec, obs, policy.allocation(), None, obs.timestamp)
    return result, obs


def _demand_words(obs: Observation) -> str:
    rate = next(
        (
            p.arrival_rate_rps
            for r in ("aggregated", "prefill", "decode")
            if (p := obs.pools.get(r)) is not None and p.arrival_rate_rps is not None
        ),
        None,
    )
    if rate is None:
        return "no arrival rate in it"
    ins = next((p.mean_input_tokens for p in obs.pools.values() if p.mean_input_tokens), None)
    outs = next(
        (
            p.mean_output_tokens
            for r in ("aggregated", "decode", "prefill")
            if (p := obs.pools.get(r)) is not None and p.mean_output_tokens
        ),
        None,
    )
    shape = (
        f", {ins:,.0f} input and {outs:,.0f} output tokens per request"
        if ins is not None and outs is not None
        else ""
    )
    return f"{rate:,.1f} requests/s{shape}"


def _changes(policy: Policy) -> list[str]:
    """What would change the decision, from its limit and reason; the budget and load
    lines are computed with the planner from the last observation."""
    st, spec = policy.status, policy.spec
    d = st.last_decision
    if d is None:
        return []
    name, ns = policy.name, policy.namespace
    out: list[str] = []
    limit, pool = d.binding_constraint, d.binding_pool
    if d.reason in _METRIC_HOLDS:
        obs = st.last_observation or {}
        required = ("arrival_rate_rps", "mean_input_tokens", "mean_output_tokens", "quality")
        gaps = sorted(
            obs.get("missing") or obs.get("partial") or [],
            key=lambda k: (str(k).split(".")[-1] not in required, str(k)),
        )
        more = f" and {len(gaps) - 4} more" if len(gaps) > 4 else ""
        out.append(
            "the serving metrics: the operator holds until every required signal is fresh"
            + (f" (missing now: {', '.join(gaps[:4])}{more})" if gaps else "")
            + f"; check spec.metrics ({spec.metrics.prometheus_url} and the selectors)"
        )
    elif d.reason == Reason.MinimumsExceedBudget:
        out.append("a gpuBudget at least the minReplicas' GPUs, or lower minReplicas")
    elif d.reason in (
        Reason.TargetNotFound,
        Reason.ConflictingController,
        Reason.ScaleFailed,
        Reason.InvalidPolicy,
        Reason.ProfileMissing,
        Reason.ProfileNotFound,
    ):
        out.append(f"fixing what {d.reason.value} names (see the conditions above)")
    if limit == Limit.MaxReplicas and pool:
        cap = next((p.max_replicas for p in spec.pools if p.role.value == pool), None)
        out.append(f"a higher maxReplicas for pool {pool} (now {cap})")
    elif limit == Limit.MinReplicas:
        out.append("lower minReplicas, or more demand")
    elif limit == Limit.SloFloor:
        out.append(
            f"a looser SLO (slo.ttft {spec.slo.ttft}, slo.itl {spec.slo.itl})"
            + (f" for the {pool} stage" if pool else "")
            + ", or a faster profile (GPU, tensor parallelism)"
        )
    elif limit == Limit.ObservedViolation and pool:
        out.append(f"pool {pool} meeting its SLO again: a pool missing its SLO is not shrunk")
    elif limit == Limit.ScaleDownPatience:
        out.append(
            "demand staying low for behavior.scaleDown.stabilizationWindowSeconds"
            f" ({spec.behavior.scale_down.stabilization_window_seconds}s)"
        )
    elif limit == Limit.StabilizationWindow:
        out.append(
            "the stabilization window passing (behavior.scaleUp/scaleDown"
            ".stabilizationWindowSeconds)"
        )
    elif limit == Limit.StepLimit:
        out.append("the next step period, or behavior policies that allow bigger steps")
    elif limit == Limit.WaitingForScaleDown:
        out.append("the released pods terminating: the grow follows at the next tick after")
    if d.reason == Reason.RecommendOnly:
        out.append(
            f"mode Enforce (`kubectl patch gp {name} -n {ns} --type=merge -p"
            ' \'{"spec":{"mode":"Enforce"}}\'`), or once: '
            f"`kubectl goodput approve {name} -n {ns}`"
        )
    if d.hold or not st.last_observation:
        return out
    try:
        base, _ = offline_plan(policy)
        keys = _keys(policy)
        step = max([n for n in policy.gpus_per_replica().values() if n > 0] or [1])
        tries: list[tuple[str, str, Plan]] = []
        if limit == Limit.GpuBudget or d.reason == Reason.BudgetExhausted:
            bigger = spec.gpu_budget + step
            plan_b = offline_plan(policy, bigger)[0]
            tries.append((f"gpuBudget {bigger} (+{step})", f"--budget {bigger}", plan_b))
        for k in (0.5, 1.5):
            tries.append((f"{k:g}x the load", f"--load x{k:g}", offline_plan(policy, load=k)[0]))
    except Refused:
        return out
    for words, flag, p in tries:
        want = _plan_replicas(p)
        if want == _plan_replicas(base):
            out.append(
                f"{words}: no change to the plan (`kubectl goodput whatif {name} -n {ns} {flag}`)"
            )
        else:
            out.append(
                f"{words}: {_replicas_words(want, keys)} ({p.total_gpus} GPUs), predicted"
                f" goodput {_tokens(p.predicted_goodput)}, attainment"
                f" {_ratio(p.predicted_attainment)} (`kubectl goodput whatif {name} -n {ns}"
                f" {flag}`)"
            )
    return out


def explain_text(policy: Policy, now: datetime) -> str:
    st, spec = policy.status, policy.spec
    keys = _keys(policy)
    lines = [
        f"GoodputPolicy {policy.ref}: mode {spec.mode.value}, gpuBudget {spec.gpu_budget},"
        f" every {spec.behavior.interval}, SLO ttft {spec.slo.ttft} itl {spec.slo.itl}"
        f" attainment {spec.slo.attainment:g}"
    ]
    d = st.last_decision
    if d is None:
        lines.append("")
        lines.append("No decision yet: the operator has not ticked this policy (is it running?).")
        return "\n".join(lines)
    age = (now - d.time).total_seconds()
    gen = st.observed_generation
    stale = (
        f" (made for spec generation {gen}; the spec is now generation {policy.generation})"
        if gen is not None and gen != policy.generation
        else ""
    )
    hold = " (a hold: nothing changes)" if d.hold else ""
    lines += ["", f"Decision, {_age(age)} ago{stale}: {d.reason.value}{hold}", f"  {d.message}"]
    running, decided = policy.running(), policy.decided()
    width = max([len(k) for k in keys] + [4])
    lines += ["", f"  {'':<{width}}  {'now':>5}  {'decided':>7}"]
    for k in keys:
        if k in running or k in decided:
            lines.append(f"  {k:<{width}}  {running.get(k, 0):>5}  {decided.get(k, 0):>7}")
    held = st.gpus_allocated
    lines.append(
        f"  {'GPUs':<{width}}  {'-' if held is None else held:>5}  {d.total_gpus:>7}"
        f"  of gpuBudget {spec.gpu_budget}"
    )
    bound = (
        "nothing (a hold: no plan was made)"
        if d.hold
        else _limit_words(d.binding_constraint, d.binding_pool)
    )
    lines += ["", f"Bound by: {bound}."]
    g = st.goodput
    seen = (
        f"observed {_tokens(g.observed_tokens_per_second)} at attainment"
        f" {_ratio(g.observed_attainment)}"
        if g is not None and g.observed_tokens_per_second is not None
        else "not observed"
    )
    predicted = (
        f"this plan predicts {_tokens(g.predicted_tokens_per_second)} at"
        f" {_ratio(g.predicted_attainment)}"
        if g is not None and g.predicted_tokens_per_second is not None
        else "no plan predicts any"
    )
    lines.append(f"Goodput: {seen}; {predicted} (target attainment {spec.slo.attainment:g}).")
    if d.runner_up is not None:
        r = d.runner_up
        ru = dict(r.pools)
        ru.update({tier_key(k): v for k, v in r.tiers.items()})
        lines.append(
            f"Runner-up: {_replicas_words(ru, keys)} ({r.total_gpus} GPUs), predicted"
            f" {_tokens(r.predicted_goodput)} at {_ratio(r.predicted_attainment)}."
        )
    else:
        lines.append("Runner-up: none (no plan was compared, or none came close).")
    if d.writes:
        lines.append("Writes, in order:")
        for w in d.writes:
            result = "ok" if w.ok else f"REFUSED: {w.error}"
            lines.append(f"  {w.target} ({w.key}) {w.from_replicas} -> {w.to_replicas}: {result}")
    elif spec.mode == Mode.Recommend:
        lines.append("Writes: none (mode Recommend publishes the decision and writes nothing).")
    else:
        lines.append("Writes: none (the targets were already where the decision wants them).")
    bad = []
    for c in st.conditions:
        notable = c.status.value != "True" or (
            c.type.value == "ScalingLimited" and c.status.value == "True"
        )
        if c.type.value == "ScalingLimited" and c.status.value == "False":
            notable = False
        if notable:
            said = c.message and (c.message in d.message or d.message in c.message)
            words = "as in the decision above" if said else c.message
            bad.append(f"  {c.type.value} {c.status.value} ({c.reason.value}): {words}")
    lines += ["", "Conditions that are not fine:" if bad else "Conditions: all fine."]
    lines += bad
    changes = _changes(policy)
    if changes:
        lines += ["", "What would change the decision:"]
        lines += [f"  - {c}" for c in changes]
    return "\n".join(lines)


def whatif_text(
    policy: Policy, budget: int | None, load: float | None, now: datetime
) -> tuple[str, Plan]:
    keys = _keys(policy)
    base, obs = offline_plan(policy)
    alt, alt_obs = offline_plan(policy, budget, load)
    asked = []
    if budget is not None:
        asked.append(f"gpuBudget {budget} (now {policy.spec.gpu_budget})")
    if load is not None:
        asked.append(f"{load:g}x the load")
    d = policy.status.last_decision
    g = policy.status.goodput
    age = (now - datetime.fromtimestamp(obs.timestamp, UTC)).total_seconds()
    lines = [
        f"What if {' and '.join(asked)} for GoodputPolicy {policy.ref}?",
        f"Planned offline from the observation the operator decided from, {_age(age)} old:"
        f" {_demand_words(obs)}"
        + (f"; what-if: {_demand_words(alt_obs)}" if load is not None else "")
        + ".",
        "",
    ]
    running = policy.running()
    decided = policy.decided()
    cols = ("running", "decided", "replanned", "what-if")
    rows: list[tuple[str, str, str, str, str]] = []
    for k in keys:
        rows.append(
            (
                k,
                str(running.get(k, "-")),
                str(decided.get(k, "-")),
                str(_plan_replicas(base).get(k, "-")),
                str(_plan_replicas(alt).get(k, "-")),
            )
        )
    rows.append(
        (
            "GPUs",
            str(policy.status.gpus_allocated if policy.status.gpus_allocated is not None else "-"),
            str(d.total_gpus) if d else "-",
            str(base.total_gpus),
            str(alt.total_gpus),
        )
    )
    rows.append(
        (
            "gpuBudget",
            str(policy.spec.gpu_budget),
            str(policy.status.gpu_budget or "-"),
            str(base.budget),
            str(alt.budget),
        )
    )

    def tok(x: float | None) -> str:
        return "-" if x is None else f"{x:,.0f}"

    rows.append(
        (
            "goodput (tokens/s)",
            tok(g.observed_tokens_per_second if g else None) + " obs",
            tok(g.predicted_tokens_per_second if g else None),
            tok(base.predicted_goodput),
            tok(alt.predicted_goodput),
        )
    )
    rows.append(
        (
            "attainment",
            _ratio(g.observed_attainment if g else None) + " obs",
            _ratio(g.predicted_attainment if g else None),
            _ratio(base.predicted_attainment),
            _ratio(alt.predicted_attainment),
        )
    )
    rows.append(
        (
            "limit",
            "-",
            d.binding_constraint.value if d else "-",
            base.binding_constraint.value,
            alt.binding_constraint.value,
        )
    )
    rows.append(("reason", "-", d.reason.value if d else "-", base.reason.value, alt.reason.value))
    w0 = max(len(r[0]) for r in rows)
    ws = [max(len(c), *(len(r[i + 1]) for r in rows)) for i, c in enumerate(cols)]
    lines.append("  " + " " * w0 + "".join(f"  {c:>{w}}" for c, w in zip(cols, ws, strict=True)))
    for r in rows:
        lines.append(
            f"  {r[0]:<{w0}}" + "".join(f"  {v:>{w}}" for v, w in zip(r[1:], ws, strict=True))
        )
    lines += [
        "",
        "running: the targets' replicas at the decision; decided: the operator's decision;"
        " replanned: the same planner, offline, on the same observation (no forecast history,"
        " patience or corrections, so it can differ from decided); what-if: replanned with the"
        " change. The what-if's reason: " + alt.message,
    ]
    return "\n".join(lines), alt


def approval_problem(policy: Policy, now: datetime) -> str | None:
    """Why the current recommendation must not be applied, or None."""
    st, ref = policy.status, policy.ref
    if policy.spec.mode == Mode.Enforce:
        return (
            f"GoodputPolicy {ref} is in mode Enforce: the operator applies its own decisions;"
            " approve applies a Recommend-mode policy's recommendation"
        )
    d = st.last_decision
    if d is None:
        return f"GoodputPolicy {ref} has no decision yet (is the operator running?)"
    ready = next((c for c in st.conditions if c.type.value == "Ready"), None)
    if ready is None or ready.status.value != "True":
        why = f"{ready.reason.value}: {ready.message}" if ready is not None else "no condition"
        return f"GoodputPolicy {ref} is not Ready ({why}); nothing applied"
    if st.observed_generation is not None and st.observed_generation != policy.generation:
        return (
            f"the spec of {ref} changed (generation {policy.generation}) since the decision"
            f" (generation {st.observed_generation}); wait for the operator's next tick"
        )
    max_age = max(MAX_AGE_INTERVALS * policy.interval_s, MIN_MAX_AGE_S)
    age = (now - d.time).total_seconds()
    if age > max_age:
        return (
            f"the recommendation of {ref} is {_age(age)} old, more than {MAX_AGE_INTERVALS}"
            f" intervals ({policy.spec.behavior.interval} each): is the operator running?"
            " Nothing applied"
        )
    if d.hold:
        return f"the last decision of {ref} is a hold ({d.reason.value}): there is nothing to apply"
    if d.total_gpus > policy.spec.gpu_budget:
        return (
            f"the recommendation of {ref} holds {d.total_gpus} GPUs, more than gpuBudget"
            f" {policy.spec.gpu_budget}; nothing applied"
        )
    return None


# -- the cluster ---------------------------------------------------------------------------


@dataclass
class Kube:
    api_client: Any
    namespace: str

    @classmethod
    def connect(cls, kubeconfig: str | None, context: str | None, namespace: str | None) -> Kube:
        import os

        from kubernetes import client, config

        path = kubeconfig or os.environ.get("KUBECONFIG") or None
        try:
            api = config.new_client_from_config(config_file=path, context=context)  # type: ignore[no-untyped-call]
            if namespace is None:
                _, active = config.list_kube_config_contexts(config_file=path)  # type: ignore[no-untyped-call]
                if context:
                    contexts, _ = config.list_kube_config_contexts(config_file=path)  # type: ignore[no-untyped-call]
                    active = next((c for c in contexts if c["name"] == context), active)
                namespace = (active or {}).get("context", {}).get("namespace") or "default"
        except config.ConfigException:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
            api = client.ApiClient()
            if namespace is None:
                sa_ns = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
                try:
                    with open(sa_ns) as f:
                        namespace = f.read().strip()
                except OSError:
                    namespace = "default"
        return cls(api, namespace or "default")

    def policy(self, name: str) -> Policy:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        api = client.CustomObjectsApi(self.api_client)
        try:
            obj: Any = api.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name, _request_timeout=10
            )
        except ApiException as err:
            if err.status == 404:
                raise Refused(
                    f'GoodputPolicy "{name}" not found in namespace {self.namespace}'
                ) from None
            raise Refused(
                f"cannot read GoodputPolicy {self.namespace}/{name}: {api_error(err)}"
            ) from None
        return Policy.from_object(obj)

    def event(self, policy: Policy, reason: Reason, message: str) -> str | None:
        """Posts a Normal event on the policy; the error, if the API server refused it."""
        from kubernetes import client

        now = datetime.now(UTC)
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{policy.name}."),
            involved_object=client.V1ObjectReference(
                api_version=f"{GROUP}/{VERSION}",
                kind="GoodputPolicy",
                name=policy.name,
                namespace=policy.namespace,
            ),
            reason=reason.value,
            message=message[:1024],
            type="Normal",
            source=client.V1EventSource(component="kubectl-goodput"),
            reporting_component="kubectl-goodput",
            reporting_instance="kubectl-goodput",
            first_timestamp=now,
            last_timestamp=now,
            count=1,
        )
        try:
            client.CoreV1Api(self.api_client).create_namespaced_event(
                policy.namespace, body, _request_timeout=10
            )
        except Exception as err:
            return api_error(err)
        return None


async def approve(
    kube: Kube,
    policy: Policy,
    out: Callable[[str], None],
    timeout_s: float,
    dry_run: bool = False,
    scale: ScaleClient | None = None,
    poll_s: float = 1.0,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    """Applies the recommendation; ``scale`` defaults to the operator's /scale client."""
    from goodput.actuator.kube import KubeScaleClient, TargetError

    problem = approval_problem(policy, now())
    if problem is not None:
        raise Refused(problem)
    d = policy.status.last_decision
    assert d is not None
    desired = policy.decided()
    refs = policy.refs()
    keys = [k for k in _keys(policy) if k in desired]
    budget = policy.spec.gpu_budget
    if scale is None:
        scale = KubeScaleClient(kube.api_client)
    per = policy.gpus_per_replica()

    async def states() -> dict[str, TargetState]:
        found: dict[str, TargetState] = {}
        for k in keys:
            try:
                w = await scale.read(refs[k], policy.namespace)
            except TargetError as err:
                raise Refused(err.message) from None
            gpr = per.get(k) or w.template_gpus or 0
            found[k] = TargetState(w.spec_replicas, w.pods_present, gpr, w.pods_terminating)
        return found

    age = (now() - d.time).total_seconds()
    now_states = await states()
    current = {k: s.spec_replicas for k, s in now_states.items()}
    out(
        f"Recommendation of {policy.ref} ({d.reason.value}, {_age(age)} old):"
        f" {_replicas_words(desired, keys)}, {d.total_gpus} of gpuBudget {budget} GPUs;"
        f" now {_replicas_words(current, keys)}."
    )
    if all(current[k] == desired[k] for k in keys):
        out("Nothing to do: every target is already at the recommendation.")
        return 0
    deadline = time.monotonic() + timeout_s
    waiting_said = False
    while True:
        safe = budget_safe_writes(now_states, {k: desired[k] for k in keys}, budget)
        # Shrinks first, then grows, each in key order (the operator's own order).
        order = sorted(
            safe.replicas, key=lambda k: (safe.replicas[k] > now_states[k].spec_replicas, k)
        )
        for k in order:
            before, after = now_states[k].spec_replicas, safe.replicas[k]
            target = f"{refs[k].kind}/{refs[k].name}"
            if dry_run:
                out(f"would scale {target} ({k}) {before} -> {after}")
                continue
            try:
                await scale.write(refs[k], policy.namespace, after)
            except Exception as err:
                raise Refused(
                    f"the API server refused {target} ({k}) {before} -> {after}: {api_error(err)};"
                    " the writes before it stand, nothing after it was attempted"
                ) from None
            out(f"scaled {target} ({k}) {before} -> {after}")
            refused = kube.event(
                policy,
                Reason.ScaledUp if after > before else Reason.ScaledDown,
                f"{target} ({k}) {before} -> {after}: approved with kubectl goodput"
                f" (recommendation of {d.time.isoformat()}: {d.reason.value})",
            )
            if refused is not None:
                print(f"warning: could not record the event: {refused}", file=sys.stderr)
        if not safe.deferred or dry_run:
            break
        if not waiting_said:
            out(
                "waiting for released GPUs before growing "
                + ", ".join(f"{k} to {v}" for k, v in sorted(safe.deferred.items()))
            )
            waiting_said = True
        if time.monotonic() > deadline:
            out(
                f"timed out after {timeout_s:g}s: still waiting to grow "
                + ", ".join(f"{k} to {v}" for k, v in sorted(safe.deferred.items()))
                + " (GPUs are still held by terminating pods); run approve again"
            )
            return 3
        await asyncio.sleep(poll_s)
        now_states = await states()
    if dry_run:
        out("Dry run: nothing written.")
        return 0
    final = {k: s.spec_replicas for k, s in (await states()).items()}
    out(
        f"Done: {_replicas_words(final, keys)}, {_gpus(policy, final)} of gpuBudget {budget}"
        f" GPUs asked for. {policy.ref} stays in mode Recommend: the operator keeps publishing"
        " and writes nothing."
    )
    return 0


# -- command line --------------------------------------------------------------------------


def _load_factor(text: str) -> float:
    t = text.strip().lower().removeprefix("x").removesuffix("x")
    try:
        k = float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--load {text!r}: give a factor such as x1.5, 1.5x or 0.5"
        ) from None
    if not math.isfinite(k) or k <= 0:
        raise argparse.ArgumentTypeError(f"--load {text!r}: the factor must be above 0")
    return k


def _budget(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--budget {text!r}: give a whole number of GPUs"
        ) from None
    if n < 1:
        raise argparse.ArgumentTypeError("--budget must be at least 1 GPU")
    return n


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("name", metavar="NAME", help="the GoodputPolicy (kubectl get gp)")
    common.add_argument("-n", "--namespace", help="its namespace (default: the context's)")
    common.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG)")
    common.add_argument("--context", help="kubeconfig context")
    parser = argparse.ArgumentParser(
        prog="kubectl goodput",
        description="Explain, what-if and approve GoodputPolicy decisions.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser(
        "explain",
        parents=[common],
        help="what the operator decided, why, and what would change it",
        description="What the operator decided, why, and what would change it.",
    )
    w = sub.add_parser(
        "whatif",
        parents=[common],
        help="plan offline with another budget or load",
        description=(
            "Plan offline from the policy's last observation with another gpuBudget and/or"
            " load, next to the current plan."
        ),
    )
    w.add_argument("--budget", type=_budget, metavar="N", help="gpuBudget to plan for")
    w.add_argument("--load", type=_load_factor, metavar="xK", help="load factor, e.g. x1.5 or x0.5")
    a = sub.add_parser(
        "approve",
        parents=[common],
        help="apply a Recommend-mode policy's recommendation once",
        description=(
            "Apply the current recommendation of a Recommend-mode policy once, through the"
            " targets' /scale subresource: shrinks first, grows only into free GPUs."
        ),
    )
    a.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="how long to wait for released GPUs before growing (default 120)",
    )
    a.add_argument("--dry-run", action="store_true", help="print the writes, write nothing")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "whatif" and args.budget is None and args.load is None:
        parser.error("whatif needs --budget N and/or --load xK")
    try:
        kube = Kube.connect(args.kubeconfig, args.context, args.namespace)
        policy = kube.policy(args.name)
        now = datetime.now(UTC)
        if args.command == "explain":
            print(explain_text(policy, now))
            return 0
        if args.command == "whatif":
            text, _ = whatif_text(policy, args.budget, args.load, now)
            print(text)
            return 0
        return asyncio.run(
            approve(kube, policy, lambda s: print(s, flush=True), args.timeout, args.dry_run)
        )
    except Refused as err:
        print(f"kubectl goodput {args.command}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
