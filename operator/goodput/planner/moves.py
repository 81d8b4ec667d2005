"""Does moving GPUs between pools pay for itself?

A rebalance (one pool grows while another shrinks) is not free: the replicas that leave
stop serving at once, the ones that arrive serve only after ``startupDelay`` (S), so for
that long the fleet runs on the smaller *interim* allocation (each pool at the lower of
what serves now and the target). Over the payback window T the move yields
G_interim x S + G_target x (T - S) against G_now x T for holding (G_now: the allocation
held, a move still under way included), so it pays when the gain over the window
exceeds the start-up delay times the goodput of the replicas that leave and of those
that arrive::

    gain = (G_target - G_now) x T,
    T = max(forecastHorizon, scale-down stabilization window, startupDelay + interval)
    cost = (G_target - G_interim) x startupDelay
         = ((G_now - G_interim) + (G_target - G_now)) x startupDelay

(goodput G in requests/s; T is as long as the planner commits to capacity: the horizon
the forecast looks ahead, or the scale-down window patience holds a split for, and at
least one interval past the start-up so a move can pay at all. The variant planner, weighing moves
between variants, counts only the leaving half as cost.) On bursty traffic this is what
makes a move at a burst's onset wait: the burst is often over when the replica is
ready.

The planner weighs a move at the demand expected over the horizon *now* (the forecast
before its patience window keeps a higher recent figure) and at the rate observed, and
moves only when it pays at both: patience exists so capacity is not let go in a lull,
and re-splitting in a lull for the peak that patience remembers, or at a burst's onset
for a forecast its own variance inflates, is the trough flip-flop (7/1 -> 6/2 -> 7/1 on
azure-code, each move paying a start-up delay). A move must also gain more than the
optimizer's ``EPSILON`` (1 %): plans that close count as equal. Equal at the demand
expected is not equal at a burst: where the move is equal at every demand weighed (and
loses at none), it is weighed once more at a burst the budget can serve (``BURST`` x the
expected demand, the arrivals' measured dispersion kept: the optimizer's own burst-headroom
test), and made when it pays there.
On azure-code the split held from t=0 (4/4) and the one the bursts need (7/1) were
within 1 % in the first lull; 4/4 met the first burst with half the prefill. A plan that
shrinks only hands back GPUs that add no goodput, and one that grows only uses free GPUs:
neither is a move, neither is weighed.
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
    def leaving_rps(self) -> float:
        """Goodput below the held allocation's while the replicas that leave are gone."""
        return max(self.now_rps - self.interim_rps, 0.0)

    @property
    def arriving_rps(self) -> float:
        """Goodput the arriving replicas add once they serve (none before)."""
        return max(self.target_rps - self.now_rps, 0.0)

    @property
    def cost(self) -> float:
        return (self.leaving_rps + self.arriving_rps) * self.startup_s

    @property
    def equal(self) -> bool:
        """The target's goodput is within the optimizer's ``EPSILON`` of the held one's,
        either way: at this demand the two plans are equal."""
        return abs(self.target_rps - self.now_rps) <= self.now_rps * EPSILON

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
            f"moving to the better split would gain {self.arriving_rps * k:.1f} good tok/s x"
            f" {self.payback_s:.0f}s = {self.gain * k:.0f} tokens, but cost"
            f" {self.startup_s:.0f}s (startupDelay) x ({self.leaving_rps * k:.1f} good tok/s"
            f" of the replicas that leave + {self.arriving_rps * k:.1f} of those that arrive)"
            f" = {self.cost * k:.0f} tokens"
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
    interval_s: float,
    committed: Mapping[str, int] | None = None,
) -> MoveCheck:
    """``serving``: replicas that serve now (ready); ``target``: the plan's replicas;
    ``committed``: the replicas already asked for (spec), when a previous move is still
    under way: holding means that move completes, so the new one gains only what it
    adds over it, and costs the shortfall of the interim (what serves now, cut to the
    target) from the target for the start-up delay. A chain of moves, each judged
    against the half-done previous one, would each look worth it (on the Mooncake
    trace, while the correction still converged: 9/3 -> 8/4 -> 6/6 -> 3/9 in a
    minute). Goodputs at ``problem``'s demand and the KV tiers' current sizes."""
    interim = {r: min(serving.get(r, 0), n) for r, n in target.items()}
    hold = dict(committed if committed is not None else serving)
    return MoveCheck(
        now_rps=goodput_at(problem, hold),
        interim_rps=goodput_at(problem, interim),
        target_rps=goodput_at(problem, dict(target)),
        payback_s=max(horizon_s, startup_s + interval_s),
        startup_s=startup_s,
        interim=interim,
        demand_rps=problem.demand.rate_rps,
    )
