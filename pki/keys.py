"""Private keys: the few algorithms both meshes accept, and their PEM encodings.

Only four algorithms are offered on purpose. Istio's plugged-in CA accepts RSA and
ECDSA P-256 (upstream ``tools/certs`` uses RSA 4096); Linkerd's identity issuer must be
ECDSA P-256. Anything more exotic (P-384, Ed25519) is refused by at least one of the
meshes or by ``linkerd check``, so we never generate it and say so loudly when asked to
reason about it (:func:`key_algorithm_of` raises :class:`ValueError`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey: TypeAlias = ec.EllipticCurvePublicKey | rsa.RSAPublicKey

__all__ = [
    "KeyAlgorithm",
    "PrivateKey",
    "PublicKey",
    "generate_key",
    "key_algorithm_of",
    "load_private_key",
    "private_key_to_pem",
    "public_key_bytes",
]


class KeyAlgorithm(StrEnum):
    """Key algorithms meshboot can generate. The value is the spelling used in specs."""

    ECDSA_P256 = "ecdsa-p256"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"
    RSA_4096 = "rsa-4096"

    @property
    def is_rsa(self) -> bool:
        return self is not KeyAlgorithm.ECDSA_P256


_RSA_BITS = {
    KeyAlgorithm.RSA_2048: 2048,
    KeyAlgorithm.RSA_3072: 3072,
    KeyAlgorithm.RSA_4096: 4096,
}


def generate_key(alg: KeyAlgorithm | str) -> PrivateKey:
    """Generate a fresh private key. RSA uses e=65537, the only exponent Go accepts."""
    alg = KeyAlgorithm(alg)
    if alg is KeyAlgorithm.ECDSA_P256:
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS[alg])


def key_algorithm_of(
    key_or_cert: PrivateKey | PublicKey | x509.Certificate | object,
) -> KeyAlgorithm:
    """Classify a key (private or public) or a certificate's public key.

    Raises :class:`ValueError` for anything outside :class:`KeyAlgorithm` so that an
    imported enterprise root with, say, a P-384 key is rejected up front instead of
    producing a hierarchy a mesh will refuse at runtime.
    """
    obj = key_or_cert
    if isinstance(obj, x509.Certificate):
        obj = obj.public_key()
    if isinstance(obj, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        if isinstance(obj.curve, ec.SECP256R1):
            return KeyAlgorithm.ECDSA_P256
        raise ValueError(f"unsupported elliptic curve {obj.curve.name}; only P-256 is supported")
    if isinstance(obj, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        for alg, bits in _RSA_BITS.items():
            if obj.key_size == bits:
                return alg
        raise ValueError(f"unsupported RSA key size {obj.key_size}; use 2048, 3072 or 4096")
    raise ValueError(f"unsupported key type {type(obj).__name__}")


def private_key_to_pem(key: PrivateKey, passphrase: bytes | None = None) -> bytes:
    """Serialize as PKCS#8 PEM: the one format istiod, Linkerd and OpenSSL all read.

    With a passphrase the key is encrypted with ``BestAvailableEncryption`` (PBES2 /
    AES-256-CBC today) and the PEM header becomes ``ENCRYPTED PRIVATE KEY``. Encrypted
    keys are for files at rest only; Kubernetes Secrets need the plain form.
    """
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def load_private_key(pem: bytes | str, passphrase: bytes | None = None,
                     known_good: bool = False) -> PrivateKey:
    """Load a PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC), rejecting other key types.

    Errors from ``cryptography`` (``TypeError`` for a missing/unexpected passphrase,
    ``ValueError`` for a wrong one or garbage) are passed through unchanged; callers
    such as the PKI store translate them into messages about their own context.

    ``known_good``: these exact bytes were checked before (the PKI store keeps a
    checksum of every key it wrote), so OpenSSL's RSA consistency check (primes,
    CRT values: about 0.5 s for a 4096-bit key) is skipped. Any other bytes get it.
    """
    data = pem.encode() if isinstance(pem, str) else pem
    key = serialization.load_pem_private_key(data, password=passphrase or None,
                                             unsafe_skip_rsa_key_validation=known_good)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError(f"unsupported private key type {type(key).__name__}")
    key_algorithm_of(key)  # reject unsupported curves / sizes early
    return key


def public_key_bytes(key: PrivateKey | PublicKey | x509.Certificate) -> bytes:
    """DER SubjectPublicKeyInfo, used to compare a key with a certificate."""
    pub = key.public_key() if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey) \
        else key
    return pub.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
