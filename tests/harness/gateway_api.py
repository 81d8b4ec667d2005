"""The Gateway API's own CRDs (standard channel, from the ``sigs.k8s.io/gateway-api``
module that hack/build-tools.sh caches) installed into the test cluster's real
kube-apiserver, so the traffic split is tested against the real HTTPRoute schema
(defaults, bounds, CEL rules), not a copy of it."""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path

from tests.harness.cluster import LocalCluster
from tests.harness.tools import REPO

GATEWAY_API_VERSION = "v1.6.3"
GROUP = "gateway.networking.k8s.io"
# The kinds the traffic-split tests need; the step caches every standard-channel CRD
# and install() applies them all.
REQUIRED = ("gatewayclasses", "gateways", "httproutes")


@functools.cache
def crd_dir() -> Path:
    """The cached CRD YAMLs, fetched on first use (idempotent: "cached" after)."""
    script = REPO / "hack" / "build-tools.sh"
    subprocess.run([str(script), "gateway-api"], check=True)
    out = subprocess.run([str(script), "paths"], check=True, capture_output=True, text=True).stdout
    paths = dict(line.split("=", 1) for line in out.split())
    d = Path(paths["GATEWAY_API_CRDS"])
    for plural in REQUIRED:
        f = d / f"{GROUP}_{plural}.yaml"
        assert f.is_file(), f"{f} missing: run hack/build-tools.sh gateway-api"
    return d


def crd_files() -> list[Path]:
    return sorted(crd_dir().glob(f"{GROUP}_*.yaml"))


def install(cluster: LocalCluster) -> list[str]:
    """Apply every standard-channel CRD and wait until each is Established; returns
    their names. Server-side apply: the HTTPRoute CRD is larger than the 256 KiB that
    client-side apply's last-applied annotation may hold."""
    files = crd_files()
    args = ["apply", "--server-side", "--force-conflicts"]
    for f in files:
        args += ["-f", str(f)]
    cluster.kubectl(*args, timeout=120)
    listed = json.loads(cluster.kubectl("get", "crd", "-o", "json").stdout)["items"]
    names = sorted(
        c["metadata"]["name"] for c in listed if c["metadata"]["name"].endswith(f".{GROUP}")
    )
    cluster.kubectl(
        "wait", "--for=condition=established", "--timeout=60s", *(f"crd/{n}" for n in names)
    )
    return names
