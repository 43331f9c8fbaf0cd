"""Where Istio's control planes, config stores and east-west gateways are.

Which primary's istiod (and config store) serves a cluster, which clusters
get an east-west gateway, and which gateway other networks dial to reach a
cluster's workloads. Shared by the plan (``stacks.istio.plan``) and the
policy objects (``stacks.istio.policy``).
"""

from __future__ import annotations

from clusters.spec import ClusterSpec, Spec
from stacks.common import cluster_index, is_multi_network, remotes_of
from stacks.plan import GatewayAddressRef

ISTIO_NS = "istio-system"
EASTWEST = "istio-eastwestgateway"


def serves_remotes(spec: Spec, cluster: ClusterSpec) -> bool:
    return not cluster.is_remote and bool(remotes_of(spec, cluster.name))


def config_cluster(spec: Spec, cluster: ClusterSpec) -> str:
    """The primary whose istiod (and config store) serves ``cluster``."""
    return cluster.primary if cluster.is_remote and cluster.primary else cluster.name


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
    return (config_cluster(spec, c), c.network) if config_only(spec) else (c.network,)


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
    chosen: list[str] = []
    for c in spec.clusters:
        if c.is_remote:
            continue
        forced = c.east_west_gateway.enabled
        if forced if forced is not None else (multi or serves_remotes(spec, c)):
            chosen.append(c.name)
    for c in spec.clusters:
        if c.is_remote and c.east_west_gateway.enabled:
            chosen.append(c.name)
    for c in spec.clusters:
        if c.is_remote and c.east_west_gateway.enabled is None and multi:
            scope = _gateway_scope(spec, c)
            if not any(_gateway_scope(spec, spec.cluster(g)) == scope for g in chosen):
                chosen.append(c.name)
    return [c.name for c in spec.clusters if c.name in chosen]


def needs_eastwest(spec: Spec, cluster: ClusterSpec) -> bool:
    return cluster.name in eastwest_clusters(spec)


def network_gateway(spec: Spec, cluster: ClusterSpec) -> str | None:
    """The cluster whose east-west gateway other networks dial to reach ``cluster``'s
    workloads (its own, else one in its gateway scope, the config cluster first)."""
    gateways = eastwest_clusters(spec)
    if cluster.name in gateways:
        return cluster.name
    scope = _gateway_scope(spec, cluster)
    candidates = [g for g in gateways if _gateway_scope(spec, spec.cluster(g)) == scope]
    candidates.sort(key=lambda g: g != config_cluster(spec, cluster))
    return candidates[0] if candidates else None


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
