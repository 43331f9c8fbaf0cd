"""``meshboot verify`` for Linkerd: control plane and identity, trust roots, Links and
their credentials, the multicluster gateway and its probes, mirror services, and
the trust bundle injected pods run with.

Upstream facts used here:

* Linkerd's ``linkerd.io/trust-root-sha256`` pod annotation is the hex SHA-256
  of the exact ``identityTrustAnchorsPEM`` text (linkerd2 ``pkg/inject/
  inject.go``: ``sha256.Sum256([]byte(values.IdentityTrustAnchorsPEM))``;
  ``charts/partials/templates/_metadata.tpl``: ``| sha256sum``).
* Linkerd gateway liveness: ``linkerd multicluster check`` requires the
  gateway's probe Service (labels ``mirror.linkerd.io/mirrored-gateway``,
  ``mirror.linkerd.io/cluster-name``) to have endpoints (multicluster/cmd/
  check.go ``checkIfGatewayMirrorsHaveEndpoints``). The linkerd-multicluster
  chart's ``controllers``, which meshboot installs, name it ``probe-<link>``
  (charts/linkerd-multicluster/templates/controller/probe-svc.yaml, the
  controller's ``-probe-service`` in controller/deployment.yaml);
  ``probe-gateway-<target>`` is the deprecated linkerd-multicluster-link
  chart's name. Mirror
  services are ``<service>-<target>`` (multicluster/service-mirror/
  cluster_watcher.go).
"""

from __future__ import annotations

import hashlib
from typing import Any

from clusters.kube_client import Kube
from pki.ca import certs_from_pem, verify_issued_by
from stacks.linkerd.topology import GATEWAY, LINKERD_NS, MC_NS
from stacks.plan import GatewayAddressRef
from stacks.verify import (
    APPLY,
    Check,
    Finding,
    Status,
    Verifier,
    deployment_state,
    has_ready_endpoints,
    parse_bundle,
    secret_data,
)

LINKERD_TRUST_ROOTS = "linkerd-identity-trust-roots"
TRUST_ROOT_ANNOTATION = "linkerd.io/trust-root-sha256"
PROXY_POD_LABEL = f"linkerd.io/control-plane-ns={LINKERD_NS}"
LINKERD_CONTROL_DEPLOYMENTS = ("linkerd-destination", "linkerd-proxy-injector")


class LinkerdVerifier(Verifier):
    def mesh_checks(self, cluster: str) -> list[tuple[str, Check]]:
        cp = self.plan.cluster(cluster)
        steps = {s.name for s in cp.steps}
        out: list[tuple[str, Check]] = [
            ("control-plane", lambda k: self.control_plane(k, cluster)),
            ("identity", lambda k: self.identity(k, cluster)),
            ("trust-roots", lambda k: self.trust_roots(k, cluster)),
        ]
        if "links" in steps:
            out.append(("links", lambda k: self.links(k, cluster)))
            mc = cp.step("linkerd-multicluster").release
            if mc is not None and mc.values["gateway"]["enabled"]:
                out.append(("gateway", lambda k: self.gateway(k, cluster, MC_NS, GATEWAY, "gateway")))
            out.append(("gateway-probes", lambda k: self.gateway_probes(k, cluster)))
            out.append(("mirrors", lambda k: self.mirrors(k, cluster)))
        out.append(("proxy-roots", lambda k: self.proxy_roots(k, cluster)))
        return out

    def control_plane(self, kube: Kube, cluster: str) -> list[Finding]:
        states = [deployment_state(kube.deployment(LINKERD_NS, d), d)
                  for d in LINKERD_CONTROL_DEPLOYMENTS]
        worst: Status = "fail" if any(s == "fail" for s, _ in states) else \
            "pending" if any(s == "pending" for s, _ in states) else "ok"
        fix = APPLY if worst == "fail" else f"kubectl -n {LINKERD_NS} get deploy" \
            if worst == "pending" else ""
        return [Finding(cluster, "control-plane", worst, "; ".join(r for _, r in states), fix)]

    def identity(self, kube: Kube, cluster: str) -> list[Finding]:
        status, reason = deployment_state(kube.deployment(LINKERD_NS, "linkerd-identity"),
                                          "linkerd-identity")
        if status != "ok":
            return [Finding(cluster, "identity", status, reason,
                            APPLY if status == "fail" else "kubectl -n linkerd logs deploy/linkerd-identity")]
        secret = kube.secret(LINKERD_NS, "linkerd-identity-issuer")
        crt = secret_data(secret, "tls.crt") if secret else None
        if not crt:
            return [Finding(cluster, "identity", "fail",
                            f"no issuer certificate in {LINKERD_NS}/linkerd-identity-issuer", APPLY)]
        want = self.expected_bundle(cluster)
        issuer = certs_from_pem(crt)[0]
        if want is not None and not any(verify_issued_by(issuer, r)
                                        for r in certs_from_pem(want.pem)):
            return [Finding(cluster, "identity", "fail", "the issuer certificate is not issued by "
                            f"a trust anchor of the spec ({want.short()})", APPLY)]
        wrong = self.signing_mismatch(cluster, crt, crt)
        if wrong is not None:
            return [Finding(cluster, "identity", "fail", f"the issuer certificate is {wrong}",
                            APPLY)]
        return [Finding(cluster, "identity", "ok", f"{reason}; issuer chains to the trust anchors"
                        if want is not None else reason)]

    def trust_roots(self, kube: Kube, cluster: str) -> list[Finding]:
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
            if secret is None or not secret_data(secret, "kubeconfig"):
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
            probe = f"probe-{obj['metadata']['name']}"   # the chart's controllers[].link.ref.name
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

    def proxy_roots(self, kube: Kube, cluster: str) -> list[Finding]:
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
