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
