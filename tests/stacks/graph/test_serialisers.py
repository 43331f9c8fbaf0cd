"""DOT and mermaid output: deterministic, parseable, grouped, and safe for any name."""

from __future__ import annotations

import re
import subprocess
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from stacks.graph.dot import to_dot
from stacks.graph.image import dot_available
from stacks.graph.mermaid import to_mermaid
from stacks.graph.model import (
    ClusterNode,
    Edge,
    Gateway,
    Network,
    Region,
    TopologyGraph,
    node_ids,
    topology_graph,
)
from tests.stacks.graph.specs import cluster, linkerd_three, load, multi_primary, svc

needs_dot = pytest.mark.skipif(not dot_available(),
                               reason="Graphviz's `dot` is not installed (apt-get install graphviz)")
SVG = "{http://www.w3.org/2000/svg}"
ODD = 'eu "west" <b>&amp; \\N #35; end`x\\'


def svg_of(dot: str) -> ET.Element:
    out = subprocess.run(["dot", "-Tsvg"], input=dot.encode(), capture_output=True, check=True)
    return ET.fromstring(out.stdout)


def svg_texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{SVG}text")]


def svg_titles(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{SVG}title")]


@pytest.fixture(scope="module")
def istio_graph() -> TopologyGraph:
    spec, plan = load(multi_primary())
    return topology_graph(spec, plan)


@pytest.fixture(scope="module")
def odd_graph() -> TopologyGraph:
    """Odd text wherever the spec allows it (region, zone); odd names in a hand-built model."""
    raw = multi_primary()
    raw["clusters"][0]["region"] = ODD
    raw["clusters"][0]["zone"] = ODD + "-z"
    raw["clusters"][2]["region"] = ODD
    spec, plan = load(raw)
    return topology_graph(spec, plan)


def odd_names_graph() -> TopologyGraph:
    """Names no spec accepts, to show the ids never depend on them being tame."""
    names = ["end", "o-x", "a.b", "a_b", "a b", 'q"', "x--y"]
    nodes = tuple(ClusterNode(name=n, network="n", region=None, zone=None, role="primary",
                              primary=None, control_plane="istiod",
                              gateway=Gateway("east-west gateway", "ns/gw", f"{n}.example"),
                              services=(f"{n}.svc",)) for n in names)
    edges = tuple(Edge("remote-secret", a, b, False) for a in names for b in names if a != b)
    return TopologyGraph("istio", 'mesh "1"', (Network("n", (Region(None, nodes),)),), edges)


# ---------------------------------------------------------------------------------- dot
def test_same_spec_same_bytes() -> None:
    a, b = (topology_graph(*load(multi_primary())) for _ in range(2))
    assert to_dot(a) == to_dot(b) and to_mermaid(a) == to_mermaid(b)


@needs_dot
def test_dot_parses_and_draws_every_cluster_gateway_and_edge(istio_graph: TopologyGraph) -> None:
    root = svg_of(to_dot(istio_graph))
    ids = node_ids(istio_graph)
    titles = svg_titles(root)
    texts = svg_texts(root)
    for c in istio_graph.clusters():
        assert f"cluster_{ids.clusters[c.name]}" in titles
        assert c.name in texts
    assert "east-west gateway" in texts and "192.0.2.1" in texts
    assert "LoadBalancer of istio-system/istio-eastwestgateway" in texts
    # One SVG edge per model edge (graphviz titles edges "a->b"; layout edges are invisible).
    drawn = [t for t in titles if "->" in t]
    expected = [f"{a}->{b}" for a, b in map(ids.edge_ends, istio_graph.edges)]
    assert sorted(t for t in drawn if t in expected) == sorted(expected)
    assert texts.count("remote secret") == sum(e.kind == "remote-secret" for e in istio_graph.edges)
    assert "istiod via 192.0.2.1" in texts and "istiod via 192.0.2.2" in texts


@needs_dot
def test_dot_shows_odd_names_exactly(odd_graph: TopologyGraph) -> None:
    texts = svg_texts(svg_of(to_dot(odd_graph)))
    assert f"region {ODD}" in texts
    assert f"primary, zone {ODD}-z" in texts


@needs_dot
def test_dot_ids_survive_names_no_spec_accepts() -> None:
    graph = odd_names_graph()
    root = svg_of(to_dot(graph))
    texts = svg_texts(root)
    for c in graph.clusters():
        assert c.name in texts and f"{c.name}.example" in texts
    assert 'mesh mesh "1" (istio)' in texts
    assert len([t for t in svg_titles(root) if "->" in t]) >= len(graph.edges)


def test_dot_escapes_quotes_and_backslashes(odd_graph: TopologyGraph) -> None:
    dot = to_dot(odd_graph)
    assert 'region eu \\"west\\" <b>&amp;amp; \\\\N #35; end`x\\\\"' in dot


# ------------------------------------------------------------------------------ mermaid
_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_SUBGRAPH = re.compile(r'^subgraph (\S+) \["(.*)"\]$')
_NODE = re.compile(r'^(\S+?)(\[|\{\{|\[/)"(.*)"(\]|\}\}|/\])$')
_EDGE = re.compile(r'^(\S+) (-->|-\.->)\|"(.*)"\| (\S+)$')


def unescape(label: str) -> str:
    return re.sub(r"#(\d+);", lambda m: chr(int(m.group(1))), label.replace("<br/>", "\n"))


def parse_mermaid(text: str) -> dict[str, Any]:
    """The subgraph tree, nodes and edges of our flowchart subset; fails on anything else."""
    lines = text.splitlines()
    assert lines[0] == "flowchart TB"
    root: dict[str, Any] = {"children": [], "nodes": []}
    stack = [root]
    nodes: dict[str, str] = {}
    edges: list[tuple[str, str, str, str]] = []
    for line in lines[1:]:
        s = line.strip()
        if m := _SUBGRAPH.match(s):
            group = {"id": m.group(1), "label": unescape(m.group(2)), "children": [], "nodes": []}
            stack[-1]["children"].append(group)
            stack.append(group)
        elif s == "end":
            stack.pop()
        elif m := _EDGE.match(s):
            edges.append((m.group(1), m.group(2), unescape(m.group(3)), m.group(4)))
        elif m := _NODE.match(s):
            nodes[m.group(1)] = unescape(m.group(3))
            stack[-1]["nodes"].append(m.group(1))
        elif s.startswith(("classDef ", "class ")):
            continue
        else:
            raise AssertionError(f"unexpected mermaid line {line!r}")
    assert len(stack) == 1, "unbalanced subgraph/end"
    for ident in [*nodes, *(g["id"] for g in _groups(root))]:
        assert _ID.match(ident) and ident.lower() != "end", ident
    for a, _, _, b in edges:
        assert a in nodes and b in nodes
    # Labels: one quoted string each, nothing but entities and safe characters inside.
    for label in re.findall(r'"([^"]*)"', text):
        assert re.fullmatch(r"([A-Za-z0-9 .,:/()_=+@\-]|#\d+;|<br/>)*", label), label
    return {"root": root, "nodes": nodes, "edges": edges}


def _groups(group: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for child in group["children"]:
        out += [child, *_groups(child)]
    return out


def test_mermaid_subgraphs_per_network_then_region(istio_graph: TopologyGraph) -> None:
    parsed = parse_mermaid(to_mermaid(istio_graph))
    tree = {net["label"]: {reg["label"]: [c["label"].split("\n")[0] for c in reg["children"]]
                           for reg in net["children"]}
            for net in parsed["root"]["children"]}
    assert tree == {"network net-a": {"region r1": ["p1", "rem1"], "region r3": ["p3"]},
                    "network net-b": {"region r2": ["p2"], "no region": ["rem2"]}}
    assert parsed["root"]["nodes"] == []  # everything sits in its network


def test_mermaid_edges_are_the_models(istio_graph: TopologyGraph) -> None:
    parsed = parse_mermaid(to_mermaid(istio_graph))
    ids = node_ids(istio_graph)
    assert [(a, label, b) for a, _, label, b in parsed["edges"]] == \
        [(*ids.edge_ends(e)[:1], e.label, ids.edge_ends(e)[1]) for e in istio_graph.edges]
    gateways = {v for k, v in parsed["nodes"].items() if k in ids.gateways.values()}
    assert "east-west gateway\n192.0.2.1" in gateways


def test_mermaid_linkerd_variant() -> None:
    graph = topology_graph(*load(linkerd_three()))
    parsed = parse_mermaid(to_mermaid(graph))
    ids = node_ids(graph)
    labels = [(a, arrow, label, b) for a, arrow, label, b in parsed["edges"]]
    assert (ids.control_planes["a"], "-.->", "Link (pod-to-pod)", ids.control_planes["c"]) in labels
    assert (ids.control_planes["a"], "-->", "Link via gw.b.example.com:4143",
            ids.gateways["b"]) in labels
    assert parsed["nodes"][ids.gateways["b"]] == "multicluster gateway\ngw.b.example.com:4143"
    nets = [n["label"] for n in parsed["root"]["children"]]
    assert nets == ["network n1", "network n2"]


def test_mermaid_odd_names_round_trip(odd_graph: TopologyGraph) -> None:
    parsed = parse_mermaid(to_mermaid(odd_graph))
    labels = [g["label"] for g in _groups(parsed["root"])]
    assert f"region {ODD}" in labels


def test_mermaid_ids_unique_and_safe_for_any_name() -> None:
    graph = odd_names_graph()
    parsed = parse_mermaid(to_mermaid(graph))
    ids = node_ids(graph)
    all_ids = [*ids.clusters.values(), *ids.control_planes.values(), *ids.gateways.values(),
               *ids.services.values()]
    assert len(all_ids) == len(set(all_ids))
    assert len(parsed["edges"]) == len(graph.edges)
    cluster_labels = {g["label"].split("\n")[0] for g in _groups(parsed["root"])}
    assert {c.name for c in graph.clusters()} <= cluster_labels


def test_unplanned_cluster_is_not_drawn() -> None:
    # A spec cluster the plan has no ClusterPlan for would have no edges to draw from.
    spec, plan = load({"mesh": {"provider": "istio"},
                       "clusters": [cluster("solo", 1, "n")], "services": [svc("a", ["solo"])]})
    graph = topology_graph(spec, plan)
    assert [c.name for c in graph.clusters()] == ["solo"] and graph.edges == ()
    parse_mermaid(to_mermaid(graph))
