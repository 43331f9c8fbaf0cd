"""The plan's PKI objects, checked as the mesh checks them (``meshboot preflight``).

Preflight checks what the plan deploys, not a second definition of it: the
plan's ``cacerts`` Secret (Istio), or its ``linkerd-identity-issuer`` Secret
and the trust anchors of the control-plane values (Linkerd), their
``PkiRef`` resolved by :func:`stacks.plan.pki_pem` as render and Pulumi
resolve them, then :mod:`pki.checks` on the result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pki.checks import Check, istio_cacerts_checks, linkerd_identity_checks
from stacks.plan import MeshPlan, PkiRef, Ref, is_secret, resolve

# (step, Secret name) of the PKI Secret each provider's plan gives a cluster.
ISTIO_CACERTS = ("cacerts", "cacerts")
LINKERD_ISSUER = ("identity-issuer", "linkerd-identity-issuer")
LINKERD_CONTROL_PLANE = "linkerd-control-plane"   # its values carry identityTrustAnchorsPEM


def checked_secret(provider: str) -> str:
    """The name of the Secret :func:`pki_checks` checks, for messages."""
    return (ISTIO_CACERTS if provider == "istio" else LINKERD_ISSUER)[1]


def pki_checks(plan: MeshPlan, cluster: str,
               resolve_pki: Callable[[PkiRef], str]) -> list[Check] | None:
    """The mesh's checks on ``cluster``'s PKI Secret in the plan; None if it has none
    (an Istio remote runs no istiod, so it gets no ``cacerts``)."""
    cp = plan.cluster(cluster)

    def pem(value: Any) -> Any:
        return resolve(value, lambda ref: _pki_only(ref, resolve_pki))

    secret = pki_secret(plan, cluster)
    if secret is None:
        return None
    data = pem(secret.get("stringData") or {})
    if plan.provider == "istio":
        return istio_cacerts_checks(data)
    release = cp.step(LINKERD_CONTROL_PLANE).release
    assert release is not None, f"{cluster}/{LINKERD_CONTROL_PLANE} is not a Helm release"
    anchors = pem(release.values["identityTrustAnchorsPEM"])
    return linkerd_identity_checks(anchors, data.get("tls.crt", ""), data.get("tls.key"))


def pki_secret(plan: MeshPlan, cluster: str) -> dict[str, Any] | None:
    """The PKI Secret (with its PkiRefs) the plan gives ``cluster``, if any."""
    step, name = ISTIO_CACERTS if plan.provider == "istio" else LINKERD_ISSUER
    cp = plan.cluster(cluster)
    if not any(s.name == step for s in cp.steps):
        return None
    for obj in cp.step(step).objects:
        if is_secret(obj) and obj["metadata"]["name"] == name:
            return obj
    return None


def _pki_only(ref: Ref, resolve_pki: Callable[[PkiRef], str]) -> str:
    if not isinstance(ref, PkiRef):
        raise AssertionError(f"a PKI Secret refers to {ref!r}")
    return resolve_pki(ref)
