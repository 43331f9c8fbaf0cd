"""Istio multi-cluster plan: spec -> per-cluster steps (pure data).

Per cluster, in dependency order: namespaces, the ``cacerts`` Secret, the
``base`` chart, the reader token Secret, ``istiod``, the east-west gateway,
the mesh Gateways (cross-network, istiod exposure), remote secrets, then the
traffic/security policy objects. Follows the upstream multi-primary,
multi-network and primary-remote install guides (see mesh-facts.md).
"""

from __future__ import annotations

from typing import Any

from clusters.errors import Problem, SpecError
from clusters.spec import ClusterSpec, Spec
from stacks.common import (
    BUILTIN_NAMESPACES,
    cluster_index,
    is_multi_network,
    namespace,
    remotes_of,
    service_account_token_secret,
    service_namespaces,
)
from stacks.istio.order import cross_cluster_order
from stacks.labels import MANAGED
from stacks.plan import (
    ClusterPlan,
    GatewayAddressRef,
    HelmRelease,
    KubeconfigRef,
    MeshPlan,
    PkiRef,
    Step,
)

ISTIO_REPO = "https://istio-release.storage.googleapis.com/charts"
ISTIO_NS = "istio-system"
EASTWEST = "istio-eastwestgateway"
READER_SA = "istio-reader-service-account"


def reader_token_secret_name(spec: Spec) -> str:
    return f"istio-reader-token-{spec.mesh.token_generation}"


def serves_remotes(spec: Spec, cluster: ClusterSpec) -> bool:
    return not cluster.is_remote and bool(remotes_of(spec, cluster.name))


def needs_eastwest(spec: Spec, cluster: ClusterSpec) -> bool:
    forced = cluster.east_west_gateway.enabled
    if forced is not None:
        return forced
    return is_multi_network(spec) or serves_remotes(spec, cluster)


def mesh_id(spec: Spec, cluster: ClusterSpec) -> str:
    return cluster.mesh_id or spec.mesh.id


def gateway_address(spec: Spec, name: str) -> GatewayAddressRef:
    c = spec.cluster(name)
    return GatewayAddressRef(
        cluster=name, namespace=ISTIO_NS, service=EASTWEST,
        fixed=c.east_west_gateway.address, after_step="eastwest-gateway",
        spec_path=f"meshboot:clusters[{cluster_index(spec, name)}].eastWestGateway.address")


def discovery_sources(spec: Spec, cluster: ClusterSpec) -> list[ClusterSpec]:
    """Clusters whose API servers this primary's istiod watches (all others)."""
    if cluster.is_remote:
        return []
    return [c for c in spec.clusters if c.name != cluster.name]


def check(spec: Spec) -> list[Problem]:
    problems: list[Problem] = []
    for i, c in enumerate(spec.clusters):
        if c.is_remote and c.primary and not needs_eastwest(spec, spec.cluster(c.primary)):
            problems.append(Problem(
                f"meshboot:clusters[{cluster_index(spec, c.primary)}].eastWestGateway.enabled",
                f"primary {c.primary!r} serves remote {c.name!r} and must expose istiod "
                "through its east-west gateway"))
        if is_multi_network(spec) and c.east_west_gateway.enabled is False:
            problems.append(Problem(f"meshboot:clusters[{i}].eastWestGateway.enabled",
                                    "a multi-network mesh needs an east-west gateway in every "
                                    "cluster"))
    return problems


def _values_base(spec: Spec, c: ClusterSpec) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if c.is_remote:
        values["profile"] = "remote"
    if spec.mesh.revision:
        values["revision"] = spec.mesh.revision
    return values


def istiod_values(spec: Spec, c: ClusterSpec) -> dict[str, Any]:
    glob: dict[str, Any] = {
        "meshID": mesh_id(spec, c),
        "multiCluster": {"clusterName": c.name},
        "network": c.network,
    }
    values: dict[str, Any] = {}
    if c.is_remote:
        assert c.primary is not None
        values["profile"] = "remote"
        glob["remotePilotAddress"] = gateway_address(spec, c.primary)
        values["istiodRemote"] = {"injectionPath": f"/inject/cluster/{c.name}/net/{c.network}"}
    elif serves_remotes(spec, c):
        glob["externalIstiod"] = True
    if spec.mesh.revision:
        values["revision"] = spec.mesh.revision
    values["global"] = glob
    values["meshConfig"] = {"trustDomain": spec.mesh.trust_domain}
    return values


def eastwest_values(spec: Spec, c: ClusterSpec) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": EASTWEST,
        "networkGateway": c.network,
        "labels": {"istio": "eastwestgateway", "topology.istio.io/network": c.network},
    }
    if spec.mesh.revision:
        values["revision"] = spec.mesh.revision
    return values


def cross_network_gateway() -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "cross-network-gateway", "namespace": ISTIO_NS},
        "spec": {
            "selector": {"istio": "eastwestgateway"},
            "servers": [{
                "port": {"number": 15443, "name": "tls", "protocol": "TLS"},
                "tls": {"mode": "AUTO_PASSTHROUGH"},
                "hosts": ["*.local"],
            }],
        },
    }


def istiod_exposure(spec: Spec) -> list[dict[str, Any]]:
    """Gateway + VirtualService that let remotes reach istiod (15012 xDS, 15017 webhook)."""
    svc = f"istiod-{spec.mesh.revision}" if spec.mesh.revision else "istiod"
    host = f"{svc}.{ISTIO_NS}.svc.cluster.local"
    gateway = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "istiod-gateway", "namespace": ISTIO_NS},
        "spec": {
            "selector": {"istio": "eastwestgateway"},
            "servers": [
                {"port": {"name": "tls-istiod", "number": 15012, "protocol": "tls"},
                 "tls": {"mode": "PASSTHROUGH"}, "hosts": ["*"]},
                {"port": {"name": "tls-istiodwebhook", "number": 15017, "protocol": "tls"},
                 "tls": {"mode": "PASSTHROUGH"}, "hosts": ["*"]},
            ],
        },
    }
    vs = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "istiod-vs", "namespace": ISTIO_NS},
        "spec": {
            "hosts": ["*"],
            "gateways": ["istiod-gateway"],
            "tls": [
                {"match": [{"port": 15012, "sniHosts": ["*"]}],
                 "route": [{"destination": {"host": host, "port": {"number": 15012}}}]},
                {"match": [{"port": 15017, "sniHosts": ["*"]}],
                 "route": [{"destination": {"host": host, "port": {"number": 443}}}]},
            ],
        },
    }
    return [gateway, vs]


def cacerts_secret(cluster: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": "cacerts", "namespace": ISTIO_NS,
                     "labels": dict(MANAGED)},
        "stringData": {
            "ca-cert.pem": PkiRef("ca-cert", cluster),
            "ca-key.pem": PkiRef("ca-key", cluster),
            "root-cert.pem": PkiRef("root-cert"),
            "cert-chain.pem": PkiRef("cert-chain", cluster),
        },
    }


def reader_token_secret(spec: Spec) -> dict[str, Any]:
    return service_account_token_secret(reader_token_secret_name(spec), ISTIO_NS, READER_SA,
                                        dict(MANAGED))


def remote_secret(spec: Spec, target: ClusterSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": f"istio-remote-secret-{target.name}",
            "namespace": ISTIO_NS,
            "labels": {"istio/multiCluster": "true"},
            "annotations": {"networking.istio.io/cluster": target.name},
        },
        "stringData": {
            target.name: KubeconfigRef(
                target=target.name, api_server=target.api_server,
                token_secret=(ISTIO_NS, reader_token_secret_name(spec)), user=READER_SA),
        },
    }


def chart(spec: Spec, name: str, release: str, values: dict[str, Any]) -> HelmRelease:
    return HelmRelease(
        release_name=release, namespace=ISTIO_NS, chart=name, repo_name="istio",
        repo_url=spec.mesh.chart_repository or ISTIO_REPO,
        version=spec.mesh.resolved_version, values=values)


def injection_labels(spec: Spec) -> dict[str, str]:
    if spec.mesh.revision:
        return {"istio.io/rev": spec.mesh.revision}
    return {"istio-injection": "enabled"}


def build_istio_plan(spec: Spec, policy: dict[str, list[dict[str, Any]]] | None = None,
                     source: str = "spec") -> MeshPlan:
    """The Istio plan; ``policy`` maps cluster -> traffic/security objects."""
    problems = check(spec)
    if problems:
        raise SpecError(source, problems)
    primaries = [c for c in spec.clusters if not c.is_remote]
    read_by_others = {c.name for c in spec.clusters} if len(primaries) > 1 else \
        {c.name for c in spec.clusters if c not in primaries}
    app_namespaces = [namespace(ns, injection_labels(spec)) for ns in service_namespaces(spec)
                      if ns not in BUILTIN_NAMESPACES and ns != ISTIO_NS]
    plans = []
    for c in spec.clusters:
        cp = ClusterPlan(c.name)
        ns_annotations = {"topology.istio.io/controlPlaneClusters": c.primary} \
            if c.is_remote and c.primary else None
        objs = [namespace(ISTIO_NS, {"topology.istio.io/network": c.network}, ns_annotations)]
        objs += app_namespaces
        cp.add(Step("namespaces", objects=tuple(objs)))
        cp.add(Step("cacerts", after=("namespaces",), objects=(cacerts_secret(c.name),)))
        cp.add(Step("istio-base", after=("namespaces",),
                    release=chart(spec, "base", "istio-base", _values_base(spec, c))))
        if c.name in read_by_others:
            # The token controller fills it once the ServiceAccount exists (base chart).
            cp.add(Step("reader-token", after=("istio-base",),
                        objects=(reader_token_secret(spec),)))
        cp.add(Step("istiod", after=("cacerts", "istio-base"),
                    release=chart(spec, "istiod", "istiod", istiod_values(spec, c))))
        cr_after = "istiod"
        if needs_eastwest(spec, c):
            cp.add(Step("eastwest-gateway", after=("istiod",),
                        release=chart(spec, "gateway", EASTWEST, eastwest_values(spec, c))))
            cr_after = "eastwest-gateway"
            gws: list[dict[str, Any]] = []
            if is_multi_network(spec):
                gws.append(cross_network_gateway())
            if serves_remotes(spec, c):
                gws += istiod_exposure(spec)
            if gws:
                cp.add(Step("mesh-gateways", after=("eastwest-gateway",), objects=tuple(gws)))
        sources = discovery_sources(spec, c)
        if sources:
            cp.add(Step("remote-secrets", after=("istiod",),
                        objects=tuple(remote_secret(spec, t) for t in sources)))
        extra = (policy or {}).get(c.name, [])
        if extra:
            cp.add(Step("policy", after=(cr_after,), objects=tuple(extra)))
        plans.append(cp)
    notes = []
    if spec.mesh.token_generation > 1:
        notes.append(f"reader tokens at generation {spec.mesh.token_generation}: `pulumi up` "
                     "replaces the remote secrets and deletes the previous token Secrets; "
                     "check `istioctl remote-clusters` shows every cluster synced")
    return MeshPlan(provider="istio", mesh_id=spec.mesh.id, clusters=plans, notes=notes,
                    order=cross_cluster_order(spec, plans))
