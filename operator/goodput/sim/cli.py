"""`goodput simulate`: replay a trace through the twin under several controllers."""

from __future__ import annotations

import argparse
import sys
import time
from importlib import resources
from pathlib import Path

from goodput.api.load import load_policy
from goodput.api.spec import GoodputPolicySpec, Mode
from goodput.sim import report
from goodput.sim.controllers import (
    CONTROLLERS,
    EXTRA_CONTROLLERS,
    SIMULATE_DEFAULT,
    planner_available,
    run_benchmark,
)
from goodput.sim.scenario import build_scenario
from goodput.sim.traces import Trace, read_rate_curve, read_trace, synthesize_from_rates

DEMO_TRACE = "azure2023_code_15min.csv"
DEMO_POLICY = "demo-policy.yaml"
DEMO_RATE = 1.0
# Wrong-answer costs the planner is re-run at for the crossover plot (--plot, variants).
SWEEP_COSTS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5)


class ProgressBar:
    """A bar per controller on stderr, redrawn in place on a terminal; one line per
    finished controller otherwise (logs stay readable)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.current = ""
        self.shown = -1
        self.t0 = time.perf_counter()

    def __call__(self, name: str, frac: float) -> None:
        if not self.enabled:
            return
        if name != self.current:
            self.close()
            self.current = name
            self.t0 = time.perf_counter()
            self.shown = -1
        pct = int(100 * min(1.0, frac))
        if pct == self.shown:
            return
        self.shown = pct
        if not self.tty:
            return
        width = 30
        done = int(width * min(1.0, frac))
        sys.stderr.write(
            f"\r  {name:<12} [{'#' * done}{'.' * (width - done)}] {pct:3d}% "
            f"{time.perf_counter() - self.t0:5.1f}s"
        )
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.current:
            if self.tty:
                sys.stderr.write("\n")
            else:
                sys.stderr.write(
                    f"  {self.current:<12} done in {time.perf_counter() - self.t0:.1f}s\n"
                )
            sys.stderr.flush()
            self.current = ""


def data_path(name: str) -> Path:
    return Path(str(resources.files("goodput.sim").joinpath("data", name)))


def load_trace(path: str, args: argparse.Namespace) -> Trace:
    with open(path) as f:
        header = f.readline()
    if "total_rate_rps" not in header:
        return read_trace(path)
    if not args.lengths_from:
        raise SystemExit("goodput simulate: a rate curve needs --lengths-from TRACE")
    starts, rates = read_rate_curve(path)
    day = (86400.0 * args.day, 86400.0 * (args.day + 1))
    return synthesize_from_rates(
        starts,
        rates,
        read_trace(args.lengths_from),
        seed=args.seed,
        compress=args.compress,
        mean_rps=args.mean_rps,
        span_s=day,
        name=Path(path).stem,
    )


def default_controllers() -> list[str]:
    return [c for c in SIMULATE_DEFAULT if c != "goodput" or planner_available()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="goodput simulate",
        description="Replay a request trace through the digital twin and compare controllers "
        "under one GPU budget, SLO and performance profile. `goodput` is the operator's own "
        "reconcile tick on a simulated cluster; every controller observes what the metrics "
        "layer would read from Prometheus scraping the twin's vLLM exporter, and every "
        "controller's replicas are written in the budget-safe order.",
    )
    ap.add_argument("--policy", help="GoodputPolicy YAML (budget, pools, SLO, behavior)")
    ap.add_argument(
        "--trace",
        help="Azure CSV, Mooncake JSONL, or a ServeGen rate curve CSV "
        "(window_start_s,total_rate_rps; needs --lengths-from)",
    )
    ap.add_argument("--lengths-from", help="trace whose (input, output) pairs a rate curve draws")
    ap.add_argument(
        "--compress",
        type=float,
        default=24.0,
        help="rate curve: time compression (24 = a day in an hour)",
    )
    ap.add_argument("--mean-rps", type=float, help="rate curve: rescale to this mean rate")
    ap.add_argument("--day", type=int, default=0, help="rate curve: which day (0 = first)")
    ap.add_argument(
        "--demo",
        action="store_true",
        help="bundled trace slice + bundled demo policy + all controllers",
    )
    ap.add_argument("--budget", type=int, help="override the policy's gpuBudget")
    ap.add_argument("--controllers", help=f"comma list from {','.join(CONTROLLERS)}")
    ap.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the rate-curve synthesis and, for a policy with variants, of the "
        "router's and the correctness draws (the twin itself is deterministic)",
    )
    ap.add_argument(
        "--rate",
        type=float,
        default=None,
        help="compress arrivals by this factor (2 = twice the request rate)",
    )
    ap.add_argument("--start", type=float, default=0.0, help="trace slice start, seconds")
    ap.add_argument("--duration", type=float, default=None, help="trace slice length, seconds")
    ap.add_argument("--json", dest="json_out", help="write the results as JSON here")
    ap.add_argument("--plot", help="write a PNG of load, replicas and attainment here")
    ap.add_argument("--requests-out", help="CSV with one row per request of one controller")
    ap.add_argument("--controller", help="which controller --requests-out describes")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    ap.add_argument(
        "--wrong-answer-cost",
        type=float,
        help="policies with variants: override the policy's value.wrongAnswerCost c",
    )
    ap.add_argument(
        "--cost-sweep",
        help="policies with variants: comma list of wrong-answer costs to re-run the planner "
        f"at for the crossover plot (default with --plot: {','.join(map(str, SWEEP_COSTS))}; "
        "'none' to skip)",
    )
    args = ap.parse_args(argv)

    if args.demo:
        policy_path = args.policy or str(data_path(DEMO_POLICY))
        trace_path = args.trace or str(data_path(DEMO_TRACE))
        rate = args.rate if args.rate is not None else DEMO_RATE
    else:
        if not args.policy or not args.trace:
            ap.error("--policy and --trace are required (or use --demo)")
        policy_path, trace_path = args.policy, args.trace
        rate = args.rate if args.rate is not None else 1.0

    spec = load_policy(policy_path)
    if args.budget is not None:
        spec = spec.model_copy(update={"gpu_budget": args.budget})
    trace = load_trace(trace_path, args)
    if args.duration is not None or args.start:
        end = args.start + (args.duration if args.duration is not None else trace.duration_s)
        trace = trace.window(args.start, end)
    if rate != 1.0:
        trace = trace.scaled(rate)
    if spec.variants:
        return simulate_variants(ap, args, spec, trace, trace_path, policy_path, rate)
    sc = build_scenario(spec)

    names = args.controllers.split(",") if args.controllers else default_controllers()
    names = [n.strip() for n in names if n.strip()]
    unknown = [n for n in names if n not in CONTROLLERS + EXTRA_CONTROLLERS]
    if unknown:
        ap.error(f"unknown controller(s) {unknown}; known: {', '.join(CONTROLLERS)}")
    if any(n.startswith("goodput") for n in names) and not planner_available():
        ap.error("controller 'goodput' needs goodput.planner.GoodputPlanner (not installed)")
    if args.requests_out and args.controller and args.controller not in names:
        ap.error(f"--controller {args.controller} is not among --controllers")

    print(
        f"trace {trace_path} ({trace.note}; {len(trace)} requests over "
        f"{trace.duration_s / 60:.1f} min"
        f"{', rate x' + format(rate, 'g') if rate != 1.0 else ''}); policy {policy_path}; "
        f"budget {sc.budget} GPUs; SLO TTFT {spec.slo.ttft} ITL {spec.slo.itl}; "
        f"interval {sc.interval_s:g}s; startup {sc.startup_delay_s:g}s; seed {args.seed}"
    )
    if spec.mode == Mode.Recommend and "goodput" in names:
        print(
            "note: the policy's mode is Recommend: the operator publishes its plan and writes "
            "nothing, in the twin as in a cluster (set mode: Enforce to simulate scaling)",
            file=sys.stderr,
        )
    bar = ProgressBar(enabled=not args.quiet)
    wall0 = time.perf_counter()
    results, _ = run_benchmark(sc, trace, names, progress=bar)
    bar.close()
    wall = time.perf_counter() - wall0
    print(report.table(results))
    print(f"simulated {trace.duration_s / 60:.1f} min x {len(names)} controllers in {wall:.1f}s")
    if args.json_out:
        report.write_json(results, args.json_out)
        print(f"wrote {args.json_out}")
    if args.plot:
        report.plot(results, args.plot, title=f"{Path(trace_path).name}, budget {sc.budget} GPUs")
        print(f"wrote {args.plot}")
    if args.requests_out:
        who = args.controller or names[0]
        n = report.write_requests(results[who], args.requests_out)
        print(f"wrote {args.requests_out} ({n} requests of {who})")
    over = [n for n, r in results.items() if r.peak_gpus > r.budget]
    if over:
        print(f"BUDGET EXCEEDED by: {', '.join(over)}", file=sys.stderr)
        return 1
    return 0


def simulate_variants(
    ap: argparse.ArgumentParser,
    args: argparse.Namespace,
    spec: GoodputPolicySpec,
    trace: Trace,
    trace_path: str,
    policy_path: str,
    rate: float,
) -> int:
    """`goodput simulate` on a policy with variants: the variant twin (goodput.sim.
    variants) under `goodput` (the variant planner), `hpa-fixed-split` and one
    `single-<variant>` per variant; value-weighted goodput, shares, replicas; with --plot
    the crossover against the wrong-answer cost and the split across the trace."""
    from goodput.sim.variant_controllers import (
        GOODPUT_DRIVER,
        GOODPUT_LABEL,
        VARIANT_CONTROLLERS,
        run_variant_benchmark,
        sweep_costs,
    )
    from goodput.sim.variants import build_variant_scenario

    if args.wrong_answer_cost is not None:
        if args.wrong_answer_cost < 0:
            ap.error("--wrong-answer-cost must be >= 0")
        value = spec.value.model_copy(update={"wrong_answer_cost": args.wrong_answer_cost})
        spec = spec.model_copy(update={"value": value})
    vsc = build_variant_scenario(spec)
    if args.controllers:
        names = [n.strip() for n in args.controllers.split(",") if n.strip()]
    else:
        names = list(VARIANT_CONTROLLERS)
    unknown = [n for n in names if n not in VARIANT_CONTROLLERS]
    if unknown:
        ap.error(
            f"unknown controller(s) {unknown} for a policy with variants; known: "
            f"{', '.join(VARIANT_CONTROLLERS)} ('single' = one single-<variant> per variant)"
        )
    costs: list[float] = []
    if args.cost_sweep and args.cost_sweep != "none":
        costs = [float(c) for c in args.cost_sweep.split(",") if c.strip()]
    elif args.plot and args.cost_sweep != "none":
        costs = list(SWEEP_COSTS)
    if costs and "single" not in names:
        names.append("single")  # the crossover needs the single variants' lines
    v = spec.value
    print(
        f"trace {trace_path} ({trace.note}; {len(trace)} requests over "
        f"{trace.duration_s / 60:.1f} min"
        f"{', rate x' + format(rate, 'g') if rate != 1.0 else ''}); policy {policy_path}; "
        f"variants {', '.join(f'{n} (quality {i.quality:g})' for n, i in vsc.variants.items())}; "
        f"budget {vsc.budget} GPUs; SLO TTFT {spec.slo.ttft} ITL {spec.slo.itl}; value: right "
        f"answer {v.right_answer:g}, wrong-answer cost {v.wrong_answer_cost:g}; interval "
        f"{vsc.interval_s:g}s; startup {vsc.startup_delay_s:g}s; seed {args.seed} (routing and "
        "correctness draws)"
    )
    if "goodput" in names:
        print(f"goodput: {GOODPUT_LABEL[GOODPUT_DRIVER]}")
    bar = ProgressBar(enabled=not args.quiet)
    wall0 = time.perf_counter()
    cmp = run_variant_benchmark(vsc, trace, names, seed=args.seed, progress=bar)
    sweep = None
    if costs:
        singles = {n: s.result for n, s in cmp.singles.items()}
        sweep = sweep_costs(
            vsc,
            trace,
            costs,
            singles,
            seed=args.seed,
            with_planner="goodput" in names,
            progress=bar,
        )
    bar.close()
    print(report.variant_table(cmp))
    summary = report.variant_summary(cmp, sweep, timeline=False)
    cx = summary["crossover_wrong_answer_cost"]
    if cx is not None:
        print(f"crossover: the single variants' value goodput lines cross at c = {cx:.3f}")
    print(f"hpa-fixed-split weights (capacity per GPU): {cmp.fixed_weights}")
    print(f"simulated {trace.duration_s / 60:.1f} min in {time.perf_counter() - wall0:.1f}s")
    if args.json_out:
        report.write_variant_json(cmp, args.json_out, sweep)
        print(f"wrote {args.json_out}")
    if args.plot:
        report.variant_plot(
            cmp,
            args.plot,
            sweep,
            title=f"{Path(policy_path).stem}: {Path(trace_path).name}, budget {vsc.budget} GPUs",
        )
        print(f"wrote {args.plot}")
    if args.requests_out:
        who = args.controller or next(iter(cmp.results))
        if who not in cmp.results:
            ap.error(f"--controller {who} is not among {', '.join(cmp.results)}")
        n = report.write_variant_requests(cmp.results[who], args.requests_out)
        print(f"wrote {args.requests_out} ({n} requests of {who})")
    over = [n for n, r in cmp.results.items() if r.peak_gpus > r.budget]
    if over:
        print(f"BUDGET EXCEEDED by: {', '.join(over)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
