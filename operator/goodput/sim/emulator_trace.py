"""The emulator's arrivals: a real daily cycle with a peak, compressed to minutes.

ServeGen's per-10-minute aggregate rate of the m-small language model (Alibaba Bailian,
arXiv:2505.09999; shared/data/traces/servegen) from 08:00 of day 1 to 08:00 of day 2
(hourly means): the day at 800-1,170 req/s, the evening peak at 19:00-22:00 (1,422,
1,724, 1,683), then the fall into the night trough (406 at 04:00, a quarter of the
peak) and the morning rise again (555 at 07:00). The 24 hours are
compressed into ``minutes`` of wall clock and rescaled to ``mean_rps``; each request's
(input, output) tokens are a pair drawn from the Azure 2023 conversation trace
(Splitwise, CC-BY-4.0). A shorter span (``start_hour``, ``hours``) at the same
compression replays the same rates at the same hours. Read from the shared data
(``GOODPUT_SHARED_DATA`` or ``<repository>/../shared/data``); refused when missing,
never replaced by a made-up curve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from goodput.profiles.shared_data import require_shared_data
from goodput.sim.traces import Trace, read_azure, read_rate_curve, synthesize_from_rates

CURVE = "servegen_language_m-small_rate_10min.csv"
LENGTHS = "azure2023_conv.csv"
DAY_S = 86400.0
START_HOUR = 8.0


@dataclass(frozen=True)
class PeakTrace:
    trace: Trace
    compress: float  # trace seconds per wall second
    start_hour: float

    def hour_at(self, t: float) -> float:
        """The hour of the ServeGen day that wall second ``t`` of the run replays."""
        return (self.start_hour + t * self.compress / 3600.0) % 24.0

    def t_of_hour(self, hour: float) -> float:
        """The run's second at which the replay reaches ``hour`` (after the start)."""
        return ((hour - self.start_hour) % 24.0) * 3600.0 / self.compress


def servegen_peak(
    minutes: float,
    mean_rps: float,
    seed: int = 7,
    start_hour: float = START_HOUR,
    hours: float = 24.0,
) -> PeakTrace:
    """``hours`` of the day from ``start_hour`` in ``minutes`` of wall clock. Rates are
    scaled so that the whole day (from 08:00) would average ``mean_rps``, whatever the
    span: a shorter span at the same compression replays the same rates at the same
    hours (the short form of the e2e test)."""
    root = require_shared_data("traces")
    starts, rates = read_rate_curve(root / "servegen" / CURVE)
    lengths = read_azure(root / LENGTHS)
    compress = hours * 3600.0 / (minutes * 60.0)
    day0 = START_HOUR * 3600.0
    day = (starts >= day0) & (starts < day0 + DAY_S)
    lo = start_hour * 3600.0 + (DAY_S if start_hour < START_HOUR else 0.0)
    span = (starts >= lo) & (starts < lo + hours * 3600.0)
    span_rps = mean_rps * float(np.mean(rates[span])) / float(np.mean(rates[day]))
    trace = synthesize_from_rates(
        starts,
        rates,
        lengths,
        seed=seed,
        compress=compress,
        mean_rps=span_rps,
        span_s=(lo, lo + hours * 3600.0),
        name=f"servegen-m-small-{start_hour:g}h+{hours:g}h-in-{minutes:g}min",
    )
    return PeakTrace(trace, compress, start_hour)


def rate_series(trace: Trace, bin_s: float, end_s: float) -> tuple[np.ndarray, np.ndarray]:
    """(bin starts, arrivals per second in each bin) up to ``end_s``."""
    edges = np.arange(0.0, end_s + bin_s, bin_s)
    counts, _ = np.histogram(trace.arrival_s, bins=edges)
    return edges[:-1], counts / bin_s
