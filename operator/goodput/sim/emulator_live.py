"""The fleet emulator's edges: the API server's watches, one loopback HTTP port per pod,
Prometheus file-based service discovery and the wall clock, around the pure
:class:`goodput.sim.emulator.Fleet` (whose module doc is the API).

One process runs many fleets: one pod watch and one Deployment watch per namespace
that has a fleet (list, then watch from the list's resourceVersion; any error or
timeout re-lists, so a restarted API server is followed), one clock thread advancing
every fleet, one thread serving every pod's port (each port its own listening socket,
all served from one selector), one file-SD JSON file listing every serving pod as a
target with labels ``namespace``, ``pod``, ``pool``, ``policy``. A pod maps to a pool
when its labels match the target Deployment's ``spec.selector.matchLabels`` (a target
with ``matchExpressions`` is refused: say so, never guess).

Thread safety: every fleet is read and changed under ``Emulator.lock``.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

from goodput.sim.emulator import Fleet, FleetKey, FleetSpec, PodView, exposition
from goodput.sim.harness import Outcomes

log = logging.getLogger("goodput.emulate")


class _PodHandler(BaseHTTPRequestHandler):
    server: _PodServer

    def do_GET(self) -> None:
        if self.path.split("?")[0] != "/metrics":
            self.send_error(404)
            return
        body = self.server.render()
        if body is None:
            self.send_error(503, "pod not serving")
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _PodServer(HTTPServer):
    def __init__(self, addr: str, render: Callable[[], bytes | None]) -> None:
        super().__init__((addr, 0), _PodHandler)
        self.render = render
        self.timeout = 2.0

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class PortMux:
    """Many HTTP servers (one per pod, each on its own ephemeral loopback port) served
    from one thread."""

    def __init__(self, addr: str = "127.0.0.1") -> None:
        self.addr = addr
        self._sel = selectors.DefaultSelector()
        self._servers: dict[str, _PodServer] = {}
        self._mu = threading.Lock()

    def open(self, key: str, render: Callable[[], bytes | None]) -> int:
        srv = _PodServer(self.addr, render)
        with self._mu:
            self._servers[key] = srv
            self._sel.register(srv.socket, selectors.EVENT_READ, srv)
        return srv.port

    def close(self, key: str) -> None:
        with self._mu:
            srv = self._servers.pop(key, None)
            if srv is not None:
                self._sel.unregister(srv.socket)
        if srv is not None:
            srv.server_close()

    def serve(self, stop: threading.Event) -> None:
        while not stop.is_set():
            with self._mu:
                empty = not self._servers
            if empty:
                stop.wait(0.1)
                continue
            for key, _ in self._sel.select(timeout=0.2):
                srv: _PodServer = key.data
                try:
                    srv._handle_request_noblock()  # type: ignore[attr-defined]
                except Exception:  # a broken connection must not stop every pod
                    log.exception("serving %s", srv.server_address)

    def close_all(self) -> None:
        for key in list(self._servers):
            self.close(key)


def write_file_sd(path: Path, groups: list[dict[str, Any]]) -> None:
    """Atomically (write, then rename): Prometheus never reads half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(groups, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _pod_ready(pod: Any) -> bool:
    st = pod.status
    if st is None or st.phase != "Running":
        return False
    return any(c.type == "Ready" and c.status == "True" for c in st.conditions or [])


class _NamespaceWatch:
    """List+watch of one namespace's pods and Deployments into a cache; calls
    ``changed()`` after every event."""

    def __init__(
        self,
        api_client: Any,
        namespace: str,
        changed: Callable[[], None],
        lock: threading.RLock,
    ) -> None:
        self.lock = lock  # the emulator's: the cache changes only under it
        self.api_client = api_client
        self.namespace = namespace
        self.changed = changed
        self.pods: dict[str, Any] = {}
        self.selectors: dict[str, dict[str, str] | None] = {}  # None: not matchLabels-only
        # Every spec.replicas a Deployment event carried: (time.monotonic(), name, replicas).
        self.spec_log: list[tuple[float, str, int]] = []
        self.listed: set[str] = set()  # kinds listed at least once
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._loop, args=(kind,), daemon=True, name=f"watch-{kind}")
            for kind in ("pods", "deployments")
        ]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def _loop(self, kind: str) -> None:
        from kubernetes import client
        from kubernetes import watch as watch_mod

        watch: Any = watch_mod
        core = client.CoreV1Api(self.api_client)
        apps = client.AppsV1Api(self.api_client)
        list_fn: Any = (
            core.list_namespaced_pod if kind == "pods" else apps.list_namespaced_deployment
        )
        while not self.stop.is_set():
            try:
                listed: Any = list_fn(self.namespace, _request_timeout=10)
                self._replace(kind, listed.items)
                rv = listed.metadata.resource_version
                w = watch.Watch()
                for ev in w.stream(
                    list_fn, self.namespace, resource_version=rv, timeout_seconds=30
                ):
                    if self.stop.is_set():
                        w.stop()
                        break
                    if ev["type"] == "ERROR":
                        break
                    self._event(kind, ev["type"], ev["object"])
            except Exception as e:  # the API server restarting, a dropped watch
                if not self.stop.is_set():
                    log.warning("watch %s/%s: %s; re-listing", self.namespace, kind, e)
                    self.stop.wait(1.0)

    def _replace(self, kind: str, items: list[Any]) -> None:
        with self.lock:
            self.listed.add(kind)
            if kind == "pods":
                self.pods = {p.metadata.name: p for p in items}
            else:
                self.selectors = {d.metadata.name: _match_labels(d) for d in items}
                for d in items:
                    self._spec(d)
        self.changed()

    def _spec(self, dep: Any) -> None:
        name, replicas = dep.metadata.name, int(dep.spec.replicas or 0)
        last = next((r for _, n, r in reversed(self.spec_log) if n == name), None)
        if last != replicas:
            self.spec_log.append((time.monotonic(), name, replicas))

    def _event(self, kind: str, typ: str, obj: Any) -> None:
        name = obj.metadata.name
        with self.lock:
            if kind == "pods":
                if typ == "DELETED":
                    self.pods.pop(name, None)
                else:
                    self.pods[name] = obj
            elif typ == "DELETED":
                self.selectors.pop(name, None)
            else:
                self.selectors[name] = _match_labels(obj)
                self._spec(obj)
        self.changed()


def _match_labels(dep: Any) -> dict[str, str] | None:
    sel = dep.spec.selector
    if sel is None or sel.match_expressions:
        return None
    return dict(sel.match_labels or {})


class Emulator:
    """Every fleet of this process, on the wall clock (see the module doc)."""

    def __init__(
        self,
        api_client: Any,
        sd_file: Path,
        *,
        addr: str = "127.0.0.1",
        tick_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        exit_drained_pods: bool = False,
        sample_max_age_s: float = 0.0,
    ) -> None:
        self.api_client = api_client
        self.sd_file = sd_file
        self.tick_s = tick_s
        self.clock = clock
        self.exit_drained_pods = exit_drained_pods
        # A scrape may reuse a fleet's samples this old (0: every scrape is exact now).
        self.sample_max_age_s = sample_max_age_s
        self._exited: set[tuple[str, str]] = set()
        self.lock = threading.RLock()
        self.mux = PortMux(addr)
        self.fleets: dict[FleetKey, Fleet] = {}
        self.started_at: dict[FleetKey, float] = {}
        self.problems: list[str] = []
        self._watches: dict[str, _NamespaceWatch] = {}
        self._ports: dict[tuple[str, str], int] = {}  # (namespace, pod) -> port
        self._pod_fleet: dict[tuple[str, str], FleetKey] = {}
        self._roles: dict[tuple[str, str], str] = {}
        self._dirty = threading.Event()
        self._dirty_ns: set[str] = set()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sd_written = ""

    # -- fleets ------------------------------------------------------------------------
    def add(self, fs: FleetSpec, *, at: float | None = None) -> FleetKey:
        """A fleet whose trace time 0 is now (or the clock reading ``at``)."""
        with self.lock:
            if fs.key in self.fleets:
                raise ValueError(f"fleet {fs.key} exists")
            self.fleets[fs.key] = Fleet(fs)
            self.started_at[fs.key] = self.clock() if at is None else at
            if fs.namespace not in self._watches:
                w = _NamespaceWatch(
                    self.api_client, fs.namespace, self._changed(fs.namespace), self.lock
                )
                self._watches[fs.namespace] = w
                if self._threads:
                    w.start()
            self._dirty_ns.add(fs.namespace)
        self._dirty.set()
        return fs.key

    def remove(self, key: FleetKey) -> Fleet:
        with self.lock:
            fleet = self.fleets.pop(key)
            self.started_at.pop(key)
            for pk in [pk for pk, fk in self._pod_fleet.items() if fk == key]:
                self._close_pod(pk)
            self._write_sd()
        self._dirty.set()
        return fleet

    def spec_log(self, namespace: str) -> list[tuple[float, str, int]]:
        """Every change of a Deployment's spec.replicas the watch saw in ``namespace``:
        (time.monotonic(), Deployment, replicas), the first listing included."""
        return list(self._watches[namespace].spec_log)

    def fleet(self, key: FleetKey) -> Fleet:
        return self.fleets[key]

    def now(self, key: FleetKey) -> float:
        """The fleet's own time (seconds since its trace began)."""
        return self.clock() - self.started_at[key]

    def truth(self, key: FleetKey) -> Outcomes:
        with self.lock:
            f = self.fleets[key]
            f.advance(self.now(key))
            return f.truth()

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> Emulator:
        self.sd_file.parent.mkdir(parents=True, exist_ok=True)
        write_file_sd(self.sd_file, [])
        self._threads = [
            threading.Thread(target=self._clock_loop, daemon=True, name="emulator-clock"),
            threading.Thread(
                target=self.mux.serve, args=(self._stop,), daemon=True, name="emulator-http"
            ),
        ]
        for t in self._threads:
            t.start()
        with self.lock:
            for w in self._watches.values():
                w.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for w in self._watches.values():
            w.stop.set()
        for t in self._threads:
            t.join(timeout=5)
        self.mux.close_all()
        # No pod serves any more: Prometheus stops scraping them (it would mark them down).
        write_file_sd(self.sd_file, [])

    # -- internals ---------------------------------------------------------------------
    def _changed(self, namespace: str) -> Callable[[], None]:
        def changed() -> None:
            with self.lock:
                self._dirty_ns.add(namespace)
            self._dirty.set()

        return changed

    def _clock_loop(self) -> None:
        while not self._stop.wait(self.tick_s):
            try:
                exit_now: list[tuple[str, str]] = []
                with self.lock:
                    if self._dirty.is_set():
                        self._dirty.clear()
                        self._sync_all()
                    for key, f in self.fleets.items():
                        f.advance(self.now(key))
                        if self.exit_drained_pods:
                            exit_now += [(key[0], p) for p in f.drained()]
                    self._update_ports()
                for pk in exit_now:
                    if pk not in self._exited:
                        self._exited.add(pk)
                        self._exit_pod(*pk)
            except Exception as e:
                self.problems.append(f"{time.strftime('%H:%M:%S')} {e!r}")
                log.exception("emulator clock")

    def _exit_pod(self, namespace: str, pod: str) -> None:
        """The drained pod's container has exited: remove the pod now (grace 0)."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        try:
            client.CoreV1Api(self.api_client).delete_namespaced_pod(
                pod, namespace, grace_period_seconds=0, _request_timeout=10
            )
        except ApiException as e:
            if e.status != 404:
                self._problem(f"deleting drained pod {namespace}/{pod}: {e.status} {e.reason}")

    def _sync_all(self) -> None:
        dirty, self._dirty_ns = self._dirty_ns, set()
        for key, fleet in self.fleets.items():
            if key[0] not in dirty:
                continue
            w = self._watches[key[0]]
            if len(w.listed) < 2:  # not yet listed: an empty cache is not "no pods"
                self._dirty_ns.add(key[0])
                self._dirty.set()
                continue
            pods: list[PodView] = []
            for role, target in fleet.targets.items():
                sel = w.selectors.get(target)
                if sel is None:
                    if target in w.selectors:
                        self._problem(f"{key}: {target}'s selector is not matchLabels only")
                    continue
                for name, pod in w.pods.items():
                    labels = pod.metadata.labels or {}
                    if sel and all(labels.get(k) == v for k, v in sel.items()):
                        pods.append(
                            PodView(
                                name,
                                role,
                                ready=_pod_ready(pod),
                                terminating=pod.metadata.deletion_timestamp is not None,
                            )
                        )
            now = self.now(key)
            for ch in fleet.sync(now, pods):
                log.info("%s/%s t=%.1f %s %s %s", *key, now, ch.what, ch.role, ch.pod)

    def _update_ports(self) -> None:
        """Open a port for every pod that now serves or drains, close the others', and
        rewrite the file-SD file when that changed."""
        want: dict[tuple[str, str], tuple[FleetKey, str]] = {}
        for key, fleet in self.fleets.items():
            for pod, role in fleet.exposed().items():
                want[(key[0], pod)] = (key, role)
        for pk in [pk for pk in self._ports if pk not in want]:
            self._close_pod(pk)
        for pk, (key, role) in want.items():
            if pk not in self._ports:
                self._ports[pk] = self.mux.open(f"{pk[0]}/{pk[1]}", self._render(key, pk[1]))
                self._pod_fleet[pk] = key
                self._roles[pk] = role
        self._write_sd()

    def _render(self, key: FleetKey, pod: str) -> Callable[[], bytes | None]:
        def render() -> bytes | None:
            with self.lock:
                f = self.fleets.get(key)
                if f is None:
                    return None
                f.advance(self.now(key))
                smp = f.pod_samples(self.sample_max_age_s).get(pod)
            return None if smp is None else exposition(smp)

        return render

    def _close_pod(self, pk: tuple[str, str]) -> None:
        if pk in self._ports:
            self._ports.pop(pk)
            self.mux.close(f"{pk[0]}/{pk[1]}")
        self._pod_fleet.pop(pk, None)
        self._roles.pop(pk, None)

    def _write_sd(self) -> None:
        groups = [
            {
                "targets": [f"{self.mux.addr}:{port}"],
                "labels": {
                    "namespace": ns,
                    "pod": pod,
                    "pool": self._roles[(ns, pod)],
                    "policy": self._pod_fleet[(ns, pod)][1],
                },
            }
            for (ns, pod), port in sorted(self._ports.items())
        ]
        text = json.dumps(groups, sort_keys=True)
        if text != self._sd_written:
            write_file_sd(self.sd_file, groups)
            self._sd_written = text

    def _problem(self, msg: str) -> None:
        if msg not in self.problems:
            self.problems.append(msg)
            log.warning(msg)
