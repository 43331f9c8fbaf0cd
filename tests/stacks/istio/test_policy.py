"""Istio policy objects: strict validity, placement, invariants (rendered through the CLI)."""

from __future__ import annotations

import filecmp
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.stacks.istio.helpers import (
    CLUSTERS,
    GATEWAYS,
    NETWORKS,
    PRIMARIES,
    REGIONS,
    ZONES,
    render,
    service,
    three_cluster_spec,
)
from tests.support.policy_examples import full_policy_mesh, full_policy_service
from tests.support.validation import load_tree, validate_object

IDEMPOTENT = {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"}
CHAIN = [("us-east1", "us-west1"), ("us-west1", "eu-west1"), ("eu-west1", "us-east1")]


def full_spec(cross_cluster: str = "discovery") -> dict[str, Any]:
    """Every feature: all three releases, local share, failover, full mesh-wide policy."""
    # serviceEntry (a config-only mesh) keeps reviews' per-cluster shares in east's store.
    reviews = ["east", "west", "central"] if cross_cluster == "discovery" else ["east", "central"]
    services = [
        full_policy_service("reviews", "shop", reviews),
        full_policy_service("ratings", "shop", ["west"], release="canary", failover=CHAIN),
        full_policy_service("details", "shop", ["west", "central"], release="blueGreen"),
        full_policy_service("orders", "billing", ["east"], release="abTest", failover=CHAIN[:1]),
    ]
    mesh = full_policy_mesh(["shop", "billing"])
    mesh["traffic"]["crossCluster"] = cross_cluster
    return three_cluster_spec(services, **mesh)


def policy_objects(out: Path, cluster: str) -> list[dict[str, Any]]:
    """The objects of the cluster's policy step (NN-policy.yaml)."""
    files = list((out / cluster).glob("*-policy.yaml"))
    assert len(files) <= 1
    return [d for f in files for d in yaml.safe_load_all(f.read_text()) if d]


def kind(tree: dict[str, list[dict[str, Any]]], cluster: str, k: str) -> list[dict[str, Any]]:
    return [o for o in tree[cluster] if o["kind"] == k]


@pytest.fixture(scope="module")
def full_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The render of full_spec(), shared by the tests that only read it."""
    return render(tmp_path_factory.mktemp("full"), full_spec())


@pytest.fixture(scope="module")
def tree(full_out: Path) -> dict[str, list[dict[str, Any]]]:
    return load_tree(full_out)


@pytest.mark.parametrize("cross_cluster", ["discovery", "serviceEntry"])
def test_every_object_validates_strictly(tmp_path: Path, full_out: Path, cross_cluster: str) -> None:
    out = full_out if cross_cluster == "discovery" else render(tmp_path, full_spec(cross_cluster))
    tree = load_tree(out)
    kinds = Counter(o["kind"] for objs in tree.values() for o in objs)
    expected = {"DestinationRule", "VirtualService", "PeerAuthentication", "AuthorizationPolicy",
                "RequestAuthentication", "Sidecar",
                "ServiceEntry" if cross_cluster == "serviceEntry" else "Service"}
    assert expected <= set(kinds), kinds
    for objs in tree.values():
        for obj in objs:
            validate_object(obj)


def test_render_is_deterministic(tmp_path: Path) -> None:
    a = render(tmp_path, full_spec(), "a")
    b = render(tmp_path, full_spec(), "b")
    for cluster in CLUSTERS:
        files = sorted(p.name for p in (a / cluster).glob("*.yaml"))
        assert any("policy" in f for f in files)
        match, mismatch, errors = filecmp.cmpfiles(a / cluster, b / cluster, files, shallow=False)
        assert not mismatch and not errors


def test_names_unique_per_cluster(tree: dict[str, list[dict[str, Any]]]) -> None:
    for cluster, objs in tree.items():
        keys = Counter((o["apiVersion"], o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"])
                       for o in objs)
        assert [k for k, n in keys.items() if n > 1] == [], cluster


def test_istio_resources_live_in_primaries_only(full_out: Path) -> None:
    out = full_out
    tree = load_tree(out)
    # central is a remote of east: its Istio config is served from east's config store.
    central = policy_objects(out, "central")
    assert central and {(o["apiVersion"], o["kind"]) for o in central} == {("v1", "Service")}
    for p in PRIMARIES:
        assert any(o["kind"] == "VirtualService" for o in tree[p])
    east_vs = next(o for o in kind(tree, "east", "VirtualService") if o["metadata"]["name"] == "reviews")
    source_routes = [r for r in east_vs["spec"]["http"]
                     if any(m.get("sourceLabels") == {"topology.istio.io/cluster": "central"}
                            for m in r.get("match", []))]
    assert source_routes, "the remote's callers are routed through sourceLabels in its primary"


def locality_modes(dr: dict[str, Any]) -> list[str]:
    setting = dr["spec"].get("trafficPolicy", {}).get("loadBalancer", {}).get("localityLbSetting", {})
    return [m for m in ("distribute", "failover", "failoverPriority") if m in setting]


@pytest.mark.parametrize("locality", [
    {"failover": [{"from": a, "to": b} for a, b in CHAIN]},
    {"failoverPriority": ["topology.istio.io/network", "topology.kubernetes.io/region"]},
    {"distribute": [{"from": "us-east1/*", "to": {"us-east1/*": 70, "us-west1/*": 30}}]},
])
@pytest.mark.parametrize("own_outlier", [False, True])
def test_locality_mode_and_outlier_detection(tmp_path: Path, locality: dict[str, Any],
                                             own_outlier: bool) -> None:
    policy: dict[str, Any] = {"routing": {"locality": locality}}
    if own_outlier:
        policy["outlierDetection"] = {"consecutiveGatewayErrors": 2, "interval": "3s"}
    spec = three_cluster_spec([service("cart", ["east", "west"], **policy)],
                              traffic={"defaultOutlierDetection": {"consecutive5xxErrors": 7}})
    tree = load_tree(render(tmp_path, spec))
    drs = [o for p in PRIMARIES for o in kind(tree, p, "DestinationRule")]
    assert len(drs) == len(PRIMARIES)
    (mode,) = locality
    for dr in drs:
        validate_object(dr)
        assert locality_modes(dr) == [mode]
        od = dr["spec"]["trafficPolicy"].get("outlierDetection")
        if own_outlier:
            assert od == policy["outlierDetection"]
        elif mode != "distribute":
            assert od == {"consecutive5xxErrors": 7}
        else:
            assert od is None


def test_every_failover_has_outlier_detection(tree: dict[str, list[dict[str, Any]]]) -> None:
    drs = [o for objs in tree.values() for o in objs if o["kind"] == "DestinationRule"]
    failing_over = [dr for dr in drs if {"failover", "failoverPriority"} & set(locality_modes(dr))]
    assert failing_over
    for dr in drs:
        assert len(locality_modes(dr)) <= 1
    for dr in failing_over:
        assert dr["spec"]["trafficPolicy"]["outlierDetection"]


def test_services_not_running_in_a_cluster_are_reachable_there(tmp_path: Path) -> None:
    running = {"ratings": ["west"], "details": ["central"], "cart": ["east", "west"]}
    spec = three_cluster_spec([service(n, cs) for n, cs in running.items()])
    tree = load_tree(render(tmp_path, spec))
    for name, clusters in running.items():
        for c in CLUSTERS:
            stubs = [o for o in kind(tree, c, "Service") if o["metadata"]["name"] == name]
            if c in clusters:
                assert stubs == []
            else:
                (stub,) = stubs
                assert stub["metadata"]["namespace"] == "shop"
                assert [p["port"] for p in stub["spec"]["ports"]] == [8080]
                assert "selector" not in stub["spec"]  # endpoints come from the other clusters


def test_reachable_from_restricts_stubs(tmp_path: Path) -> None:
    spec = three_cluster_spec([service("ratings", ["west"], reachableFrom=["east"])])
    tree = load_tree(render(tmp_path, spec))
    assert [o["metadata"]["name"] for o in kind(tree, "east", "Service")] == ["ratings"]
    assert kind(tree, "central", "Service") == []


def test_service_entries_point_at_east_west_gateways(tmp_path: Path) -> None:
    # ratings runs only in west: east's config store (east + central) gets a ServiceEntry.
    spec = three_cluster_spec([service("ratings", ["west"]), service("cart", ["west", "central"])],
                              traffic={"crossCluster": "serviceEntry"})
    tree = load_tree(render(tmp_path, spec))
    (se,) = [o for o in kind(tree, "east", "ServiceEntry")]
    assert se["metadata"]["name"] == "ratings-crosscluster"
    assert se["spec"]["hosts"] == ["ratings.shop.svc.cluster.local"]
    assert se["spec"]["location"] == "MESH_INTERNAL"
    assert se["spec"]["resolution"] == "STATIC"
    assert se["spec"]["ports"] == [{"number": 8080, "name": "http", "protocol": "HTTP"}]
    assert se["spec"]["endpoints"] == [{
        "address": GATEWAYS["west"], "ports": {"http": 15443}, "network": NETWORKS["west"],
        "labels": {"topology.istio.io/cluster": "west", "security.istio.io/tlsMode": "istio"},
        "locality": f"{REGIONS['west']}/{ZONES['west']}"}]
    # cart runs in central, served by east: east's istiod knows it, east needs only the name.
    assert [o["metadata"]["name"] for o in kind(tree, "east", "Service")] == ["cart"]
    assert kind(tree, "west", "ServiceEntry") == []
    assert kind(tree, "central", "ServiceEntry") == []


def test_service_entry_mode_needs_several_networks(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from scripts.cli import cli
    from tests.conftest import write_stack

    spec = three_cluster_spec([service("ratings", ["west"])], traffic={"crossCluster": "serviceEntry"})
    for c in spec["clusters"]:
        c["network"] = "one"
    result = CliRunner().invoke(cli, ["validate", "--config", str(write_stack(tmp_path, spec))])
    assert result.exit_code == 2
    assert "meshboot:traffic.crossCluster: serviceEntry needs a multi-network mesh" in result.output


def routes_of(tree: dict[str, list[dict[str, Any]]], cluster: str, name: str) -> list[dict[str, Any]]:
    vs = next(o for o in kind(tree, cluster, "VirtualService") if o["metadata"]["name"] == name)
    return vs["spec"]["http"]


def test_retries_only_for_idempotent_methods(tree: dict[str, list[dict[str, Any]]]) -> None:
    for p in PRIMARIES:
        for name in ("reviews", "ratings"):
            http = routes_of(tree, p, name)
            with_retries = [r for r in http if "retries" in r]
            assert with_retries and len(with_retries) * 2 == len(http)
            for r in with_retries:
                for m in r["match"]:
                    assert set(m["method"]["regex"].split("|")) == IDEMPOTENT


def test_opt_in_retries_every_method(tmp_path: Path) -> None:
    retries = {"attempts": 2, "methods": ["GET", "POST"], "allowNonIdempotent": True}
    spec = three_cluster_spec([service("cart", ["east"], retries=retries)])
    http = routes_of(load_tree(render(tmp_path, spec)), "east", "cart")
    assert http[0]["match"] == [{"method": {"regex": "GET|POST"}}]
    assert http[0]["retries"]["attempts"] == 2


def test_faults_only_for_requests_with_the_header(tree: dict[str, list[dict[str, Any]]]) -> None:
    count = 0
    for p in PRIMARIES:
        for vs in kind(tree, p, "VirtualService"):
            for r in vs["spec"].get("http", []):
                if "fault" in r:
                    count += 1
                    assert r["match"] and all(m["headers"]["x-chaos"] == {"exact": "on"} for m in r["match"])
                else:
                    assert all("x-chaos" not in m.get("headers", {}) for m in r.get("match", []))
    assert count


def test_mesh_security(tree: dict[str, list[dict[str, Any]]]) -> None:
    for p in PRIMARIES:
        pas = {(o["metadata"]["namespace"], o["metadata"]["name"]): o["spec"]
               for o in kind(tree, p, "PeerAuthentication")}
        assert pas[("istio-system", "default")] == {"mtls": {"mode": "STRICT"}}
        aps = {(o["metadata"]["namespace"], o["metadata"]["name"]): o["spec"]
               for o in kind(tree, p, "AuthorizationPolicy")}
        assert aps[("shop", "default-deny")] == {} and aps[("billing", "default-deny")] == {}
        sidecars = {o["metadata"]["namespace"]: o["spec"] for o in kind(tree, p, "Sidecar")}
        assert sidecars["shop"] == {"egress": [{"hosts": ["./*", "istio-system/*"]}]}
    # Workload policy goes where the service runs: ratings runs only in west.
    assert ("shop", "ratings-authz") in {(o["metadata"]["namespace"], o["metadata"]["name"])
                                         for o in kind(tree, "west", "AuthorizationPolicy")}
    assert "ratings-authz" not in {o["metadata"]["name"] for o in kind(tree, "east", "AuthorizationPolicy")}


def test_permissive_migration_and_port_exception(tmp_path: Path) -> None:
    spec = three_cluster_spec([service("cart", ["east"], mtls={"ports": {9090: "DISABLE"}})],
                              security={"mtls": {"mode": "PERMISSIVE"}})
    tree = load_tree(render(tmp_path, spec))
    pas = {o["metadata"]["name"]: o for o in kind(tree, "east", "PeerAuthentication")}
    assert pas["default"]["spec"] == {"mtls": {"mode": "PERMISSIVE"}}
    assert pas["cart-mtls"]["metadata"]["namespace"] == "shop"
    assert pas["cart-mtls"]["spec"] == {"selector": {"matchLabels": {"app": "cart"}},
                                        "portLevelMtls": {"9090": {"mode": "DISABLE"}}}
    validate_object(pas["cart-mtls"])


def test_jwt_requires_token_and_claims_in_every_rule(tree: dict[str, list[dict[str, Any]]]) -> None:
    issuer = full_policy_service("x", "shop", ["east"])["jwt"]["issuer"]
    (ra,) = [o for o in kind(tree, "east", "RequestAuthentication") if o["metadata"]["name"] == "reviews-jwt"]
    assert ra["spec"]["jwtRules"][0]["issuer"] == issuer
    assert ra["spec"]["jwtRules"][0]["forwardOriginalToken"] is True
    (ap,) = [o for o in kind(tree, "east", "AuthorizationPolicy") if o["metadata"]["name"] == "reviews-authz"]
    assert ap["spec"]["action"] == "ALLOW"
    for rule in ap["spec"]["rules"]:
        assert rule["from"] and all(f["source"]["requestPrincipals"] == [f"{issuer}/*"] for f in rule["from"])
        assert rule["when"] == [{"key": "request.auth.claims[role]", "values": ["admin", "user"]}]
    principals = [p for r in ap["spec"]["rules"] for f in r["from"]
                  for p in f["source"].get("principals", [])]
    assert principals == ["cluster.local/ns/shop/sa/frontend"]


def test_yaml_has_no_anchors(full_out: Path) -> None:
    for f in full_out.rglob("*policy.yaml"):
        assert not re.search(r"[&*]id\d+", f.read_text()), f
