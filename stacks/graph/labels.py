"""The text on the picture, shared by the DOT and mermaid serialisers (lines, unescaped)."""

from __future__ import annotations

from stacks.graph.model import ClusterNode, Gateway


def network_label(name: str) -> list[str]:
    return [f"network {name}"]


def region_label(name: str | None) -> list[str]:
    return [f"region {name}" if name is not None else "no region"]


def cluster_label(c: ClusterNode) -> list[str]:
    role = {"primary": "primary", "remote": f"remote of {c.primary}", "member": "member"}[c.role]
    return [c.name, f"{role}, zone {c.zone}" if c.zone else role]


def gateway_label(gw: Gateway) -> list[str]:
    return [gw.kind, gw.endpoint]
