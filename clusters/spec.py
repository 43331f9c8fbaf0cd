"""The environment spec: the ``meshboot:`` keys of a Pulumi stack's config.

One model for both entry points: ``pulumi up`` gets the values from the
engine, ``meshboot render`` reads the stack file itself (see ``loader``).
Models forbid unknown keys so a typo is an error, not a silently ignored
setting.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from clusters.delivery_spec import DeliverySpec, ObservabilitySpec
from clusters.linkerd_spec import LinkerdSpec
from clusters.models import Model
from clusters.policy import SecuritySpec, ServicePolicyFields, TrafficSpec

DEFAULT_VERSIONS = {"istio": "1.30.3", "linkerd": "edge-26.8.3"}
KEY_ALGORITHMS = ("ecdsa-p256", "rsa-2048", "rsa-3072", "rsa-4096")
# 100 years. Certificates end in notAfter = now + days, which X.509 (and Python's
# datetime) cannot express past 9999-12-31; no CA should outlive this bound anyway,
# and it keeps every date meshboot computes decades away from that edge.
MAX_VALIDITY_DAYS = 36500
# Default renewal window per provider. Linkerd: `linkerd check` warns while the issuer
# is valid for less than 60 days (linkerd2 pkg/issuercerts/issuercerts.go
# expirationWarningThresholdInDays, checked in pkg/healthcheck "issuer cert is valid
# for at least 60 days"), so renewing any later leaves it warning before each renewal.
RENEW_BEFORE_DAYS = {"istio": 30, "linkerd": 60}
LINKERD_EXPIRY_WARNING_DAYS = 60


class MeshSpec(Model):
    provider: Literal["istio", "linkerd"] = "istio"
    id: str = "mesh1"
    trust_domain: str = "cluster.local"
    version: str | None = None
    revision: str | None = None
    # Bump to rotate the tokens behind cross-cluster credentials (Istio remote
    # secrets, Linkerd link credentials): new token Secrets, new credentials,
    # the old token Secrets deleted.
    token_generation: int = Field(default=1, ge=1, le=1_000_000)
    chart_repository: str | None = None

    @property
    def resolved_version(self) -> str:
        return self.version or DEFAULT_VERSIONS[self.provider]


class RootCaImport(Model):
    """An existing (enterprise) root: PEM inline (use ``secure:``) or files."""

    cert_pem: str | None = None
    key_pem: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


class NewRootSpec(Model):
    """The rotation's new root: certificate in clear, key as a ``secure:`` value."""

    cert_pem: str | None = None
    key_pem: str | None = None


ROTATION_PHASES = ("trust-both", "sign-with-new", "drop-old")


def _phase_number(value: object) -> object:
    """A phase may be given by its number (1, 2, 3) as in the issue's list; kept as its name."""
    if type(value) is int and 1 <= value <= len(ROTATION_PHASES):
        return ROTATION_PHASES[value - 1]
    return value


RotationPhase = Annotated[Literal["trust-both", "sign-with-new", "drop-old"],
                          BeforeValidator(_phase_number)]


class RotationSpec(Model):
    """A root rotation in progress (``meshboot rotate root`` writes it; see pki.rotation).

    ``clusters``: clusters one phase ahead of ``phase``. Times are UTC,
    ISO 8601 (``2026-12-03T07:00:00Z``).
    """

    phase: RotationPhase
    new_root: NewRootSpec | None = None
    clusters: dict[str, RotationPhase] = {}
    since: str | None = None
    signing_since: str | None = None
    aborted_at: str | None = None


class PkiSpec(Model):
    key_algorithm: str = "ecdsa-p256"
    root_validity_days: int = Field(default=3650, gt=0, le=MAX_VALIDITY_DAYS)
    intermediate_validity_days: int = Field(default=365, gt=0, le=MAX_VALIDITY_DAYS)
    # None: the provider's default (RENEW_BEFORE_DAYS), see renew_before().
    renew_before_days: int | None = Field(default=None, ge=0, le=MAX_VALIDITY_DAYS)
    root_ca: RootCaImport | None = None
    rotation: RotationSpec | None = None

    def renew_before(self, provider: str) -> int:
        """Days before expiry an intermediate / issuer is re-issued, for ``provider``."""
        if self.renew_before_days is not None:
            return self.renew_before_days
        return RENEW_BEFORE_DAYS[provider]


class EastWestGatewaySpec(Model):
    # None: installed where the mesh needs it (a primary serving remotes; with
    # several networks, every primary and a remote whose network has no other
    # gateway); True/False forces it (False only where the network keeps one).
    enabled: bool | None = None
    address: str | None = None
    # Accept a host name (address, or a hostname load balancer) as the
    # remotePilotAddress of this primary's remotes; upstream expects an IP.
    allow_hostname: bool = False


class ClusterSpec(Model):
    name: str
    api_server: str
    context: str | None = None
    # Path to a kubeconfig file, or its contents (prefer a ``secure:`` value).
    kubeconfig: str | None = None
    network: str = "network1"
    region: str | None = None
    zone: str | None = None
    role: Literal["primary", "remote"] = "primary"
    primary: str | None = None
    east_west_gateway: EastWestGatewaySpec = EastWestGatewaySpec()
    # Must equal meshboot:mesh.id when set: all clusters of a multicluster mesh share
    # one mesh ID (istio-discovery values.yaml, global.meshID). Kept so specs that
    # spell it out stay valid.
    mesh_id: str | None = None
    # "present": the cluster already has the Gateway API CRDs (Linkerd stack).
    gateway_api_crds: Literal["install", "present"] = "install"
    # With "present": their release (vX.Y.Z) and channel, checked against the fields
    # meshboot sets (Linkerd stack; see stacks.linkerd.plan.gateway_api_problems).
    gateway_api_version: str | None = None
    gateway_api_channel: Literal["standard", "experimental"] = "standard"

    @property
    def is_remote(self) -> bool:
        return self.role == "remote"


HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "GRPC"})
# Istio's protocol selection by port name prefix: these are not HTTP.
NON_HTTP_PREFIXES = ("tcp", "tls", "https", "mongo", "mysql", "redis")


class PortSpec(Model):
    name: str
    port: int = Field(ge=1, le=65535)
    target_port: int | None = Field(default=None, ge=1, le=65535)
    protocol: Literal["HTTP", "HTTP2", "GRPC", "TCP", "TLS", "HTTPS"] | None = None

    @property
    def is_http(self) -> bool:
        """Whether HTTP routing applies to the port (declared, or detected by its name)."""
        if self.protocol is not None:
            return self.protocol in HTTP_PROTOCOLS
        return not self.name.split("-")[0].startswith(NON_HTTP_PREFIXES)


class ServiceSpec(ServicePolicyFields):
    name: str
    namespace: str = "default"
    ports: list[PortSpec] = Field(min_length=1)
    clusters: list[str] = Field(min_length=1)
    # Linkerd: export as a federated service (one Service over all clusters).
    federated: bool = False

    @property
    def host(self) -> str:
        return f"{self.name}.{self.namespace}.svc.cluster.local"

    @property
    def http_ports(self) -> list[PortSpec]:
        """The ports HTTP routing applies to, in spec order."""
        return [p for p in self.ports if p.is_http]


class Spec(Model):
    """The whole environment. ``source`` names the file for error messages."""

    mesh: MeshSpec = MeshSpec()
    pki: PkiSpec = PkiSpec()
    clusters: list[ClusterSpec] = Field(min_length=1)
    services: list[ServiceSpec] = []
    security: SecuritySpec = SecuritySpec()
    traffic: TrafficSpec = TrafficSpec()
    linkerd: LinkerdSpec = LinkerdSpec()
    # Optional: absent means off.
    delivery: DeliverySpec | None = None
    observability: ObservabilitySpec | None = None

    @property
    def flagger(self) -> bool:
        """Whether Flagger drives the canary releases."""
        return self.delivery is not None and self.delivery.engine == "flagger"

    def flagger_canary(self, s: ServiceSpec) -> bool:
        """Whether Flagger, not meshboot's routes, releases ``s``."""
        return self.flagger and s.release is not None and s.release.canary is not None

    def cluster(self, name: str) -> ClusterSpec:
        for c in self.clusters:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def cluster_names(self) -> list[str]:
        return [c.name for c in self.clusters]


# Top-level config keys, in the order they are documented.
CONFIG_KEYS = {
    "meshboot:mesh": "mesh",
    "meshboot:pki": "pki",
    "meshboot:clusters": "clusters",
    "meshboot:services": "services",
    "meshboot:security": "security",
    "meshboot:traffic": "traffic",
    "meshboot:linkerd": "linkerd",
    "meshboot:delivery": "delivery",
    "meshboot:observability": "observability",
}
