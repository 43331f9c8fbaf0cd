"""Linkerd environments for the tests (spec form, no ``meshboot:`` prefix)."""

from __future__ import annotations

from typing import Any

from tests.conftest import base_spec


def two_clusters() -> dict[str, Any]:
    """Two networks: one link each way, both through the gateways."""
    spec = base_spec()
    spec["mesh"]["provider"] = "linkerd"
    spec["clusters"][0]["eastWestGateway"] = {"address": "192.0.2.10"}
    spec["clusters"][1]["eastWestGateway"] = {"address": "gw.west.example.com"}
    return spec


def three_clusters() -> dict[str, Any]:
    """a and c share a network (gateway-less between them), b is elsewhere."""
    spec = base_spec()
    spec["mesh"].update({"provider": "linkerd", "trustDomain": "mesh.example.org",
                         "id": "prod"})
    spec["clusters"] = [
        {"name": "a", "apiServer": "https://10.0.0.1:6443", "network": "n1",
         "eastWestGateway": {"address": "192.0.2.1"}},
        {"name": "b", "apiServer": "https://10.0.0.2:6443", "network": "n2",
         "eastWestGateway": {"address": "192.0.2.2"}, "gatewayApiCrds": "present"},
        {"name": "c", "apiServer": "https://10.0.0.3:6443", "network": "n1",
         "eastWestGateway": {"address": "192.0.2.3"}},
    ]
    spec["services"] = [
        {"name": "reviews", "namespace": "bookinfo", "ports": [{"name": "http", "port": 9080}],
         "clusters": ["a", "b", "c"]},
        {"name": "ratings", "namespace": "bookinfo",
         "ports": [{"name": "grpc", "port": 9090, "targetPort": 8080, "protocol": "GRPC"}],
         "clusters": ["a", "c"], "federated": True},
    ]
    return spec


def flat_clusters() -> dict[str, Any]:
    """One network: no gateways anywhere, no gateway addresses needed."""
    spec = base_spec()
    spec["mesh"]["provider"] = "linkerd"
    for c in spec["clusters"]:
        c["network"] = "flat"
    return spec


def validate(obj: dict[str, Any]) -> None:
    """Strict validation (Gateway API kinds included: they have CRD schemas too)."""
    from tests.support.validation import validate_object

    validate_object(obj)
