"""Certificate authorities for the two meshes, in the spirit of ``trustme``.

One small object, :class:`CA`, holds a certificate, its key and the issuers above it.
A root is made with :meth:`CA.create_root` (or imported with :meth:`CA.from_pem`),
per-cluster intermediates with :meth:`CA.issue_intermediate`, and workload-style leaf
certificates (used by the tests to prove the hierarchy really works for mTLS) with
:meth:`CA.issue_leaf`.

The certificate *profiles* are not ours to invent:

* ``istio`` follows istio ``tools/certs`` (``O=Istio, CN=Root CA`` /
  ``O=Istio, CN=Intermediate CA, L=<cluster>``, pathlen:0 intermediates with the
  ``istiod.istio-system.svc`` SAN). Intermediates carry **no** extendedKeyUsage: istiod
  verifies its CA with Go's default ``serverAuth`` usage, and an EKU that leaves out
  serverAuth makes istiod refuse to start.
* ``linkerd`` follows the conventions of ``step certificate create ... --profile
  root-ca / intermediate-ca`` used in the Linkerd docs: anchor
  ``root.linkerd.<trust domain>``, issuer ``identity.linkerd.<trust domain>``, both
  ECDSA P-256 (the only issuer algorithm ``linkerd check`` accepts).

Every certificate gets a random serial, SubjectKeyIdentifier and (except self-signed
roots, where it points at itself) an AuthorityKeyIdentifier derived from the issuer's
key, and a SHA-256 signature. ``not_valid_before`` is backdated by an hour so that a
node whose clock runs a little behind does not reject a certificate minted seconds ago.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .keys import (
    KeyAlgorithm,
    PrivateKey,
    generate_key,
    key_algorithm_of,
    load_private_key,
    private_key_to_pem,
    public_key_bytes,
)

__all__ = [
    "CA",
    "CLOCK_SKEW",
    "ISTIOD_SAN",
    "Leaf",
    "PROFILES",
    "certs_from_pem",
    "certs_to_pem",
    "fingerprint",
    "utcnow",
    "verify_issued_by",
]

PROFILES = ("istio", "linkerd")
ISTIOD_SAN = "istiod.istio-system.svc"
CLOCK_SKEW = dt.timedelta(hours=1)
DEFAULT_TRUST_DOMAIN = "cluster.local"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return utcnow()
    if now.tzinfo is None:
        raise ValueError("`now` must be timezone-aware (use datetime.UTC)")
    return now


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint as lowercase hex: how meta.json and Pulumi state name a cert."""
    return cert.fingerprint(hashes.SHA256()).hex()


def certs_to_pem(certs: Iterable[x509.Certificate]) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


def certs_from_pem(pem: str | bytes) -> list[x509.Certificate]:
    data = pem.encode() if isinstance(pem, str) else pem
    if not data.strip():
        return []
    return x509.load_pem_x509_certificates(data)


def verify_issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when ``issuer``'s key signed ``cert`` and the names line up."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise ValueError(f"unknown PKI profile {profile!r}; expected one of {PROFILES}")
    return profile


def _check_linkerd_alg(alg: KeyAlgorithm) -> None:
    if alg is not KeyAlgorithm.ECDSA_P256:
        raise ValueError(
            f"the linkerd profile needs ECDSA P-256 keys (linkerd check rejects an issuer "
            f"with any other algorithm); got {alg}"
        )


def _ca_key_usage(alg: KeyAlgorithm, profile: str) -> x509.KeyUsage:
    # istio: upstream tools/certs sets digitalSignature, nonRepudiation,
    # keyEncipherment, keyCertSign; we add cRLSign (needed if a CRL is ever used).
    # keyEncipherment is only meaningful for RSA and RFC 5480 forbids it on EC keys,
    # so it is kept for RSA (as upstream) and left out for ECDSA.
    # linkerd: step's root-ca/intermediate-ca profiles: keyCertSign, cRLSign (+ DS).
    istio = profile == "istio"
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=istio,
        key_encipherment=istio and alg.is_rsa,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _sign(builder: x509.CertificateBuilder, key: PrivateKey) -> x509.Certificate:
    if isinstance(key, rsa.RSAPrivateKey):
        return builder.sign(key, hashes.SHA256(), rsa_padding=padding.PKCS1v15())
    return builder.sign(key, hashes.SHA256())


def _base_builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: object,
    now: dt.datetime,
    validity_days: int,
    not_after_cap: dt.datetime | None,
) -> x509.CertificateBuilder:
    if validity_days <= 0:
        raise ValueError(f"validity_days must be positive, got {validity_days}")
    not_after = now + dt.timedelta(days=validity_days)
    if not_after_cap is not None and not_after > not_after_cap:
        # A child is useless after its issuer expires; capping keeps not_after honest
        # so renewal logic sees the real deadline.
        not_after = not_after_cap
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
    )


def _ski(key: PrivateKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key.public_key())


@dataclass(frozen=True)
class Leaf:
    """An end-entity certificate (e.g. a workload SVID) and its key.

    ``chain_pem`` is the leaf followed by the intermediates up to, but excluding, the
    root: exactly what ``ssl.SSLContext.load_cert_chain`` and Envoy want to present.
    """

    cert: x509.Certificate
    key: PrivateKey
    issuers: tuple[x509.Certificate, ...] = ()  # intermediates above the leaf, no root

    @property
    def cert_pem(self) -> str:
        return certs_to_pem([self.cert])

    @property
    def key_pem(self) -> str:
        return private_key_to_pem(self.key).decode()

    @property
    def chain_pem(self) -> str:
        return certs_to_pem([self.cert, *self.issuers])


@dataclass(frozen=True)
class CA:
    """A certificate authority: its certificate, its key and the issuers above it.

    ``chain`` holds the issuer certificates from the direct issuer up to and including
    the root; it is empty for a root. Instances are immutable; issuing never changes
    the issuer.
    """

    cert: x509.Certificate
    key: PrivateKey = field(repr=False)
    chain: tuple[x509.Certificate, ...] = ()

    # ----------------------------------------------------------------- properties
    @property
    def cert_pem(self) -> str:
        return certs_to_pem([self.cert])

    @property
    def key_pem(self) -> str:
        """Unencrypted PKCS#8 PEM. Only for placing into Kubernetes Secrets."""
        return private_key_to_pem(self.key).decode()

    @property
    def chain_pem(self) -> str:
        """This certificate and its issuers up to the root (istio ``cert-chain.pem``)."""
        return certs_to_pem([self.cert, *self.chain])

    @property
    def root_cert(self) -> x509.Certificate:
        return self.chain[-1] if self.chain else self.cert

    @property
    def key_algorithm(self) -> KeyAlgorithm:
        return key_algorithm_of(self.key)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.cert)

    @property
    def not_after(self) -> dt.datetime:
        return self.cert.not_valid_after_utc

    # --------------------------------------------------------------- constructors
    @classmethod
    def create_root(
        cls,
        *,
        profile: str,
        key_algorithm: KeyAlgorithm | str,
        validity_days: int,
        trust_domain: str = DEFAULT_TRUST_DOMAIN,
        now: dt.datetime | None = None,
    ) -> CA:
        """Create a self-signed root (istio) or trust anchor (linkerd)."""
        profile = _check_profile(profile)
        alg = KeyAlgorithm(key_algorithm)
        if profile == "linkerd":
            _check_linkerd_alg(alg)
            subject = x509.Name(
                [x509.NameAttribute(NameOID.COMMON_NAME, f"root.linkerd.{trust_domain}")]
            )
        else:
            subject = x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Istio"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "Root CA"),
                ]
            )
        key = generate_key(alg)
        ski = _ski(key)
        builder = (
            _base_builder(subject, subject, key.public_key(), _aware(now), validity_days, None)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_ca_key_usage(alg, profile), critical=True)
            .add_extension(ski, critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                critical=False,
            )
        )
        return cls(cert=_sign(builder, key), key=key)

    @classmethod
    def from_pem(
        cls,
        cert_pem: str | bytes,
        key_pem: str | bytes,
        chain_pem: str | bytes = "",
        *,
        passphrase: bytes | None = None,
    ) -> CA:
        """Load a CA from PEM: an enterprise root to import, or material from a store.

        ``chain_pem`` may or may not start with the certificate itself (both
        ``cert-chain.pem`` style and "issuers only" are accepted). Raises
        :class:`ValueError` when the key does not belong to the certificate, when the
        certificate is not a CA, or when the chain does not link up.
        """
        certs = certs_from_pem(cert_pem)
        if len(certs) != 1:
            raise ValueError(f"expected exactly one certificate in cert_pem, found {len(certs)}")
        chain = certs_from_pem(chain_pem)
        return cls.from_key(certs[0], load_private_key(key_pem, passphrase), chain)

    @classmethod
    def from_key(
        cls,
        cert: x509.Certificate,
        key: PrivateKey,
        chain: Sequence[x509.Certificate] = (),
    ) -> CA:
        """Like :meth:`from_pem`, for already-parsed objects (same checks)."""
        chain = list(chain)
        if public_key_bytes(key) != public_key_bytes(cert):
            raise ValueError(
                f"private key does not match certificate {cert.subject.rfc4514_string()!r}"
            )
        try:
            bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            bc = None
        if bc is None or not bc.ca:
            raise ValueError(
                f"certificate {cert.subject.rfc4514_string()!r} is not a CA "
                "(basicConstraints CA:TRUE missing)"
            )
        if chain and chain[0] == cert:
            chain = chain[1:]
        child = cert
        for parent in chain:
            if not verify_issued_by(child, parent):
                raise ValueError(
                    f"chain is broken: {child.subject.rfc4514_string()!r} is not signed by "
                    f"{parent.subject.rfc4514_string()!r}"
                )
            child = parent
        return cls(cert=cert, key=key, chain=tuple(chain))

    # -------------------------------------------------------------------- issuing
    def issue_intermediate(
        self,
        *,
        profile: str,
        cluster: str,
        key_algorithm: KeyAlgorithm | str,
        validity_days: int,
        trust_domain: str = DEFAULT_TRUST_DOMAIN,
        now: dt.datetime | None = None,
    ) -> CA:
        """Issue a per-cluster intermediate (istio) or identity issuer (linkerd).

        pathlen:0 — the cluster CA may sign workload certificates but never another CA,
        so a stolen cluster key cannot mint a sub-CA that the rest of the mesh trusts.
        """
        profile = _check_profile(profile)
        alg = KeyAlgorithm(key_algorithm)
        if not cluster:
            raise ValueError("cluster name must not be empty")
        if profile == "linkerd":
            _check_linkerd_alg(alg)
            cn = f"identity.linkerd.{trust_domain}"
            subject = x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, cn),
                    x509.NameAttribute(NameOID.LOCALITY_NAME, cluster),
                ]
            )
            san = cn
        else:
            subject = x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Istio"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "Intermediate CA"),
                    x509.NameAttribute(NameOID.LOCALITY_NAME, cluster),
                ]
            )
            san = ISTIOD_SAN
        key = generate_key(alg)
        builder = (
            _base_builder(
                subject,
                self.cert.subject,
                key.public_key(),
                _aware(now),
                validity_days,
                self.cert.not_valid_after_utc,
            )
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_ca_key_usage(alg, profile), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
            .add_extension(_ski(key), critical=False)
            .add_extension(self._aki(), critical=False)
        )
        return CA(cert=_sign(builder, self.key), key=key, chain=(self.cert, *self.chain))

    def issue_leaf(
        self,
        *,
        spiffe_ids: Sequence[str] = (),
        dns_names: Sequence[str] = (),
        validity_days: int = 1,
        key_algorithm: KeyAlgorithm | str | None = None,
        now: dt.datetime | None = None,
    ) -> Leaf:
        """Issue a workload-style certificate usable on both ends of mTLS.

        The key defaults to ECDSA P-256 (fast, and what both meshes use for workloads
        unless configured otherwise). EKU is serverAuth + clientAuth; keyUsage is
        digitalSignature (+ keyEncipherment for RSA). The subject is empty and the SAN
        critical, as the SPIFFE X.509-SVID spec recommends; identity lives in the SAN.
        """
        if not spiffe_ids and not dns_names:
            raise ValueError("a leaf needs at least one SPIFFE ID or DNS name")
        for sid in spiffe_ids:
            if not sid.startswith("spiffe://"):
                raise ValueError(f"not a SPIFFE ID: {sid!r}")
        alg = KeyAlgorithm(key_algorithm or KeyAlgorithm.ECDSA_P256)
        key = generate_key(alg)
        names: list[x509.GeneralName] = [
            x509.UniformResourceIdentifier(s) for s in spiffe_ids
        ]
        names += [x509.DNSName(d) for d in dns_names]
        builder = (
            _base_builder(
                x509.Name([]),
                self.cert.subject,
                key.public_key(),
                _aware(now),
                validity_days,
                self.cert.not_valid_after_utc,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=alg.is_rsa,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(x509.SubjectAlternativeName(names), critical=True)
            .add_extension(_ski(key), critical=False)
            .add_extension(self._aki(), critical=False)
        )
        issuers = tuple(c for c in (self.cert, *self.chain) if c != self.root_cert)
        return Leaf(cert=_sign(builder, self.key), key=key, issuers=issuers)

    # ------------------------------------------------------------------ internals
    def _aki(self) -> x509.AuthorityKeyIdentifier:
        try:
            ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value)
        except x509.ExtensionNotFound:  # imported root without SKI
            return x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.key.public_key()  # type: ignore[arg-type]
            )

