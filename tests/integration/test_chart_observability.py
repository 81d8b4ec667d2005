"""The chart's observability (dashboard, PrometheusRule, ServiceMonitor) with real tools:
helm lint and template with every option on and off, the values schema refusing bad
values, `promtool check rules` and `promtool test rules` (tests/promtool/) on the
rendered alerts, the real Prometheus Operator CRDs validating the rendered objects in the
API server, and every dashboard query run against the real Prometheus while a real
operator process (`goodput run`) scaled a policy, each returning series."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.chart import CHART, of_kind, render
from tests.harness.cluster import LocalCluster
from tests.harness.operator import OperatorProcess
from tests.harness.process import wait_until
from tests.harness.prometheus import PrometheusServer
from tests.harness.tools import REPO
from tests.integration.exporters import ServingExporter
from tests.integration.test_operator import _policy, _replicas, _serving_namespace

pytestmark = pytest.mark.integration

RELEASE, NS = "gp", "goodput-system"
OPTIONS = ("dashboard.enabled", "prometheusRule.enabled", "serviceMonitor.enabled")
PROMTOOL_TESTS = REPO / "tests" / "promtool"
RUNBOOK = REPO / "docs" / "runbook.md"
DASHBOARD = CHART / "files" / "dashboard.json"
PROM_OPERATOR_CRDS = Path(__file__).parent / "crds" / "prometheus-operator"
# Grafana's interval for rate windows; the test Prometheus scrapes every second.
RATE_INTERVAL = "30s"


def _helm(helm_bin: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm_bin), *args], capture_output=True, text=True, timeout=120, check=False
    )


def _all_on() -> list[str]:
    return [f"{o}=true" for o in OPTIONS]


def _rule_groups(helm_bin: Path, *set_args: str) -> list[dict[str, Any]]:
    (rule,) = of_kind(
        render(helm_bin, RELEASE, NS, "prometheusRule.enabled=true", *set_args), "PrometheusRule"
    )
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


def _alerts(groups: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}


def _github_anchor(heading: str) -> str:
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("on", [False, True], ids=["all-off", "all-on"])
def test_lint_strict_with_every_option(helm_bin: Path, on: bool) -> None:
    extra = ["--set", ",".join(_all_on())] if on else []
    out = _helm(helm_bin, "lint", "--strict", str(CHART), *extra)
    assert out.returncode == 0, out.stdout + out.stderr


def test_template_renders_each_option_alone_and_nothing_by_default(helm_bin: Path) -> None:
    kinds = {
        "dashboard.enabled": "ConfigMap",
        "prometheusRule.enabled": "PrometheusRule",
        "serviceMonitor.enabled": "ServiceMonitor",
    }
    default = render(helm_bin, RELEASE, NS)
    assert not of_kind(default, *kinds.values())
    for option, kind in kinds.items():
        docs = render(helm_bin, RELEASE, NS, f"{option}=true")
        assert len(of_kind(docs, kind)) == 1, option
        assert not of_kind(docs, *(k for k in kinds.values() if k != kind)), option
    everything = render(helm_bin, RELEASE, NS, *_all_on())
    assert all(len(of_kind(everything, k)) == 1 for k in kinds.values())

    # The ServiceMonitor scrapes the metrics Service's named port.
    (svc,) = of_kind(everything, "Service")
    (sm,) = of_kind(everything, "ServiceMonitor")
    labels = svc["metadata"]["labels"]
    assert all(labels[k] == v for k, v in sm["spec"]["selector"]["matchLabels"].items())
    assert [e["port"] for e in sm["spec"]["endpoints"]] == [svc["spec"]["ports"][0]["name"]]
    assert sm["spec"]["namespaceSelector"]["matchNames"] == [NS]

    # The dashboard: the sidecar's label, configurable, and the JSON file unchanged.
    (cm,) = of_kind(everything, "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["goodput-operator.json"]) == json.loads(DASHBOARD.read_text())
    custom = render(
        helm_bin,
        RELEASE,
        NS,
        "dashboard.enabled=true",
        "dashboard.label=grafana-dash",
        "dashboard.labelValue=goodput",
        "dashboard.namespace=monitoring",
        "dashboard.annotations.grafana_folder=LLM",
    )
    (cm,) = of_kind(custom, "ConfigMap")
    assert cm["metadata"]["labels"]["grafana-dash"] == "goodput"
    assert "grafana_dashboard" not in cm["metadata"]["labels"]
    assert cm["metadata"]["namespace"] == "monitoring"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "LLM"}

    # Labels for the Prometheus Operator's selectors, and on every alert.
    labelled = render(
        helm_bin,
        RELEASE,
        NS,
        *_all_on(),
        "serviceMonitor.labels.release=kps",
        "prometheusRule.labels.release=kps",
        "prometheusRule.alertLabels.team=ml",
    )
    (sm,) = of_kind(labelled, "ServiceMonitor")
    (rule,) = of_kind(labelled, "PrometheusRule")
    assert sm["metadata"]["labels"]["release"] == "kps"
    assert rule["metadata"]["labels"]["release"] == "kps"
    assert all(a["labels"]["team"] == "ml" for a in _alerts(rule["spec"]["groups"]).values())


def test_every_alert_has_a_summary_description_and_a_runbook_section(helm_bin: Path) -> None:
    alerts = _alerts(_rule_groups(helm_bin))
    headings = {
        _github_anchor(line[3:])
        for line in RUNBOOK.read_text().splitlines()
        if line.startswith("## ")
    }
    base = "https://github.com/goodput-dev/goodput-operator/blob/main/docs/runbook.md#"
    for name, rule in alerts.items():
        ann = rule["annotations"]
        assert ann["summary"] and ann["description"], name
        assert ann["runbook_url"] == base + name.lower(), name
        assert name.lower() in headings, f"docs/runbook.md has no section {name}"
        assert rule["labels"]["severity"] in ("warning", "critical"), name
    assert set(alerts) == {
        "GoodputSloAttainmentBelowTarget",
        "GoodputMetricsMissing",
        "GoodputBudgetNotSatisfiable",
        "GoodputOverBudget",
        "GoodputScaleWritesRefused",
        "GoodputUnableToScale",
        "GoodputTicksFailing",
        "GoodputOperatorDown",
        "GoodputOperatorNoActiveReplica",
    }
    other = _alerts(_rule_groups(helm_bin, "prometheusRule.runbookBaseUrl=https://wiki/rb"))
    assert (
        other["GoodputOverBudget"]["annotations"]["runbook_url"]
        == "https://wiki/rb#goodputoverbudget"
    )


def test_rules_pass_promtool_check_and_unit_tests(helm_bin: Path, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: it ships with Debian's prometheus (make system-deps)"
    groups = _rule_groups(helm_bin)
    rules = tmp_path / "goodput-rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    out = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(_alerts(groups))} rules found" in out.stdout

    tests = sorted(PROMTOOL_TESTS.glob("*.test.yaml"))
    tested: set[str] = set()
    for t in tests:
        shutil.copy(t, tmp_path / t.name)
        doc = yaml.safe_load(t.read_text())
        assert doc["rule_files"] == ["goodput-rules.yaml"], t.name
        for case in doc["tests"]:
            for a in case.get("alert_rule_test", []):
                if a["exp_alerts"]:  # a case that expects the alert to fire
                    tested.add(a["alertname"])
    assert tested == set(_alerts(groups)), (
        f"alerts without a firing test: {set(_alerts(groups)) - tested}"
    )
    out = subprocess.run(
        [promtool, "test", "rules", *(t.name for t in tests)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_schema_rejects_bad_values_with_a_clear_message(helm_bin: Path, tmp_path: Path) -> None:
    # (values file, what helm says), with the path of the bad value in the message.
    cases = [
        ('dashboard:\n  enabled: "yes"\n', "at '/dashboard/enabled': got string, want boolean"),
        ("prometheusRule:\n  enabled: 1\n", "at '/prometheusRule/enabled': got number, want"),
        ('serviceMonitor:\n  enabled: "true"\n', "at '/serviceMonitor/enabled': got string"),
        (
            "prometheusRule:\n  attainmentFor: 15 minutes\n",
            "at '/prometheusRule/attainmentFor': '15 minutes' does not match pattern",
        ),
        (
            'serviceMonitor:\n  labels: {"bad key": x}\n',
            "at '/serviceMonitor/labels': additional properties 'bad key' not allowed",
        ),
        (
            "prometheusRule:\n  alertLabels: {team-x: a}\n",
            "at '/prometheusRule/alertLabels': additional properties 'team-x' not allowed",
        ),
        ("dashboard:\n  bogus: 1\n", "at '/dashboard': additional properties 'bogus' not allowed"),
        (
            "metrics:\n  serviceMonitor: {enabled: true}\n",
            "at '/metrics': additional properties 'serviceMonitor' not allowed",
        ),
    ]
    for i, (values, message) in enumerate(cases):
        f = tmp_path / f"bad{i}.yaml"
        f.write_text(values)
        out = _helm(helm_bin, "template", "t", str(CHART), "-f", str(f))
        assert out.returncode != 0, values
        assert message in out.stderr, out.stderr
    for values in ("dashboard:\n  enabled: true\n", "prometheusRule:\n  attainmentFor: 1h30m\n"):
        f = tmp_path / "good.yaml"
        f.write_text(values)
        out = _helm(helm_bin, "template", "t", str(CHART), "-f", str(f))
        assert out.returncode == 0, out.stderr


def test_install_with_every_option_validated_by_the_real_crds(
    helm_bin: Path, cluster: LocalCluster
) -> None:
    """The Prometheus Operator's own CRDs (v0.93.0, tests/integration/crds/) in the API
    server: the rendered PrometheusRule and ServiceMonitor pass their schemas."""
    for f in sorted(PROM_OPERATOR_CRDS.glob("*.yaml")):
        cluster.kubectl("apply", "--server-side", "-f", str(f))
    for crd in ("prometheusrules", "servicemonitors"):
        cluster.kubectl(
            "wait",
            "--for=condition=established",
            "--timeout=60s",
            f"crd/{crd}.monitoring.coreos.com",
        )
    ns = cluster.create_namespace("obs")
    release = "obs"
    args = [
        "--kubeconfig",
        str(cluster.kubeconfig),
        "install",
        release,
        str(CHART),
        "-n",
        ns,
        "--take-ownership",
        "--set",
        f"watchNamespaces={{{ns}}}",
        "--set",
        ",".join(_all_on()),
        "--set",
        "serviceMonitor.labels.release=kps",
        "--wait",
        "--timeout",
        "120s",
    ]
    out = _helm(helm_bin, *args)
    assert out.returncode == 0, out.stderr
    try:
        rule = json.loads(
            cluster.kubectl(
                "get", "prometheusrule", f"{release}-goodput-operator", "-n", ns, "-o", "json"
            ).stdout
        )
        assert {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]} >= {
            "GoodputOverBudget",
            "GoodputOperatorDown",
        }
        sm = json.loads(
            cluster.kubectl(
                "get", "servicemonitor", f"{release}-goodput-operator", "-n", ns, "-o", "json"
            ).stdout
        )
        assert sm["spec"]["endpoints"][0]["port"] == "metrics"
        cm = cluster.kubectl(
            "get", "configmap", "-n", ns, "-l", "grafana_dashboard=1", "-o", "name"
        ).stdout.split()
        assert cm == [f"configmap/{release}-goodput-operator-dashboard"]
    finally:
        _helm(
            helm_bin,
            "--kubeconfig",
            str(cluster.kubeconfig),
            "uninstall",
            release,
            "-n",
            ns,
            "--wait",
        )


# -- every dashboard query against the real Prometheus ----------------------------------


def _dashboard_queries() -> list[tuple[str, str]]:
    """(panel title / refId, expr) of every target of every panel, rows included."""
    board = json.loads(DASHBOARD.read_text())
    found: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for p in panels:
            walk(p.get("panels", []))
            for t in p.get("targets", []):
                found.append((f"{p['title']} / {t['refId']}", t["expr"]))

    walk(board["panels"])
    return found


def _variable_queries() -> list[tuple[str, str]]:
    """The dashboard's query variables, label_values(...) as the PromQL Grafana runs."""
    out = []
    for v in json.loads(DASHBOARD.read_text())["templating"]["list"]:
        if v["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\((.+), *(\w+)\)", v["query"]["query"])
        assert m, v["query"]
        out.append((f"${v['name']}", f"group by ({m.group(2)}) ({m.group(1)})"))
    return out


def _substitute(expr: str, ns: str, policy: str) -> str:
    return (
        expr.replace("$namespace", ns)
        .replace("$policy", policy)
        .replace("$__rate_interval", RATE_INTERVAL)
    )


def test_dashboard_is_well_formed() -> None:
    board = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    assert board["uid"] == "goodput-operator"
    names = {v["name"] for v in board["templating"]["list"]}
    assert names == {"datasource", "namespace", "policy"}
    for p in board["panels"]:
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            used = set(re.findall(r"\$(\w+)", t["expr"])) - {"__rate_interval"}
            assert used <= names, (p["title"], used)
    # No two panels overlap on Grafana's 24-column grid.
    cells: set[tuple[int, int]] = set()
    for p in board["panels"]:
        g = p["gridPos"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert g["x"] + g["w"] <= 24 and not (cells & mine), p["title"]
        cells |= mine


def test_every_dashboard_query_returns_series_from_a_running_operator(
    cluster: LocalCluster,
    prometheus: PrometheusServer,
    crd: None,
    heavy_exporter: tuple[ServingExporter, str],
    helm_bin: Path,
    tmp_path: Path,
) -> None:
    """`goodput run` scraped by the test Prometheus scales a heavily loaded Enforce
    policy; then each dashboard query, with its variables substituted, returns series,
    and the rendered alert expressions evaluate without error (the attainment and
    budget ones returning this policy: the heavy load is above what 6 GPUs serve)."""
    _, exporter_job = heavy_exporter
    ns = _serving_namespace(cluster, "dash")
    op = OperatorProcess(tmp_path, "dash-operator", ["--standalone", "-n", ns], cluster.kubeconfig)
    job = f"goodput-operator-{int(time.time() * 1000) % 10**8}"
    try:
        prometheus.add_target(job, f"127.0.0.1:{op.port}")
        cluster.apply(_policy(ns, prometheus.url, exporter_job, "Enforce"))
        wait_until(
            lambda: _replicas(cluster, ns, "prefill") + _replicas(cluster, ns, "decode") > 2,
            90,
            "the operator to scale up",
        )
        queries = [
            (title, _substitute(expr, ns, "chat"))
            for title, expr in _variable_queries() + _dashboard_queries()
        ]
        empty: list[str] = []

        def all_answer() -> bool:
            """Each query has series, and a number in one (rates need a window of ticks)."""
            op.assert_alive()
            empty[:] = [
                title
                for title, q in queries
                if not any(math.isfinite(float(r["value"][1])) for r in prometheus.query(q))
            ]
            return not empty

        try:
            wait_until(all_answer, 90, "every dashboard query to return series", interval=2)
        except TimeoutError:
            pytest.fail(f"dashboard queries without series: {empty}\n{op.log()[-3000:]}")
        # Counters moved: decisions and ticks were counted, not just created.
        decisions = _substitute(
            next(q for t, q in _dashboard_queries() if t.startswith("Decisions")), ns, "chat"
        )
        assert sum(float(r["value"][1]) for r in prometheus.query(decisions)) > 0
        for title, q in queries:
            res = prometheus.query(q)
            print(f"{title}: {len(res)} series, e.g. {res[0]['metric']} = {res[0]['value'][1]}")

        alerts = _alerts(_rule_groups(helm_bin, f'prometheusRule.operatorSelector=job="{job}"'))
        firing_now = {}
        for name, rule in alerts.items():
            firing_now[name] = prometheus.query(rule["expr"])  # raises on a PromQL error
        print({k: len(v) for k, v in firing_now.items()})
        mine = [
            r
            for r in firing_now["GoodputSloAttainmentBelowTarget"]
            if r["metric"]["namespace"] == ns
        ]
        assert mine and float(mine[0]["value"][1]) < 0.9, firing_now
        # 40 req/s of 2000-token prompts need more than 6 GPUs: BudgetExhausted.
        assert [
            r for r in firing_now["GoodputBudgetNotSatisfiable"] if r["metric"]["namespace"] == ns
        ]
        assert (
            not firing_now["GoodputOperatorDown"]
            and not firing_now["GoodputOperatorNoActiveReplica"]
        )
        assert not [r for r in firing_now["GoodputTicksFailing"] if r["metric"]["namespace"] == ns]
        assert not [r for r in firing_now["GoodputOverBudget"] if r["metric"]["namespace"] == ns]
    finally:
        op.stop()
