"""The exact Secret/ConfigMap payloads the meshes load. Keys and order matter here.

Istio's ``cacerts`` Secret must carry all four files or istiod refuses to start;
``cert-chain.pem`` is intermediate then root. Linkerd's external-CA mode reads a
``kubernetes.io/tls`` Secret ``linkerd-identity-issuer`` plus the trust bundle
ConfigMap ``linkerd-identity-trust-roots`` (key ``ca-bundle.crt``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from cryptography import x509

from .ca import CA, certs_to_pem, fingerprint

__all__ = ["istio_cacerts", "linkerd_issuer_secret_data", "trust_bundle"]


def trust_bundle(roots: Iterable[x509.Certificate]) -> str:
    """Concatenate roots as PEM, dropping duplicates but keeping order.

    Order is kept so that "old root first, new root second" during a rotation renders
    the same bytes every time (no spurious diffs); duplicates are dropped because
    ``root-cert.pem`` with the same root twice is pointless noise.
    """
    seen: set[str] = set()
    unique = []
    for cert in roots:
        fp = fingerprint(cert)
        if fp not in seen:
            seen.add(fp)
            unique.append(cert)
    return certs_to_pem(unique)


def istio_cacerts(
    intermediate: CA, extra_roots: Sequence[x509.Certificate] = ()
) -> dict[str, str]:
    """Data of the ``cacerts`` Secret in ``istio-system`` for one cluster.

    ``extra_roots`` are appended to ``root-cert.pem`` for multi-root rotation
    (``ISTIO_MULTIROOT_MESH``); ``cert-chain.pem`` always ends at the issuing root.
    """
    if not intermediate.chain:
        raise ValueError("istio cacerts need an intermediate CA, not the root itself")
    return {
        "ca-cert.pem": intermediate.cert_pem,
        "ca-key.pem": intermediate.key_pem,
        "root-cert.pem": trust_bundle([intermediate.root_cert, *extra_roots]),
        "cert-chain.pem": intermediate.chain_pem,
    }


def linkerd_issuer_secret_data(issuer: CA) -> dict[str, str]:
    """Data of the ``kubernetes.io/tls`` Secret ``linkerd-identity-issuer``."""
    if not issuer.chain:
        raise ValueError("the linkerd issuer must be signed by the trust anchor")
    return {
        # tls.crt: issuer plus any intermediates between it and the anchor (none for
        # meshboot's two-level hierarchy), so the proxy can present a full chain.
        "tls.crt": certs_to_pem([issuer.cert, *issuer.chain[:-1]]),
        "tls.key": issuer.key_pem,
        "ca.crt": trust_bundle([issuer.root_cert]),
    }
