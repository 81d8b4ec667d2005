"""The traffic split's pure edge: the JSON patch that sets a policy's weights on a
Gateway API HTTPRoute, and the routes it must leave alone.

A policy splits one service's traffic between its variants by the ``weight`` of each
variant's backendRef in one rule of an HTTPRoute (``gateway.networking.k8s.io/v1``).
A gateway sends a request matched by a rule to one of the rule's backendRefs with
probability weight / (sum of the rule's weights), so the operator's weights are shares
only when its backendRefs are alone in one rule, each once. Anything else (a backend the
policy does not own beside them, a split over two rules, a duplicate) would make the
gateway serve a split other than the one planned and reported, so the route is refused,
with words that say what to change, and nothing is written.

One writer per route, as one writer per workload (``claims``): the owner is recorded on
the route itself, in the ``goodput.dev/traffic-split-owner`` annotation, written in the
same patch as the weights, so every operator replica and every person reading the route
sees the same answer. The first policy to split a route keeps it; another one is
refused naming the owner. As in ``claims``, a policy that no longer exists (or is being
deleted) owns nothing: when the caller passes the live policies, a route annotated by
none of them may be taken over.

The patch only ever sets ``weight`` fields of owned backendRefs and the owner
annotation; rules, matches, filters, other backendRefs' fields and everything else of
the route are untouched. It begins with a ``test`` of ``metadata.resourceVersion``: the
API server applies it to the object as it is now, so a route edited since it was read
fails the test and is not patched (optimistic concurrency, as an update would do).

No I/O here: ``route_kube`` reads the route and sends the patch.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from goodput.reasons import Reason

GROUP = "gateway.networking.k8s.io"
VERSION = "v1"
PLURAL = "httproutes"
KIND = "HTTPRoute"
OWNER_ANNOTATION = "goodput.dev/traffic-split-owner"
# Gateway API: "If unspecified, weight defaults to 1" (the CRD's default, too).
DEFAULT_WEIGHT = 1
# The planner's weights are percentages: they sum to this, so the written weights are
# the shares themselves for anyone reading the route.
WEIGHT_TOTAL = 100

JsonPatchOp = dict[str, Any]


@dataclass(frozen=True, order=True)
class BackendKey:
    """A backend as a backendRef names it, with the Gateway API's defaults filled in
    (group "" is the core group, kind ``Service``), so ``{name: x}`` and ``{group: "",
    kind: Service, name: x}`` are one backend. It is local to the route's namespace: a
    backendRef with another ``namespace`` is another backend."""

    name: str
    group: str = ""
    kind: str = "Service"

    @classmethod
    def of(cls, ref: Mapping[str, Any]) -> BackendKey:
        return cls(
            name=str(ref.get("name") or ""),
            group=str(ref.get("group") or ""),
            kind=str(ref.get("kind") or "Service"),
        )

    def __str__(self) -> str:
        # kubectl's spelling: kind.group/name, the group left out for the core group.
        kind = f"{self.kind}.{self.group}" if self.group else self.kind
        return f"{kind}/{self.name}"


@dataclass(frozen=True)
class RouteOwner:
    """The policy that writes a route's weights, as recorded in the annotation."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class RouteRefusal:
    """Why a route is not edited (``RouteRefused``) or not there (``RouteNotFound``),
    in words a person can act on. Nothing was written."""

    reason: Reason
    message: str


@dataclass(frozen=True)
class RouteWeights:
    """The owned backendRefs' weights as the route has them now (unset counts as the
    Gateway API default, 1) and each one's share, in percent, of the traffic of its rule
    (every backendRef of the rule counts: that is what the gateway does)."""

    route: str  # namespace/name, for messages
    rule: int  # index in spec.rules
    weights: Mapping[BackendKey, int]
    shares: Mapping[BackendKey, float]
    rule_total: int  # the sum of every weight in the rule, owned or not
    owner: str | None  # the owner annotation, verbatim
    resource_version: str | None


@dataclass(frozen=True)
class RoutePatch:
    """A JSON patch (RFC 6902) for the route, empty when the route already has these
    weights and this owner, so the caller need not write at all."""

    ops: tuple[JsonPatchOp, ...]
    before: RouteWeights
    weights: Mapping[BackendKey, int]
    took_over_from: str | None = field(default=None)  # a stale owner's annotation

    @property
    def changed(self) -> bool:
        return bool(self.ops)


@dataclass(frozen=True)
class RouteUpdate:
    """What a write did: the split before and after (as the API server returned the
    route), whether anything was written, and the stale owner taken over, if any."""

    before: RouteWeights
    after: RouteWeights
    written: bool
    took_over_from: str | None = None


class RouteError(Exception):
    """A route that was not edited: a refusal of ours (``reason`` from the refusal) or
    the API server's (``status`` set, ``message`` in its words). Every implementation
    of the traffic router raises this one type, so the tick has one thing to catch."""

    def __init__(self, reason: Reason, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status

    @classmethod
    def of(cls, refusal: RouteRefusal) -> RouteError:
        return cls(refusal.reason, refusal.message)


class RouteConflict(RouteError):
    """The route changed between the read and the write (its resourceVersion moved):
    someone else edits it too. Nothing was written; the next tick reads it afresh."""


def route_id(route: Mapping[str, Any]) -> str:
    meta = route.get("metadata") if isinstance(route, Mapping) else None
    meta = meta if isinstance(meta, Mapping) else {}
    name = str(meta.get("name") or "?")
    ns = meta.get("namespace")
    return f"{ns}/{name}" if ns else name


def route_owner(route: Mapping[str, Any]) -> str | None:
    """The owner annotation of a route, or None."""
    meta = route.get("metadata") if isinstance(route, Mapping) else None
    annotations = meta.get("annotations") if isinstance(meta, Mapping) else None
    if not isinstance(annotations, Mapping):
        return None
    value = annotations.get(OWNER_ANNOTATION)
    return str(value) if value is not None else None


def read_weights(
    route: Mapping[str, Any] | None, owned: Sequence[BackendKey]
) -> RouteWeights | RouteRefusal:
    """The current split of the owned backendRefs. Refused only when there is no split
    to read: no route, a malformed one, an owned backendRef missing, twice, or the
    owned ones in different rules. A foreign owner or foreign backendRefs beside ours
    do not stop a read (the shares count them): only writing is refused for those."""
    found = _locate(route, owned)
    if isinstance(found, RouteRefusal):
        return found
    return found.weights


def plan_weights(
    route: Mapping[str, Any] | None,
    owner: RouteOwner,
    owned: Sequence[BackendKey],
    weights: Mapping[BackendKey, int],
    *,
    live_owners: Collection[str] | None = None,
) -> RoutePatch | RouteRefusal:
    """The patch that gives each owned backendRef its weight and records ``owner`` on
    the route, or why the route must not be edited.

    ``owned`` are the policy's backendRefs (one per variant); ``weights`` must name
    exactly those, be non-negative integers and sum to 100. ``live_owners``, when given,
    are the ``namespace/name`` of the policies that exist and are not being deleted: an
    owner annotation naming none of them is stale and the route may be taken over.
    Without it every other owner is foreign.
    """
    bad_weights = _check_weights(owned, weights)
    if bad_weights is not None:
        return RouteRefusal(Reason.RouteRefused, bad_weights)
    found = _locate(route, owned)
    if isinstance(found, RouteRefusal):
        return found
    assert route is not None  # _locate refuses a missing route
    where = f"HTTPRoute {found.weights.route}"

    ns = _namespace(route)
    if ns is not None and ns != owner.namespace:
        return _refuse(
            f"{where} is in namespace {ns} and policy {owner} in {owner.namespace}: a policy"
            " splits the traffic of routes in its own namespace only"
        )

    current_owner = found.weights.owner
    took_over: str | None = None
    if current_owner is not None and current_owner != str(owner):
        if live_owners is None or current_owner in live_owners:
            return _refuse(
                f"{where} is already split by policy {current_owner} (annotation"
                f" {OWNER_ANNOTATION}); one policy writes a route's weights: point"
                f" policy {owner} at another route, or delete {current_owner} (or remove"
                " the annotation) to hand the route over"
            )
        took_over = current_owner

    rule = found.rule_refs
    foreign = [(j, ref) for j, ref in enumerate(rule) if j not in found.positions.values()]
    if foreign:
        listed = ", ".join(f"{_ref_text(ref, ns)} (weight {_weight(ref)})" for _, ref in foreign)
        its, it = ("its", "it") if len(foreign) == 1 else ("their", "them")
        return _refuse(
            f"rule {found.weights.rule} of {where} also sends traffic to {listed}, which"
            f" policy {owner} does not own: {its} weight would distort the shares the policy"
            f" sets; move {it} to a rule of {its} own or declare {it} as a variant of the policy"
        )

    rv = found.weights.resource_version
    if not rv:
        return _refuse(
            f"{where} has no metadata.resourceVersion (was it read from the API server?):"
            " without it a concurrent edit could not be detected"
        )

    ops: list[JsonPatchOp] = []
    base = f"/spec/rules/{found.weights.rule}/backendRefs"
    for key in owned:
        j = found.positions[key]
        ref = rule[j]
        if "weight" in ref and ref["weight"] == weights[key]:
            continue
        op = "replace" if "weight" in ref else "add"
        ops.append({"op": op, "path": f"{base}/{j}/weight", "value": int(weights[key])})
    if current_owner != str(owner):
        meta = route.get("metadata") or {}
        if isinstance(meta.get("annotations"), Mapping):
            path = "/metadata/annotations/" + _pointer_token(OWNER_ANNOTATION)
            ops.append({"op": "add", "path": path, "value": str(owner)})
        else:
            ops.append(
                {
                    "op": "add",
                    "path": "/metadata/annotations",
                    "value": {OWNER_ANNOTATION: str(owner)},
                }
            )
    if ops:
        ops.insert(0, {"op": "test", "path": "/metadata/resourceVersion", "value": rv})
    return RoutePatch(
        ops=tuple(ops),
        before=found.weights,
        weights={k: int(weights[k]) for k in owned},
        took_over_from=took_over,
    )


def release_ops(route: Mapping[str, Any], owner: RouteOwner) -> tuple[JsonPatchOp, ...]:
    """The patch that removes ``owner``'s annotation (a policy going away hands the
    route back); empty when the route is not annotated by ``owner``. The weights stay:
    traffic keeps flowing as last split."""
    if route_owner(route) != str(owner):
        return ()
    rv = (route.get("metadata") or {}).get("resourceVersion")
    ops: list[JsonPatchOp] = []
    if rv:
        ops.append({"op": "test", "path": "/metadata/resourceVersion", "value": str(rv)})
    ops.append(
        {"op": "remove", "path": "/metadata/annotations/" + _pointer_token(OWNER_ANNOTATION)}
    )
    return tuple(ops)


# -- internals ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Located:
    weights: RouteWeights
    rule_refs: Sequence[Mapping[str, Any]]
    positions: Mapping[BackendKey, int]  # owned key -> index in the rule's backendRefs


def _refuse(message: str) -> RouteRefusal:
    return RouteRefusal(Reason.RouteRefused, message + "; nothing changed")


def _check_weights(owned: Sequence[BackendKey], weights: Mapping[BackendKey, int]) -> str | None:
    if not owned:
        return "the policy owns no backendRef to weight; nothing changed"
    if len(set(owned)) != len(owned):
        dup = sorted({str(k) for k in owned if list(owned).count(k) > 1})
        return f"the policy names backendRef {', '.join(dup)} more than once; nothing changed"
    missing = [str(k) for k in owned if k not in weights]
    extra = sorted(str(k) for k in weights if k not in set(owned))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"no weight for {', '.join(missing)}")
        if extra:
            parts.append(f"a weight for {', '.join(extra)}, which the policy does not own")
        return (
            f"the weights do not match the policy's backendRefs ({'; '.join(parts)});"
            " nothing changed"
        )
    for k in owned:
        w = weights[k]
        if isinstance(w, bool) or not isinstance(w, int):
            return f"the weight of {k} is {w!r}, not an integer; nothing changed"
        if w < 0:
            return f"the weight of {k} is {w}: weights are never negative; nothing changed"
    total = sum(weights[k] for k in owned)
    if total != WEIGHT_TOTAL:
        split = ", ".join(f"{k}={weights[k]}" for k in owned)
        return (
            f"the weights ({split}) sum to {total}, not {WEIGHT_TOTAL}: they are shares in"
            " percent; nothing changed"
        )
    return None


def _namespace(route: Mapping[str, Any]) -> str | None:
    meta = route.get("metadata")
    ns = meta.get("namespace") if isinstance(meta, Mapping) else None
    return str(ns) if ns else None


def _weight(ref: Mapping[str, Any]) -> int:
    w = ref.get("weight")
    return DEFAULT_WEIGHT if w is None else int(w)


def _ref_text(ref: Mapping[str, Any], route_ns: str | None) -> str:
    text = str(BackendKey.of(ref))
    ns = ref.get("namespace")
    if ns and ns != route_ns:
        text += f" in namespace {ns}"
    return text


def _pointer_token(token: str) -> str:
    """RFC 6901: ``~`` and ``/`` inside one path segment."""
    return token.replace("~", "~0").replace("/", "~1")


def _malformed(route: Mapping[str, Any]) -> str | None:
    """Why a route cannot be read as an HTTPRoute, or None."""
    api_version = route.get("apiVersion")
    if api_version is not None and not str(api_version).startswith(f"{GROUP}/"):
        return f"apiVersion is {api_version}, not {GROUP}/{VERSION}"
    kind = route.get("kind")
    if kind is not None and kind != KIND:
        return f"kind is {kind}, not {KIND}"
    meta = route.get("metadata")
    if meta is not None and not isinstance(meta, Mapping):
        return "metadata is not an object"
    annotations = meta.get("annotations") if isinstance(meta, Mapping) else None
    if annotations is not None and not isinstance(annotations, Mapping):
        return "metadata.annotations is not an object"
    spec = route.get("spec")
    if not isinstance(spec, Mapping):
        return "it has no spec"
    rules = spec.get("rules")
    if not isinstance(rules, list) or not rules:
        return "it has no spec.rules"
    for i, rule in enumerate(rules):
        if not isinstance(rule, Mapping):
            return f"spec.rules[{i}] is not an object"
        refs = rule.get("backendRefs")
        if refs is None:
            continue
        if not isinstance(refs, list):
            return f"spec.rules[{i}].backendRefs is not a list"
        for j, ref in enumerate(refs):
            at = f"spec.rules[{i}].backendRefs[{j}]"
            if not isinstance(ref, Mapping):
                return f"{at} is not an object"
            if not isinstance(ref.get("name"), str) or not ref["name"]:
                return f"{at} has no name"
            w = ref.get("weight")
            if w is not None and (isinstance(w, bool) or not isinstance(w, int) or w < 0):
                return f"{at}.weight is {w!r}, not a non-negative integer"
    return None


def _locate(
    route: Mapping[str, Any] | None, owned: Sequence[BackendKey]
) -> _Located | RouteRefusal:
    """Find the one rule that holds every owned backendRef, each exactly once."""
    if route is None:
        return RouteRefusal(Reason.RouteNotFound, "the HTTPRoute does not exist; nothing changed")
    if not isinstance(route, Mapping):
        return _refuse(f"the HTTPRoute is malformed ({type(route).__name__}, not an object)")
    where = f"HTTPRoute {route_id(route)}"
    why = _malformed(route)
    if why is not None:
        return _refuse(f"{where} is malformed: {why}")
    if not owned:
        return _refuse("the policy owns no backendRef to look for")
    ns = _namespace(route)
    rules: list[Mapping[str, Any]] = route["spec"]["rules"]
    wanted = set(owned)
    seen: dict[BackendKey, list[tuple[int, int]]] = {k: [] for k in owned}
    for i, rule in enumerate(rules):
        for j, ref in enumerate(rule.get("backendRefs") or []):
            ref_ns = ref.get("namespace")
            if ref_ns and ref_ns != ns:
                continue  # another namespace's backend of the same name is not ours
            key = BackendKey.of(ref)
            if key in wanted:
                seen[key].append((i, j))

    absent = [str(k) for k in owned if not seen[k]]
    if absent:
        names = ", ".join(absent)
        return _refuse(
            f"{where} has no backendRef {names} (in its own namespace); add it to the rule"
            " whose traffic the policy splits"
        )
    twice = {k: at for k, at in seen.items() if len(at) > 1}
    if twice:
        listed = "; ".join(
            f"{k} at " + ", ".join(f"rules[{i}].backendRefs[{j}]" for i, j in at)
            for k, at in sorted(twice.items())
        )
        return _refuse(
            f"{where} names a backendRef more than once ({listed}): the operator cannot tell"
            " which one carries the share; keep one backendRef per variant"
        )
    rule_of = {k: at[0][0] for k, at in seen.items()}
    if len(set(rule_of.values())) > 1:
        listed = ", ".join(f"{k} in rule {rule_of[k]}" for k in owned)
        return _refuse(
            f"the policy's backendRefs are in different rules of {where} ({listed}): weights"
            " divide traffic within one rule only, so a split across rules is not a split;"
            " put them in one rule"
        )
    rule_index = next(iter(rule_of.values()))
    refs: list[Mapping[str, Any]] = rules[rule_index].get("backendRefs") or []
    positions = {k: seen[k][0][1] for k in owned}
    current = {k: _weight(refs[positions[k]]) for k in owned}
    total = sum(_weight(ref) for ref in refs)
    shares = {k: (100.0 * current[k] / total if total else 0.0) for k in owned}
    meta = route.get("metadata") or {}
    rv = meta.get("resourceVersion")
    return _Located(
        weights=RouteWeights(
            route=route_id(route),
            rule=rule_index,
            weights=current,
            shares=shares,
            rule_total=total,
            owner=route_owner(route),
            resource_version=str(rv) if rv else None,
        ),
        rule_refs=refs,
        positions=positions,
    )
