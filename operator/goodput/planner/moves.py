"""Does moving GPUs between pools pay for itself?

A rebalance (one pool grows while another shrinks) is not free: the replicas that leave
stop serving at once, the ones that arrive serve only after ``startupDelay``, so for that
long the fleet runs on the smaller *interim* allocation (each pool at the lower of now and
the target). The move pays when what the target adds over the payback window exceeds
what the interim loses over the start-up delay::

    gain = (G_target - G_now) x max(forecastHorizon, startupDelay)
    cost = (G_now - G_interim) x startupDelay

(goodput G in requests/s; the variant planner weighs moves between variants with the same
formula). The goodputs are taken at the demand expected over the horizon *now* (the
forecast before its patience window keeps a higher recent figure): patience exists so
capacity is not let go in a lull, and re-splitting in a lull for the peak that patience
remembers is the trough flip-flop (7/1 -> 6/2 -> 7/1 on azure-code, each move paying a
start-up delay). A move must also gain more than the optimizer's ``EPSILON`` (1 %): plans
that close count as equal. A plan that shrinks only hands back GPUs that add no
goodput, and one that grows only uses free GPUs: neither is a move, neither is weighed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from goodput.planner.optimizer import EPSILON, Problem, goodput_at


@dataclass(frozen=True)
class MoveCheck:
    """The numbers behind a rebalance decision (goodputs in requests/s, gain and cost in
    requests within the SLO)."""

    now_rps: float
    interim_rps: float
    target_rps: float
    payback_s: float
    startup_s: float
    interim: dict[str, int]
    demand_rps: float

    @property
    def gain(self) -> float:
        return (self.target_rps - self.now_rps) * self.payback_s

    @property
    def cost(self) -> float:
        return max(self.now_rps - self.interim_rps, 0.0) * self.startup_s

    @property
    def pays(self) -> bool:
        """The gain exceeds the cost, and the target is better by more than the
        optimizer's ``EPSILON``: plans that close count as equal, and a move between
        equals buys nothing but its start-up."""
        better = self.target_rps > self.now_rps * (1.0 + EPSILON)
        return better and self.gain > self.cost

    def sentence(self, tokens_per_request: float) -> str:
        k = tokens_per_request
        if self.target_rps <= self.now_rps * (1.0 + EPSILON):
            return (
                f"the better split would serve {self.target_rps * k:.1f} good tok/s against"
                f" {self.now_rps * k:.1f} now, within {EPSILON:.0%}: plans that close are"
                " equal, and a move between equals buys only its start-up delay"
            )
        return (
            f"moving to the better split would gain {(self.target_rps - self.now_rps) * k:.1f}"
            f" good tok/s x {self.payback_s:.0f}s = {self.gain * k:.0f} tokens, but cost"
            f" {max(self.now_rps - self.interim_rps, 0.0) * k:.1f} good tok/s x"
            f" {self.startup_s:.0f}s (startupDelay) = {self.cost * k:.0f} tokens while the"
            " replicas that leave are gone and the arriving ones start"
        )


def is_rebalance(now: Mapping[str, int], target: Mapping[str, int]) -> bool:
    """Some pool grows and another shrinks."""
    grows = any(n > now.get(r, 0) for r, n in target.items())
    shrinks = any(n < now.get(r, 0) for r, n in target.items())
    return grows and shrinks


def check_move(
    problem: Problem,
    serving: Mapping[str, int],
    target: Mapping[str, int],
    horizon_s: float,
    startup_s: float,
) -> MoveCheck:
    """``serving``: replicas that serve now (ready); ``target``: the plan's replicas;
    goodputs at ``problem``'s demand and the KV tiers' current sizes."""
    interim = {r: min(serving.get(r, 0), n) for r, n in target.items()}
    return MoveCheck(
        now_rps=goodput_at(problem, dict(serving)),
        interim_rps=goodput_at(problem, interim),
        target_rps=goodput_at(problem, dict(target)),
        payback_s=max(horizon_s, startup_s),
        startup_s=startup_s,
        interim=interim,
        demand_rps=problem.demand.rate_rps,
    )
