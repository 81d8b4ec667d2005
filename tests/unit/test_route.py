"""The traffic split's pure edge: a patch touches only the owned backendRefs' weights
(and the owner annotation), and every route the operator cannot safely edit is refused
with the rule that refused it and nothing to write."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from goodput.actuator.route import (
    OWNER_ANNOTATION,
    BackendKey,
    RouteOwner,
    RoutePatch,
    RouteRefusal,
    RouteWeights,
    plan_weights,
    read_weights,
    release_ops,
    route_owner,
)
from goodput.reasons import Reason

POOL_GROUP = "inference.networking.k8s.io"
A = BackendKey("llama-70b", group=POOL_GROUP, kind="InferencePool")
B = BackendKey("llama-405b-int4", group=POOL_GROUP, kind="InferencePool")
OWNED = [A, B]
ME = RouteOwner("chat", "support")


def _ref(key: BackendKey, **extra: Any) -> dict[str, Any]:
    return {"group": key.group, "kind": key.kind, "name": key.name, **extra}


def _route(**over: Any) -> dict[str, Any]:
    """An HTTPRoute as the API server returns it: two rules, the first with a match,
    a rule filter and a backendRef filter, the second to an unrelated Service."""
    route: dict[str, Any] = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {
            "name": "llm",
            "namespace": "chat",
            "resourceVersion": "4711",
            "labels": {"app": "llm"},
            "annotations": {"team": "serving"},
        },
        "spec": {
            "parentRefs": [{"name": "inference-gateway"}],
            "hostnames": ["llm.example.com"],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/v1"}}],
                    "filters": [
                        {
                            "type": "RequestHeaderModifier",
                            "requestHeaderModifier": {"set": [{"name": "x-tier", "value": "1"}]},
                        }
                    ],
                    "backendRefs": [
                        _ref(
                            A,
                            weight=50,
                            filters=[
                                {
                                    "type": "RequestHeaderModifier",
                                    "requestHeaderModifier": {
                                        "add": [{"name": "x-model", "value": "70b"}]
                                    },
                                }
                            ],
                        ),
                        _ref(B, weight=50),
                    ],
                    "timeouts": {"request": "300s"},
                },
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/health"}}],
                    "backendRefs": [{"name": "health", "port": 8080, "weight": 3}],
                },
            ],
        },
        "status": {"parents": []},
    }
    route.update(over)
    return route


# -- a small RFC 6902 applier (the ops the patch uses), so the tests see the result ---------


class PatchTestFailed(Exception):
    pass


def _tokens(path: str) -> list[str]:
    assert path.startswith("/"), path
    return [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]


def _parent(doc: Any, tokens: list[str]) -> Any:
    for t in tokens[:-1]:
        doc = doc[int(t)] if isinstance(doc, list) else doc[t]
    return doc


def apply_patch(doc: dict[str, Any], ops: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    for op in ops:
        tokens = _tokens(op["path"])
        parent = _parent(out, tokens)
        last: Any = int(tokens[-1]) if isinstance(parent, list) else tokens[-1]
        if op["op"] == "test":
            if parent[last] != op["value"]:
                raise PatchTestFailed(op)
        elif op["op"] == "add":
            assert not isinstance(parent, list), "the route patch never inserts list items"
            parent[last] = copy.deepcopy(op["value"])
        elif op["op"] == "replace":
            assert last in parent, op
            parent[last] = copy.deepcopy(op["value"])
        elif op["op"] == "remove":
            del parent[last]
        else:
            raise AssertionError(f"unexpected op {op}")
    return out


def _patch(result: RoutePatch | RouteRefusal) -> RoutePatch:
    assert isinstance(result, RoutePatch), result
    return result


def _refusal(result: object, reason: Reason = Reason.RouteRefused) -> str:
    assert isinstance(result, RouteRefusal), result
    assert result.reason is reason
    assert result.message.endswith("nothing changed"), result.message
    return result.message


def _weights(result: RouteWeights | RouteRefusal) -> RouteWeights:
    assert isinstance(result, RouteWeights), result
    return result


# -- patches ------------------------------------------------------------------------------


def test_patch_sets_only_owned_weights_and_the_owner() -> None:
    route = _route()
    patch = _patch(plan_weights(route, ME, OWNED, {A: 70, B: 30}))
    assert patch.ops[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "4711"}
    after = apply_patch(route, patch.ops)

    expected = copy.deepcopy(route)
    expected["spec"]["rules"][0]["backendRefs"][0]["weight"] = 70
    expected["spec"]["rules"][0]["backendRefs"][1]["weight"] = 30
    expected["metadata"]["annotations"][OWNER_ANNOTATION] = "chat/support"
    # Everything else (matches, filters, the other rule, labels, status) is as it was.
    assert after == expected
    assert _weights(read_weights(after, OWNED)).weights == {A: 70, B: 30}
    assert route_owner(after) == "chat/support"
    assert patch.before.weights == {A: 50, B: 50}
    assert patch.weights == {A: 70, B: 30}
    assert patch.changed


def test_paths_are_exact_and_the_annotation_is_escaped() -> None:
    patch = _patch(plan_weights(_route(), ME, OWNED, {A: 70, B: 30}))
    assert [(op["op"], op["path"]) for op in patch.ops] == [
        ("test", "/metadata/resourceVersion"),
        ("replace", "/spec/rules/0/backendRefs/0/weight"),
        ("replace", "/spec/rules/0/backendRefs/1/weight"),
        ("add", "/metadata/annotations/goodput.dev~1traffic-split-owner"),
    ]


def test_unchanged_weights_are_not_written() -> None:
    route = _route()
    route["metadata"]["annotations"][OWNER_ANNOTATION] = "chat/support"
    patch = _patch(plan_weights(route, ME, OWNED, {A: 50, B: 50}))
    assert patch.ops == ()
    assert not patch.changed
    one = _patch(plan_weights(route, ME, OWNED, {A: 50 + 10, B: 50 - 10}))
    assert [op["path"] for op in one.ops][1:] == [
        "/spec/rules/0/backendRefs/0/weight",
        "/spec/rules/0/backendRefs/1/weight",
    ]
    route["spec"]["rules"][0]["backendRefs"][1]["weight"] = 40
    only_a = _patch(plan_weights(route, ME, OWNED, {A: 60, B: 40}))
    assert [op["path"] for op in only_a.ops] == [
        "/metadata/resourceVersion",
        "/spec/rules/0/backendRefs/0/weight",
    ]


def test_unset_weight_is_one_and_is_added() -> None:
    route = _route()
    for ref in route["spec"]["rules"][0]["backendRefs"]:
        del ref["weight"]
    read = _weights(read_weights(route, OWNED))
    assert read.weights == {A: 1, B: 1}
    assert read.shares == {A: 50.0, B: 50.0}
    patch = _patch(plan_weights(route, ME, OWNED, {A: 1, B: 99}))
    assert {op["op"] for op in patch.ops[1:3]} == {"add"}
    after = apply_patch(route, patch.ops)
    assert _weights(read_weights(after, OWNED)).weights == {A: 1, B: 99}


def test_route_without_annotations_gets_the_map() -> None:
    route = _route()
    del route["metadata"]["annotations"]
    patch = _patch(plan_weights(route, ME, OWNED, {A: 20, B: 80}))
    assert patch.ops[-1] == {
        "op": "add",
        "path": "/metadata/annotations",
        "value": {OWNER_ANNOTATION: "chat/support"},
    }
    assert route_owner(apply_patch(route, patch.ops)) == "chat/support"


def test_backendref_spelled_with_defaults_is_the_same_backend() -> None:
    svc = BackendKey("llama-70b-svc")
    route = _route()
    route["spec"]["rules"][0]["backendRefs"] = [
        {"name": "llama-70b-svc", "port": 8000},
        {"group": "", "kind": "Service", "name": "llama-8b-svc", "port": 8000, "weight": 0},
    ]
    other = BackendKey("llama-8b-svc", group="", kind="Service")
    patch = _patch(plan_weights(route, ME, [svc, other], {svc: 100, other: 0}))
    after = apply_patch(route, patch.ops)
    assert _weights(read_weights(after, [svc, other])).weights == {svc: 100, other: 0}
    assert str(svc) == "Service/llama-70b-svc"
    assert str(A) == "InferencePool.inference.networking.k8s.io/llama-70b"


def test_a_stale_resource_version_fails_the_test_op() -> None:
    route = _route()
    patch = _patch(plan_weights(route, ME, OWNED, {A: 70, B: 30}))
    moved = copy.deepcopy(route)
    moved["metadata"]["resourceVersion"] = "4712"
    with pytest.raises(PatchTestFailed):
        apply_patch(moved, patch.ops)


@given(st.integers(min_value=0, max_value=100))
def test_any_split_summing_to_100_reads_back_and_touches_nothing_else(a: int) -> None:
    route = _route()
    after = apply_patch(route, _patch(plan_weights(route, ME, OWNED, {A: a, B: 100 - a})).ops)
    read = _weights(read_weights(after, OWNED))
    assert read.weights == {A: a, B: 100 - a}
    assert read.shares == {A: float(a), B: float(100 - a)}
    for ref in (
        *after["spec"]["rules"][0]["backendRefs"],
        *route["spec"]["rules"][0]["backendRefs"],
    ):
        ref.pop("weight")
    after["metadata"]["annotations"].pop(OWNER_ANNOTATION)
    assert after == route


def test_shares_count_every_backend_of_the_rule() -> None:
    route = _route()
    route["spec"]["rules"][0]["backendRefs"].append({"name": "canary", "port": 80, "weight": 100})
    read = _weights(read_weights(route, OWNED))
    assert read.rule == 0
    assert read.rule_total == 200
    assert read.shares == {A: 25.0, B: 25.0}
    assert read.resource_version == "4711"


# -- refusals: each rule alone --------------------------------------------------------------


def test_missing_route_is_not_found() -> None:
    _refusal(plan_weights(None, ME, OWNED, {A: 50, B: 50}), Reason.RouteNotFound)
    _refusal(read_weights(None, OWNED), Reason.RouteNotFound)


def test_absent_backendref_refused() -> None:
    route = _route()
    route["spec"]["rules"][0]["backendRefs"].pop(1)
    msg = _refusal(plan_weights(route, ME, OWNED, {A: 50, B: 50}))
    assert "no backendRef InferencePool.inference.networking.k8s.io/llama-405b-int4" in msg
    _refusal(read_weights(route, OWNED))


def test_backendref_of_another_namespace_is_not_ours() -> None:
    route = _route()
    route["spec"]["rules"][0]["backendRefs"][1]["namespace"] = "other"
    msg = _refusal(plan_weights(route, ME, OWNED, {A: 50, B: 50}))
    assert "no backendRef" in msg and "llama-405b-int4" in msg
    route["spec"]["rules"][0]["backendRefs"].append(_ref(B))
    msg = _refusal(plan_weights(route, ME, OWNED, {A: 50, B: 50}))
    assert "llama-405b-int4 in namespace other (weight 50)" in msg, msg


def test_split_across_rules_refused() -> None:
    route = _route()
    b = route["spec"]["rules"][0]["backendRefs"].pop(1)
    route["spec"]["rules"][1]["backendRefs"] = [b]
    msg = _refusal(plan_weights(route, ME, OWNED, {A: 50, B: 50}))
    assert "different rules" in msg
    assert "llama-70b in rule 0" in msg and "llama-405b-int4 in rule 1" in msg
    assert "not a split" in msg
    _refusal(read_weights(route, OWNED))


def test_foreign_backendref_in_the_rule_refused_naming_it() -> None:
    route = _route()
    route["spec"]["rules"][0]["backendRefs"].append({"name": "canary", "port": 80, "weight": 5})
    msg = _refusal(plan_weights(route, ME, OWNED, {A: 50, B: 50}))
    assert "Service/canary (weight 5)" in msg
    assert "does not own" in msg and "distort" in msg


def test_duplicate_backendref_in_one_rule_refused() -> None:
    route = _route()
    route["spec"]["rules"][0]["backendRefs"].append(_ref(A, weight=1))
    msg = _refusal(plan_weights(route, ME, OWNED, {A: 50, B: 50}))
    assert "more than once" in msg
    assert "rules[0].backendRefs[0], rules[0].backendRefs[2]" in msg


def test_duplicate_backendref_in_two_rules_refused() -> None:
    route = _route()
    route["spec"]["rules"][1]["backendRefs"].append(_ref(B))
    msg = _refusal(plan_weights(route, ME, OWNED, {A: 50, B: 50}))
    assert "rules[0].backendRefs[1], rules[1].backendRefs[1]" in msg


@pytest.mark.parametrize(
    ("weights", "words"),
    [
        ({A: 60, B: 30}, "sum to 90, not 100"),
        ({A: 110, B: -10}, "never negative"),
        ({A: 100}, "no weight for InferencePool.inference.networking.k8s.io/llama-405b-int4"),
        (
            {A: 50, B: 40, BackendKey("x"): 10},
            "a weight for Service/x, which the policy does not own",
        ),
        ({A: True, B: 99}, "not an integer"),
        ({A: 50.0, B: 50}, "not an integer"),
    ],
)
def test_bad_weights_refused(weights: dict[BackendKey, Any], words: str) -> None:
    assert words in _refusal(plan_weights(_route(), ME, OWNED, weights))


def test_policy_naming_a_backend_twice_refused() -> None:
    assert "more than once" in _refusal(plan_weights(_route(), ME, [A, A, B], {A: 50, B: 50}))
    assert "owns no backendRef" in _refusal(plan_weights(_route(), ME, [], {}))


def _malformed_cases() -> list[tuple[str, Any]]:
    def edit(fn: Any) -> dict[str, Any]:
        r = _route()
        fn(r)
        return r

    return [
        ("no spec", edit(lambda r: r.pop("spec"))),
        ("no spec.rules", edit(lambda r: r["spec"].pop("rules"))),
        ("no spec.rules", edit(lambda r: r["spec"].update(rules=[]))),
        ("no spec.rules", edit(lambda r: r["spec"].update(rules={"a": 1}))),
        ("spec.rules[2] is not an object", edit(lambda r: r["spec"]["rules"].append("x"))),
        (
            "spec.rules[1].backendRefs is not a list",
            edit(lambda r: r["spec"]["rules"][1].update(backendRefs={"name": "x"})),
        ),
        (
            "spec.rules[1].backendRefs[0] is not an object",
            edit(lambda r: r["spec"]["rules"][1].update(backendRefs=["x"])),
        ),
        (
            "spec.rules[1].backendRefs[0] has no name",
            edit(lambda r: r["spec"]["rules"][1].update(backendRefs=[{"port": 80}])),
        ),
        (
            "spec.rules[0].backendRefs[1].weight is '50'",
            edit(lambda r: r["spec"]["rules"][0]["backendRefs"][1].update(weight="50")),
        ),
        (
            "spec.rules[0].backendRefs[1].weight is -1",
            edit(lambda r: r["spec"]["rules"][0]["backendRefs"][1].update(weight=-1)),
        ),
        ("kind is GRPCRoute", edit(lambda r: r.update(kind="GRPCRoute"))),
        ("apiVersion is v1", edit(lambda r: r.update(apiVersion="v1"))),
        (
            "metadata.annotations is not an object",
            edit(lambda r: r["metadata"].update(annotations=[])),
        ),
        ("not an object", ["a list"]),
    ]


@pytest.mark.parametrize(
    ("words", "route"), [pytest.param(w, r, id=w) for w, r in _malformed_cases()]
)
def test_malformed_route_refused(words: str, route: Any) -> None:
    msg = _refusal(plan_weights(route, ME, OWNED, {A: 50, B: 50}))
    assert "malformed" in msg and words in msg, msg
    _refusal(read_weights(route, OWNED))


def test_route_without_resource_version_refused() -> None:
    route = _route()
    del route["metadata"]["resourceVersion"]
    assert "resourceVersion" in _refusal(plan_weights(route, ME, OWNED, {A: 50, B: 50}))


def test_route_owned_by_another_policy_refused_naming_it() -> None:
    route = _route()
    route["metadata"]["annotations"][OWNER_ANNOTATION] = "chat/finance"
    msg = _refusal(plan_weights(route, ME, OWNED, {A: 50, B: 50}))
    assert "already split by policy chat/finance" in msg
    # Still foreign when the other owner is alive.
    live = {"chat/finance", "chat/support"}
    _refusal(plan_weights(route, ME, OWNED, {A: 50, B: 50}, live_owners=live))
    # Reading is not writing: the split can still be read.
    assert _weights(read_weights(route, OWNED)).owner == "chat/finance"


def test_route_of_a_deleted_owner_is_taken_over() -> None:
    route = _route()
    route["metadata"]["annotations"][OWNER_ANNOTATION] = "chat/finance"
    patch = _patch(plan_weights(route, ME, OWNED, {A: 50, B: 50}, live_owners={"chat/support"}))
    assert patch.took_over_from == "chat/finance"
    assert [op["path"] for op in patch.ops] == [
        "/metadata/resourceVersion",
        "/metadata/annotations/goodput.dev~1traffic-split-owner",
    ]
    assert route_owner(apply_patch(route, patch.ops)) == "chat/support"


def test_route_in_another_namespace_refused() -> None:
    msg = _refusal(plan_weights(_route(), RouteOwner("finance", "x"), OWNED, {A: 50, B: 50}))
    assert "in namespace chat and policy finance/x in finance" in msg


def test_release_removes_only_our_annotation() -> None:
    route = _route()
    assert release_ops(route, ME) == ()
    route = apply_patch(route, _patch(plan_weights(route, ME, OWNED, {A: 70, B: 30})).ops)
    ops = release_ops(route, ME)
    released = apply_patch(route, ops)
    assert route_owner(released) is None
    assert released["metadata"]["annotations"] == {"team": "serving"}
    assert _weights(read_weights(released, OWNED)).weights == {A: 70, B: 30}
    assert release_ops(route, RouteOwner("chat", "finance")) == ()


def test_refusals_leave_the_route_unchanged() -> None:
    """plan_weights never edits its input (the caller may reuse what it read)."""
    route = _route()
    route["spec"]["rules"][0]["backendRefs"].append({"name": "canary", "port": 80})
    before = copy.deepcopy(route)
    plan_weights(route, ME, OWNED, {A: 50, B: 50})
    plan_weights(_route(), ME, OWNED, {A: 70, B: 30})
    assert route == before


# -- the edge's error words (the API server's Status bodies as it sends them) -------------


def _api_exception(status: int, reason: str, body: dict[str, Any] | str) -> Exception:
    import json

    from kubernetes.client.exceptions import ApiException

    err = ApiException(status=status, reason=reason)
    err.body = body if isinstance(body, str) else json.dumps(body)
    return err


def test_read_errors_tell_a_missing_route_from_a_missing_kind() -> None:
    from goodput.actuator.route_kube import _read_error

    route_404 = _api_exception(
        404,
        "Not Found",
        {
            "kind": "Status",
            "message": 'httproutes.gateway.networking.k8s.io "llm" not found',
            "reason": "NotFound",
            "details": {"name": "llm", "group": "gateway.networking.k8s.io", "kind": "httproutes"},
            "code": 404,
        },
    )
    err = _read_error(route_404, "chat", "llm")
    assert err.reason is Reason.RouteNotFound and err.status == 404
    assert err.message == "HTTPRoute chat/llm not found; nothing changed"

    # An unserved resource: kube-apiserver answers in plain text, no Status.
    kind_404 = _api_exception(404, "Not Found", "404 page not found")
    err = _read_error(kind_404, "chat", "llm")
    assert err.reason is Reason.RouteNotFound
    assert err.message == (
        "the API server serves no HTTPRoute in gateway.networking.k8s.io/v1 (404 Not Found;"
        " are the Gateway API CRDs installed?); nothing changed"
    )

    forbidden = _api_exception(
        403,
        "Forbidden",
        {"kind": "Status", "message": 'httproutes.gateway.networking.k8s.io "llm" is forbidden'},
    )
    err = _read_error(forbidden, "chat", "llm")
    assert err.reason is Reason.RouteRefused
    assert "403 Forbidden: httproutes.gateway.networking.k8s.io" in err.message
    assert "grant the operator get on httproutes.gateway.networking.k8s.io" in err.message


# -- any route: a patch touches nothing but owned weights, else a refusal ------------------

_CANARY = BackendKey("canary")
_SVC_70B = BackendKey("llama-70b")  # same name as A, another kind: another backend
_NAMES = st.sampled_from([A, B, _CANARY, _SVC_70B])
# Mostly other backends, now and then one of ours, so both outcomes are common.
_ELSEWHERE = st.sampled_from([_CANARY, _SVC_70B, _CANARY, _SVC_70B, _CANARY, A, B])


@st.composite
def _random_routes(draw: st.DrawFn) -> dict[str, Any]:
    """Routes whose one rule holds A and B (in either order), sometimes with an extra
    backendRef, among other rules that sometimes name A or B too."""
    n_rules = draw(st.integers(1, 3))
    ours = draw(st.integers(0, n_rules - 1))
    rules = []
    for i in range(n_rules):
        if i == ours:
            keys = [*draw(st.permutations([A, B])), *draw(st.lists(_NAMES, max_size=1))]
        else:
            keys = draw(st.lists(_ELSEWHERE, max_size=3))
        keys = draw(st.permutations(keys))
        refs = []
        for key in keys:
            ref = _ref(key, port=80)
            w = draw(st.none() | st.integers(0, 1000))
            if w is not None:
                ref["weight"] = w
            refs.append(ref)
        rules.append({"matches": [{"path": {"value": f"/{i}"}}], "backendRefs": refs})
    route = _route()
    route["spec"]["rules"] = rules
    if draw(st.booleans()):
        route["metadata"]["annotations"][OWNER_ANNOTATION] = draw(
            st.sampled_from(["chat/support", "chat/finance"])
        )
    return route


@given(_random_routes(), st.integers(0, 100))
def test_any_route_is_patched_only_in_owned_weights_or_refused(
    route: dict[str, Any], a: int
) -> None:
    result = plan_weights(route, ME, OWNED, {A: a, B: 100 - a})
    # The oracle: refused exactly when an owned backendRef is named twice, the rule that
    # holds ours holds another one, or another policy owns the route.
    keys = [[BackendKey.of(r) for r in rule["backendRefs"]] for rule in route["spec"]["rules"]]
    everywhere = [k for rule in keys for k in rule]
    twice = any(everywhere.count(k) > 1 for k in OWNED)
    crowded = any(A in rule and len(rule) > 2 for rule in keys)
    foreign = route_owner(route) == "chat/finance"
    assert isinstance(result, RouteRefusal) == (twice or crowded or foreign), result
    if isinstance(result, RouteRefusal):
        assert result.reason is Reason.RouteRefused
        return
    after = apply_patch(route, result.ops)
    assert _weights(read_weights(after, OWNED)).weights == {A: a, B: 100 - a}
    assert route_owner(after) == "chat/support"
    # The rule holds exactly the owned backendRefs; all else is as it was.
    rule = after["spec"]["rules"][result.before.rule]["backendRefs"]
    assert sorted(BackendKey.of(r) for r in rule) == sorted(OWNED)
    for r in (*rule, *route["spec"]["rules"][result.before.rule]["backendRefs"]):
        r.pop("weight", None)
    after["metadata"]["annotations"].pop(OWNER_ANNOTATION)
    original = copy.deepcopy(route)
    original["metadata"]["annotations"].pop(OWNER_ANNOTATION, None)
    assert after == original
