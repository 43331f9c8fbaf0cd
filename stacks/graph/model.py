"""The mesh topology as a graph: what ``meshboot graph`` draws, as plain data.

Built from the plan (the objects ``render`` and ``pulumi up`` create), so the
picture shows what is deployed, not a second reading of the spec: edges are
the Istio remote secrets and remote control-plane addresses, and the Linkerd
``Link`` objects, found in the plan's objects and Helm values; gateways are
the east-west / multicluster gateway releases. Where a cluster sits (network,
region, zone, role) and which services run there come from the spec, which
the plan does not repeat. Serialisers: ``stacks.graph.dot`` and
``stacks.graph.mermaid``; both take their node ids from :func:`node_ids`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from clusters.spec import Spec
from stacks.istio.topology import EASTWEST, ISTIO_NS
from stacks.linkerd.topology import GATEWAY, MC_NS
from stacks.plan import GatewayAddressRef, MeshPlan
from stacks.traffic.placement import running

# istioctl create-remote-secret labels the Secret so, and names the cluster it reads in
# this annotation (istio istioctl/pkg/multicluster/remote_secret.go); istiod's secret
# controller watches that label (pkg/kube/multicluster/secretcontroller.go).
REMOTE_SECRET_LABEL = "istio/multiCluster"
REMOTE_SECRET_CLUSTER = "networking.istio.io/cluster"
LINK_GROUP = "multicluster.linkerd.io/"

EdgeKind = Literal["remote-secret", "control-plane", "link"]
Role = Literal["primary", "remote", "member"]


@dataclass(frozen=True)
class Gateway:
    """A cluster's east-west (Istio) or multicluster (Linkerd) gateway."""

    kind: str                 # "east-west gateway", "multicluster gateway"
    service: str              # namespace/name of its LoadBalancer Service
    address: str | None       # the spec's fixed address; None: the load balancer's, at deploy
    port: int | None = None   # the port callers dial (Linkerd), None where several are used

    @property
    def endpoint(self) -> str:
        if self.address is None:
            return f"LoadBalancer of {self.service}"
        return _endpoint(self.address, self.port)


def _endpoint(address: str, port: object = None) -> str:
    """``address`` or ``address:port`` (an IPv6 address in brackets)."""
    if port is None:
        return address
    host = f"[{address}]" if ":" in address else address
    return f"{host}:{port}"


@dataclass(frozen=True)
class ClusterNode:
    name: str
    network: str
    region: str | None
    zone: str | None
    role: Role
    primary: str | None               # an Istio remote's primary
    control_plane: str                # what runs there: "istiod", ...
    gateway: Gateway | None
    services: tuple[str, ...]         # "name.namespace" of the services it runs, spec order


@dataclass(frozen=True)
class Edge:
    """``source`` uses ``target``: reads its API server (remote secret), gets its
    configuration from it (control plane), or mirrors its services (Link)."""

    kind: EdgeKind
    source: str
    target: str
    via_gateway: bool           # ends at the target's gateway (else at the cluster itself)
    address: str | None = None  # what ``source`` dials, where the plan names it

    @property
    def label(self) -> str:
        if self.kind == "remote-secret":
            return "remote secret"
        if self.kind == "control-plane":
            return f"istiod via {self.address}" if self.address else "istiod via gateway"
        if not self.via_gateway:
            return "Link (pod-to-pod)"
        return f"Link via {self.address}" if self.address else "Link via gateway"


@dataclass(frozen=True)
class Region:
    name: str | None                  # None: clusters without a region
    clusters: tuple[ClusterNode, ...]


@dataclass(frozen=True)
class Network:
    name: str
    regions: tuple[Region, ...]


@dataclass(frozen=True)
class TopologyGraph:
    provider: str
    mesh_id: str
    networks: tuple[Network, ...]     # in order of first appearance in the spec
    edges: tuple[Edge, ...]           # in plan order

    @property
    def title(self) -> str:
        return f"mesh {self.mesh_id} ({self.provider})"

    def clusters(self) -> Iterator[ClusterNode]:
        for net in self.networks:
            for region in net.regions:
                yield from region.clusters

    def cluster(self, name: str) -> ClusterNode:
        for c in self.clusters():
            if c.name == name:
                return c
        raise KeyError(name)


# ------------------------------------------------------------------- from the plan
def _gateways(spec: Spec, plan: MeshPlan) -> dict[str, Gateway]:
    out: dict[str, Gateway] = {}
    for cp in plan.clusters:
        address = spec.cluster(cp.cluster).east_west_gateway.address
        for step in cp.steps:
            rel = step.release
            if rel is None:
                continue
            if plan.provider == "istio" and rel.chart == "gateway" \
                    and "networkGateway" in rel.values:
                out[cp.cluster] = Gateway("east-west gateway", f"{ISTIO_NS}/{EASTWEST}", address)
            elif plan.provider == "linkerd" and rel.chart == "linkerd-multicluster":
                gw = rel.values.get("gateway", {})
                if gw.get("enabled"):
                    out[cp.cluster] = Gateway("multicluster gateway", f"{MC_NS}/{GATEWAY}",
                                              address, gw.get("port"))
    return out


def _address(ref: Any, port: Any = None) -> str | None:
    """The fixed address a reference names (None: the load balancer's, known at deploy)."""
    if not isinstance(ref, GatewayAddressRef) or ref.fixed is None:
        return None
    return _endpoint(ref.fixed, port)


def plan_edges(plan: MeshPlan) -> list[Edge]:
    """The cross-cluster edges the plan creates, in plan order."""
    edges: list[Edge] = []
    for cp in plan.clusters:
        for step in cp.steps:
            rel = step.release
            if rel is not None and rel.chart == "istiod":
                ref = rel.values.get("global", {}).get("remotePilotAddress")
                if isinstance(ref, GatewayAddressRef):
                    edges.append(Edge("control-plane", cp.cluster, ref.cluster, True, _address(ref)))
            for obj in step.objects:
                meta = obj.get("metadata", {})
                if obj.get("kind") == "Secret" \
                        and meta.get("labels", {}).get(REMOTE_SECRET_LABEL) == "true":
                    target = meta.get("annotations", {}).get(REMOTE_SECRET_CLUSTER)
                    if target:
                        edges.append(Edge("remote-secret", cp.cluster, target, False))
                elif obj.get("kind") == "Link" and str(obj.get("apiVersion", "")).startswith(LINK_GROUP):
                    body = obj["spec"]
                    ref = body.get("gatewayAddress")
                    edges.append(Edge("link", cp.cluster, body["targetClusterName"], ref is not None,
                                      _address(ref, body.get("gatewayPort"))))
    return edges


def _control_plane(provider: str, role: Role, primary: str | None) -> str:
    if provider == "linkerd":
        return "linkerd control plane"
    if role == "remote":
        return f"no istiod: configured by {primary}"
    return "istiod"


def topology_graph(spec: Spec, plan: MeshPlan) -> TopologyGraph:
    """The graph of ``plan`` (built from ``spec``), clusters grouped by network and region."""
    gateways = _gateways(spec, plan)
    planned = {cp.cluster for cp in plan.clusters}
    services: dict[str, list[str]] = {}
    for svc in spec.services:
        for name in running(spec, svc):
            services.setdefault(name, []).append(f"{svc.name}.{svc.namespace}")
    grouped: dict[str, dict[str | None, list[ClusterNode]]] = {}
    for c in spec.clusters:
        if c.name not in planned:
            continue
        role: Role = "member" if plan.provider == "linkerd" else c.role
        primary = c.primary if role == "remote" else None
        node = ClusterNode(
            name=c.name, network=c.network, region=c.region, zone=c.zone, role=role,
            primary=primary, control_plane=_control_plane(plan.provider, role, primary),
            gateway=gateways.get(c.name), services=tuple(services.get(c.name, ())))
        grouped.setdefault(c.network, {}).setdefault(c.region, []).append(node)
    networks = tuple(
        Network(net, tuple(Region(r, tuple(nodes)) for r, nodes in regions.items()))
        for net, regions in grouped.items())
    return TopologyGraph(provider=plan.provider, mesh_id=plan.mesh_id, networks=networks,
                         edges=tuple(plan_edges(plan)))


# --------------------------------------------------------------------------- ids
_UNSAFE = re.compile(r"[^A-Za-z0-9]+")


@dataclass(frozen=True)
class NodeIds:
    """Identifiers both serialisers use: ASCII letters, digits and ``_`` only.

    Mermaid reads ``-``, ``.``, ``o``/``x`` after an arrow and the word ``end``
    as syntax (mermaid docs, flowchart.md "Special characters that break
    syntax"), so names never appear in ids as they are: each id is a kind
    prefix plus the name with anything else folded to ``_``, numbered when
    two names fold to the same id.
    """

    networks: tuple[str, ...]
    regions: tuple[tuple[str, ...], ...]          # per network
    clusters: dict[str, str]                      # cluster name -> its box
    control_planes: dict[str, str]                # cluster name -> its control-plane node
    gateways: dict[str, str]
    services: dict[str, str]                      # cluster name -> its services node

    def edge_ends(self, edge: Edge) -> tuple[str, str]:
        target = self.gateways.get(edge.target) if edge.via_gateway else None
        return self.control_planes[edge.source], target or self.control_planes[edge.target]


def node_ids(graph: TopologyGraph) -> NodeIds:
    taken: set[str] = set()

    def take(prefix: str, name: str | None) -> str:
        base = f"{prefix}_{_UNSAFE.sub('_', name).strip('_')}" if name else prefix
        base = base.rstrip("_")
        out, n = base, 1
        while out in taken:
            n += 1
            out = f"{base}_{n}"
        taken.add(out)
        return out

    nets, regions = [], []
    clusters, cps, gws, svcs = {}, {}, {}, {}
    for net in graph.networks:
        nets.append(take("net", net.name))
        regs = []
        for region in net.regions:
            regs.append(take("region", region.name or "none"))
            for c in region.clusters:
                clusters[c.name] = take("cluster", c.name)
                cps[c.name] = take("cp", c.name)
                if c.gateway is not None:
                    gws[c.name] = take("gw", c.name)
                if c.services:
                    svcs[c.name] = take("svc", c.name)
        regions.append(tuple(regs))
    return NodeIds(tuple(nets), tuple(regions), clusters, cps, gws, svcs)
