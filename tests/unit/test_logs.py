"""goodput run's log lines keep the fields passed as ``extra=`` and drop kopf's own."""

from __future__ import annotations

import json
import logging

from goodput.operator.logs import JsonFormatter, TextFormatter


def _record(**extra: object) -> logging.LogRecord:
    rec = logging.makeLogRecord({"name": "kopf.objects", "msg": "Handler 'x' succeeded."})
    for k, v in extra.items():
        setattr(rec, k, v)
    return rec


def test_fields_are_kept_and_kopfs_settings_dropped() -> None:
    rec = _record(policy="chat", namespace="ns", settings=object(), k8s_skip=True, k8s_ref="r")
    text = TextFormatter().format(rec)
    assert "policy=chat" in text and "namespace=ns" in text and "k8s_ref=r" in text
    assert "settings=" not in text and "k8s_skip" not in text
    data = json.loads(JsonFormatter().format(rec))
    assert data["policy"] == "chat" and data["k8s_ref"] == "r"
    assert "settings" not in data and "k8s_skip" not in data
