"""Traffic and security policy in the spec (per service and mesh wide).

The models describe *intent* in provider-neutral terms (shares, versions,
header matches, service accounts); ``stacks.traffic.istio`` turns them into
Istio objects and the Linkerd stack maps what Linkerd can express. Every
model forbids unknown keys so typos are reported, not ignored. Keys are
camelCase in the stack file (``localShare``), snake_case in Python.

Shape checks live on the models (pydantic maps them to key paths); checks
that need the rest of the spec (clusters, regions, declared versions) are in
``validate_policy``, which reports every problem at once.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

from clusters.errors import Problem, echo

if TYPE_CHECKING:
    from clusters.spec import ServiceSpec, Spec

# --- value types -------------------------------------------------------------------------

_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(h|ms|us|µs|ns|m|s))+$")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def duration_seconds(value: str) -> float:
    """Seconds in a Go-style duration (``1m30s``, ``250ms``); ValueError if it does not parse."""
    if not isinstance(value, str) or not _DURATION.match(value):
        raise ValueError(f"invalid duration {echo(value)} (use a number and a unit, e.g. 250ms, 5s, 1m30s)")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|µs|ns|m|s)",
                                                                  value))


# Go's time.Duration is int64 nanoseconds: 2562047h47m16.854775807s is the longest
# duration Kubernetes, Istio and Linkerd can parse.
MAX_DURATION_SECONDS = (2**63 - 1) / 1e9


def _check_duration(value: str) -> str:
    seconds = duration_seconds(value)
    if seconds < 1e-3:
        raise ValueError(f"duration {echo(value)} is shorter than 1ms")
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"duration {echo(value)} is longer than 2562047h (the longest Go duration)")
    return value


Duration = Annotated[str, AfterValidator(_check_duration)]
"""A Go-style duration of at least 1ms: ``500ms``, ``5s``, ``1m30s``, ``2h``."""


def _check_percent(value: float) -> float:
    if value < 0:
        raise ValueError(f"{value} is negative (a percentage is 0 to 100)")
    if value > 100:
        raise ValueError(f"{value} is above 100 (a percentage is 0 to 100)")
    return value


Percent = Annotated[float, AfterValidator(_check_percent)]
Share = Annotated[int, AfterValidator(_check_percent)]
"""An integer percentage 0..100 (traffic shares)."""

def _port_key(value: object) -> object:
    # `pulumi up` passes structured config as JSON, whose object keys are strings:
    # {"15090": ...} is the engine's spelling of the stack file's {15090: ...}.
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 5:
        return int(value)
    return value


PortKey = Annotated[int, BeforeValidator(_port_key)]
"""A port as a mapping key: an integer (or its decimal string, from JSON)."""

IDEMPOTENT_METHODS = ("GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE")
HTTP_METHODS = IDEMPOTENT_METHODS + ("POST", "PATCH", "CONNECT")
# Envoy retry conditions Istio passes through (x-envoy-retry-on and grpc-retry-on).
RETRY_ON = frozenset({
    "5xx", "gateway-error", "reset", "reset-before-request", "connect-failure", "envoy-ratelimited",
    "retriable-4xx", "refused-stream", "retriable-status-codes", "retriable-headers",
    "http3-post-connect-failure", "cancelled", "deadline-exceeded", "internal",
    "resource-exhausted", "unavailable",
})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel,
                              populate_by_name=True, frozen=True,
                              strict=True, allow_inf_nan=False)


# --- matches -----------------------------------------------------------------------------

class HeaderMatch(_Strict):
    """A request header condition: ``name`` plus exactly one of exact / prefix / regex.

    Header names are compared case-insensitively by proxies, so they must be
    written in lower case. ``regex`` is RE2 and must match the whole value.
    """

    name: str
    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None


# --- routing -----------------------------------------------------------------------------

class FailoverRule(_Strict):
    """When endpoints in region ``from`` are unhealthy, send traffic to region ``to``."""

    from_: str = Field(alias="from")
    to: str


class DistributeRule(_Strict):
    """Traffic from locality ``from`` (``region[/zone[/subzone]]``, ``*`` allowed) is spread
    over the localities in ``to`` by weight (weights sum to 100)."""

    from_: str = Field(alias="from")
    to: dict[str, int]


class LocalitySpec(_Strict):
    """Locality-aware load balancing; exactly one of the three modes.

    ``failover`` and ``failoverPriority`` need outlier detection to notice a
    sick locality: the service's ``outlierDetection`` is used, else
    ``meshboot:traffic.defaultOutlierDetection``.
    """

    failover: list[FailoverRule] | None = None
    failover_priority: list[str] | None = None
    distribute: list[DistributeRule] | None = None

    @property
    def mode(self) -> str | None:
        """The one mode set (``failover``, ``failoverPriority``, ``distribute``), else None."""
        modes = [m for m, v in (("failover", self.failover), ("failoverPriority", self.failover_priority),
                                ("distribute", self.distribute)) if v is not None]
        return modes[0] if len(modes) == 1 else None


class RoutingSpec(_Strict):
    """Where calls go across clusters.

    ``localShare``: percent of calls kept in the caller's cluster when the
    service runs there, the rest spread evenly over the other clusters that run
    it (callers in clusters without the service spread evenly over all of
    them). ``weights``: explicit percent per cluster, the same for every
    caller. Both pin calls to per-cluster subsets, so they cannot be combined
    with ``locality`` (failover works inside a destination's endpoints).
    """

    local_share: Share | None = None
    weights: dict[str, int] | None = None
    locality: LocalitySpec | None = None


# --- resilience --------------------------------------------------------------------------

class RetrySpec(_Strict):
    """Retries for calls with one of ``methods`` (default: idempotent methods only).

    Other methods keep the mesh default. Listing POST, PATCH or CONNECT needs
    ``allowNonIdempotent: true`` (a retried POST may run twice).
    """

    attempts: int = Field(ge=1, le=100)
    per_try_timeout: Duration | None = None
    retry_on: list[str] = ["connect-failure", "refused-stream", "unavailable", "cancelled", "5xx"]
    methods: list[str] | None = None
    allow_non_idempotent: bool = False

    @property
    def effective_methods(self) -> list[str]:
        return list(self.methods) if self.methods is not None else list(IDEMPOTENT_METHODS)


# Envoy/Istio connection-pool and outlier counters are int32.
INT32_MAX = 2**31 - 1


class TcpPoolSpec(_Strict):
    max_connections: int | None = Field(default=None, ge=1, le=INT32_MAX)
    connect_timeout: Duration | None = None
    idle_timeout: Duration | None = None


class HttpPoolSpec(_Strict):
    http1_max_pending_requests: int | None = Field(default=None, ge=1, le=INT32_MAX)
    http2_max_requests: int | None = Field(default=None, ge=1, le=INT32_MAX)
    max_requests_per_connection: int | None = Field(default=None, ge=1, le=INT32_MAX)
    max_retries: int | None = Field(default=None, ge=0, le=INT32_MAX)
    idle_timeout: Duration | None = None


class ConnectionPoolSpec(_Strict):
    """Client-side connection limits towards the service (per calling proxy)."""

    tcp: TcpPoolSpec | None = None
    http: HttpPoolSpec | None = None


class OutlierDetectionSpec(_Strict):
    """Eject endpoints that keep failing (also what makes locality failover work)."""

    consecutive_5xx_errors: int | None = Field(default=None, ge=0, le=INT32_MAX,
                                                alias="consecutive5xxErrors")
    consecutive_gateway_errors: int | None = Field(default=None, ge=0, le=INT32_MAX)
    interval: Duration | None = None
    base_ejection_time: Duration | None = None
    max_ejection_percent: int | None = Field(default=None, ge=0, le=100)
    min_health_percent: int | None = Field(default=None, ge=0, le=100)


class LoadBalancerSpec(_Strict):
    """``algorithm``; ``CONSISTENT_HASH`` keeps calls with the same ``hashHeader`` value on one
    endpoint (session affinity)."""

    algorithm: Literal["ROUND_ROBIN", "LEAST_REQUEST", "RANDOM", "CONSISTENT_HASH"] = "ROUND_ROBIN"
    hash_header: str | None = None


# --- releases ----------------------------------------------------------------------------

class CanarySpec(_Strict):
    """``weight`` percent of calls go to ``candidate``, the rest to ``stable``; calls
    matching ``header`` always go to the candidate."""

    stable: str
    candidate: str
    weight: Share = 0
    header: HeaderMatch | None = None


class BlueGreenSpec(_Strict):
    """All calls go to ``active``; calls matching ``header`` go to ``preview``."""

    active: str
    preview: str
    header: HeaderMatch | None = None


class AbGroup(_Strict):
    """Calls matching ``header`` (and/or whose path starts with ``pathPrefix``) go to ``version``."""

    name: str
    version: str
    header: HeaderMatch | None = None
    path_prefix: str | None = None


class AbTestSpec(_Strict):
    """Groups are tried in order; other calls are split by ``default`` (version -> percent)."""

    groups: list[AbGroup] = Field(min_length=1)
    default: dict[str, int]


class ReleaseSpec(_Strict):
    """One release strategy at a time. Versions are values of the version label
    (``meshboot:traffic.versionLabel``) declared in the service's ``versions``."""

    canary: CanarySpec | None = None
    blue_green: BlueGreenSpec | None = None
    ab_test: AbTestSpec | None = None

    @property
    def strategies(self) -> list[str]:
        return [k for k, v in (("canary", self.canary), ("blueGreen", self.blue_green),
                               ("abTest", self.ab_test)) if v is not None]


# --- fault injection ---------------------------------------------------------------------

class DelayFault(_Strict):
    fixed_delay: Duration
    percent: Percent = 100.0


class AbortFault(_Strict):
    http_status: int = Field(ge=100, le=599)
    percent: Percent = 100.0


class FaultSpec(_Strict):
    """Inject delays/aborts, only into calls matching ``header`` (production traffic is
    untouched unless a caller asks)."""

    header: HeaderMatch
    delay: DelayFault | None = None
    abort: AbortFault | None = None


# --- security ----------------------------------------------------------------------------

class AuthzSource(_Strict):
    """Callers: ``serviceAccounts`` as ``namespace/name`` and/or whole ``namespaces``."""

    service_accounts: list[str] | None = None
    namespaces: list[str] | None = None


class AuthzOperation(_Strict):
    methods: list[str] | None = None
    paths: list[str] | None = None


class AuthzRule(_Strict):
    """Allow calls ``from`` these callers ``to`` these operations (both optional, not both empty)."""

    from_: AuthzSource | None = Field(default=None, alias="from")
    to: AuthzOperation | None = None


class AuthorizationSpec(_Strict):
    """Allow-list for calls to the service; anything else is denied.

    ``probePaths``: the HTTP paths the kubelet probes (GET) on the service's ports.
    Linkerd needs them once rules with ``to`` attach routes to a port (it then stops
    authorizing probes by itself); Istio rewrites probes and ignores the list.
    """

    rules: list[AuthzRule] = Field(min_length=1)
    probe_paths: list[str] | None = None


class JwtSpec(_Strict):
    """End-user JWT: tokens must come from ``issuer`` (keys at ``jwksUri``), optionally for
    one of ``audiences``, with the ``requiredClaims`` (claim -> accepted values)."""

    issuer: str | None = None
    jwks_uri: str | None = None
    audiences: list[str] | None = None
    forward_original_token: bool = False
    required_claims: dict[str, list[str]] | None = None


class WorkloadMtlsSpec(_Strict):
    """Per-port exceptions from the mesh-wide mTLS mode for this service's workloads,
    e.g. ``{15090: DISABLE}`` for a metrics port scraped from outside the mesh. Ports
    are the workload's (container) ports."""

    ports: dict[PortKey, Literal["STRICT", "PERMISSIVE", "DISABLE"]]


class ServicePolicyFields(_Strict):
    """Optional per-service policy keys, mixed into ``meshboot:services[*]``."""

    # Clusters whose workloads may call the service (default: all clusters).
    reachable_from: list[str] | None = None
    # Values of the version label the service's workloads carry (release subsets).
    versions: list[str] | None = None
    routing: RoutingSpec | None = None
    timeout: Duration | None = None
    retries: RetrySpec | None = None
    connection_pool: ConnectionPoolSpec | None = None
    outlier_detection: OutlierDetectionSpec | None = None
    load_balancer: LoadBalancerSpec | None = None
    release: ReleaseSpec | None = None
    fault: FaultSpec | None = None
    authorization: AuthorizationSpec | None = None
    jwt: JwtSpec | None = None
    mtls: WorkloadMtlsSpec | None = None


class MtlsSpec(_Strict):
    """Mesh-wide mTLS: ``STRICT`` (only mTLS) or ``PERMISSIVE`` (also plain text: the
    migration mode while workloads join the mesh)."""

    mode: Literal["STRICT", "PERMISSIVE"] = "STRICT"


class SecuritySpec(_Strict):
    """``meshboot:security``: mesh-wide security policy."""

    mtls: MtlsSpec = MtlsSpec()
    # Deny every call in the services' namespaces unless an authorization rule allows it.
    default_deny: bool = False


def _default_outlier() -> OutlierDetectionSpec:
    return OutlierDetectionSpec.model_validate({"consecutive5xxErrors": 5, "interval": "10s",
                                                "baseEjectionTime": "30s", "maxEjectionPercent": 100})


class TrafficSpec(_Strict):
    """``meshboot:traffic``: mesh-wide traffic defaults."""

    # How a service becomes reachable in clusters that do not run it (see docs/traffic.md).
    cross_cluster: Literal["discovery", "serviceEntry"] = "discovery"
    # The workload label whose values ``versions`` lists.
    version_label: str = "version"
    # Used with locality failover when a service sets no outlierDetection.
    default_outlier_detection: OutlierDetectionSpec = Field(default_factory=_default_outlier)
    # namespace -> hosts its proxies may reach ("<namespace>/<host>", e.g. "./*", "istio-system/*").
    sidecar_egress: dict[str, list[str]] | None = None


# --- cross-field validation --------------------------------------------------------------

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_HEADER_NAME = re.compile(r"^[a-z0-9!#$%&'*+.^_`|~-]+$")
_HTTP_PROTOCOLS = {"HTTP", "HTTP2", "GRPC"}
_NON_HTTP_PREFIXES = ("tcp", "tls", "https", "mongo", "mysql", "redis")


def is_label(value: str) -> bool:
    return len(value) <= 63 and bool(_LABEL.match(value))


def has_http_port(service: ServiceSpec) -> bool:
    """Whether HTTP routing applies to some port (declared or detectable HTTP)."""
    for p in service.ports:
        if p.protocol in _HTTP_PROTOCOLS:
            return True
        if p.protocol is None and not p.name.split("-")[0].startswith(_NON_HTTP_PREFIXES):
            return True
    return False


def callers(spec: Spec, service: ServiceSpec) -> list[str]:
    """Clusters whose workloads may call ``service``, in spec order."""
    allowed = set(service.reachable_from) if service.reachable_from is not None \
        else set(spec.cluster_names)
    allowed |= set(service.clusters)
    return [c for c in spec.cluster_names if c in allowed]


def cluster_split(spec: Spec, service: ServiceSpec, caller: str) -> dict[str, int]:
    """cluster -> percent of ``caller``'s calls (routing.localShare / weights), zeros dropped.

    The remainder of an uneven split goes to the first clusters in spec order.
    """
    routing = service.routing
    assert routing is not None
    running = [c for c in spec.cluster_names if c in service.clusters]
    if routing.weights is not None:
        return {c: routing.weights[c] for c in running if routing.weights.get(c)}
    assert routing.local_share is not None
    if caller in running:
        share = {caller: routing.local_share}
        others = [c for c in running if c != caller]
        rest = 100 - routing.local_share
        if not others:
            return {caller: 100}
    else:
        share, others, rest = {}, running, 100
    base, extra = divmod(rest, len(others))
    for i, c in enumerate(others):
        share[c] = base + (1 if i < extra else 0)
    return {c: w for c, w in share.items() if w}


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
        if not is_label(v):
            out.append(Problem(f"{base}.versions[{j}]", f"version {echo(v)} is not a DNS-1123 label "
                                                        "(it names a subset)"))
    if s.versions and len(set(s.versions)) != len(s.versions):
        out.append(Problem(f"{base}.versions", "lists a version more than once"))

    http_features = [k for k, v in (("routing", s.routing), ("timeout", s.timeout),
                                    ("retries", s.retries), ("release", s.release),
                                    ("fault", s.fault)) if v is not None]
    if http_features and not has_http_port(s):
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
            if not is_label(g.name):
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


_SA = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$")


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
            if not is_label(ns):
                out.append(Problem(f"{rpath}.from.namespaces[{j}]", f"{echo(ns)} is not a namespace name"))
        for j, m in enumerate((op.methods or []) if op else []):
            if m not in HTTP_METHODS:
                out.append(Problem(f"{rpath}.to.methods[{j}]", f"unknown HTTP method {echo(m)}"))
        for j, p in enumerate((op.paths or []) if op else []):
            if not (p.startswith("/") or p.startswith("*")):
                out.append(Problem(f"{rpath}.to.paths[{j}]", f"path {echo(p)} must start with '/' or '*'"))
    for j, p in enumerate(a.probe_paths or []):
        if not re.match(r"^/[\x21-\x7e]*$", p):
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


_EGRESS_HOST = re.compile(r"^(\*|\.|~|[a-z0-9]([-a-z0-9]*[a-z0-9])?)/"
                          r"(\*|(\*\.)?[a-z0-9]([-.a-z0-9]*[a-z0-9])?)$")


def _check_traffic(spec: Spec) -> list[Problem]:
    out: list[Problem] = []
    t = spec.traffic
    if not re.match(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$", t.version_label):
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
