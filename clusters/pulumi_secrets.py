"""Decrypt ``secure:`` values of a Pulumi stack file without the Pulumi CLI.

``pulumi up`` gets config decrypted by the engine. ``meshboot render`` reads
the same stack file on a laptop with no Pulumi CLI, so it implements the
passphrase secrets provider itself: the stack file's ``encryptionsalt`` is
``v1:<b64 salt>:<verifier>``, the key is PBKDF2-HMAC-SHA256 (1,000,000
iterations, 32 bytes) of ``PULUMI_CONFIG_PASSPHRASE``, and every value is
``v1:<b64 nonce>:<b64 AES-256-GCM ciphertext+tag>``; the verifier decrypts to
``pulumi``. Other secrets providers (cloud KMS, Pulumi Cloud) need their
service: such values are reported as undecryptable, never guessed.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

PBKDF2_ITERATIONS = 1_000_000
VERIFIER_PLAINTEXT = "pulumi"


class SecretDecryptError(Exception):
    """A ``secure:`` value could not be decrypted; the message says why."""


@dataclass(frozen=True)
class PassphraseCrypter:
    """AES-256-GCM with a key derived from the stack passphrase and salt."""

    key: bytes

    @classmethod
    def from_passphrase(cls, passphrase: str, salt: bytes) -> PassphraseCrypter:
        kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt,
                         iterations=PBKDF2_ITERATIONS)
        return cls(kdf.derive(passphrase.encode()))

    def encrypt(self, plaintext: str, nonce: bytes | None = None) -> str:
        nonce = nonce if nonce is not None else os.urandom(12)
        sealed = AESGCM(self.key).encrypt(nonce, plaintext.encode(), None)
        return f"v1:{base64.b64encode(nonce).decode()}:{base64.b64encode(sealed).decode()}"

    def decrypt(self, ciphertext: str) -> str:
        parts = ciphertext.split(":")
        if len(parts) != 3 or parts[0] != "v1":
            raise SecretDecryptError("not a Pulumi passphrase ciphertext (expected v1:<nonce>:<data>)")
        try:
            nonce = base64.b64decode(parts[1], validate=True)
            sealed = base64.b64decode(parts[2], validate=True)
            return AESGCM(self.key).decrypt(nonce, sealed, None).decode()
        except (InvalidTag, ValueError) as exc:
            raise SecretDecryptError("decryption failed (wrong passphrase or corrupted value)") from exc


def new_encryption_salt(crypter: PassphraseCrypter, salt: bytes) -> str:
    """The ``encryptionsalt`` line Pulumi writes for a passphrase stack."""
    return f"v1:{base64.b64encode(salt).decode()}:{crypter.encrypt(VERIFIER_PLAINTEXT)}"


def passphrase_from_env(env: dict[str, str] | None = None) -> str | None:
    """The passphrase exactly as the Pulumi CLI finds it."""
    env = dict(os.environ) if env is None else env
    if "PULUMI_CONFIG_PASSPHRASE" in env:
        return env["PULUMI_CONFIG_PASSPHRASE"]
    path = env.get("PULUMI_CONFIG_PASSPHRASE_FILE")
    if path:
        try:
            # pkg/secrets/passphrase/manager.go readPassphrase: strings.TrimSpace of the file.
            return Path(path).read_text().strip()
        except OSError:
            return None
    return None


def crypter_for_stack(stack_file: dict, env: dict[str, str] | None = None) -> PassphraseCrypter:
    """Build the crypter for a parsed stack file, or explain why there is none."""
    provider = stack_file.get("secretsprovider")
    if provider and not str(provider).startswith("passphrase"):
        raise SecretDecryptError(
            f"the stack uses secrets provider {provider!r}; render can only decrypt "
            "passphrase-encrypted values (run through `pulumi up`, or set the value in plain text)"
        )
    salt_state = stack_file.get("encryptionsalt")
    if not salt_state and not provider:
        # What `pulumi stack init` writes for the default (service) secrets provider.
        raise SecretDecryptError("the stack file names no secrets provider and no "
                                 "`encryptionsalt`, so its secrets are managed by Pulumi Cloud "
                                 "(the default secrets provider), which render cannot reach; run "
                                 "through `pulumi up`, or set the value in plain text")
    if not salt_state:
        raise SecretDecryptError("the stack file has no `encryptionsalt`, so its secure values "
                                 "cannot be decrypted")
    parts = str(salt_state).split(":", 2)
    if len(parts) != 3 or parts[0] != "v1":
        raise SecretDecryptError("malformed `encryptionsalt`")
    passphrase = passphrase_from_env(env)
    if passphrase is None:
        raise SecretDecryptError("PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE) "
                                 "is not set")
    try:
        salt = base64.b64decode(parts[1], validate=True)
    except ValueError as exc:
        raise SecretDecryptError("malformed `encryptionsalt`") from exc
    crypter = PassphraseCrypter.from_passphrase(passphrase, salt)
    try:
        ok = crypter.decrypt(parts[2]) == VERIFIER_PLAINTEXT
    except SecretDecryptError:
        ok = False
    if not ok:
        raise SecretDecryptError("incorrect passphrase (PULUMI_CONFIG_PASSPHRASE does not match "
                                 "the stack's encryptionsalt)")
    return crypter
