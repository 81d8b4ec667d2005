"""One control-loop tick for one policy, the thin shell around the pure halves:
gather ``Facts`` (spec, targets, claims, observation, plan), ``decide`` the writes,
issue them in order (stopping at the first refusal), ``conclude`` status and events.

Everything here is async and awaits its edges (the /scale client, Prometheus), so
kopf's event loop never blocks. Bad input changes nothing: an invalid spec, a missing
target, another autoscaler or an older policy on a target, a missing profile or missing
metrics each *hold* and say so; only the budget overrides a hold.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from pydantic import ValidationError

from goodput.actuator import drain
from goodput.actuator.behavior import tier_key
from goodput.actuator.claims import Claim, first_claimant
from goodput.actuator.kube import TargetError, WorkloadScale, api_error
from goodput.actuator.route import (
    BackendKey,
    RouteError,
    RouteOwner,
    RoutePatch,
    RouteRefusal,
    plan_weights,
    read_weights,
)
from goodput.api.spec import GoodputPolicySpec, Mode, TargetRef, format_validation_error
from goodput.api.status import ConditionType, GoodputPolicyStatus
from goodput.observation import Observation
from goodput.operator.conclude import conclude
from goodput.operator.decide import decide
from goodput.operator.facts import (
    Blocker,
    Event,
    Facts,
    Intent,
    Outcome,
    RouteResult,
    RouteView,
    Target,
    Write,
    WriteResult,
)
from goodput.operator.variants import (
    SEP,
    flatten,
    merge_observations,
    pool_entries,
    with_pools,
)
from goodput.plan import Adjustment, Allocation, Plan
from goodput.planner import GoodputPlanner, memory, resolve_profile
from goodput.planner.variants import VariantPlanner
from goodput.ports import ObservationSource
from goodput.profiles import ProfileError
from goodput.reasons import Reason

log = logging.getLogger(__name__)

__all__ = ["Outcome", "PolicyRef", "Reconciler", "ScaleClient"]


class ScaleClient(Protocol):
    async def read(self, ref: TargetRef, namespace: str) -> WorkloadScale: ...
    async def write(self, ref: TargetRef, namespace: str, replicas: int) -> None: ...
    async def other_autoscalers(self, ref: TargetRef, namespace: str) -> list[str]: ...
    async def claims(self, namespace: str) -> list[Claim]: ...


class RouteClient(Protocol):
    """The traffic-split edge (``goodput.actuator.route_kube.KubeTrafficRouter``): read
    an HTTPRoute, send a patch planned on it. Raises ``RouteError``."""

    async def get(self, namespace: str, name: str) -> dict[str, Any]: ...
    async def apply(self, namespace: str, name: str, patch: RoutePatch) -> Any: ...


@runtime_checkable
class DrainClient(Protocol):
    """The drain edge of a scale client (``KubeScaleClient``): optional, so a client
    without it (the twin's SimCluster, test fakes) scales without marking pods."""

    async def drain_before_scale_down(
        self,
        ref: TargetRef,
        namespace: str,
        running: Mapping[str, float] | None,
        to_replicas: int,
    ) -> tuple[drain.DrainChoice, dict[str, str]]: ...


#: Drain-aware scale-down for Reconcilers built without ``drain_aware=``; ``goodput run
#: --no-drain`` turns it off for the whole process.
DRAIN_BY_DEFAULT = True


@dataclass(frozen=True)
class PolicyRef:
    namespace: str
    name: str
    created: datetime | None = None  # metadata.creationTimestamp: who claimed first


@dataclass
class _Runtime:
    key: tuple[int, str]  # generation and resolved spec: rebuild when either changes
    spec: GoodputPolicySpec
    planner: GoodputPlanner | VariantPlanner
    sources: dict[str, ObservationSource]  # per variant (one, "default", without variants)
    # Set when the planner's memory was read from status.plannerState (a restarted
    # operator): the next plan says so (StateRestored), then it is cleared.
    restored: str | None = None


def _restore(planner: GoodputPlanner | VariantPlanner, raw: dict[str, Any] | None) -> str | None:
    """Give a new planner the memory the previous status holds; what was restored, in
    words, or None (no memory, or one that cannot be read whole: then it starts fresh,
    and the log says why)."""
    if not raw:
        return None
    try:
        if isinstance(planner, VariantPlanner):
            planner.state = memory.load_variants(raw)
            f = planner.state.demand
        else:
            state = memory.load(raw)
            planner.state = state
            f = state.forecast
    except ValueError as err:
        log.warning("status.plannerState not restored, starting fresh: %s", err)
        return None
    if f is None:
        return "planner memory restored from status.plannerState (no forecast yet)"
    held = max((v for _, v in f.recent), default=f.level)
    return (
        f"planner memory restored from status.plannerState: forecast level {f.level:.2f}"
        f" req/s, {len(f.recent)} figures in the patience window (highest {held:.2f})"
    )


def _memory(planner: GoodputPlanner | VariantPlanner) -> dict[str, Any]:
    if isinstance(planner, VariantPlanner):
        return memory.dump_variants(planner.state)
    return memory.dump(planner.state)


def _refs(spec: GoodputPolicySpec) -> dict[str, TargetRef]:
    refs = {e.key: e.pool.target_ref for e in pool_entries(spec)}
    refs.update({tier_key(t.name): t.target_ref for t in spec.kv_cache.tiers})
    return refs


class Reconciler:
    """Keeps one policy's planner and metric source between ticks."""

    def __init__(
        self,
        scale: ScaleClient,
        source_factory: Callable[[GoodputPolicySpec, str], Any],
        clock: Callable[[], float] = time.time,
        drain_aware: bool | None = None,
        router: RouteClient | None = None,
    ) -> None:
        self.scale = scale
        self.source_factory = source_factory
        self.clock = clock
        self.router = router
        self.drain_aware = DRAIN_BY_DEFAULT if drain_aware is None else drain_aware
        self._runtime: _Runtime | None = None

    async def tick(
        self,
        policy: PolicyRef,
        generation: int,
        raw_spec: dict[str, Any],
        raw_status: dict[str, Any],
    ) -> Outcome:
        now = self.clock()
        facts = await self._facts(policy, generation, raw_spec, raw_status, now)
        intent = decide(facts)
        results: list[WriteResult] = []
        refs = _refs(facts.spec) if facts.spec is not None else {}
        drained: list[Event] = []
        # Weights act at once and are planned for the replicas serving now: the split
        # goes first, and a split that cannot be written stops the tick's scale writes
        # (the replicas were planned for it).
        route = await self._split(policy, facts, intent)
        writes = intent.writes if route is None or route.ok else ()
        for w in writes:
            if not w.up:  # drain-aware scale-down: mark the pods to go first
                try:
                    drained += await self._drain(facts, refs[w.key], policy.namespace, w)
                except Exception:  # never blocks the scale-down (the budget comes first)
                    log.exception("drain marking before %s failed", w.target)
            try:
                await self.scale.write(refs[w.key], policy.namespace, w.to_replicas)
            except Exception as err:  # refused: record it, attempt nothing after it
                results.append(WriteResult(w, api_error(err)))
                break
            results.append(WriteResult(w))
        out = conclude(facts, intent, results, route)
        out.events.extend(drained)
        return out

    # ---- the traffic split between variants (issue 13) -----------------------------

    async def _split(self, policy: PolicyRef, facts: Facts, intent: Intent) -> RouteResult | None:
        """Write the planned shares as the route's backendRef weights (Enforce, a plan
        that is not a hold, not an over-budget shrink); None when nothing is to be
        written. The route was read and checked this tick (``_route``)."""
        view, vplan, spec = facts.route, facts.variant_plan, facts.spec
        if view is None or vplan is None or spec is None or self.router is None:
            return None
        if spec.mode != Mode.Enforce or facts.blocker is not None or vplan.hold:
            return None
        if intent.emergency or intent.reason in _BUDGET_FIRST:
            return None
        shares = vplan.shares
        if shares == view.shares:
            return None
        owner = RouteOwner(policy.namespace, policy.name)
        weights = {view.owned[n]: w for n, w in shares.items()}
        planned = plan_weights(view.route, owner, list(view.owned.values()), weights)
        if isinstance(planned, RouteRefusal):
            return RouteResult(view.name, view.shares, view.shares, planned.message, planned.reason)
        name = view.name.split("/", 1)[1]
        try:
            await self.router.apply(policy.namespace, name, planned)
        except RouteError as err:
            return RouteResult(view.name, view.shares, view.shares, err.message, err.reason)
        except Exception as err:  # the API server itself failed
            return RouteResult(
                view.name, view.shares, view.shares, api_error(err), Reason.RouteRefused
            )
        return RouteResult(view.name, view.shares, dict(shares))

    async def _route(
        self, policy: PolicyRef, spec: GoodputPolicySpec, claims: list[Claim]
    ) -> tuple[RouteView | None, Blocker | None]:
        """Read the policy's HTTPRoute and check, before planning, that this policy may
        write its weights (owner, foreign backendRefs, one rule): a route it cannot
        safely edit holds the policy with RouteRefused, a missing one with RouteNotFound."""
        ref = spec.traffic_split.http_route_ref
        if not spec.variants or ref is None:
            return None, None
        where = f"HTTPRoute/{ref.name}"
        if self.router is None:
            msg = f"{where}: this operator has no traffic-split client; holding"
            return None, Blocker(Reason.RouteRefused, msg, ConditionType.AbleToScale)
        owned: dict[str, BackendKey] = {}
        for v in spec.variants:
            b = v.backend_ref
            assert b is not None, "the API requires a backendRef per variant with a route"
            owned[v.name] = BackendKey(name=b.name, group=b.group, kind=b.kind.value)
        try:
            obj = await self.router.get(policy.namespace, ref.name)
        except RouteError as err:
            return None, Blocker(err.reason, f"{err.message}; holding", ConditionType.AbleToScale)
        except Exception as err:  # the API server itself failed: hold and retry
            msg = f"cannot read {where}: {api_error(err)}; holding"
            return None, Blocker(Reason.RouteNotFound, msg, ConditionType.AbleToScale)
        keys = list(owned.values())
        read = read_weights(obj, keys)
        if isinstance(read, RouteRefusal):
            return None, Blocker(read.reason, f"{read.message}; holding", ConditionType.AbleToScale)
        live = {f"{policy.namespace}/{c.name}" for c in claims}
        even = _even(len(keys))
        probe = plan_weights(
            obj,
            RouteOwner(policy.namespace, policy.name),
            keys,
            dict(zip(keys, even, strict=True)),
            live_owners=live,
        )
        if isinstance(probe, RouteRefusal):
            msg = f"{probe.message}; holding, nothing changed"
            return None, Blocker(probe.reason, msg, ConditionType.AbleToScale)
        shares = {n: round(read.shares[k]) for n, k in owned.items()}
        return RouteView(where, obj, owned, shares), None

    # ---- drain-aware scale-down (issue 15, item 3) ----------------------------------

    async def _drain(self, facts: Facts, ref: TargetRef, namespace: str, w: Write) -> list[Event]:
        """Before a pool shrinks, mark its least busy pods with pod-deletion-cost
        (``goodput.actuator.drain`` chooses; the scale client reads pods and patches).

        Never blocks the scale-down (the budget comes first): a skip or a refused patch
        is reported (event ``DrainMarked``, log line), then the write goes ahead. KV
        tiers (no requests of their own), scale clients without the drain edge (the
        twin, test fakes) and ``goodput run --no-drain`` mark nothing."""
        if not self.drain_aware or not isinstance(self.scale, DrainClient):
            return []
        if w.key.startswith("tier:"):
            return []
        pool = facts.observation.pools.get(w.key) if facts.observation is not None else None
        running = pool.running_requests_by_pod if pool is not None else None
        choice, failed = await self.scale.drain_before_scale_down(
            ref, namespace, running, w.to_replicas
        )
        if choice.skip is drain.Skip.NotShrinking:
            return []
        warn, message = drain.summary(
            f"before {w.target} {w.from_replicas} -> {w.to_replicas}", choice, failed
        )
        log.info(
            "drain %s",
            message,
            extra={
                "namespace": namespace,
                "reason": Reason.DrainMarked.value,
                "target": w.target,
                "pods": {n: choice.loads.get(n) for n in choice.chosen},
                "skip": choice.skip.value if choice.skip is not None else None,
            },
        )
        return [Event("Warning" if warn else "Normal", Reason.DrainMarked, message)]

    async def _facts(
        self,
        policy: PolicyRef,
        generation: int,
        raw_spec: dict[str, Any],
        raw_status: dict[str, Any],
        now: float,
    ) -> Facts:
        ns = policy.namespace
        base = Facts(
            now=datetime.fromtimestamp(now, UTC),
            generation=generation,
            prev=_previous_status(raw_status),
        )
        try:
            spec = GoodputPolicySpec.model_validate(raw_spec)
        except ValidationError as err:
            msg = "invalid spec, nothing changed: " + "; ".join(
                format_validation_error(err, "spec")
            )
            return _with(base, blocker=Blocker(Reason.InvalidPolicy, msg, ConditionType.Ready))
        base = _with(base, spec=spec)
        refs = _refs(spec)
        scales: dict[str, WorkloadScale] = {}
        for key, ref in refs.items():
            try:
                scales[key] = await self.scale.read(ref, ns)
            except TargetError as err:
                return _with(
                    base, blocker=Blocker(err.reason, err.message, ConditionType.AbleToScale)
                )
            except Exception as err:  # the API server itself failed: hold and retry
                msg = f"cannot read {ref.kind}/{ref.name}: {api_error(err)}; nothing changed"
                return _with(
                    base, blocker=Blocker(Reason.TargetNotFound, msg, ConditionType.AbleToScale)
                )
        hpas = await self._other_autoscalers(policy, refs)
        claims = await self.scale.claims(ns) if not hpas else []
        others = hpas or _older_claimant(policy, refs, claims)
        if others:
            return _with(
                base,
                blocker=Blocker(Reason.ConflictingController, others, ConditionType.AbleToScale),
            )
        resolved, problem = _resolve_gpus(spec, scales)
        if resolved is None:
            return _with(base, blocker=Blocker(Reason.InvalidPolicy, problem, ConditionType.Ready))
        facts = _with(base, spec=resolved, targets=_targets(resolved, scales))
        profile = _profile_problem(resolved)
        if profile is not None:
            return _with(facts, blocker=profile)
        route, refused = await self._route(policy, resolved, claims)
        facts = _with(facts, route=route)
        if refused is not None:
            return _with(facts, blocker=refused)
        rt = await self._runtime_for(resolved, generation, ns, base.prev)
        observations: dict[str, Observation] = {}
        for name, source in rt.sources.items():
            try:
                raw = await source.observe(now)
            except Exception as err:  # e.g. the auth Secret is missing: hold, never guess
                url = resolved.metrics.prometheus_url
                msg = f"cannot observe Prometheus at {url}: {api_error(err)}; holding"
                return _with(
                    facts,
                    blocker=Blocker(Reason.MetricsMissing, msg, ConditionType.MetricsAvailable),
                )
            prefix = "" if not resolved.variants else f"{name}{SEP}"
            mine = {k[len(prefix) :]: v for k, v in scales.items() if k.startswith(prefix)}
            observations[name] = _with_ready_replicas(raw, mine)
        if isinstance(rt.planner, VariantPlanner):
            out = await self._plan_variants(facts, rt.planner, observations, scales, now)
            if out.variant_plan is not None:  # the planner ran: its memory moved
                out = _with(out, planner_state=_memory(rt.planner))
            return out
        obs = next(iter(observations.values()))
        facts = _with(facts, observation=obs)
        blind = _blind(resolved, obs)
        if blind is not None:
            return _with(facts, blocker=blind)
        current_pools = {p.role.value: scales[p.role.value].spec_replicas for p in resolved.pools}
        current_tiers = {
            t.name: scales[tier_key(t.name)].spec_replicas for t in resolved.kv_cache.tiers
        }
        plan = rt.planner.decide(obs, Allocation(pools=current_pools, tiers=current_tiers), now)
        if rt.restored is not None:
            plan = _noted(plan, Adjustment(reason=Reason.StateRestored, message=rt.restored))
            rt.restored = None
        return _with(facts, plan=plan, planner_state=_memory(rt.planner))

    async def _plan_variants(
        self,
        facts: Facts,
        planner: VariantPlanner,
        observations: dict[str, Observation],
        scales: dict[str, WorkloadScale],
        now: float,
    ) -> Facts:
        spec = facts.spec
        assert spec is not None
        obs = merge_observations(observations)
        facts = _with(facts, observation=obs)
        blind = _blind(spec, obs)
        if blind is not None:
            return _with(facts, blocker=blind)
        current = {
            v.name: Allocation(
                pools={
                    p.role.value: scales[f"{v.name}{SEP}{p.role.value}"].spec_replicas
                    for p in v.pools
                }
            )
            for v in spec.variants
        }
        shares = facts.route.shares if facts.route is not None else None
        vplan = planner.decide(observations, current, now, shares)
        return _with(facts, plan=flatten(vplan), variant_plan=vplan)

    async def _other_autoscalers(self, policy: PolicyRef, refs: dict[str, TargetRef]) -> str:
        """'' when no HPA (or KEDA's) scales a target of this policy, else which."""
        for ref in refs.values():
            hpas = await self.scale.other_autoscalers(ref, policy.namespace)
            if hpas:
                return (
                    f"{ref.kind}/{ref.name} is also scaled by {', '.join(hpas)}; "
                    "refusing to fight it, nothing changed"
                )
        return ""

    async def _runtime_for(
        self,
        spec: GoodputPolicySpec,
        generation: int,
        namespace: str,
        prev: GoodputPolicyStatus,
    ) -> _Runtime:
        key = (generation, spec.model_dump_json())
        if self._runtime is None or self._runtime.key != key:
            fresh = self._runtime is None
            self.close()
            sources = {
                name: await self.source_factory(vspec, namespace)
                for name, vspec in spec.variant_specs().items()
            }
            planner: GoodputPlanner | VariantPlanner = (
                VariantPlanner(spec) if spec.variants else GoodputPlanner(spec)
            )
            # A new process (or a new Reconciler) takes the memory the last status
            # holds; a spec change within one process keeps its own planner's memory
            # out of it (the old spec's forecast may not fit the new pools).
            restored = _restore(planner, prev.planner_state) if fresh else None
            self._runtime = _Runtime(key, spec, planner, sources, restored)
        return self._runtime

    def close(self) -> None:
        if self._runtime is not None:
            for source in self._runtime.sources.values():
                close = getattr(source, "close", None)
                if close is not None:
                    close()
            self._runtime = None


def _older_claimant(policy: PolicyRef, refs: dict[str, TargetRef], claims: list[Claim]) -> str:
    """'' when no older GoodputPolicy claims a target of this policy, else which."""
    for ref in refs.values():
        owner = first_claimant(claims, ref)
        if owner is not None and owner.name != policy.name:
            return (
                f"{ref.kind}/{ref.name} is already scaled by GoodputPolicy {owner.name}"
                f" (created {owner.created.isoformat() if owner.created else 'earlier'});"
                " the older policy keeps it, this one holds and writes nothing"
            )
    return ""


def _with(f: Facts, **changes: Any) -> Facts:
    return replace(f, **changes)


def _noted(plan: Plan, note: Adjustment) -> Plan:
    return plan.model_copy(update={"adjustments": (note, *plan.adjustments)})


def _targets(spec: GoodputPolicySpec, scales: dict[str, WorkloadScale]) -> dict[str, Target]:
    out = {}
    for e in pool_entries(spec):
        p = e.pool
        s = scales[e.key]
        out[e.key] = Target(
            e.key,
            p.target_ref,
            s.spec_replicas,
            s.pods_present,
            s.pods_ready,
            p.gpus_per_replica or 0,
            p.min_replicas,
            max(p.max_replicas, p.min_replicas),
            s.pods_terminating,
        )
    for t in spec.kv_cache.tiers:
        key = tier_key(t.name)
        s = scales[key]
        out[key] = Target(
            key,
            t.target_ref,
            s.spec_replicas,
            s.pods_present,
            s.pods_ready,
            t.gpus_per_replica,
            t.min_replicas,
            max(t.max_replicas, t.min_replicas),
            s.pods_terminating,
        )
    return out


def _profile_problem(spec: GoodputPolicySpec) -> Blocker | None:
    """The planner needs each pool's own performance model; none is ever assumed."""
    for e in pool_entries(spec):
        try:
            resolve_profile(e.pool, None)
        except ProfileError as err:
            return Blocker(err.reason, f"{err}; holding", ConditionType.Ready)
    return None


# What the planner cannot plan without (planner.missing_signals): demand and its shape.
_REQUIRED = {"arrival_rate_rps", "mean_input_tokens", "mean_output_tokens", "quality"}


def _blind(spec: GoodputPolicySpec, obs: Observation) -> Blocker | None:
    """Prometheus unreachable, or a required rate whose window overlaps a gap."""
    if obs.unreachable:
        why = next((n for n in obs.notes if "unreachable" in n), "no answer")
        url = spec.metrics.prometheus_url
        msg = f"cannot reach Prometheus at {url}: {why}; holding the current allocation"
        return Blocker(Reason.PrometheusUnreachable, msg, ConditionType.MetricsAvailable)
    partial: Sequence[str] = getattr(obs, "partial", ())
    if partial:
        hit = [s for s in partial if s.split(".")[-1] in _REQUIRED]
        if hit:
            msg = (
                f"rates whose window overlaps a gap in the data: {', '.join(sorted(hit))};"
                " holding until a full window of fresh samples has passed"
            )
            return Blocker(Reason.MetricsPartial, msg, ConditionType.MetricsAvailable)
    return None


def _previous_status(raw: dict[str, Any]) -> GoodputPolicyStatus:
    try:
        return GoodputPolicyStatus.model_validate(raw or {})
    except ValidationError:
        log.warning("ignoring an unreadable previous status")
        return GoodputPolicyStatus()


def _resolve_gpus(
    spec: GoodputPolicySpec, scales: dict[str, WorkloadScale]
) -> tuple[GoodputPolicySpec | None, str]:
    pools = {}
    for e in pool_entries(spec):
        p = e.pool
        if p.gpus_per_replica is not None:
            continue
        found = scales[e.key].template_gpus
        if not found:
            return None, (
                f"pool {e.key}: gpusPerReplica is not set and {p.target_ref.kind}/"
                f"{p.target_ref.name}'s pod template has no nvidia.com/gpu limit; nothing changed"
            )
        pools[e.key] = p.model_copy(update={"gpus_per_replica": found})
    return with_pools(spec, pools), ""


def _even(n: int) -> list[int]:
    """100 split in n integer parts (the first ones one larger), for checking a route."""
    return [100 // n + (1 if i < 100 % n else 0) for i in range(n)]


# Decisions that come before any split: the budget's.
_BUDGET_FIRST = {Reason.OverBudget, Reason.MinimumsExceedBudget}


def _with_ready_replicas(obs: Observation, scales: dict[str, WorkloadScale]) -> Observation:
    pools = {
        role: p
        if p.ready_replicas is not None or role not in scales
        else p.model_copy(update={"ready_replicas": scales[role].pods_ready})
        for role, p in obs.pools.items()
    }
    return obs.model_copy(update={"pools": pools})
