"""Actuator: turns a plan into /scale writes that never exceed the GPU budget.

``behavior`` (HPA stabilization and step limits) and ``budget`` (the order of writes)
are pure; ``kube`` is the Kubernetes edge.
"""
