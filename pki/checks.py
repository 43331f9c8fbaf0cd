"""Offline versions of the certificate checks the meshes themselves make.

``meshboot preflight`` runs these before anything touches a cluster, so that a bad
bundle fails on the operator's laptop instead of as a crash-looping istiod or a red
``linkerd check``. Each function returns a list of :class:`Check`; nothing raises for
bad input (a garbled PEM is a failed check, not a traceback).

* :func:`linkerd_identity_checks` mirrors the ``linkerd-identity`` category of
  ``linkerd check`` (linkerd2 ``pkg/healthcheck`` + ``pkg/issuercerts``). Trust
  anchors may be ECDSA P-256 or RSA 2048/4096, themselves signed with SHA-256
  (``CheckTrustAnchorAlgoRequirements``);
  the issuer must be ECDSA P-256. The two "valid for at least 60 days" checks are
  warnings, as upstream.
* :func:`istio_cacerts_checks` mirrors the reasons istiod refuses a plugged-in
  ``cacerts`` Secret (see docs/mesh-facts: partial bundle, unsupported key encoding,
  key/cert mismatch, intermediate not a CA, chain not verifying to root-cert.pem with
  Go's default serverAuth usage, expiry).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, SignatureAlgorithmOID

from .ca import certs_from_pem, utcnow, verify_issued_by
from .keys import load_private_key, public_key_bytes

__all__ = [
    "Check",
    "EXPIRY_WARNING_DAYS",
    "ISTIO_CACERTS_KEYS",
    "istio_cacerts_checks",
    "linkerd_identity_checks",
    "verify_chain",
]

EXPIRY_WARNING_DAYS = 60  # linkerd issuercerts.expirationWarningThresholdInDays
ISTIO_CACERTS_KEYS = ("ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem")
_SHA256 = hashes.SHA256()


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    message: str = ""
    warning: bool = False  # a failed warning check does not fail the run (linkerd "‼")

    @property
    def failed(self) -> bool:
        return not self.ok and not self.warning


def _describe(cert: x509.Certificate) -> str:
    cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    name = str(cn[0].value) if cn else cert.subject.rfc4514_string()
    return f"{cert.serial_number} {name}"


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _validity_error(cert: x509.Certificate, now: dt.datetime) -> str | None:
    if cert.not_valid_before_utc > now:
        return f"not valid before: {_iso(cert.not_valid_before_utc)}"
    if cert.not_valid_after_utc < now:
        return f"not valid anymore. Expired on {_iso(cert.not_valid_after_utc)}"
    return None


def _expiring_error(cert: x509.Certificate, now: dt.datetime) -> str | None:
    if now + dt.timedelta(days=EXPIRY_WARNING_DAYS) > cert.not_valid_after_utc:
        return f"will expire on {_iso(cert.not_valid_after_utc)}"
    return None


def _is_ca(cert: x509.Certificate) -> tuple[bool, int | None]:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False, None
    return bc.ca, bc.path_length


def _eku_allows_server_auth(cert: x509.Certificate) -> bool:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return ExtendedKeyUsageOID.SERVER_AUTH in eku or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE \
        in eku


def verify_chain(
    cert: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    now: dt.datetime | None = None,
) -> str | None:
    """Verify ``cert`` up to one of ``roots`` the way Go's ``x509.Verify`` would.

    Works for CA certificates as the target (which ``cryptography``'s policy verifier
    refuses), checking signatures, validity dates, CA flags, pathlen and that no
    certificate's EKU excludes serverAuth (Go's default usage). Returns an error
    string or ``None``.
    """
    now = now or utcnow()
    root_fps = {r.fingerprint(_SHA256) for r in roots}
    path = [cert]
    current = cert
    pool = list(intermediates)
    for _ in range(len(pool) + 2):
        if current.fingerprint(_SHA256) in root_fps:
            break
        root = next((r for r in roots if verify_issued_by(current, r)), None)
        if root is not None:
            path.append(root)
            break
        parent = next(
            (c for c in pool if c not in path and verify_issued_by(current, c)), None
        )
        if parent is None:
            return f"{_describe(current)}: signed by unknown authority"
        path.append(parent)
        current = parent
    else:
        return "certificate chain too long or cyclic"
    if path[-1].fingerprint(_SHA256) not in root_fps:
        return f"{_describe(path[-1])}: signed by unknown authority"
    for depth, c in enumerate(path):
        err = _validity_error(c, now)
        if err:
            return f"{_describe(c)}: certificate has expired or is not yet valid: {err}"
        if not _eku_allows_server_auth(c):
            return f"{_describe(c)}: certificate specifies an incompatible key usage"
        if depth == 0:
            continue
        is_ca, pathlen = _is_ca(c)
        if not is_ca:
            return f"{_describe(c)}: issuer is not a CA"
        # pathlen counts the intermediates between c and the target (RFC 5280 4.2.1.9)
        below = depth - 1
        if pathlen is not None and below > pathlen:
            return f"{_describe(c)}: too many intermediates for path length constraint"
    return None


# --------------------------------------------------------------------- linkerd
# Go's crypto/x509 SignatureAlgorithm names, as linkerd check prints them.
_GO_SIGNATURE_NAMES = {
    SignatureAlgorithmOID.ECDSA_WITH_SHA256: "ECDSA-SHA256",
    SignatureAlgorithmOID.ECDSA_WITH_SHA384: "ECDSA-SHA384",
    SignatureAlgorithmOID.ECDSA_WITH_SHA512: "ECDSA-SHA512",
    SignatureAlgorithmOID.RSA_WITH_SHA1: "SHA1-RSA",
    SignatureAlgorithmOID.RSA_WITH_SHA256: "SHA256-RSA",
    SignatureAlgorithmOID.RSA_WITH_SHA384: "SHA384-RSA",
    SignatureAlgorithmOID.RSA_WITH_SHA512: "SHA512-RSA",
    SignatureAlgorithmOID.RSASSA_PSS: "RSASSA-PSS",
    SignatureAlgorithmOID.ED25519: "Ed25519",
}


def _signature_name(cert: x509.Certificate) -> str:
    oid = cert.signature_algorithm_oid
    return _GO_SIGNATURE_NAMES.get(oid, getattr(oid, "_name", oid.dotted_string))


def _anchor_algo_error(cert: x509.Certificate) -> str | None:
    # linkerd2 pkg/issuercerts/issuercerts.go CheckTrustAnchorAlgoRequirements: the key
    # (ECDSA P-256, RSA 2048/4096) *and* the anchor's own signature algorithm
    # (checkECDSACertRequirements: ECDSA-SHA256 or SHA256-RSA; checkRSACertRequirements:
    # SHA256-RSA only). Run by pkg/healthcheck "trust anchors are using supported crypto
    # algorithm", an error (not a warning).
    pub = cert.public_key()
    sig = cert.signature_algorithm_oid
    if isinstance(pub, ec.EllipticCurvePublicKey):
        if pub.curve.key_size != 256:
            return f"must use P-256 curve for public key, instead P-{pub.curve.key_size} was used"
        if sig not in (SignatureAlgorithmOID.ECDSA_WITH_SHA256,
                       SignatureAlgorithmOID.RSA_WITH_SHA256):
            return f"must be signed by an ECDSA P-256 key, instead {_signature_name(cert)} was used"
        return None
    if isinstance(pub, rsa.RSAPublicKey):
        if pub.key_size not in (2048, 4096):
            return f"RSA keys must be 2048 or 4096 bits, instead {pub.key_size} was used"
        if sig != SignatureAlgorithmOID.RSA_WITH_SHA256:
            return ("must be signed by an RSA 2048/4096 bit key, instead "
                    f"{_signature_name(cert)} was used")
        return None
    return f"must use ECDSA or RSA for public key algorithm, instead {type(pub).__name__}"


def _issuer_algo_error(cert: x509.Certificate) -> str | None:
    pub = cert.public_key()
    if not isinstance(pub, ec.EllipticCurvePublicKey):
        return f"must use ECDSA for public key algorithm, instead {type(pub).__name__} was used"
    if pub.curve.key_size != 256:
        return f"must use P-256 curve for public key, instead P-{pub.curve.key_size} was used"
    if cert.signature_algorithm_oid not in (
        SignatureAlgorithmOID.ECDSA_WITH_SHA256,
        SignatureAlgorithmOID.RSA_WITH_SHA256,  # signed by an (allowed) RSA anchor
    ):
        return f"must be signed with SHA-256, instead {cert.signature_algorithm_oid._name} was used"
    return None


def linkerd_identity_checks(
    anchor_pem: str,
    issuer_cert_pem: str,
    issuer_key_pem: str | None = None,
    now: dt.datetime | None = None,
) -> list[Check]:
    """The ``linkerd-identity`` checks of ``linkerd check``, run on PEM inputs.

    ``anchor_pem`` may hold several anchors (the trust bundle during a rotation).
    """
    now = now or utcnow()
    checks: list[Check] = []
    try:
        anchors = certs_from_pem(anchor_pem)
        issuers = certs_from_pem(issuer_cert_pem)
        if not anchors:
            raise ValueError("no trust anchors found")
        if not issuers:
            raise ValueError("no issuer certificate found")
    except ValueError as exc:
        return [Check("certificate config is valid", False, str(exc))]
    issuer = issuers[0]
    config_ok = True
    config_msg = ""
    if issuer_key_pem is not None:
        try:
            key = load_private_key(issuer_key_pem)
            if public_key_bytes(key) != public_key_bytes(issuer):
                config_ok, config_msg = False, "tls: private key does not match public key"
        except (ValueError, TypeError) as exc:
            config_ok, config_msg = False, f"cannot load issuer key: {exc}"
    checks.append(Check("certificate config is valid", config_ok, config_msg))

    def per_anchor(
        name: str,
        fn: Callable[[x509.Certificate], str | None],
        header: str,
        warning: bool = False,
    ) -> None:
        bad = [f"* {_describe(a)} {err}" for a in anchors if (err := fn(a))]
        checks.append(Check(name, not bad, f"{header}:\n\t" + "\n\t".join(bad) if bad else "",
                            warning=warning))

    per_anchor("trust anchors are using supported crypto algorithm", _anchor_algo_error,
               "Invalid trustAnchors")
    per_anchor("trust anchors are within their validity period",
               lambda a: _validity_error(a, now), "Invalid anchors")
    per_anchor("trust anchors are valid for at least 60 days",
               lambda a: _expiring_error(a, now), "Anchors expiring soon", warning=True)

    err = _issuer_algo_error(issuer)
    checks.append(Check("issuer cert is using supported crypto algorithm", err is None,
                        f"issuer certificate {err}" if err else ""))
    err = _validity_error(issuer, now)
    checks.append(Check("issuer cert is within its validity period", err is None,
                        f"issuer certificate is {err}" if err else ""))
    err = _expiring_error(issuer, now)
    checks.append(Check("issuer cert is valid for at least 60 days", err is None,
                        f"issuer certificate {err}" if err else "", warning=True))
    is_ca, _ = _is_ca(issuer)
    checks.append(Check("issuer cert is a CA", is_ca,
                        "" if is_ca else "issuer cert is not a CA (linkerd-identity refuses it)"))
    err = verify_chain(issuer, issuers[1:], anchors, now)
    checks.append(Check("issuer cert is issued by the trust anchor", err is None,
                        f"x509: {err}" if err else ""))
    if issuer_key_pem is not None:
        checks.append(Check("issuer cert matches key", config_ok, config_msg))
    return checks


# ----------------------------------------------------------------------- istio
def _key_format_error(pem: str) -> str | None:
    headers = ("-----BEGIN PRIVATE KEY-----", "-----BEGIN RSA PRIVATE KEY-----",
               "-----BEGIN EC PRIVATE KEY-----")
    if not any(h in pem for h in headers):
        if "ENCRYPTED PRIVATE KEY" in pem:
            return "ca-key.pem is encrypted; istiod needs an unencrypted key"
        return "ca-key.pem is not a PKCS#1 RSA, SEC1 EC or PKCS#8 PEM key"
    return None


def istio_cacerts_checks(cacerts: dict[str, str], now: dt.datetime | None = None) -> list[Check]:
    """The reasons istiod would refuse this ``cacerts`` Secret, as checks."""
    now = now or utcnow()
    missing = [k for k in ISTIO_CACERTS_KEYS if not cacerts.get(k, "").strip()]
    checks = [Check("cacerts has all four keys", not missing,
                    f"missing: {', '.join(missing)}" if missing else "")]
    if missing:
        return checks
    try:
        ca_certs = certs_from_pem(cacerts["ca-cert.pem"])
        roots = certs_from_pem(cacerts["root-cert.pem"])
        chain = certs_from_pem(cacerts["cert-chain.pem"])
        if not ca_certs or not roots or not chain:
            raise ValueError("a certificate file holds no certificate")
    except ValueError as exc:
        checks.append(Check("certificates parse", False, str(exc)))
        return checks
    ca_cert = ca_certs[0]
    checks.append(Check("certificates parse", True))

    fmt_err = _key_format_error(cacerts["ca-key.pem"])
    match_err = fmt_err
    if fmt_err is None:
        try:
            key = load_private_key(cacerts["ca-key.pem"])
            if public_key_bytes(key) != public_key_bytes(ca_cert):
                match_err = "ca-key.pem does not match ca-cert.pem"
        except (ValueError, TypeError) as exc:
            fmt_err = match_err = f"cannot load ca-key.pem: {exc}"
    checks.append(Check("ca-key.pem has a supported format", fmt_err is None, fmt_err or ""))
    checks.append(Check("ca-key.pem matches ca-cert.pem", match_err is None, match_err or ""))

    is_ca, _ = _is_ca(ca_cert)
    checks.append(Check("ca-cert.pem is a CA", is_ca,
                        "" if is_ca else "ca-cert.pem lacks basicConstraints CA:TRUE"))

    chain_ok = not chain or chain[0] == ca_cert
    checks.append(Check("cert-chain.pem starts with ca-cert.pem", chain_ok,
                        "" if chain_ok else "cert-chain.pem must be the intermediate then root"))

    expired = [f"{_describe(c)}: {e}" for c in (ca_cert, *chain, *roots)
               if (e := _validity_error(c, now))]
    checks.append(Check("certificates are within their validity period", not expired,
                        "; ".join(expired)))

    err = verify_chain(ca_cert, chain, roots, now)
    checks.append(Check("ca-cert.pem verifies to root-cert.pem", err is None, err or ""))
    return checks
