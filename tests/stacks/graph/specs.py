"""Environments for the graph tests (spec form), and loading them into spec + plan."""

from __future__ import annotations

import copy
from typing import Any

from clusters.loader import spec_from_config
from clusters.spec import Spec
from stacks.build import build_plan
from stacks.plan import MeshPlan


def cluster(name: str, n: int, network: str, region: str | None = None, zone: str | None = None,
            primary: str | None = None, address: str | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {"name": name, "apiServer": f"https://10.0.0.{n}:6443", "network": network}
    if region is not None:
        c["region"] = region
    if zone is not None:
        c["zone"] = zone
    if primary is not None:
        c.update(role="remote", primary=primary)
    if address is not None:
        c["eastWestGateway"] = {"address": address}
    return c


def svc(name: str, clusters: list[str], namespace: str = "shop") -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "ports": [{"name": "http", "port": 8080}],
            "clusters": clusters}


def multi_primary() -> dict[str, Any]:
    """Three primaries on two networks, two remotes (one per network), a cluster without
    a region, and p3 without a fixed gateway address."""
    return {
        "mesh": {"provider": "istio", "id": "mesh1"},
        "clusters": [
            cluster("p1", 1, "net-a", "r1", "r1-a", address="192.0.2.1"),
            cluster("p2", 2, "net-b", "r2", "r2-a", address="192.0.2.2"),
            cluster("rem1", 3, "net-a", "r1", "r1-b", primary="p1"),
            cluster("p3", 4, "net-a", "r3"),
            cluster("rem2", 5, "net-b", primary="p2", address="192.0.2.5"),
        ],
        "services": [svc("cart", ["p1", "rem1"]), svc("pay", ["p2", "p3"], namespace="money")],
    }


def linkerd_three() -> dict[str, Any]:
    """a and c share a network (gateway-less between them), b is on another."""
    return {
        "mesh": {"provider": "linkerd", "id": "prod"},
        "clusters": [
            cluster("a", 1, "n1", "eu", address="192.0.2.1"),
            cluster("b", 2, "n2", "us", address="gw.b.example.com"),
            cluster("c", 3, "n1", "eu", address="192.0.2.3"),
        ],
        "services": [svc("cart", ["a", "b"])],
        "linkerd": {"gatewaylessSameNetwork": True},
    }


def load(spec: dict[str, Any]) -> tuple[Spec, MeshPlan]:
    config = {f"meshboot:{k}": v for k, v in copy.deepcopy(spec).items()}
    parsed = spec_from_config(config, "Pulumi.test.yaml")
    return parsed, build_plan(parsed, "Pulumi.test.yaml")
