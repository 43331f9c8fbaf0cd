"""Neutral routes: release and split semantics computed once, the same for both providers.

Expected weights are computed from the values each test puts in the spec. The
cross-provider tests plan one spec for Istio and for Linkerd and read back what
each serialised (VirtualService http routes, HTTPRoute / GRPCRoute rules).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from clusters.loader import spec_from_config
from clusters.spec import Spec
from stacks.build import PROVIDERS, build_plan
from stacks.plan import MeshPlan
from stacks.traffic.routes import Destination, Route, ServiceRoutes

CLUSTERS = ["east", "west", "north"]
CANARY_HEADER = {"name": "x-canary", "exact": "1"}


def make_spec(provider: str, service: dict[str, Any], clusters: list[str] | None = None) -> Spec:
    """One network, so the Linkerd links are gateway-less and Istio needs no gateways."""
    names = clusters or CLUSTERS
    config = {
        "mesh": {"provider": provider, "id": "mesh1"},
        "clusters": [{"name": n, "apiServer": f"https://10.0.0.{i + 1}:6443", "network": "flat"}
                     for i, n in enumerate(names)],
        "services": [copy.deepcopy(service)],
    }
    return spec_from_config({f"meshboot:{k}": v for k, v in config.items()}, "test")


def reviews(**policy: Any) -> dict[str, Any]:
    return {"name": "reviews", "namespace": "shop", "ports": [{"name": "http", "port": 9080}],
            "clusters": ["east", "west"], **policy}


def canary(weight: int, header: dict[str, Any] | None = CANARY_HEADER) -> dict[str, Any]:
    c: dict[str, Any] = {"stable": "v1", "candidate": "v2", "weight": weight}
    if header is not None:
        c["header"] = header
    return reviews(versions=["v1", "v2"], release={"canary": c})


def weights(route: Route) -> dict[str | None, int]:
    """destination (version, else cluster, else None for the whole service) -> weight."""
    out: dict[str | None, int] = {}
    for d in route.destinations:
        out[d.version if d.version is not None else d.cluster] = d.weight
    return out


# ------------------------------------------------------------------ the neutral model
@pytest.mark.parametrize("provider", ["istio", "linkerd"])
def test_canary_with_header_is_the_same_for_every_caller_and_provider(provider: str) -> None:
    spec = make_spec(provider, canary(10))
    table = ServiceRoutes(spec, spec.services[0])
    assert not table.per_caller
    routes = table.for_caller("east")
    assert [r.match is not None for r in routes] == [True, False]  # header first, then the split
    header, split = routes
    assert header.match is not None and header.match.header is not None
    assert (header.match.header.name, header.match.header.exact) == ("x-canary", "1")
    assert weights(header) == {"v2": 100}
    assert weights(split) == {"v1": 90, "v2": 10}
    for caller in CLUSTERS:  # north does not run reviews: same routes all the same
        assert table.for_caller(caller) == routes
    other = make_spec("linkerd" if provider == "istio" else "istio", canary(10))
    assert ServiceRoutes(other, other.services[0]).for_caller("east") == routes


@pytest.mark.parametrize("weight,expected",
                         [(0, {"v1": 100}), (100, {"v2": 100}), (35, {"v1": 65, "v2": 35})])
def test_canary_leaves_out_versions_without_a_share(weight: int, expected: dict[str, int]) -> None:
    spec = make_spec("istio", canary(weight, header=None))
    routes = ServiceRoutes(spec, spec.services[0]).for_caller("east")
    assert len(routes) == 1 and routes[0].match is None
    assert weights(routes[0]) == expected


def test_blue_green_preview_header_then_active() -> None:
    spec = make_spec("istio", reviews(versions=["blue", "green"], release={"blueGreen": {
        "active": "blue", "preview": "green", "header": {"name": "x-preview", "exact": "on"}}}))
    routes = ServiceRoutes(spec, spec.services[0]).for_caller("west")
    assert [weights(r) for r in routes] == [{"green": 100}, {"blue": 100}]
    assert routes[0].match is not None and routes[1].match is None


def test_ab_test_groups_in_order_then_default() -> None:
    spec = make_spec("istio", reviews(versions=["v1", "v2", "v3"], release={"abTest": {
        "groups": [{"name": "beta", "version": "v3", "header": {"name": "x-group", "exact": "beta"}},
                   {"name": "api", "version": "v2", "pathPrefix": "/api"}],
        "default": {"v1": 70, "v2": 30, "v3": 0}}}))
    routes = ServiceRoutes(spec, spec.services[0]).for_caller("east")
    assert [r.name for r in routes] == ["ab-beta", "ab-api", "ab-default"]
    beta, api, default = routes
    assert beta.match is not None and beta.match.header is not None and beta.match.path_prefix is None
    assert api.match is not None and api.match.header is None and api.match.path_prefix == "/api"
    assert [weights(beta), weights(api), weights(default)] == [{"v3": 100}, {"v2": 100},
                                                               {"v1": 70, "v2": 30}]


@pytest.mark.parametrize("share", [0, 50, 71, 80, 100])
def test_local_share_differs_per_caller(share: int) -> None:
    running = ["east", "west", "north"]
    spec = make_spec("istio", reviews(clusters=running, routing={"localShare": share}))
    table = ServiceRoutes(spec, spec.services[0])
    assert table.per_caller
    for caller in running:
        (route,) = table.for_caller(caller)
        got = weights(route)
        assert sum(got.values()) == 100
        assert got.get(caller, 0) == share
        rest = 100 - share
        others = [c for c in running if c != caller]
        # the remainder of an uneven split goes to the first of the others, in spec order
        expected = {c: rest // 2 + (1 if i < rest % 2 else 0) for i, c in enumerate(others)}
        assert {c: w for c, w in got.items() if c != caller} == {c: w for c, w in expected.items() if w}
        assert all(w > 0 for w in got.values())


def test_callers_without_the_service_spread_evenly() -> None:
    spec = make_spec("istio", reviews(routing={"localShare": 90}))  # runs in east, west
    (route,) = ServiceRoutes(spec, spec.services[0]).for_caller("north")
    assert weights(route) == {"east": 50, "west": 50}


def test_explicit_weights_are_the_same_for_every_caller() -> None:
    spec = make_spec("istio", reviews(routing={"weights": {"east": 30, "west": 70}}))
    table = ServiceRoutes(spec, spec.services[0])
    for caller in CLUSTERS:
        (route,) = table.for_caller(caller)
        assert weights(route) == {"east": 30, "west": 70}


def test_no_release_or_split_is_the_whole_service() -> None:
    spec = make_spec("istio", reviews(timeout="2s"))
    (route,) = ServiceRoutes(spec, spec.services[0]).for_caller("east")
    assert route.match is None and route.destinations == (Destination(100),)


# ------------------------------------------------------------- both serialisations
def _policy_objects(plan: MeshPlan, cluster: str, kind: str) -> list[dict[str, Any]]:
    cp = plan.cluster(cluster)
    return [o for s in cp.steps if s.name == "policy" for o in s.objects if o["kind"] == kind]


def _istio_match(cond: dict[str, Any]) -> tuple[Any, ...]:
    out: list[Any] = []
    for name, value in (cond.get("headers") or {}).items():
        out.append(("header", name, value["exact"]))
    if "uri" in cond:
        out.append(("path", cond["uri"]["prefix"]))
    return tuple(out)


def istio_routes(plan: MeshPlan, cluster: str) -> list[tuple[tuple[Any, ...] | None, dict[str, int]]]:
    """(match, destination subset -> weight) per http route of the reviews VirtualService."""
    (vs,) = [o for o in _policy_objects(plan, cluster, "VirtualService")
             if o["metadata"]["name"] == "reviews"]
    out = []
    for route in vs["spec"]["http"]:
        matches = route.get("match")
        match = _istio_match(matches[0]) if matches else None
        dests = route["route"]
        out.append((match, {d["destination"].get("subset", "*"): d.get("weight", 100) for d in dests}))
    return out


def _linkerd_match(m: dict[str, Any]) -> tuple[Any, ...]:
    out: list[Any] = []
    for h in m.get("headers", []):
        assert h["type"] == "Exact"
        out.append(("header", h["name"], h["value"]))
    if "path" in m:
        out.append(("path", m["path"]["value"]))
    return tuple(out)


def linkerd_routes(plan: MeshPlan, cluster: str, kind: str = "HTTPRoute", port: str = "http"
                   ) -> list[tuple[tuple[Any, ...] | None, dict[str, int]]]:
    """(match, backend -> weight) per rule of the reviews route; backends named like Istio
    subsets: the version, the cluster (the local Service is ``cluster``) or ``*``."""
    (route,) = [o for o in _policy_objects(plan, cluster, kind)
                if o["metadata"]["name"] == f"reviews-{port}"]
    out = []
    for rule in route["spec"]["rules"]:
        matches = rule.get("matches")
        match = _linkerd_match(matches[0]) if matches else None
        backends = {}
        for b in rule["backendRefs"]:
            name = b["name"].removeprefix("reviews-") if b["name"] != "reviews" else None
            backends[name] = b["weight"]
        out.append((match, backends))
    return out


def _neutral(routes: tuple[Route, ...], local: str) -> list[tuple[tuple[Any, ...] | None, dict[str, int]]]:
    out = []
    for r in routes:
        match = None
        if r.match is not None:
            parts: list[Any] = []
            if r.match.header is not None:
                parts.append(("header", r.match.header.name, r.match.header.exact))
            if r.match.path_prefix is not None:
                parts.append(("path", r.match.path_prefix))
            match = tuple(parts)
        out.append((match, {str(k) if k is not None else "*": w for k, w in weights(r).items()}))
    return out


def _linkerd_as_istio(routes: list[tuple[Any, dict[str | None, int]]], cluster: str, split: bool
                      ) -> list[tuple[Any, dict[str, int]]]:
    """Linkerd's local Service stands for the caller's cluster in a split, else the whole service."""
    return [(m, {(k if k is not None else cluster if split else "*"): w for k, w in b.items()})
            for m, b in routes]


RELEASES = {
    "canary 90/10 with header": canary(10),
    "blue-green": reviews(versions=["v1", "v2"], release={"blueGreen": {
        "active": "v1", "preview": "v2", "header": {"name": "x-preview", "exact": "yes"}}}),
    "a/b": reviews(versions=["v1", "v2"], release={"abTest": {
        "groups": [{"name": "beta", "version": "v2", "header": {"name": "x-group", "exact": "beta"},
                    "pathPrefix": "/beta"}],
        "default": {"v1": 80, "v2": 20}}}),
    "local share": reviews(clusters=["east", "west", "north"], routing={"localShare": 70}),
    "weights": reviews(routing={"weights": {"east": 25, "west": 75}}),
}


@pytest.mark.parametrize("service", RELEASES.values(), ids=RELEASES.keys())
def test_istio_and_linkerd_agree_with_the_neutral_routes(service: dict[str, Any]) -> None:
    istio = make_spec("istio", service)
    linkerd = make_spec("linkerd", service)
    istio_plan, linkerd_plan = build_plan(istio, "test"), build_plan(linkerd, "test")
    table = ServiceRoutes(istio, istio.services[0])
    # Linkerd routes in the clusters that run the service (its local Service is the parent);
    # Istio in every primary (all three clusters are primaries here).
    for cluster in linkerd.services[0].clusters:
        neutral = _neutral(table.for_caller(cluster), cluster)
        assert istio_routes(istio_plan, cluster) == neutral
        raw = linkerd_routes(linkerd_plan, cluster)
        # a cluster has no mirror of itself: its share goes to the local Service
        assert all(cluster not in backends for _, backends in raw)
        assert _linkerd_as_istio(raw, cluster, table.per_caller) == neutral


def test_every_variant_of_a_route_keeps_its_weights() -> None:
    """Retries and faults add route variants (Istio) and retry routes (Linkerd): same weights."""
    retries = {"attempts": 2, "retryOn": ["5xx"]}
    istio = make_spec("istio", {**canary(10), "retries": retries,
                                "fault": {"header": {"name": "x-chaos", "exact": "on"},
                                          "abort": {"httpStatus": 503}}})
    linkerd = make_spec("linkerd", {**canary(10), "retries": retries})
    expected = [{"v2": 100}, {"v1": 90, "v2": 10}]
    vs = [o for o in _policy_objects(build_plan(istio, "t"), "east", "VirtualService")][0]
    http = vs["spec"]["http"]
    # per neutral route: fault+retry, fault, retry, plain
    assert [r["name"] for r in http[:4]] == ["canary-header-fault-retry", "canary-header-fault",
                                              "canary-header-retry", "canary-header"]
    assert [{d["destination"]["subset"]: d.get("weight", 100) for d in r["route"]} for r in http] \
        == [expected[0]] * 4 + [expected[1]] * 4
    plan = build_plan(linkerd, "t")
    for name in ("reviews-http", "reviews-http-retry"):
        (route,) = [o for o in _policy_objects(plan, "east", "HTTPRoute") if o["metadata"]["name"] == name]
        assert [{b["name"].removeprefix("reviews-"): b["weight"] for b in rule["backendRefs"]}
                for rule in route["spec"]["rules"]] == expected


def test_grpc_port_serialises_the_same_routes() -> None:
    service = {**canary(10), "ports": [{"name": "grpc", "port": 9090, "protocol": "GRPC"}]}
    linkerd = make_spec("linkerd", service)
    plan = build_plan(linkerd, "t")
    got = linkerd_routes(plan, "west", kind="GRPCRoute", port="grpc")
    assert got == linkerd_routes(build_plan(make_spec("linkerd", canary(10)), "t"), "west")
    assert [b for _, b in got] == [{"v2": 100}, {"v1": 90, "v2": 10}]


def test_one_registry_builds_both_providers() -> None:
    assert set(PROVIDERS) == {"istio", "linkerd"}
    for provider, builder in PROVIDERS.items():
        spec = make_spec(provider, canary(10))
        assert builder(spec, "t").provider == provider
