"""HPA ``behavior`` semantics applied to a plan: stabilization windows and step limits.

As in the HPA controller: a scale-up follows the *lowest* recommendation inside the
scale-up window and a scale-down the *highest* inside the scale-down window, so a
brief spike or dip does not move replicas; step limits cap the change per period.
Recommendations come from status, so a restarted operator keeps its windows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from goodput.api.spec import ScalingPolicyType, ScalingRules, SelectPolicy


def tier_key(name: str) -> str:
    """Pools are keyed by role; KV tiers share the same maps as "tier:<name>"."""
    return f"tier:{name}"


def target_replicas(pools: Mapping[str, int], tiers: Mapping[str, int]) -> dict[str, int]:
    """Pool and tier replicas in one map keyed like the actuator's targets."""
    return {**pools, **{tier_key(k): v for k, v in tiers.items()}}


@dataclass(frozen=True)
class PastRecommendation:
    time: float  # unix seconds
    replicas: Mapping[str, int]  # keyed like the plan: pool role or "tier:<name>"


@dataclass(frozen=True)
class Limited:
    replicas: dict[str, int]
    stabilized: list[str]  # keys held by a stabilization window
    rate_limited: list[str]  # keys capped by a step limit or a Disabled direction


def _allowed_change(rules: ScalingRules, current: int, up: bool) -> int | None:
    """Largest change one period allows (None: unlimited; 0: direction disabled)."""
    if rules.select_policy == SelectPolicy.Disabled:
        return 0
    if not rules.policies:
        return None
    changes = []
    for p in rules.policies:
        if p.type == ScalingPolicyType.Replicas:
            changes.append(p.value)
        elif up:
            changes.append(max(1, math.ceil(current * p.value / 100)))
        else:
            changes.append(math.floor(current * p.value / 100))
    return max(changes) if rules.select_policy == SelectPolicy.Max else min(changes)


def _in_period(rules: ScalingRules, last: float | None, now: float) -> bool:
    if last is None or not rules.policies:
        return False
    return now - last < min(p.period_seconds for p in rules.policies)


def apply_behavior(
    desired: Mapping[str, int],
    current: Mapping[str, int],
    history: Sequence[PastRecommendation],
    scale_up: ScalingRules,
    scale_down: ScalingRules,
    now: float,
    last_scale_up: float | None = None,
    last_scale_down: float | None = None,
) -> Limited:
    """Desired replicas after stabilization and step limits.

    A change in one direction waits until the shortest policy period has passed since
    the last change in that direction (one step per period, from the current count):
    a conservative reading of HPA's rolling-period sums that needs no event log.

    Unlike an HPA, which scales one target, a plan moves GPUs between pools under a
    fixed budget: a shrink that funds another pool's growth in the same plan is a
    *rebalance*, not a dip in demand, so the scale-down window does not hold it (the
    planner already applies its own patience per pool). Step limits still apply.
    """
    rebalancing = any(want > current.get(key, want) for key, want in desired.items())
    out: dict[str, int] = {}
    stabilized: list[str] = []
    limited: list[str] = []
    for key, want in desired.items():
        cur = current.get(key, want)
        target = want
        if want > cur:
            window = [
                r.replicas[key]
                for r in history
                if key in r.replicas and now - r.time < scale_up.stabilization_window_seconds
            ]
            stable = min([want, *window])
            if stable < want:
                stabilized.append(key)
            target = max(cur, stable)
            step = _allowed_change(scale_up, cur, up=True)
            if target > cur and _in_period(scale_up, last_scale_up, now):
                step = 0
            if step is not None and target > cur + step:
                target = cur + step
                limited.append(key)
        elif want < cur:
            window = [
                r.replicas[key]
                for r in history
                if key in r.replicas and now - r.time < scale_down.stabilization_window_seconds
            ]
            stable = want if rebalancing else max([want, *window])
            if stable > want:
                stabilized.append(key)
            target = min(cur, stable)
            step = _allowed_change(scale_down, cur, up=False)
            if target < cur and _in_period(scale_down, last_scale_down, now):
                step = 0
            if step is not None and target < cur - step:
                target = cur - step
                limited.append(key)
        out[key] = target
    return Limited(out, stabilized, limited)
