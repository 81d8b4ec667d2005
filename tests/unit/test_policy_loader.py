"""One loader for every command: multi-document files, bare specs, clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from goodput.api.load import load_policy

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", sorted((REPO / "policies").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_loads(path: Path) -> None:
    assert load_policy(path).gpu_budget > 0


def test_secret_beside_the_policy(tmp_path: Path) -> None:
    text = (REPO / "policies" / "chatbot-latency-critical.yaml").read_text()
    f = tmp_path / "p.yaml"
    f.write_text(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: prom}\nstringData: {token: x}\n---\n" + text
    )
    assert load_policy(f) == load_policy(REPO / "policies" / "chatbot-latency-critical.yaml")


def test_refusals_say_why(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("apiVersion: v1\nkind: Secret\nmetadata: {name: prom}\n")
    with pytest.raises(ValueError, match=r"no GoodputPolicy document \(kinds: Secret"):
        load_policy(f)
    f.write_text("a: [\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_policy(f)
