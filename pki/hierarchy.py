"""Which certificates to keep and which to (re)issue: shared by the store and Pulumi.

The rule that matters operationally: **a mesh's CA material must not churn.** Every
re-issued intermediate means istiod / linkerd-identity reloading and, for a new root,
a multi-step rotation across all clusters. So:

* the root is generated once and reused forever (or imported, and then never
  generated at all);
* a cluster's intermediate is re-issued only when it is inside its renewal window,
  when its *subject inputs* changed, or when it no longer verifies against the root.

Subject inputs are what ends up in (or determines) the certificate: profile, cluster
name, key algorithm, trust domain and the root it hangs from. Deliberately *not*
included: zone, region, network, validity, renewal window — changing a cluster's zone
must not re-issue its CA, and a new validity only applies at the next renewal.

:func:`build` is pure (no I/O), which is what makes it shareable and testable.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from .ca import CA, PROFILES, certs_from_pem, certs_to_pem, fingerprint, utcnow, verify_issued_by
from .keys import KeyAlgorithm, key_algorithm_of
from .rotation import RootRotation, signs_with_new, trusted_roots

# Same bound as the spec's (clusters.spec.MAX_VALIDITY_DAYS); the PKI package
# does not import the spec.
MAX_VALIDITY_DAYS = 36500

__all__ = [
    "MeshPKI",
    "PkiParams",
    "build",
    "intermediate_inputs",
    "needs_reissue",
    "resolve_root",
    "validate_params",
]


@dataclass(frozen=True)
class PkiParams:
    profile: str  # "istio" | "linkerd"
    mesh_id: str
    trust_domain: str
    key_algorithm: KeyAlgorithm
    root_validity_days: int
    intermediate_validity_days: int
    renew_before_days: int
    clusters: tuple[str, ...]
    imported_root: tuple[str, str] | None = None  # (cert_pem, key_pem) of an enterprise root
    rotation: RootRotation | None = None  # a root rotation in progress (pki.rotation)


@dataclass(frozen=True)
class MeshPKI:
    root: CA
    intermediates: dict[str, CA]  # cluster name -> intermediate / linkerd issuer
    reissued: tuple[str, ...]  # clusters that got a new intermediate in this call
    reasons: Mapping[str, str] = field(default_factory=dict)  # cluster -> why reissued
    # During a rotation: the new root, and each cluster's trust bundle (roots, in order).
    new_root: CA | None = None
    bundles: Mapping[str, tuple[x509.Certificate, ...]] = field(default_factory=dict)

    def trusted(self, cluster: str) -> tuple[x509.Certificate, ...]:
        """The roots ``cluster`` trusts (its ``root-cert.pem`` / trust anchors)."""
        return self.bundles.get(cluster, (self.root.cert,))

    def bundle_pems(self) -> dict[str, str]:
        """Cluster -> trust bundle PEM, for the clusters whose bundle is not the root alone."""
        return {c: certs_to_pem(certs) for c, certs in self.bundles.items()}


def validate_params(params: PkiParams) -> None:
    """Reject specs that could only produce a hierarchy the mesh refuses (or churns)."""
    if params.profile not in PROFILES:
        raise ValueError(f"unknown PKI profile {params.profile!r}; expected one of {PROFILES}")
    alg = KeyAlgorithm(params.key_algorithm)
    if params.profile == "linkerd" and alg is not KeyAlgorithm.ECDSA_P256:
        raise ValueError(f"the linkerd profile needs key algorithm ecdsa-p256, got {alg}")
    if not params.trust_domain:
        raise ValueError("trust_domain must not be empty")
    for name in ("root_validity_days", "intermediate_validity_days"):
        if getattr(params, name) <= 0:
            raise ValueError(f"{name} must be positive")
        if getattr(params, name) > MAX_VALIDITY_DAYS:
            raise ValueError(f"{name} must be at most {MAX_VALIDITY_DAYS} (100 years): "
                             "later notAfter dates approach what X.509 can express (year 9999)")
    if params.renew_before_days < 0:
        raise ValueError("renew_before_days must not be negative")
    if params.renew_before_days >= params.intermediate_validity_days:
        raise ValueError(
            f"renew_before_days ({params.renew_before_days}) must be smaller than "
            f"intermediate_validity_days ({params.intermediate_validity_days}), otherwise "
            "every run would re-issue every intermediate"
        )
    if len(set(params.clusters)) != len(params.clusters):
        raise ValueError(f"duplicate cluster names in {params.clusters}")


def intermediate_inputs(
    params: PkiParams, cluster: str, root_fingerprint: str = ""
) -> dict[str, Any]:
    """The subject inputs of one cluster's intermediate (see module docstring).

    ``root_fingerprint`` ties the intermediate to its root: a new or imported root
    changes the inputs and therefore re-issues every intermediate under it.
    """
    return {
        "profile": params.profile,
        "cluster": cluster,
        "key_algorithm": KeyAlgorithm(params.key_algorithm).value,
        "trust_domain": params.trust_domain,
        "root_fingerprint": root_fingerprint,
    }


def needs_reissue(
    cert: x509.Certificate,
    stored_inputs: Mapping[str, Any],
    wanted_inputs: Mapping[str, Any],
    renew_before_days: int,
    now: dt.datetime | None = None,
    *,
    root: x509.Certificate | None = None,
) -> str | None:
    """Why ``cert`` must be replaced, or ``None`` if it is still good.

    The reason is a short human sentence, shown in the CLI summary and Pulumi logs.
    With ``root`` given, the certificate must also still be signed by that root.
    """
    now = now or utcnow()
    changed = sorted(
        k for k in set(stored_inputs) | set(wanted_inputs)
        if stored_inputs.get(k) != wanted_inputs.get(k)
    )
    if changed:
        details = ", ".join(
            f"{k}: {stored_inputs.get(k)!r} -> {wanted_inputs.get(k)!r}" for k in changed
        )
        return f"subject inputs changed ({details})"
    want_alg = wanted_inputs.get("key_algorithm")
    try:
        have_alg = key_algorithm_of(cert).value
    except ValueError as exc:
        return f"unsupported key: {exc}"
    if want_alg and have_alg != want_alg:
        return f"certificate key is {have_alg}, spec wants {want_alg}"
    not_after = cert.not_valid_after_utc
    if now >= not_after:
        return f"expired on {not_after.isoformat()}"
    if now >= not_after - dt.timedelta(days=renew_before_days):
        return (
            f"expires {not_after.isoformat()}, inside the {renew_before_days}-day "
            "renewal window"
        )
    if cert.not_valid_before_utc > now + dt.timedelta(hours=2):
        return f"not valid before {cert.not_valid_before_utc.isoformat()} (clock moved back?)"
    if root is not None and not verify_issued_by(cert, root):
        return "no longer signed by the current root"
    return None


def resolve_root(
    params: PkiParams, existing_root: CA | None, now: dt.datetime | None = None
) -> CA:
    """The root to use: imported if configured, else the existing one, else a new one."""
    if params.imported_root is not None:
        cert_pem, key_pem = params.imported_root
        try:
            root = CA.from_pem(cert_pem, key_pem)
        except ValueError as exc:
            raise ValueError(f"imported root is unusable: {exc}") from exc
        alg = key_algorithm_of(root.key)
        if params.profile == "linkerd" and alg is not KeyAlgorithm.ECDSA_P256:
            raise ValueError(
                f"imported root uses {alg}, but the linkerd profile needs an ECDSA P-256 "
                "trust anchor that can sign ECDSA P-256 issuers"
            )
        return root
    if existing_root is not None:
        return existing_root
    return CA.create_root(
        profile=params.profile,
        key_algorithm=params.key_algorithm,
        validity_days=params.root_validity_days,
        trust_domain=params.trust_domain,
        now=now,
    )


def build(
    params: PkiParams,
    existing_root: CA | None,
    existing: Mapping[str, tuple[CA, Mapping[str, Any]]],
    now: dt.datetime | None = None,
) -> MeshPKI:
    """Reuse whatever is still good, issue what is missing, expiring or changed.

    ``existing`` maps cluster name to (intermediate, the subject inputs it was issued
    for). Clusters in ``existing`` but not in ``params.clusters`` are ignored (the
    caller decides whether to keep their files). Pure: no I/O, no global state.
    """
    validate_params(params)
    now = now or utcnow()
    root = resolve_root(params, existing_root, now)
    if root.cert.not_valid_after_utc <= now:
        raise ValueError(
            f"the root CA expired on {root.cert.not_valid_after_utc.isoformat()}; root "
            "rotation is a deliberate procedure and is not done automatically"
        )
    new_root = rotation_root(params, root, now)
    intermediates: dict[str, CA] = {}
    reissued: list[str] = []
    reasons: dict[str, str] = {}
    bundles: dict[str, tuple[x509.Certificate, ...]] = {}
    for cluster in params.clusters:
        signer = root
        if new_root is not None and params.rotation is not None:
            phase = params.rotation.phase_of(cluster)
            roots = {"old": root.cert, "new": new_root.cert}
            bundles[cluster] = tuple(roots[r] for r in trusted_roots(phase))
            if signs_with_new(phase):
                signer = new_root
        wanted = intermediate_inputs(params, cluster, fingerprint(signer.cert))
        reason: str | None = "no intermediate yet"
        if cluster in existing:
            ca, stored = existing[cluster]
            reason = needs_reissue(
                ca.cert, stored, wanted, params.renew_before_days, now, root=signer.cert
            )
            if reason is None:
                # normalise the chain so callers always see ... -> this root
                intermediates[cluster] = CA(cert=ca.cert, key=ca.key,
                                            chain=(signer.cert, *signer.chain))
                continue
        intermediates[cluster] = signer.issue_intermediate(
            profile=params.profile,
            cluster=cluster,
            key_algorithm=params.key_algorithm,
            validity_days=params.intermediate_validity_days,
            trust_domain=params.trust_domain,
            now=now,
        )
        reissued.append(cluster)
        reasons[cluster] = reason or "no intermediate yet"
    return MeshPKI(root=root, intermediates=intermediates, reissued=tuple(reissued),
                   reasons=reasons, new_root=new_root, bundles=bundles)


def rotation_bundles(params: PkiParams) -> dict[str, str]:
    """Cluster -> trust bundle PEM during a root rotation ({} outside one).

    From the parameters alone (the imported current root and the rotation's new
    root; no private key used, nothing issued): what ``meshboot verify`` compares
    the live clusters with, equal to :meth:`MeshPKI.bundle_pems` of a built hierarchy.
    """
    if params.rotation is None or params.imported_root is None:
        return {}
    roots = {"old": certs_from_pem(params.imported_root[0])[0],
             "new": certs_from_pem(params.rotation.new_root[0])[0]}
    return {c: certs_to_pem(roots[r] for r in trusted_roots(params.rotation.phase_of(c)))
            for c in params.clusters}


def rotation_root(params: PkiParams, root: CA, now: dt.datetime | None = None) -> CA | None:
    """The rotation's new root, checked as an imported root is; None outside a rotation."""
    if params.rotation is None:
        return None
    try:
        new_root = CA.from_pem(*params.rotation.new_root)
    except ValueError as exc:
        raise ValueError(f"the rotation's new root is unusable: {exc}") from exc
    if new_root.chain:
        raise ValueError("the rotation's new root must be a root (self-signed)")
    if params.profile == "linkerd" and key_algorithm_of(new_root.key) is not KeyAlgorithm.ECDSA_P256:
        raise ValueError("the rotation's new root must be ECDSA P-256 (the linkerd profile)")
    if fingerprint(new_root.cert) == fingerprint(root.cert):
        raise ValueError("the rotation's new root is the current root")
    if new_root.cert.not_valid_after_utc <= (now or utcnow()):
        raise ValueError(f"the rotation's new root expired on "
                         f"{new_root.cert.not_valid_after_utc.isoformat()}")
    return new_root
