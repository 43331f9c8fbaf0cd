"""Who links to whom in a Linkerd mesh, computed once per plan.

Every cluster links to every other (Linkerd has no primary-remote mode). A
link is gateway-less (pod-to-pod, remote discovery) between clusters on one
network when ``linkerd.gatewaylessSameNetwork`` is on, or when the pair is
listed in ``linkerd.gatewayless``; otherwise it goes through the target's
multicluster gateway. ``LinkerdTopology`` holds the links and what the plan
and the policy ask of them, so nothing walks all cluster pairs again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from clusters.spec import ServiceSpec, Spec

LINKERD_NS = "linkerd"
MC_NS = "linkerd-multicluster"
GATEWAY = "linkerd-gateway"


@dataclass(frozen=True)
class Link:
    source: str
    target: str
    gateway: bool


def links(spec: Spec) -> list[Link]:
    """Every ordered pair (source mirrors target), in spec order."""
    explicit = {(p.source, p.target) for p in spec.linkerd.gatewayless}
    same_network = spec.linkerd.gatewayless_same_network
    out = []
    for a in spec.clusters:
        for b in spec.clusters:
            if a.name == b.name:
                continue
            flat = (same_network and a.network == b.network) or (a.name, b.name) in explicit
            out.append(Link(a.name, b.name, gateway=not flat))
    return out


@dataclass(frozen=True)
class LinkerdTopology:
    clusters: tuple[str, ...]                        # names, in spec order
    links: tuple[Link, ...]                          # as ``links(spec)``
    outgoing: Mapping[str, tuple[Link, ...]]         # source -> its links, in order
    gateway_sources: Mapping[str, tuple[str, ...]]   # target -> sources linked through its gateway

    @classmethod
    def of(cls, spec: Spec) -> LinkerdTopology:
        all_links = links(spec)
        outgoing: dict[str, list[Link]] = {}
        into: dict[str, list[str]] = {}
        for link in all_links:
            outgoing.setdefault(link.source, []).append(link)
            if link.gateway:
                into.setdefault(link.target, []).append(link.source)
        return cls(clusters=tuple(spec.cluster_names), links=tuple(all_links),
                   outgoing={k: tuple(v) for k, v in outgoing.items()},
                   gateway_sources={k: tuple(v) for k, v in into.items()})

    def links_from(self, source: str) -> tuple[Link, ...]:
        return self.outgoing.get(source, ())

    def reached_through_gateway(self, cluster: str) -> bool:
        """Whether some cluster links to ``cluster`` through its multicluster gateway."""
        return cluster in self.gateway_sources

    def gateway_clusters(self, svc: ServiceSpec) -> list[str]:
        """Clusters running ``svc`` where callers arrive through the multicluster gateway.

        Client identity is lost through the gateway (docs 2-edge/tasks/
        pod-to-pod-multicluster.md): the gateway proxy opens the connection to the
        service with its own identity. Federated services are only joined pod-to-pod.
        """
        if svc.federated:
            return []
        return [c for c in self.clusters if c in self.gateway_sources and c in svc.clusters]

    def calls_through_gateway(self, svc: ServiceSpec, cluster: str) -> bool:
        """``cluster in gateway_clusters(svc)`` for a cluster of the spec."""
        return not svc.federated and cluster in self.gateway_sources and cluster in svc.clusters


def gateway_identity(spec: Spec) -> str:
    """The multicluster gateway's identity (what callers through it arrive as)."""
    return f"{GATEWAY}.{MC_NS}.serviceaccount.identity.{LINKERD_NS}.{spec.mesh.trust_domain}"


# A Service port's appProtocol per declared protocol, as Linkerd reads it (meshboot's
# Services, and the Services Flagger writes for a canary).
APP_PROTOCOL = {"HTTP": "http", "HTTP2": "kubernetes.io/h2c", "GRPC": "kubernetes.io/h2c",
                "HTTPS": "https"}
