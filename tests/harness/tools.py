"""Where hack/build-tools.sh caches the binaries (built on demand, keyed by version)."""

from __future__ import annotations

import functools
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Tools:
    k8s_bin: Path
    kwok_bin: Path
    helm_bin: Path

    @property
    def kubectl(self) -> Path:
        return self.k8s_bin / "kubectl"


@functools.cache
def tools() -> Tools:
    script = REPO / "hack" / "build-tools.sh"
    subprocess.run([str(script), "all"], check=True)
    out = subprocess.run([str(script), "paths"], check=True, capture_output=True, text=True).stdout
    paths = dict(line.split("=", 1) for line in out.split())
    return Tools(Path(paths["K8S_BIN"]), Path(paths["KWOK_BIN"]), Path(paths["HELM_BIN"]))
