"""The twin's weighted router and its correctness draws: which variant serves each request,
and whether that variant's answer was right.

A Gateway API HTTPRoute splits requests between its backendRefs in proportion to their
integer weights (HTTPRoute ``backendRefs[].weight``: "proportional to the sum of all
weights"); a weight change applies to the requests that arrive after it. The twin does
the same, per request, from one seeded stream:

- request ``i`` draws ``u_i`` uniform in [0, 1) once per run seed, and goes to the first
  variant whose cumulative weight share exceeds ``u_i`` (inverse-CDF sampling), with the
  weights in force when it arrives. So every run with the same seed gives the same
  request the same draw, whatever the controller: two controllers that set the same
  weights route the same requests the same way (common random numbers: differences
  between controllers are theirs, not the dice's);
- request ``i`` also draws ``r_i`` once, and its answer is right iff ``r_i < quality`` of
  the variant that served it: the frequency of right answers is the variant's quality,
  and a request that any variant would answer right is answered right by every better
  variant too (a monotone coupling, again so that comparisons are not noise).

Both streams come from ``numpy.random.default_rng(seed)`` (PCG64), drawn for the whole
trace up front: deterministic, independent of the order in which twins are stepped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

UNROUTED = -1


def integer_weights(shares: Mapping[str, float], total: int = 100) -> dict[str, int]:
    """Non-negative shares -> integers summing to ``total`` by largest remainder (ties by
    name order, for determinism): how a fractional split becomes HTTPRoute weights."""
    names = list(shares)
    if not names:
        return {}
    raw = np.asarray([max(0.0, float(shares[n])) for n in names], dtype=np.float64)
    s = float(raw.sum())
    if s <= 0:
        raw = np.ones(len(names))
        s = float(len(names))
    exact = raw * total / s
    out = np.floor(exact).astype(np.int64)
    left = total - int(out.sum())
    order = sorted(range(len(names)), key=lambda k: (-(exact[k] - out[k]), names[k]))
    for k in order[:left]:
        out[k] += 1
    return {n: int(out[k]) for k, n in enumerate(names)}


class WeightedRouter:
    """Routes requests of one trace to variants by integer weights (see the module doc).

    ``variants`` fixes the order of the cumulative weights (the policy's declaration
    order); ``route`` assigns a range of requests with the weights in force, and
    ``assigned`` is every request's variant index (``UNROUTED`` until routed)."""

    def __init__(self, variants: Sequence[str], n_requests: int, seed: int) -> None:
        if not variants:
            raise ValueError("a router needs at least one variant")
        self.variants = list(variants)
        self.index = {v: k for k, v in enumerate(self.variants)}
        rng = np.random.default_rng(seed)
        self.route_draw: FloatArray = rng.random(n_requests)
        self.right_draw: FloatArray = rng.random(n_requests)
        self.assigned: IntArray = np.full(n_requests, UNROUTED, dtype=np.int64)

    def cumulative(self, weights: Mapping[str, int]) -> FloatArray:
        """Cumulative shares in variant order; refuses weights an HTTPRoute could not
        carry (negative, unknown variant, all zero)."""
        stray = sorted(set(weights) - set(self.index))
        if stray:
            raise ValueError(f"weights name unknown variants {stray}; known {self.variants}")
        w = np.asarray([int(weights.get(v, 0)) for v in self.variants], dtype=np.float64)
        if np.any(w < 0):
            raise ValueError(f"weights must be >= 0, got {dict(weights)}")
        total = float(w.sum())
        if total <= 0:
            raise ValueError(f"weights must not all be zero, got {dict(weights)}")
        c = np.cumsum(w) / total
        c[-1] = 1.0  # no request falls past the last backend by rounding
        return np.asarray(c, dtype=np.float64)

    def route(self, lo: int, hi: int, weights: Mapping[str, int]) -> IntArray:
        """Assign requests ``lo..hi-1`` (those arriving while ``weights`` hold) and return
        their variant indices. A zero weight gets no request."""
        cum = self.cumulative(weights)
        idx = np.searchsorted(cum, self.route_draw[lo:hi], side="right").astype(np.int64)
        self.assigned[lo:hi] = idx
        return idx

    def mask(self, variant: str) -> BoolArray:
        """Requests routed to ``variant`` so far."""
        return np.asarray(self.assigned == self.index[variant])

    def right(self, quality_by_variant: Mapping[str, float]) -> BoolArray:
        """Whether each routed request's answer was right: ``r_i < quality`` of its
        variant (False for unrouted requests)."""
        q = np.asarray([quality_by_variant[v] for v in self.variants], dtype=np.float64)
        routed = self.assigned >= 0
        qi = np.where(routed, q[np.maximum(self.assigned, 0)], -1.0)
        return np.asarray(self.right_draw < qi)

    def right_at(self, quality: FloatArray) -> BoolArray:
        """As :meth:`right` with each request's own quality (e.g. its request class's
        score on the variant that served it); unrouted requests are never right."""
        qi = np.where(self.assigned >= 0, quality, -1.0)
        return np.asarray(self.right_draw < qi)


__all__ = ["UNROUTED", "WeightedRouter", "integer_weights"]
