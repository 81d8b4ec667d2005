"""A real Prometheus server (Debian's package) with a config we rewrite and reload."""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.harness.process import ManagedProcess, free_port, wait_until

SCRAPE_INTERVAL = "1s"


@dataclass
class PrometheusServer:
    workdir: Path
    port: int = field(default_factory=free_port)
    jobs: dict[str, list[str]] = field(default_factory=dict)
    # Jobs whose targets come from file-based service discovery (a JSON file of target
    # groups with labels, re-read by Prometheus when it changes): the fleet emulator's pods.
    file_sd_jobs: dict[str, Path] = field(default_factory=dict)
    process: ManagedProcess | None = None
    # More server flags (e.g. the scale runner's --web.max-connections).
    extra_args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PrometheusServer:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus not installed: run `make system-deps` (Debian package)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        self.process = ManagedProcess(
            f"prometheus-{self.port}",
            [
                binary,
                f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                "--storage.tsdb.retention.time=1h",
                *self.extra_args,
            ],
            self.workdir,
        )
        try:
            wait_until(self._ready, 60, "prometheus /-/ready")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def restart(self, down_s: float = 0.0, while_down: Callable[[], None] | None = None) -> None:
        """An outage: stop, stay down at least ``down_s`` seconds (running ``while_down``
        meanwhile), and start again on the same port, config and TSDB, so the samples
        from before the outage are kept, as after a real Prometheus restart. The log of
        the run before is kept next to the new one. Scraping resumes a few seconds
        after ``/-/ready`` (service discovery first)."""
        began = time.monotonic()
        self.stop()
        if self.process is not None and self.process.log_path.exists():
            self.process.log_path.rename(self.process.log_path.with_suffix(".before-restart.log"))
        if while_down is not None:
            while_down()
        time.sleep(max(0.0, down_s - (time.monotonic() - began)))
        self.start()

    def add_target(self, job: str, target: str, timeout: float = 30) -> None:
        self.jobs.setdefault(job, []).append(target)
        self._write_config()
        req = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        urllib.request.urlopen(req, timeout=10).close()
        wait_until(lambda: self._target_up(job, target), timeout, f"target {job}/{target} up")

    def add_file_sd(self, job: str, path: Path) -> None:
        """A scrape job reading its targets (and their labels) from ``path``; Prometheus
        watches the file, so targets come and go without a reload."""
        self.file_sd_jobs[job] = path
        self._write_config()
        req = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        urllib.request.urlopen(req, timeout=10).close()

    def targets(self, job: str) -> list[dict[str, Any]]:
        """The job's active targets as /api/v1/targets lists them (labels, health)."""
        with urllib.request.urlopen(f"{self.url}/api/v1/targets", timeout=5) as resp:
            active: list[dict[str, Any]] = json.load(resp)["data"]["activeTargets"]
        return [t for t in active if t["labels"].get("job") == job]

    def query(self, promql: str) -> list[dict[str, Any]]:
        qs = urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{qs}", timeout=10) as resp:
            body = json.load(resp)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def _write_config(self) -> None:
        config = {
            "global": {
                "scrape_interval": SCRAPE_INTERVAL,
                "evaluation_interval": SCRAPE_INTERVAL,
                "scrape_timeout": SCRAPE_INTERVAL,
            },
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": targets}]}
                for job, targets in self.jobs.items()
            ]
            + [
                {
                    "job_name": job,
                    "file_sd_configs": [{"files": [str(path)], "refresh_interval": "5s"}],
                }
                for job, path in self.file_sd_jobs.items()
            ],
        }
        (self.workdir / "prometheus.yml").write_text(yaml.safe_dump(config))

    def _ready(self) -> bool:
        assert self.process is not None
        self.process.assert_alive()
        with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
            return bool(resp.status == 200)

    def _target_up(self, job: str, target: str) -> bool:
        with urllib.request.urlopen(f"{self.url}/api/v1/targets", timeout=5) as resp:
            active = json.load(resp)["data"]["activeTargets"]
        return any(
            t["labels"].get("job") == job
            and t["labels"].get("instance") == target
            and t["health"] == "up"
            for t in active
        )


def start_prometheus(workdir: Path) -> PrometheusServer:
    return PrometheusServer(workdir).start()


def wait_for_value(server: PrometheusServer, promql: str, timeout: float = 30) -> float:
    """Poll until the query returns one sample and give its value."""
    found: list[float] = []

    def check() -> bool:
        res = server.query(promql)
        if len(res) == 1:
            found.append(float(res[0]["value"][1]))
            return True
        return False

    wait_until(check, timeout, f"a value for {promql}")
    return found[-1]
