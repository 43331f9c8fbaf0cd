"""Traffic and security policy of the spec (``clusters.policy``) as Linkerd objects.

Mapped (routes and their weights are the neutral ones of ``stacks.traffic.routes``):

- ``routing.localShare`` / ``routing.weights``: per calling cluster that runs
  the service, an HTTPRoute (gateway.networking.k8s.io/v1) per HTTP port whose
  parentRef is the local Service and whose backendRefs weight the local
  Service and the ``<svc>-<cluster>`` mirrors;
- ``release`` (canary, blueGreen, abTest): HTTPRoute header/path matches and
  weights over per-version Services ``<svc>-<version>`` (meshboot-owned,
  selector ``app`` + the version label), local to each cluster;
- ``timeout``: ``rules[].timeouts.request``;
- ``outlierDetection``: consecutive-failure circuit breaking
  (``balancer.linkerd.io/failure-accrual*`` annotations on the Services);
- ``retries``: Linkerd's ``retry.linkerd.io/*`` annotations on a route that
  matches only the retried methods (Linkerd has no per-method retry switch);
- gRPC ports: all of the above on one GRPCRoute per port (no method filter,
  timeouts and retries as annotations), since Linkerd ignores HTTPRoutes on a
  port that has GRPCRoutes;
- ``authorization``: Server + AuthorizationPolicy + MeshTLSAuthentication per
  port (callers by service account or namespace identity; a rule without
  ``from`` admits every meshed caller). Rules with ``to`` (methods, paths)
  become policy.linkerd.io HTTPRoutes attached to the Server, each authorized
  on its own; a request that matches no route is refused, as an allow-list
  should be. The most specific route wins in Linkerd, so a route's callers
  include those of every rule whose operations cover it. Such Servers also get
  the kubelet probe route (``authorization.probePaths``), and callers through a
  multicluster gateway are the gateway (``linkerd.admitGatewayIdentity``);
- ``meshboot:security``: namespace default inbound policy (``defaultDeny`` ->
  ``deny``, mTLS ``STRICT`` -> ``all-authenticated``).

Everything else Linkerd cannot express is a Problem naming the key and why.
"""

from __future__ import annotations

import re
from typing import Any

from clusters.errors import Problem
from clusters.models import duration_seconds
from clusters.policy import AuthzRule, HeaderMatch, RetrySpec
from clusters.spec import PortSpec, ServiceSpec, Spec
from stacks.linkerd.topology import LinkerdTopology, gateway_identity
from stacks.traffic.routes import Destination, Match, Route, ServiceRoutes

ROUTE_API = "gateway.networking.k8s.io/v1"
POLICY_API = "policy.linkerd.io"
MANAGED = {"app.kubernetes.io/managed-by": "meshboot"}
# Retry conditions: Linkerd's HTTP and gRPC retry annotations, and the
# connection-level ones its proxy handles by itself (a request that never
# left is always retried on another endpoint).
_HTTP_RETRY = {"5xx", "gateway-error"}
_GRPC_RETRY = {"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"}
_BUILTIN_RETRY = {"connect-failure", "refused-stream", "reset-before-request"}
# balancer.linkerd.io/failure-accrual-consecutive-max-penalty when unset.
DEFAULT_MAX_PENALTY_SECONDS = 60

_UNSUPPORTED: dict[str, str] = {
    "fault": "Linkerd has no fault injection (no delay/abort filter in its HTTPRoute support)",
    "connectionPool": "Linkerd proxies do not expose connection-pool limits",
    "loadBalancer": "Linkerd always balances by EWMA latency; the algorithm and hash-based "
                    "affinity cannot be chosen",
    "jwt": "Linkerd does not validate end-user JWTs (no request authentication)",
    "mtls": "Linkerd has no per-port mTLS mode; use the pods' config.linkerd.io/opaque-ports or "
            "skip-inbound-ports annotations",
    "reachableFrom": "Linkerd mirrors by export label for all linked clusters; restricting "
                     "callers per cluster is not expressible as a Link selector per service",
}


def _grpc_ports(svc: ServiceSpec) -> list[PortSpec]:
    return [p for p in svc.ports if p.protocol == "GRPC"]


def check_policy(spec: Spec, topology: LinkerdTopology) -> list[Problem]:
    out: list[Problem] = []
    for i, s in enumerate(spec.services):
        base = f"meshboot:services[{i}]"
        for key, reason in _UNSUPPORTED.items():
            attr = re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()
            if getattr(s, attr) is not None:
                out.append(Problem(f"{base}.{key}", f"not supported with Linkerd: {reason}"))
        od = s.outlier_detection
        if od is not None:
            for key, value, reason in (
                ("consecutiveGatewayErrors", od.consecutive_gateway_errors,
                 "Linkerd counts every 5xx (and gRPC error) as a failure; use "
                 "consecutive5xxErrors"),
                ("interval", od.interval, "Linkerd judges every response, there is no sweep "
                 "interval"),
                ("maxEjectionPercent", od.max_ejection_percent, "Linkerd may trip every "
                 "endpoint's breaker; there is no ejection cap"),
                ("minHealthPercent", od.min_health_percent, "Linkerd has no panic threshold"),
            ):
                if value is not None:
                    out.append(Problem(f"{base}.outlierDetection.{key}",
                                       f"not supported with Linkerd: {reason}"))
            if od.consecutive_5xx_errors == 0:
                out.append(Problem(f"{base}.outlierDetection.consecutive5xxErrors",
                                   "Linkerd's circuit breaker needs at least one failure"))
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
        out += _check_authorization(spec, topology, s, base)
        if s.release is not None and s.release.ab_test is not None and _grpc_ports(s):
            for k, g in enumerate(s.release.ab_test.groups):
                if g.path_prefix is not None:
                    out.append(Problem(
                        f"{base}.release.abTest.groups[{k}].pathPrefix",
                        "not supported on gRPC ports with Linkerd: their routes are "
                        "GRPCRoutes, which match gRPC methods and headers, not paths; "
                        "match by header"))
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


def _check_authorization(spec: Spec, topology: LinkerdTopology, s: ServiceSpec,
                         base: str) -> list[Problem]:
    authz = s.authorization
    if authz is None:
        return []
    out: list[Problem] = []
    if authz.probe_paths is None and _scoped(authz.rules) and s.http_ports:
        # Routes attached to a Server replace the probe route the policy controller
        # would synthesise (policy-controller/k8s/index/src/inbound/index.rs
        # http_routes); the probe paths live in the pod spec, which meshboot never sees.
        out.append(Problem(
            f"{base}.authorization.probePaths",
            "required with Linkerd when rules with `to` attach routes to an HTTP port: "
            "Linkerd then stops authorizing kubelet probes by itself, so list the paths "
            "the kubelet probes on the service's ports ([] when it probes none of them)"))
    if not spec.linkerd.admit_gateway_identity and topology.gateway_clusters(s) and any(
            ids != ["*"] for ids in _identity_sets(spec, authz.rules)):
        gws = ", ".join(topology.gateway_clusters(s))
        out.append(Problem(
            f"{base}.authorization",
            f"callers reach {s.name!r} in {gws} through the multicluster gateway and arrive "
            "with the gateway's identity, not their own, so these rules would refuse them; "
            "set meshboot:linkerd.admitGatewayIdentity: true to admit the gateway (every "
            "meshed caller in the clusters linked through it), or link the clusters "
            "gateway-less"))
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


def service_annotations(svc: ServiceSpec) -> dict[str, str]:
    """``outlierDetection`` as Linkerd's consecutive-failure circuit breaker.

    Read by the calling proxies from the Service they address:
    ``consecutive5xxErrors`` -> max failures, ``baseEjectionTime`` -> the
    minimum penalty (Linkerd backs off from there, as Istio lengthens
    repeated ejections).
    """
    od = svc.outlier_detection
    if od is None:
        return {}
    out = {"balancer.linkerd.io/failure-accrual": "consecutive"}
    if od.consecutive_5xx_errors is not None:
        out["balancer.linkerd.io/failure-accrual-consecutive-max-failures"] = \
            str(od.consecutive_5xx_errors)
    if od.base_ejection_time is not None:
        out["balancer.linkerd.io/failure-accrual-consecutive-min-penalty"] = \
            single_unit_duration(od.base_ejection_time)
        # The max penalty defaults to 60s and min_penalty <= max_penalty is required;
        # otherwise the policy controller only logs a warning and the Service gets no
        # failure accrual at all (policy-controller/k8s/index/src/outbound/index.rs
        # parse_consecutive_params and the Service indexer; docs
        # 2-edge/reference/circuit-breaking.md). A longer ejection raises the cap to it.
        if duration_seconds(od.base_ejection_time) > DEFAULT_MAX_PENALTY_SECONDS:
            out["balancer.linkerd.io/failure-accrual-consecutive-max-penalty"] = \
                single_unit_duration(od.base_ejection_time)
    return out


def single_unit_duration(value: str) -> str:
    """``1m30s`` -> ``90s``: one number and unit, the form every Linkerd parser reads."""
    ms = round(duration_seconds(value) * 1000)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


# Gateway API Duration (GEP-2257): up to four parts of h, m, s, ms, each at most five
# digits (the HTTPRoute CRD's `^([0-9]{1,5}(h|m|s|ms)){1,4}$`).
_GATEWAY_API_MAX_MS = ((99999 * 60 + 59) * 60 + 59) * 1000 + 999


def gateway_api_duration(value: str) -> str:
    """``value`` as a Gateway API Duration: ``1.5s`` -> ``1s500ms``, ``90s`` -> ``1m30s``.

    The spec takes Go durations, which the HTTPRoute CRD refuses unless they are
    in this form. Whole milliseconds (its finest unit), at least 1ms: ``0s``
    would turn the timeout off (GEP-1742); at most 99999h59m59s999ms."""
    ms = min(max(1, round(duration_seconds(value) * 1000)), _GATEWAY_API_MAX_MS)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    seconds, ms = divmod(ms, 1000)
    return "".join(f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (seconds, "s"), (ms, "ms"))
                   if n)


def _version_service(spec: Spec, svc: ServiceSpec, version: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": f"{svc.name}-{version}", "namespace": svc.namespace,
                            "labels": dict(sorted({**MANAGED, "app": svc.name}.items()))}
    if svc.outlier_detection is not None:
        meta["annotations"] = service_annotations(svc)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {"type": "ClusterIP",
                 "selector": {"app": svc.name, spec.traffic.version_label: version},
                 "ports": [{"name": p.name, "port": p.port, "protocol": "TCP",
                            "targetPort": p.target_port or p.port} for p in svc.ports]},
    }


def _match(m: Match) -> dict[str, Any]:
    match: dict[str, Any] = {}
    if m.header is not None:
        match["headers"] = [_header(m.header)]
    if m.path_prefix is not None:
        match["path"] = {"type": "PathPrefix", "value": m.path_prefix}
    return match


def _backend_service(svc: ServiceSpec, d: Destination, caller: str) -> str:
    """The Service a destination is: ``<svc>-<version>``, the local Service or a mirror."""
    assert d.version is None or d.cluster is None
    if d.version is not None:
        return f"{svc.name}-{d.version}"
    if d.cluster is not None and d.cluster != caller:
        return f"{svc.name}-{d.cluster}"
    return svc.name


def _rules(svc: ServiceSpec, routes: tuple[Route, ...], cluster: str, port: int) -> list[dict[str, Any]]:
    """Routing rules (matches + weighted backends) for one caller cluster."""
    rules: list[dict[str, Any]] = []
    for r in routes:
        rule: dict[str, Any] = {}
        if r.match is not None:
            rule["matches"] = [_match(r.match)]
        rule["backendRefs"] = [_backend(_backend_service(svc, d, cluster), port, d.weight)
                               for d in r.destinations]
        if svc.timeout:
            rule["timeouts"] = {"request": gateway_api_duration(svc.timeout)}
        rules.append(rule)
    return rules


def _retry_annotations(r: RetrySpec, grpc: bool) -> dict[str, str]:
    """``retry.linkerd.io/*`` for an HTTPRoute (``http``) or a GRPCRoute (``grpc``).

    policy-controller/k8s/index/src/outbound/index/http.rs parse_http_retry reads
    limit, timeout and http; outbound/index/grpc.rs parse_grpc_retry reads limit,
    timeout and grpc. Durations are one number and unit (index.rs parse_duration
    rejects ``1m30s`` and fractions).
    """
    annotations = {"retry.linkerd.io/limit": str(r.attempts)}
    if grpc:
        conditions = sorted(c for c in r.retry_on if c in _GRPC_RETRY)
        if conditions:
            annotations["retry.linkerd.io/grpc"] = ",".join(conditions)
    else:
        conditions = sorted(c for c in r.retry_on if c in _HTTP_RETRY or c.isdigit())
        if conditions:
            annotations["retry.linkerd.io/http"] = ",".join(conditions)
    if r.per_try_timeout:
        annotations["retry.linkerd.io/timeout"] = single_unit_duration(r.per_try_timeout)
    return annotations


def _grpc_route(svc: ServiceSpec, name: str, parent: dict[str, Any],
                rules: list[dict[str, Any]]) -> dict[str, Any]:
    """The routing of a gRPC port as a GRPCRoute (gateway.networking.k8s.io/v1).

    On an ``appProtocol: kubernetes.io/h2c`` port the outbound policy uses the
    GRPCRoutes when there are any, the HTTPRoutes only otherwise
    (policy-controller/grpc/src/outbound.rs), so a gRPC port gets only GRPCRoutes.
    gRPC calls are all POSTs: retries apply to every call, without a method filter.
    A GRPCRoute has no ``timeouts`` field; Linkerd reads the request timeout from
    ``timeout.linkerd.io/request`` (outbound/index/grpc.rs parse_timeouts). Rules keep
    their header matches.
    """
    grpc_rules = []
    for rule in rules:
        g: dict[str, Any] = {"backendRefs": rule["backendRefs"]}
        matches = [{"headers": m["headers"]} for m in rule.get("matches", []) if "headers" in m]
        if matches:
            g["matches"] = matches
        grpc_rules.append(g)
    annotations: dict[str, str] = {}
    if svc.retries is not None:
        annotations.update(_retry_annotations(svc.retries, grpc=True))
    if svc.timeout:
        annotations["timeout.linkerd.io/request"] = single_unit_duration(svc.timeout)
    meta: dict[str, Any] = {"name": name, "namespace": svc.namespace, "labels": dict(MANAGED)}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": ROUTE_API, "kind": "GRPCRoute", "metadata": meta,
            "spec": {"parentRefs": [parent], "rules": grpc_rules}}


def _routes(svc: ServiceSpec, table: ServiceRoutes, cluster: str) -> list[dict[str, Any]]:
    if svc.routing is None and svc.release is None and svc.timeout is None \
            and svc.retries is None:
        return []
    out = []
    for p in svc.http_ports:
        # A routing key without a share fails the spec checks (Linkerd has no locality):
        # a spec planned only for more problems (stacks.build.with_plan_problems) stops here.
        assert table.released or table.per_caller or svc.routing is None
        parent = {"group": "", "kind": "Service", "name": svc.name, "port": p.port}
        rules = _rules(svc, table.for_caller(cluster), cluster, p.port)
        name = f"{svc.name}-{p.name}"
        if p.protocol == "GRPC":
            out.append(_grpc_route(svc, name, parent, rules))
            continue
        out.append({"apiVersion": ROUTE_API, "kind": "HTTPRoute",
                    "metadata": {"name": name, "namespace": svc.namespace,
                                 "labels": dict(MANAGED)},
                    "spec": {"parentRefs": [parent], "rules": rules}})
        r = svc.retries
        if r is not None:
            # The same routing, only for the retried methods (more specific match wins).
            retried = []
            for rule in rules:
                base_matches = rule.get("matches") or [{}]
                matches = [{**m, "method": method} for m in base_matches
                           for method in r.effective_methods]
                retried.append({**rule, "matches": matches})
            out.append({"apiVersion": ROUTE_API, "kind": "HTTPRoute",
                        "metadata": {"name": f"{name}-retry", "namespace": svc.namespace,
                                     "labels": dict(MANAGED),
                                     "annotations": _retry_annotations(r, grpc=False)},
                        "spec": {"parentRefs": [parent], "rules": retried}})
    return out


def _identities(spec: Spec, rules: list[AuthzRule], gateway: bool = False) -> list[str]:
    """MeshTLS identities of ``rules``' callers; ``gateway``: plus the gateway's."""
    td = spec.mesh.trust_domain
    out: set[str] = set()
    for rule in rules:
        src = rule.from_
        if src is None or not (src.service_accounts or src.namespaces):
            return ["*"]  # any meshed (mTLS-authenticated) caller, the gateway included
        for sa in src.service_accounts or []:
            ns, name = sa.split("/", 1)
            out.add(f"{name}.{ns}.serviceaccount.identity.linkerd.{td}")
        for ns in src.namespaces or []:
            out.add(f"*.{ns}.serviceaccount.identity.linkerd.{td}")
    if gateway:
        out.add(gateway_identity(spec))
    return sorted(out)


def _scoped(rules: list[AuthzRule]) -> list[int]:
    """Indexes of the rules limited to operations (methods, paths): they become routes."""
    return [k for k, r in enumerate(rules) if r.to is not None and (r.to.methods or r.to.paths)]


def _any_operation(rules: list[AuthzRule]) -> list[AuthzRule]:
    return [r for r in rules if r.to is None or not (r.to.methods or r.to.paths)]


def _identity_sets(spec: Spec, rules: list[AuthzRule]) -> list[list[str]]:
    """Every caller set the authorization objects of ``rules`` admit (one per object)."""
    scoped, anyop = _scoped(rules), _any_operation(rules)
    if not scoped:
        return [_identities(spec, rules)]
    sets = [_identities(spec, [r for r in rules if covers(r, rules[k])]) for k in scoped]
    if anyop:
        sets.append(_identities(spec, anyop))
    return sets


def path_match(path: str) -> dict[str, str]:
    """An authorization path (exact, ``prefix*``, ``*suffix`` or ``*``) as an HTTPRoute path match."""
    if path == "*":
        return {"type": "PathPrefix", "value": "/"}
    if path.endswith("*"):
        return {"type": "RegularExpression", "value": re.escape(path[:-1]) + ".*"}
    if path.startswith("*"):
        return {"type": "RegularExpression", "value": ".*" + re.escape(path[1:])}
    return {"type": "Exact", "value": path}


def _path_covers(outer: str, inner: str) -> bool:
    if outer in ("*", inner):
        return True
    if outer.endswith("*"):
        return inner.startswith(outer[:-1])
    if outer.startswith("*"):
        return not inner.startswith("*") and inner.endswith(outer[1:])
    return False


def covers(outer: AuthzRule, inner: AuthzRule) -> bool:
    """Every request ``inner.to`` admits is also admitted by ``outer.to``."""
    o, i = outer.to, inner.to
    if o is None or not (o.methods or o.paths):
        return True
    if i is None:
        return False
    if o.methods and not (i.methods and set(i.methods) <= set(o.methods)):
        return False
    if o.paths and not (i.paths and all(any(_path_covers(op, ip) for op in o.paths)
                                        for ip in i.paths)):
        return False
    return True


def _route_matches(rule: AuthzRule) -> list[dict[str, Any]]:
    op = rule.to
    assert op is not None
    paths = [path_match(p) for p in op.paths] if op.paths else [None]
    methods = list(op.methods) if op.methods else [None]
    matches = []
    for path in paths:
        for method in methods:
            m: dict[str, Any] = {}
            if path is not None:
                m["path"] = path
            if method is not None:
                m["method"] = method
            matches.append(m)
    return matches


# NetworkAuthentication of kubelet probes, as in docs 2-edge/tasks/
# configuring-per-route-policy.md (and the policy controller's default probe
# networks, policy-controller/k8s/index/src/inbound/index.rs).
PROBE_NETWORKS = [{"cidr": "0.0.0.0/0"}, {"cidr": "::/0"}]


def _authorization(spec: Spec, topology: LinkerdTopology, svc: ServiceSpec,
                   cluster: str) -> list[dict[str, Any]]:
    authz = svc.authorization
    if authz is None:
        return []
    meta = {"namespace": svc.namespace, "labels": dict(MANAGED)}
    rules = list(authz.rules)
    scoped = _scoped(rules)
    anyop = _any_operation(rules)
    # Callers through the gateway arrive as the gateway (see LinkerdTopology.gateway_clusters).
    gateway = spec.linkerd.admit_gateway_identity and topology.calls_through_gateway(svc, cluster)
    objs: list[dict[str, Any]] = []

    def mtls_auth(name: str, identities: list[str]) -> dict[str, Any]:
        return {"apiVersion": f"{POLICY_API}/v1alpha1", "kind": "MeshTLSAuthentication",
                "metadata": {"name": name, **meta}, "spec": {"identities": identities}}

    def policy(name: str, target_kind: str, target: str, auth: str,
               auth_kind: str = "MeshTLSAuthentication") -> dict[str, Any]:
        return {"apiVersion": f"{POLICY_API}/v1alpha1", "kind": "AuthorizationPolicy",
                "metadata": {"name": name, **meta},
                "spec": {"targetRef": {"group": POLICY_API, "kind": target_kind, "name": target},
                         "requiredAuthenticationRefs": [{
                             "group": POLICY_API, "kind": auth_kind, "name": auth}]}}

    def route(name: str, parent: list[dict[str, Any]], matches: list[dict[str, Any]]
              ) -> dict[str, Any]:
        return {"apiVersion": f"{POLICY_API}/v1beta3", "kind": "HTTPRoute",
                "metadata": {"name": name, **meta},
                "spec": {"parentRefs": parent, "rules": [{"matches": matches}]}}

    if not scoped:
        objs.append(mtls_auth(f"{svc.name}-callers", _identities(spec, rules, gateway)))
    else:
        for k in scoped:
            covering = [r for r in rules if covers(r, rules[k])]
            objs.append(mtls_auth(f"{svc.name}-authz-{k}",
                                  _identities(spec, covering, gateway)))
        if anyop:
            objs.append(mtls_auth(f"{svc.name}-authz-any", _identities(spec, anyop, gateway)))
    http_ports = {p.name for p in svc.http_ports}
    probe_paths = authz.probe_paths or []
    if scoped and http_ports and probe_paths:
        objs.append({"apiVersion": f"{POLICY_API}/v1alpha1", "kind": "NetworkAuthentication",
                     "metadata": {"name": f"{svc.name}-probe", **meta},
                     "spec": {"networks": list(PROBE_NETWORKS)}})
    for p in svc.ports:
        server = f"{svc.name}-{p.name}"
        objs.append({
            "apiVersion": f"{POLICY_API}/v1beta3", "kind": "Server",
            "metadata": {"name": server, **meta},
            "spec": {"podSelector": {"matchLabels": {"app": svc.name}},
                     "port": p.target_port or p.port, "accessPolicy": "deny"},
        })
        if not scoped:
            objs.append(policy(server, "Server", server, f"{svc.name}-callers"))
            continue
        if p.name not in http_ports:
            # No routes on a non-HTTP port: only rules for any operation apply.
            if anyop:
                objs.append(policy(server, "Server", server, f"{svc.name}-authz-any"))
            continue
        parent = [{"group": POLICY_API, "kind": "Server", "name": server}]
        for k in scoped:
            name = f"{server}-authz-{k}"
            objs.append(route(name, parent, _route_matches(rules[k])))
            objs.append(policy(name, "HTTPRoute", name, f"{svc.name}-authz-{k}"))
        if anyop:
            name = f"{server}-authz-any"
            objs.append(route(name, parent, [{"path": {"type": "PathPrefix", "value": "/"}}]))
            objs.append(policy(name, "HTTPRoute", name, f"{svc.name}-authz-any"))
        if probe_paths:
            # With routes attached the policy controller no longer synthesises the
            # probe route (policy-controller/k8s/index/src/inbound/index.rs
            # http_routes); docs 2-edge/tasks/configuring-per-route-policy.md: "we must
            # also create a HTTPRoute and AuthorizationPolicy so that probes from the
            # Kubelet are still authorized". Exact GET matches, as the synthesised one.
            name = f"{server}-probe"
            objs.append(route(name, parent, [
                {"path": {"type": "Exact", "value": path}, "method": "GET"}
                for path in probe_paths]))
            objs.append(policy(name, "HTTPRoute", name, f"{svc.name}-probe",
                               "NetworkAuthentication"))
    return objs


def _release_and_routes(spec: Spec, svc: ServiceSpec, i: int, c: str,
                        versions: dict[int, list[dict[str, Any]]], tables: dict[int, ServiceRoutes],
                        routes: dict[int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per-version Services and routes of ``svc`` in cluster ``c``, each built once."""
    objs: list[dict[str, Any]] = []
    if svc.release is not None:
        if i not in versions:
            versions[i] = [_version_service(spec, svc, v) for v in svc.versions or []]
        objs += versions[i]
    if i not in tables:
        tables[i] = ServiceRoutes(spec, svc)
    if tables[i].per_caller:
        objs += _routes(svc, tables[i], c)
    else:
        if i not in routes:
            routes[i] = _routes(svc, tables[i], c)
        objs += routes[i]
    return objs


def linkerd_policy_objects(spec: Spec, topology: LinkerdTopology
                           ) -> tuple[dict[str, list[dict[str, Any]]], list[Problem]]:
    """cluster -> policy objects, and every unsupported policy as a Problem."""
    problems = check_policy(spec, topology)
    if problems:
        return {}, problems
    out: dict[str, list[dict[str, Any]]] = {}
    tables: dict[int, ServiceRoutes] = {}
    # A service's objects are the same in every cluster that runs it, except routes
    # whose split differs per caller (cluster shares) and authorization that admits
    # the gateway where callers arrive through it: build each variant once and
    # share it (plans never mutate objects), as the Istio policy builder does.
    versions: dict[int, list[dict[str, Any]]] = {}
    routes: dict[int, list[dict[str, Any]]] = {}
    authz: dict[tuple[int, bool], list[dict[str, Any]]] = {}
    for c in spec.cluster_names:
        objs: list[dict[str, Any]] = []
        for i, svc in enumerate(spec.services):
            if c not in svc.clusters or not svc.http_ports and svc.authorization is None:
                continue
            if not spec.flagger_canary(svc):
                # (Flagger owns the route and the primary/canary Services of the services
                # it releases: stacks.delivery.flagger.)
                objs += _release_and_routes(spec, svc, i, c, versions, tables, routes)
            key = (i, topology.calls_through_gateway(svc, c))
            if key not in authz:
                authz[key] = _authorization(spec, topology, svc, c)
            objs += authz[key]
        if objs:
            out[c] = objs
    return out, []
