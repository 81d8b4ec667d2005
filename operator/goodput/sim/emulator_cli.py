"""`goodput emulate`: run the fleet emulator (goodput.sim.emulator) against a cluster.

Each named GoodputPolicy (``--policy NAMESPACE/NAME``, repeatable, or ``--all``: every
policy the kubeconfig may list) gets its own fleet replaying the ServeGen peak trace
(goodput.sim.emulator_trace; seed ``--seed`` + the fleet's index, so fleets differ).
The pods' /metrics are listed in ``--sd-file`` for Prometheus's ``file_sd_configs``.
At the end (``--duration`` seconds, or SIGINT/SIGTERM) ``--truth-out`` gets each
fleet's exact per-request summary (requests, met, lost, goodput tokens/s)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from goodput.api.spec import GROUP, PLURAL, VERSION, GoodputPolicySpec
from goodput.sim.emulator import FleetSpec
from goodput.sim.emulator_live import Emulator
from goodput.sim.emulator_trace import servegen_peak


def _policies(api_client: Any, names: list[str], every: bool) -> list[tuple[str, str, Any]]:
    from kubernetes import client

    co: Any = client.CustomObjectsApi(api_client)
    if every:
        items = co.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]
    else:
        items = []
        for n in names:
            ns, _, name = n.partition("/")
            if not name:
                raise SystemExit(f"--policy {n!r}: expected NAMESPACE/NAME")
            items.append(co.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name))
    return [(d["metadata"]["namespace"], d["metadata"]["name"], d["spec"]) for d in items]


def summary(em: Emulator) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in list(em.fleets):
        o = em.truth(key)
        now = em.now(key)
        arrived = o.arrival <= now
        out[f"{key[0]}/{key[1]}"] = {
            "seconds": now,
            "requests": int(arrived.sum()),
            "met": int(o.met[arrived].sum()),
            "attainment": float(o.met[arrived].mean()) if arrived.any() else None,
            "lost": len(em.fleet(key).lost),
            "goodput_tokens_per_s": float(np.sum(o.output_tokens * o.met) / now) if now else 0.0,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="goodput emulate", description=__doc__)
    ap.add_argument("--policy", action="append", default=[], metavar="NAMESPACE/NAME")
    ap.add_argument("--all", action="store_true", help="every GoodputPolicy in the cluster")
    ap.add_argument("--sd-file", required=True, type=Path)
    ap.add_argument("--minutes", type=float, default=10.0, help="the day compressed to this")
    ap.add_argument("--mean-rps", type=float, default=12.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--duration", type=float, default=0.0, help="seconds; 0: until a signal")
    ap.add_argument("--truth-out", type=Path)
    ap.add_argument("--kubeconfig")
    args = ap.parse_args(argv)
    if not args.policy and not args.all:
        ap.error("name --policy NAMESPACE/NAME (repeatable) or --all")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from kubernetes import client, config

    cfg = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=args.kubeconfig, client_configuration=cfg
    )
    api = client.ApiClient(cfg)
    em = Emulator(api, args.sd_file)
    for i, (ns, name, raw) in enumerate(_policies(api, args.policy, args.all)):
        spec = GoodputPolicySpec.model_validate(raw)
        trace = servegen_peak(args.minutes, args.mean_rps, args.seed + i).trace
        em.add(FleetSpec(ns, name, spec, trace))
    em.start()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    began = time.monotonic()
    while not stop.wait(1.0):
        if args.duration and time.monotonic() - began >= args.duration:
            break
    result = summary(em)
    em.stop()
    text = json.dumps({"fleets": result, "problems": em.problems}, indent=2)
    if args.truth_out:
        args.truth_out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
