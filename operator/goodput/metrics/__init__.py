"""The metrics layer: a policy's ``metrics`` settings -> PromQL -> one Observation.

``math`` (pure arithmetic), ``presets`` (metric names per serving stack),
``promql`` (query building), ``client`` (Prometheus HTTP API off the event loop),
``source`` (the ObservationSource the operator uses). See docs/metrics.md.
"""
