"""Istio traffic and security policy objects per cluster.

Where objects go:

- Istio custom resources are read by istiod from its *config store*: a
  primary reads its own API server and serves its remote clusters from it.
  So every Istio CR lands in a primary; routing that must differ for a
  remote's callers uses ``sourceLabels: {topology.istio.io/cluster: <remote>}``.
- Plain Kubernetes objects (the stub Service that makes a name resolve) go
  into the cluster that needs them, remote or not.

Per service (``meshboot:services[*]``), in each primary whose clusters call it:
``DestinationRule <svc>`` (subsets, traffic policy, locality LB) and
``VirtualService <svc>`` (cluster shares, releases, fault, timeout, retries; the
routes are the neutral ones of ``stacks.traffic.routes``);
in each primary whose clusters run it: ``PeerAuthentication <svc>-mtls``,
``AuthorizationPolicy <svc>-authz``, ``RequestAuthentication <svc>-jwt``.
Mesh wide, in every primary: ``PeerAuthentication istio-system/default``,
``AuthorizationPolicy <ns>/default-deny``, ``Sidecar <ns>/default``.
Reachability where the service does not run: see ``docs/traffic.md``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from clusters.errors import Problem, SpecError
from clusters.policy import IDEMPOTENT_METHODS, HeaderMatch, OutlierDetectionSpec, ServicePolicyFields
from clusters.spec import ServiceSpec, Spec
from stacks.common import is_multi_network, locality, remotes_of, service_namespaces, service_ports
from stacks.istio.topology import ISTIO_NS, IstioTopology, config_cluster, gateway_address
from stacks.labels import MANAGED
from stacks.traffic.placement import callers, cluster_split, running, splits_by_cluster
from stacks.traffic.routes import Destination, Match, Route, ServiceRoutes, same_targets

NET_V1 = "networking.istio.io/v1"
SEC_V1 = "security.istio.io/v1"
CLUSTER_LABEL = "topology.istio.io/cluster"
WORKLOAD_LABEL = "app"
EASTWEST_TLS_PORT = 15443
_APP_PROTOCOL = {"HTTP": "http", "HTTP2": "http2", "GRPC": "grpc", "TLS": "tls", "HTTPS": "https",
                 "TCP": "tcp"}


def istio_policy_objects(spec: Spec, source: str = "spec", topology: IstioTopology | None = None
                         ) -> dict[str, list[dict[str, Any]]]:
    """cluster name -> Istio objects implementing the spec's traffic/security policy.

    A service's objects are built once and shared by every cluster that gets
    them (plans never mutate objects); only a VirtualService whose routes differ
    per caller (cluster shares) is built per primary.
    """
    topology = topology or IstioTopology.of(spec)
    problems = check_istio_policy(spec, topology)
    if problems:
        raise SpecError(source, problems)
    out: dict[str, list[dict[str, Any]]] = {c: [] for c in spec.cluster_names}
    primaries = [c.name for c in spec.clusters if not c.is_remote]
    served = {p: [p] + [r.name for r in remotes_of(spec, p)] for p in primaries}
    store_of = {c.name: (c.primary if c.is_remote and c.primary else c.name) for c in spec.clusters}

    for p in primaries:
        out[p].append(mesh_peer_authentication(spec))
        if spec.security.default_deny:
            out[p] += [default_deny(ns) for ns in service_namespaces(spec)]
        for ns, hosts in sorted((spec.traffic.sidecar_egress or {}).items()):
            out[p].append(sidecar(ns, hosts))

    for s in spec.services:
        caller_list = callers(spec, s)
        caller_set = set(caller_list)
        runs = set(s.clusters)
        built = _ServiceObjects(spec, s, topology)
        flagger = spec.flagger_canary(s)
        # Where no Flagger runs (a primary that does not run the service) the callers
        # still get the spec's client-side policy: meshboot's route and DestinationRule
        # on <svc> without the release, whose weights are Flagger's business.
        unreleased = built if not flagger else _ServiceObjects(
            spec, s.model_copy(update={"release": None, "versions": None}), topology)
        for c in caller_list:
            if c in runs:
                continue
            runs_in_store = any(x in runs for x in served[store_of[c]])
            if spec.traffic.cross_cluster == "discovery" or runs_in_store:
                out[c].append(built.stub)
        for p in primaries:
            callers_p = [c for c in served[p] if c in caller_set]
            runs_p = [c for c in served[p] if c in runs]
            if callers_p:
                if spec.traffic.cross_cluster == "serviceEntry" and not runs_p:
                    out[p].append(built.service_entry)
                if not flagger or not runs_p:
                    # Flagger owns VirtualService <svc> and DestinationRules <svc>-primary/
                    # -canary (stacks.delivery.flagger) where it runs: there meshboot
                    # renders neither route nor a DestinationRule on <svc> (Flagger's
                    # routes name the other hosts).
                    dr = unreleased.destination_rule
                    if dr is not None:
                        out[p].append(dr)
                    vs = unreleased.virtual_service(p, callers_p)
                    if vs is not None:
                        out[p].append(vs)
            if runs_p:
                out[p] += built.workload_security
    return dict(out)


class _ServiceObjects:
    """One service's Istio objects, each built on first use and then shared."""

    def __init__(self, spec: Spec, s: ServiceSpec, topology: IstioTopology) -> None:
        self.spec, self.s, self.topology = spec, s, topology
        self.routes = ServiceRoutes(spec, s)
        self._vs: tuple[dict[str, Any] | None] | None = None

    @cached_property
    def stub(self) -> dict[str, Any]:
        return stub_service(self.s)

    @cached_property
    def service_entry(self) -> dict[str, Any]:
        return service_entry(self.spec, self.s, self.topology)

    @cached_property
    def destination_rule(self) -> dict[str, Any] | None:
        return destination_rule(self.spec, self.s)

    @cached_property
    def workload_security(self) -> list[dict[str, Any]]:
        return workload_security(self.spec, self.s)

    def virtual_service(self, primary: str, callers_p: list[str]) -> dict[str, Any] | None:
        """Per primary if routes differ per caller, else one for every primary."""
        if self.routes.per_caller:
            return virtual_service(self.spec, self.s, primary, callers_p, self.routes)
        if self._vs is None:
            self._vs = (virtual_service(self.spec, self.s, primary, callers_p, self.routes),)
        return self._vs[0]


def check_istio_policy(spec: Spec, topology: IstioTopology | None = None) -> list[Problem]:
    """Istio-specific problems (the generic ones are in ``clusters.validate_policy``)."""
    problems: list[Problem] = []
    if spec.traffic.cross_cluster == "serviceEntry":
        if not is_multi_network(spec):
            problems.append(Problem("meshboot:traffic.crossCluster",
                                    "serviceEntry needs a multi-network mesh: endpoints are other "
                                    "networks' east-west gateways (use discovery)"))
        else:
            topology = topology or IstioTopology.of(spec)
            run_somewhere = {name for s in spec.services for name in s.clusters}
            for i, c in enumerate(spec.clusters):
                if topology.network_gateway(c) is None and c.name in run_somewhere:
                    problems.append(Problem(f"meshboot:clusters[{i}].eastWestGateway.enabled",
                                            f"cluster {c.name!r} runs services that other clusters "
                                            "reach through an east-west gateway of its network "
                                            "and config store, and there is none"))
            problems += _check_config_stores(spec)
    for i, s in enumerate(spec.services):
        if splits_by_cluster(s):
            for j, v in enumerate(s.versions or []):
                if v in s.clusters:
                    problems.append(Problem(f"meshboot:services[{i}].versions[{j}]",
                                            f"version {v!r} has the name of a cluster subset"))
    return problems


def _check_config_stores(spec: Spec) -> list[Problem]:
    """serviceEntry mode: a store that runs a service knows only its own endpoints.

    Primaries do not read each other (``stacks.istio.topology.config_only``), and a
    ServiceEntry cannot add the other stores' endpoints under the host of a Service
    the store has (push_context.go: the Kubernetes Service wins). So per-cluster
    shares must stay inside the caller's store where the store runs the service.
    """
    problems: list[Problem] = []
    store = {c.name: config_cluster(spec, c) for c in spec.clusters}
    for i, s in enumerate(spec.services):
        if not splits_by_cluster(s):
            continue
        on = running(spec, s)
        for caller in callers(spec, s):
            home = store[caller]
            if not any(store[r] == home for r in s.clusters):
                continue  # reached through a ServiceEntry: every running cluster is fine
            away = sorted(c for c in cluster_split(spec, s, caller, on) if store[c] != home)
            if away:
                problems.append(Problem(
                    f"meshboot:services[{i}].routing",
                    f"with traffic.crossCluster serviceEntry, callers in {caller!r} are served "
                    f"by config store {home!r}, which runs {s.name!r} and so cannot route to "
                    f"{', '.join(away)} (another config store); keep the shares inside the "
                    "store, or use crossCluster: discovery"))
                break
    return problems


# --- reachability ------------------------------------------------------------------------

def stub_service(s: ServiceSpec) -> dict[str, Any]:
    """A selector-less Service: the name resolves locally, istiod supplies the endpoints
    it discovers in the clusters that run the service (remote secrets)."""
    ports = service_ports(s, _APP_PROTOCOL)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": s.name, "namespace": s.namespace,
                     "labels": {**MANAGED, "meshboot.io/role": "cross-cluster-stub"}},
        "spec": {"ports": ports},
    }


def _se_protocol(name: str, protocol: str | None) -> str:
    if protocol is not None:
        return protocol
    prefix = name.split("-")[0].upper()
    return prefix if prefix in _APP_PROTOCOL else "HTTP"


def service_entry(spec: Spec, s: ServiceSpec, topology: IstioTopology | None = None) -> dict[str, Any]:
    """MESH_INTERNAL ServiceEntry: the service's endpoints are the east-west gateways
    (port 15443, mTLS passthrough) of the clusters that run it."""
    topology = topology or IstioTopology.of(spec)
    endpoints = []
    addresses = []
    for name in spec.cluster_names:
        if name not in s.clusters:
            continue
        c = spec.cluster(name)
        # The gateway of the cluster's network (its own, or another on that network in its
        # config store): AUTO_PASSTHROUGH routes with that store's endpoints.
        gateway = topology.network_gateway(c)
        assert gateway is not None  # check_istio_policy
        ref = gateway_address(spec, gateway)
        addresses.append(ref.fixed)
        ep: dict[str, Any] = {
            "address": ref,
            "ports": {p.name: EASTWEST_TLS_PORT for p in s.ports},
            "network": c.network,
            "labels": {CLUSTER_LABEL: name, "security.istio.io/tlsMode": "istio"},
        }
        loc = locality(c)
        if loc:
            ep["locality"] = loc
        endpoints.append(ep)
    return {
        "apiVersion": NET_V1,
        "kind": "ServiceEntry",
        "metadata": {"name": f"{s.name}-crosscluster", "namespace": s.namespace, "labels": dict(MANAGED)},
        "spec": {
            "hosts": [s.host],
            "location": "MESH_INTERNAL",
            "ports": [{"number": p.port, "name": p.name, "protocol": _se_protocol(p.name, p.protocol)}
                      for p in s.ports],
            "resolution": "STATIC" if all(_is_ip(a) for a in addresses) else "DNS",
            "endpoints": endpoints,
        },
    }


def _is_ip(value: str | None) -> bool:
    if not value:
        return False
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


# --- DestinationRule ---------------------------------------------------------------------

def _fails_over(s: ServicePolicyFields) -> bool:
    loc = s.routing.locality if s.routing else None
    return loc is not None and (loc.failover is not None or loc.failover_priority is not None)


def outlier_detection(od: OutlierDetectionSpec) -> dict[str, Any]:
    return od.model_dump(by_alias=True, exclude_none=True)


def traffic_policy(spec: Spec, s: ServiceSpec) -> dict[str, Any]:
    tp: dict[str, Any] = {}
    if s.connection_pool is not None:
        pool = s.connection_pool.model_dump(by_alias=True, exclude_none=True)
        pool = {k: v for k, v in pool.items() if v}
        if pool:
            tp["connectionPool"] = pool
    lb: dict[str, Any] = {}
    if s.load_balancer is not None:
        if s.load_balancer.algorithm == "CONSISTENT_HASH":
            lb["consistentHash"] = {"httpHeaderName": s.load_balancer.hash_header}
        else:
            lb["simple"] = s.load_balancer.algorithm
    loc = s.routing.locality if s.routing else None
    if loc is not None:
        setting: dict[str, Any] = {}
        if loc.failover is not None:
            setting["failover"] = [{"from": r.from_, "to": r.to} for r in loc.failover]
        elif loc.failover_priority is not None:
            setting["failoverPriority"] = list(loc.failover_priority)
        elif loc.distribute is not None:
            setting["distribute"] = [{"from": r.from_, "to": dict(r.to)} for r in loc.distribute]
        lb["localityLbSetting"] = setting
    if lb:
        tp["loadBalancer"] = lb
    od = s.outlier_detection
    if od is None and _fails_over(s):
        od = spec.traffic.default_outlier_detection  # failover is inert without it
    if od is not None:
        tp["outlierDetection"] = outlier_detection(od)
    return tp


def subsets(spec: Spec, s: ServiceSpec) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if splits_by_cluster(s):
        out += [{"name": c, "labels": {CLUSTER_LABEL: c}} for c in spec.cluster_names if c in s.clusters]
    out += [{"name": v, "labels": {spec.traffic.version_label: v}} for v in s.versions or []]
    return out


def destination_rule(spec: Spec, s: ServiceSpec) -> dict[str, Any] | None:
    body: dict[str, Any] = {"host": s.host}
    tp = traffic_policy(spec, s)
    if tp:
        body["trafficPolicy"] = tp
    subs = subsets(spec, s)
    if subs:
        body["subsets"] = subs
    if len(body) == 1:
        return None
    return {"apiVersion": NET_V1, "kind": "DestinationRule",
            "metadata": {"name": s.name, "namespace": s.namespace, "labels": dict(MANAGED)},
            "spec": body}


# --- VirtualService ----------------------------------------------------------------------

@dataclass(frozen=True)
class _Route:
    name: str
    matches: tuple[dict[str, Any], ...] | None      # OR of conditions; None: every call
    dests: tuple[tuple[str | None, int], ...]        # (subset, weight)


def header_condition(h: HeaderMatch) -> dict[str, Any]:
    kind = "exact" if h.exact is not None else "prefix" if h.prefix is not None else "regex"
    return {"headers": {h.name: {kind: getattr(h, kind)}}}


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        if k in ("headers", "sourceLabels") and k in out:
            out[k] = {**out[k], **v}
        else:
            out[k] = v
    return out


def _and(matches: tuple[dict[str, Any], ...] | None, cond: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    if matches is None:
        return (cond,)
    return tuple(_merge(m, cond) for m in matches)


def _conditions(match: Match | None) -> tuple[dict[str, Any], ...] | None:
    """A neutral match as the HTTPMatchRequests of a route (None: every call)."""
    if match is None:
        return None
    cond: dict[str, Any] = header_condition(match.header) if match.header is not None else {}
    if match.path_prefix is not None:
        cond["uri"] = {"prefix": match.path_prefix}
    return (cond,)


def _subset(d: Destination) -> str | None:
    # Subsets are named after the version or the cluster (see ``subsets``).
    assert d.version is None or d.cluster is None
    return d.version if d.version is not None else d.cluster


def _istio_route(r: Route, also: dict[str, Any] | None = None) -> _Route:
    matches = _conditions(r.match)
    if also is not None:
        matches = _and(matches, also)
    return _Route(r.name, matches, tuple((_subset(d), d.weight) for d in r.destinations))


def _logical_routes(routes: ServiceRoutes, primary: str, callers_p: list[str]) -> list[_Route]:
    """The neutral routes for the callers a primary serves.

    The primary's own callers' routes are the default. A remote whose routes
    differ (cluster shares keep calls in the caller's cluster) gets its own,
    first, matched by ``sourceLabels`` on its cluster.
    """
    default = routes.for_caller(primary)
    out: list[_Route] = []
    if routes.per_caller:
        for caller in callers_p:
            if caller == primary:
                continue
            own = routes.for_caller(caller)
            if not same_targets(own, default):
                out += [_istio_route(r, {"sourceLabels": {CLUSTER_LABEL: caller}}) for r in own]
    return out + [_istio_route(r) for r in default]


def http_routes(spec: Spec, s: ServiceSpec, primary: str, callers_p: list[str],
                routes: ServiceRoutes | None = None) -> list[dict[str, Any]]:
    """The VirtualService's http routes, first match wins.

    Each logical route is preceded by its fault variant (calls with the fault
    header) and, with retries limited to some methods, each by a variant
    matching those methods that carries the retries.
    """
    out: list[dict[str, Any]] = []
    retries = s.retries
    method_cond: dict[str, Any] | None = None
    if retries is not None and not (retries.methods is None and retries.allow_non_idempotent):
        methods = retries.effective_methods
        method_cond = {"method": {"exact": methods[0]} if len(methods) == 1
                       else {"regex": "|".join(methods)}}
    if routes is None:
        routes = ServiceRoutes(spec, s)
    # Built once per VirtualService, shared by its routes (plans never mutate objects).
    retry_policy = _retry_policy(s)
    fault_policy = _fault_policy(s)
    for r in _logical_routes(routes, primary, callers_p):
        dests = _destinations(s, r)
        variants: list[tuple[str, tuple[dict[str, Any], ...] | None, bool]] = []
        if s.fault is not None:
            variants.append((f"{r.name}-fault", _and(r.matches, header_condition(s.fault.header)), True))
        variants.append((r.name, r.matches, False))
        for name, matches, fault in variants:
            faults = fault_policy if fault else None
            if retries is not None and method_cond is not None:
                out.append(_http_route(s, f"{name}-retry", _and(matches, method_cond), dests, faults,
                                       retry_policy))
                out.append(_http_route(s, name, matches, dests, faults, None))
            else:
                out.append(_http_route(s, name, matches, dests, faults, retry_policy))
    return out


def _destinations(s: ServiceSpec, r: _Route) -> list[dict[str, Any]]:
    dests = []
    for subset, weight in r.dests:
        dest: dict[str, Any] = {"host": s.host}
        if subset is not None:
            dest["subset"] = subset
        entry: dict[str, Any] = {"destination": dest}
        if len(r.dests) > 1:
            entry["weight"] = weight
        dests.append(entry)
    return dests


def _retry_policy(s: ServiceSpec) -> dict[str, Any] | None:
    if s.retries is None:
        return None
    rt: dict[str, Any] = {"attempts": s.retries.attempts, "retryOn": ",".join(s.retries.retry_on)}
    if s.retries.per_try_timeout is not None:
        rt["perTryTimeout"] = s.retries.per_try_timeout
    return rt


def _fault_policy(s: ServiceSpec) -> dict[str, Any] | None:
    if s.fault is None:
        return None
    f: dict[str, Any] = {}
    if s.fault.delay is not None:
        f["delay"] = {"fixedDelay": s.fault.delay.fixed_delay,
                      "percentage": {"value": s.fault.delay.percent}}
    if s.fault.abort is not None:
        f["abort"] = {"httpStatus": s.fault.abort.http_status,
                      "percentage": {"value": s.fault.abort.percent}}
    return f


def _http_route(s: ServiceSpec, name: str, matches: tuple[dict[str, Any], ...] | None,
                dests: list[dict[str, Any]], fault: dict[str, Any] | None,
                retries: dict[str, Any] | None) -> dict[str, Any]:
    route: dict[str, Any] = {"name": name}
    if matches is not None:
        route["match"] = list(matches)
    route["route"] = dests
    if s.timeout is not None:
        route["timeout"] = s.timeout
    if retries is not None:
        route["retries"] = retries
    if fault is not None:
        route["fault"] = fault
    return route


def virtual_service(spec: Spec, s: ServiceSpec, primary: str, callers_p: list[str],
                    routes: ServiceRoutes | None = None) -> dict[str, Any] | None:
    if s.release is None and not splits_by_cluster(s) and \
            all(x is None for x in (s.fault, s.timeout, s.retries)):
        return None
    return {"apiVersion": NET_V1, "kind": "VirtualService",
            "metadata": {"name": s.name, "namespace": s.namespace, "labels": dict(MANAGED)},
            "spec": {"hosts": [s.host], "http": http_routes(spec, s, primary, callers_p, routes)}}


# --- security ----------------------------------------------------------------------------

def mesh_peer_authentication(spec: Spec) -> dict[str, Any]:
    return {"apiVersion": SEC_V1, "kind": "PeerAuthentication",
            "metadata": {"name": "default", "namespace": ISTIO_NS, "labels": dict(MANAGED)},
            "spec": {"mtls": {"mode": spec.security.mtls.mode}}}


def default_deny(namespace: str) -> dict[str, Any]:
    """An ALLOW policy with no rules: allows nothing in the namespace, except what other
    ALLOW policies allow."""
    return {"apiVersion": SEC_V1, "kind": "AuthorizationPolicy",
            "metadata": {"name": "default-deny", "namespace": namespace, "labels": dict(MANAGED)},
            "spec": {}}


def sidecar(namespace: str, hosts: list[str]) -> dict[str, Any]:
    return {"apiVersion": NET_V1, "kind": "Sidecar",
            "metadata": {"name": "default", "namespace": namespace, "labels": dict(MANAGED)},
            "spec": {"egress": [{"hosts": list(hosts)}]}}


def _selector(s: ServiceSpec) -> dict[str, Any]:
    return {"matchLabels": {WORKLOAD_LABEL: s.name}}


def authorization_rules(spec: Spec, s: ServiceSpec) -> list[dict[str, Any]]:
    """ALLOW rules: each spec rule, with the JWT requirement (valid token from the issuer,
    required claims) folded into every rule so no rule lets a token-less call in."""
    jwt = s.jwt
    token: dict[str, Any] = {"requestPrincipals": [f"{jwt.issuer}/*"]} if jwt is not None else {}
    when = [{"key": f"request.auth.claims[{claim}]", "values": list(values)}
            for claim, values in sorted((jwt.required_claims or {}).items())] if jwt is not None else []
    rules: list[dict[str, Any]] = []
    specs = s.authorization.rules if s.authorization is not None else [None]
    for rule in specs:
        sources: list[dict[str, Any]] = []
        out: dict[str, Any] = {}
        if rule is not None and rule.from_ is not None:
            if rule.from_.service_accounts:
                principals = []
                for sa in rule.from_.service_accounts:
                    ns, name = sa.split("/", 1)
                    principals.append(f"{spec.mesh.trust_domain}/ns/{ns}/sa/{name}")
                sources.append({"principals": principals, **token})
            if rule.from_.namespaces:
                sources.append({"namespaces": list(rule.from_.namespaces), **token})
        if not sources and token:
            sources.append(dict(token))
        if sources:
            out["from"] = [{"source": src} for src in sources]
        if rule is not None and rule.to is not None:
            op: dict[str, Any] = {}
            if rule.to.methods:
                op["methods"] = list(rule.to.methods)
            if rule.to.paths:
                op["paths"] = list(rule.to.paths)
            if op:
                out["to"] = [{"operation": op}]
        if when:
            out["when"] = [dict(w) for w in when]
        rules.append(out)
    return rules


def workload_security(spec: Spec, s: ServiceSpec) -> list[dict[str, Any]]:
    objs: list[dict[str, Any]] = []
    meta = {"namespace": s.namespace, "labels": dict(MANAGED)}
    if s.mtls is not None:
        objs.append({"apiVersion": SEC_V1, "kind": "PeerAuthentication",
                     "metadata": {"name": f"{s.name}-mtls", **meta},
                     "spec": {"selector": _selector(s),
                              "portLevelMtls": {str(port): {"mode": mode}
                                                for port, mode in sorted(s.mtls.ports.items())}}})
    if s.jwt is not None:
        jwt = s.jwt
        rule: dict[str, Any] = {"issuer": jwt.issuer, "jwksUri": jwt.jwks_uri}
        if jwt.audiences:
            rule["audiences"] = list(jwt.audiences)
        if jwt.forward_original_token:
            rule["forwardOriginalToken"] = True
        objs.append({"apiVersion": SEC_V1, "kind": "RequestAuthentication",
                     "metadata": {"name": f"{s.name}-jwt", **meta},
                     "spec": {"selector": _selector(s), "jwtRules": [rule]}})
    if s.authorization is not None or s.jwt is not None:
        objs.append({"apiVersion": SEC_V1, "kind": "AuthorizationPolicy",
                     "metadata": {"name": f"{s.name}-authz", **meta},
                     "spec": {"selector": _selector(s), "action": "ALLOW",
                              "rules": authorization_rules(spec, s)}})
    return objs


__all__ = ["istio_policy_objects", "check_istio_policy", "IDEMPOTENT_METHODS"]
