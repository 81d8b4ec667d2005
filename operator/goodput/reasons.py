"""One vocabulary of reason codes.

The same code names a planner decision, a condition reason, an event reason, the
``reason`` label of ``goodput_decisions_total`` and the ``reason`` log field
(the pattern of Karpenter's and KEDA's event constants).
"""

from enum import StrEnum


class Reason(StrEnum):
    # Planner decisions
    ScaledUp = "ScaledUp"  # more GPUs in total than before
    ScaledDown = "ScaledDown"  # fewer GPUs in total; handed back GPUs that added no goodput
    Rebalanced = "Rebalanced"  # same total, moved between pools/tiers
    SteadyState = "SteadyState"  # current allocation is already the best plan
    ZeroDemand = "ZeroDemand"  # no traffic: every pool at its minimum
    BudgetExhausted = "BudgetExhausted"  # SLO not reachable inside gpuBudget; best plan returned
    # Holds (nothing changes, and we say why)
    MetricsMissing = "MetricsMissing"  # a required signal is absent or failed
    MetricsStale = "MetricsStale"  # newest sample older than allowed
    StabilizationWindow = "StabilizationWindow"  # a scale-down is held by the window
    RateLimited = "RateLimited"  # scale step limited by behavior policies
    # Actuation and policy validity
    RecommendOnly = "RecommendOnly"  # mode Recommend: published, not applied
    InvalidPolicy = "InvalidPolicy"  # spec passed the schema but can never work
    TargetNotFound = "TargetNotFound"  # a targetRef does not exist or has no /scale
    ConflictingController = "ConflictingController"  # an HPA/KEDA also scales the target
    WaitingForScaleDown = "WaitingForScaleDown"  # shrink issued; grow waits until it lands
    ScaleFailed = "ScaleFailed"  # the API server refused a /scale patch
    PrometheusUnreachable = "PrometheusUnreachable"
    Initializing = "Initializing"  # first sight: conditions Unknown
    Succeeded = "Succeeded"  # generic positive condition reason
