"""Where the shared published data lives: the ``shared/data`` folder (``perf/``,
``traces/``) that sits beside a clone of this repository.

One rule for ``goodput.profiles.derive``, ``goodput bench`` and the tests: the
environment variable ``GOODPUT_SHARED_DATA`` (the ``data`` directory itself) when set,
else ``<repository>/../shared/data``. The repository is found from this file's own
location (``<repository>/operator/goodput/profiles/``), never from the working
directory, so a clone anywhere beside a copy of ``shared/`` finds it.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "GOODPUT_SHARED_DATA"
REPOSITORY = Path(__file__).resolve().parents[3]


class SharedDataMissing(FileNotFoundError):
    """The shared data (or the part of it asked for) is not where the rule says."""


def shared_data_dir() -> Path:
    """``$GOODPUT_SHARED_DATA``, else ``<repository>/../shared/data`` (may not exist)."""
    env = os.environ.get(ENV)
    if env:
        return Path(env).expanduser()
    return REPOSITORY.parent / "shared" / "data"


def require_shared_data(*parts: str) -> Path:
    """``shared_data_dir() / parts``, or :class:`SharedDataMissing` saying where it
    looked and how to point it elsewhere."""
    root = shared_data_dir()
    path = root.joinpath(*parts)
    if not path.exists():
        how = (
            f"${ENV} is {os.environ[ENV]!r}"
            if os.environ.get(ENV)
            else f"looked beside the repository ({REPOSITORY.name}/../shared/data); set ${ENV}"
            " to the shared data directory to look elsewhere"
        )
        raise SharedDataMissing(f"shared data not found: {path} does not exist ({how})")
    return path
