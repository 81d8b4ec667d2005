"""The kopf operator: wiring of metrics, planner and actuator, status, events, /metrics."""
