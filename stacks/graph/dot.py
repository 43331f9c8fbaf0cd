"""The topology graph as Graphviz DOT text (``meshboot graph --format dot``; svg/png render it).

Every id and string is double-quoted. In a quoted DOT string only ``\\"``
is an escape (graphviz.org/doc/info/lang.html, "ID"); labels are escString,
where a backslash starts an escape (``\\n``, ``\\N``, ``\\G`` ...) and ``\\\\``
is a backslash (graphviz.org/docs/attr-types/escString), and graphviz
decodes HTML entities (``&amp;``) in plain labels too (lib/common/utils.c
htmlEntityUTF8, called by make_label). So names have ``&``, ``\\`` and ``"``
escaped, and line breaks are the only ``\\n`` written.
Ids are :func:`stacks.graph.model.node_ids`, never names.
"""

from __future__ import annotations

from stacks.graph.labels import cluster_label, gateway_label, network_label, region_label
from stacks.graph.model import EdgeKind, TopologyGraph, node_ids

FONT = "Helvetica"
_EDGE_COLOR: dict[EdgeKind, str] = {
    "remote-secret": "#1f77b4", "control-plane": "#d62728", "link": "#2ca02c"}


def _text(value: str) -> str:
    """One line of a label: no control characters, ``\\`` and ``"`` escaped."""
    clean = "".join(ch if ch >= " " and ch != "\x7f" else " " for ch in value)
    return clean.replace("&", "&amp;").replace("\\", "\\\\").replace('"', '\\"')


def quote(value: str) -> str:
    return f'"{_text(value)}"'


def label(lines: list[str]) -> str:
    return '"' + "\\n".join(_text(line) for line in lines) + '"'


def _cluster_layout(cp: str, gw: str | None, svc: str | None) -> list[str]:
    """Control plane and gateway side by side, the services under them (layout only)."""
    out = []
    if gw is not None:
        out.append(f"        {{rank=same; {quote(cp)}; {quote(gw)};}}")
    if svc is not None:
        out.append(f"        {quote(cp)} -> {quote(svc)} [style=invis];")
    return out


def to_dot(graph: TopologyGraph) -> str:
    """DOT source for ``graph``; same graph, same bytes."""
    ids = node_ids(graph)
    out = [
        "// meshboot graph: generated from the plan; regenerate instead of editing.",
        "digraph meshboot {",
        f"  graph [label={quote(graph.title)}, labelloc=t, fontname={quote(FONT)}, "
        "rankdir=TB, newrank=true, nodesep=0.3];",
        f"  node [fontname={quote(FONT)}, fontsize=11];",
        f"  edge [fontname={quote(FONT)}, fontsize=10];",
    ]
    for n, net in enumerate(graph.networks):
        out.append(f"  subgraph {quote('cluster_' + ids.networks[n])} {{")
        out.append(f"    label={label(network_label(net.name))}; style=rounded; "
                   'color="#555555"; penwidth=1.5;')
        for r, region in enumerate(net.regions):
            out.append(f"    subgraph {quote('cluster_' + ids.regions[n][r])} {{")
            out.append(f"      label={label(region_label(region.name))}; style=dashed; "
                       'color="#888888";')
            for c in region.clusters:
                out.append(f"      subgraph {quote('cluster_' + ids.clusters[c.name])} {{")
                out.append(f"        label={label(cluster_label(c))}; style=filled; "
                           f'fillcolor="{"#eef3fb" if c.role != "remote" else "#f6f6f6"}"; '
                           'color="#4a6fa5";')
                out.append(f"        {quote(ids.control_planes[c.name])} "
                           f"[label={label([c.control_plane])}, shape=box, style=filled, "
                           'fillcolor="#ffffff"];')
                if c.gateway is not None:
                    out.append(f"        {quote(ids.gateways[c.name])} "
                               f"[label={label(gateway_label(c.gateway))}, shape=hexagon, "
                               'style=filled, fillcolor="#fff3e0"];')
                if c.services:
                    out.append(f"        {quote(ids.services[c.name])} "
                               f"[label={label(list(c.services))}, shape=note, fontsize=10, "
                               'style=filled, fillcolor="#f1f8e9"];')
                out += _cluster_layout(ids.control_planes[c.name], ids.gateways.get(c.name),
                                       ids.services.get(c.name))
                out.append("      }")
            out.append("    }")
        out.append("  }")
    for edge in graph.edges:
        a, b = ids.edge_ends(edge)
        color = quote(_EDGE_COLOR[edge.kind])
        dashed = ", style=dashed" if edge.kind == "control-plane" or not edge.via_gateway \
            and edge.kind == "link" else ""
        out.append(f"  {quote(a)} -> {quote(b)} [label={label([edge.label])}, "
                   f"color={color}, fontcolor={color}{dashed}];")
    out.append("}")
    return "\n".join(out) + "\n"
