"""The fleet emulator's pure half: the digital twin in wall-clock time, driven by what
the cluster says about a policy's pods (issue 14, item 1).

Why: in every operator test before this one the metrics came from exporters whose
numbers did not respond to what the operator did, so no test saw the loop close. Here
the serving fleet *is* the cluster's pods: a pod the ReplicaSet creates (and KWOK makes
Running and Ready) becomes a twin replica, which serves only after the policy's
``behavior.startupDelay`` (a model loading); a pod being deleted stops taking requests
and drains; a pod gone before its replica drained loses what it was running. The twin
engine (goodput.sim.engine) is the one simulator; this module only maps pods to its
replicas and its replicas' numbers back to pods.

API (one process runs many fleets; the other engineers drive it):

- :class:`FleetSpec` — one policy's fleet: ``namespace``, ``policy``, the policy's
  ``GoodputPolicySpec``, the ``Trace`` its arrivals replay (trace time 0 = the fleet's
  start), ``warm_start`` (pods present at the first sync serve at once).
- :class:`Fleet` — pure, no I/O, no clock of its own; every call takes ``now``, the
  fleet's seconds since its start:

  - ``Fleet(spec)``; ``fleet.roles`` and ``fleet.targets`` (role -> target name);
  - ``fleet.sync(now, pods)`` with *every* current pod of the fleet's targets as
    :class:`PodView` (level-triggered: a missed watch event cannot desynchronise it):
    a new Running+Ready pod gets a replica, a terminating or unready one drains
    ("drain", "unready"), one
    missing from ``pods`` is gone (in-flight requests lost). Returns the
    :class:`PodChange` list (for logs and tests);
  - ``fleet.advance(now)`` runs the twin to ``now``;
  - ``fleet.pod_samples(max_age_s=0)`` -> ``{pod name: PodSample}`` of the pods that
    serve or drain (a starting pod exposes nothing, as vLLM before its server is up);
  - ``fleet.truth()`` -> :class:`goodput.sim.harness.Outcomes` (per-request TTFT,
    ITL, met); ``fleet.lost`` (request ids lost with a deleted pod), ``fleet.log``
    (every PodChange), ``fleet.twin`` (the engine, read-only by convention);
  - ``fleet.drained()``: pods still present whose replica has finished draining.
- :func:`exposition` renders one PodSample in the vLLM text format, with ``model_name``
  as its only label (as vLLM does: ``pod``, ``namespace`` and ``pool`` come from
  service discovery, as a PodMonitor's relabelling adds them).
- The live edge, :class:`goodput.sim.emulator_live.Emulator` (API server watches, one
  loopback port per pod, Prometheus file-based service discovery, the wall clock):
  ``Emulator(api_client, sd_file, sample_max_age_s=0.0)``, ``.add(FleetSpec)`` -> key ``(namespace,
  policy)``, ``.start()``, ``.truth(key)``, ``.fleet(key)`` (use under ``.lock``),
  ``.remove(key)``, ``.stop()``. ``goodput emulate`` is its command line.

Stated modelling choices: a pod whose Ready condition goes False drains like a
terminating one (a real engine failing its probe keeps its requests but gets no new
ones); a pod that is Ready again later gets a fresh replica (a restart, with the
start-up delay). The replica's GPUs are the pool profile's, whatever the pod asks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest

from goodput.api.spec import GoodputPolicySpec
from goodput.sim.engine import DRAINING, GONE, SERVING, STARTING, Twin
from goodput.sim.exporter import PodSample, VllmTwinCollector
from goodput.sim.harness import Outcomes, outcomes
from goodput.sim.scenario import Scenario, build_scenario
from goodput.sim.traces import Trace

FleetKey = tuple[str, str]  # (namespace, policy)


@dataclass(frozen=True)
class FleetSpec:
    namespace: str
    policy: str
    spec: GoodputPolicySpec
    trace: Trace
    warm_start: bool = True

    @property
    def key(self) -> FleetKey:
        return (self.namespace, self.policy)


@dataclass(frozen=True)
class PodView:
    """What the fleet needs of one pod: its name, its pool (role), whether it is
    Running and Ready, and whether it is being deleted."""

    name: str
    role: str
    ready: bool
    terminating: bool = False


@dataclass(frozen=True)
class PodChange:
    t: float
    pod: str
    role: str
    what: str  # "start" | "serve-now" (warm start) | "drain" | "unready" | "gone"
    inflight: int = 0  # requests running at a drain; requests lost at a gone


@dataclass
class _Bound:
    replica: int
    draining: bool = False


@dataclass
class Fleet:
    """One policy's emulated fleet (see the module doc)."""

    fs: FleetSpec
    scenario: Scenario = field(init=False)
    twin: Twin = field(init=False)
    log: list[PodChange] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)
    _bound: dict[str, _Bound] = field(default_factory=dict)
    _synced: bool = False
    _collector: VllmTwinCollector = field(init=False)
    _cache_t: float = math.nan
    _cache: dict[str, PodSample] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.scenario = build_scenario(self.fs.spec)
        self.twin = Twin(self.scenario.twin, self.fs.trace)
        self._collector = VllmTwinCollector(self.twin)

    @property
    def key(self) -> FleetKey:
        return self.fs.key

    @property
    def roles(self) -> list[str]:
        return self.scenario.roles

    @property
    def targets(self) -> dict[str, str]:
        """role -> the name of its target workload (in the fleet's namespace)."""
        return {str(p.role.value): p.target_ref.name for p in self.fs.spec.pools}

    def advance(self, now: float) -> None:
        if now > self.twin.now:
            self.twin.run_until(now)

    def sync(self, now: float, pods: Iterable[PodView]) -> list[PodChange]:
        self.advance(now)
        tw = self.twin
        changes: list[PodChange] = []
        seen: set[str] = set()
        warm = self.fs.warm_start and not self._synced
        for p in pods:
            if p.role not in self.scenario.twin.pools:
                raise ValueError(f"pod {p.name}: role {p.role!r} is not a pool of {self.key}")
            seen.add(p.name)
            bound = self._bound.get(p.name)
            serves = p.ready and not p.terminating
            if bound is None:
                if serves:
                    delay = 0.0 if warm else self.scenario.startup_delay_s
                    rid = tw.add_replica(p.role, now, delay)
                    self._bound[p.name] = _Bound(rid)
                    changes.append(PodChange(now, p.name, p.role, "serve-now" if warm else "start"))
                continue
            if not serves and not bound.draining:
                bound.draining = True
                n = tw.drain_replica(bound.replica, now)
                what = "drain" if p.terminating else "unready"
                changes.append(PodChange(now, p.name, p.role, what, n))
        for name in [n for n in self._bound if n not in seen]:
            bound = self._bound.pop(name)
            rep = tw.replicas[bound.replica]
            lost = tw.kill_replica(bound.replica, now)
            self.lost.extend(lost)
            changes.append(PodChange(now, name, rep.role, "gone", len(lost)))
        self._synced = True
        self.log.extend(changes)
        if changes:
            self._cache_t = math.nan
        return changes

    def pod_samples(self, max_age_s: float = 0.0) -> dict[str, PodSample]:
        """Each serving or draining pod's sample now, or the one computed at most
        ``max_age_s`` of twin time ago (one computation covers every pod of the fleet;
        many fleets in one process can trade freshness for CPU this way)."""
        if self.twin.now - self._cache_t <= max_age_s:
            return self._cache
        by_rid = {b.replica: name for name, b in self._bound.items()}
        shown = [r for r in self.twin.replicas if r.state != STARTING]
        samples = self._collector._pods()  # same order: every replica but the starting
        out: dict[str, PodSample] = {}
        for rep, smp in zip(shown, samples, strict=True):
            name = by_rid.get(rep.id)
            if name is not None and rep.state != GONE:
                out[name] = PodSample(
                    name, smp.pool, smp.model_name, smp.counters, smp.histograms, smp.gauges
                )
        self._cache, self._cache_t = out, self.twin.now
        return out

    def exposed(self) -> dict[str, str]:
        """pod -> role of the pods whose replica serves or drains: those with a /metrics."""
        out: dict[str, str] = {}
        for name, b in self._bound.items():
            rep = self.twin.replicas[b.replica]
            if rep.state in (SERVING, DRAINING):
                out[name] = rep.role
        return out

    def drained(self) -> list[str]:
        """Pods still present whose replica has drained (its process would have exited:
        a kubelet would now remove the pod, its grace period notwithstanding)."""
        return [
            name
            for name, b in self._bound.items()
            if b.draining and self.twin.replicas[b.replica].state == GONE
        ]

    def replicas(self) -> dict[str, dict[str, int]]:
        """Per role: replicas starting, serving and draining now (for summaries)."""
        out = {r: {"starting": 0, "serving": 0, "draining": 0} for r in self.roles}
        for b in self._bound.values():
            rep = self.twin.replicas[b.replica]
            state = {STARTING: "starting", SERVING: "serving", DRAINING: "draining"}.get(rep.state)
            if state is not None:
                out[rep.role][state] += 1
        return out

    def truth(self) -> Outcomes:
        return outcomes(self.twin)


_DROP_LABELS = frozenset({"pod", "pool"})


class _One:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def exposition(sample: PodSample) -> bytes:
    """One pod's /metrics body in the vLLM text format, ``model_name`` its only label."""
    families: list[Metric] = []
    for fam in VllmTwinCollector._families(None, [sample]):  # type: ignore[arg-type]
        out = Metric(fam.name, fam.documentation, fam.type, fam.unit)
        out.samples = [
            s._replace(labels={k: v for k, v in s.labels.items() if k not in _DROP_LABELS})
            for s in fam.samples
        ]
        families.append(out)
    return generate_latest(_One(families))  # type: ignore[arg-type]
