"""A real Kubernetes control plane on loopback: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and KWOK with fake GPU nodes."""

from __future__ import annotations

import contextlib
import itertools
import json
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.harness.pki import PKI, make_pki
from tests.harness.process import ManagedProcess, free_port, wait_until
from tests.harness.tools import Tools, tools

KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
# Node liveness as a kubelet does it: KWOK holds and renews one Lease per node in
# kube-node-lease (every duration/4, kubelet's ratio), which the node lifecycle
# controller reads. Without --node-lease-duration-seconds KWOK makes no leases and the
# heartbeat-with-lease stage refreshes node status only every 10-20 min, so every
# node went NotReady after the grace period (and every pod with it). The grace period
# is shortened from the default 50 s so a test can outlast it quickly; 6 renewals fit.
NODE_LEASE_DURATION_S = 20
NODE_MONITOR_GRACE_PERIOD_S = 30
NODE_MONITOR_PERIOD_S = 2
# Requests by service accounts (the operator under test, never the control plane,
# which runs as admin) are audited at Metadata level, so a test can read which verbs
# on which resources the operator used and which were refused.
_AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "Metadata", "userGroups": ["system:serviceaccounts"]},
        {"level": "None"},
    ],
}
# Node, heartbeat-with-lease and pod lifecycle stages, as kwokctl's default "fast" set.
_KWOK_STAGES = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-complete.yaml",
    "pod/fast/pod-delete.yaml",
)


# Pod deletion as a kubelet does it for a pod whose container drains before it exits:
# KWOK deletes a terminating pod when its grace period ends (its deletionTimestamp),
# not at once, and a client that deletes it again with gracePeriodSeconds=0 (the fleet
# emulator, once the pod's replica has drained) removes it then. Opt-in
# (``LocalCluster(graceful_pod_delete=True)``): the other tests' pods go at once.
_GRACEFUL_POD_DELETE = """apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-delete
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'Exists'
  delay:
    durationMilliseconds: 0
    durationFrom:
      expressionFrom: '.metadata.deletionTimestamp'
  next:
    delete: true
"""


def _kubeconfig(server: str, pki: PKI) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {"server": server, "certificate-authority": str(pki.ca_crt)},
                }
            ],
            "users": [
                {
                    "name": "admin",
                    "user": {
                        "client-certificate": str(pki.admin_crt),
                        "client-key": str(pki.admin_key),
                    },
                }
            ],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": "admin"}}],
            "current-context": "local",
        },
        indent=2,
    )


@dataclass
class LocalCluster:
    workdir: Path
    nodes: int = 2
    # One session cluster serves every integration test, and tests leave their
    # namespaces' GPU pods behind; capacity must never be what keeps a later test's pod
    # Pending (budgets are the operator's job, not the nodes'), so the fake nodes are big.
    gpus_per_node: int = 128
    graceful_pod_delete: bool = False  # see _GRACEFUL_POD_DELETE
    tools: Tools = field(default_factory=tools)
    processes: list[ManagedProcess] = field(default_factory=list)
    kubeconfig: Path = field(init=False)
    server: str = field(init=False)
    audit_log: Path = field(init=False)
    _ns_counter: itertools.count[int] = field(default_factory=itertools.count)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> LocalCluster:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        t0 = time.monotonic()
        pki = make_pki(self.workdir / "pki")
        etcd_client, etcd_peer = free_port(), free_port()
        etcd = self._spawn(
            "etcd",
            [
                str(self.tools.k8s_bin / "etcd"),
                "--data-dir",
                str(self.workdir / "etcd"),
                "--listen-client-urls",
                f"http://127.0.0.1:{etcd_client}",
                "--advertise-client-urls",
                f"http://127.0.0.1:{etcd_client}",
                "--listen-peer-urls",
                f"http://127.0.0.1:{etcd_peer}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{etcd_peer}",
                "--initial-cluster",
                f"default=http://127.0.0.1:{etcd_peer}",
                "--unsafe-no-fsync",
                "--log-level",
                "warn",
            ],
        )
        wait_until(
            lambda: _http_ok(f"http://127.0.0.1:{etcd_client}/health"),
            30,
            "etcd",
        )
        etcd.assert_alive()

        port = free_port()
        self.server = f"https://127.0.0.1:{port}"
        audit_policy = self.workdir / "audit-policy.json"
        audit_policy.write_text(json.dumps(_AUDIT_POLICY))
        self.audit_log = self.workdir / "audit.log"
        apiserver = self._spawn(
            "kube-apiserver",
            [
                str(self.tools.k8s_bin / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{etcd_client}",
                f"--secure-port={port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--tls-cert-file={pki.server_crt}",
                f"--tls-private-key-file={pki.server_key}",
                f"--client-ca-file={pki.ca_crt}",
                "--authorization-mode=Node,RBAC",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                "--allow-privileged=true",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
                f"--audit-policy-file={audit_policy}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
            ],
        )
        self.kubeconfig = self.workdir / "kubeconfig"
        self.kubeconfig.write_text(_kubeconfig(self.server, pki))
        wait_until(lambda: self._ready(apiserver), 90, "kube-apiserver /readyz")

        common = [f"--kubeconfig={self.kubeconfig}", "--leader-elect=false"]
        self._spawn(
            "kube-controller-manager",
            [
                str(self.tools.k8s_bin / "kube-controller-manager"),
                *common,
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--root-ca-file={pki.ca_crt}",
                "--use-service-account-credentials=false",
                "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller",
                f"--node-monitor-grace-period={NODE_MONITOR_GRACE_PERIOD_S}s",
                f"--node-monitor-period={NODE_MONITOR_PERIOD_S}s",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                str(self.tools.k8s_bin / "kube-scheduler"),
                *common,
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
            ],
        )
        stages = self.workdir / "kwok-stages.yaml"
        stage_texts = [
            _GRACEFUL_POD_DELETE
            if self.graceful_pod_delete and s.endswith("pod-delete.yaml")
            else (self.tools.kwok_bin / "stage" / s).read_text()
            for s in _KWOK_STAGES
        ]
        stages.write_text("\n---\n".join(stage_texts))
        self._spawn(
            "kwok",
            [
                str(self.tools.kwok_bin / "kwok"),
                f"--kubeconfig={self.kubeconfig}",
                f"--config={stages}",
                f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
                "--node-ip=127.0.0.1",
                f"--node-port={free_port()}",
                f"--server-address=127.0.0.1:{free_port()}",
                "--cidr=10.244.0.0/16",
                f"--node-lease-duration-seconds={NODE_LEASE_DURATION_S}",
            ],
        )
        for i in range(self.nodes):
            self.apply(_fake_node(f"kwok-gpu-{i}", self.gpus_per_node))
        wait_until(self._nodes_ready, 60, "KWOK nodes Ready")
        # The "default" ServiceAccount must exist before Pods are admitted.
        wait_until(
            lambda: (
                self.kubectl("get", "sa", "default", "-n", "default", check=False).returncode == 0
            ),
            60,
            "default ServiceAccount",
        )
        self.startup_seconds = time.monotonic() - t0

    def stop(self) -> None:
        for proc in reversed(self.processes):
            with contextlib.suppress(Exception):
                proc.stop()
        self.processes.clear()

    def restart_apiserver(self, down_s: float = 0.0) -> float:
        """An outage of kube-apiserver: SIGTERM (it drains for a few seconds, serving
        still), then down for ``down_s`` seconds after it has exited, then the same binary
        and flags again (same port, certificates, etcd), as a control-plane upgrade or a
        restarted static pod would do. Every client's watches break and reconnect; etcd
        keeps the state. The log of the run before is kept next to the new one. Returns
        the seconds from its exit to /readyz: when no client could reach it."""
        i, old = next((i, p) for i, p in enumerate(self.processes) if p.name == "kube-apiserver")
        old.stop()
        exited = time.monotonic()
        if old.log_path.exists():
            n = sum(1 for _ in self.workdir.glob("kube-apiserver.before-restart-*.log"))
            old.log_path.rename(self.workdir / f"kube-apiserver.before-restart-{n}.log")
        time.sleep(down_s)
        new = ManagedProcess(old.name, old.argv, self.workdir)
        self.processes[i] = new
        wait_until(lambda: self._ready(new), 90, "kube-apiserver /readyz after a restart")
        return time.monotonic() - exited

    # -- helpers for tests -----------------------------------------------------------------
    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.tools.kubectl), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
        )

    def apply(self, manifest: dict[str, Any] | str) -> None:
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        self.kubectl("apply", "-f", "-", input=text)

    def create_namespace(self, prefix: str = "t") -> str:
        name = f"{prefix}-{next(self._ns_counter)}-{int(time.time() * 1000) % 100000}"
        self.kubectl("create", "namespace", name)
        wait_until(
            lambda: self.kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0,
            30,
            f"sa default in {name}",
        )
        return name

    def api_client(self) -> Any:
        from kubernetes import client, config

        cfg = client.Configuration()
        config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=cfg)
        return client.ApiClient(cfg)

    def service_account_kubeconfig(
        self, namespace: str, name: str, path: Path, duration: str = "2h"
    ) -> Path:
        """A kubeconfig that authenticates as a ServiceAccount with a bound token from
        the TokenRequest API (what a pod's projected token is), at ``path``."""
        token = self.kubectl(
            "create", "token", name, "-n", namespace, f"--duration={duration}"
        ).stdout.strip()
        cfg = json.loads(self.kubeconfig.read_text())
        cfg["users"] = [{"name": f"{namespace}:{name}", "user": {"token": token}}]
        cfg["contexts"][0]["context"]["user"] = f"{namespace}:{name}"
        path.write_text(json.dumps(cfg, indent=2))
        return path

    def audit_events(self, username: str) -> list[dict[str, Any]]:
        """Requests of one user (service accounts only) from the audit log, one per
        request: the last stage seen (a watch still open has only ResponseStarted)."""
        by_id: dict[str, dict[str, Any]] = {}
        with contextlib.suppress(FileNotFoundError), self.audit_log.open() as f:
            for line in f:
                ev = json.loads(line)
                if ev.get("user", {}).get("username") == username:
                    by_id[ev["auditID"]] = ev
        return list(by_id.values())

    def log_tails(self) -> str:
        return "\n".join(f"== {p.name} ==\n{p.tail()}" for p in self.processes)

    # -- internals -------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str]) -> ManagedProcess:
        proc = ManagedProcess(name, argv, self.workdir)
        self.processes.append(proc)
        return proc

    def _ready(self, apiserver: ManagedProcess) -> bool:
        apiserver.assert_alive()
        return self.kubectl("get", "--raw", "/readyz", check=False, timeout=10).returncode == 0

    def _nodes_ready(self) -> bool:
        for p in self.processes:
            p.assert_alive()
        out = self.kubectl("get", "nodes", "-o", "json").stdout
        items = json.loads(out)["items"]
        ready = [
            n
            for n in items
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in n.get("status", {}).get("conditions", [])
            )
        ]
        return len(ready) == self.nodes


def _fake_node(name: str, gpus: int) -> dict[str, Any]:
    capacity = {"cpu": "64", "memory": "512Gi", "pods": "250", "nvidia.com/gpu": str(gpus)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
            },
        },
        "status": {"capacity": capacity, "allocatable": capacity},
    }


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return bool(resp.status == 200)
