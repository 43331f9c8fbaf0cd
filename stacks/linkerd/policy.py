"""Traffic and security policy of the spec (``clusters.policy``) as Linkerd objects.

Mapped:

- ``routing.localShare`` / ``routing.weights``: per calling cluster that runs
  the service, an HTTPRoute (gateway.networking.k8s.io/v1) per HTTP port whose
  parentRef is the local Service and whose backendRefs weight the local
  Service and the ``<svc>-<cluster>`` mirrors;
- ``release`` (canary, blueGreen, abTest): HTTPRoute header/path matches and
  weights over per-version Services ``<svc>-<version>`` (meshboot-owned,
  selector ``app`` + the version label), local to each cluster;
- ``timeout``: ``rules[].timeouts.request``;
- ``retries``: Linkerd's ``retry.linkerd.io/*`` annotations on a route that
  matches only the retried methods (Linkerd has no per-method retry switch);
- ``authorization``: Server + AuthorizationPolicy + MeshTLSAuthentication per
  port (callers by service account or namespace identity);
- ``meshboot:security``: namespace default inbound policy (``defaultDeny`` ->
  ``deny``, mTLS ``STRICT`` -> ``all-authenticated``).

Everything else Linkerd cannot express is a Problem naming the key and why.
"""

from __future__ import annotations

import re
from typing import Any

from clusters.errors import Problem
from clusters.policy import HeaderMatch, cluster_split, has_http_port
from clusters.spec import PortSpec, ServiceSpec, Spec

ROUTE_API = "gateway.networking.k8s.io/v1"
POLICY_API = "policy.linkerd.io"
MANAGED = {"app.kubernetes.io/managed-by": "meshboot"}
# Retry conditions: Linkerd's HTTP and gRPC retry annotations, and the
# connection-level ones its proxy handles by itself (a request that never
# left is always retried on another endpoint).
_HTTP_RETRY = {"5xx", "gateway-error"}
_GRPC_RETRY = {"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"}
_BUILTIN_RETRY = {"connect-failure", "refused-stream", "reset-before-request"}

_UNSUPPORTED: dict[str, str] = {
    "fault": "Linkerd has no fault injection (no delay/abort filter in its HTTPRoute support)",
    "connectionPool": "Linkerd proxies do not expose connection-pool limits",
    "outlierDetection": "Linkerd's failure accrual is not configurable per ejection parameters "
                        "like this (it uses consecutive-failure circuit breaking annotations)",
    "loadBalancer": "Linkerd always balances by EWMA latency; the algorithm and hash-based "
                    "affinity cannot be chosen",
    "jwt": "Linkerd does not validate end-user JWTs (no request authentication)",
    "mtls": "Linkerd has no per-port mTLS mode; use the pods' config.linkerd.io/opaque-ports or "
            "skip-inbound-ports annotations",
    "reachableFrom": "Linkerd mirrors by export label for all linked clusters; restricting "
                     "callers per cluster is not expressible as a Link selector per service",
}


def _http_ports(svc: ServiceSpec) -> list[PortSpec]:
    from clusters.policy import _HTTP_PROTOCOLS, _NON_HTTP_PREFIXES

    return [p for p in svc.ports if p.protocol in _HTTP_PROTOCOLS
            or (p.protocol is None and not p.name.split("-")[0].startswith(_NON_HTTP_PREFIXES))]


def check_policy(spec: Spec) -> list[Problem]:
    out: list[Problem] = []
    for i, s in enumerate(spec.services):
        base = f"meshboot:services[{i}]"
        for key, reason in _UNSUPPORTED.items():
            attr = re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()
            if getattr(s, attr) is not None:
                out.append(Problem(f"{base}.{key}", f"not supported with Linkerd: {reason}"))
        r = s.routing
        if r is not None and r.locality is not None:
            out.append(Problem(f"{base}.routing.locality",
                               "not supported with Linkerd: it has no locality-aware load "
                               "balancing (distribute/failover); use localShare or weights, or "
                               "federated: true for failover across clusters"))
        if s.federated and (s.routing is not None or s.release is not None):
            out.append(Problem(f"{base}.federated",
                               "a federated service is one Service over all clusters: it has "
                               "no per-cluster mirrors to weight (drop routing/release or "
                               "federated)"))
        if s.retries is not None:
            for j, cond in enumerate(s.retries.retry_on):
                if cond in _HTTP_RETRY | _GRPC_RETRY | _BUILTIN_RETRY or cond.isdigit():
                    continue
                out.append(Problem(f"{base}.retries.retryOn[{j}]",
                                   f"not supported with Linkerd: {cond!r} (it retries on 5xx, "
                                   "gateway-error, status codes and gRPC statuses)"))
        if s.authorization is not None:
            for k, rule in enumerate(s.authorization.rules):
                if rule.to is not None and (rule.to.methods or rule.to.paths):
                    out.append(Problem(f"{base}.authorization.rules[{k}].to",
                                       "not supported by meshboot's Linkerd stack yet: "
                                       "per-route authorization needs policy HTTPRoutes bound "
                                       "to the Server; authorize by caller only"))
                if rule.from_ is None or not (rule.from_.service_accounts
                                              or rule.from_.namespaces):
                    out.append(Problem(f"{base}.authorization.rules[{k}].from",
                                       "Linkerd authorizes callers by identity: name "
                                       "serviceAccounts or namespaces"))
    t = spec.traffic
    if t.cross_cluster != "discovery":
        out.append(Problem("meshboot:traffic.crossCluster",
                           f"{t.cross_cluster!r} is Istio-only; Linkerd reaches other clusters "
                           "through Links and mirrored Services"))
    if t.sidecar_egress is not None:
        out.append(Problem("meshboot:traffic.sidecarEgress",
                           "Istio-only (Sidecar egress scoping); Linkerd proxies have no "
                           "equivalent"))
    return out


def namespace_annotations(spec: Spec) -> dict[str, str]:
    """Annotations of the service namespaces from ``meshboot:security``."""
    if spec.security.default_deny:
        return {"config.linkerd.io/default-inbound-policy": "deny"}
    if spec.security.mtls.mode == "STRICT":
        return {"config.linkerd.io/default-inbound-policy": "all-authenticated"}
    return {}


# ---------------------------------------------------------------------- objects
def _header(h: HeaderMatch) -> dict[str, Any]:
    if h.exact is not None:
        return {"type": "Exact", "name": h.name, "value": h.exact}
    value = h.regex if h.regex is not None else re.escape(h.prefix or "") + ".*"
    return {"type": "RegularExpression", "name": h.name, "value": value}


def _backend(name: str, port: int, weight: int) -> dict[str, Any]:
    return {"group": "", "kind": "Service", "name": name, "port": port, "weight": weight}


def _version_service(spec: Spec, svc: ServiceSpec, version: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"{svc.name}-{version}", "namespace": svc.namespace,
                     "labels": dict(sorted({**MANAGED, "app": svc.name}.items()))},
        "spec": {"type": "ClusterIP",
                 "selector": {"app": svc.name, spec.traffic.version_label: version},
                 "ports": [{"name": p.name, "port": p.port, "protocol": "TCP",
                            "targetPort": p.target_port or p.port} for p in svc.ports]},
    }


def _rules(spec: Spec, svc: ServiceSpec, cluster: str, port: int) -> list[dict[str, Any]]:
    """Routing rules (matches + weighted backends) for one caller cluster."""
    rel = svc.release
    rules: list[dict[str, Any]] = []
    if rel is not None and rel.canary is not None:
        c = rel.canary
        if c.header is not None:
            rules.append({"matches": [{"headers": [_header(c.header)]}],
                          "backendRefs": [_backend(f"{svc.name}-{c.candidate}", port, 100)]})
        rules.append({"backendRefs": [
            b for b in (_backend(f"{svc.name}-{c.stable}", port, 100 - c.weight),
                        _backend(f"{svc.name}-{c.candidate}", port, c.weight)) if b["weight"]]})
    elif rel is not None and rel.blue_green is not None:
        b = rel.blue_green
        if b.header is not None:
            rules.append({"matches": [{"headers": [_header(b.header)]}],
                          "backendRefs": [_backend(f"{svc.name}-{b.preview}", port, 100)]})
        rules.append({"backendRefs": [_backend(f"{svc.name}-{b.active}", port, 100)]})
    elif rel is not None and rel.ab_test is not None:
        for g in rel.ab_test.groups:
            match: dict[str, Any] = {}
            if g.header is not None:
                match["headers"] = [_header(g.header)]
            if g.path_prefix is not None:
                match["path"] = {"type": "PathPrefix", "value": g.path_prefix}
            rules.append({"matches": [match],
                          "backendRefs": [_backend(f"{svc.name}-{g.version}", port, 100)]})
        rules.append({"backendRefs": [_backend(f"{svc.name}-{v}", port, w)
                                      for v, w in rel.ab_test.default.items() if w]})
    elif svc.routing is not None:
        split = cluster_split(spec, svc, cluster)
        rules.append({"backendRefs": [
            _backend(svc.name if c == cluster else f"{svc.name}-{c}", port, w)
            for c, w in split.items()]})
    else:
        rules.append({"backendRefs": [_backend(svc.name, port, 100)]})
    if svc.timeout:
        for r in rules:
            r["timeouts"] = {"request": svc.timeout}
    return rules


def _routes(spec: Spec, svc: ServiceSpec, cluster: str) -> list[dict[str, Any]]:
    if svc.routing is None and svc.release is None and svc.timeout is None \
            and svc.retries is None:
        return []
    out = []
    for p in _http_ports(svc):
        parent = {"group": "", "kind": "Service", "name": svc.name, "port": p.port}
        rules = _rules(spec, svc, cluster, p.port)
        name = f"{svc.name}-{p.name}"
        out.append({"apiVersion": ROUTE_API, "kind": "HTTPRoute",
                    "metadata": {"name": name, "namespace": svc.namespace,
                                 "labels": dict(MANAGED)},
                    "spec": {"parentRefs": [parent], "rules": rules}})
        r = svc.retries
        if r is not None:
            annotations = {"retry.linkerd.io/limit": str(r.attempts)}
            http = sorted(c for c in r.retry_on if c in _HTTP_RETRY or c.isdigit())
            grpc = sorted(c for c in r.retry_on if c in _GRPC_RETRY)
            if http:
                annotations["retry.linkerd.io/http"] = ",".join(http)
            if grpc:
                annotations["retry.linkerd.io/grpc"] = ",".join(grpc)
            if r.per_try_timeout:
                annotations["retry.linkerd.io/timeout"] = r.per_try_timeout
            # The same routing, only for the retried methods (more specific match wins).
            retried = []
            for rule in rules:
                base_matches = rule.get("matches") or [{}]
                matches = [{**m, "method": method} for m in base_matches
                           for method in r.effective_methods]
                retried.append({**rule, "matches": matches})
            out.append({"apiVersion": ROUTE_API, "kind": "HTTPRoute",
                        "metadata": {"name": f"{name}-retry", "namespace": svc.namespace,
                                     "labels": dict(MANAGED), "annotations": annotations},
                        "spec": {"parentRefs": [parent], "rules": retried}})
    return out


def _authorization(spec: Spec, svc: ServiceSpec) -> list[dict[str, Any]]:
    authz = svc.authorization
    if authz is None:
        return []
    td = spec.mesh.trust_domain
    identities: list[str] = []
    for rule in authz.rules:
        src = rule.from_
        if src is None:
            continue
        for sa in src.service_accounts or []:
            ns, name = sa.split("/", 1)
            identities.append(f"{name}.{ns}.serviceaccount.identity.linkerd.{td}")
        for ns in src.namespaces or []:
            identities.append(f"*.{ns}.serviceaccount.identity.linkerd.{td}")
    meta = {"namespace": svc.namespace, "labels": dict(MANAGED)}
    objs: list[dict[str, Any]] = [{
        "apiVersion": f"{POLICY_API}/v1alpha1", "kind": "MeshTLSAuthentication",
        "metadata": {"name": f"{svc.name}-callers", **meta},
        "spec": {"identities": sorted(set(identities))},
    }]
    for p in svc.ports:
        server = f"{svc.name}-{p.name}"
        objs.append({
            "apiVersion": f"{POLICY_API}/v1beta3", "kind": "Server",
            "metadata": {"name": server, **meta},
            "spec": {"podSelector": {"matchLabels": {"app": svc.name}},
                     "port": p.target_port or p.port, "accessPolicy": "deny"},
        })
        objs.append({
            "apiVersion": f"{POLICY_API}/v1alpha1", "kind": "AuthorizationPolicy",
            "metadata": {"name": server, **meta},
            "spec": {"targetRef": {"group": POLICY_API, "kind": "Server", "name": server},
                     "requiredAuthenticationRefs": [{
                         "group": POLICY_API, "kind": "MeshTLSAuthentication",
                         "name": f"{svc.name}-callers"}]},
        })
    return objs


def linkerd_policy_objects(spec: Spec, source: str = "spec"
                           ) -> tuple[dict[str, list[dict[str, Any]]], list[Problem]]:
    """cluster -> policy objects, and every unsupported policy as a Problem."""
    problems = check_policy(spec)
    if problems:
        return {}, problems
    out: dict[str, list[dict[str, Any]]] = {}
    for c in spec.cluster_names:
        objs: list[dict[str, Any]] = []
        for svc in spec.services:
            if c not in svc.clusters or not has_http_port(svc) and svc.authorization is None:
                continue
            if svc.release is not None:
                objs += [_version_service(spec, svc, v) for v in svc.versions or []]
            objs += _routes(spec, svc, c)
            objs += _authorization(spec, svc)
        if objs:
            out[c] = objs
    return out, []
