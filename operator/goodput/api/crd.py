"""The CustomResourceDefinition, generated from the pydantic models (`goodput crd`).

Pydantic's JSON Schema is not yet a Kubernetes *structural* schema; ``structural()``
rewrites it: ``$ref``/``$defs`` inlined, ``title`` dropped, ``Optional[X]`` as plain
``X`` (not required, not nullable: the API server prunes an explicit null, so the
field simply goes missing, which the models read back as ``None``), numeric exclusive
bounds in the OpenAPI v3.0 boolean form, ``additionalProperties: false`` dropped
(unknown fields are pruned by the server and refused by ``kubectl --validate=strict``).

Defaults are written into stored objects by the API server, so they are chosen, not
inherited: a scalar field's pydantic default becomes the schema default; a nested
object whose model has defaults gets ``default: {}`` so the server fills it in too;
lists and maps get none (absent reads back as empty). Status has no defaults at all.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from goodput.api.spec import (
    CATEGORIES,
    GROUP,
    KIND,
    PLURAL,
    SCALE_DOWN_DEFAULTS,
    SCALE_UP_DEFAULTS,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    GoodputPolicySpec,
)
from goodput.api.status import GoodputPolicyStatus

CRD_NAME = f"{PLURAL}.{GROUP}"
CRD_PATH = Path("crds") / f"{GROUP}_{PLURAL}.yaml"

Schema = dict[str, Any]

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Mode", "type": "string", "jsonPath": ".spec.mode",
     "description": "Enforce scales the targets; Recommend only publishes the plan."},
    {"name": "Budget", "type": "integer", "jsonPath": ".spec.gpuBudget",
     "description": "GPUs the policy may hold."},
    {"name": "GPUs", "type": "integer", "jsonPath": ".status.gpusAllocated",
     "description": "GPUs held now."},
    {"name": "Prefill", "type": "string", "jsonPath": ".status.replicas.prefill",
     "description": "Prefill replicas, current/desired."},
    {"name": "Decode", "type": "string", "jsonPath": ".status.replicas.decode",
     "description": "Decode replicas, current/desired."},
    {"name": "Aggregated", "type": "string", "jsonPath": ".status.replicas.aggregated",
     "priority": 1, "description": "Aggregated replicas, current/desired."},
    {"name": "Goodput", "type": "number", "jsonPath": ".status.goodput.observedTokensPerSecond",
     "description": "Observed token goodput, SLO-meeting quality-weighted tokens/s."},
    {"name": "Attainment", "type": "number", "jsonPath": ".status.goodput.observedAttainment",
     "description": "Observed fraction of requests meeting the SLO."},
    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
     "description": "The Ready condition."},
    {"name": "Split", "type": "string", "jsonPath": ".status.split", "priority": 1,
     "description": "Traffic share per variant, percent (policies with variants)."},
    {"name": "Reason", "type": "string", "jsonPath": ".status.lastDecision.reason",
     "description": "Reason code of the last decision: why it acts or holds."},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]  # fmt: skip

_DROP = {"title", "$defs"}


def structural(schema: Schema) -> Schema:
    """A pydantic JSON Schema as a Kubernetes structural OpenAPI v3 schema."""
    defs: dict[str, Schema] = schema.get("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, list):
            return [resolve(n) for n in node]
        if not isinstance(node, dict):
            return node
        node = dict(node)
        if "$ref" in node:
            target = copy.deepcopy(defs[node.pop("$ref").rsplit("/", 1)[-1]])
            node = {**target, **node}
        for key in ("anyOf", "oneOf"):
            if key in node:
                alts = [a for a in node.pop(key) if a != {"type": "null"}]
                if len(alts) != 1:
                    raise ValueError(f"cannot express a union of {alts} structurally")
                node = {**alts[0], **{k: v for k, v in node.items() if k != "default"}}
                if node.get("default", 0) is None:
                    node.pop("default")
                if "$ref" in node:
                    node = resolve(node)
        if "allOf" in node and len(node["allOf"]) == 1:
            node = {**node.pop("allOf")[0], **node}
            if "$ref" in node:
                node = resolve(node)
        if node.get("default", 0) is None:
            node.pop("default")
        for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if bound in node and not isinstance(node[bound], bool):
                node[plain] = node.pop(bound)
                node[bound] = True
        if node.get("additionalProperties") is False:
            node.pop("additionalProperties")
        out: Schema = {}
        for k, v in node.items():
            if k in _DROP:
                continue
            if k == "properties":
                out[k] = {name: resolve(p) for name, p in v.items()}
            elif k in ("items", "additionalProperties"):
                out[k] = resolve(v)
            else:
                out[k] = v
        return out

    return typing.cast(Schema, resolve(schema))


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The model inside ``X``, ``X | None``, ``list[X]``; None if there is none."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, typing.Annotated):
        for arg in typing.get_args(annotation):
            found = _model_of(arg)
            if found is not None:
                return found
    return None


def _object_defaults(model: type[BaseModel], node: Schema) -> None:
    """``default: {}`` on nested objects the model fills in, so the server does too."""
    for name, field in model.model_fields.items():
        prop = node["properties"][field.alias or name]
        sub = _model_of(field.annotation)
        if sub is None:
            continue
        if field.default_factory is not None and prop.get("type") == "object":
            prop["default"] = {}
        target = prop["items"] if prop.get("type") == "array" else prop
        _object_defaults(sub, target)


def _document_defaults(node: Any) -> None:
    """Append "Default: X." to descriptions, since ``kubectl explain`` does not show defaults."""
    if isinstance(node, dict):
        default = node.get("default")
        desc = node.get("description")
        if desc and "Default" not in desc and isinstance(default, str | int | float):
            shown = json.dumps(default) if isinstance(default, bool) else str(default)
            node["description"] = f"{desc.rstrip('.')}. Default: {shown}."
        for v in node.values():
            _document_defaults(v)
    elif isinstance(node, list):
        for v in node:
            _document_defaults(v)


def _strip_defaults(node: Any) -> None:
    if isinstance(node, dict):
        node.pop("default", None)
        for v in node.values():
            _strip_defaults(v)
    elif isinstance(node, list):
        for v in node:
            _strip_defaults(v)


def spec_schema() -> Schema:
    node = structural(GoodputPolicySpec.model_json_schema(by_alias=True))
    _object_defaults(GoodputPolicySpec, node)
    behavior = node["properties"]["behavior"]["properties"]
    for key, defaults in (("scaleUp", SCALE_UP_DEFAULTS), ("scaleDown", SCALE_DOWN_DEFAULTS)):
        props = behavior[key]["properties"]
        for field, value in defaults.items():
            props[field]["default"] = copy.deepcopy(value)
    _document_defaults(node)
    node["description"] = (
        "What to optimize and within which limits: the GPU budget, the pools and KV-cache "
        "tiers to size, the SLO a request must meet, and where the metrics are."
    )
    return node


def status_schema() -> Schema:
    node = structural(GoodputPolicyStatus.model_json_schema(by_alias=True))
    _strip_defaults(node)
    node["description"] = (
        "Written by the operator: conditions, replicas and GPUs per pool, observed and "
        "predicted goodput, and the last decision with its reason."
    )
    return node


def openapi_schema() -> Schema:
    return {
        "type": "object",
        "description": (
            "GoodputPolicy autoscales one disaggregated (prefill/decode) or aggregated LLM "
            "serving deployment, and its KV-cache tiers, to deliver the most SLO-meeting "
            "tokens (goodput) within a fixed GPU budget."
        ),
        "required": ["spec"],
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": "APIVersion of this object: goodput.dev/v1alpha1.",
            },
            "kind": {"type": "string", "description": "Kind of this object: GoodputPolicy."},
            "metadata": {"type": "object"},
            "spec": spec_schema(),
            "status": status_schema(),
        },
    }


def crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": CRD_NAME,
            "annotations": {"goodput.dev/generated-by": "goodput crd"},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": list(CATEGORIES),
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": copy.deepcopy(PRINTER_COLUMNS),
                    "schema": {"openAPIV3Schema": openapi_schema()},
                }
            ],
        },
    }


def render() -> str:
    header = "# Generated by `goodput crd` from operator/goodput/api; do not edit.\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=100, allow_unicode=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="goodput crd", description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, help="write to this file, not stdout")
    parser.add_argument(
        "--check", type=Path, metavar="FILE", help="exit 1 if FILE differs from the generated CRD"
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    text = render()
    if args.check is not None:
        current = args.check.read_text() if args.check.exists() else ""
        if current != text:
            print(f"{args.check} is stale: regenerate with `goodput crd -o {args.check}`",
                  file=sys.stderr)  # fmt: skip
            return 1
        return 0
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
