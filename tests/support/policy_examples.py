"""Spec fragments (camelCase, as in a stack file) that switch on every policy feature.

Used by tests and the scale benchmark: ``full_policy_service`` gives one
``meshboot:services[*]`` entry with every per-service key set in a combination
the validator accepts.
"""

from __future__ import annotations

from typing import Any, Literal

Release = Literal["canary", "blueGreen", "abTest"]


def full_policy_service(name: str, namespace: str, clusters: list[str],
                        release: Release | None = None,
                        failover: list[tuple[str, str]] | None = None,
                        local_share: int = 80) -> dict[str, Any]:
    """A service entry with full policy.

    Without ``release`` it keeps ``local_share`` percent of calls local (per-cluster
    subsets); with one, it routes by version and, given ``failover`` region pairs
    (regions of the spec's clusters), fails over between regions.
    """
    svc: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "ports": [{"name": "http", "port": 9080, "protocol": "HTTP"},
                  {"name": "metrics", "port": 15090, "protocol": "TCP"}],
        "clusters": list(clusters),
        "versions": ["v1", "v2"],
        "timeout": "3s",
        "retries": {"attempts": 3, "perTryTimeout": "1s", "retryOn": ["5xx", "reset", "connect-failure"]},
        "connectionPool": {"tcp": {"maxConnections": 100, "connectTimeout": "2s"},
                           "http": {"http1MaxPendingRequests": 64, "http2MaxRequests": 256,
                                    "maxRequestsPerConnection": 10, "idleTimeout": "60s"}},
        "outlierDetection": {"consecutive5xxErrors": 5, "interval": "10s", "baseEjectionTime": "30s",
                             "maxEjectionPercent": 100},
        "loadBalancer": {"algorithm": "LEAST_REQUEST"},
        "fault": {"header": {"name": "x-chaos", "exact": "on"},
                  "delay": {"fixedDelay": "2s", "percent": 50},
                  "abort": {"httpStatus": 503, "percent": 10}},
        "authorization": {"rules": [
            {"from": {"serviceAccounts": [f"{namespace}/frontend"]},
             "to": {"methods": ["GET", "POST"], "paths": ["/api/*"]}},
            {"from": {"namespaces": [namespace]}, "to": {"methods": ["GET"]}},
        ]},
        "jwt": {"issuer": "https://auth.example.com", "jwksUri": "https://auth.example.com/jwks.json",
                "audiences": [f"{name}.example.com"], "forwardOriginalToken": True,
                "requiredClaims": {"role": ["admin", "user"]}},
        "mtls": {"ports": {15090: "DISABLE"}},
    }
    if release is None:
        svc["routing"] = {"localShare": local_share}
    else:
        releases: dict[str, dict[str, Any]] = {
            "canary": {"canary": {"stable": "v1", "candidate": "v2", "weight": 10,
                                  "header": {"name": "x-canary", "exact": "1"}}},
            "blueGreen": {"blueGreen": {"active": "v1", "preview": "v2",
                                        "header": {"name": "x-preview", "exact": "1"}}},
            "abTest": {"abTest": {
                "groups": [{"name": "beta", "version": "v2", "header": {"name": "x-group", "exact": "beta"}},
                           {"name": "api", "version": "v1", "pathPrefix": "/api/v1"}],
                "default": {"v1": 50, "v2": 50}}},
        }
        svc["release"] = releases[release]
        if failover:
            svc["routing"] = {"locality": {"failover": [{"from": a, "to": b} for a, b in failover]}}
    return svc


def full_policy_mesh(namespaces: list[str]) -> dict[str, Any]:
    """``meshboot:security`` and ``meshboot:traffic`` with every mesh-wide key set."""
    return {
        "security": {"mtls": {"mode": "STRICT"}, "defaultDeny": True},
        "traffic": {"crossCluster": "discovery", "versionLabel": "version",
                    "defaultOutlierDetection": {"consecutive5xxErrors": 3, "interval": "5s",
                                                "baseEjectionTime": "1m", "maxEjectionPercent": 100},
                    "sidecarEgress": {ns: ["./*", "istio-system/*"] for ns in sorted(namespaces)}},
    }


# Keys Linkerd has no equivalent for (stacks.linkerd.policy refuses them).
_ISTIO_ONLY_SERVICE_KEYS = ("fault", "connectionPool", "loadBalancer", "jwt", "mtls")


def linkerd_policy_service(name: str, namespace: str, clusters: list[str],
                           release: Release | None = None,
                           local_share: int = 80) -> dict[str, Any]:
    """``full_policy_service`` restricted to what Linkerd expresses.

    Retries, timeouts, circuit breaking (consecutive 5xx + backoff), releases,
    local share and authorization with the kubelet's probe paths.
    """
    svc = full_policy_service(name, namespace, clusters, release=release, local_share=local_share)
    for key in _ISTIO_ONLY_SERVICE_KEYS:
        svc.pop(key)
    svc["retries"] = {"attempts": 3, "perTryTimeout": "1s", "retryOn": ["5xx", "gateway-error"]}
    svc["outlierDetection"] = {"consecutive5xxErrors": 5, "baseEjectionTime": "30s"}
    svc["authorization"]["probePaths"] = ["/healthz", "/ready"]
    return svc


def linkerd_policy_mesh() -> dict[str, Any]:
    """Mesh-wide keys for Linkerd: STRICT + default deny; callers through gateways admitted."""
    return {
        "security": {"mtls": {"mode": "STRICT"}, "defaultDeny": True},
        "linkerd": {"admitGatewayIdentity": True},
    }
