"""``meshboot:linkerd``: settings only the Linkerd stack reads.

Everything has a default, so an environment written for Istio renders for
Linkerd by switching ``meshboot:mesh.provider`` alone. Unknown keys are
errors (``extra="forbid"``), like everywhere else in the spec.
"""

from __future__ import annotations

from pydantic import Field

from clusters.models import Model


class LinkPair(Model):
    """One direction of a link: ``source`` mirrors services of ``target``."""

    source: str
    target: str


# A probe slower than a day would never notice a gateway going away; the bound
# also keeps "<n>s" far inside Go's time.Duration (int64 nanoseconds, ~292 years).
MAX_PROBE_SECONDS = 86400


class ProbeSpec(Model):
    """How a source cluster probes a target's multicluster gateway."""

    path: str = "/ready"
    # Only 4191 (the gateway proxy's admin port) works; see stacks.linkerd.plan.check.
    port: int = Field(default=4191, ge=1, le=65535)
    period_seconds: int = Field(default=3, ge=1, le=MAX_PROBE_SECONDS)
    failure_threshold: int = Field(default=3, ge=1, le=1000)
    timeout_seconds: int = Field(default=30, ge=1, le=MAX_PROBE_SECONDS)


class LinkerdSpec(Model):
    # Chart version for all three charts; default derived from
    # meshboot:mesh.version (edge-YY.M.P -> 20YY.M.P, the edge CalVer charts).
    chart_version: str | None = None
    # The Kubernetes DNS domain of every cluster (Link targetClusterDomain);
    # the identity trust domain is meshboot:mesh.trustDomain.
    cluster_domain: str = "cluster.local"
    gateway_port: int = Field(default=4143, ge=1, le=65535)
    probe: ProbeSpec = ProbeSpec()
    # Clusters on the same network link without a gateway (flat mode, services
    # exported for remote discovery). False: every link goes through gateways,
    # except the pairs listed in ``gatewayless``.
    gatewayless_same_network: bool = True
    # Extra gateway-less links (both clusters must share a network).
    gatewayless: list[LinkPair] = []
    # Calls through a multicluster gateway arrive with the gateway's identity, not the
    # caller's (docs 2-edge/tasks/pod-to-pod-multicluster.md). True: services whose
    # authorization names callers admit that identity where they are reached through
    # a gateway, i.e. every meshed workload of every cluster linked through it.
    # False (default): such services are a spec error.
    admit_gateway_identity: bool = False
