"""HPA ``behavior`` semantics applied to a plan: stabilization windows and step limits.

As in the HPA controller: a scale-up follows the *lowest* recommendation inside the
scale-up window and a scale-down the *highest* inside the scale-down window, so a
brief spike or dip does not move replicas; step limits cap the change per period.
Recommendations come from status, so a restarted operator keeps its windows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

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
    # Shrinks of a rebalance taken past their step limit (or their period) because the
    # grow half of the same plan needs the GPUs they free (``RebalanceShrink``).
    rebalance_shrunk: list[str] = field(default_factory=list)


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
    gpus_per_replica: Mapping[str, int] | None = None,
    budget: int | None = None,
) -> Limited:
    """Desired replicas after stabilization and step limits.

    A change in one direction waits until the shortest policy period has passed since
    the last change in that direction (one step per period, from the current count):
    a conservative reading of HPA's rolling-period sums that needs no event log.

    Unlike an HPA, which scales one target, a plan moves GPUs between pools under a
    fixed budget: a shrink that funds another pool's growth in the same plan is a
    *rebalance*, not a dip in demand, so the scale-down window does not hold it (the
    planner already applies its own patience per pool). Nor do the scale-down step
    limits: they pace a dip in demand, and a rebalance whose shrink obeyed them would
    keep the growing pool waiting for GPUs a step at a time (a loss even a clairvoyant
    controller would pay). With ``gpus_per_replica`` and ``budget`` the shrinks go only
    as far past their step limit as the grow half (itself step-limited) needs GPUs
    beyond the free ones, largest shrink first; without them, to their target at once.
    Such keys are listed in ``rebalance_shrunk``.
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
    shrunk = (
        _rebalance_shrinks(desired, current, out, limited, gpus_per_replica, budget)
        if scale_down.select_policy != SelectPolicy.Disabled
        else {}
    )
    for key, n in shrunk.items():
        out[key] = n
        limited.remove(key)
    return Limited(out, stabilized, limited, sorted(shrunk))


def _rebalance_shrinks(
    desired: Mapping[str, int],
    current: Mapping[str, int],
    limited_out: Mapping[str, int],
    rate_limited: list[str],
    gpus_per_replica: Mapping[str, int] | None,
    budget: int | None,
) -> dict[str, int]:
    """New targets for the step-limited shrinks of a rebalance: as far toward ``desired``
    as the grows in ``limited_out`` need GPUs beyond the budget's free ones."""
    grows = {k: n for k, n in limited_out.items() if n > current.get(k, n)}
    held = [k for k in rate_limited if desired[k] < current.get(k, desired[k]) and k in limited_out]
    if not grows or not held:
        return {}
    if gpus_per_replica is None or budget is None:
        return {k: desired[k] for k in held}
    gpr = gpus_per_replica
    in_use = sum(limited_out[k] * gpr.get(k, 0) for k in limited_out)
    need = in_use - budget  # GPUs the grows ask for beyond what the shrinks free
    out: dict[str, int] = {}
    for key in sorted(held, key=lambda k: (limited_out[k] - desired[k], k), reverse=True):
        if need <= 0:
            break
        per = gpr.get(key, 0)
        if per <= 0:
            continue
        extra = min(limited_out[key] - desired[key], math.ceil(need / per))
        if extra > 0:
            out[key] = limited_out[key] - extra
            need -= extra * per
    return out
