"""What the planner decides given its predictions (issue 12): moves that must pay for
themselves, forecasts the budget cannot serve, floors that must not trap a worse split,
GPUs kept under overload, burst headroom among equals."""

from __future__ import annotations

import itertools
import re
from dataclasses import replace

import pytest

from goodput.observation import LatencySummary
from goodput.plan import Allocation
from goodput.planner import plan
from goodput.planner.forecast import ForecastState
from goodput.planner.model import Demand
from goodput.planner.moves import MoveCheck, check_move, is_rebalance
from goodput.planner.optimizer import (
    BURST,
    EPSILON,
    Candidate,
    _burst_goodput,
    _pick,
    goodput_at,
    optimize,
)
from goodput.planner.planner import PlannerState, PoolModel, pool_model
from goodput.reasons import Limit, Reason

from .planner_fixtures import disagg_spec, observation


def _with_startup(spec, startup: str, horizon: str = "75s"):  # type: ignore[no-untyped-def]
    behavior = spec.behavior.model_copy(
        update={"startup_delay": startup, "forecast_horizon": horizon}
    )
    return spec.model_copy(update={"behavior": behavior})


# --- a move must pay for itself --------------------------------------------------------


def test_move_check_arithmetic() -> None:
    # Gains 1 req/s over 75 s; costs 60 s x (2 req/s of the leaving replicas + the 1
    # req/s the arriving ones add only once they serve).
    held = MoveCheck(10.0, 8.0, 11.0, 75.0, 60.0, {}, 5.0)
    assert held.gain == pytest.approx(75.0) and held.cost == pytest.approx(180.0)
    assert not held.pays
    # Nothing lost while they start: a 75 s window repays a 60 s start-up.
    assert MoveCheck(10.0, 10.0, 11.0, 75.0, 60.0, {}, 5.0).pays
    assert not MoveCheck(10.0, 10.0, 11.0, 60.0, 60.0, {}, 5.0).pays
    # Better by less than EPSILON: equal plans, nothing to move for even at no cost.
    assert not MoveCheck(10.0, 10.0, 10.0 * (1 + EPSILON / 2), 75.0, 60.0, {}, 5.0).pays
    assert is_rebalance({"p": 4, "d": 4}, {"p": 5, "d": 3})
    assert not is_rebalance({"p": 4, "d": 4}, {"p": 5, "d": 4})  # a grow into free GPUs
    assert not is_rebalance({"p": 4, "d": 4}, {"p": 3, "d": 4})  # a hand-back


def _after_a_peak(now: float) -> PlannerState:
    """A running planner 15 s after a 60 req/s figure that patience still holds, with
    the forecast level back at 10 req/s."""
    return PlannerState(
        forecast=ForecastState(10.0, 0.0, 0.5, now - 15.0, ((now - 15.0, 60.0),)),
        last_traffic=(now - 15.0, 2000.0, 250.0, 100.0),
        patient=True,
        started=0.0,
    )


def test_in_a_lull_a_resplit_for_the_remembered_peak_is_held() -> None:
    """The trough flip-flop: patience keeps planning for the 60 req/s peak, at which
    5/3 is best, while 10 req/s is expected now and every split of 8 GPUs but 1/7
    serves it equally. Moving would buy only a start-up delay: held, with the numbers.
    Without a start-up delay a move costs nothing and goes ahead."""
    base = disagg_spec(8, max_p=7, max_d=7)
    slow, instant = _with_startup(base, "60s"), _with_startup(base, "0s")
    now = 115.0
    held = 0
    for p in range(1, 8):
        cur = Allocation(pools={"prefill": p, "decode": 8 - p})
        obs = observation(10.0, ready=dict(cur.pools), now=now)
        free, _ = plan(instant, obs, cur, _after_a_peak(now), now)
        assert free.allocation().pools == {"prefill": 5, "decode": 3}
        got, _ = plan(slow, obs, cur, _after_a_peak(now), now)
        if not is_rebalance(cur.pools, free.allocation().pools):
            continue
        model = pool_model(slow, obs, cur, {})
        demand = Demand(10.0, 2000.0, 250.0)
        target = {"prefill": 5, "decode": 3}
        move = check_move(model.problem(demand), cur.pools, target, 75.0, 60.0, 15.0)
        if got.reason == Reason.MoveWouldNotPay:
            held += 1
            assert not move.pays
            assert got.allocation() == cur and not got.hold
            assert got.binding_constraint == Limit.StartupCost
            assert Reason.MoveWouldNotPay in {a.reason for a in got.adjustments}
            assert "req/s expected now" in got.message and "good tok/s" in got.message
        else:
            assert got.allocation() == free.allocation()
    assert held >= 4  # every split that serves 10 req/s stays
    # 1/7 cannot serve 10 req/s: the move pays and goes ahead.
    cur = Allocation(pools={"prefill": 1, "decode": 7})
    got, _ = plan(
        slow, observation(10.0, ready=dict(cur.pools), now=now), cur, _after_a_peak(now), now
    )
    assert got.allocation().pools == {"prefill": 5, "decode": 3}


def test_a_one_shot_plan_moves_only_when_the_move_pays() -> None:
    """Every current split of 8 GPUs at several loads: a rebalance the plan makes is one
    the move check says pays, both at the demand the plan names and at the rate
    observed (the check is robust over that range)."""
    spec = _with_startup(disagg_spec(8, max_p=7, max_d=7), "60s")
    moved = 0
    for rate, p in itertools.product((10.0, 20.0, 40.0), range(1, 8)):
        cur = Allocation(pools={"prefill": p, "decode": 8 - p})
        obs = observation(rate, ready=dict(cur.pools))
        got, _ = plan(spec, obs, cur, None, 0.0)
        target = got.allocation().pools
        if got.reason == Reason.MoveWouldNotPay or not is_rebalance(cur.pools, target):
            continue
        moved += 1
        m = re.search(r"demand ([\d.]+) req/s forecast", got.message)
        assert m is not None
        model = pool_model(spec, obs, cur, {})
        for level in (float(m.group(1)), rate):
            problem = model.problem(Demand(level, 2000.0, 250.0))
            assert check_move(problem, cur.pools, target, 75.0, 60.0, 15.0).pays
    assert moved > 0


# --- never re-split toward demand the budget cannot serve ------------------------------


def _remembering(peak: float, now: float, level: float) -> PlannerState:
    """A running planner whose patience window holds a ``peak`` figure from 15 s ago."""
    return PlannerState(
        forecast=ForecastState(level, 0.0, 0.5, now - 15.0, ((now - 15.0, peak),)),
        last_traffic=(now - 15.0, 2000.0, 250.0, 100.0),
        patient=True,
        started=0.0,
    )


def test_an_unservable_forecast_does_not_change_the_split() -> None:
    """40 req/s observed, which 8 GPUs serve; a spike lifted the forecast the patience
    window holds. Past what the budget can serve, how far past does not matter: every
    unservable figure gets the same split (the highest-goodput plan at the highest
    servable demand, every GPU kept), and says so with DemandCapped. (No start-up delay,
    so the move check does not hold the current split.)"""
    spec = _with_startup(disagg_spec(8, max_p=8, max_d=8), "0s")
    cur = Allocation(pools={"prefill": 4, "decode": 4})
    now = 115.0
    obs = observation(40.0, ready=dict(cur.pools), now=now)
    plans = [
        plan(spec, obs, cur, _remembering(peak, now, 40.0), now)[0]
        for peak in (120.0, 240.0, 800.0, 3200.0)
    ]
    splits = {tuple(sorted(p.allocation().pools.items())) for p in plans}
    assert len(splits) == 1, splits
    for p in plans:
        assert p.total_gpus == spec.gpu_budget
        assert Reason.DemandCapped in {a.reason for a in p.adjustments}
        assert p.reason == Reason.BudgetExhausted and not p.budget_satisfiable
        assert p.binding_constraint == Limit.GpuBudget
    # The cap is the highest demand the budget serves at the target (within the 2 %
    # grid): at it the optimizer meets the SLO, 2 % above it does not.
    m = re.search(r"for the ([\d.]+) req/s it can serve", plans[0].message)
    assert m is not None
    cap = float(m.group(1))
    assert 40.0 <= cap < 120.0
    model = pool_model(spec, obs, cur, {})
    below = optimize(model.problem(Demand(cap, 2000.0, 250.0)))
    above = optimize(model.problem(Demand(cap * 1.021, 2000.0, 250.0)))
    assert below is not None and below.satisfiable
    assert above is not None and not above.satisfiable
    assert plans[0].allocation().pools == below.best.pools
    # The per-pool figures the message gives are the chosen split's at that demand, not
    # those of the forecast's best split (which was not taken).
    for role, n in plans[0].allocation().pools.items():
        per = re.search(
            rf"{role} (?:TTFT|ITL) [^;]* at ([\d.]+) req/s per replica", plans[0].message
        )
        assert per is not None, plans[0].message
        assert float(per.group(1)) == pytest.approx(cap / n, abs=0.01)
    assert f"(the split planned for the {cap:.2f} req/s servable)" in plans[0].message


def test_under_overload_now_the_plan_is_for_the_observed_rate() -> None:
    """When not even the observed rate is servable, no cap below it: a plan for a
    trickle would not serve the load that is here. The forecast above it is still
    capped to it."""
    spec = _with_startup(disagg_spec(8, max_p=8, max_d=8), "0s")
    cur = Allocation(pools={"prefill": 4, "decode": 4})
    now = 115.0
    obs = observation(400.0, ready=dict(cur.pools), now=now)
    got, _ = plan(spec, obs, cur, _remembering(800.0, now, 400.0), now)
    notes = {a.reason: a.message for a in got.adjustments}
    assert "not even the observed rate is servable" in notes[Reason.DemandCapped]
    assert got.total_gpus == spec.gpu_budget
    model = pool_model(spec, obs, cur, {})
    at_observed = optimize(model.problem(Demand(400.0, 2000.0, 250.0)))
    assert at_observed is not None
    assert got.allocation().pools == at_observed.chosen.pools


def test_a_servable_forecast_is_not_capped() -> None:
    spec = disagg_spec(32)
    result, _ = plan(
        spec, observation(20.0), Allocation(pools={"prefill": 1, "decode": 1}), None, 0
    )
    assert result.budget_satisfiable
    assert Reason.DemandCapped not in {a.reason for a in result.adjustments}


# --- overload: keep every GPU that adds goodput; floors never trap ----------------------


@pytest.mark.parametrize("rate", [80.0, 160.0, 400.0])
def test_overload_keeps_every_gpu(rate: float) -> None:
    spec = disagg_spec(5, max_p=5, max_d=5)
    cur = Allocation(pools={"prefill": 1, "decode": 1})
    result, _ = plan(spec, observation(rate, ready={"prefill": 1, "decode": 1}), cur, None, 0)
    assert result.total_gpus == spec.gpu_budget
    assert result.reason == Reason.BudgetExhausted


def test_a_violating_pools_floor_does_not_trap_a_worse_split() -> None:
    """1 prefill / 3 decode with decode missing its ITL: the floor (never shrink a pool
    missing its SLO) would keep 1/3, which the model rates far below 2/2."""
    spec = disagg_spec(4, max_p=4, max_d=4)
    cur = Allocation(pools={"prefill": 1, "decode": 3})
    bad = LatencySummary(attainment=0.5, mean_s=0.06)
    obs = observation(20.0, itl=bad, ready=dict(cur.pools))
    result, _ = plan(spec, obs, cur, None, 0.0)
    assert result.allocation().pools == {"prefill": 2, "decode": 2}
    notes = {a.reason: a.message for a in result.adjustments}
    assert Reason.FloorReleased in notes
    m = re.search(
        r"at ([\d.]+) good tok/s where 2 prefill/2 decode gives ([\d.]+)",
        notes[Reason.FloorReleased],
    )
    assert m is not None and float(m.group(2)) > float(m.group(1)) * (1 + EPSILON)
    # The floor still holds where it costs nothing: at a load 1/3 serves, 1/3 stays.
    light, _ = plan(spec, observation(5.0, itl=bad, ready=dict(cur.pools)), cur, None, 0.0)
    assert light.allocation().pools["decode"] == 3
    assert Reason.FloorReleased not in {a.reason for a in light.adjustments}


# --- tie-break among equals by burst headroom ------------------------------------------


def _candidate(pools: dict[str, int], goodput: float) -> Candidate:
    return Candidate(
        pools=pools, tiers={}, gpus=sum(pools.values()), goodput_rps=goodput, attainment=1.0
    )


def test_equal_gpus_and_near_equal_goodput_pick_the_most_burst_headroom() -> None:
    spec = disagg_spec(8, max_p=7, max_d=7)
    cur = Allocation(pools={"prefill": 4, "decode": 4})
    problem = pool_model(spec, observation(12.0), cur, {}).problem(Demand(12.0, 2000.0, 250.0))
    splits = [{"prefill": p, "decode": 8 - p} for p in range(1, 8)]
    burst = {p["prefill"]: _burst_goodput(problem, _candidate(p, 0.0)) for p in splits}
    best = max(burst, key=lambda k: burst[k])
    worst = min(burst, key=lambda k: burst[k])
    assert burst[best] > burst[worst] * (1 + EPSILON)
    # The nominal ranking puts the worst burst split first by a hair (within EPSILON).
    a = _candidate({"prefill": worst, "decode": 8 - worst}, 10.0)
    b = _candidate({"prefill": best, "decode": 8 - best}, 10.0 * (1 - EPSILON / 2))
    chosen, runner, note = _pick([a, b], 9.0, problem)
    assert chosen is b and runner is a
    assert note is not None and f"{BURST:g}x demand" in note
    # A near-equal plan below the goodput that meets the attainment target is no tie.
    chosen, _, note = _pick([a, b], 9.0, problem, floor=9.99)
    assert chosen is a and note is None
    # Beyond EPSILON the goodput decides, not the headroom.
    c = replace(b, goodput_rps=10.0 * (1 - 2 * EPSILON))
    chosen, _, note = _pick([a, c], 9.0, problem)
    assert chosen is a and note is None
    # Fewer GPUs still win over headroom.
    d = _candidate({"prefill": best, "decode": 7 - best}, 9.5)
    chosen, _, _ = _pick([a, d], 9.0, problem)
    assert chosen is d


def test_burst_goodput_counts_the_candidates_kv_tiers() -> None:
    spec = disagg_spec(16, tiers=True)
    cur = Allocation(pools={"prefill": 4, "decode": 4}, tiers={"cpu": 0, "disk": 0})
    obs = observation(20.0, hit=0.5)
    problem = pool_model(spec, obs, cur, {}).problem(Demand(20.0, 2000.0, 250.0))
    bare = Candidate({"prefill": 4, "decode": 4}, {"cpu": 0, "disk": 0}, 8, 1.0, 1.0)
    tiered = replace(bare, tiers={"cpu": 4, "disk": 0})
    assert _burst_goodput(problem, tiered) != pytest.approx(_burst_goodput(problem, bare))
    assert _burst_goodput(problem, bare) == pytest.approx(
        goodput_at(replace(problem, demand=Demand(20.0 * BURST, 2000.0, 250.0)), bare.pools)
    )


def test_burst_goodput_keeps_the_demands_measured_variability() -> None:
    """The burst is the demand's own stream at BURST x the rate: its measured arrival
    dispersion and prompt spread stay (a bursty stream's burst queues more than a
    Poisson one's, so it serves fewer requests within the SLO)."""
    spec = disagg_spec(8, max_p=7, max_d=7)
    cur = Allocation(pools={"prefill": 4, "decode": 4})
    model = pool_model(spec, observation(12.0), cur, {})
    cand = _candidate({"prefill": 4, "decode": 4}, 0.0)
    bursty = model.problem(Demand(12.0, 2000.0, 250.0, arrival_scv=20.0, input_scv=2.0))
    poisson = model.problem(Demand(12.0, 2000.0, 250.0))
    want = goodput_at(
        replace(bursty, demand=replace(bursty.demand, rate_rps=12.0 * BURST)), cand.pools
    )
    assert _burst_goodput(bursty, cand) == pytest.approx(want)
    assert _burst_goodput(bursty, cand) < _burst_goodput(poisson, cand) * (1 - EPSILON)


def test_a_move_under_way_is_what_a_new_move_is_weighed_against() -> None:
    """Decode 1 -> 3 is under way (2 decode replicas still starting): a further move is
    weighed against 5/3 once ready, not against the half-done 5/1 serving now, which
    would make any move look worth it."""
    spec = disagg_spec(8, max_p=7, max_d=7)
    cur = Allocation(pools={"prefill": 5, "decode": 3})
    problem = pool_model(spec, observation(50.0), cur, {}).problem(Demand(50.0, 2000.0, 250.0))
    serving, target = {"prefill": 5, "decode": 1}, {"prefill": 4, "decode": 4}
    naive = check_move(problem, serving, target, 75.0, 60.0, 15.0)
    under_way = check_move(problem, serving, target, 75.0, 60.0, 15.0, cur.pools)
    assert under_way.now_rps == pytest.approx(goodput_at(problem, cur.pools))
    assert naive.now_rps == pytest.approx(goodput_at(problem, serving))
    assert under_way.interim == naive.interim == {"prefill": 4, "decode": 1}
    assert under_way.now_rps > naive.now_rps
    assert under_way.gain < naive.gain


def test_on_a_rising_ramp_a_move_is_weighed_at_the_demand_when_it_would_serve() -> None:
    """A ramp (20 req/s now, rising 0.5 req/s each second): the arriving replicas serve
    only after the 60 s start-up, when demand is on the level + trend path, not at the
    rate observed now. The move to 5/3 does not pay at the rate now, pays at the path's
    demand then, and is made; the check the planner names is the one at that demand."""
    spec = _with_startup(disagg_spec(8, max_p=7, max_d=7), "60s")
    now, rate, trend = 115.0, 20.0, 0.5
    state = PlannerState(
        forecast=ForecastState(rate, trend, 0.5, now - 15.0, ()),
        last_traffic=(now - 15.0, 2000.0, 250.0, 100.0),
        patient=True,
        started=0.0,
    )
    cur = Allocation(pools={"prefill": 3, "decode": 5})
    obs = observation(rate, ready=dict(cur.pools), now=now)
    got, new_state = plan(spec, obs, cur, state, now)
    target = got.allocation().pools
    assert got.reason != Reason.MoveWouldNotPay and is_rebalance(cur.pools, target)
    model = pool_model(spec, obs, cur, {})
    at_rate = check_move(
        model.problem(Demand(rate, 2000.0, 250.0)), cur.pools, target, 300.0, 60.0, 15.0
    )
    assert not at_rate.pays
    f = new_state.forecast
    assert f is not None and f.trend > 0
    served_at = f.level + f.trend * 60.0
    assert served_at > rate
    at_path = check_move(
        model.problem(Demand(served_at, 2000.0, 250.0)), cur.pools, target, 300.0, 60.0, 15.0
    )
    assert at_path.pays
    # Flat at the same rate, the low end is the rate now and the move is not made.
    flat = replace(state, forecast=ForecastState(rate, 0.0, 0.5, now - 15.0, ()))
    held, _ = plan(spec, obs, cur, flat, now)
    assert held.allocation().pools != target


def test_a_move_between_equals_is_made_only_when_it_pays_at_a_burst() -> None:
    """After a peak patience still holds (5/3 planned), every current split of 8 GPUs at
    loads where several splits serve the demand alike: a move equal (within EPSILON) at
    the demand weighed is made when it pays at a burst of BURST x the demand expected,
    and says so with both figures (BurstHeadroom); a move equal there too is held as a
    move between equals (MoveWouldNotPay). On azure-code the split held from t=0 and
    the one its bursts need were equal in the first lull, and the first burst found
    half the prefill it wanted."""
    spec = _with_startup(disagg_spec(8, max_p=7, max_d=7), "60s")
    now = 115.0
    made = held = 0
    pattern = re.compile(r"at ([\d.]+) req/s the split moved to .* at a burst of ([\d.]+) req/s")
    for rate, p in itertools.product((6.0, 10.0, 14.0, 18.0), range(1, 8)):
        cur = Allocation(pools={"prefill": p, "decode": 8 - p})
        obs = observation(rate, ready=dict(cur.pools), now=now)
        got, _ = plan(spec, obs, cur, _after_a_peak(now), now)
        model = pool_model(spec, obs, cur, {})

        def check(
            level: float, target: dict[str, int], model: PoolModel = model, cur: Allocation = cur
        ) -> MoveCheck:
            problem = model.problem(Demand(level, 2000.0, 250.0))
            return check_move(problem, cur.pools, target, 300.0, 60.0, 15.0)

        notes = [
            a.message
            for a in got.adjustments
            if a.reason == Reason.BurstHeadroom and "the split moved to" in a.message
        ]
        if notes:
            made += 1
            target = got.allocation().pools
            assert got.reason != Reason.MoveWouldNotPay and is_rebalance(cur.pools, target)
            m = pattern.search(notes[0])
            assert m is not None and f"({BURST:g}x)" in notes[0]
            level, burst = float(m.group(1)), float(m.group(2))
            assert burst > level
            assert check(level, target).equal and not check(level, target).pays
            assert check(burst, target).pays
        elif got.reason == Reason.MoveWouldNotPay and "within 1%" in got.message:
            held += 1
            assert got.allocation() == cur and got.runner_up is not None
            m = re.search(r"at the ([\d.]+) req/s expected now", got.message)
            assert m is not None
            level = float(m.group(1))
            assert check(level, got.runner_up.pools).equal
    assert made >= 3 and held >= 10


def test_no_move_is_made_for_a_burst_the_budget_cannot_serve() -> None:
    """A move equal at the demand weighed is never made for a burst the budget cannot
    serve (the burst's own plan bound by gpuBudget), nor under a forecast capped to what
    it can: that is the re-split toward unservable demand the cap exists to prevent.
    At 50 req/s after the 60 req/s peak, 4/4 and 6/2 are equal to 5/3 and the 75 req/s
    burst is beyond 8 GPUs: held. At 14 req/s (a 21 req/s burst, servable) 2/6 moves."""
    spec = _with_startup(disagg_spec(8, max_p=7, max_d=7), "60s")
    now = 115.0

    def burst_moves(rate: float, p: int) -> list[str]:
        cur = Allocation(pools={"prefill": p, "decode": 8 - p})
        obs = observation(rate, ready=dict(cur.pools), now=now)
        got, _ = plan(spec, obs, cur, _after_a_peak(now), now)
        return [
            a.message
            for a in got.adjustments
            if a.reason == Reason.BurstHeadroom and "the split moved to" in a.message
        ]

    assert burst_moves(14.0, 2)
    for rate, p in itertools.product((50.0, 60.0, 80.0, 130.0), range(1, 8)):
        assert not burst_moves(rate, p), (rate, p)
