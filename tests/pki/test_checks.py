"""Offline replicas of `linkerd check` identity checks and istiod's cacerts refusals."""

from __future__ import annotations

import datetime as dt

import pytest

from pki.ca import CA
from pki.checks import Check, istio_cacerts_checks, linkerd_identity_checks
from pki.keys import generate_key, private_key_to_pem
from tests.support.pki_material import istio_cacerts


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


LINKERD_NAMES = {
    "trust anchors are using supported crypto algorithm",
    "trust anchors are within their validity period",
    "trust anchors are valid for at least 60 days",
    "issuer cert is using supported crypto algorithm",
    "issuer cert is within its validity period",
    "issuer cert is valid for at least 60 days",
    "issuer cert is issued by the trust anchor",
    "issuer cert matches key",
}


@pytest.fixture(scope="module")
def issuer(linkerd_anchor: CA) -> CA:
    return linkerd_anchor.issue_intermediate(
        profile="linkerd", cluster="east", key_algorithm="ecdsa-p256", validity_days=365
    )


def test_generated_linkerd_hierarchy_passes_everything(linkerd_anchor: CA, issuer: CA) -> None:
    checks = linkerd_identity_checks(linkerd_anchor.cert_pem, issuer.cert_pem, issuer.key_pem)
    assert LINKERD_NAMES <= set(by_name(checks))
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]


def test_rsa_issuer_fails_algorithm_check() -> None:
    # an RSA anchor is tolerated by linkerd check, an RSA issuer is not
    anchor = CA.create_root(profile="istio", key_algorithm="rsa-2048", validity_days=3650)
    rsa_issuer = anchor.issue_intermediate(
        profile="istio", cluster="a", key_algorithm="rsa-2048", validity_days=365
    )
    checks = by_name(linkerd_identity_checks(anchor.cert_pem, rsa_issuer.cert_pem))
    assert checks["trust anchors are using supported crypto algorithm"].ok
    algo = checks["issuer cert is using supported crypto algorithm"]
    assert not algo.ok and algo.failed and "ECDSA" in algo.message


def test_short_lived_issuer_warns(linkerd_anchor: CA) -> None:
    short = linkerd_anchor.issue_intermediate(
        profile="linkerd", cluster="a", key_algorithm="ecdsa-p256", validity_days=30
    )
    checks = by_name(linkerd_identity_checks(linkerd_anchor.cert_pem, short.cert_pem))
    soon = checks["issuer cert is valid for at least 60 days"]
    assert not soon.ok and soon.warning and not soon.failed
    assert "will expire on" in soon.message
    assert checks["issuer cert is within its validity period"].ok


def test_short_lived_anchor_warns() -> None:
    anchor = CA.create_root(profile="linkerd", key_algorithm="ecdsa-p256", validity_days=20)
    issuer = anchor.issue_intermediate(
        profile="linkerd", cluster="a", key_algorithm="ecdsa-p256", validity_days=10
    )
    checks = by_name(linkerd_identity_checks(anchor.cert_pem, issuer.cert_pem))
    assert checks["trust anchors are valid for at least 60 days"].warning
    assert not checks["trust anchors are valid for at least 60 days"].ok


def test_issuer_from_other_anchor_fails(linkerd_anchor: CA, issuer: CA) -> None:
    other = CA.create_root(profile="linkerd", key_algorithm="ecdsa-p256", validity_days=3650)
    checks = by_name(linkerd_identity_checks(other.cert_pem, issuer.cert_pem))
    verdict = checks["issuer cert is issued by the trust anchor"]
    assert not verdict.ok and verdict.failed and "unknown authority" in verdict.message
    # a trust bundle containing both anchors (rotation) is fine
    both = other.cert_pem + linkerd_anchor.cert_pem
    assert by_name(linkerd_identity_checks(both, issuer.cert_pem))[
        "issuer cert is issued by the trust anchor"
    ].ok


def test_expired_issuer_fails(linkerd_anchor: CA) -> None:
    old = linkerd_anchor.issue_intermediate(
        profile="linkerd", cluster="a", key_algorithm="ecdsa-p256", validity_days=10,
        now=dt.datetime.now(dt.UTC) - dt.timedelta(days=20),
    )
    checks = by_name(linkerd_identity_checks(linkerd_anchor.cert_pem, old.cert_pem))
    assert not checks["issuer cert is within its validity period"].ok
    assert "Expired on" in checks["issuer cert is within its validity period"].message
    assert not checks["issuer cert is issued by the trust anchor"].ok


def test_issuer_key_mismatch(linkerd_anchor: CA, issuer: CA) -> None:
    wrong = private_key_to_pem(generate_key("ecdsa-p256")).decode()
    checks = by_name(linkerd_identity_checks(linkerd_anchor.cert_pem, issuer.cert_pem, wrong))
    assert not checks["issuer cert matches key"].ok


def test_garbage_pem_is_a_failed_check_not_an_exception() -> None:
    checks = linkerd_identity_checks("nope", "nope")
    assert len(checks) == 1 and not checks[0].ok


# ----------------------------------------------------------------------- istio
@pytest.fixture(scope="module")
def cacerts(istio_root: CA) -> dict[str, str]:
    inter = istio_root.issue_intermediate(
        profile="istio", cluster="east", key_algorithm="ecdsa-p256", validity_days=365
    )
    return istio_cacerts(inter)


def test_generated_cacerts_pass(cacerts: dict[str, str]) -> None:
    checks = istio_cacerts_checks(cacerts)
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]
    assert len(checks) >= 6


def test_partial_bundle_fails(cacerts: dict[str, str]) -> None:
    partial = {k: v for k, v in cacerts.items() if k != "cert-chain.pem"}
    checks = istio_cacerts_checks(partial)
    assert not checks[0].ok and "cert-chain.pem" in checks[0].message


def test_key_mismatch_fails(cacerts: dict[str, str]) -> None:
    bad = {**cacerts, "ca-key.pem": private_key_to_pem(generate_key("ecdsa-p256")).decode()}
    assert not by_name(istio_cacerts_checks(bad))["ca-key.pem matches ca-cert.pem"].ok


def test_encrypted_key_fails(cacerts: dict[str, str]) -> None:
    enc = private_key_to_pem(generate_key("ecdsa-p256"), b"pw").decode()
    checks = by_name(istio_cacerts_checks({**cacerts, "ca-key.pem": enc}))
    assert not checks["ca-key.pem has a supported format"].ok


def test_foreign_root_fails(cacerts: dict[str, str], foreign_root: CA) -> None:
    bad = {**cacerts, "root-cert.pem": foreign_root.cert_pem}
    assert not by_name(istio_cacerts_checks(bad))["ca-cert.pem verifies to root-cert.pem"].ok


def test_leaf_as_intermediate_fails(istio_root: CA) -> None:
    leaf = istio_root.issue_leaf(dns_names=["x.example"])
    bundle = {
        "ca-cert.pem": leaf.cert_pem,
        "ca-key.pem": leaf.key_pem,
        "root-cert.pem": istio_root.cert_pem,
        "cert-chain.pem": leaf.cert_pem + istio_root.cert_pem,
    }
    checks = by_name(istio_cacerts_checks(bundle))
    assert not checks["ca-cert.pem is a CA"].ok


def test_expired_intermediate_fails(istio_root: CA) -> None:
    old = istio_root.issue_intermediate(
        profile="istio", cluster="a", key_algorithm="ecdsa-p256", validity_days=5,
        now=dt.datetime.now(dt.UTC) - dt.timedelta(days=10),
    )
    checks = by_name(istio_cacerts_checks(istio_cacerts(old)))
    assert not checks["certificates are within their validity period"].ok
    assert not checks["ca-cert.pem verifies to root-cert.pem"].ok


def test_intermediate_with_eku_without_server_auth_fails(istio_root: CA) -> None:
    # istiod verifies its CA with Go's default serverAuth usage: such an EKU breaks it
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID

    good = istio_root.issue_intermediate(
        profile="istio", cluster="a", key_algorithm="ecdsa-p256", validity_days=30
    )
    builder = x509.CertificateBuilder(
        issuer_name=good.cert.issuer,
        subject_name=good.cert.subject,
        public_key=good.key.public_key(),
        serial_number=x509.random_serial_number(),
        not_valid_before=good.cert.not_valid_before_utc,
        not_valid_after=good.cert.not_valid_after_utc,
        extensions=[e for e in good.cert.extensions],
    ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    bad_cert = builder.sign(istio_root.key, hashes.SHA256())
    bad = CA(cert=bad_cert, key=good.key, chain=good.chain)
    checks = by_name(istio_cacerts_checks(istio_cacerts(bad)))
    verdict = checks["ca-cert.pem verifies to root-cert.pem"]
    assert not verdict.ok and "key usage" in verdict.message


def _resigned_root(key_algorithm: str, digest: object) -> CA:
    """A root whose own (self-)signature uses ``digest`` instead of SHA-256."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    base = CA.create_root(profile="istio", key_algorithm=key_algorithm, validity_days=3650)
    c = base.cert
    builder = x509.CertificateBuilder().subject_name(c.subject).issuer_name(c.issuer) \
        .public_key(c.public_key()).serial_number(c.serial_number) \
        .not_valid_before(c.not_valid_before_utc).not_valid_after(c.not_valid_after_utc)
    for ext in c.extensions:
        builder = builder.add_extension(ext.value, critical=ext.critical)
    key = base.key
    if isinstance(key, rsa.RSAPrivateKey):
        cert = builder.sign(key, digest, rsa_padding=padding.PKCS1v15())  # type: ignore[arg-type]
    else:
        cert = builder.sign(key, digest)  # type: ignore[arg-type]
    return CA.from_key(cert, key)


@pytest.mark.parametrize("key_algorithm", ["ecdsa-p256", "rsa-2048"])
def test_anchor_signature_algorithm_is_checked(key_algorithm: str) -> None:
    # linkerd2 pkg/issuercerts/issuercerts.go CheckTrustAnchorAlgoRequirements
    # (run by pkg/healthcheck "trust anchors are using supported crypto algorithm"):
    # a P-256 anchor must itself be signed ECDSA-SHA256 (or SHA256-RSA), an RSA
    # anchor SHA256-RSA. The key alone passing is not enough.
    from cryptography.hazmat.primitives import hashes

    anchor = _resigned_root(key_algorithm, hashes.SHA384())
    issuer = anchor.issue_intermediate(
        profile="istio", cluster="a", key_algorithm="ecdsa-p256", validity_days=365
    )
    checks = by_name(linkerd_identity_checks(anchor.cert_pem, issuer.cert_pem))
    algo = checks["trust anchors are using supported crypto algorithm"]
    assert not algo.ok and algo.failed, algo
    assert "SHA384" in algo.message
    # the same anchor signed with SHA-256 passes
    good = _resigned_root(key_algorithm, hashes.SHA256())
    checks = by_name(linkerd_identity_checks(good.cert_pem, good.issue_intermediate(
        profile="istio", cluster="a", key_algorithm="ecdsa-p256",
        validity_days=365).cert_pem))
    assert checks["trust anchors are using supported crypto algorithm"].ok
