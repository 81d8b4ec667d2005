"""`goodput` console script: dispatches to each part's own command module, so every
part owns its arguments and the entry point stays import-light."""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("goodput.operator.main", "Run the operator against the current kubeconfig."),
    "plan": ("goodput.planner.cli", "Print the plan for one policy and one observation."),
    "simulate": (
        "goodput.sim.cli",
        "Replay a trace through the digital twin and compare controllers.",
    ),
    "emulate": (
        "goodput.sim.emulator_cli",
        "Emulate each policy's serving fleet on a cluster: pods' /metrics from the twin.",
    ),
    "bench": ("goodput.sim.bench", "Run the benchmark suite and write BENCHMARKS.md."),
    "calibration": (
        "goodput.profiles.calibration",
        "Table every bundled profile against the published rows it claims.",
    ),
    "crd": ("goodput.api.crd", "Print the CRD YAML generated from the models."),
}


def _usage() -> str:
    lines = ["usage: goodput <command> [options]", "", "commands:"]
    width = max(map(len, COMMANDS))
    lines += [f"  {name:<{width}} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        from goodput import __version__

        print(__version__)
        return 0
    entry = COMMANDS.get(args[0])
    if entry is None:
        print(f"goodput: unknown command {args[0]!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(entry[0])
    result: int = module.main(args[1:])
    return result


if __name__ == "__main__":
    sys.exit(main())
