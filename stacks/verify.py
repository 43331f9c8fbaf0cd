"""``meshboot verify``: the checks, comparing a live cluster with what the plan deploys.

Every expected value comes from the plan (``stacks.build.build_plan``), the
same objects render and ``pulumi up`` apply, so verify checks what was
deployed rather than a second definition of it: the ``cacerts`` Secret's
``root-cert.pem`` and Linkerd's ``identityTrustAnchorsPEM`` (the trust
bundle: read as a set of certificates, so a bundle holding two roots during
a rotation compares by fingerprints), remote secrets, Links, gateways.

A check returns :class:`Finding` rows. ``pending`` means "not ready yet"
(a Deployment rolling out, a load balancer without an address, istiod still
``syncing``): :mod:`stacks.verify_run` retries those until ``--wait``. A
configuration error (missing Secret, wrong root, wrong address) is ``fail``
at once.

Upstream facts used here:

* istiod's ``/debug/clusterz`` (istio/istio ``pilot/pkg/xds/debug.go``
  ``clusterz``) writes ``ListRemoteClusters()`` (``pkg/kube/multicluster/
  secretcontroller.go``): a JSON list of ``cluster.DebugInfo`` (``pkg/cluster/
  debug.go``: ``id``, ``secretName``, ``syncStatus``), the config cluster first
  with an empty secretName. ``syncStatus`` is ``synced``, ``syncing``,
  ``timeout`` or ``closed`` (``pkg/kube/multicluster/cluster.go``).
  It is served on istiod's monitoring port 15014, reached here through the
  API server's service proxy, as ``istioctl`` reaches istiod's debug endpoints.
* ``/debug/endpointShardz`` (same file, ``endpointShardz``) writes
  ``EndpointIndex.Shardz()`` (``pilot/pkg/model/endpointshards.go``):
  hostname -> namespace -> ``{"Shards": {"<provider>/<cluster>": [endpoints]}}``,
  the shard key ``ShardKey.String()`` = ``Kubernetes/<cluster id>``.
* The roots proxies trust: istiod writes them into ConfigMap ``istio-ca-root-cert``
  (pilot/pkg/features/experimental.go ``PILOT_CA_CERT_CONFIGMAP``), key
  ``root-cert.pem`` (pkg/config/constants/constants.go), in every namespace.
* Remote secrets: ``istio-remote-secret-<cluster>`` labelled
  ``istio/multiCluster: "true"`` (istioctl/pkg/multicluster/remote_secret.go,
  pkg/kube/multicluster/secretcontroller.go ``MultiClusterSecretLabel``).
* Linkerd's ``linkerd.io/trust-root-sha256`` pod annotation is the hex SHA-256
  of the exact ``identityTrustAnchorsPEM`` text (linkerd2 ``pkg/inject/
  inject.go``: ``sha256.Sum256([]byte(values.IdentityTrustAnchorsPEM))``;
  ``charts/partials/templates/_metadata.tpl``: ``| sha256sum``).
* Linkerd gateway liveness: ``linkerd multicluster check`` requires the
  ``probe-gateway-<target>`` mirror Service (labels ``mirror.linkerd.io/
  mirrored-gateway``, ``mirror.linkerd.io/cluster-name``) to have endpoints
  (multicluster/cmd/check.go ``checkIfGatewayMirrorsHaveEndpoints``); mirror
  services are ``<service>-<target>`` (multicluster/service-mirror/
  cluster_watcher.go).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from clusters.kube_client import Kube, KubeError
from clusters.live import locality_checks, node_locality
from clusters.spec import Spec
from pki.ca import certs_from_pem, fingerprint, verify_issued_by
from stacks.istio.topology import EASTWEST, ISTIO_NS
from stacks.linkerd.topology import GATEWAY, LINKERD_NS, MC_NS
from stacks.plan import GatewayAddressRef, MeshPlan, PkiRef, resolve
from stacks.preflight import LINKERD_CONTROL_PLANE, pki_secret

Status = Literal["ok", "warn", "fail", "pending"]
MESH = "(mesh)"  # the cluster column of checks across clusters

ISTIOD_DEBUG_PORT = 15014
NETWORK_LABEL = "topology.istio.io/network"
MULTICLUSTER_LABEL = "istio/multiCluster"
ISTIO_ROOT_CONFIGMAP = "istio-ca-root-cert"   # istiod writes the roots proxies trust here
LINKERD_TRUST_ROOTS = "linkerd-identity-trust-roots"
TRUST_ROOT_ANNOTATION = "linkerd.io/trust-root-sha256"
PROXY_POD_LABEL = f"linkerd.io/control-plane-ns={LINKERD_NS}"
LINKERD_CONTROL_DEPLOYMENTS = ("linkerd-destination", "linkerd-proxy-injector")
APPLY = "apply the plan: `pulumi up` (or `meshboot render` and apply the output)"


@dataclass(frozen=True)
class Finding:
    cluster: str
    check: str
    status: Status
    reason: str
    fix: str = ""


Check = Callable[[Kube], list[Finding]]


# ------------------------------------------------------------------ bundles
@dataclass(frozen=True)
class Bundle:
    """A PEM trust bundle as fingerprints (order and duplicates do not matter)."""

    pem: str
    fingerprints: frozenset[str]

    @classmethod
    def of(cls, pem: str) -> Bundle:
        return cls(pem, frozenset(fingerprint(c) for c in certs_from_pem(pem)))

    def short(self) -> str:
        return ", ".join(sorted(f[:16] for f in self.fingerprints)) or "no certificate"


def parse_bundle(pem: str, what: str) -> Bundle:
    try:
        return Bundle.of(pem)
    except ValueError as err:
        raise KubeError(f"{what} is not a PEM certificate bundle ({err})",
                        "re-apply it from the plan") from None


def expected_trust(plan: MeshPlan, cluster: str, resolve_pki: Callable[[PkiRef], str]) -> str | None:
    """The trust bundle PEM the plan gives ``cluster`` (cacerts ``root-cert.pem`` /
    ``identityTrustAnchorsPEM``), its PkiRefs resolved by ``resolve_pki``; None if none."""

    def pem(value: Any) -> Any:
        return resolve(value, lambda ref: resolve_pki(ref) if isinstance(ref, PkiRef) else ref)

    if plan.provider == "istio":
        secret = pki_secret(plan, cluster)
        if secret is None:
            return None
        return str(pem(secret["stringData"]["root-cert.pem"]))
    release = plan.cluster(cluster).step(LINKERD_CONTROL_PLANE).release
    assert release is not None
    return str(pem(release.values["identityTrustAnchorsPEM"]))


# ------------------------------------------------------------------ helpers
def _data(secret: dict[str, Any], key: str) -> str | None:
    value = (secret.get("data") or {}).get(key)
    if value is None:
        return None
    try:
        return base64.b64decode(str(value)).decode("utf-8", "replace")
    except ValueError:
        return None


def deployment_state(dep: dict[str, Any] | None, name: str) -> tuple[Status, str]:
    """ok / pending (rolling out, not available) / fail (absent), as `kubectl rollout status`
    judges a Deployment: observed generation, updated, available replicas."""
    if dep is None:
        return "fail", f"Deployment {name} is not there"
    spec, status = dep.get("spec") or {}, dep.get("status") or {}
    want = int(spec.get("replicas", 1) or 0)
    generation = int((dep.get("metadata") or {}).get("generation") or 0)
    if int(status.get("observedGeneration") or 0) < generation:
        return "pending", f"{name}: the new spec is not observed yet"
    updated = int(status.get("updatedReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    if updated < want:
        return "pending", f"{name}: rolling out ({updated}/{want} updated)"
    if want == 0:
        return "fail", f"{name}: scaled to 0 replicas"
    if available < want:
        return "pending", f"{name}: {available}/{want} available"
    return "ok", f"{name}: {available}/{want} available"


def lb_addresses(svc: dict[str, Any]) -> list[str]:
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return [str(i.get("ip") or i.get("hostname")) for i in ingress
            if isinstance(i, dict) and (i.get("ip") or i.get("hostname"))]


def has_ready_endpoints(ep: dict[str, Any] | None) -> bool:
    return any((s or {}).get("addresses") for s in ((ep or {}).get("subsets") or []))


# ------------------------------------------------------------------ the checker
@dataclass
class Verifier:
    """The checks of one environment; ``trust`` is what ``root-cert`` resolves to (None:
    no PKI at hand, root comparisons skipped; bundles are still compared across clusters)."""

    spec: Spec
    plan: MeshPlan
    trust: Callable[[PkiRef], str] | None = None
    seen_roots: dict[str, Bundle] = field(default_factory=dict)

    # -------------------------------------------------------------- per cluster
    def checks(self, cluster: str) -> list[tuple[str, Check]]:
        """(name, check) of ``cluster``, in the order they run; the nodes check is first."""
        out: list[tuple[str, Check]] = [("nodes", lambda k: self.nodes(k, cluster))]
        out += self._istio(cluster) if self.plan.provider == "istio" else self._linkerd(cluster)
        return out

    def expected_bundle(self, cluster: str) -> Bundle | None:
        if self.trust is None:
            return None
        pem = expected_trust(self.plan, cluster, self.trust)
        return Bundle.of(pem) if pem is not None else None

    def nodes(self, kube: Kube, cluster: str) -> list[Finding]:
        index = self.spec.cluster_names.index(cluster)
        raw = kube.nodes()
        out = []
        for c in locality_checks(self.spec.clusters[index], index, [node_locality(n) for n in raw]):
            status: Status = "fail" if c.failed else "warn" if c.status == "warn" else "ok"
            fix = ""
            if c.failed:
                fix = (f"label the nodes (kubectl label node NODE topology.kubernetes.io/{c.name}="
                       f"...) or correct meshboot:clusters[{index}].{c.name}")
            out.append(Finding(cluster, f"node-{c.name.replace(' ', '-')}", status, c.message, fix))
        return out

    def _roots(self, cluster: str, check: str, found: Bundle, what: str,
               status_if_wrong: Status = "fail") -> Finding:
        want = self.expected_bundle(cluster)
        if want is None:
            return Finding(cluster, check, "warn", f"{what}: roots {found.short()}; not compared "
                           "with the spec's (no PKI store or imported root at hand)",
                           "point --pki-dir at the PKI store")
        if found.fingerprints == want.fingerprints:
            n = len(want.fingerprints)
            return Finding(cluster, check, "ok", f"{what}: the spec's {'root' if n == 1 else f'{n} roots'}"
                           f" ({want.short()})")
        missing = want.fingerprints - found.fingerprints
        extra = found.fingerprints - want.fingerprints
        parts = []
        if missing:
            parts.append("lacks " + ", ".join(sorted(f[:16] for f in missing)))
        if extra:
            parts.append("has other roots " + ", ".join(sorted(f[:16] for f in extra)))
        return Finding(cluster, check, status_if_wrong,
                       f"{what}: {'; '.join(parts)} (the spec's: {want.short()})", APPLY)

    # -------------------------------------------------------------- Istio
    def _istio(self, cluster: str) -> list[tuple[str, Check]]:
        c = self.spec.cluster(cluster)
        cp = self.plan.cluster(cluster)
        steps = {s.name for s in cp.steps}
        out: list[tuple[str, Check]] = []
        if not c.is_remote:
            out.append(("istiod", lambda k: self.istiod(k, cluster)))
            out.append(("cacerts", lambda k: self.cacerts(k, cluster)))
        out.append(("network-label", lambda k: self.network_label(k, cluster)))
        if "eastwest-gateway" in steps:
            out.append(("eastwest-gateway",
                        lambda k: self.gateway(k, cluster, ISTIO_NS, EASTWEST, "eastwest-gateway")))
        if "remote-secrets" in steps:
            out.append(("remote-secrets", lambda k: self.remote_secrets(k, cluster)))
            out.append(("clusterz", lambda k: self.clusterz(k, cluster)))
        if not c.is_remote and self.spec.services:
            out.append(("endpoints", lambda k: self.endpoints(k, cluster)))
        out.append(("proxy-roots", lambda k: self.istio_proxy_roots(k, cluster)))
        return out

    def _istiod_name(self) -> str:
        rev = self.spec.mesh.revision
        return f"istiod-{rev}" if rev else "istiod"

    def istiod(self, kube: Kube, cluster: str) -> list[Finding]:
        name = self._istiod_name()
        status, reason = deployment_state(kube.deployment(ISTIO_NS, name), name)
        fix = APPLY if status == "fail" else f"kubectl -n {ISTIO_NS} describe deployment {name}"
        return [Finding(cluster, "istiod", status, reason, "" if status == "ok" else fix)]

    def cacerts(self, kube: Kube, cluster: str) -> list[Finding]:
        secret = kube.secret(ISTIO_NS, "cacerts")
        if secret is None:
            return [Finding(cluster, "cacerts", "fail", f"no Secret {ISTIO_NS}/cacerts: istiod "
                            "signs with a self-signed root that no other cluster trusts", APPLY)]
        root_pem, ca_pem = _data(secret, "root-cert.pem"), _data(secret, "ca-cert.pem")
        if not root_pem or not ca_pem:
            return [Finding(cluster, "cacerts", "fail", "cacerts lacks root-cert.pem or ca-cert.pem",
                            APPLY)]
        found = parse_bundle(root_pem, "cacerts root-cert.pem")
        row = self._roots(cluster, "cacerts", found, "cacerts root-cert.pem")
        self.seen_roots[cluster] = found
        if row.status != "ok" and row.status != "warn":
            return [row]
        ca = parse_bundle(ca_pem, "cacerts ca-cert.pem")
        roots = certs_from_pem(root_pem)
        inter = certs_from_pem(ca_pem)[0]
        if not any(verify_issued_by(inter, r) for r in roots):
            chain = certs_from_pem(_data(secret, "cert-chain.pem") or "")
            chained = any(verify_issued_by(inter, x) and any(verify_issued_by(x, r) for r in roots)
                          for x in chain[1:])
            if not chained:
                return [Finding(cluster, "cacerts", "fail",
                                f"ca-cert.pem ({ca.short()}) is not issued by a root of "
                                "root-cert.pem: workloads' certificates would not verify", APPLY)]
        return [row]

    def network_label(self, kube: Kube, cluster: str) -> list[Finding]:
        want = self.spec.cluster(cluster).network
        ns = kube.namespace(ISTIO_NS)
        if ns is None:
            return [Finding(cluster, "network-label", "fail", f"no namespace {ISTIO_NS}", APPLY)]
        got = ((ns.get("metadata") or {}).get("labels") or {}).get(NETWORK_LABEL)
        if got == want:
            return [Finding(cluster, "network-label", "ok", f"{ISTIO_NS}: {NETWORK_LABEL}={want}")]
        return [Finding(cluster, "network-label", "fail",
                        f"{ISTIO_NS}: {NETWORK_LABEL} is {got!r}, the spec's network is {want!r}: "
                        "istiod puts this cluster's endpoints in the wrong network", APPLY)]

    def _fixed_address(self, cluster: str) -> str | None:
        return self.spec.cluster(cluster).east_west_gateway.address

    def gateway(self, kube: Kube, cluster: str, namespace: str, name: str,
                check: str) -> list[Finding]:
        svc = kube.service(namespace, name)
        if svc is None:
            return [Finding(cluster, check, "fail", f"no Service {namespace}/{name}", APPLY)]
        found = lb_addresses(svc)
        fixed = self._fixed_address(cluster)
        if not found:
            return [Finding(cluster, check, "pending",
                            f"Service {namespace}/{name} has no load-balancer address yet",
                            "check the cluster's load-balancer controller "
                            f"(kubectl -n {namespace} describe service {name})")]
        if fixed and fixed not in found:
            index = self.spec.cluster_names.index(cluster)
            return [Finding(cluster, check, "fail",
                            f"address {', '.join(found)}, but the spec says {fixed}: other clusters "
                            "dial the spec's address",
                            f"set meshboot:clusters[{index}].eastWestGateway.address to "
                            f"{found[0]} (or give the Service that address) and apply")]
        note = "" if fixed else " (the spec sets no address: the deployment reads it from the Service)"
        return [Finding(cluster, check, "ok", f"address {', '.join(found)}{note}")]

    def _remote_secret_objects(self, cluster: str) -> list[dict[str, Any]]:
        return list(self.plan.cluster(cluster).step("remote-secrets").objects)

    def remote_secrets(self, kube: Kube, cluster: str) -> list[Finding]:
        out = []
        for obj in self._remote_secret_objects(cluster):
            name = obj["metadata"]["name"]
            target = obj["metadata"]["annotations"]["networking.istio.io/cluster"]
            check = f"remote-secret:{target}"
            secret = kube.secret(ISTIO_NS, name)
            if secret is None:
                out.append(Finding(cluster, check, "fail", f"no Secret {ISTIO_NS}/{name}: istiod "
                                   f"does not read {target}'s services and endpoints", APPLY))
                continue
            labels = (secret.get("metadata") or {}).get("labels") or {}
            if labels.get(MULTICLUSTER_LABEL) != "true":
                out.append(Finding(cluster, check, "fail", f"{name} lacks the label "
                                   f"{MULTICLUSTER_LABEL}: \"true\": istiod ignores it", APPLY))
            elif not _data(secret, target):
                out.append(Finding(cluster, check, "fail",
                                   f"{name} has no kubeconfig under key {target!r}", APPLY))
            else:
                out.append(Finding(cluster, check, "ok", f"{ISTIO_NS}/{name}"))
        return out

    def clusterz(self, kube: Kube, cluster: str) -> list[Finding]:
        svc = self._istiod_name()
        try:
            doc = kube.service_proxy(ISTIO_NS, svc, ISTIOD_DEBUG_PORT, "debug/clusterz")
        except KubeError as err:
            return [Finding(cluster, "clusterz", "pending" if err.pending else "fail",
                            f"istiod's /debug/clusterz: {err.reason}", err.fix)]
        entries = doc if isinstance(doc, list) else []
        status = {str(e.get("id")): str(e.get("syncStatus")) for e in entries if isinstance(e, dict)}
        out = []
        for obj in self._remote_secret_objects(cluster):
            target = obj["metadata"]["annotations"]["networking.istio.io/cluster"]
            check = f"clusterz:{target}"
            got = status.get(target)
            if got == "synced":
                out.append(Finding(cluster, check, "ok", f"istiod: {target} synced"))
            elif got is None or got == "syncing":
                out.append(Finding(cluster, check, "pending",
                                   f"istiod: {target} " + ("not listed yet" if got is None
                                                           else "still syncing"),
                                   f"kubectl -n {ISTIO_NS} logs deploy/{svc} | grep {target}"))
            else:
                out.append(Finding(cluster, check, "fail",
                                   f"istiod: {target} is {got!r}: istiod could not read its API "
                                   f"server with the remote secret",
                                   f"check {target}'s apiServer is reachable from istiod and its "
                                   "reader token is valid (re-create the remote secret: bump "
                                   "meshboot:mesh.tokenGeneration and apply)"))
        return out

    def _discovered(self, cluster: str) -> list[str]:
        cp = self.plan.cluster(cluster)
        sources = [cluster]
        if any(s.name == "remote-secrets" for s in cp.steps):
            sources += [o["metadata"]["annotations"]["networking.istio.io/cluster"]
                        for o in self._remote_secret_objects(cluster)]
        return sources

    def endpoints(self, kube: Kube, cluster: str) -> list[Finding]:
        try:
            doc = kube.service_proxy(ISTIO_NS, self._istiod_name(), ISTIOD_DEBUG_PORT,
                                     "debug/endpointShardz")
        except KubeError as err:
            return [Finding(cluster, "endpoints", "pending" if err.pending else "fail",
                            f"istiod's /debug/endpointShardz: {err.reason}", err.fix)]
        shardz = doc if isinstance(doc, dict) else {}
        sources = self._discovered(cluster)
        out = []
        for svc in self.spec.services:
            host = f"{svc.name}.{svc.namespace}.svc.cluster.local"
            want = [c for c in svc.clusters if c in sources]
            if not want:
                continue
            shards = ((shardz.get(host) or {}).get(svc.namespace) or {}).get("Shards") or {}
            have = {k.split("/", 1)[-1] for k, v in shards.items() if v}
            missing = [c for c in want if c not in have]
            check = f"endpoints:{svc.name}.{svc.namespace}"
            if missing:
                out.append(Finding(cluster, check, "pending",
                                   f"istiod knows no endpoints of {host} in {', '.join(missing)}",
                                   f"are {svc.name}'s pods running and ready there?"))
            else:
                out.append(Finding(cluster, check, "ok", f"endpoints in {', '.join(want)}"))
        return out

    def istio_proxy_roots(self, kube: Kube, cluster: str) -> list[Finding]:
        cm = kube.config_map(ISTIO_NS, ISTIO_ROOT_CONFIGMAP)
        pem = str(((cm or {}).get("data") or {}).get("root-cert.pem") or "")
        if not pem:
            return [Finding(cluster, "proxy-roots", "pending",
                            f"no {ISTIO_NS}/{ISTIO_ROOT_CONFIGMAP} yet (istiod writes it)",
                            f"check istiod serving {cluster} is running")]
        found = parse_bundle(pem, ISTIO_ROOT_CONFIGMAP)
        row = self._roots(cluster, "proxy-roots", found, f"{ISTIO_ROOT_CONFIGMAP} (what proxies "
                          "trust)", status_if_wrong="pending")
        if row.status == "pending":
            return [Finding(cluster, row.check, row.status, row.reason,
                            "istiod rewrites it from cacerts; if it stays, restart istiod")]
        return [row]

    # -------------------------------------------------------------- Linkerd
    def _linkerd(self, cluster: str) -> list[tuple[str, Check]]:
        cp = self.plan.cluster(cluster)
        steps = {s.name for s in cp.steps}
        out: list[tuple[str, Check]] = [
            ("control-plane", lambda k: self.linkerd_control_plane(k, cluster)),
            ("identity", lambda k: self.linkerd_identity(k, cluster)),
            ("trust-roots", lambda k: self.linkerd_trust_roots(k, cluster)),
        ]
        if "links" in steps:
            out.append(("links", lambda k: self.links(k, cluster)))
            mc = cp.step("linkerd-multicluster").release
            if mc is not None and mc.values["gateway"]["enabled"]:
                out.append(("gateway", lambda k: self.gateway(k, cluster, MC_NS, GATEWAY, "gateway")))
            out.append(("gateway-probes", lambda k: self.gateway_probes(k, cluster)))
            out.append(("mirrors", lambda k: self.mirrors(k, cluster)))
        out.append(("proxy-roots", lambda k: self.linkerd_proxy_roots(k, cluster)))
        return out

    def linkerd_control_plane(self, kube: Kube, cluster: str) -> list[Finding]:
        states = [deployment_state(kube.deployment(LINKERD_NS, d), d)
                  for d in LINKERD_CONTROL_DEPLOYMENTS]
        worst: Status = "fail" if any(s == "fail" for s, _ in states) else \
            "pending" if any(s == "pending" for s, _ in states) else "ok"
        fix = APPLY if worst == "fail" else f"kubectl -n {LINKERD_NS} get deploy" \
            if worst == "pending" else ""
        return [Finding(cluster, "control-plane", worst, "; ".join(r for _, r in states), fix)]

    def linkerd_identity(self, kube: Kube, cluster: str) -> list[Finding]:
        status, reason = deployment_state(kube.deployment(LINKERD_NS, "linkerd-identity"),
                                          "linkerd-identity")
        if status != "ok":
            return [Finding(cluster, "identity", status, reason,
                            APPLY if status == "fail" else "kubectl -n linkerd logs deploy/linkerd-identity")]
        secret = kube.secret(LINKERD_NS, "linkerd-identity-issuer")
        crt = _data(secret, "tls.crt") if secret else None
        if not crt:
            return [Finding(cluster, "identity", "fail",
                            f"no issuer certificate in {LINKERD_NS}/linkerd-identity-issuer", APPLY)]
        want = self.expected_bundle(cluster)
        issuer = certs_from_pem(crt)[0]
        if want is not None and not any(verify_issued_by(issuer, r)
                                        for r in certs_from_pem(want.pem)):
            return [Finding(cluster, "identity", "fail", "the issuer certificate is not issued by "
                            f"a trust anchor of the spec ({want.short()})", APPLY)]
        return [Finding(cluster, "identity", "ok", f"{reason}; issuer chains to the trust anchors"
                        if want is not None else reason)]

    def linkerd_trust_roots(self, kube: Kube, cluster: str) -> list[Finding]:
        cm = kube.config_map(LINKERD_NS, LINKERD_TRUST_ROOTS)
        pem = str(((cm or {}).get("data") or {}).get("ca-bundle.crt") or "")
        if not pem:
            return [Finding(cluster, "trust-roots", "fail",
                            f"no ca-bundle.crt in {LINKERD_NS}/{LINKERD_TRUST_ROOTS}", APPLY)]
        found = parse_bundle(pem, LINKERD_TRUST_ROOTS)
        self.seen_roots[cluster] = found
        return [self._roots(cluster, "trust-roots", found, LINKERD_TRUST_ROOTS)]

    def _link_objects(self, cluster: str) -> list[dict[str, Any]]:
        return list(self.plan.cluster(cluster).step("links").objects)

    def links(self, kube: Kube, cluster: str) -> list[Finding]:
        out = []
        for obj in self._link_objects(cluster):
            name = obj["metadata"]["name"]
            body = obj["spec"]
            target = body["targetClusterName"]
            check = f"link:{target}"
            group, version = obj["apiVersion"].split("/")
            live = kube.custom_object(group, version, MC_NS, "links", name)
            if live is None:
                out.append(Finding(cluster, check, "fail", f"no Link {MC_NS}/{name}: nothing is "
                                   f"mirrored from {target}", APPLY))
                continue
            creds = body["clusterCredentialsSecret"]
            secret = kube.secret(MC_NS, creds)
            if secret is None or not _data(secret, "kubeconfig"):
                out.append(Finding(cluster, check, "fail", f"Link {name} present, but its "
                                   f"credentials Secret {MC_NS}/{creds} is missing or empty", APPLY))
                continue
            ref = body.get("gatewayAddress")
            got = str((live.get("spec") or {}).get("gatewayAddress") or "")
            if isinstance(ref, GatewayAddressRef) and ref.fixed and got != ref.fixed:
                out.append(Finding(cluster, check, "fail", f"Link {name} dials gateway {got!r}, the "
                                   f"spec says {ref.fixed!r}", APPLY))
                continue
            out.append(Finding(cluster, check, "ok", f"Link {name} with credentials {creds}"
                               + (f", gateway {got}" if got else " (gateway-less)")))
        return out

    def gateway_probes(self, kube: Kube, cluster: str) -> list[Finding]:
        out = []
        for obj in self._link_objects(cluster):
            if "probeSpec" not in obj["spec"]:
                continue  # gateway-less: nothing to probe
            target = obj["spec"]["targetClusterName"]
            probe = f"probe-gateway-{target}"
            ep = kube.endpoints(MC_NS, probe)
            if has_ready_endpoints(ep):
                out.append(Finding(cluster, f"gateway-probe:{target}", "ok",
                                   f"{MC_NS}/{probe} has endpoints"))
            else:
                out.append(Finding(cluster, f"gateway-probe:{target}", "pending",
                                   f"{MC_NS}/{probe} has no ready endpoints: {target}'s gateway "
                                   "does not answer probes (yet)",
                                   f"linkerd --context <{cluster}> multicluster gateways; check "
                                   f"{target}'s linkerd-gateway is reachable"))
        return out

    def mirrors(self, kube: Kube, cluster: str) -> list[Finding]:
        out = []
        for obj in self._link_objects(cluster):
            target = obj["spec"]["targetClusterName"]
            for svc in self.spec.services:
                if svc.federated or target not in svc.clusters:
                    continue
                name = f"{svc.name}-{target}"
                check = f"mirror:{name}.{svc.namespace}"
                if kube.service(svc.namespace, name) is None:
                    out.append(Finding(cluster, check, "pending",
                                       f"no mirror Service {svc.namespace}/{name} yet",
                                       f"check the service mirror of Link {target}: kubectl -n "
                                       f"{MC_NS} logs -l mirror.linkerd.io/cluster-name={target}"))
                else:
                    out.append(Finding(cluster, check, "ok", f"{svc.namespace}/{name}"))
        return out

    def linkerd_proxy_roots(self, kube: Kube, cluster: str) -> list[Finding]:
        want = self.expected_bundle(cluster)
        if want is None:
            return [Finding(cluster, "proxy-roots", "warn", "not compared: no PKI at hand",
                            "point --pki-dir at the PKI store")]
        digest = hashlib.sha256(want.pem.encode()).hexdigest()
        pods = kube.pods(PROXY_POD_LABEL)
        stale = []
        for pod in pods:
            meta = pod.get("metadata") or {}
            got = (meta.get("annotations") or {}).get(TRUST_ROOT_ANNOTATION)
            if got is not None and got != digest:
                stale.append(f"{meta.get('namespace')}/{meta.get('name')}")
        if stale:
            shown = ", ".join(stale[:5]) + (f" and {len(stale) - 5} more" if len(stale) > 5 else "")
            return [Finding(cluster, "proxy-roots", "pending",
                            f"{len(stale)} of {len(pods)} meshed pods were injected with other trust "
                            f"roots: {shown}",
                            "restart them (kubectl rollout restart) so their proxies get the "
                            "current bundle")]
        return [Finding(cluster, "proxy-roots", "ok",
                        f"{len(pods)} meshed pods carry the current trust bundle's hash")]

    # -------------------------------------------------------------- across clusters
    def identical_roots(self) -> list[Finding]:
        """Every cluster trusts the same bundle (mid-rotation: the same two roots)."""
        if len(self.seen_roots) < 2:
            return []
        groups: dict[frozenset[str], list[str]] = {}
        for name, bundle in self.seen_roots.items():
            groups.setdefault(bundle.fingerprints, []).append(name)
        if len(groups) == 1:
            return [Finding(MESH, "trust-roots-identical", "ok",
                            f"{len(self.seen_roots)} clusters trust the same bundle "
                            f"({next(iter(self.seen_roots.values())).short()})")]
        desc = "; ".join(f"{', '.join(names)}: {Bundle('', fps).short()}"
                         for fps, names in groups.items())
        return [Finding(MESH, "trust-roots-identical", "fail",
                        f"clusters trust different bundles ({desc}): workloads across them "
                        "fail mutual TLS", APPLY + " to every cluster")]
