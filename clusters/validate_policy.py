"""Cross-field checks of the policy keys (``clusters.policy``) that a schema cannot express.

They need the rest of the spec (clusters, regions, declared versions); every
problem is reported at once, each with its key path.
"""

from __future__ import annotations

import re
from collections import Counter

from clusters.errors import Problem, echo
from clusters.models import duration_seconds
from clusters.names import DNS1123_LABEL, DOTTED_NAME, PROBE_PATH, is_dns1123_label, is_label_key
from clusters.policy import (
    HTTP_METHODS,
    IDEMPOTENT_METHODS,
    RETRY_ON,
    AuthorizationSpec,
    HeaderMatch,
    JwtSpec,
)
from clusters.spec import ServiceSpec, Spec

_HEADER_NAME = re.compile(r"^[a-z0-9!#$%&'*+.^_`|~-]+$")


def validate_policy(spec: Spec) -> list[Problem]:
    """Cross-field checks of policy keys that pydantic cannot express."""
    problems: list[Problem] = []
    regions = {c.region for c in spec.clusters if c.region}
    names = set(spec.cluster_names)
    hosts: dict[str, int] = {}
    for i, s in enumerate(spec.services):
        base = f"meshboot:services[{i}]"
        first = hosts.setdefault(s.host, i)
        if first != i:
            problems.append(Problem(f"{base}.name", f"host {s.host} is already claimed by "
                                                    f"meshboot:services[{first}]"))
        problems += _check_service(spec, s, base, regions, names)
    problems += _check_traffic(spec)
    return problems


def _check_header(h: HeaderMatch | None, path: str) -> list[Problem]:
    if h is None:
        return []
    out: list[Problem] = []
    if not h.name.strip():
        out.append(Problem(f"{path}.name", "header name must not be empty"))
    elif not _HEADER_NAME.match(h.name):
        out.append(Problem(f"{path}.name", f"header name {echo(h.name)} must be lower-case token "
                                           "characters (proxies compare names case-insensitively)"))
    kinds = [k for k in ("exact", "prefix", "regex") if getattr(h, k) is not None]
    if len(kinds) != 1:
        out.append(Problem(path, "set exactly one of exact, prefix, regex"
                           + (f" (got {', '.join(kinds)})" if kinds else "")))
    if h.regex is not None:
        try:
            re.compile(h.regex)
        except re.error as exc:
            out.append(Problem(f"{path}.regex", f"invalid regular expression: {exc}"))
    return out


def _check_versions(s: ServiceSpec, refs: list[tuple[str, str]]) -> list[Problem]:
    declared = set(s.versions or [])
    return [Problem(path, f"version {echo(v)} is not declared in versions "
                          f"({', '.join(s.versions) if s.versions else 'none declared'})")
            for path, v in refs if v not in declared]


def _check_service(spec: Spec, s: ServiceSpec, base: str, regions: set[str],
                   names: set[str]) -> list[Problem]:
    out: list[Problem] = []
    for j, c in enumerate(s.reachable_from or []):
        if c not in names:
            out.append(Problem(f"{base}.reachableFrom[{j}]", f"unknown cluster {echo(c)}"))
    for j, v in enumerate(s.versions or []):
        if not is_dns1123_label(v):
            out.append(Problem(f"{base}.versions[{j}]", f"version {echo(v)} is not a DNS-1123 label "
                                                        "(it names a subset)"))
    if s.versions and len(set(s.versions)) != len(s.versions):
        out.append(Problem(f"{base}.versions", "lists a version more than once"))

    http_features = [k for k, v in (("routing", s.routing), ("timeout", s.timeout),
                                    ("retries", s.retries), ("release", s.release),
                                    ("fault", s.fault)) if v is not None]
    if http_features and not s.http_ports:
        out.append(Problem(f"{base}.ports", f"{', '.join(http_features)} need an HTTP port "
                                            "(protocol HTTP, HTTP2 or GRPC)"))
    if s.routing is not None:
        out += _check_routing(s, f"{base}.routing", regions)
    if s.release is not None:
        out += _check_release(s, f"{base}.release")
        if s.routing is not None and (s.routing.local_share is not None or s.routing.weights is not None):
            out.append(Problem(f"{base}.release",
                               "a release routes by version: it cannot be combined with "
                               "routing.localShare or routing.weights (use routing.locality)"))
    if s.retries is not None:
        r = s.retries
        for j, m in enumerate(r.effective_methods):
            if m not in HTTP_METHODS:
                out.append(Problem(f"{base}.retries.methods[{j}]",
                                   f"unknown HTTP method {echo(m)} (one of {', '.join(HTTP_METHODS)})"))
            elif m not in IDEMPOTENT_METHODS and not r.allow_non_idempotent:
                out.append(Problem(f"{base}.retries.methods[{j}]",
                                   f"{m} is not idempotent: a retried call may run twice; set "
                                   "retries.allowNonIdempotent: true to retry it anyway"))
        if not r.retry_on:
            out.append(Problem(f"{base}.retries.retryOn", "must list at least one condition"))
        for j, cond in enumerate(r.retry_on):
            if cond not in RETRY_ON and not (cond.isdigit() and 100 <= int(cond) <= 599):
                out.append(Problem(f"{base}.retries.retryOn[{j}]",
                                   f"unknown retry condition {echo(cond)} (e.g. 5xx, reset, "
                                   "connect-failure, gateway-error, retriable-4xx, or a status code)"))
        if s.timeout and r.per_try_timeout and \
                duration_seconds(r.per_try_timeout) > duration_seconds(s.timeout):
            out.append(Problem(f"{base}.retries.perTryTimeout",
                               f"{r.per_try_timeout} is longer than the service timeout {s.timeout}"))
    lb = s.load_balancer
    if lb is not None:
        if lb.algorithm == "CONSISTENT_HASH" and not (lb.hash_header or "").strip():
            out.append(Problem(f"{base}.loadBalancer.hashHeader",
                               "CONSISTENT_HASH needs the header to hash on"))
        elif lb.algorithm != "CONSISTENT_HASH" and lb.hash_header is not None:
            out.append(Problem(f"{base}.loadBalancer.hashHeader",
                               "only used with algorithm CONSISTENT_HASH"))
        elif lb.hash_header and not _HEADER_NAME.match(lb.hash_header):
            out.append(Problem(f"{base}.loadBalancer.hashHeader",
                               f"header name {echo(lb.hash_header)} must be lower-case token characters"))
    if s.fault is not None:
        out += _check_header(s.fault.header, f"{base}.fault.header")
        if s.fault.delay is None and s.fault.abort is None:
            out.append(Problem(f"{base}.fault", "set delay, abort or both"))
    if s.authorization is not None:
        out += _check_authz(s.authorization, f"{base}.authorization")
    if s.jwt is not None:
        out += _check_jwt(s.jwt, f"{base}.jwt")
    if s.mtls is not None:
        for port in s.mtls.ports:
            if not 1 <= port <= 65535:
                out.append(Problem(f"{base}.mtls.ports.{port}", "port must be between 1 and 65535"))
        if not s.mtls.ports:
            out.append(Problem(f"{base}.mtls.ports", "list at least one port"))
    return out


def _check_routing(s: ServiceSpec, path: str, regions: set[str]) -> list[Problem]:
    out: list[Problem] = []
    r = s.routing
    assert r is not None
    split = r.local_share is not None or r.weights is not None
    if r.local_share is not None and r.weights is not None:
        out.append(Problem(path, "set either localShare or weights, not both"))
    if r.weights is not None:
        for c, w in r.weights.items():
            if c not in s.clusters:
                out.append(Problem(f"{path}.weights.{c}", f"the service does not run in cluster {echo(c)} "
                                                          f"(it runs in {', '.join(s.clusters)})"))
            if not 0 <= w <= 100:
                out.append(Problem(f"{path}.weights.{c}", f"weight {w} is not between 0 and 100"))
        total = sum(r.weights.values())
        if total != 100:
            out.append(Problem(f"{path}.weights", f"weights sum to {total}, not 100"))
    loc = r.locality
    if loc is None:
        if not split:
            out.append(Problem(path, "set localShare, weights or locality"))
        return out
    lpath = f"{path}.locality"
    if split:
        out.append(Problem(lpath, "locality load balancing cannot be combined with localShare or "
                                  "weights: those pin each call to one cluster's endpoints, so "
                                  "failover would never leave it"))
    modes = [m for m, v in (("failover", loc.failover), ("failoverPriority", loc.failover_priority),
                            ("distribute", loc.distribute)) if v is not None]
    if len(modes) != 1:
        out.append(Problem(lpath, "set exactly one of failover, failoverPriority, distribute"
                           + (f" (got {', '.join(modes)})" if modes else "")))
    known = ", ".join(sorted(regions)) or "none: set meshboot:clusters[*].region"
    for k, rule in enumerate(loc.failover or []):
        for key, region in (("from", rule.from_), ("to", rule.to)):
            if region not in regions:
                out.append(Problem(f"{lpath}.failover[{k}].{key}",
                                   f"no cluster is in region {echo(region)} (regions: {known})"))
        if rule.from_ == rule.to:
            out.append(Problem(f"{lpath}.failover[{k}]", f"fails over from {echo(rule.from_)} to itself"))
    froms = Counter(rule.from_ for rule in loc.failover or [])
    for k, rule in enumerate(loc.failover or []):
        if froms[rule.from_] > 1:
            out.append(Problem(f"{lpath}.failover[{k}].from",
                               f"region {echo(rule.from_)} has more than one failover target"))
    if loc.failover is not None and not loc.failover:
        out.append(Problem(f"{lpath}.failover", "list at least one rule"))
    if loc.failover_priority is not None:
        if not loc.failover_priority:
            out.append(Problem(f"{lpath}.failoverPriority", "list at least one label"))
        for k, label in enumerate(loc.failover_priority):
            if not label.strip():
                out.append(Problem(f"{lpath}.failoverPriority[{k}]", "label must not be empty"))
    for k, drule in enumerate(loc.distribute or []):
        rpath = f"{lpath}.distribute[{k}]"
        for where, loc_str in [("from", drule.from_)] + [(f"to.{t}", t) for t in drule.to]:
            region = loc_str.split("/")[0]
            if region != "*" and region not in regions:
                out.append(Problem(f"{rpath}.{where}",
                                   f"no cluster is in region {echo(region)} (regions: {known})"))
        total = sum(drule.to.values())
        if total != 100 or any(w < 0 for w in drule.to.values()):
            out.append(Problem(f"{rpath}.to", f"weights sum to {total}, not 100"))
    return out


def _check_release(s: ServiceSpec, path: str) -> list[Problem]:
    rel = s.release
    assert rel is not None
    out: list[Problem] = []
    if len(rel.strategies) != 1:
        got = f" (got {', '.join(rel.strategies)})" if rel.strategies else ""
        return [Problem(path, f"set exactly one of canary, blueGreen, abTest{got}")]
    if rel.canary is not None:
        c = rel.canary
        out += _check_versions(s, [(f"{path}.canary.stable", c.stable),
                                   (f"{path}.canary.candidate", c.candidate)])
        if c.candidate == c.stable:
            out.append(Problem(f"{path}.canary.candidate",
                               f"the candidate is the stable version {echo(c.stable)}"))
        out += _check_header(c.header, f"{path}.canary.header")
    if rel.blue_green is not None:
        b = rel.blue_green
        out += _check_versions(s, [(f"{path}.blueGreen.active", b.active),
                                   (f"{path}.blueGreen.preview", b.preview)])
        if b.active == b.preview:
            out.append(Problem(f"{path}.blueGreen.preview",
                               f"the preview is the active version {echo(b.active)}"))
        out += _check_header(b.header, f"{path}.blueGreen.header")
    if rel.ab_test is not None:
        ab = rel.ab_test
        group_names = Counter(g.name for g in ab.groups)
        for k, g in enumerate(ab.groups):
            gpath = f"{path}.abTest.groups[{k}]"
            if not is_dns1123_label(g.name):
                out.append(Problem(f"{gpath}.name", f"group name {echo(g.name)} is not a DNS-1123 label"))
            elif group_names[g.name] > 1:
                out.append(Problem(f"{gpath}.name", f"duplicate group {echo(g.name)}"))
            out += _check_versions(s, [(f"{gpath}.version", g.version)])
            out += _check_header(g.header, f"{gpath}.header")
            if g.header is None and g.path_prefix is None:
                out.append(Problem(gpath, "a group needs a header or a pathPrefix to match"))
            if g.path_prefix is not None and not g.path_prefix.startswith("/"):
                out.append(Problem(f"{gpath}.pathPrefix", "must start with '/'"))
        out += _check_versions(s, [(f"{path}.abTest.default.{v}", v) for v in ab.default])
        total = sum(ab.default.values())
        if total != 100 or any(w < 0 for w in ab.default.values()):
            out.append(Problem(f"{path}.abTest.default", f"weights sum to {total}, not 100"))
    return out


_SA = re.compile(rf"^{DNS1123_LABEL}/{DOTTED_NAME}$")


def _check_authz(a: AuthorizationSpec, path: str) -> list[Problem]:
    out: list[Problem] = []
    for k, rule in enumerate(a.rules):
        rpath = f"{path}.rules[{k}]"
        src, op = rule.from_, rule.to
        if not (src and (src.service_accounts or src.namespaces)) and \
                not (op and (op.methods or op.paths)):
            out.append(Problem(rpath, "an empty rule would allow every call: set from and/or to"))
        for j, sa in enumerate((src.service_accounts or []) if src else []):
            if not _SA.match(sa):
                out.append(Problem(f"{rpath}.from.serviceAccounts[{j}]",
                                   f"{echo(sa)} is not namespace/name"))
        for j, ns in enumerate((src.namespaces or []) if src else []):
            if not is_dns1123_label(ns):
                out.append(Problem(f"{rpath}.from.namespaces[{j}]", f"{echo(ns)} is not a namespace name"))
        for j, m in enumerate((op.methods or []) if op else []):
            if m not in HTTP_METHODS:
                out.append(Problem(f"{rpath}.to.methods[{j}]", f"unknown HTTP method {echo(m)}"))
        for j, p in enumerate((op.paths or []) if op else []):
            if not (p.startswith("/") or p.startswith("*")):
                out.append(Problem(f"{rpath}.to.paths[{j}]", f"path {echo(p)} must start with '/' or '*'"))
    for j, p in enumerate(a.probe_paths or []):
        if not PROBE_PATH.match(p):
            out.append(Problem(f"{path}.probePaths[{j}]",
                               f"{echo(p)} is not an absolute HTTP path (starts with '/', "
                               "printable ASCII, no spaces)"))
    if a.probe_paths and len(set(a.probe_paths)) != len(a.probe_paths):
        out.append(Problem(f"{path}.probePaths", "lists a path more than once"))
    return out


def _check_jwt(j: JwtSpec, path: str) -> list[Problem]:
    out: list[Problem] = []
    if not (j.issuer or "").strip():
        out.append(Problem(f"{path}.issuer", "required: the token issuer (the iss claim)"))
    if not (j.jwks_uri or "").strip():
        out.append(Problem(f"{path}.jwksUri", "required: where the issuer publishes its keys (JWKS)"))
    elif not re.match(r"^https?://[^/\s]+", j.jwks_uri or ""):
        out.append(Problem(f"{path}.jwksUri", f"{echo(j.jwks_uri)} is not an http(s) URL"))
    for claim, values in (j.required_claims or {}).items():
        if not claim.strip():
            out.append(Problem(f"{path}.requiredClaims", "claim name must not be empty"))
        if not values:
            out.append(Problem(f"{path}.requiredClaims.{claim}", "list at least one accepted value"))
    return out


_EGRESS_HOST = re.compile(rf"^(\*|\.|~|{DNS1123_LABEL})/(\*|(\*\.)?{DOTTED_NAME})$")


def _check_traffic(spec: Spec) -> list[Problem]:
    out: list[Problem] = []
    t = spec.traffic
    if not is_label_key(t.version_label):
        out.append(Problem("meshboot:traffic.versionLabel",
                           f"{echo(t.version_label)} is not a Kubernetes label key"))
    namespaces = {s.namespace for s in spec.services}
    for ns, hosts in (t.sidecar_egress or {}).items():
        path = f"meshboot:traffic.sidecarEgress.{ns}"
        if ns not in namespaces:
            out.append(Problem(path, f"no service is in namespace {echo(ns)}, so meshboot does not "
                                     "create it"))
        if not hosts:
            out.append(Problem(path, "list at least one host (e.g. './*', 'istio-system/*')"))
        for k, h in enumerate(hosts):
            if not _EGRESS_HOST.match(h):
                out.append(Problem(f"{path}[{k}]", f"{echo(h)} is not namespace/host (e.g. './*', "
                                                   "'istio-system/*', 'bookinfo/reviews.bookinfo.svc."
                                                   "cluster.local')"))
    return out
