"""Istio multi-cluster plan: spec -> per-cluster steps (pure data).

Per cluster, in dependency order: namespaces, the ``cacerts`` Secret, the
``base`` chart, the reader token Secret, ``istiod``, the east-west gateway,
the mesh Gateways (cross-network, istiod exposure), remote secrets, then the
traffic/security policy objects. Follows the upstream multi-primary,
multi-network and primary-remote install guides (see mesh-facts.md).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from clusters.errors import Problem, SpecError
from clusters.spec import ClusterSpec, Spec
from stacks.common import (
    BUILTIN_NAMESPACES,
    cluster_index,
    is_multi_network,
    namespace,
    networks,
    remotes_of,
    service_account_token_secret,
    service_namespaces,
)
from stacks.istio import delivery
from stacks.istio.order import cross_cluster_order
from stacks.istio.policy import istio_policy_objects
from stacks.istio.topology import (
    EASTWEST,
    ISTIO_NS,
    IstioTopology,
    config_only,
    discovery_sources,
    gateway_address,
    serves_remotes,
)
from stacks.labels import MANAGED
from stacks.plan import (
    ClusterPlan,
    HelmRelease,
    KubeconfigRef,
    MeshPlan,
    PkiRef,
    Step,
)

ISTIO_REPO = "https://istio-release.storage.googleapis.com/charts"
READER_SA = "istio-reader-service-account"


def reader_token_secret_name(spec: Spec) -> str:
    return f"istio-reader-token-{spec.mesh.token_generation}"


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


def check(spec: Spec, topology: IstioTopology) -> list[Problem]:
    problems: list[Problem] = []
    gateways = topology.eastwest
    for i, c in enumerate(spec.clusters):
        if serves_remotes(spec, c) and c.name not in gateways:
            remote = remotes_of(spec, c.name)[0]
            problems.append(Problem(
                f"meshboot:clusters[{i}].eastWestGateway.enabled",
                f"primary {c.name!r} serves remote {remote.name!r} and must expose istiod "
                "through its east-west gateway"))
        address = c.east_west_gateway.address
        if serves_remotes(spec, c) and address and not _is_ip(address) \
                and not c.east_west_gateway.allow_hostname:
            # istio.io setup/install/multicluster/primary-remote: "not suitable for AWS EKS
            # primary cluster deployment" (FQDN load balancers). The remote's istiod chart
            # turns a non-IP remotePilotAddress into an ExternalName Service and writes no
            # EndpointSlice (istio-discovery templates/remote-istiod-service.yaml,
            # remote-istiod-endpointslices.yaml).
            problems.append(Problem(
                f"meshboot:clusters[{i}].eastWestGateway.address",
                f"{address!r} is a host name, but it is the remotePilotAddress of "
                f"{c.name!r}'s remotes, which upstream expects to be a stable IP; use the "
                "load balancer's IP, or set eastWestGateway.allowHostname: true"))
    if is_multi_network(spec):
        # One gateway per network (istio.io multi-primary_multi-network,
        # primary-remote_multi-network): without one, other networks cannot reach it.
        for net in networks(spec):
            members = [c for c in spec.clusters if c.network == net]
            if not any(c.name in gateways for c in members):
                first = next((c for c in members if c.east_west_gateway.enabled is False),
                             members[0])
                problems.append(Problem(
                    f"meshboot:clusters[{cluster_index(spec, first.name)}].eastWestGateway.enabled",
                    f"network {net!r} has no east-west gateway: a multi-network mesh needs one "
                    "per network (enable it in one of its clusters)"))
    return problems


def _values_base(spec: Spec, c: ClusterSpec) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if c.is_remote:
        values["profile"] = "remote"
    if spec.mesh.revision:
        # The base chart has no `revision` value. Its `istiod-default-validator` calls
        # Service `istiod` unless defaultRevision names another revision, then
        # `istiod-<defaultRevision>` (base/templates/defaultrevision-
        # validatingwebhookconfiguration.yaml), the Service istiod's chart creates for
        # that revision, in remotes too (istio-discovery templates/remote-istiod-service.yaml).
        values["defaultRevision"] = spec.mesh.revision
    return values


# istio.io ops/configuration/traffic-management/dns-proxy ("Getting started"): a
# ServiceEntry host resolves in a pod only through the sidecar's DNS proxy; auto
# allocation gives it a VIP (pilot/pkg/serviceregistry/serviceentry/auto_allocation.go).
DNS_PROXY_METADATA = {"ISTIO_META_DNS_CAPTURE": "true", "ISTIO_META_DNS_AUTO_ALLOCATE": "true"}
MULTI_ROOT_ENV = {"ISTIO_MULTIROOT_MESH": "true"}
MULTI_ROOT_PROXY_METADATA = {"PROXY_CONFIG_XDS_AGENT": "true"}


def istiod_values(spec: Spec, c: ClusterSpec) -> dict[str, Any]:
    glob: dict[str, Any] = {
        "meshID": spec.mesh.id,
        "multiCluster": {"clusterName": c.name},
        "network": c.network,
    }
    values: dict[str, Any] = {}
    if c.is_remote:
        assert c.primary is not None
        values["profile"] = "remote"
        primary = spec.cluster(c.primary)
        glob["remotePilotAddress"] = gateway_address(
            spec, c.primary, require_ip=not primary.east_west_gateway.allow_hostname)
        values["istiodRemote"] = {"injectionPath": f"/inject/cluster/{c.name}/net/{c.network}"}
    elif serves_remotes(spec, c):
        glob["externalIstiod"] = True
    if spec.mesh.revision:
        values["revision"] = spec.mesh.revision
    values["global"] = glob
    mesh_config: dict[str, Any] = {"trustDomain": spec.mesh.trust_domain}
    if config_only(spec) and not c.is_remote:
        # Primaries only: a remote's proxies are injected and configured by its primary's
        # istiod (the remote profile has `configMap: false`, files/profile-remote.yaml).
        mesh_config["defaultConfig"] = {"proxyMetadata": dict(DNS_PROXY_METADATA)}
    if spec.pki.rotation is not None and not c.is_remote:
        _multi_root(values, mesh_config)
    values["meshConfig"] = mesh_config
    return values


def _multi_root(values: dict[str, Any], mesh_config: dict[str, Any]) -> None:
    """What istiod needs to distribute a root bundle during a root rotation.

    ``ISTIO_MULTIROOT_MESH`` (istio/istio pilot/pkg/features/pilot.go): istiod
    accepts a changed ``root-cert.pem`` when one bundle is a subset of the other
    (pilot/pkg/bootstrap/istio_ca.go ``handleEvent``) and pushes the trust bundle
    to proxies (pilot/pkg/xds/pcds.go); ``PROXY_CONFIG_XDS_AGENT`` (pilot/cmd/
    pilot-agent/options/options.go) makes the agent take it over xDS, so proxies
    learn roots without restarts. Both as upstream's own rotation test sets them
    (tests/integration/security/cacert_rotation/main_test.go; istio/istio#50420,
    #55005: without them proxies keep the old root); the istiod chart
    takes env as ``env`` (istio-discovery templates/deployment.yaml) and agent
    settings as ``meshConfig.defaultConfig.proxyMetadata``. Primaries only: a
    remote runs no istiod, its proxies get their config from the primary.
    """
    values["env"] = dict(MULTI_ROOT_ENV)
    default = mesh_config.setdefault("defaultConfig", {})
    default["proxyMetadata"] = {**default.get("proxyMetadata", {}), **MULTI_ROOT_PROXY_METADATA}


def eastwest_values(spec: Spec, c: ClusterSpec) -> dict[str, Any]:
    # As the docs' Helm command (`--set name=istio-eastwestgateway --set networkGateway=..`):
    # the chart derives `istio: eastwestgateway` from the name (gateway/templates/
    # _helpers.tpl, trimPrefix "istio-") and adds topology.istio.io/network itself
    # (templates/deployment.yaml, service.yaml), so no `labels`.
    values: dict[str, Any] = {"name": EASTWEST, "networkGateway": c.network}
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
    """Gateway + VirtualService that let remotes reach istiod (15012 xDS, 15017 webhook).

    Without a revision: samples/multicluster/expose-istiod.yaml. With one:
    samples/multicluster/expose-istiod-rev.yaml.tmpl, a VirtualService per revision
    matching that revision's SNI, so two revisions (a canary) can be exposed together.
    """
    rev = spec.mesh.revision
    svc = f"istiod-{rev}" if rev else "istiod"
    host = f"{svc}.{ISTIO_NS}.svc.cluster.local"
    sni = [f"{svc}.{ISTIO_NS}.svc", host] if rev else ["*"]
    gateway = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "istiod-gateway", "namespace": ISTIO_NS},
        "spec": {
            "selector": {"istio": "eastwestgateway"},
            "servers": [
                {"port": {"name": "tls-istiod", "number": 15012, "protocol": "tls"},
                 "tls": {"mode": "PASSTHROUGH"}, "hosts": ["*"]},
                {"port": {"name": "tls-webhook" if rev else "tls-istiodwebhook",
                          "number": 15017, "protocol": "tls"},
                 "tls": {"mode": "PASSTHROUGH"}, "hosts": ["*"]},
            ],
        },
    }
    vs = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": f"istiod-vs-{rev}" if rev else "istiod-vs", "namespace": ISTIO_NS},
        "spec": {
            "hosts": ["*"],
            "gateways": ["istiod-gateway"],
            "tls": [
                {"match": [{"port": 15012, "sniHosts": list(sni)}],
                 "route": [{"destination": {"host": host, "port": {"number": 15012}}}]},
                {"match": [{"port": 15017, "sniHosts": list(sni)}],
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
            "root-cert.pem": PkiRef("root-cert", cluster),
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


def build_istio_plan(spec: Spec, source: str = "spec") -> MeshPlan:
    """The Istio plan; raises SpecError (policy problems first, then the mesh's)."""
    topology = IstioTopology.of(spec)
    policy = istio_policy_objects(spec, source, topology)
    problems = check(spec, topology)
    if problems:
        raise SpecError(source, problems)
    read_by_others = {t.name for c in spec.clusters for t in discovery_sources(spec, c)}
    app_namespaces = [namespace(ns, injection_labels(spec)) for ns in service_namespaces(spec)
                      if ns not in BUILTIN_NAMESPACES and ns != ISTIO_NS]
    gateways = topology.eastwest
    plans = []
    for c in spec.clusters:
        cp = ClusterPlan(c.name)
        ns_annotations = {"topology.istio.io/controlPlaneClusters": c.primary} \
            if c.is_remote and c.primary else None
        objs = [namespace(ISTIO_NS, {"topology.istio.io/network": c.network}, ns_annotations)]
        objs += app_namespaces
        have = {o["metadata"]["name"] for o in objs}
        objs += [n for n in delivery.extra_namespaces(spec, c) if n["metadata"]["name"] not in have]
        cp.add(Step("namespaces", objects=tuple(objs)))
        istiod_after: tuple[str, ...] = ("istio-base",)
        if not c.is_remote:
            # A remote runs no istiod: its workloads get certificates from the primary's
            # istiod (through the east-west gateway, 15012), so it has no use for cacerts.
            cp.add(Step("cacerts", after=("namespaces",), objects=(cacerts_secret(c.name),)))
            istiod_after = ("cacerts", "istio-base")
        cp.add(Step("istio-base", after=("namespaces",),
                    release=chart(spec, "base", "istio-base", _values_base(spec, c))))
        if c.name in read_by_others:
            # The token controller fills it once the ServiceAccount exists (base chart).
            cp.add(Step("reader-token", after=("istio-base",),
                        objects=(reader_token_secret(spec),)))
        cp.add(Step("istiod", after=istiod_after,
                    release=chart(spec, "istiod", "istiod", istiod_values(spec, c))))
        cr_after = "istiod"
        if c.name in gateways:
            cp.add(Step("eastwest-gateway", after=("istiod",),
                        release=chart(spec, "gateway", EASTWEST, eastwest_values(spec, c))))
            cr_after = "eastwest-gateway"
        if not c.is_remote:
            # Istio resources only in primaries: a remote's gateways are configured from
            # its primary's config store, whose Gateways select them by label too
            # (istio.io primary-remote_multi-network: "exposing services on the primary
            # cluster will expose them on the east-west gateways of both clusters").
            gws: list[dict[str, Any]] = []
            served = [c.name] + [r.name for r in remotes_of(spec, c.name)]
            if is_multi_network(spec) and any(n in gateways for n in served):
                gws.append(cross_network_gateway())
            if serves_remotes(spec, c):
                gws += istiod_exposure(spec)
            if gws:
                cp.add(Step("mesh-gateways", after=(cr_after,), objects=tuple(gws)))
        sources = discovery_sources(spec, c)
        if sources:
            cp.add(Step("remote-secrets", after=("istiod",),
                        objects=tuple(remote_secret(spec, t) for t in sources)))
        extra = policy.get(c.name, [])
        if extra:
            cp.add(Step("policy", after=(cr_after,), objects=tuple(extra)))
        delivery.add_steps(spec, cp, c, cr_after)
        plans.append(cp)
    notes = []
    if spec.mesh.token_generation > 1:
        notes.append(f"reader tokens at generation {spec.mesh.token_generation}: `pulumi up` "
                     "replaces the remote secrets and deletes the previous token Secrets; "
                     "check `istioctl remote-clusters` shows every cluster synced")
    return MeshPlan(provider="istio", mesh_id=spec.mesh.id, clusters=plans, notes=notes,
                    order=cross_cluster_order(spec, plans))
