"""The goodput planner: pure functions (no I/O) from an observation to a plan.

``GoodputPlanner(spec, profiles=None).decide(observation, current, now) -> Plan`` is the
Autoscaler the operator and the digital twin run; ``plan(...)`` is the pure step under it.
"""

from goodput.planner.planner import GoodputPlanner, PlannerState, plan, resolve_profile

__all__ = ["GoodputPlanner", "PlannerState", "plan", "resolve_profile"]
