"""The operator's own Prometheus metrics (unit suffixes, reason labels from goodput.reasons)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Info

from goodput import __version__

BUILD = Info("goodput_operator_build", "Version of the running goodput operator.")
BUILD.info({"version": __version__})

TICK_SECONDS = Histogram(
    "goodput_tick_duration_seconds",
    "Time of one control-loop tick: observe, plan, actuate, write status.",
    ["namespace", "policy"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
DECISIONS = Counter(
    "goodput_decisions_total", "Decisions made, by reason code.", ["namespace", "policy", "reason"]
)
SCALE_WRITES = Counter(
    "goodput_scale_writes_total",
    "Writes to a target's /scale subresource, by direction (up, down) and result (ok, refused).",
    ["namespace", "policy", "target", "direction", "result"],
)
STANDBY = Gauge(
    "goodput_standby",
    "1 while this replica stands by for another (kopf peering), 0 while it acts.",
    ["namespace", "policy"],
)
DESIRED_REPLICAS = Gauge(
    "goodput_desired_replicas", "Replicas of the last plan.", ["namespace", "policy", "target"]
)
CURRENT_REPLICAS = Gauge(
    "goodput_current_replicas",
    "Replicas in the /scale subresource.",
    ["namespace", "policy", "target"],
)
GPUS_HELD = Gauge(
    "goodput_gpus_held", "GPUs held by the policy's targets now.", ["namespace", "policy"]
)
GPU_BUDGET = Gauge("goodput_gpu_budget", "The policy's gpuBudget.", ["namespace", "policy"])
PREDICTED_GOODPUT = Gauge(
    "goodput_predicted_goodput_tokens_per_second",
    "Token goodput the last plan predicts.",
    ["namespace", "policy"],
)
OBSERVED_GOODPUT = Gauge(
    "goodput_observed_goodput_tokens_per_second",
    "Token goodput estimated from Prometheus.",
    ["namespace", "policy"],
)
CONDITION = Gauge(
    "goodput_condition",
    "1 for the current status of each condition.",
    ["namespace", "policy", "type", "status"],
)
SLO_ATTAINMENT_TARGET = Gauge(
    "goodput_slo_attainment_target_ratio",
    "The policy's spec.slo.attainment: the fraction of requests that must meet TTFT and ITL.",
    ["namespace", "policy"],
)
OBSERVED_ATTAINMENT = Gauge(
    "goodput_observed_slo_attainment_ratio",
    "SLO attainment estimated from Prometheus (min(a, b) x sqrt(max(a, b)) of a_ttft, a_itl); "
    "absent while unknown.",
    ["namespace", "policy"],
)
PREDICTED_ATTAINMENT = Gauge(
    "goodput_predicted_slo_attainment_ratio",
    "SLO attainment the last plan predicts; absent after a decision without a plan (a hold).",
    ["namespace", "policy"],
)


def set_or_remove(gauge: Gauge, value: float | None, namespace: str, policy: str) -> None:
    """Set a (namespace, policy) series, or remove it when the value is unknown, so that
    neither a panel nor an alert reads an old value as the current one."""
    if value is None:
        gauge.remove(namespace, policy)
    else:
        gauge.labels(namespace=namespace, policy=policy).set(value)


_PER_POLICY = (
    TICK_SECONDS,
    DECISIONS,
    SCALE_WRITES,
    STANDBY,
    DESIRED_REPLICAS,
    CURRENT_REPLICAS,
    GPUS_HELD,
    GPU_BUDGET,
    PREDICTED_GOODPUT,
    OBSERVED_GOODPUT,
    CONDITION,
    SLO_ATTAINMENT_TARGET,
    OBSERVED_ATTAINMENT,
    PREDICTED_ATTAINMENT,
)


def forget_policy(namespace: str, policy: str, *, keep_standby: bool = False) -> None:
    """Remove every series of one policy: when its loop stops (the policy is gone) or
    this replica stands by (the active one exports them), so no panel or alert reads a
    last value as current. The standby gauge itself stays while standing by."""
    for metric in _PER_POLICY:
        if keep_standby and metric is STANDBY:
            continue
        names = list(metric._labelnames)
        ns_i, pol_i = names.index("namespace"), names.index("policy")
        with metric._lock:
            stale = [k for k in metric._metrics if k[ns_i] == namespace and k[pol_i] == policy]
        for key in stale:
            metric.remove(*key)
