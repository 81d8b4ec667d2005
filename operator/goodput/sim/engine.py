"""The digital twin's discrete-event core: one fleet of prefill, decode or aggregated
replicas replaying one trace.

Speed comes from never simulating a decode token as an event. A decode replica's
batch only changes when a request joins or leaves, and between those moments every
step costs `a + b*n + c*context`, with context growing by n per step, so the time of
k steps is an arithmetic series in closed form. A replica therefore has one pending
event (its next completion); a request that arrives mid-step joins at the next step
boundary, found by inverting that series.

Modelling choices (stated, not hidden):
- prefill batches take requests FIFO up to `max_prefill_tokens` of *uncached* prompt;
- the first token is produced by prefill and reaches the client after the KV transfer
  (input tokens x kv_bytes_per_token over `kv_link_bytes_per_s`, 50 GB/s by default,
  no link contention); the decode pool produces the remaining out-1 tokens;
- a decode replica admits a request when its KV reservation (input + output tokens)
  fits in `kv_capacity_tokens` and the batch is below `max_batch`; otherwise the
  request waits (FIFO) and that wait shows up in its ITL;
- aggregated replicas give prefill priority (vLLM's default without chunked prefill):
  a prefill batch pauses decoding at the next step boundary;
- KV tiers are LRU caches over 512-token prefix blocks shared by the pool; a hit
  removes prefill work and costs its load time at the tier's bandwidth;
- a scale-down cancels a starting replica first (a ReplicaSet removes not-ready pods
  first), else takes a serving one out by ``TwinConfig.scale_down_choice``:
  ``fewest-running`` (the default: what pod-deletion-cost marks from the operator's
  drain-aware scale-down ask for) or ``newest`` (a ReplicaSet without the annotation:
  the most recently ready pod). The victim drains (finishes its requests, as a pod
  whose preStop waits for them); the requests it had in flight at that instant, those
  a pod without such a drain would lose, are counted in ``Twin.inflight_lost`` and
  ``Twin.removals``.
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from goodput.profiles import PerformanceProfile
from goodput.sim.traces import Trace

PREFILL = "prefill"
DECODE = "decode"
AGGREGATED = "aggregated"

STARTING, SERVING, DRAINING, GONE = 0, 1, 2, 3

#: Which serving replica a scale-down removes (see the module doc).
FEWEST_RUNNING, NEWEST = "fewest-running", "newest"
SCALE_DOWN_CHOICES = (FEWEST_RUNNING, NEWEST)

_EV_READY, _EV_PREFILL_DONE, _EV_DECODE_ARRIVE, _EV_DECODE_STEP = 0, 1, 2, 3


@dataclass(frozen=True)
class PoolSpec:
    role: str
    profile: PerformanceProfile
    quality: float = 1.0


@dataclass(frozen=True)
class TierSpec:
    name: str
    capacity_tokens_per_replica: int
    bandwidth_bytes_per_s: float


@dataclass(frozen=True)
class TwinConfig:
    pools: dict[str, PoolSpec]
    ttft_slo_s: float
    itl_slo_s: float
    tiers: tuple[TierSpec, ...] = ()
    kv_link_bytes_per_s: float = 50e9
    block_tokens: int = 512
    scale_down_choice: str = FEWEST_RUNNING  # FEWEST_RUNNING | NEWEST

    def __post_init__(self) -> None:
        roles = set(self.pools)
        if roles not in ({PREFILL, DECODE}, {AGGREGATED}):
            raise ValueError(f"pools must be prefill+decode or aggregated, got {sorted(roles)}")
        if self.scale_down_choice not in SCALE_DOWN_CHOICES:
            raise ValueError(
                f"scale_down_choice must be one of {SCALE_DOWN_CHOICES}, "
                f"got {self.scale_down_choice!r}"
            )

    @property
    def disaggregated(self) -> bool:
        return AGGREGATED not in self.pools


class Replica:
    __slots__ = (
        "busy_s",
        "gpus",
        "id",
        "n",
        "prefill_batch",
        "prefilling",
        "profile",
        "ready_at",
        "reserved",
        "role",
        "running",
        "state",
        "step",
        "sum_in",
        "sum_join",
        "t_step",
        "version",
    )

    def __init__(self, rid: int, role: str, profile: PerformanceProfile, ready_at: float) -> None:
        self.id = rid
        self.role = role
        self.profile = profile
        self.gpus = profile.gpus_per_replica
        self.state = STARTING
        self.ready_at = ready_at
        self.version = 0
        self.busy_s = 0.0
        # prefill side
        self.prefilling = False
        self.prefill_batch: list[int] = []
        # decode side: step counter S at the last boundary, its time, and aggregates
        self.running: list[tuple[int, int]] = []  # heap of (finish_step, request)
        self.n = 0
        self.step = 0
        self.t_step = ready_at
        self.sum_in = 0
        self.sum_join = 0
        self.reserved = 0

    def idle(self) -> bool:
        return not self.prefilling and self.n == 0

    def running_requests(self) -> int:
        """Requests in flight here: its prefill batch and its decode batch (vLLM's
        ``num_requests_running``)."""
        return self.n + len(self.prefill_batch)

    def clone(self) -> Replica:
        r = Replica.__new__(Replica)
        for name in Replica.__slots__:
            setattr(r, name, getattr(self, name))
        r.running = list(self.running)
        r.prefill_batch = list(self.prefill_batch)
        return r


@dataclass(frozen=True)
class Removal:
    """One serving replica taken out of service by a scale-down."""

    t: float
    role: str
    replica: int
    inflight: int  # requests it was running (prefill batch + decode batch) at that instant


@dataclass
class Counters:
    """Cumulative counters the harness differences into per-interval observations."""

    prompt_tokens: float = 0.0
    cached_tokens: float = 0.0
    generated_tokens: float = 0.0
    prefill_busy_s: float = 0.0
    completed: list[int] = field(default_factory=list)
    prefilled: list[int] = field(default_factory=list)


class Twin:
    """One fleet replaying one trace. Scaling is driven from outside (the harness)."""

    def __init__(
        self,
        cfg: TwinConfig,
        trace: Trace,
        on_release: Callable[[float], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.trace = trace
        self.on_release = on_release
        n = len(trace)
        self.arrival = trace.arrival_s.tolist()
        self.n_in = trace.input_tokens.tolist()
        self.n_out = trace.output_tokens.tolist()
        self.hashes: Sequence[tuple[int, ...]] | None = trace.hash_ids
        nan = math.nan
        self.first_token = [nan] * n
        self.finish = [nan] * n
        self.cached = [0] * n
        self.served_by = [-1] * n
        self.prefilled_by = [-1] * n
        self.join_step = [0] * n
        self.replicas: list[Replica] = []
        self.events: list[tuple[float, int, int, int, int]] = []
        self._seq = 0
        self._next_arrival = 0
        self.now = 0.0
        self.prefill_q: deque[int] = deque()
        self.decode_q: deque[int] = deque()
        self.counters = Counters()
        self.removals: list[Removal] = []  # serving replicas removed, in order
        self.tier_replicas: dict[str, int] = {t.name: 0 for t in cfg.tiers}
        # Only one KV geometry per fleet: the decode (or aggregated) pool's model.
        self._serve_role = DECODE if cfg.disaggregated else AGGREGATED
        self._first_role = PREFILL if cfg.disaggregated else AGGREGATED
        kvb = cfg.pools[self._first_role].profile.kv_bytes_per_token
        # Tier 0 of a disaggregated fleet is the prefill pool's own HBM (vLLM's automatic
        # prefix cache; the pool acts as one cache under prefix-aware routing); hits there
        # load nothing. Configured tiers follow, fastest first.
        self._hbm = 1 if cfg.disaggregated else 0
        n_tiers = self._hbm + len(cfg.tiers)
        self._tiers: list[OrderedDict[int, None]] = [OrderedDict() for _ in range(n_tiers)]
        self._tier_cap_blocks: list[int] = [0] * n_tiers
        self._tier_block_s: list[float] = [0.0] * self._hbm
        for t in cfg.tiers:
            self._tier_block_s.append(cfg.block_tokens * kvb / t.bandwidth_bytes_per_s)

    def fork(self) -> Twin:
        """An independent copy of the fleet at this instant (for what-if evaluation:
        the oracle scores candidate allocations from the real state, backlog included).
        The trace and configuration are shared; `on_release` is not copied."""
        f = Twin.__new__(Twin)
        f.__dict__.update(self.__dict__)
        f.on_release = None
        f.first_token = list(self.first_token)
        f.finish = list(self.finish)
        f.cached = list(self.cached)
        f.served_by = list(self.served_by)
        f.prefilled_by = list(self.prefilled_by)
        f.join_step = list(self.join_step)
        f.replicas = [r.clone() for r in self.replicas]
        f.events = list(self.events)
        f.prefill_q = deque(self.prefill_q)
        f.decode_q = deque(self.decode_q)
        c = self.counters
        f.counters = Counters(
            c.prompt_tokens,
            c.cached_tokens,
            c.generated_tokens,
            c.prefill_busy_s,
            list(c.completed),
            list(c.prefilled),
        )
        f.removals = list(self.removals)
        f.tier_replicas = dict(self.tier_replicas)
        f._tiers = [OrderedDict(t) for t in self._tiers]
        f._tier_cap_blocks = list(self._tier_cap_blocks)
        return f

    def stop_arrivals(self) -> None:
        """No further requests arrive (what-if runs end their horizon this way)."""
        self._next_arrival = len(self.arrival)

    # ------------------------------------------------------------------ scaling API

    def add_replica(self, role: str, now: float, startup_delay_s: float) -> int:
        spec = self.cfg.pools[role]
        rep = Replica(len(self.replicas), role, spec.profile, now + startup_delay_s)
        self.replicas.append(rep)
        if startup_delay_s <= 0:
            self._make_ready(rep, now)
        else:
            self._push(now + startup_delay_s, _EV_READY, rep.id, 0)
        return rep.id

    def remove_replica(self, role: str, now: float) -> bool:
        """Take one replica out of service: a starting one is cancelled, else a serving
        one chosen by ``cfg.scale_down_choice`` drains (finishes its work, takes none)
        and frees its GPUs when empty; its in-flight requests are counted."""
        starting = [r for r in self.replicas if r.role == role and r.state == STARTING]
        if starting:
            victim = max(starting, key=lambda r: r.ready_at)
            victim.state = GONE
            self._released(now)
            return True
        serving = [r for r in self.replicas if r.role == role and r.state == SERVING]
        if not serving:
            return False
        if self.cfg.scale_down_choice == NEWEST:
            victim = max(serving, key=lambda r: (r.ready_at, r.id))
        else:
            victim = min(serving, key=lambda r: (r.running_requests(), -r.id))
        self.removals.append(Removal(now, role, victim.id, victim.running_requests()))
        victim.state = DRAINING
        if role == PREFILL:
            self._resize_hbm_cache()
        if victim.idle():
            victim.state = GONE
            self._released(now)
        return True

    def drain_replica(self, rid: int, now: float) -> int:
        """Take this one replica out of service (the fleet emulator: its pod is being
        deleted, so the choice was the cluster's, not ``scale_down_choice``'s). A starting
        replica is gone at once; a serving one drains as in ``remove_replica``. Returns
        the requests it was running at that instant (0 when it was not serving)."""
        rep = self.replicas[rid]
        if rep.state == STARTING:
            rep.state = GONE
            self._released(now)
            return 0
        if rep.state != SERVING:
            return 0
        inflight = rep.running_requests()
        self.removals.append(Removal(now, rep.role, rid, inflight))
        rep.state = DRAINING
        if rep.role == PREFILL:
            self._resize_hbm_cache()
        if rep.idle():
            rep.state = GONE
            rep.version += 1
            self._released(now)
        return inflight

    def kill_replica(self, rid: int, now: float) -> list[int]:
        """The replica's process ends now (its pod was deleted before it drained): the
        requests still running on it (its prefill batch, its decode batch) never finish
        and are returned; they stay unfinished in the outcomes (lost). Events up to
        ``now`` must have been run first, so what finished before ``now`` is kept."""
        rep = self.replicas[rid]
        if rep.state == GONE:
            return []
        was = rep.state
        lost = list(rep.prefill_batch) + [i for _, i in rep.running]
        rep.prefill_batch = []
        rep.prefilling = False
        rep.running = []
        rep.n = rep.sum_in = rep.sum_join = rep.reserved = 0
        rep.state = GONE
        rep.version += 1  # cancels its pending prefill-done or decode-step event
        if was == SERVING:
            self.removals.append(Removal(now, rep.role, rid, len(lost)))
        if rep.role == PREFILL:
            self._resize_hbm_cache()
        self._released(now)
        return lost

    def set_tier_replicas(self, name: str, replicas: int) -> None:
        for i, t in enumerate(self.cfg.tiers):
            if t.name == name:
                self.tier_replicas[name] = replicas
                self._tier_cap_blocks[self._hbm + i] = (
                    replicas * t.capacity_tokens_per_replica // self.cfg.block_tokens
                )
                self._evict(self._hbm + i)

    def _resize_hbm_cache(self) -> None:
        if not self._hbm:
            return
        serving = [r for r in self.replicas if r.role == PREFILL and r.state == SERVING]
        tokens = sum(r.profile.kv_capacity_tokens for r in serving)
        self._tier_cap_blocks[0] = tokens // self.cfg.block_tokens
        self._evict(0)

    def count(self, role: str, states: tuple[int, ...]) -> int:
        return sum(1 for r in self.replicas if r.role == role and r.state in states)

    def gpus_held(self) -> int:
        return sum(r.gpus for r in self.replicas if r.state != GONE)

    def active(self, role: str) -> list[Replica]:
        return [r for r in self.replicas if r.role == role and r.state in (SERVING, DRAINING)]

    # ------------------------------------------------------------------ main loop

    def run_until(self, t_end: float) -> None:
        """Process every event (and arrival) with time <= t_end."""
        ev = self.events
        arr = self.arrival
        n_req = len(arr)
        while True:
            na = arr[self._next_arrival] if self._next_arrival < n_req else math.inf
            te = ev[0][0] if ev else math.inf
            if na <= te:
                if na > t_end:
                    break
                self.now = na
                self._on_arrival(self._next_arrival, na)
                self._next_arrival += 1
                continue
            if te > t_end:
                break
            t, _, kind, a, b = heapq.heappop(ev)
            self.now = t
            if kind == _EV_DECODE_STEP:
                self._on_decode_step(self.replicas[a], b, t)
            elif kind == _EV_DECODE_ARRIVE:
                self._on_decode_arrive(a, t)
            elif kind == _EV_PREFILL_DONE:
                self._on_prefill_done(self.replicas[a], b, t)
            else:
                self._make_ready(self.replicas[a], t)
        self.now = max(self.now, t_end)

    def pending(self) -> bool:
        return bool(self.events) or self._next_arrival < len(self.arrival)

    @property
    def inflight_lost(self) -> int:
        """Requests in flight on the serving replicas scale-downs removed: lost unless
        the pods drain them (preStop), finished here (the twin drains)."""
        return sum(r.inflight for r in self.removals)

    def in_flight(self) -> int:
        return sum(1 for f in self.finish if math.isnan(f)) - (
            len(self.arrival) - self._next_arrival
        )

    # ------------------------------------------------------------------ internals

    def _push(self, t: float, kind: int, a: int, b: int) -> None:
        self._seq += 1
        heapq.heappush(self.events, (t, self._seq, kind, a, b))

    def _released(self, now: float) -> None:
        if self.on_release is not None:
            self.on_release(now)

    def _make_ready(self, rep: Replica, now: float) -> None:
        if rep.state != STARTING:
            return
        rep.state = SERVING
        rep.t_step = now
        if rep.role == PREFILL:
            self._resize_hbm_cache()
        if rep.role == DECODE:
            self._admit_decode_queue(rep, now)
        else:
            self._try_prefill(rep, now)

    def _on_arrival(self, i: int, now: float) -> None:
        self.prefill_q.append(i)
        role = self._first_role
        idle = [
            r for r in self.replicas if r.role == role and r.state == SERVING and not r.prefilling
        ]
        if role == PREFILL:
            if idle:
                self._try_prefill(idle[0], now)
            return
        # aggregated: the least-loaded replica that can take the prompt pauses decoding
        for r in sorted(idle, key=lambda r: r.reserved):
            self._try_prefill(r, now)
            if r.prefilling or not self.prefill_q:
                return

    # ---- prefix cache

    def _lookup(self, i: int) -> tuple[int, float]:
        if self.hashes is None or not self._tiers:
            return 0, 0.0
        hit = 0
        load = 0.0
        tiers = self._tiers
        for h in self.hashes[i]:
            for k, tier in enumerate(tiers):
                if h in tier:
                    hit += 1
                    load += self._tier_block_s[k]
                    break
            else:
                break
        tokens = min(hit * self.cfg.block_tokens, self.n_in[i])
        return tokens, load

    def _insert(self, i: int) -> None:
        if self.hashes is None or not self._tiers:
            return
        target = next((k for k, c in enumerate(self._tier_cap_blocks) if c > 0), None)
        if target is None:
            return
        for h in self.hashes[i]:
            for k, tier in enumerate(self._tiers):
                if k != target and h in tier:
                    del tier[h]
            t0 = self._tiers[target]
            if h in t0:
                t0.move_to_end(h)
            else:
                t0[h] = None
        self._evict(target)

    def _evict(self, k: int) -> None:
        tiers = self._tiers
        while k < len(tiers):
            cap = self._tier_cap_blocks[k]
            tier = tiers[k]
            spill: list[int] = []
            while len(tier) > cap:
                h, _ = tier.popitem(last=False)
                spill.append(h)
            nxt = k + 1
            while nxt < len(tiers) and self._tier_cap_blocks[nxt] == 0:
                nxt += 1
            if nxt >= len(tiers) or not spill:
                return
            for h in spill:
                tiers[nxt][h] = None
            k = nxt

    # ---- prefill

    def _try_prefill(self, rep: Replica, now: float) -> None:
        """Start a prefill batch on `rep` if it can take one."""
        if rep.state != SERVING or rep.prefilling or not self.prefill_q:
            return
        prof = rep.profile
        agg = rep.role == AGGREGATED
        if agg:
            self._advance(rep, now)
            if rep.state != SERVING:
                return
        start = max(now, rep.t_step) if agg else now
        budget = prof.max_prefill_tokens
        tot = 0
        sq = 0.0
        load = 0.0
        batch: list[int] = []
        q = self.prefill_q
        reserved = rep.reserved
        n_run = rep.n
        while q:
            i = q[0]
            hit, ld = self._lookup(i)
            u = max(1, self.n_in[i] - hit)
            if batch and tot + u > budget:
                break
            if agg:
                need = self.n_in[i] + self.n_out[i]
                if (batch or n_run) and (
                    reserved + need > prof.kv_capacity_tokens
                    or n_run + len(batch) >= prof.max_batch
                ):
                    break
                reserved += need
            q.popleft()
            batch.append(i)
            self.prefilled_by[i] = rep.id
            self.cached[i] = self.n_in[i] - u if hit else 0
            tot += u
            sq += float(u) * u
            load += ld
        if not batch:
            if agg:
                self._schedule(rep)  # _advance cancelled the pending decode event
            return
        dur = prof.prefill_seconds(tot, sq, len(batch)) + load
        rep.prefilling = True
        rep.prefill_batch = batch
        rep.version += 1  # cancels a pending decode event of an aggregated replica
        if agg:
            rep.reserved = reserved
        rep.busy_s += dur
        c = self.counters
        c.prompt_tokens += tot
        c.cached_tokens += sum(self.cached[i] for i in batch)
        c.prefill_busy_s += dur
        self._push(start + dur, _EV_PREFILL_DONE, rep.id, rep.version)

    def _on_prefill_done(self, rep: Replica, version: int, now: float) -> None:
        if version != rep.version:
            return
        batch = rep.prefill_batch
        rep.prefill_batch = []
        rep.prefilling = False
        c = self.counters
        for i in batch:
            self._insert(i)
            c.prefilled.append(i)
        if rep.role == PREFILL:
            link = self.cfg.kv_link_bytes_per_s
            kvb = rep.profile.kv_bytes_per_token
            for i in batch:
                t1 = now + self.n_in[i] * kvb / link
                self.first_token[i] = t1
                c.generated_tokens += 1
                if self.n_out[i] <= 1:
                    self.finish[i] = t1
                    self.served_by[i] = rep.id
                    c.completed.append(i)
                else:
                    self._push(t1, _EV_DECODE_ARRIVE, i, 0)
            if rep.state == DRAINING:
                rep.state = GONE
                self._released(now)
                return
            self._try_prefill(rep, now)
            return
        # aggregated: prefilled requests join the decode batch at this boundary
        rep.t_step = now
        for i in batch:
            self.first_token[i] = now
            self.served_by[i] = rep.id
            c.generated_tokens += 1
            if self.n_out[i] <= 1:
                self.finish[i] = now
                rep.reserved -= self.n_in[i] + self.n_out[i]
                c.completed.append(i)
            else:
                self._join(rep, i)
        if rep.state == SERVING and self.prefill_q:
            self._try_prefill(rep, now)
            if rep.prefilling:
                return
        self._schedule(rep)
        self._maybe_release(rep, now)

    # ---- decode

    def _series(self, rep: Replica) -> tuple[float, float]:
        """(alpha, beta) with time(k steps) = alpha*k + beta*k^2 from the last boundary."""
        p = rep.profile
        n = rep.n
        a_step = (
            p.decode_base_s
            + p.decode_per_seq_s * n
            + p.decode_per_ctx_token_s * (rep.sum_in - rep.sum_join + n * rep.step)
        )
        beta = p.decode_per_ctx_token_s * n / 2.0
        return a_step - beta, beta

    def _advance(self, rep: Replica, now: float) -> None:
        """Bring a decode batch to its first step boundary at or after `now`."""
        if rep.n == 0:
            if rep.t_step < now:
                rep.t_step = now
            return
        if rep.prefilling:
            return
        elapsed = now - rep.t_step
        if elapsed <= 0:
            return
        alpha, beta = self._series(rep)
        if beta > 0:
            k = int((-alpha + math.sqrt(alpha * alpha + 4 * beta * elapsed)) / (2 * beta))
        else:
            k = int(elapsed / alpha)
        while k > 0 and alpha * k + beta * k * k > elapsed:
            k -= 1
        while alpha * (k + 1) + beta * (k + 1) ** 2 <= elapsed:
            k += 1
        if alpha * k + beta * k * k < elapsed - 1e-12:
            k += 1
        k = min(k, rep.running[0][0] - rep.step)
        dt = alpha * k + beta * k * k
        self.counters.generated_tokens += k * rep.n
        rep.step += k
        rep.t_step += dt
        rep.version += 1
        self._complete_due(rep)

    def _complete_due(self, rep: Replica) -> None:
        t = rep.t_step
        c = self.counters
        while rep.running and rep.running[0][0] <= rep.step:
            _, i = heapq.heappop(rep.running)
            rep.n -= 1
            rep.sum_in -= self.n_in[i]
            rep.sum_join -= self.join_step[i]
            rep.reserved -= self.n_in[i] + self.n_out[i]
            self.finish[i] = t
            c.completed.append(i)

    def _join(self, rep: Replica, i: int) -> None:
        s = rep.step
        self.join_step[i] = s
        heapq.heappush(rep.running, (s + self.n_out[i] - 1, i))
        rep.n += 1
        rep.sum_in += self.n_in[i]
        rep.sum_join += s

    def _schedule(self, rep: Replica) -> None:
        rep.version += 1
        if rep.n == 0 or rep.prefilling:
            return
        alpha, beta = self._series(rep)
        k = rep.running[0][0] - rep.step
        self._push(rep.t_step + alpha * k + beta * k * k, _EV_DECODE_STEP, rep.id, rep.version)

    def _on_decode_step(self, rep: Replica, version: int, now: float) -> None:
        if version != rep.version:
            return
        k = rep.running[0][0] - rep.step
        self.counters.generated_tokens += k * rep.n
        rep.step += k
        rep.t_step = now
        self._complete_due(rep)
        if rep.role == AGGREGATED:
            if rep.state == SERVING and self.prefill_q:
                self._try_prefill(rep, now)
                if rep.prefilling:
                    return
        else:
            self._admit_decode_queue(rep, now)
        self._schedule(rep)
        self._maybe_release(rep, now)

    def _fits(self, rep: Replica, i: int) -> bool:
        p = rep.profile
        if rep.n == 0:
            return True
        return (
            rep.n < p.max_batch
            and rep.reserved + self.n_in[i] + self.n_out[i] <= p.kv_capacity_tokens
        )

    def _on_decode_arrive(self, i: int, now: float) -> None:
        if self.decode_q:
            self.decode_q.append(i)
            return
        best: Replica | None = None
        best_free = -math.inf
        for r in self.replicas:
            if r.role != DECODE or r.state != SERVING or not self._fits(r, i):
                continue
            free = r.profile.kv_capacity_tokens - r.reserved
            if free > best_free:
                best, best_free = r, free
        if best is None:
            self.decode_q.append(i)
            return
        self._advance(best, now)
        self._admit(best, i)
        self._schedule(best)

    def _admit(self, rep: Replica, i: int) -> None:
        rep.reserved += self.n_in[i] + self.n_out[i]
        self.served_by[i] = rep.id
        self._join(rep, i)

    def _admit_decode_queue(self, rep: Replica, now: float) -> None:
        q = self.decode_q
        if rep.state != SERVING or not q:
            return
        self._advance(rep, now)
        while q and self._fits(rep, q[0]):
            self._admit(rep, q.popleft())
        self._schedule(rep)

    def _maybe_release(self, rep: Replica, now: float) -> None:
        if rep.state == DRAINING and rep.idle():
            rep.state = GONE
            rep.version += 1
            self._released(now)
