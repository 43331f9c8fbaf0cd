"""``meshboot verify`` for Istio: istiod, ``cacerts``, the network label, the east-west
gateway, remote secrets and istiod's view of them, endpoints, the roots proxies trust.

Upstream facts used here:

* istiod's ``/debug/clusterz`` (istio/istio ``pilot/pkg/xds/debug.go``
  ``clusterz``) writes ``ListRemoteClusters()`` (``pkg/kube/multicluster/
  secretcontroller.go``): a JSON list of ``cluster.DebugInfo`` (``pkg/cluster/
  debug.go``: ``id``, ``secretName``, ``syncStatus``), the config cluster first
  with an empty secretName. ``syncStatus`` is ``synced``, ``syncing``,
  ``timeout`` or ``closed`` (``pkg/kube/multicluster/cluster.go``).
  It is served on istiod's monitoring port 15014, only to localhost or an
  authenticated caller (``debug.go`` ``allowAuthenticatedOrLocalhost``,
  istio/istio#32903). meshboot reads it as ``istioctl remote-clusters`` does
  (``pkg/kube/client.go`` ``AllDiscoveryDo``): a running ``app=istiod`` pod
  (``istio.io/rev=<revision>`` with a revision) in istio-system, port-forwarded,
  so istiod sees a localhost caller. If the user may not port-forward (403 on
  ``pods/portforward``), it tries the API server's service proxy; the proxy
  forwards no credentials, so an istiod enforcing the check answers 401 there,
  and the check is reported as not made (``warn``), not the kubeconfig as rejected.
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
"""

from __future__ import annotations

from typing import Any

from clusters.kube_client import Kube, KubeError
from pki.ca import certs_from_pem, verify_issued_by
from stacks.istio.topology import EASTWEST, ISTIO_NS
from stacks.verify import APPLY, Check, Finding, Verifier, deployment_state, parse_bundle, secret_data

ISTIOD_DEBUG_PORT = 15014
NETWORK_LABEL = "topology.istio.io/network"
MULTICLUSTER_LABEL = "istio/multiCluster"
CLUSTER_ANNOTATION = "networking.istio.io/cluster"
ISTIO_ROOT_CONFIGMAP = "istio-ca-root-cert"   # istiod writes the roots proxies trust here


def debug_refused(cluster: str, check: str, path: str, svc: str, no_forward: str) -> Finding:
    """No port-forward, and istiod's 401 through the service proxy: the check is not made."""
    return Finding(cluster, check, "warn",
                   f"not checked: the API server would not port-forward to istiod: {no_forward}; "
                   f"and istiod refused {path} through the service proxy (401: it serves its "
                   "debug endpoints only to localhost or authenticated callers, and the proxy "
                   "forwards no credentials)",
                   f"grant verify's user `create` on pods/portforward in {ISTIO_NS}; or run "
                   f"istioctl --context <{cluster}> remote-clusters, or kubectl -n {ISTIO_NS} "
                   f"port-forward deploy/{svc} 15014 and GET http://localhost:15014{path}")


class IstioVerifier(Verifier):
    def mesh_checks(self, cluster: str) -> list[tuple[str, Check]]:
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
        out.append(("proxy-roots", lambda k: self.proxy_roots(k, cluster)))
        return out

    def _istiod_name(self) -> str:
        rev = self.spec.mesh.revision
        return f"istiod-{rev}" if rev else "istiod"

    def _istiod_pod(self, kube: Kube) -> str:
        """A running, ready istiod pod of the spec's revision (istioctl's selector)."""
        rev = self.spec.mesh.revision
        selector = f"app=istiod,istio.io/rev={rev}" if rev else "app=istiod"
        pods = kube.namespaced_pods(ISTIO_NS, selector, "status.phase=Running")
        ready = sorted(str((p.get("metadata") or {}).get("name")) for p in pods if _ready(p))
        if not ready:
            raise KubeError(f"no running, ready istiod pod ({selector}) in {ISTIO_NS}"
                            + (f" ({len(pods)} not ready)" if pods else ""),
                            f"kubectl -n {ISTIO_NS} get pods -l {selector}", pending=True)
        return ready[0]

    def debug(self, kube: Kube, cluster: str, check: str,
              path: str) -> tuple[Any, list[Finding]]:
        """istiod's ``/debug/<path>``: (its JSON, []), or (None, the rows saying why not)."""
        svc = self._istiod_name()
        try:
            try:
                return kube.pod_get(ISTIO_NS, self._istiod_pod(kube), ISTIOD_DEBUG_PORT,
                                    f"debug/{path}"), []
            except KubeError as err:
                if not err.no_forward:
                    raise
                no_forward = err.detail
            try:
                return kube.service_proxy(ISTIO_NS, svc, ISTIOD_DEBUG_PORT, f"debug/{path}"), []
            except KubeError as err:
                if err.refused:
                    return None, [debug_refused(cluster, check, f"/debug/{path}", svc, no_forward)]
                raise
        except KubeError as err:
            if err.unreachable:
                raise
            return None, [Finding(cluster, check, "pending" if err.pending else "fail",
                                  f"istiod's /debug/{path}: {err.reason}", err.fix)]

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
        root_pem, ca_pem = secret_data(secret, "root-cert.pem"), secret_data(secret, "ca-cert.pem")
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
            chain = certs_from_pem(secret_data(secret, "cert-chain.pem") or "")
            chained = any(verify_issued_by(inter, x) and any(verify_issued_by(x, r) for r in roots)
                          for x in chain[1:])
            if not chained:
                return [Finding(cluster, "cacerts", "fail",
                                f"ca-cert.pem ({ca.short()}) is not issued by a root of "
                                "root-cert.pem: workloads' certificates would not verify", APPLY)]
        wrong = self.signing_mismatch(cluster, ca_pem, secret_data(secret, "cert-chain.pem") or "")
        if wrong is not None:
            return [Finding(cluster, "cacerts", "fail", f"ca-cert.pem ({ca.short()}) is {wrong}",
                            APPLY)]
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

    def _remote_secret_objects(self, cluster: str) -> list[dict[str, Any]]:
        return list(self.plan.cluster(cluster).step("remote-secrets").objects)

    def remote_secrets(self, kube: Kube, cluster: str) -> list[Finding]:
        out = []
        for obj in self._remote_secret_objects(cluster):
            name = obj["metadata"]["name"]
            target = obj["metadata"]["annotations"][CLUSTER_ANNOTATION]
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
            elif not secret_data(secret, target):
                out.append(Finding(cluster, check, "fail",
                                   f"{name} has no kubeconfig under key {target!r}", APPLY))
            else:
                out.append(Finding(cluster, check, "ok", f"{ISTIO_NS}/{name}"))
        return out

    def clusterz(self, kube: Kube, cluster: str) -> list[Finding]:
        svc = self._istiod_name()
        doc, rows = self.debug(kube, cluster, "clusterz", "clusterz")
        if rows:
            return rows
        entries = doc if isinstance(doc, list) else []
        status = {str(e.get("id")): str(e.get("syncStatus")) for e in entries if isinstance(e, dict)}
        out = []
        for obj in self._remote_secret_objects(cluster):
            target = obj["metadata"]["annotations"][CLUSTER_ANNOTATION]
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
            sources += [o["metadata"]["annotations"][CLUSTER_ANNOTATION]
                        for o in self._remote_secret_objects(cluster)]
        return sources

    def endpoints(self, kube: Kube, cluster: str) -> list[Finding]:
        doc, rows = self.debug(kube, cluster, "endpoints", "endpointShardz")
        if rows:
            return rows
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

    def proxy_roots(self, kube: Kube, cluster: str) -> list[Finding]:
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


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(isinstance(c, dict) and c.get("type") == "Ready" and c.get("status") == "True"
               for c in conditions)

