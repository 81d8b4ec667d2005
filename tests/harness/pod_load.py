"""Per-pod running-request series, as an engine's exporter scraped through a PodMonitor
shows them: ``vllm:num_requests_running{pod="<the pod's real name>", ...}``.

Real vLLM exports the gauge without a ``pod`` label; the Prometheus Operator's
PodMonitor (and the usual ``kubernetes_sd_configs`` relabelling) adds it from
``__meta_kubernetes_pod_name``. Here one HTTP target stands for every pod, so the
label is written by the exporter itself; the values are set by the test (requests
running on each pod) and served as they are at every scrape. A pod removed with
:meth:`PodLoadExporter.forget` stops being served (Prometheus marks its series stale),
as when a scraped pod goes away.

It is a prometheus_client collector: register it with an ``ExporterHub``
(tests/integration/exporters.py) or any registry.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping

from prometheus_client.core import GaugeMetricFamily, Metric

RUNNING = {"vllm": "vllm:num_requests_running", "sglang": "sglang:num_running_reqs"}


class PodLoadExporter:
    """``preset``'s running-requests gauge per pod, labelled ``pod``, ``pool`` and
    ``scenario`` (the policy's selector picks the scenario and pool)."""

    def __init__(self, scenario: str, pool: str, preset: str = "vllm") -> None:
        self.scenario = scenario
        self.pool = pool
        self.metric = RUNNING[preset]
        self._lock = threading.Lock()
        self._running: dict[str, float] = {}

    def set(self, running: Mapping[str, float]) -> None:
        """Requests running on each pod from now on (pods not named keep theirs)."""
        with self._lock:
            self._running.update(running)

    def forget(self, *pods: str) -> None:
        with self._lock:
            for p in pods:
                self._running.pop(p, None)

    @property
    def running(self) -> dict[str, float]:
        with self._lock:
            return dict(self._running)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            running = dict(self._running)
        if not running:
            return
        fam = GaugeMetricFamily(
            self.metric,
            f"test {self.metric} per pod",
            labels=["model_name", "pool", "scenario", "pod"],
        )
        for pod, value in sorted(running.items()):
            fam.add_metric(["test-model", self.pool, self.scenario, pod], value)
        yield fam
