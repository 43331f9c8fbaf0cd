"""Synthetic environments for the benchmarks: N clusters x M services, realistic policy.

Every service runs in up to three clusters and carries the policy a platform
team sets (retries, timeouts, circuit breaking, authorization, a release or a
local share); Istio services also get fault injection, connection pools, JWT
and per-port mTLS. Written as a Pulumi stack file, as users write them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.support.policy_examples import (
    full_policy_mesh,
    full_policy_service,
    linkerd_policy_mesh,
    linkerd_policy_service,
)

REGIONS = ["us-east1", "us-west1", "europe-west1", "asia-east1"]
RELEASES = (None, None, "canary", "blueGreen", "abTest")


def environment(provider: str, n_clusters: int, n_services: int,
                key_algorithm: str = "ecdsa-p256") -> dict[str, Any]:
    """The ``meshboot:*`` keys (without the prefix) of one environment."""
    clusters = []
    for i in range(n_clusters):
        region = REGIONS[i % len(REGIONS)]
        clusters.append({
            "name": f"c{i}", "context": f"kind-c{i}",
            "apiServer": f"https://10.{i // 250}.{i % 250}.1:6443",
            "network": f"net{i % 2}", "region": region, "zone": f"{region}-{'abc'[i % 3]}",
            "eastWestGateway": {"address": f"192.0.{i // 250}.{i % 250 + 1}"},
        })
    names = [c["name"] for c in clusters]
    services = []
    namespaces = sorted({f"team{j % 20}" for j in range(n_services)})
    for j in range(n_services):
        placed = [names[(j + k) % n_clusters] for k in range(min(3, n_clusters))]
        release = RELEASES[j % len(RELEASES)]
        if provider == "linkerd":
            services.append(linkerd_policy_service(f"svc{j}", f"team{j % 20}", placed,
                                                   release=release))
        else:
            services.append(full_policy_service(f"svc{j}", f"team{j % 20}", placed,
                                                release=release))
    spec: dict[str, Any] = {
        "mesh": {"provider": provider, "id": "mesh1"},
        "pki": {"keyAlgorithm": key_algorithm},
        "clusters": clusters,
        "services": services,
    }
    spec.update(linkerd_policy_mesh() if provider == "linkerd" else full_policy_mesh(namespaces))
    if provider == "linkerd":
        # Linkerd's issuer must outlive its 60-day renewal window.
        spec["pki"]["keyAlgorithm"] = "ecdsa-p256" if key_algorithm.startswith("rsa") else key_algorithm
    return spec


def write_stack_file(path: Path, spec: dict[str, Any]) -> Path:
    config = {"config": {f"meshboot:{k}": v for k, v in spec.items()}}
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    path.write_text(yaml.dump(config, Dumper=dumper, sort_keys=False))
    return path
