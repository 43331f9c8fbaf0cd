"""The certificate profiles: what istio tools/certs and the Linkerd docs produce."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from pki.ca import CA, ISTIOD_SAN, certs_from_pem
from pki.keys import (
    KeyAlgorithm,
    generate_key,
    key_algorithm_of,
    load_private_key,
    private_key_to_pem,
    public_key_bytes,
)
from tests.support.pki_material import istio_cacerts, linkerd_issuer_secret_data

ISTIO_ALGS = [KeyAlgorithm.ECDSA_P256, KeyAlgorithm.RSA_2048]


def ext(cert: x509.Certificate, cls: type) -> x509.Extension:  # type: ignore[type-arg]
    return cert.extensions.get_extension_for_class(cls)


def name_attrs(name: x509.Name) -> dict[str, str]:
    return {a.oid._name: str(a.value) for a in name}


def assert_ski_aki(cert: x509.Certificate, issuer: x509.Certificate) -> None:
    ski = ext(cert, x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())  # type: ignore[arg-type]
    aki = ext(cert, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ext(issuer, x509.SubjectKeyIdentifier).value.digest


@pytest.mark.parametrize("alg", ISTIO_ALGS)
def test_istio_root_and_intermediate_follow_tools_certs(alg: KeyAlgorithm) -> None:
    root = CA.create_root(profile="istio", key_algorithm=alg, validity_days=3650)
    inter = root.issue_intermediate(
        profile="istio", cluster="east", key_algorithm=alg, validity_days=365
    )

    assert name_attrs(root.cert.subject) == {"organizationName": "Istio", "commonName": "Root CA"}
    assert root.cert.issuer == root.cert.subject
    bc = ext(root.cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length is None
    ku = ext(root.cert, x509.KeyUsage)
    assert ku.critical
    assert ku.value.key_cert_sign and ku.value.crl_sign and ku.value.digital_signature
    assert ku.value.content_commitment
    # keyEncipherment as upstream for RSA; RFC 5480 forbids it on EC keys.
    assert ku.value.key_encipherment is alg.is_rsa
    assert_ski_aki(root.cert, root.cert)

    assert name_attrs(inter.cert.subject) == {
        "organizationName": "Istio",
        "commonName": "Intermediate CA",
        "localityName": "east",
    }
    assert inter.cert.issuer == root.cert.subject
    bc = ext(inter.cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    assert ext(inter.cert, x509.KeyUsage).value == ku.value
    san = ext(inter.cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [ISTIOD_SAN]
    with pytest.raises(x509.ExtensionNotFound):  # an EKU without serverAuth breaks istiod
        ext(inter.cert, x509.ExtendedKeyUsage)
    assert_ski_aki(inter.cert, root.cert)

    for cert in (root.cert, inter.cert):
        assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
        assert key_algorithm_of(cert) is alg
    assert root.cert.serial_number != inter.cert.serial_number
    assert inter.cert.serial_number.bit_length() > 100  # random, not sequential
    inter.cert.verify_directly_issued_by(root.cert)
    assert inter.chain == (root.cert,)
    assert inter.root_cert == root.cert


def test_linkerd_anchor_and_issuer(linkerd_anchor: CA) -> None:
    issuer = linkerd_anchor.issue_intermediate(
        profile="linkerd", cluster="west", key_algorithm="ecdsa-p256", validity_days=365
    )
    anchor = linkerd_anchor.cert
    cn = anchor.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == "root.linkerd.cluster.local"
    bc = ext(anchor, x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = ext(anchor, x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert not ku.value.key_encipherment

    icn = issuer.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert icn == "identity.linkerd.cluster.local"
    bc = ext(issuer.cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    assert key_algorithm_of(issuer.cert) is KeyAlgorithm.ECDSA_P256
    issuer.cert.verify_directly_issued_by(anchor)
    assert_ski_aki(issuer.cert, anchor)


@pytest.mark.parametrize("alg", ["rsa-2048", "rsa-4096"])
def test_linkerd_refuses_rsa(alg: str, linkerd_anchor: CA) -> None:
    with pytest.raises(ValueError, match="ECDSA P-256"):
        CA.create_root(profile="linkerd", key_algorithm=alg, validity_days=10)
    with pytest.raises(ValueError, match="ECDSA P-256"):
        linkerd_anchor.issue_intermediate(
            profile="linkerd", cluster="a", key_algorithm=alg, validity_days=10
        )


def test_unknown_profile_rejected() -> None:
    with pytest.raises(ValueError, match="unknown PKI profile"):
        CA.create_root(profile="consul", key_algorithm="ecdsa-p256", validity_days=10)


def test_backdated_and_capped_by_issuer(now: dt.datetime) -> None:
    root = CA.create_root(profile="istio", key_algorithm="ecdsa-p256", validity_days=30, now=now)
    inter = root.issue_intermediate(
        profile="istio", cluster="a", key_algorithm="ecdsa-p256", validity_days=365, now=now
    )
    skew = now - inter.cert.not_valid_before_utc
    assert dt.timedelta(minutes=59) < skew <= dt.timedelta(hours=1, seconds=1)
    # an intermediate can never outlive its root
    assert inter.cert.not_valid_after_utc == root.cert.not_valid_after_utc


def test_from_pem_roundtrip_and_errors(istio_root: CA, foreign_root: CA) -> None:
    inter = istio_root.issue_intermediate(
        profile="istio", cluster="a", key_algorithm="ecdsa-p256", validity_days=30
    )
    again = CA.from_pem(inter.cert_pem, inter.key_pem, inter.chain_pem)
    assert again.cert == inter.cert and again.chain == inter.chain
    assert CA.from_pem(inter.cert_pem, inter.key_pem, istio_root.cert_pem).chain == inter.chain

    with pytest.raises(ValueError, match="does not match"):
        CA.from_pem(inter.cert_pem, foreign_root.key_pem)
    leaf = inter.issue_leaf(dns_names=["x.example"])
    with pytest.raises(ValueError, match="not a CA"):
        CA.from_pem(leaf.cert_pem, leaf.key_pem)
    with pytest.raises(ValueError, match="chain is broken"):
        CA.from_pem(inter.cert_pem, inter.key_pem, foreign_root.cert_pem)


def test_keys_pem_roundtrip_and_encryption() -> None:
    key = generate_key("ecdsa-p256")
    plain = private_key_to_pem(key, None)
    assert plain.startswith(b"-----BEGIN PRIVATE KEY-----")
    enc = private_key_to_pem(key, b"s3cret")
    assert enc.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert key_algorithm_of(load_private_key(enc, b"s3cret")) is KeyAlgorithm.ECDSA_P256
    with pytest.raises(ValueError):
        load_private_key(enc, b"wrong")
    with pytest.raises(TypeError):
        load_private_key(enc, None)


def test_key_algorithm_of_rejects_others() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    with pytest.raises(ValueError, match="curve"):
        key_algorithm_of(ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(ValueError, match="unsupported key type"):
        key_algorithm_of(ed25519.Ed25519PrivateKey.generate())
    assert key_algorithm_of(generate_key("rsa-2048").public_key()) is KeyAlgorithm.RSA_2048


def test_istio_cacerts_bundle(istio_root: CA) -> None:
    inter = istio_root.issue_intermediate(
        profile="istio", cluster="a", key_algorithm="ecdsa-p256", validity_days=30
    )
    data = istio_cacerts(inter)
    assert set(data) == {"ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem"}
    assert certs_from_pem(data["ca-cert.pem"]) == [inter.cert]
    assert certs_from_pem(data["cert-chain.pem"]) == [inter.cert, istio_root.cert]
    assert certs_from_pem(data["root-cert.pem"]) == [istio_root.cert]
    assert data["ca-key.pem"].startswith("-----BEGIN PRIVATE KEY-----")
    with pytest.raises(ValueError):
        istio_cacerts(istio_root)


def test_linkerd_bundles(linkerd_anchor: CA) -> None:
    issuer = linkerd_anchor.issue_intermediate(
        profile="linkerd", cluster="a", key_algorithm="ecdsa-p256", validity_days=30
    )
    data = linkerd_issuer_secret_data(issuer)
    assert set(data) == {"tls.crt", "tls.key", "ca.crt"}
    assert certs_from_pem(data["tls.crt"]) == [issuer.cert]
    assert certs_from_pem(data["ca.crt"]) == [linkerd_anchor.cert]
    tls_key = load_private_key(data["tls.key"])  # unencrypted, loads without passphrase
    assert public_key_bytes(tls_key) == public_key_bytes(issuer.cert)
