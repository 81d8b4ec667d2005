"""Session fixtures: one real control plane, one Prometheus and helm for all
integration tests, started on free loopback ports in a temporary directory and
always stopped (teardown runs on failure and on Ctrl-C; children also get SIGTERM
if pytest itself dies)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.cluster import LocalCluster
from tests.harness.prometheus import PrometheusServer
from tests.harness.tools import tools


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
