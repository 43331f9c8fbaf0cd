"""Linkerd multi-cluster plan: spec -> per-cluster steps (pure data).

Per cluster, in dependency order (see mesh-facts.md, Linkerd section):

1. ``namespaces``: ``linkerd``, ``linkerd-multicluster`` and the service
   namespaces (proxy injection on), also where a service is only mirrored (the
   service mirror does not create namespaces). Helm installs do not create them.
2. ``identity-issuer``: Secret ``linkerd-identity-issuer`` (kubernetes.io/tls,
   the cluster's issuer CA and key) and ConfigMap ``linkerd-identity-trust-roots``
   (the shared anchor). The issuer key only ever lives in this Secret.
3. ``linkerd-crds`` (chart). It also carries the Gateway API CRDs, pinned by the
   chart version (``installGatewayAPI``), unless the cluster says they are
   ``present``. The chart marks them ``helm.sh/resource-policy: keep``.
4. ``linkerd-control-plane`` (chart): ``identity.externalCA``, issuer scheme
   ``kubernetes.io/tls``, the anchor in ``identityTrustAnchorsPEM``.
5. ``linkerd-multicluster`` (chart): one ``controllers`` entry per linked
   cluster; the gateway only where some cluster links in through it.
6. ``remote-access-token``: a ``service-account-token`` Secret for the
   chart's ``linkerd-service-mirror-remote-access-default`` account, named
   by ``meshboot:mesh.tokenGeneration`` so bumping it rotates the credentials.
7. ``link-credentials``: per target, Secret ``cluster-credentials-<target>`` in
   ``linkerd-multicluster`` and its labelled twin in ``linkerd`` (deferred:
   built by ``pulumi up`` from the target's token).
8. ``links``: one ``Link`` (multicluster.linkerd.io/v1alpha3) per target.
9. ``service-export``: the spec's Services, owned by meshboot, with the export
   label of their mode (gateway, remote discovery, federated).
10. ``policy``: traffic/security objects from ``stacks.linkerd.policy``.
"""

from __future__ import annotations

import re
from typing import Any

from clusters.errors import Problem, SpecError
from clusters.spec import ClusterSpec, ServiceSpec, Spec
from stacks.common import (
    BUILTIN_NAMESPACES,
    cluster_index,
    namespace,
    service_account_token_secret,
    service_ports,
)
from stacks.delivery.flagger import flagger_services
from stacks.labels import MANAGED
from stacks.linkerd import delivery
from stacks.linkerd.policy import linkerd_policy_objects, namespace_annotations, service_annotations
from stacks.linkerd.topology import (
    APP_PROTOCOL,
    GATEWAY,
    LINKERD_NS,
    MC_NS,
    Link,
    LinkerdTopology,
    gateway_identity,
)
from stacks.plan import (
    ClusterPlan,
    GatewayAddressRef,
    HelmRelease,
    KubeconfigRef,
    MeshPlan,
    PkiRef,
    Step,
)

LINKERD_REPO = "https://helm.linkerd.io/edge"
REMOTE_ACCESS_SA = "linkerd-service-mirror-remote-access-default"
# linkerd check warns while an anchor or issuer is valid for less than this.
MIN_VALIDITY_DAYS = 60

EXPORT_LABEL = "mirror.linkerd.io/exported"
FEDERATED_LABEL = "mirror.linkerd.io/federated"
CLUSTER_NAME_LABEL = "multicluster.linkerd.io/cluster-name"
CREATED_BY = "linkerd.io/created-by"
# The multicluster gateway's probe port. templates/gateway.yaml (linkerd-multicluster
# chart) gives the gateway Service's mc-probe port no targetPort, so the port is also
# the gateway pod's proxy admin port, 4191 unless the proxy is reconfigured.
PROBE_PORT = 4191
# A label selector that matches no object (Exists and DoesNotExist on one key):
# the gateway selector of a gateway-less Link, so nothing is ever mirrored
# through a gateway that is not there.
MATCH_NOTHING = {"matchExpressions": [
    {"key": EXPORT_LABEL, "operator": "Exists"},
    {"key": EXPORT_LABEL, "operator": "DoesNotExist"},
]}

_EDGE = re.compile(r"^edge-(\d{2})\.(\d{1,2})\.(\d+)$")


def chart_version(spec: Spec) -> str | None:
    """The CalVer chart version: ``edge-26.8.3`` -> ``2026.8.3``."""
    if spec.linkerd.chart_version:
        return spec.linkerd.chart_version
    m = _EDGE.match(spec.mesh.resolved_version)
    if not m:
        return None
    return f"20{m.group(1)}.{int(m.group(2))}.{int(m.group(3))}"


def remote_access_token_name(spec: Spec) -> str:
    return f"{REMOTE_ACCESS_SA}-token-g{spec.mesh.token_generation}"


# --------------------------------------------------------------------- topology
def needs_gateway(topology: LinkerdTopology, cluster: ClusterSpec) -> bool:
    """The multicluster gateway runs where some cluster links in through it."""
    if cluster.east_west_gateway.enabled is True:
        return True
    return topology.reached_through_gateway(cluster.name)


def export_label(topology: LinkerdTopology, svc: ServiceSpec, cluster: str) -> tuple[str, str]:
    """The label that exports ``svc`` from ``cluster``.

    Federated services: ``federated=member``. Otherwise ``exported=true``
    when some cluster reaches this one through its gateway, else
    ``exported=remote-discovery`` (every peer is on the flat network). A
    gateway-less Link's remote-discovery selector accepts both values, so the
    mixed case (flat to some peers, gateway to others) works with one label.
    """
    if svc.federated:
        return FEDERATED_LABEL, "member"
    via_gateway = topology.reached_through_gateway(cluster)
    return EXPORT_LABEL, "true" if via_gateway else "remote-discovery"


def service_namespaces(spec: Spec, topology: LinkerdTopology) -> dict[str, list[str]]:
    """cluster -> the service namespaces it needs: its own services' and its mirrors'.

    The service mirror creates no namespace (linkerd-multicluster values.yaml
    ``enableNamespaceCreation: false``): a service whose namespace is missing is
    skipped, "Skipped mirroring service: namespace does not exist"
    (multicluster/service-mirror/cluster_watcher.go). So meshboot creates, injected
    and with the mesh's inbound policy, the namespace of every service mirrored
    into this cluster: exported services of every linked target, and federated
    services of gateway-less targets (the only Links that select them).
    """
    running: dict[str, set[str]] = {}       # cluster -> namespaces of its services
    exported: dict[str, set[str]] = {}      # ... of its non-federated services
    for s in spec.services:
        for c in s.clusters:
            running.setdefault(c, set()).add(s.namespace)
            if not s.federated:
                exported.setdefault(c, set()).add(s.namespace)
    out: dict[str, list[str]] = {}
    for cluster in topology.clusters:
        names = set(running.get(cluster, ()))
        for link in topology.links_from(cluster):
            names |= (exported if link.gateway else running).get(link.target, set())
        out[cluster] = sorted(names)
    return out


def gateway_address(spec: Spec, name: str) -> GatewayAddressRef:
    c = spec.cluster(name)
    return GatewayAddressRef(
        cluster=name, namespace=MC_NS, service=GATEWAY,
        fixed=c.east_west_gateway.address, after_step="linkerd-multicluster",
        spec_path=f"meshboot:clusters[{cluster_index(spec, name)}].eastWestGateway.address")


# ------------------------------------------------------------------------ check
def check(spec: Spec, topology: LinkerdTopology) -> list[Problem]:
    problems: list[Problem] = []
    for key, days in (("intermediateValidityDays", spec.pki.intermediate_validity_days),
                      ("rootValidityDays", spec.pki.root_validity_days)):
        if days < MIN_VALIDITY_DAYS:
            what = "issuer" if key.startswith("intermediate") else "trust anchor"
            problems.append(Problem(
                f"meshboot:pki.{key}",
                f"{days} days is shorter than {MIN_VALIDITY_DAYS}: `linkerd check` warns for "
                f"every {what} valid for less than {MIN_VALIDITY_DAYS} days, so it would "
                "never pass clean"))
    if spec.linkerd.probe.port != PROBE_PORT:
        # Three places must agree: the remote gateway Service's mc-probe port (chart
        # gateway.probe.port, the pod port too), Link.probeSpec.port (dialled by
        # service-mirror/probe_worker.go) and the local probe-<link> Service
        # (templates/controller/probe-svc.yaml: controllers[].gateway.probe.port, else
        # controllerDefaults 4191). The first is the gateway proxy's admin port.
        problems.append(Problem(
            "meshboot:linkerd.probe.port",
            f"{spec.linkerd.probe.port} is not supported: the gateway probe is served by the "
            f"gateway proxy's admin port {PROBE_PORT} (the chart's mc-probe Service port has "
            f"no targetPort), so the probe port must stay {PROBE_PORT}"))
    if chart_version(spec) is None:
        problems.append(Problem(
            "meshboot:mesh.version",
            f"{spec.mesh.resolved_version!r} is not an edge release (edge-YY.M.P): the "
            "open-source charts are published in the edge repository; set "
            "meshboot:linkerd.chartVersion to use another version"))
    names = set(spec.cluster_names)
    for i, pair in enumerate(spec.linkerd.gatewayless):
        base = f"meshboot:linkerd.gatewayless[{i}]"
        unknown = False
        for key, value in (("source", pair.source), ("target", pair.target)):
            if value not in names:
                problems.append(Problem(f"{base}.{key}", f"unknown cluster {value!r}"))
                unknown = True
        if unknown:
            continue
        if pair.source == pair.target:
            problems.append(Problem(base, "a cluster does not link to itself"))
            continue
        a, b = spec.cluster(pair.source), spec.cluster(pair.target)
        if a.network != b.network:
            problems.append(Problem(
                base, f"a gateway-less link needs pod-to-pod connectivity, but {a.name!r} is "
                      f"on network {a.network!r} and {b.name!r} on {b.network!r}; link them "
                      "through the gateway (remove this entry)"))
    for c in spec.clusters:
        if c.east_west_gateway.enabled is False:
            into = sorted(topology.gateway_sources.get(c.name, ()))
            if into:
                problems.append(Problem(
                    f"meshboot:clusters[{cluster_index(spec, c.name)}].eastWestGateway.enabled",
                    f"{', '.join(into)} reach {c.name!r} through its multicluster gateway "
                    "(different network): it cannot be disabled"))
    for i, svc in enumerate(spec.services):
        if not svc.federated:
            continue
        nets = sorted({spec.cluster(c).network for c in svc.clusters if c in names})
        if len(nets) > 1:
            problems.append(Problem(
                f"meshboot:services[{i}].federated",
                f"Linkerd federated services need pod-to-pod connectivity between all member "
                f"clusters, but {svc.name!r} runs on networks {', '.join(nets)}"))
    return problems


# Gateway API CRDs. charts/linkerd-crds (edge-26.8.3) bundles v1.1.1, experimental
# channel (the CRDs' gateway.networking.k8s.io/bundle-version and /channel
# annotations). pkg/healthcheck CheckGatewayAPICRDs refuses CRDs without the v1
# versions ("please upgrade to Gateway API v1.1.1 or later"). HTTPRoute
# rules[].timeouts joined the standard channel in v1.2.0 (experimental before):
# older standard CRDs prune it, silently dropping the timeout.
BUNDLED_GATEWAY_API = ("v1.1.1", "experimental")
MIN_GATEWAY_API = (1, 1, 1)
TIMEOUTS_STANDARD_SINCE = (1, 2, 0)
_GATEWAY_API_VERSION = re.compile(r"^v(\d+)\.(\d+)\.(\d+)$")
GATEWAY_API_CHECK = ("kubectl get crd httproutes.gateway.networking.k8s.io -o jsonpath="
                     "'{.metadata.annotations.gateway\\.networking\\.k8s\\.io/bundle-version} "
                     "{.metadata.annotations.gateway\\.networking\\.k8s\\.io/channel}'")


def _sets_route_timeouts(objs: list[dict[str, Any]]) -> bool:
    return any(o["kind"] == "HTTPRoute" and o["apiVersion"].startswith("gateway.networking.k8s.io/")
               and any("timeouts" in r for r in o["spec"].get("rules", []))
               for o in objs)


def gateway_api_problems(spec: Spec, policy_objects: dict[str, list[dict[str, Any]]]
                         ) -> list[Problem]:
    """``gatewayApiCrds: present`` clusters whose CRDs would drop what meshboot sets."""
    out: list[Problem] = []
    for i, c in enumerate(spec.clusters):
        key = f"meshboot:clusters[{i}].gatewayApiVersion"
        if c.gateway_api_crds == "install":
            if c.gateway_api_version is not None:
                out.append(Problem(key, "only with gatewayApiCrds: present (meshboot installs "
                                        f"{' '.join(BUNDLED_GATEWAY_API)} otherwise)"))
            continue
        # Flagger's HTTPRoute carries the Canary's service.timeout as rules[].timeouts
        # (fluxcd/flagger v1.44.0 pkg/router/gateway_api.go makeHTTPRouteTimeouts).
        timeouts = _sets_route_timeouts(policy_objects.get(c.name, [])) or any(
            s.timeout is not None for s in flagger_services(spec, c.name))
        if c.gateway_api_version is None:
            if timeouts:
                out.append(Problem(key, "required with gatewayApiCrds: present, since meshboot "
                                        "sets HTTPRoute rules[].timeouts here (standard channel "
                                        "v1.2.0 or later, or experimental): give the version "
                                        f"and channel the cluster has ({GATEWAY_API_CHECK})"))
            continue
        m = _GATEWAY_API_VERSION.match(c.gateway_api_version)
        if not m:
            out.append(Problem(key, f"{c.gateway_api_version!r} is not a Gateway API release "
                                    "(vX.Y.Z, e.g. v1.2.1)"))
            continue
        version = tuple(int(g) for g in m.groups())
        if version < MIN_GATEWAY_API:
            out.append(Problem(key, f"{c.gateway_api_version} is older than v1.1.1: Linkerd needs "
                                    "the v1 HTTPRoute and GRPCRoute (`linkerd check`: please "
                                    "upgrade to Gateway API v1.1.1 or later)"))
        elif timeouts and c.gateway_api_channel == "standard" \
                and version < TIMEOUTS_STANDARD_SINCE:
            out.append(Problem(key, f"{c.gateway_api_version} standard has no HTTPRoute "
                                    "rules[].timeouts (standard from v1.2.0): the API server "
                                    "would prune the timeouts meshboot sets; upgrade the CRDs or "
                                    "use the experimental channel"))
    return out


# ---------------------------------------------------------------------- objects
def linkerd_namespace() -> dict[str, Any]:
    return namespace(LINKERD_NS, {
        "linkerd.io/is-control-plane": "true",
        "config.linkerd.io/admission-webhooks": "disabled",
        "linkerd.io/control-plane-ns": LINKERD_NS,
        "pod-security.kubernetes.io/enforce": "privileged",
    }, {"linkerd.io/inject": "disabled"})


def multicluster_namespace() -> dict[str, Any]:
    return namespace(MC_NS, {
        "linkerd.io/extension": "multicluster",
        "pod-security.kubernetes.io/enforce": "privileged",
    })


def issuer_secret(cluster: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": "linkerd-identity-issuer", "namespace": LINKERD_NS,
                     "labels": dict(MANAGED)},
        "stringData": {
            "tls.crt": PkiRef("ca-cert", cluster),
            "tls.key": PkiRef("ca-key", cluster),
            "ca.crt": PkiRef("root-cert", cluster),
        },
    }


def trust_roots_configmap(cluster: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "linkerd-identity-trust-roots", "namespace": LINKERD_NS,
                     "labels": dict(MANAGED)},
        "data": {"ca-bundle.crt": PkiRef("root-cert", cluster)},
    }


def crds_values(c: ClusterSpec) -> dict[str, Any]:
    return {"installGatewayAPI": c.gateway_api_crds == "install"}


def control_plane_values(spec: Spec, cluster: str) -> dict[str, Any]:
    return {
        "clusterDomain": spec.linkerd.cluster_domain,
        "identityTrustDomain": spec.mesh.trust_domain,
        # During a root rotation, the cluster's phase's bundle (old + new anchors):
        # linkerd docs "Manually rotating control plane TLS credentials", "Rotating
        # the trust anchor" (`step certificate bundle`, then `identityTrustAnchorsPEM`).
        "identityTrustAnchorsPEM": PkiRef("root-cert", cluster),
        "identity": {"externalCA": True, "issuer": {"scheme": "kubernetes.io/tls"}},
    }


def multicluster_values(spec: Spec, topology: LinkerdTopology, c: ClusterSpec) -> dict[str, Any]:
    probe = spec.linkerd.probe
    controllers = []
    for link in topology.links_from(c.name):
        entry: dict[str, Any] = {"link": {"ref": {"name": link.target}}}
        if not link.gateway:
            entry["gateway"] = {"enabled": False}
        controllers.append(entry)
    return {
        "linkerdNamespace": LINKERD_NS,
        "identityTrustDomain": spec.mesh.trust_domain,
        "gateway": {
            "enabled": needs_gateway(topology, c),
            "port": spec.linkerd.gateway_port,
            "probe": {"path": probe.path, "port": probe.port, "seconds": probe.period_seconds},
        },
        "controllers": controllers,
    }


def remote_access_token(spec: Spec) -> dict[str, Any]:
    return service_account_token_secret(remote_access_token_name(spec), MC_NS, REMOTE_ACCESS_SA,
                                        dict(MANAGED))


def credentials_secrets(spec: Spec, target: ClusterSpec) -> list[dict[str, Any]]:
    """``cluster-credentials-<target>`` in linkerd-multicluster and its twin in linkerd."""
    kubeconfig = KubeconfigRef(
        target=target.name, api_server=target.api_server,
        token_secret=(MC_NS, remote_access_token_name(spec)), user=REMOTE_ACCESS_SA)
    out = []
    for ns, labels, annots in (
        (MC_NS, {**MANAGED}, None),
        (LINKERD_NS, {**MANAGED, CLUSTER_NAME_LABEL: target.name},
         {"multicluster.linkerd.io/trust-domain": spec.mesh.trust_domain,
          "multicluster.linkerd.io/cluster-domain": spec.linkerd.cluster_domain}),
    ):
        meta: dict[str, Any] = {"name": f"cluster-credentials-{target.name}",
                                "namespace": ns, "labels": dict(sorted(labels.items()))}
        if annots:
            meta["annotations"] = annots
        out.append({
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "mirror.linkerd.io/remote-kubeconfig",
            "metadata": meta,
            "stringData": {"kubeconfig": kubeconfig},
        })
    return out


def link_object(spec: Spec, link: Link) -> dict[str, Any]:
    probe = spec.linkerd.probe
    body: dict[str, Any] = {
        "targetClusterName": link.target,
        "targetClusterDomain": spec.linkerd.cluster_domain,
        "targetClusterLinkerdNamespace": LINKERD_NS,
        "clusterCredentialsSecret": f"cluster-credentials-{link.target}",
    }
    if link.gateway:
        body.update({
            "gatewayAddress": gateway_address(spec, link.target),
            "gatewayPort": str(spec.linkerd.gateway_port),
            "gatewayIdentity": gateway_identity(spec),
            "probeSpec": {
                "path": probe.path,
                "port": str(probe.port),
                "period": f"{probe.period_seconds}s",
                "failureThreshold": str(probe.failure_threshold),
                "timeout": f"{probe.timeout_seconds}s",
            },
            "selector": {"matchLabels": {EXPORT_LABEL: "true"}},
            "remoteDiscoverySelector": {"matchLabels": {EXPORT_LABEL: "remote-discovery"}},
        })
    else:
        body.update({
            "selector": MATCH_NOTHING,
            "remoteDiscoverySelector": {"matchExpressions": [
                {"key": EXPORT_LABEL, "operator": "In", "values": ["true", "remote-discovery"]},
            ]},
        })
        # Joining a federated service is always pod-to-pod: the service mirror adds
        # svc@target to the federated Service's remote-discovery annotation whatever
        # the Link's mode (multicluster/service-mirror/cluster_watcher.go
        # handleFederatedServiceJoin; docs 2-edge/tasks/federated-services.md: "not
        # through a gateway"). So only gateway-less Links select federated members;
        # an unset selector matches nothing (cluster_watcher.go isFederatedServiceMember).
        body["federatedServiceSelector"] = {"matchLabels": {FEDERATED_LABEL: "member"}}
    return {
        "apiVersion": "multicluster.linkerd.io/v1alpha3",
        "kind": "Link",
        "metadata": {"name": link.target, "namespace": MC_NS, "labels": dict(MANAGED),
                     # As multicluster/cmd/link-gen.go writes it; multicluster/cmd/check.go
                     # checkLinkVersions warns "unable to determine version" without it.
                     "annotations": {CREATED_BY: f"linkerd/cli {spec.mesh.resolved_version}"}},
        "spec": body,
    }


def service_object(topology: LinkerdTopology, svc: ServiceSpec, cluster: str) -> dict[str, Any]:
    """The Service meshboot owns in a cluster that runs ``svc``.

    Selector ``app: <name>`` (the app team labels its pods so); ports from
    the spec; the export label of its mode. meshboot owning the Service is
    what makes the label stick: a label patched onto someone else's Service
    is lost the next time they apply it.
    """
    key, value = export_label(topology, svc, cluster)
    ports = service_ports(svc, APP_PROTOCOL, explicit_target=True)
    meta: dict[str, Any] = {
        "name": svc.name, "namespace": svc.namespace,
        "labels": dict(sorted({**MANAGED, "app": svc.name, key: value}.items()))}
    annotations = service_annotations(svc)
    if annotations:
        meta["annotations"] = annotations
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {"type": "ClusterIP", "selector": {"app": svc.name}, "ports": ports},
    }


def _apex(topology: LinkerdTopology, svc: ServiceSpec, cluster: str
          ) -> tuple[dict[str, str], dict[str, str]]:
    """The labels and annotations :func:`service_object` would give the Service, for the
    apex Service Flagger creates instead."""
    meta = service_object(topology, svc, cluster)["metadata"]
    labels = {k: v for k, v in meta["labels"].items() if k not in MANAGED and k != "app"}
    return labels, dict(meta.get("annotations", {}))


def chart(spec: Spec, name: str, namespace_: str, values: dict[str, Any]) -> HelmRelease:
    version = chart_version(spec)
    assert version is not None  # check() reported it
    return HelmRelease(
        release_name=name, namespace=namespace_, chart=name, repo_name="linkerd",
        repo_url=spec.mesh.chart_repository or LINKERD_REPO, version=version, values=values)


def build_linkerd_plan(spec: Spec, source: str = "spec") -> MeshPlan:
    """The Linkerd plan; raises SpecError with every problem at once."""
    topology = LinkerdTopology.of(spec)
    problems = check(spec, topology)
    policy_objects, policy_problems = linkerd_policy_objects(spec, topology)
    problems += policy_problems
    problems += gateway_api_problems(spec, policy_objects)
    if problems:
        raise SpecError(source, problems)
    namespaces = service_namespaces(spec, topology)
    plans = []
    multi = len(spec.clusters) > 1
    for c in spec.clusters:
        cp = ClusterPlan(c.name)
        objs = [linkerd_namespace()]
        if multi:
            objs.append(multicluster_namespace())
        ns_annotations = {"linkerd.io/inject": "enabled", **namespace_annotations(spec)}
        objs += [namespace(ns, annotations=ns_annotations)
                 for ns in namespaces[c.name]
                 if ns not in BUILTIN_NAMESPACES and ns != LINKERD_NS
                 and not (multi and ns == MC_NS)]
        have = {o["metadata"]["name"] for o in objs}
        objs += [n for n in delivery.extra_namespaces(spec, c) if n["metadata"]["name"] not in have]
        cp.add(Step("namespaces", objects=tuple(objs)))
        cp.add(Step("identity-issuer", after=("namespaces",),
                    objects=(issuer_secret(c.name), trust_roots_configmap(c.name))))
        cp.add(Step("linkerd-crds", after=("namespaces",),
                    release=chart(spec, "linkerd-crds", LINKERD_NS, crds_values(c))))
        cp.add(Step("linkerd-control-plane", after=("identity-issuer", "linkerd-crds"),
                    release=chart(spec, "linkerd-control-plane", LINKERD_NS,
                                  control_plane_values(spec, c.name))))
        last = "linkerd-control-plane"
        if multi:
            cp.add(Step("linkerd-multicluster", after=("linkerd-control-plane",),
                        release=chart(spec, "linkerd-multicluster", MC_NS,
                                      multicluster_values(spec, topology, c))))
            # Read by every other cluster: the chart creates the account.
            cp.add(Step("remote-access-token", after=("linkerd-multicluster",),
                        objects=(remote_access_token(spec),)))
            out_links = topology.links_from(c.name)
            creds = [s for link in out_links
                     for s in credentials_secrets(spec, spec.cluster(link.target))]
            cp.add(Step("link-credentials", after=("linkerd-multicluster",),
                        objects=tuple(creds)))
            cp.add(Step("links", after=("link-credentials",),
                        objects=tuple(link_object(spec, link) for link in out_links)))
            last = "links"
        # Flagger owns the Service of a service it releases (its apex Service).
        svcs = [service_object(topology, s, c.name) for s in spec.services
                if c.name in s.clusters and not spec.flagger_canary(s)]
        if svcs:
            cp.add(Step("service-export", after=("namespaces",), objects=tuple(svcs)))
        extra = policy_objects.get(c.name, [])
        if extra:
            cp.add(Step("policy", after=(last,), objects=tuple(extra)))
        apex = {s.name: _apex(topology, s, c.name) for s in spec.services
                if spec.flagger_canary(s) and c.name in s.clusters}
        delivery.add_steps(spec, cp, c, chart(spec, "linkerd-control-plane", LINKERD_NS, {}),
                           apex)
        plans.append(cp)
    return MeshPlan(provider="linkerd", mesh_id=spec.mesh.id, clusters=plans,
                    notes=_notes(spec))


def _notes(spec: Spec) -> list[str]:
    notes = []
    remotes = [c.name for c in spec.clusters if c.is_remote]
    if remotes:
        notes.append(f"linkerd: {', '.join(remotes)} (role remote) get a full control plane: "
                     "Linkerd has no primary-remote mode, every cluster is an equal member "
                     "linked to all others")
    if spec.mesh.token_generation > 1:
        notes.append(f"linkerd: remote-access tokens at generation {spec.mesh.token_generation}: "
                     "`pulumi up` replaces the link credentials and deletes the previous token "
                     "Secrets; check `linkerd multicluster check`")
    present = [c.name for c in spec.clusters if c.gateway_api_crds == "present"]
    if present:
        notes.append(f"linkerd: Gateway API CRDs expected present in {', '.join(present)}; "
                     "they must be v1.1.1 or later (and keep the fields meshboot sets): "
                     f"check with {GATEWAY_API_CHECK}")
    for s in spec.services:
        if s.routing is not None or s.release is not None:
            absent = [c for c in spec.cluster_names if c not in s.clusters]
            if absent:
                notes.append(f"linkerd: {s.name}: callers in {', '.join(absent)} (no local "
                             f"Service to route) call the mirrors {s.name}-<cluster> directly; "
                             "the routing/release split applies where the service runs")
    if any(s.namespace in BUILTIN_NAMESPACES for s in spec.services):
        notes.append("linkerd: services in built-in namespaces: annotate their pods with "
                     "linkerd.io/inject=enabled (meshboot does not modify built-in namespaces)")
    return notes
