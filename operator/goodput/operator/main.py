"""`goodput run`: the operator process (kopf), with its own /metrics endpoint."""

from __future__ import annotations

import argparse
import asyncio
import logging

from prometheus_client import start_http_server


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="goodput run", description=__doc__)
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", action="append", default=[], help="watch this namespace (repeatable)"
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=8080,
        help="port of the operator's own /metrics (0: off)",
    )
    parser.add_argument("--metrics-address", default="0.0.0.0")
    parser.add_argument(
        "--liveness",
        default="http://0.0.0.0:8081/healthz",
        help="kopf liveness endpoint URL ('' to disable)",
    )
    parser.add_argument(
        "--priority",
        type=int,
        default=0,
        help="kopf peering priority; give replicas distinct values",
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    import kopf

    import goodput.operator.handlers  # noqa: F401 - registers the handlers

    if args.metrics_port:
        start_http_server(args.metrics_port, addr=args.metrics_address)
    asyncio.run(
        kopf.operator(
            clusterwide=args.all_namespaces or not args.namespace,
            namespaces=args.namespace,
            standalone=args.priority == 0,
            priority=args.priority,
            liveness_endpoint=args.liveness or None,
        )
    )
    return 0
