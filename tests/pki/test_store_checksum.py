"""The store skips re-validating keys it wrote (checksum in meta.json), never tampered ones."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import pki.store as store_module
from pki.keys import KeyAlgorithm
from pki.store import PkiStore, PkiStoreError

from .conftest import make_params

PARAMS = make_params(key_algorithm=KeyAlgorithm.RSA_2048)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("store") / "pki"
    PkiStore(path).load_or_build(PARAMS)
    return path


@pytest.fixture
def store(built: Path, tmp_path: Path) -> Path:
    import shutil

    copy = tmp_path / "pki"
    shutil.copytree(built, copy)
    return copy


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, bool]]:
    """Every key load of the store: (SHA-256 of the bytes, skipped the full check?)."""
    seen: list[tuple[bytes, bool]] = []
    real = store_module.load_private_key

    def spy(data: bytes, passphrase: bytes | None = None, known_good: bool = False) -> Any:
        seen.append((hashlib.sha256(data).digest(), known_good))
        return real(data, passphrase, known_good)

    monkeypatch.setattr(store_module, "load_private_key", spy)
    return seen


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def meta(store: Path) -> dict[str, Any]:
    return json.loads((store / "meta.json").read_text())


def test_meta_records_the_sha256_of_every_key_file(store: Path) -> None:
    assert meta(store)["key_sha256"] == {
        "root": sha(store / "root" / "key.pem"),
        "east": sha(store / "clusters" / "east" / "key.pem"),
        "west": sha(store / "clusters" / "west" / "key.pem"),
    }


def test_keys_the_store_wrote_skip_the_full_check(store: Path, loads: list[Any]) -> None:
    pki = PkiStore(store).load_or_build(PARAMS)
    assert list(pki.reissued) == []
    assert len(loads) == 3 and all(known for _, known in loads)


def test_a_replaced_intermediate_key_gets_the_full_check_and_is_reissued(
        store: Path, loads: list[Any]) -> None:
    other = rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    (store / "clusters" / "east" / "key.pem").write_bytes(other)
    pki = PkiStore(store).load_or_build(PARAMS)
    checked = {digest: known for digest, known in loads}
    assert checked[hashlib.sha256(other).digest()] is False
    assert list(pki.reissued) == ["east"]  # the key no longer matches the certificate
    assert meta(store)["key_sha256"]["east"] == sha(store / "clusters" / "east" / "key.pem")


def test_a_tampered_root_key_is_refused(store: Path) -> None:
    pem = (store / "root" / "key.pem").read_bytes()
    key = serialization.load_pem_private_key(pem, None)
    assert isinstance(key, rsa.RSAPrivateKey)
    n = key.private_numbers()
    # Same modulus and public exponent, a broken CRT value: only the full check sees it.
    broken = rsa.RSAPrivateNumbers(n.p, n.q, n.d, n.dmp1 ^ 2, n.dmq1, n.iqmp, n.public_numbers)
    bad = broken.private_key(unsafe_skip_rsa_key_validation=True).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    (store / "root" / "key.pem").write_bytes(bad)
    before = (store / "meta.json").read_bytes()
    with pytest.raises(PkiStoreError, match="cannot load root/key.pem"):
        PkiStore(store).load_or_build(PARAMS)
    assert (store / "meta.json").read_bytes() == before


def test_a_store_without_checksums_is_checked_fully_once(store: Path, loads: list[Any]) -> None:
    m = meta(store)
    del m["key_sha256"]
    (store / "meta.json").write_text(json.dumps(m, indent=2) + "\n")
    PkiStore(store).load_or_build(PARAMS)
    assert [known for _, known in loads] == [False] * 3
    assert set(meta(store)["key_sha256"]) == {"root", "east", "west"}
    loads.clear()
    PkiStore(store).load_or_build(PARAMS)
    assert [known for _, known in loads] == [True] * 3


def test_a_checksum_that_is_not_text_is_a_corrupt_meta(store: Path) -> None:
    m = meta(store)
    m["key_sha256"] = ["root"]
    (store / "meta.json").write_text(json.dumps(m))
    with pytest.raises(PkiStoreError, match="key_sha256"):
        PkiStore(store).load_or_build(PARAMS)
