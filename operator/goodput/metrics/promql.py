"""From a policy's ``metrics`` settings to the PromQL that reads each signal of each pool.

Pure string building (no I/O), so the exact queries can be unit-tested and shown to
a person (``goodput plan`` may print them).

- **Selectors**: ``spec.metrics.selectors[role]`` is a label-matcher list
  (``model_name="llama",pod=~"prefill-.*"``) inserted into every selector of that
  pool's queries. Braces around it are tolerated. A role without a selector reads
  every series of the preset's names.
- **Window**: ``spec.metrics.window`` is the range of every ``rate()``; it is passed
  to Prometheus in milliseconds so any duration the API accepts is valid PromQL.
- **Overrides**: ``spec.metrics.overrides`` maps ``<signal>`` (every pool) or
  ``<role>.<signal>`` (one pool, wins) to the user's own PromQL, in which
  ``$selector`` and ``$window`` are replaced by the pool's matchers and the window.
  A scalar signal's override must return one series; a ``ttft``/``itl`` override
  must return per-``le`` bucket rates (like ``sum by (le) (rate(x_bucket[5m]))``).
  The policy-wide key ``good_tokens_per_s`` is an exact good-token rate (tokens/s)
  that replaces the estimate's G; quality comes from ``spec.quality.query``.
- **Coverage** (issue 10): :func:`coverage_queries` ask, per windowed series name,
  how much of the rate window has samples (longest silence, present steps, the
  sample at the window start, sample count), for
  :func:`goodput.metrics.math.window_coverage` to tell a window that overlaps a gap.
- **Per pod** (drain-aware scale-down): :func:`per_pod_running_query` reads the
  preset's running-requests gauge ``sum by (pod)`` with each pod's newest sample time,
  so the actuator can mark the least busy pods before a pool shrinks. Not a signal: it
  is never missing, and its absence only means "do not mark".
- **Disaggregated pools**: with both a prefill and a decode pool, TTFT is read at the
  prefill pool and ITL at the decode pool (where each is produced); an aggregated
  pool, or a lone pool, reads both. An explicit ``<role>.ttft``/``<role>.itl``
  override reads that signal there anyway. Signals a pool need not export (see
  :func:`optional`) are ``None`` without being missing when absent; arrival rate and
  mean token counts are then copied from the sibling pool.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from goodput.api.spec import Metrics, PoolRole, parse_duration
from goodput.metrics.presets import (
    ARRIVAL_COUNTERS,
    PER_POD_RUNNING,
    POD_LABEL,
    PROMPT_TOKEN_HISTOGRAMS,
    CounterRate,
    FleetSignal,
    GaugeAgg,
    HistogramOf,
    RateRatio,
    Signal,
    Source,
    series_names,
    sources,
)
from goodput.observation import DISPERSION_SPAN_S

Kind = Literal["scalar", "ratio", "histogram"]
HISTOGRAM_SIGNALS = frozenset({Signal.ttft, Signal.itl})


@dataclass(frozen=True)
class Alternative:
    """One way to read a signal. ``queries`` keys by kind: scalar ``value``; ratio
    ``num``/``den``; histogram ``buckets``/``sum``/``count``."""

    kind: Kind
    queries: dict[str, str]
    series: tuple[str, ...] = ()  # raw series names whose freshness is checked
    description: str = ""
    # Raw series whose samples the rate() windows read, one per family (a histogram's
    # _count stands for its _bucket and _sum): their window coverage is checked.
    windowed: tuple[str, ...] = ()


@dataclass(frozen=True)
class SignalPlan:
    key: str  # "decode.itl", as listed in Observation.missing
    signal: Signal
    alternatives: tuple[Alternative, ...]
    override: bool = False
    optional: bool = False  # absent series here are not "missing" (see optional())
    # Computed over spec.metrics.window (rate()/increase()), so a gap in the data
    # inside the window makes it partial: preset rates and histograms, and overrides
    # that use $window.
    windowed: bool = False


@dataclass(frozen=True)
class PoolPlan:
    role: str
    selector: str
    signals: dict[Signal, SignalPlan]
    # Newest sample timestamp per raw series name (label "name"), in URL-sized chunks.
    freshness_queries: tuple[str, ...]
    # Running requests per pod (drain-aware scale-down), one query per gauge name of
    # the preset, first with series wins (see per_pod_running_query).
    per_pod_running: tuple[str, ...] = ()
    # Demand variability (not signals; first with series wins): per arrival counter,
    # its per-step count statistics (see dispersion_query); per prompt-token histogram,
    # (buckets, sum, count) over the window.
    dispersion: tuple[str, ...] = ()
    prompt_histogram: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True)
class QueryPlan:
    pools: dict[str, PoolPlan]
    fleet: dict[FleetSignal, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    window_ms: int = 60_000
    fleet_windowed: frozenset[FleetSignal] = frozenset()  # their PromQL uses $window

    @property
    def dispersion_step_s(self) -> float:
        """Seconds per step of the request counts behind ``arrival_dispersion``."""
        return dispersion_step_ms(self.window_ms) / 1000


def normalize_selector(text: str | None) -> str:
    s = (text or "").strip()
    if s.startswith("{") and s.endswith("}"):
        s = s[1:-1].strip()
    return s.rstrip(",").strip()


def window_literal(window: str) -> str:
    """A spec duration ("1m", "1.5m", "500ms") as a PromQL range literal."""
    return f"{round(parse_duration(window) * 1000)}ms"


def selector(metric: str, matchers: str) -> str:
    return f"{metric}{{{matchers}}}" if matchers else metric


def _rate(metric: str, matchers: str, window: str) -> str:
    return f"sum(rate({selector(metric, matchers)}[{window}]))"


def _family(name: str) -> str:
    """A histogram's ``_sum``/``_bucket`` series is scraped with its ``_count``."""
    for suffix in ("_sum", "_bucket"):
        if name.endswith(suffix):
            return name.removesuffix(suffix) + "_count"
    return name


def queries_for(source: Source, matchers: str, window: str) -> Alternative:
    """The PromQL of one preset source for one pool."""
    series = series_names(source)
    match source:
        case CounterRate(metric):
            qs = {"value": _rate(metric, matchers, window)}
            return Alternative("scalar", qs, series, metric, (metric,))
        case GaugeAgg(metric, agg):
            q = f"{agg}({selector(metric, matchers)})"
            return Alternative("scalar", {"value": q}, series, metric)
        case RateRatio(num, den):
            qs = {"num": _rate(num, matchers, window), "den": _rate(den, matchers, window)}
            windowed = tuple(dict.fromkeys((_family(num), _family(den))))
            return Alternative("ratio", qs, series, f"{num} / {den}", windowed)
        case HistogramOf(base):
            b = selector(f"{base}_bucket", matchers)
            qs = {
                "buckets": f"sum by (le) (rate({b}[{window}]))",
                "sum": _rate(f"{base}_sum", matchers, window),
                "count": _rate(f"{base}_count", matchers, window),
            }
            return Alternative("histogram", qs, series, base, (f"{base}_count",))


def freshness_query(series: list[str], matchers: str) -> str | None:
    """One query giving, per raw series name (label ``name``), the newest sample's
    timestamp: ``timestamp()`` must wrap the selector itself to see sample times, and
    drops the metric name, hence one labelled term per name joined with ``or``."""
    if not series:
        return None
    terms = [
        f'label_replace(max(timestamp({selector(s, matchers)})), "name", "{s}", "", "")'
        for s in series
    ]
    return " or ".join(terms)


#: Keep each freshness query short enough for a GET URL through proxies (~8 KiB
#: after URL encoding); prometheus-api-client sends the query in the URL.
MAX_QUERY_CHARS = 2500


def freshness_queries(
    series: list[str], matchers: str, max_chars: int = MAX_QUERY_CHARS
) -> tuple[str, ...]:
    """:func:`freshness_query` split into as few queries as fit ``max_chars`` each."""
    chunks: list[list[str]] = []
    for name in series:
        if chunks and len(freshness_query([*chunks[-1], name], matchers) or "") <= max_chars:
            chunks[-1].append(name)
        else:
            chunks.append([name])
    return tuple(q for c in chunks if (q := freshness_query(c, matchers)) is not None)


def coverage_step_ms(window_ms: int) -> int:
    """Resolution of the coverage subqueries: about ``COVERAGE_STEPS`` per window."""
    return max(MIN_COVERAGE_STEP_MS, window_ms // COVERAGE_STEPS)


#: Coverage steps per window, and the finest step (the queries stay cheap: each step
#: is one lookup of the newest sample of the pool's series of one name).
COVERAGE_STEPS = 60
MIN_COVERAGE_STEP_MS = 100


def _labelled(expr: str, stat: str, name: str | None = None) -> str:
    """``expr`` labelled ``coverage="<stat>/<name>"`` (metric names hold no ``/``)."""
    value = stat if name is None else f"{stat}/{name}"
    return f'label_replace({expr}, "coverage", "{value}", "", "")'


def coverage_terms(
    name: str, matchers: str, window_ms: int, step_ms: int, newest: float
) -> list[str]:
    """The figures :func:`goodput.metrics.math.window_coverage` needs for one series
    name over the rate window, labelled ``coverage="<figure>/<name>"``:

    - ``silence``: the largest age of the pool's newest sample of ``name`` at any
      coverage step before the newest sample (``newest``, its timestamp from the
      freshness query; ``age > time() - newest`` is ``timestamp < newest``): a gap
      while the series stayed in the lookback (Prometheus itself down, an exporter
      with explicit timestamps gone) shows up as age;
    - ``present``: the steps at which a series had a sample in the lookback that was
      not stale-marked (a target gone: staleness markers);
    - ``start``: the newest sample's timestamp at the window start (absent if none);
    - ``samples``: raw samples of the best-covered series in the window.
    """
    sel = selector(name, matchers)
    rng = f"[{window_ms}ms:{step_ms}ms]"
    newest_ts = f"max(timestamp({sel}))"
    silence = f"max_over_time((time() - {newest_ts} > time() - {newest:.3f}){rng})"
    return [
        _labelled(silence, "silence", name),
        _labelled(f"count_over_time({newest_ts}{rng})", "present", name),
        _labelled(f"max(timestamp({sel} offset {window_ms}ms))", "start", name),
        _labelled(f"max(count_over_time({sel}[{window_ms}ms]))", "samples", name),
    ]


def coverage_steps_term(window_ms: int, step_ms: int) -> str:
    """How many coverage steps the window holds (``coverage="steps"``)."""
    return _labelled(f"count_over_time(vector(1)[{window_ms}ms:{step_ms}ms])", "steps")


def coverage_queries(
    newest: dict[str, float],
    matchers: str,
    window_ms: int,
    max_chars: int = MAX_QUERY_CHARS,
) -> tuple[str, ...]:
    """Coverage of the rate window for every name in ``newest`` (series name -> its
    newest sample's timestamp), joined with ``or`` and split into queries of at most
    ``max_chars`` (one name's terms stay together); each query also carries the
    step count."""
    step_ms = coverage_step_ms(window_ms)
    head = coverage_steps_term(window_ms, step_ms)
    queries: list[str] = []
    current = head
    for name, ts in newest.items():
        terms = " or ".join(coverage_terms(name, matchers, window_ms, step_ms, ts))
        if current != head and len(current) + 4 + len(terms) > max_chars:
            queries.append(current)
            current = head
        current = f"{current} or {terms}"
    if current != head:
        queries.append(current)
    return tuple(queries)


def per_pod_running_query(metric: str, matchers: str, pod_label: str = POD_LABEL) -> str:
    """Running requests per pod and each pod's newest sample time, in one query:
    ``sum by (pod)`` labelled ``stat="running"`` and ``max by (pod) (timestamp(...))``
    labelled ``stat="newest"``, so a pod whose gauge went stale is told from a pod
    with nothing running (``0``)."""
    sel = selector(metric, matchers)
    running = f"sum by ({pod_label}) ({sel})"
    newest = f"max by ({pod_label}) (timestamp({sel}))"
    return (
        f'label_replace({running}, "stat", "running", "", "") or '
        f'label_replace({newest}, "stat", "newest", "", "")'
    )


def dispersion_step_ms(window_ms: int) -> int:
    """The step of the per-step request counts: a quarter of the rate window (the spec
    asks for at least four scrapes per window, so a step holds at least one scrape)."""
    return max(1000, window_ms // 4)


def dispersion_query(counter: str, matchers: str, window_ms: int) -> str:
    """Statistics of the pool's per-step request counts ``sum(increase(c[step]))`` over
    the last ``DISPERSION_SPAN_S``, labelled ``stat``: ``mean`` and ``var`` (population)
    and ``slope`` (``deriv``, per second) for
    :func:`goodput.metrics.math.dispersion_from_moments`, and ``steps`` (how many)."""
    step = dispersion_step_ms(window_ms)
    span = max(round(DISPERSION_SPAN_S * 1000), step)
    inner = f"sum(increase({selector(counter, matchers)}[{step}ms]))"
    rng = f"[{span}ms:{step}ms]"
    terms = {
        "mean": f"avg_over_time({inner}{rng})",
        "var": f"stdvar_over_time({inner}{rng})",
        "slope": f"deriv({inner}{rng})",
        "steps": f"count_over_time({inner}{rng})",
    }
    return " or ".join(
        f'label_replace({expr}, "stat", "{stat}", "", "")' for stat, expr in terms.items()
    )


def prompt_histogram_queries(base: str, matchers: str, window: str) -> tuple[str, str, str]:
    """(bucket rates by ``le``, ``_sum`` rate, ``_count`` rate) of a prompt-token histogram."""
    b = selector(f"{base}_bucket", matchers)
    return (
        f"sum by (le) (rate({b}[{window}]))",
        _rate(f"{base}_sum", matchers, window),
        _rate(f"{base}_count", matchers, window),
    )


def substitute(promql: str, matchers: str, window: str) -> str:
    return promql.replace("$selector", matchers).replace("$window", window)


def applicable(signal: Signal, role: str, roles: set[str]) -> bool:
    disaggregated = {PoolRole.prefill.value, PoolRole.decode.value} <= roles
    if not disaggregated:
        return True
    if signal is Signal.itl and role == PoolRole.prefill.value:
        return False
    return not (signal is Signal.ttft and role == PoolRole.decode.value)


# Disaggregated serving: what a pool may legitimately not export. A prefill instance
# may not count completions or generated tokens (the request completes at decode);
# a decode instance may not count prompt tokens or prefix-cache lookups (prefill did
# them). Real vLLM prefill instances do finish their 1-token requests, simulated ones
# need not; either way an absent series there is not a failure.
_OPTIONAL_WHEN_DISAGGREGATED = {
    PoolRole.prefill.value: frozenset(
        {Signal.arrival_rate_rps, Signal.mean_output_tokens, Signal.generation_tokens_per_s}
    ),
    PoolRole.decode.value: frozenset(
        {Signal.mean_input_tokens, Signal.prompt_tokens_per_s, Signal.prefix_cache_hit_rate}
    ),
}
#: Per-request quantities equal in both pools (the same requests pass through both):
#: when one pool does not export them, the source copies the sibling's value.
SHARED_BETWEEN_POOLS = frozenset(
    {Signal.arrival_rate_rps, Signal.mean_input_tokens, Signal.mean_output_tokens}
)


def optional(signal: Signal, role: str, roles: set[str]) -> bool:
    disaggregated = {PoolRole.prefill.value, PoolRole.decode.value} <= roles
    return disaggregated and signal in _OPTIONAL_WHEN_DISAGGREGATED.get(role, frozenset())


def override_errors(metrics: Metrics) -> list[str]:
    """Override keys that name no signal (for the operator's InvalidPolicy message)."""
    roles = {r.value for r in PoolRole}
    names = {s.value for s in Signal}
    fleet = {FleetSignal.good_tokens_per_s.value}
    errors = []
    for key in metrics.overrides:
        role, _, sig = key.rpartition(".")
        if (role and (role not in roles or sig not in names)) or (
            not role and sig not in names | fleet
        ):
            errors.append(
                f"metrics.overrides[{key!r}]: expected <signal> or <role>.<signal> with "
                f"signal in {sorted(names)} or one of {sorted(fleet)}"
            )
    return errors


def build_plan(metrics: Metrics, roles: list[str], quality_query: str | None = None) -> QueryPlan:
    """Every query one observation needs, for the given pool roles."""
    window = window_literal(metrics.window)
    role_set = set(roles)
    pools: dict[str, PoolPlan] = {}
    for role in roles:
        matchers = normalize_selector(metrics.selectors.get(role))
        signals: dict[Signal, SignalPlan] = {}
        fresh: list[str] = []
        for signal in Signal:
            key = f"{role}.{signal.value}"
            override = metrics.overrides.get(key)
            if override is None and applicable(signal, role, role_set):
                override = metrics.overrides.get(signal.value)
            if override is not None:
                q = substitute(override, matchers, window)
                kind: Kind = "histogram" if signal in HISTOGRAM_SIGNALS else "scalar"
                qs = {"buckets": q} if kind == "histogram" else {"value": q}
                alt = Alternative(kind, qs, (), f"override {q}")
                signals[signal] = SignalPlan(
                    key, signal, (alt,), override=True, windowed="$window" in override
                )
                continue
            preset_sources = sources(metrics.preset, signal)
            if not applicable(signal, role, role_set) or not preset_sources:
                continue
            alts = tuple(queries_for(s, matchers, window) for s in preset_sources)
            signals[signal] = SignalPlan(
                key,
                signal,
                alts,
                optional=optional(signal, role, role_set),
                windowed=any(a.windowed for a in alts),
            )
            for alt in alts:
                fresh.extend(n for n in alt.series if n not in fresh)
        per_pod = tuple(per_pod_running_query(m, matchers) for m in PER_POD_RUNNING[metrics.preset])
        window_ms = round(parse_duration(metrics.window) * 1000)
        pools[role] = PoolPlan(
            role,
            matchers,
            signals,
            freshness_queries(fresh, matchers),
            per_pod,
            dispersion=tuple(
                dispersion_query(c, matchers, window_ms) for c in ARRIVAL_COUNTERS[metrics.preset]
            ),
            prompt_histogram=tuple(
                prompt_histogram_queries(h, matchers, window)
                for h in PROMPT_TOKEN_HISTOGRAMS[metrics.preset]
            ),
        )
    fleet: dict[FleetSignal, str] = {}
    fleet_windowed: set[FleetSignal] = set()
    good = metrics.overrides.get(FleetSignal.good_tokens_per_s.value)
    for f, text in ((FleetSignal.quality, quality_query), (FleetSignal.good_tokens_per_s, good)):
        if text:
            fleet[f] = substitute(text, "", window)
            if "$window" in text:
                fleet_windowed.add(f)
    return QueryPlan(
        pools,
        fleet,
        tuple(override_errors(metrics)),
        round(parse_duration(metrics.window) * 1000),
        frozenset(fleet_windowed),
    )
