"""The package layout must never shadow the standard library."""

import importlib
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_import_operator_is_the_standard_library() -> None:
    mod = importlib.import_module("operator")
    assert mod.__file__ is not None
    assert Path(mod.__file__).parent == Path(sys.modules["os"].__file__ or "").parent
    assert hasattr(mod, "itemgetter")
    assert not (REPO / "operator" / "__init__.py").exists()


def test_goodput_package_is_importable_from_operator_dir() -> None:
    import goodput

    assert Path(goodput.__file__ or "").parent == REPO / "operator" / "goodput"


def test_console_script_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    from goodput.cli import main

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("run", "plan", "simulate", "bench", "crd"):
        assert f"  {command} " in out
    assert main(["no-such-command"]) == 2
