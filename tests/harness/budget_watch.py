"""Every state of one namespace's GPUs that a client could observe, from watch events.

The fault tests need the budget promise checked at every moment, not at the moments a
poll happens to look: three watches (pods, Deployments, GoodputPolicies) feed one state,
and every event appends a :class:`Sample` of it: GPUs held by pods that exist
(terminating ones included, Succeeded/Failed ones not), GPUs the Deployments' spec
replicas ask for, and the policy's budget at that moment. A watch that breaks (an API
server restart, a 410 Gone) is re-listed and resumed; the gap is recorded, so a test can
tell "nothing was observable" from "nothing happened".

Grows are recorded too (a Deployment's spec.replicas going up, with the GPUs held at
that event), for the rule "nothing grows while over budget".
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.harness.cluster import LocalCluster

GPU = "nvidia.com/gpu"


@dataclass(frozen=True)
class Sample:
    t: float  # time.monotonic() when the event arrived
    kind: str  # Pod, Deployment, GoodputPolicy, or "relist"
    name: str
    held: int  # GPUs of pods that exist (terminating included)
    asked: int  # sum over Deployments of spec.replicas x GPUs per pod
    budget: int | None  # the policy's spec.gpuBudget, None before it is seen
    terminating: int  # pods with a deletionTimestamp that still exist


@dataclass(frozen=True)
class Grow:
    t: float
    deployment: str
    before: int
    after: int
    held: int
    budget: int | None


def _pod_gpus(pod: Any) -> int:
    return sum(int((c.resources.limits or {}).get(GPU, "0")) for c in pod.spec.containers)


def _template_gpus(dep: Any) -> int:
    return sum(
        int((c.resources.limits or {}).get(GPU, "0")) for c in dep.spec.template.spec.containers
    )


@dataclass
class BudgetWatch:
    """``with BudgetWatch(cluster, ns, policy="chat") as w: ...``; then ``w.samples``."""

    cluster: LocalCluster
    namespace: str
    policy: str = "chat"
    samples: list[Sample] = field(default_factory=list)
    grows: list[Grow] = field(default_factory=list)
    gaps: list[tuple[float, float]] = field(default_factory=list)  # watch down, back
    _pods: dict[str, tuple[int, bool]] = field(default_factory=dict)  # uid -> (gpus, term.)
    _deps: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (replicas, gpus)
    _budget: int | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _synced: set[str] = field(default_factory=set)

    # -- reading ---------------------------------------------------------------------------
    def since(self, t: float) -> list[Sample]:
        with self._lock:
            return [s for s in self.samples if s.t >= t]

    def last(self) -> Sample:
        with self._lock:
            return self.samples[-1]

    def over_budget(self, since: float = 0.0, until: float = float("inf")) -> list[Sample]:
        """Samples in [since, until) whose GPUs held exceed the budget of that moment."""
        return [
            s
            for s in self.since(since)
            if s.t < until and s.budget is not None and s.held > s.budget
        ]

    def grows_while_over(self) -> list[Grow]:
        with self._lock:
            return [g for g in self.grows if g.budget is not None and g.held > g.budget]

    def wait(self, check: Callable[[Sample], bool], timeout: float, what: str) -> Sample:
        """The first sample from now on (the current state included) passing ``check``."""
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            with self._lock:
                fresh = self.samples[max(0, seen - 1) :]
                seen = len(self.samples)
            for s in fresh:
                if check(s):
                    return s
            time.sleep(0.05)
        raise TimeoutError(f"watch: timed out after {timeout:.0f}s waiting for {what}")

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> BudgetWatch:
        for kind in ("Pod", "Deployment", "GoodputPolicy"):
            t = threading.Thread(target=self._run, args=(kind,), daemon=True, name=f"watch-{kind}")
            self._threads.append(t)
            t.start()
        deadline = time.monotonic() + 30
        while len(self._synced) < 3:
            if time.monotonic() > deadline:
                raise TimeoutError(f"watch: only {sorted(self._synced)} listed after 30 s")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=40)

    # -- internals -------------------------------------------------------------------------
    def _record(self, kind: str, name: str) -> None:
        held = sum(g for g, _ in self._pods.values())
        asked = sum(r * g for r, g in self._deps.values())
        term = sum(1 for _, t in self._pods.values() if t)
        self.samples.append(Sample(time.monotonic(), kind, name, held, asked, self._budget, term))

    def _apply(self, kind: str, etype: str, obj: Any) -> None:
        name = obj["metadata"]["name"] if isinstance(obj, dict) else obj.metadata.name
        if kind == "Pod":
            uid = obj.metadata.uid
            phase = obj.status.phase if obj.status else None
            if etype == "DELETED" or phase in ("Succeeded", "Failed"):
                self._pods.pop(uid, None)
            else:
                self._pods[uid] = (_pod_gpus(obj), obj.metadata.deletion_timestamp is not None)
        elif kind == "Deployment":
            if etype == "DELETED":
                self._deps.pop(name, None)
            else:
                before = self._deps.get(name, (None, 0))[0]
                replicas = int(obj.spec.replicas or 0)
                self._deps[name] = (replicas, _template_gpus(obj))
                if before is not None and replicas > before:
                    held = sum(g for g, _ in self._pods.values())
                    self.grows.append(
                        Grow(time.monotonic(), name, before, replicas, held, self._budget)
                    )
        elif name == self.policy:
            if etype == "DELETED":
                self._budget = None
            else:
                self._budget = int(obj["spec"]["gpuBudget"])
        self._record(kind, name)

    def _list(self, kind: str, apis: tuple[Any, Any, Any]) -> tuple[list[Any], str]:
        core, apps, custom = apis
        if kind == "Pod":
            res = core.list_namespaced_pod(self.namespace)
            return res.items, res.metadata.resource_version
        if kind == "Deployment":
            res = apps.list_namespaced_deployment(self.namespace)
            return res.items, res.metadata.resource_version
        raw = custom.list_namespaced_custom_object(
            "goodput.dev", "v1alpha1", self.namespace, "goodputpolicies"
        )
        return raw["items"], raw["metadata"]["resourceVersion"]

    def _stream(self, kind: str, apis: tuple[Any, Any, Any], rv: str) -> Iterator[Any]:
        from kubernetes import watch

        core, apps, custom = apis
        w = watch.Watch()
        if kind == "Pod":
            yield from w.stream(
                core.list_namespaced_pod, self.namespace, resource_version=rv, timeout_seconds=20
            )
        elif kind == "Deployment":
            yield from w.stream(
                apps.list_namespaced_deployment,
                self.namespace,
                resource_version=rv,
                timeout_seconds=20,
            )
        else:
            yield from w.stream(
                custom.list_namespaced_custom_object,
                "goodput.dev",
                "v1alpha1",
                self.namespace,
                "goodputpolicies",
                resource_version=rv,
                timeout_seconds=20,
            )

    def _run(self, kind: str) -> None:
        from kubernetes import client

        api = self.cluster.api_client()
        apis = (client.CoreV1Api(api), client.AppsV1Api(api), client.CustomObjectsApi(api))
        rv: str | None = None
        down: float | None = None
        while not self._stop.is_set():
            try:
                if rv is None:
                    items, rv = self._list(kind, apis)
                    with self._lock:
                        if kind == "Pod":
                            self._pods.clear()
                        elif kind == "Deployment":
                            self._deps.clear()
                        for it in items:
                            self._apply(kind, "ADDED", it)
                        self._record("relist", kind)
                        if down is not None:
                            self.gaps.append((down, time.monotonic()))
                            down = None
                    self._synced.add(kind)
                for ev in self._stream(kind, apis, rv):
                    if self._stop.is_set():
                        return
                    obj = ev["object"]
                    if ev["type"] == "ERROR":  # 410 Gone: list again
                        rv = None
                        break
                    if ev["type"] == "BOOKMARK":
                        continue
                    meta = obj["metadata"] if isinstance(obj, dict) else None
                    rv = meta["resourceVersion"] if meta else obj.metadata.resource_version
                    with self._lock:
                        self._apply(kind, ev["type"], obj)
            except Exception:  # the API server went away: list again when it is back
                if down is None:
                    down = time.monotonic()
                rv = None
                with contextlib.suppress(Exception):
                    time.sleep(0.2)
