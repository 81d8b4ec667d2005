"""The chart ships the same CRD the models generate (the KEDA-style drift check)."""

from pathlib import Path

from goodput.api.crd import render

REPO = Path(__file__).resolve().parents[2]


def test_chart_crd_copy_equals_generated() -> None:
    chart_copy = REPO / "helm" / "goodput-operator" / "files" / "goodput.dev_goodputpolicies.yaml"
    assert chart_copy.read_text() == render(), (
        "helm chart CRD is stale: run `make crds` (goodput crd -o ...)"
    )
