"""The graph model follows the plan: its edges are the plan's remote secrets and Links."""

from __future__ import annotations

from typing import Any

import pytest

from stacks.graph.model import topology_graph
from stacks.plan import KubeconfigRef, MeshPlan
from tests.stacks.graph.specs import linkerd_three, load, multi_primary


def _objects(plan: MeshPlan, kind: str) -> list[tuple[str, dict[str, Any]]]:
    return [(cp.cluster, o) for cp in plan.clusters for s in cp.steps for o in s.objects
            if o["kind"] == kind]


def remote_secret_pairs(plan: MeshPlan) -> set[tuple[str, str]]:
    """(holder, cluster it reads): from the KubeconfigRef inside each remote secret."""
    return {(holder, ref.target) for holder, o in _objects(plan, "Secret")
            for ref in o.get("stringData", {}).values() if isinstance(ref, KubeconfigRef)
            and o["metadata"]["name"].startswith("istio-remote-secret-")}


@pytest.fixture(scope="module")
def istio() -> Any:
    spec, plan = load(multi_primary())
    return spec, plan, topology_graph(spec, plan)


def test_remote_secret_edges_are_the_plans_remote_secrets(istio: Any) -> None:
    _, plan, graph = istio
    edges = [(e.source, e.target) for e in graph.edges if e.kind == "remote-secret"]
    assert len(edges) == len(set(edges))
    assert set(edges) == remote_secret_pairs(plan)
    # Multi-primary: every primary reads every other cluster; remotes read none.
    primaries = {"p1", "p2", "p3"}
    for p in primaries:
        assert {t for s, t in edges if s == p} == {"p1", "p2", "p3", "rem1", "rem2"} - {p}
    assert {s for s, _ in edges} == primaries


def test_config_only_mesh_draws_its_fewer_remote_secrets() -> None:
    raw = multi_primary()
    raw["traffic"] = {"crossCluster": "serviceEntry"}
    spec, plan = load(raw)
    edges = {(e.source, e.target) for e in topology_graph(spec, plan).edges
             if e.kind == "remote-secret"}
    assert edges == remote_secret_pairs(plan) == {("p1", "rem1"), ("p2", "rem2")}


def test_remotes_reach_their_primarys_istiod_through_its_gateway(istio: Any) -> None:
    _, plan, graph = istio
    cp = {(e.source, e.target): e for e in graph.edges if e.kind == "control-plane"}
    assert set(cp) == {("rem1", "p1"), ("rem2", "p2")}
    assert cp[("rem1", "p1")].via_gateway and cp[("rem1", "p1")].address == "192.0.2.1"
    assert "192.0.2.1" in cp[("rem1", "p1")].label
    # The address is the remote's remotePilotAddress in the plan.
    values = plan.cluster("rem1").step("istiod").release.values  # type: ignore[union-attr]
    assert values["global"]["remotePilotAddress"].fixed == cp[("rem1", "p1")].address


def test_clusters_grouped_by_network_then_region(istio: Any) -> None:
    spec, _, graph = istio
    layout = {net.name: {r.name: [c.name for c in r.clusters] for r in net.regions}
              for net in graph.networks}
    assert layout == {"net-a": {"r1": ["p1", "rem1"], "r3": ["p3"]},
                      "net-b": {"r2": ["p2"], None: ["rem2"]}}
    for c in graph.clusters():
        s = spec.cluster(c.name)
        assert (c.network, c.region, c.zone) == (s.network, s.region, s.zone)
    assert graph.cluster("rem1").role == "remote" and graph.cluster("rem1").primary == "p1"
    assert graph.cluster("p1").role == "primary" and graph.cluster("p1").primary is None


def test_gateways_are_the_planned_ones_with_their_addresses(istio: Any) -> None:
    _, plan, graph = istio
    planned = {cp.cluster for cp in plan.clusters
               if any(s.name == "eastwest-gateway" for s in cp.steps)}
    assert {c.name for c in graph.clusters() if c.gateway} == planned == {"p1", "p2", "p3"}
    # rem2 has an address in the spec but no gateway (p2's serves net-b).
    assert graph.cluster("rem2").gateway is None
    assert graph.cluster("p1").gateway.endpoint == "192.0.2.1"  # type: ignore[union-attr]
    p3 = graph.cluster("p3").gateway
    assert p3 is not None and p3.address is None
    assert p3.endpoint == "LoadBalancer of istio-system/istio-eastwestgateway"


def test_services_sit_on_the_clusters_that_run_them(istio: Any) -> None:
    _, _, graph = istio
    on = {c.name: c.services for c in graph.clusters()}
    assert on == {"p1": ("cart.shop",), "rem1": ("cart.shop",), "p3": ("pay.money",),
                  "p2": ("pay.money",), "rem2": ()}


def test_linkerd_edges_are_the_plans_links() -> None:
    spec, plan = load(linkerd_three())
    graph = topology_graph(spec, plan)
    links = {(holder, o["spec"]["targetClusterName"]): o["spec"]
             for holder, o in _objects(plan, "Link")}
    edges = {(e.source, e.target): e for e in graph.edges}
    assert {e.kind for e in graph.edges} == {"link"}
    assert set(edges) == set(links) and len(links) == 6
    for pair, body in links.items():
        assert edges[pair].via_gateway == ("gatewayAddress" in body)
    # a and c share n1: pod-to-pod both ways; everything to or from b through a gateway.
    assert not edges[("a", "c")].via_gateway and not edges[("c", "a")].via_gateway
    assert edges[("a", "b")].address == "gw.b.example.com:4143"
    assert edges[("b", "a")].address == "192.0.2.1:4143"
    assert edges[("a", "c")].label == "Link (pod-to-pod)"
    assert all(c.role == "member" and c.control_plane == "linkerd control plane"
               for c in graph.clusters())
    gw = graph.cluster("b").gateway
    assert gw is not None and gw.port == 4143 and gw.service == "linkerd-multicluster/linkerd-gateway"
