"""Shared pieces of the traffic-policy tests: a 3-cluster spec, render and routes via the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from scripts.cli import cli
from tests.conftest import write_stack

CLUSTERS = ["east", "west", "central"]
PRIMARIES = ["east", "west"]
REGIONS = {"east": "us-east1", "west": "us-west1", "central": "eu-west1"}
ZONES = {"east": "us-east1-b", "west": "us-west1-a", "central": "eu-west1-a"}
NETWORKS = {"east": "net-east", "west": "net-west", "central": "net-east"}
GATEWAYS = {"east": "192.0.2.10", "west": "192.0.2.20", "central": "192.0.2.30"}


def three_cluster_spec(services: list[dict[str, Any]], **sections: Any) -> dict[str, Any]:
    """east and west are primaries, central is a remote of east; two networks, three regions."""
    clusters = []
    for i, name in enumerate(CLUSTERS):
        c: dict[str, Any] = {"name": name, "apiServer": f"https://10.0.0.{i + 1}:6443",
                             "network": NETWORKS[name], "region": REGIONS[name], "zone": ZONES[name],
                             "eastWestGateway": {"address": GATEWAYS[name]}}
        if name == "central":
            c.update(role="remote", primary="east")
        clusters.append(c)
    spec: dict[str, Any] = {"mesh": {"provider": "istio", "id": "mesh1"}, "clusters": clusters,
                            "services": services}
    spec.update(sections)
    return spec


def service(name: str, clusters: list[str], namespace: str = "shop", **policy: Any) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "ports": [{"name": "http", "port": 8080}],
            "clusters": clusters, **policy}


def render(tmp: Path, spec: dict[str, Any], out_name: str = "out") -> Path:
    config = write_stack(tmp, spec)
    out = tmp / out_name
    result = CliRunner().invoke(cli, ["render", "--config", str(config), "--out", str(out),
                                      "--pki-dir", str(tmp / "pki")], env={})
    assert result.exit_code == 0, result.output
    return out


def routes(cluster_dir: Path, service_name: str, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["routes", "--dir", str(cluster_dir), "--service", service_name,
                                      "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def shares(result: dict[str, Any], key: str = "cluster") -> dict[str, float]:
    """destination cluster (or subset) -> share, from a routes --json result."""
    return {d[key]: d["share"] for d in result["destinations"]}
