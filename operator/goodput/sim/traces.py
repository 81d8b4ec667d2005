"""Request traces for the twin: readers for the public traces we replay, plus a
rate-curve synthesiser for daily cycles (ServeGen publishes rates, not requests).

Every trace becomes one `Trace`: arrival seconds from 0, input and output tokens,
and optional 512-token prefix-block hashes (Mooncake only; Azure has none, so no
prefix hits are possible there).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Trace:
    name: str
    arrival_s: FloatArray
    input_tokens: IntArray
    output_tokens: IntArray
    hash_ids: Sequence[tuple[int, ...]] | None = None
    note: str = ""
    meta: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.arrival_s)
        if len(self.input_tokens) != n or len(self.output_tokens) != n:
            raise ValueError("arrival, input and output arrays differ in length")
        if self.hash_ids is not None and len(self.hash_ids) != n:
            raise ValueError("hash_ids length differs from the request count")
        if n and np.any(np.diff(self.arrival_s) < 0):
            raise ValueError("arrivals must be sorted")

    def __len__(self) -> int:
        return len(self.arrival_s)

    @property
    def duration_s(self) -> float:
        return float(self.arrival_s[-1]) if len(self) else 0.0

    def window(self, start_s: float, end_s: float, rebase: bool = True) -> Trace:
        """Requests arriving in [start_s, end_s), optionally shifted to start at 0."""
        lo = int(np.searchsorted(self.arrival_s, start_s, side="left"))
        hi = int(np.searchsorted(self.arrival_s, end_s, side="left"))
        arr = self.arrival_s[lo:hi] - (start_s if rebase else 0.0)
        hashes = None if self.hash_ids is None else list(self.hash_ids[lo:hi])
        return Trace(
            name=self.name,
            arrival_s=arr,
            input_tokens=self.input_tokens[lo:hi],
            output_tokens=self.output_tokens[lo:hi],
            hash_ids=hashes,
            note=f"{self.note} [{start_s:g}s, {end_s:g}s)".strip(),
            meta=dict(self.meta),
        )

    def scaled(self, rate_factor: float) -> Trace:
        """Same requests, arrivals compressed by `rate_factor` (2 = twice the rate)."""
        if rate_factor <= 0:
            raise ValueError("rate_factor must be > 0")
        return Trace(
            name=self.name,
            arrival_s=self.arrival_s / rate_factor,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            hash_ids=self.hash_ids,
            note=f"{self.note} x{rate_factor:g} rate".strip(),
            meta=dict(self.meta),
        )


def _parse_azure_time(text: str) -> float:
    # "2023-11-16 18:15:46.6805900": 7 fractional digits, more than %f accepts.
    head, _, frac = text.strip().partition(".")
    base = datetime.strptime(head, "%Y-%m-%d %H:%M:%S").timestamp()
    return base + (float("0." + frac) if frac else 0.0)


def read_azure(path: str | Path, name: str | None = None) -> Trace:
    """Azure LLM inference trace 2023/2024 CSV: TIMESTAMP,ContextTokens,GeneratedTokens."""
    p = Path(path)
    ts: list[float] = []
    ins: list[int] = []
    outs: list[int] = []
    with p.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"TIMESTAMP", "ContextTokens", "GeneratedTokens"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{p}: not an Azure trace, missing columns {sorted(missing)}")
        for row in reader:
            ts.append(_parse_azure_time(row["TIMESTAMP"]))
            ins.append(int(row["ContextTokens"]))
            outs.append(int(row["GeneratedTokens"]))
    return _build(name or p.stem, ts, ins, outs, None, note=f"azure:{p.name}")


def read_mooncake(path: str | Path, name: str | None = None) -> Trace:
    """Mooncake FAST'25 JSONL: timestamp (ms), input_length, output_length, hash_ids."""
    p = Path(path)
    ts: list[float] = []
    ins: list[int] = []
    outs: list[int] = []
    hashes: list[tuple[int, ...]] = []
    with p.open() as f:
        for line in f:
            if not line.strip():
                continue
            rec = json.loads(line)
            ts.append(float(rec["timestamp"]) / 1000.0)
            ins.append(int(rec["input_length"]))
            outs.append(int(rec["output_length"]))
            hashes.append(tuple(int(h) for h in rec.get("hash_ids", ())))
    return _build(name or p.stem, ts, ins, outs, hashes, note=f"mooncake:{p.name}")


def _build(
    name: str,
    ts: list[float],
    ins: list[int],
    outs: list[int],
    hashes: list[tuple[int, ...]] | None,
    note: str,
) -> Trace:
    t = np.asarray(ts, dtype=np.float64)
    order = np.argsort(t, kind="stable")
    t = t[order]
    if len(t):
        t = t - t[0]
    hs = None if hashes is None else [hashes[i] for i in order]
    return Trace(
        name=name,
        arrival_s=t,
        input_tokens=np.asarray(ins, dtype=np.int64)[order],
        output_tokens=np.maximum(1, np.asarray(outs, dtype=np.int64)[order]),
        hash_ids=hs,
        note=note,
    )


def read_trace(path: str | Path) -> Trace:
    """Dispatch on the file format: .jsonl is Mooncake, .csv is Azure."""
    p = Path(path)
    if p.suffix == ".jsonl":
        return read_mooncake(p)
    if p.suffix == ".csv":
        with p.open() as f:
            header = f.readline()
        if "TIMESTAMP" in header:
            return read_azure(p)
        raise ValueError(
            f"{p}: CSV is not an Azure trace (rate curves need `synthesize_from_rates`)"
        )
    raise ValueError(f"{p}: unknown trace format (expected .csv or .jsonl)")


def read_rate_curve(path: str | Path) -> tuple[FloatArray, FloatArray]:
    """ServeGen aggregate CSV (window_start_s,total_rate_rps,...) -> (starts, rates).

    Zero-rate windows are collection gaps (traces README), so they take the
    previous window's rate instead of being read as idle time."""
    starts: list[float] = []
    rates: list[float] = []
    with Path(path).open(newline="") as f:
        for row in csv.DictReader(f):
            starts.append(float(row["window_start_s"]))
            rates.append(float(row["total_rate_rps"]))
    s = np.asarray(starts)
    r = np.asarray(rates)
    for i in range(len(r)):
        if r[i] <= 0 and i > 0:
            r[i] = r[i - 1]
    return s, r


def synthesize_from_rates(
    starts_s: FloatArray,
    rates_rps: FloatArray,
    lengths_from: Trace,
    *,
    seed: int,
    compress: float = 24.0,
    mean_rps: float | None = None,
    span_s: tuple[float, float] | None = None,
    name: str = "servegen",
) -> Trace:
    """Non-homogeneous Poisson arrivals following a rate curve, compressed in time by
    `compress` (a day in an hour at 24) and rescaled to `mean_rps`, with (input, output)
    pairs drawn jointly from another trace. Deterministic for a given seed."""
    rng = np.random.default_rng(seed)
    width = float(np.median(np.diff(starts_s))) if len(starts_s) > 1 else 600.0
    lo, hi = span_s if span_s is not None else (float(starts_s[0]), float(starts_s[-1]) + width)
    sel = (starts_s >= lo) & (starts_s < hi)
    s = starts_s[sel] - lo
    r = rates_rps[sel].astype(np.float64)
    if not len(s):
        raise ValueError("the requested span holds no rate windows")
    # Default: the same number of requests per window, in 1/compress of the time.
    r = r * (mean_rps / float(np.mean(r)) if mean_rps is not None else compress)
    arrivals: list[FloatArray] = []
    w = width / compress
    for start, rate in zip(s / compress, r, strict=True):
        n = int(rng.poisson(rate * w))
        arrivals.append(np.sort(start + rng.random(n) * w))
    t = np.concatenate(arrivals) if arrivals else np.zeros(0)
    pick = rng.integers(0, len(lengths_from), size=len(t))
    return Trace(
        name=name,
        arrival_s=t,
        input_tokens=lengths_from.input_tokens[pick],
        output_tokens=lengths_from.output_tokens[pick],
        hash_ids=None,
        note=(
            f"rate curve x1/{compress:g} time, lengths from {lengths_from.name}, seed {seed}"
            + (f", mean {mean_rps:g} rps" if mean_rps is not None else "")
        ),
    )
