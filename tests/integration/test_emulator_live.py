"""The fleet emulator's live edge (goodput.sim.emulator_live) on the real API server and
the real Prometheus: each Running+Ready pod of a policy's targets is scraped through
file-based service discovery under its real name, pool and namespace; a new pod is
scraped only after the policy's start-up delay; a deleted pod's target goes away, and
its requests are the emulator's to count (finished or lost)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from goodput.api.spec import GoodputPolicySpec
from goodput.sim.emulator import FleetSpec
from goodput.sim.emulator_live import Emulator
from goodput.sim.traces import Trace
from tests.harness.cluster import LocalCluster
from tests.harness.process import wait_until
from tests.harness.prometheus import PrometheusServer

pytestmark = pytest.mark.integration

STARTUP_S = 8.0


def _deployment(name: str, ns: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "vllm",
                            "image": "vllm/vllm-openai:latest",
                            "resources": {"limits": {"nvidia.com/gpu": "1"}},
                        }
                    ],
                },
            },
        },
    }


def _spec() -> GoodputPolicySpec:
    return GoodputPolicySpec.model_validate(
        {
            "mode": "Enforce",
            "gpuBudget": 8,
            "pools": [
                {
                    "role": r,
                    "targetRef": {"name": f"{r}-x"},
                    "minReplicas": 1,
                    "maxReplicas": 4,
                    "profile": "llama-3.1-8b-h100-tp1",
                }
                for r in ("prefill", "decode")
            ],
            "slo": {"ttft": "500ms", "itl": "50ms", "attainment": 0.9},
            "behavior": {
                "interval": "5s",
                "startupDelay": f"{STARTUP_S:g}s",
                "forecastHorizon": "15s",
            },
        }
    )


def _trace(seconds: float = 600.0, rate: float = 10.0) -> Trace:
    rng = np.random.default_rng(5)
    n = int(seconds * rate)
    return Trace(
        "poisson-10",
        np.sort(rng.random(n) * seconds),
        rng.integers(200, 2000, n),
        rng.integers(50, 400, n),
    )


@pytest.fixture
def emulator(cluster: LocalCluster, tmp_path: Path) -> Iterator[Emulator]:
    em = Emulator(cluster.api_client(), tmp_path / "sd.json")
    try:
        yield em
    finally:
        em.stop()


def _pods(cluster: LocalCluster, ns: str, app: str) -> set[str]:
    out = cluster.kubectl(
        "get", "pods", "-n", ns, "-l", f"app={app}", "-o", "jsonpath={.items[*].metadata.name}"
    ).stdout
    return set(out.split())


def _scraped(prometheus: PrometheusServer, job: str, ns: str, pool: str) -> set[str]:
    res = prometheus.query(
        f'vllm:num_requests_running{{job="{job}",namespace="{ns}",pool="{pool}"}}'
    )
    return {r["metric"]["pod"] for r in res}


def test_pods_are_scraped_by_name_after_the_startup_delay_and_gone_when_deleted(
    cluster: LocalCluster, prometheus: PrometheusServer, emulator: Emulator, tmp_path: Path
) -> None:
    ns = cluster.create_namespace("emu")
    cluster.apply(_deployment("prefill-x", ns, 1))
    cluster.apply(_deployment("decode-x", ns, 2))
    # Both targets' pods exist before the emulator starts (a pod that turns up after the
    # start is a new one and serves only after the start-up delay).
    wait_until(lambda: len(_pods(cluster, ns, "decode-x")) == 2, 60, "2 decode pods")
    wait_until(lambda: len(_pods(cluster, ns, "prefill-x")) == 1, 60, "1 prefill pod")
    for app in ("prefill-x", "decode-x"):
        cluster.kubectl(
            "wait", "--for=condition=Ready", "pods", "-l", f"app={app}", "-n", ns, "--timeout=60s"
        )
    key = emulator.add(FleetSpec(ns, "p", _spec(), _trace()))
    emulator.start()
    job = f"emu-{int(time.time() * 1000) % 10**8}"
    prometheus.add_file_sd(job, emulator.sd_file)
    decode = _pods(cluster, ns, "decode-x")
    # Warm start: the pods present at the start serve at once, under their real names.
    prefill = _pods(cluster, ns, "prefill-x")
    wait_until(lambda: _scraped(prometheus, job, ns, "decode") == decode, 30, "decode scraped")
    # Each target is scraped on its own offset within the 1 s interval: wait for this one
    # too, well inside the 8 s start-up a pod new to the emulator would have to wait.
    wait_until(lambda: _scraped(prometheus, job, ns, "prefill") == prefill, 3, "prefill scraped")
    (series,) = prometheus.query(f'vllm:request_success_total{{job="{job}",pod="{min(decode)}"}}')
    assert series["metric"]["model_name"] and series["metric"]["policy"] == "p"

    # A third decode pod: Ready in the cluster at once, scraped only after the delay.
    cluster.kubectl("scale", "deployment/decode-x", "-n", ns, "--replicas=3")
    wait_until(lambda: len(_pods(cluster, ns, "decode-x")) == 3, 30, "3 decode pods")
    (new,) = _pods(cluster, ns, "decode-x") - decode
    seen_ready = time.monotonic()
    wait_until(lambda: new in _scraped(prometheus, job, ns, "decode"), 40, "the new pod scraped")
    waited = time.monotonic() - seen_ready
    with emulator.lock:
        (start,) = [c for c in emulator.fleet(key).log if c.pod == new]
    assert start.what == "start"
    assert waited >= STARTUP_S - 2.0, f"scraped {waited:.1f} s after Ready"

    # Back to 1: two pods deleted; their targets leave the SD file and Prometheus.
    cluster.kubectl("scale", "deployment/decode-x", "-n", ns, "--replicas=1")
    wait_until(lambda: len(_pods(cluster, ns, "decode-x")) == 1, 30, "1 decode pod")
    (left,) = _pods(cluster, ns, "decode-x")

    def only_left() -> bool:
        up = {
            t["labels"]["pod"] for t in prometheus.targets(job) if t["labels"]["pool"] == "decode"
        }
        return up == {left}

    wait_until(only_left, 30, "only the remaining decode pod a target")
    with emulator.lock:
        fleet = emulator.fleet(key)
        gone = [c for c in fleet.log if c.what == "gone"]
        assert {c.pod for c in gone} == (decode | {new}) - {left}
        assert fleet.replicas()["decode"]["serving"] == 1
        assert len(fleet.lost) == sum(c.inflight for c in gone)
    assert not emulator.problems


def test_goodput_emulate_serves_every_policy_named_and_reports_its_truth(
    cluster: LocalCluster, crd: None, tmp_path: Path
) -> None:
    """`goodput emulate` as a process: the fleets of the policies named, read from the
    API server, their pods in the SD file with their labels while it runs, and each
    fleet's exact summary at the end."""
    import json
    import subprocess
    import sys

    ns = cluster.create_namespace("emucli")
    cluster.apply(_deployment("prefill-x", ns, 1))
    cluster.apply(_deployment("decode-x", ns, 1))
    wait_until(lambda: len(_pods(cluster, ns, "decode-x")) == 1, 60, "1 decode pod")
    spec = _spec().model_dump(mode="json", by_alias=True, exclude_none=True)
    cluster.apply(
        {
            "apiVersion": "goodput.dev/v1alpha1",
            "kind": "GoodputPolicy",
            "metadata": {"name": "p", "namespace": ns},
            "spec": spec,
        }
    )
    sd, truth = tmp_path / "sd.json", tmp_path / "truth.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "goodput.cli",
            "emulate",
            f"--policy={ns}/p",
            f"--sd-file={sd}",
            "--duration=20",
            "--minutes=10",
            "--mean-rps=2",
            f"--truth-out={truth}",
            f"--kubeconfig={cluster.kubeconfig}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def listed() -> bool:
            return sd.exists() and len(json.loads(sd.read_text() or "[]")) == 2

        wait_until(listed, 30, "both pods in the SD file")
        groups = json.loads(sd.read_text())
        labels = sorted((g["labels"]["pool"], g["labels"]["pod"]) for g in groups)
        assert labels == sorted(
            [
                ("decode", *_pods(cluster, ns, "decode-x")),
                ("prefill", *_pods(cluster, ns, "prefill-x")),
            ]
        )
        assert all(g["labels"]["namespace"] == ns and g["labels"]["policy"] == "p" for g in groups)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-3000:]
    result = json.loads(truth.read_text())
    fleet = result["fleets"][f"{ns}/p"]
    assert fleet["seconds"] >= 20 and fleet["requests"] > 10, fleet
    assert fleet["met"] <= fleet["requests"] and fleet["lost"] == 0
    assert result["problems"] == []
    assert json.loads(sd.read_text()) == []  # emptied at the end: nothing left to scrape
