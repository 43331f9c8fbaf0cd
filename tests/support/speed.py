"""Test-only shortcuts for work that is slow by design and repeated across tests.

- PBKDF2: Pulumi's passphrase provider derives its key with 1,000,000 rounds of
  PBKDF2-HMAC-SHA256 (about 0.15 s each). Within a test the same passphrase and
  salt are derived several times (``pki init`` then ``render``, and the tests'
  own decryption oracle), so the derivation is memoised on every input. A miss
  runs the real derivation, so every key is still computed by ``cryptography``.
- fsync: durability is not observable in a test and each call waits for the
  disk; :func:`fsync_disabled` says whether tests replace it with a no-op
  (``MESHBOOT_TEST_FSYNC=1`` keeps the real one). Tests of the durable write
  path use the ``real_fsync`` fixture.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC


@cache
def _derive(algorithm: str, length: int, salt: bytes, iterations: int, key_material: bytes) -> bytes:
    algo = getattr(hashes, algorithm)()
    return PBKDF2HMAC(algorithm=algo, length=length, salt=salt,
                      iterations=iterations).derive(key_material)


def pbkdf2(passphrase: str, salt: bytes, iterations: int, length: int = 32) -> bytes:
    """PBKDF2-HMAC-SHA256 of ``passphrase``, memoised."""
    return _derive("SHA256", length, salt, iterations, passphrase.encode())


class MemoPBKDF2HMAC:
    """Drop-in for ``cryptography``'s ``PBKDF2HMAC`` (``derive`` only), memoised."""

    def __init__(self, algorithm: hashes.HashAlgorithm, length: int, salt: bytes,
                 iterations: int, backend: Any = None) -> None:
        self._args = (type(algorithm).__name__, length, bytes(salt), iterations)
        self._used = False

    def derive(self, key_material: bytes) -> bytes:
        if self._used:  # as cryptography's: one derivation per instance
            from cryptography.exceptions import AlreadyFinalized
            raise AlreadyFinalized("PBKDF2 instances can only be used once.")
        self._used = True
        return _derive(*self._args, bytes(key_material))


def fsync_disabled() -> bool:
    return os.environ.get("MESHBOOT_TEST_FSYNC") != "1"
