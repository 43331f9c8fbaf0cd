"""The topology graph as a mermaid flowchart (``meshboot graph --format mermaid``).

For Markdown: GitHub renders a fenced ``mermaid`` block (README, a CI pull
request comment). Labels are double-quoted and every character outside a
small safe set is written as a mermaid entity code, ``#<decimal>;`` (mermaid
docs, flowchart.md "Entity codes to escape characters"), so no name can end
a string, open HTML or markdown, or become a line break; ``<br/>`` is the
only markup written. Ids are :func:`stacks.graph.model.node_ids`.
"""

from __future__ import annotations

import re

from stacks.graph.labels import cluster_label, gateway_label, network_label, region_label
from stacks.graph.model import Edge, TopologyGraph, node_ids

_SAFE = re.compile(r"[A-Za-z0-9 .,:/()_=+@\-]")

_CLASSES = {
    "cp": "fill:#ffffff,stroke:#4a6fa5",
    "gw": "fill:#fff3e0,stroke:#e65100",
    "svc": "fill:#f1f8e9,stroke:#558b2f",
}


def text(value: str) -> str:
    """One line of a label, every unsafe character as an entity code."""
    return "".join(ch if _SAFE.fullmatch(ch) else f"#{ord(ch)};" for ch in value)


def label(lines: list[str]) -> str:
    return '"' + "<br/>".join(text(line) for line in lines) + '"'


def _arrow(edge: Edge) -> str:
    return "-.->" if edge.kind == "control-plane" or not edge.via_gateway and edge.kind == "link" \
        else "-->"


def to_mermaid(graph: TopologyGraph) -> str:
    """Mermaid source for ``graph`` (without the Markdown fence); same graph, same bytes."""
    ids = node_ids(graph)
    out = ["flowchart TB"]
    members: dict[str, list[str]] = {k: [] for k in _CLASSES}
    for n, net in enumerate(graph.networks):
        out.append(f"  subgraph {ids.networks[n]} [{label(network_label(net.name))}]")
        for r, region in enumerate(net.regions):
            out.append(f"    subgraph {ids.regions[n][r]} [{label(region_label(region.name))}]")
            for c in region.clusters:
                out.append(f"      subgraph {ids.clusters[c.name]} [{label(cluster_label(c))}]")
                cp = ids.control_planes[c.name]
                out.append(f"        {cp}[{label([c.control_plane])}]")
                members["cp"].append(cp)
                if c.gateway is not None:
                    gw = ids.gateways[c.name]
                    out.append(f"        {gw}{{{{{label(gateway_label(c.gateway))}}}}}")
                    members["gw"].append(gw)
                if c.services:
                    svc = ids.services[c.name]
                    out.append(f"        {svc}[/{label(list(c.services))}/]")
                    members["svc"].append(svc)
                out.append("      end")
            out.append("    end")
        out.append("  end")
    for edge in graph.edges:
        a, b = ids.edge_ends(edge)
        out.append(f"  {a} {_arrow(edge)}|{label([edge.label])}| {b}")
    for name, style in _CLASSES.items():
        if members[name]:
            out.append(f"  classDef {name} {style}")
            out.append(f"  class {','.join(members[name])} {name}")
    return "\n".join(out) + "\n"
