"""`goodput run` as a real process (the operator as the chart runs it), with its log
and its own /metrics readable by a test, and killed or stopped like a pod."""

from __future__ import annotations

import signal
import sys
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.harness.process import ManagedProcess, free_port


class OperatorProcess:
    def __init__(
        self,
        workdir: Path,
        name: str,
        args: list[str],
        kubeconfig: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.port = free_port()
        argv = [
            sys.executable,
            "-m",
            "goodput.cli",
            "run",
            *args,
            f"--metrics-port={self.port}",
            "--metrics-address=127.0.0.1",
            "--liveness=",
        ]
        self._proc = ManagedProcess(
            name, argv, workdir, env={"KUBECONFIG": str(kubeconfig), **(env or {})}
        )

    @property
    def log_path(self) -> Path:
        return self._proc.log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self._proc.alive()

    def assert_alive(self) -> None:
        self._proc.assert_alive()

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        self._proc.assert_alive()
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        total = 0.0
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    total += s.value
        return total

    def kill(self) -> None:
        """SIGKILL: a crash or a lost node; nothing is cleaned up."""
        if self._proc.alive():
            self._proc.proc.send_signal(signal.SIGKILL)
            self._proc.proc.wait(10)
        self._proc.stop()

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, as the kubelet does; the exit code."""
        self._proc.stop(timeout)
        return self._proc.proc.returncode
