"""Traffic and security policy in the spec (per service and mesh wide): the models.

The models describe *intent* in provider-neutral terms (shares, versions,
header matches, service accounts); ``stacks.istio.policy`` turns them into
Istio objects and ``stacks.linkerd.policy`` maps what Linkerd can express.
Keys are camelCase in the stack file (``localShare``), snake_case in Python.

Shape checks live on the models (pydantic maps them to key paths); checks
that need the rest of the spec (clusters, regions, declared versions) are in
``clusters.validate_policy``, which reports every problem at once. This
module knows nothing of the rest of the spec: ``clusters.spec`` builds on it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from clusters.delivery_spec import AnalysisSpec
from clusters.models import Duration, Model, Percent, PortKey, Share

IDEMPOTENT_METHODS = ("GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE")
HTTP_METHODS = IDEMPOTENT_METHODS + ("POST", "PATCH", "CONNECT")
# Envoy retry conditions Istio passes through (x-envoy-retry-on and grpc-retry-on).
RETRY_ON = frozenset({
    "5xx", "gateway-error", "reset", "reset-before-request", "connect-failure", "envoy-ratelimited",
    "retriable-4xx", "refused-stream", "retriable-status-codes", "retriable-headers",
    "http3-post-connect-failure", "cancelled", "deadline-exceeded", "internal",
    "resource-exhausted", "unavailable",
})


# --- matches -----------------------------------------------------------------------------

class HeaderMatch(Model):
    """A request header condition: ``name`` plus exactly one of exact / prefix / regex.

    Header names are compared case-insensitively by proxies, so they must be
    written in lower case. ``regex`` is RE2 and must match the whole value.
    """

    name: str
    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None


# --- routing -----------------------------------------------------------------------------

class FailoverRule(Model):
    """When endpoints in region ``from`` are unhealthy, send traffic to region ``to``."""

    from_: str = Field(alias="from")
    to: str


class DistributeRule(Model):
    """Traffic from locality ``from`` (``region[/zone[/subzone]]``, ``*`` allowed) is spread
    over the localities in ``to`` by weight (weights sum to 100)."""

    from_: str = Field(alias="from")
    to: dict[str, int]


class LocalitySpec(Model):
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


class RoutingSpec(Model):
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

class RetrySpec(Model):
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


class TcpPoolSpec(Model):
    max_connections: int | None = Field(default=None, ge=1, le=INT32_MAX)
    connect_timeout: Duration | None = None
    idle_timeout: Duration | None = None


class HttpPoolSpec(Model):
    http1_max_pending_requests: int | None = Field(default=None, ge=1, le=INT32_MAX)
    http2_max_requests: int | None = Field(default=None, ge=1, le=INT32_MAX)
    max_requests_per_connection: int | None = Field(default=None, ge=1, le=INT32_MAX)
    max_retries: int | None = Field(default=None, ge=0, le=INT32_MAX)
    idle_timeout: Duration | None = None


class ConnectionPoolSpec(Model):
    """Client-side connection limits towards the service (per calling proxy)."""

    tcp: TcpPoolSpec | None = None
    http: HttpPoolSpec | None = None


class OutlierDetectionSpec(Model):
    """Eject endpoints that keep failing (also what makes locality failover work)."""

    consecutive_5xx_errors: int | None = Field(default=None, ge=0, le=INT32_MAX,
                                                alias="consecutive5xxErrors")
    consecutive_gateway_errors: int | None = Field(default=None, ge=0, le=INT32_MAX)
    interval: Duration | None = None
    base_ejection_time: Duration | None = None
    max_ejection_percent: int | None = Field(default=None, ge=0, le=100)
    min_health_percent: int | None = Field(default=None, ge=0, le=100)


class LoadBalancerSpec(Model):
    """``algorithm``; ``CONSISTENT_HASH`` keeps calls with the same ``hashHeader`` value on one
    endpoint (session affinity)."""

    algorithm: Literal["ROUND_ROBIN", "LEAST_REQUEST", "RANDOM", "CONSISTENT_HASH"] = "ROUND_ROBIN"
    hash_header: str | None = None


# --- releases ----------------------------------------------------------------------------

class CanarySpec(Model):
    """``weight`` percent of calls go to ``candidate``, the rest to ``stable``; calls
    matching ``header`` always go to the candidate."""

    stable: str
    candidate: str
    weight: Share = 0
    header: HeaderMatch | None = None
    # With meshboot:delivery.engine flagger: the analysis (over meshboot:delivery.analysis)
    # and the Deployment Flagger rolls out (default: the service's name).
    analysis: AnalysisSpec | None = None
    deployment: str | None = None


class BlueGreenSpec(Model):
    """All calls go to ``active``; calls matching ``header`` go to ``preview``."""

    active: str
    preview: str
    header: HeaderMatch | None = None


class AbGroup(Model):
    """Calls matching ``header`` (and/or whose path starts with ``pathPrefix``) go to ``version``."""

    name: str
    version: str
    header: HeaderMatch | None = None
    path_prefix: str | None = None


class AbTestSpec(Model):
    """Groups are tried in order; other calls are split by ``default`` (version -> percent)."""

    groups: list[AbGroup] = Field(min_length=1)
    default: dict[str, int]


class ReleaseSpec(Model):
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

class DelayFault(Model):
    fixed_delay: Duration
    percent: Percent = 100.0


class AbortFault(Model):
    http_status: int = Field(ge=100, le=599)
    percent: Percent = 100.0


class FaultSpec(Model):
    """Inject delays/aborts, only into calls matching ``header`` (production traffic is
    untouched unless a caller asks)."""

    header: HeaderMatch
    delay: DelayFault | None = None
    abort: AbortFault | None = None


# --- security ----------------------------------------------------------------------------

class AuthzSource(Model):
    """Callers: ``serviceAccounts`` as ``namespace/name`` and/or whole ``namespaces``."""

    service_accounts: list[str] | None = None
    namespaces: list[str] | None = None


class AuthzOperation(Model):
    methods: list[str] | None = None
    paths: list[str] | None = None


class AuthzRule(Model):
    """Allow calls ``from`` these callers ``to`` these operations (both optional, not both empty)."""

    from_: AuthzSource | None = Field(default=None, alias="from")
    to: AuthzOperation | None = None


class AuthorizationSpec(Model):
    """Allow-list for calls to the service; anything else is denied.

    ``probePaths``: the HTTP paths the kubelet probes (GET) on the service's ports.
    Linkerd needs them once rules with ``to`` attach routes to a port (it then stops
    authorizing probes by itself); Istio rewrites probes and ignores the list.
    """

    rules: list[AuthzRule] = Field(min_length=1)
    probe_paths: list[str] | None = None


class JwtSpec(Model):
    """End-user JWT: tokens must come from ``issuer`` (keys at ``jwksUri``), optionally for
    one of ``audiences``, with the ``requiredClaims`` (claim -> accepted values)."""

    issuer: str | None = None
    jwks_uri: str | None = None
    audiences: list[str] | None = None
    forward_original_token: bool = False
    required_claims: dict[str, list[str]] | None = None


class WorkloadMtlsSpec(Model):
    """Per-port exceptions from the mesh-wide mTLS mode for this service's workloads,
    e.g. ``{15090: DISABLE}`` for a metrics port scraped from outside the mesh. Ports
    are the workload's (container) ports."""

    ports: dict[PortKey, Literal["STRICT", "PERMISSIVE", "DISABLE"]]


class ServicePolicyFields(Model):
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


class MtlsSpec(Model):
    """Mesh-wide mTLS: ``STRICT`` (only mTLS) or ``PERMISSIVE`` (also plain text: the
    migration mode while workloads join the mesh)."""

    mode: Literal["STRICT", "PERMISSIVE"] = "STRICT"


class SecuritySpec(Model):
    """``meshboot:security``: mesh-wide security policy."""

    mtls: MtlsSpec = MtlsSpec()
    # Deny every call in the services' namespaces unless an authorization rule allows it.
    default_deny: bool = False


def _default_outlier() -> OutlierDetectionSpec:
    return OutlierDetectionSpec.model_validate({"consecutive5xxErrors": 5, "interval": "10s",
                                                "baseEjectionTime": "30s", "maxEjectionPercent": 100})


class TrafficSpec(Model):
    """``meshboot:traffic``: mesh-wide traffic defaults."""

    # How a service becomes reachable in clusters that do not run it (see docs/traffic.md).
    cross_cluster: Literal["discovery", "serviceEntry"] = "discovery"
    # The workload label whose values ``versions`` lists.
    version_label: str = "version"
    # Used with locality failover when a service sets no outlierDetection.
    default_outlier_detection: OutlierDetectionSpec = Field(default_factory=_default_outlier)
    # namespace -> hosts its proxies may reach ("<namespace>/<host>", e.g. "./*", "istio-system/*").
    sidecar_egress: dict[str, list[str]] | None = None
