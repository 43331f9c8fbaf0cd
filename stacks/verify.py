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

The checks of each provider are in ``stacks.istio.verify`` and
``stacks.linkerd.verify``; this module holds what they share.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from clusters.kube_client import Kube, KubeError
from clusters.live import locality_checks, node_locality
from clusters.spec import Spec
from pki.ca import certs_from_pem, fingerprint, verify_issued_by
from pki.rotation import signs_with_new
from stacks.plan import MeshPlan, PkiRef, resolve
from stacks.preflight import LINKERD_CONTROL_PLANE, pki_secret

Status = Literal["ok", "warn", "fail", "pending"]
MESH = "(mesh)"  # the cluster column of checks across clusters

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
def secret_data(secret: dict[str, Any], key: str) -> str | None:
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
    no PKI at hand, root comparisons skipped; bundles are still compared across clusters).

    Each provider subclasses it (:func:`verifier`); what is common (nodes, roots,
    load-balanced gateways, the bundle across clusters) is here.
    """

    spec: Spec
    plan: MeshPlan
    trust: Callable[[PkiRef], str] | None = None
    seen_roots: dict[str, Bundle] = field(default_factory=dict)

    # -------------------------------------------------------------- per cluster
    def checks(self, cluster: str) -> list[tuple[str, Check]]:
        """(name, check) of ``cluster``, in the order they run; the nodes check is first."""
        return [("nodes", lambda k: self.nodes(k, cluster)), *self.mesh_checks(cluster)]

    def mesh_checks(self, cluster: str) -> list[tuple[str, Check]]:
        """The provider's checks (``stacks.istio.verify``, ``stacks.linkerd.verify``)."""
        raise NotImplementedError

    def expected_bundle(self, cluster: str) -> Bundle | None:
        if self.trust is None:
            return None
        pem = expected_trust(self.plan, cluster, self.trust)
        return Bundle.of(pem) if pem is not None else None

    def signing_mismatch(self, cluster: str, ca_pem: str, chain_pem: str = "") -> str | None:
        """During a root rotation: why the intermediate / issuer in ``ca_pem`` is not under
        the root ``cluster``'s phase signs with; None when it is (or outside a rotation,
        or without the PKI at hand).

        The trust bundle is the same in trust-both and sign-with-new (pki.rotation), so
        only the signing root tells whether sign-with-new (or an abort back from it) has
        been applied: istiod signs with whatever ``cacerts`` ``ca-cert.pem`` holds
        (istio/istio pilot/pkg/bootstrap/istio_ca.go ``handleEvent``), linkerd-identity
        with ``linkerd-identity-issuer`` ``tls.crt`` (linkerd2 pkg/identity/service.go
        ``loadCredentials``), and drop-old's wait assumes the new one is in use.
        """
        params = self.plan.pki
        if self.trust is None or params.rotation is None or params.imported_root is None:
            return None
        new = signs_with_new(params.rotation.phase_of(cluster))
        root = certs_from_pem((params.rotation.new_root if new else params.imported_root)[0])[0]
        cert = certs_from_pem(ca_pem)[0]
        if verify_issued_by(cert, root):
            return None
        chain = certs_from_pem(chain_pem) if chain_pem else []
        if any(verify_issued_by(cert, x) and verify_issued_by(x, root) for x in chain[1:]):
            return None
        phase = params.rotation.phase_of(cluster).label
        return (f"issued under the {'old' if new else 'new'} root, but phase {phase} signs with "
                f"the {'new' if new else 'old'} root ({fingerprint(root)[:16]}): the phase's "
                "render is not applied")

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


def verifier(spec: Spec, plan: MeshPlan, trust: Callable[[PkiRef], str] | None = None) -> Verifier:
    """The provider's verifier for ``plan``."""
    from stacks.istio.verify import IstioVerifier
    from stacks.linkerd.verify import LinkerdVerifier

    cls = IstioVerifier if plan.provider == "istio" else LinkerdVerifier
    return cls(spec, plan, trust)
