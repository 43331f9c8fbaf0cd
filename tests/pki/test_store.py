"""The on-disk PKI store: permissions, encryption, mismatch refusal, stability."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import stat
from pathlib import Path

import pytest

from pki.ca import CA, fingerprint
from pki.keys import KeyAlgorithm
from pki.store import PkiStore, PkiStoreError

from .conftest import make_params


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / ".meshboot" / "dev" / "pki"


def test_layout_and_permissions(store_path: Path, real_fsync: list[int]) -> None:
    old_umask = os.umask(0o022)  # a permissive umask must not leak into the store
    try:
        PkiStore(store_path).load_or_build(make_params())
    finally:
        os.umask(old_umask)
    for rel in ("root/cert.pem", "root/key.pem", "clusters/east/cert.pem",
                "clusters/east/key.pem", "clusters/west/key.pem", "meta.json"):
        assert mode(store_path / rel) == 0o600, rel
    for rel in (".", "root", "clusters", "clusters/east", "clusters/west"):
        assert mode(store_path / rel) == 0o700, rel
    assert not list(store_path.rglob("*.tmp"))
    meta = json.loads((store_path / "meta.json").read_text())
    assert meta["mesh_id"] == "mesh1" and meta["profile"] == "istio"
    assert meta["key_algorithm"] == "ecdsa-p256" and meta["trust_domain"] == "cluster.local"
    root_cert = (store_path / "root/cert.pem").read_bytes()
    assert meta["root_fingerprint"] == fingerprint(CA.from_pem(
        root_cert, (store_path / "root/key.pem").read_bytes()).cert)
    assert meta["clusters"]["east"]["cluster"] == "east"
    # Durable writes (tests elsewhere run with fsync as a no-op): each of the 7 files
    # and its directory went through the real os.fsync.
    assert len(real_fsync) >= 14


def test_reload_is_stable_and_files_untouched(store_path: Path) -> None:
    store = PkiStore(store_path)
    first = store.load_or_build(make_params())
    before = snapshot(store_path)
    second = store.load_or_build(make_params())
    assert second.reissued == ()
    assert second.root.cert == first.root.cert
    assert {c: ca.cert for c, ca in second.intermediates.items()} == {
        c: ca.cert for c, ca in first.intermediates.items()
    }
    assert snapshot(store_path) == before


def test_new_cluster_added_existing_kept(store_path: Path) -> None:
    store = PkiStore(store_path)
    first = store.load_or_build(make_params())
    second = store.load_or_build(make_params(clusters=("west", "north", "east")))
    assert second.reissued == ("north",)
    assert second.intermediates["east"].cert == first.intermediates["east"].cert


def test_removed_cluster_files_kept_but_not_returned(store_path: Path) -> None:
    store = PkiStore(store_path)
    store.load_or_build(make_params())
    pki = store.load_or_build(make_params(clusters=("east",)))
    assert list(pki.intermediates) == ["east"]
    assert (store_path / "clusters/west/cert.pem").exists()
    assert "west" in json.loads((store_path / "meta.json").read_text())["clusters"]
    # and it comes back unchanged when re-added
    again = store.load_or_build(make_params())
    assert again.reissued == ()


def test_near_expiry_reissued_and_persisted(store_path: Path) -> None:
    store = PkiStore(store_path)
    now = dt.datetime.now(dt.UTC)
    first = store.load_or_build(make_params(), now=now - dt.timedelta(days=340))
    second = store.load_or_build(make_params(), now=now)
    assert set(second.reissued) == {"east", "west"}
    assert second.root.cert == first.root.cert
    third = store.load_or_build(make_params(), now=now)
    assert third.reissued == ()
    assert third.intermediates["east"].cert == second.intermediates["east"].cert
    third.intermediates["east"].cert.verify_directly_issued_by(first.root.cert)


def test_passphrase_encrypts_keys(store_path: Path) -> None:
    PkiStore(store_path, b"hunter2").load_or_build(make_params())
    for rel in ("root/key.pem", "clusters/east/key.pem"):
        assert (store_path / rel).read_bytes().startswith(
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----"
        )
    again = PkiStore(store_path, b"hunter2").load_or_build(make_params())
    assert again.reissued == ()
    # what callers put into Secrets is still the plain key
    assert again.intermediates["east"].key_pem.startswith("-----BEGIN PRIVATE KEY-----")


@pytest.mark.parametrize("passphrase, match", [(None, "encrypted"), (b"wrong", "passphrase")])
def test_wrong_or_missing_passphrase(store_path: Path, passphrase: bytes | None,
                                     match: str) -> None:
    PkiStore(store_path, b"hunter2").load_or_build(make_params())
    before = snapshot(store_path)
    with pytest.raises(PkiStoreError, match=match) as err:
        PkiStore(store_path, passphrase).load_or_build(make_params())
    assert str(store_path) in str(err.value)
    assert snapshot(store_path) == before


def test_passphrase_given_for_plain_store(store_path: Path) -> None:
    PkiStore(store_path).load_or_build(make_params())
    with pytest.raises(PkiStoreError, match="not encrypted"):
        PkiStore(store_path, b"pw").load_or_build(make_params())


@pytest.mark.parametrize(
    "overrides, what",
    [
        ({"mesh_id": "other-mesh"}, "mesh id"),
        ({"key_algorithm": KeyAlgorithm.RSA_2048}, "key algorithm"),
        ({"profile": "linkerd"}, "profile"),
        ({"trust_domain": "prod.example"}, "trust domain"),
    ],
)
def test_mismatching_spec_is_refused_and_nothing_changes(
    store_path: Path, overrides: dict, what: str  # type: ignore[type-arg]
) -> None:
    PkiStore(store_path).load_or_build(make_params())
    before = snapshot(store_path)
    with pytest.raises(PkiStoreError) as err:
        PkiStore(store_path).load_or_build(make_params(**overrides))
    assert str(store_path) in str(err.value) and what in str(err.value)
    assert snapshot(store_path) == before
    assert PkiStore(store_path).check(make_params(**overrides))


def test_import_enterprise_root(store_path: Path) -> None:
    enterprise = CA.create_root(profile="istio", key_algorithm="ecdsa-p256", validity_days=3650)
    params = make_params(imported_root=(enterprise.cert_pem, enterprise.key_pem))
    pki = PkiStore(store_path).load_or_build(params)
    assert pki.root.cert == enterprise.cert
    pki.intermediates["west"].cert.verify_directly_issued_by(enterprise.cert)
    assert json.loads((store_path / "meta.json").read_text())["root_imported"] is True
    assert PkiStore(store_path).load_or_build(params).reissued == ()


def test_import_of_different_root_is_refused(store_path: Path) -> None:
    PkiStore(store_path).load_or_build(make_params())
    before = snapshot(store_path)
    other = CA.create_root(profile="istio", key_algorithm="ecdsa-p256", validity_days=3650)
    params = make_params(imported_root=(other.cert_pem, other.key_pem))
    with pytest.raises(PkiStoreError, match="imports root"):
        PkiStore(store_path).load_or_build(params)
    assert snapshot(store_path) == before


def test_tampered_root_detected(store_path: Path) -> None:
    PkiStore(store_path).load_or_build(make_params())
    other = CA.create_root(profile="istio", key_algorithm="ecdsa-p256", validity_days=3650)
    (store_path / "root/cert.pem").write_text(other.cert_pem)
    (store_path / "root/key.pem").write_text(other.key_pem)
    with pytest.raises(PkiStoreError, match="fingerprint"):
        PkiStore(store_path).load_or_build(make_params())


def test_half_written_intermediate_is_reissued(store_path: Path) -> None:
    store = PkiStore(store_path)
    first = store.load_or_build(make_params())
    other = first.root.issue_intermediate(
        profile="istio", cluster="east", key_algorithm="ecdsa-p256", validity_days=10
    )
    (store_path / "clusters/east/key.pem").write_text(other.key_pem)  # cert still old
    second = store.load_or_build(make_params())
    assert second.reissued == ("east",)
    # ... and says why: not "no intermediate yet", which would hide a damaged store
    assert second.reasons["east"].startswith("the stored intermediate was unusable")
    assert "does not match" in second.reasons["east"]
    third = store.load_or_build(make_params())
    assert third.reissued == () and third.intermediates["east"].cert == second.intermediates["east"].cert


def test_bad_cluster_name_rejected(store_path: Path) -> None:
    with pytest.raises(PkiStoreError, match="DNS-1123"):
        PkiStore(store_path).load_or_build(make_params(clusters=("../escape",)))


def test_params_are_plain_dataclass() -> None:
    # others build PkiParams by keyword; keep it a frozen dataclass
    p = make_params()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.mesh_id = "x"  # type: ignore[misc]
