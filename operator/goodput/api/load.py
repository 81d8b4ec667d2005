"""One policy loader for every command (`goodput plan`, `goodput simulate`, `bench`):
a YAML file with one or more documents (a Secret beside the policy, as the examples
ship), of which exactly one is a GoodputPolicy, or a bare spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from goodput.api.spec import GoodputPolicy, GoodputPolicySpec


def load_policy(path: str | Path) -> GoodputPolicySpec:
    """The spec of the one GoodputPolicy in ``path``; ``ValueError`` saying why not."""
    path = Path(path)
    try:
        docs: list[Any] = [d for d in yaml.safe_load_all(path.read_text()) if d]
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from None
    policies = [d for d in docs if isinstance(d, dict) and d.get("kind") == "GoodputPolicy"]
    if len(policies) > 1:
        raise ValueError(f"{path}: {len(policies)} GoodputPolicy documents; give one")
    if policies:
        return GoodputPolicy.from_manifest(policies[0]).spec
    bare = [d for d in docs if isinstance(d, dict) and "kind" not in d]
    if len(bare) == 1:
        doc = bare[0]
        if "spec" in doc:
            return GoodputPolicySpec.model_validate(doc["spec"])
        return GoodputPolicySpec.model_validate(doc)
    raise ValueError(f"{path}: no GoodputPolicy document (kinds: {_kinds(docs)})")


def _kinds(docs: list[Any]) -> str:
    return ", ".join(str(d.get("kind")) for d in docs if isinstance(d, dict)) or "none"
