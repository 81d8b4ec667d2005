"""One vocabulary of reason codes, and one of the limits that bind a decision.

The same ``Reason`` names a planner decision, a condition reason, an event reason, the
``reason`` label of ``goodput_decisions_total`` and the ``reason`` log field (the
pattern of Karpenter's and KEDA's event constants). ``Limit`` names what bound a
decision (status ``lastDecision.bindingConstraint``, the ``ScalingLimited`` condition's
message and the ``limit`` log field), so an explanation can never cite a limit that
the code does not know.
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
    SloUnreachable = "SloUnreachable"  # SLO not reachable by any allocation (not the budget)
    MoveWouldNotPay = "MoveWouldNotPay"  # a better split would not repay its start-up: held
    # Adjustments (lastDecision.adjustments): a mechanism that shaped the decision
    DemandCapped = "DemandCapped"  # forecast beyond what gpuBudget serves: planned at the cap
    FloorReleased = "FloorReleased"  # a violating pool's floor would trap a worse split
    BurstHeadroom = "BurstHeadroom"  # near-equal splits told apart at a burst (pick or move)
    RebalanceShrink = "RebalanceShrink"  # a rebalance's shrink past its step limit
    StateRestored = "StateRestored"  # planner memory (forecast, patience) read from status
    # Holds (nothing changes, and we say why)
    MetricsMissing = "MetricsMissing"  # a required signal is absent or failed
    MetricsStale = "MetricsStale"  # newest sample older than allowed
    MetricsPartial = "MetricsPartial"  # a rate's window overlaps a gap in the data
    StabilizationWindow = "StabilizationWindow"  # a scale-down is held by the window
    RateLimited = "RateLimited"  # scale step limited by behavior policies
    # Actuation and policy validity
    RecommendOnly = "RecommendOnly"  # mode Recommend: published, not applied
    InvalidPolicy = "InvalidPolicy"  # spec passed the schema but can never work
    ProfileNotFound = "ProfileNotFound"  # a pool names a profile that does not exist
    ProfileMissing = "ProfileMissing"  # a pool names no profile and none can be derived
    TargetNotFound = "TargetNotFound"  # a targetRef does not exist or has no /scale
    ConflictingController = "ConflictingController"  # an HPA/KEDA/policy also scales it
    WaitingForScaleDown = "WaitingForScaleDown"  # shrink issued; grow waits until it lands
    ScaleFailed = "ScaleFailed"  # the API server refused a /scale patch
    OverBudget = "OverBudget"  # GPUs held exceed gpuBudget: shrinking at once
    MinimumsExceedBudget = "MinimumsExceedBudget"  # minReplicas alone need more than budget
    PrometheusUnreachable = "PrometheusUnreachable"
    StandingBy = "StandingBy"  # another operator replica is active (kopf peering)
    # Variants and traffic split (several models of one service under one budget)
    TrafficShifted = "TrafficShifted"  # the split of traffic between variants changed
    VariantValueNegative = "VariantValueNegative"  # every variant loses value per answer
    RouteRefused = "RouteRefused"  # the HTTPRoute cannot be safely edited (foreign, malformed)
    RouteNotFound = "RouteNotFound"  # the HTTPRoute named by trafficSplit does not exist
    # Drain-aware scale-down
    DrainMarked = "DrainMarked"  # pods to go first marked with pod-deletion-cost
    Initializing = "Initializing"  # first sight: conditions Unknown
    Succeeded = "Succeeded"  # generic positive condition reason


class Limit(StrEnum):
    """What bound a decision. ``None`` when nothing did: the plan is what the demand
    and the SLO ask for."""

    None_ = "None"  # nothing bound the plan
    GpuBudget = "GpuBudget"  # no pool below its max could fit one more replica adding goodput
    MaxReplicas = "MaxReplicas"  # a pool that needs more sits at its maxReplicas
    MinReplicas = "MinReplicas"  # demand needs less than the pools' minReplicas
    SloFloor = "SloFloor"  # no replica count meets the SLO (e.g. ITL below the HBM floor)
    ObservedViolation = "ObservedViolation"  # a pool missing its SLO is not shrunk
    ScaleDownPatience = "ScaleDownPatience"  # recent plans wanted more; shrink deferred
    StabilizationWindow = "StabilizationWindow"  # behavior window held a change
    StepLimit = "StepLimit"  # behavior step policies capped a change
    WaitingForScaleDown = "WaitingForScaleDown"  # a grow waits for released GPUs
    ShareBound = "ShareBound"  # a variant's minShare/maxShare capped its traffic share
    QualityFloor = "QualityFloor"  # a variant below the quality floor gets no traffic
    StartupCost = "StartupCost"  # moving GPUs (between pools or variants) would not pay
