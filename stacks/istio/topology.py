"""Where Istio's control planes, config stores and east-west gateways are.

Which primary's istiod (and config store) serves a cluster, which clusters
get an east-west gateway, and which gateway other networks dial to reach a
cluster's workloads. Shared by the plan (``stacks.istio.plan``) and the
policy objects (``stacks.istio.policy``).
"""

from __future__ import annotations

from dataclasses import dataclass

from clusters.spec import ClusterSpec, Spec
from stacks.common import cluster_index, is_multi_network, remotes_of
from stacks.plan import GatewayAddressRef

ISTIO_NS = "istio-system"
EASTWEST = "istio-eastwestgateway"


def serves_remotes(spec: Spec, cluster: ClusterSpec) -> bool:
    return not cluster.is_remote and bool(remotes_of(spec, cluster.name))


def _store(cluster: ClusterSpec) -> str:
    return cluster.primary if cluster.is_remote and cluster.primary else cluster.name


def config_cluster(spec: Spec, cluster: ClusterSpec) -> str:
    """The primary whose istiod (and config store) serves ``cluster``."""
    return _store(cluster)


def config_only(spec: Spec) -> bool:
    """``traffic.crossCluster: serviceEntry``: primaries do not discover each other.

    Upstream, a Kubernetes Service wins over a ServiceEntry of the same host and
    namespace (pilot/pkg/model/push_context.go, initServiceRegistry: "the Service is
    from Kubernetes it should take precedence"), and a remote secret makes istiod
    discover every Service of that cluster. So a ServiceEntry for a service that runs
    in another primary's clusters only routes if this primary does not read them:
    each primary holds remote secrets for its own remotes only (which primary-remote
    needs: the primary discovers and patches its remotes through them).
    """
    return spec.traffic.cross_cluster == "serviceEntry"


def _gateway_scope(spec: Spec, c: ClusterSpec) -> tuple[str, ...]:
    """Clusters whose gateways stand in for each other: one network (config-only
    meshes: one network of one config store, as a gateway routes with its own
    istiod's endpoints)."""
    return _scope(c, config_only(spec))


def _scope(c: ClusterSpec, by_store: bool) -> tuple[str, ...]:
    return (_store(c), c.network) if by_store else (c.network,)


def _first_by_name(spec: Spec) -> dict[str, ClusterSpec]:
    """name -> cluster, as ``spec.cluster(name)`` finds it (the first of that name)."""
    out: dict[str, ClusterSpec] = {}
    for c in spec.clusters:
        out.setdefault(c.name, c)
    return out


def eastwest_clusters(spec: Spec) -> list[str]:
    """Clusters that get an east-west gateway, in spec order.

    Upstream: a primary serving remotes exposes istiod through its gateway
    (samples/multicluster/expose-istiod.yaml); several networks need a gateway per
    network (istio.io setup/install/multicluster/multi-primary_multi-network,
    primary-remote_multi-network). Every primary of a multi-network mesh gets one;
    a remote only when its network has no other (on its primary's network it has
    none, as in setup/install/multicluster/primary-remote). ``enabled`` forces it.
    """
    multi = is_multi_network(spec)
    served = {c.primary for c in spec.clusters if c.is_remote}  # serves_remotes, for all at once
    chosen: list[str] = []
    for c in spec.clusters:
        if c.is_remote:
            continue
        forced = c.east_west_gateway.enabled
        if forced if forced is not None else (multi or c.name in served):
            chosen.append(c.name)
    for c in spec.clusters:
        if c.is_remote and c.east_west_gateway.enabled:
            chosen.append(c.name)
    first = _first_by_name(spec)
    scopes = {_gateway_scope(spec, first[g]) for g in chosen}
    for c in spec.clusters:
        if c.is_remote and c.east_west_gateway.enabled is None and multi:
            if _gateway_scope(spec, c) not in scopes:
                chosen.append(c.name)
                scopes.add(_gateway_scope(spec, first[c.name]))
    picked = set(chosen)
    return [c.name for c in spec.clusters if c.name in picked]


@dataclass(frozen=True)
class IstioTopology:
    """What the plan and the policy ask of the spec's topology, computed once."""

    eastwest: tuple[str, ...]                              # eastwest_clusters(spec)
    gateway_scopes: tuple[tuple[str, tuple[str, ...]], ...]  # (gateway cluster, its scope)
    config_only: bool

    @classmethod
    def of(cls, spec: Spec) -> IstioTopology:
        gateways = eastwest_clusters(spec)
        first = _first_by_name(spec)
        return cls(eastwest=tuple(gateways),
                   gateway_scopes=tuple((g, _gateway_scope(spec, first[g])) for g in gateways),
                   config_only=config_only(spec))

    def network_gateway(self, cluster: ClusterSpec) -> str | None:
        """The cluster whose east-west gateway other networks dial to reach ``cluster``'s
        workloads (its own, else one in its gateway scope, the config cluster first)."""
        if cluster.name in self.eastwest:
            return cluster.name
        scope = _scope(cluster, self.config_only)
        candidates = [g for g, s in self.gateway_scopes if s == scope]
        candidates.sort(key=lambda g: g != _store(cluster))
        return candidates[0] if candidates else None


def network_gateway(spec: Spec, cluster: ClusterSpec) -> str | None:
    """``IstioTopology.network_gateway`` for a one-off question."""
    return IstioTopology.of(spec).network_gateway(cluster)


def gateway_address(spec: Spec, name: str, require_ip: bool = False) -> GatewayAddressRef:
    c = spec.cluster(name)
    return GatewayAddressRef(
        cluster=name, namespace=ISTIO_NS, service=EASTWEST,
        fixed=c.east_west_gateway.address, after_step="eastwest-gateway",
        spec_path=f"meshboot:clusters[{cluster_index(spec, name)}].eastWestGateway.address",
        require_ip=require_ip)


def discovery_sources(spec: Spec, cluster: ClusterSpec) -> list[ClusterSpec]:
    """Clusters whose API servers this primary's istiod watches: all others, or only
    its own remotes in a config-only mesh (see ``config_only``)."""
    if cluster.is_remote:
        return []
    if config_only(spec):
        return remotes_of(spec, cluster.name)
    return [c for c in spec.clusters if c.name != cluster.name]
