"""Session fixtures: one real control plane, one Prometheus and helm for all
integration tests, started on free loopback ports in a temporary directory and
always stopped (teardown runs on failure and on Ctrl-C; children also get SIGTERM
if pytest itself dies)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kopf.testing import KopfRunner

from goodput.api.crd import render as render_crd
from tests.harness import gateway_api
from tests.harness.cluster import LocalCluster
from tests.harness.prometheus import PrometheusServer
from tests.harness.tools import tools
from tests.integration.exporters import ExporterHub, PoolTruth, ServingExporter

# Load that wants more than 1 + 1 replicas of the operator tests' small pools.
HEAVY = PoolTruth(
    arrival_rps=40.0,
    mean_input_tokens=2000.0,
    mean_output_tokens=300.0,
    running=120.0,
    waiting=60.0,
    kv_usage=0.9,
    prefix_hit=0.0,
)


@pytest.fixture(scope="session")
def harness_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="goodput-it-"))
    yield d
    if os.environ.get("GOODPUT_KEEP_HARNESS") != "1":
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def cluster(harness_dir: Path) -> Iterator[LocalCluster]:
    c = LocalCluster(harness_dir / "cluster")
    (harness_dir / "cluster").mkdir()
    c.start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="session")
def prometheus(harness_dir: Path) -> Iterator[PrometheusServer]:
    p = PrometheusServer(harness_dir / "prometheus").start()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture(scope="session")
def helm_bin() -> Path:
    return tools().helm_bin / "helm"


@pytest.fixture(scope="session")
def crd(cluster: LocalCluster) -> None:
    cluster.kubectl("apply", "--server-side", "-f", "-", input=render_crd())
    cluster.kubectl(
        "wait", "--for=condition=established", "--timeout=60s", "crd/goodputpolicies.goodput.dev"
    )


@pytest.fixture(scope="session")
def gateway_api_crds(cluster: LocalCluster) -> list[str]:
    """The Gateway API's standard-channel CRDs (v1.6.3), Established; their names."""
    return gateway_api.install(cluster)


@pytest.fixture
def operator(cluster: LocalCluster, crd: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    import goodput.operator.handlers as handlers

    handlers._api_client = None
    with KopfRunner(["run", "-A", "--standalone", "-m", handlers.__name__], timeout=60) as runner:
        yield
    assert runner.exception is None, runner.exception


@pytest.fixture
def heavy_exporter(prometheus: PrometheusServer) -> Iterator[tuple[ServingExporter, str]]:
    hub = ExporterHub().start()
    exporter = hub.add(ServingExporter("vllm", "op", pools={"prefill": HEAVY, "decode": HEAVY}))
    job = f"op-{int(time.time() * 1000) % 10**8}"
    prometheus.add_target(job, hub.target)
    try:
        yield exporter, job
    finally:
        hub.stop()
