"""Environment faults around the PKI store: a sentence and exit 2, never a traceback
(issue 8, section 3); the store's 0600/0700 modes are enforced, with a warning."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from pki.store import PkiStore, PkiStoreError
from scripts.cli import cli
from tests.conftest import base_spec, write_stack

from .conftest import make_params


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make ``path`` really unwritable: permissions for a normal user, a read-only
    bind mount for root (which permissions do not stop)."""
    if os.geteuid() != 0:
        dirs = [path, *[p for p in path.rglob("*") if p.is_dir()]]
        for d in dirs:
            d.chmod(0o500)
        try:
            yield
        finally:
            for d in dirs:
                d.chmod(0o700)
        return
    mounted = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True).returncode == 0
    if not mounted:
        pytest.skip("running as root without a way to make a read-only mount")
    try:
        if subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], capture_output=True).returncode:
            pytest.skip("cannot remount read-only")
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True)


def render(tmp_path: Path, pki: Path, spec: dict[str, Any] | None = None, name: str = "out") -> Result:
    config = write_stack(tmp_path, spec or base_spec())
    return CliRunner().invoke(cli, ["render", "--config", str(config), "--out", str(tmp_path / name),
                                    "--pki-dir", str(pki)], env={"MESHBOOT_PKI_PASSPHRASE": None})


def preflight(tmp_path: Path, pki: Path) -> Result:
    config = write_stack(tmp_path, base_spec())
    return CliRunner().invoke(cli, ["preflight", "--config", str(config), "--pki-dir", str(pki)],
                              env={"MESHBOOT_PKI_PASSPHRASE": None})


def assert_clean_exit_2(result: Result, *expected: str) -> None:
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    for fragment in expected:
        assert fragment in result.output, f"{fragment!r} not in:\n{result.output}"


# --- read-only store --------------------------------------------------------------------------

def test_read_only_store_loads_when_nothing_needs_writing(tmp_path: Path) -> None:
    store_path = tmp_path / "pki"
    first = PkiStore(store_path).load_or_build(make_params())
    (store_path / ".lock").unlink()  # not even the lock file may be created
    with read_only(store_path):
        again = PkiStore(store_path).load_or_build(make_params())
    assert again.reissued == ()
    assert again.root.cert == first.root.cert


def test_read_only_store_fails_with_a_sentence_when_it_must_write(tmp_path: Path) -> None:
    store_path = tmp_path / "pki"
    PkiStore(store_path).load_or_build(make_params())
    with read_only(store_path), pytest.raises(PkiStoreError) as err:
        PkiStore(store_path).load_or_build(make_params(clusters=("east", "west", "north")))
    assert "must be writable to create or renew certificates" in str(err.value)
    assert str(store_path) in str(err.value)


def test_read_only_store_through_render(tmp_path: Path) -> None:
    store_path = tmp_path / "pki"
    assert render(tmp_path, store_path).exit_code == 0
    with read_only(store_path):
        ok = render(tmp_path, store_path, name="out2")
        spec = base_spec()
        spec["clusters"].append({"name": "north", "apiServer": "https://10.0.0.3:6443"})
        bad = render(tmp_path, store_path, spec, name="out3")
    assert ok.exit_code == 0, ok.output
    assert_clean_exit_2(bad, f"error: PKI store: PKI store {store_path}: cannot",
                        "must be writable")


# --- meta.json with wrong-typed fields --------------------------------------------------------

@pytest.mark.parametrize(("field", "value"), [
    ("clusters", []), ("clusters", {"east": 5}), ("version", "1"), ("version", True),
    ("mesh_id", 5), ("root_imported", "no"), ("root_fingerprint", None),
])
def test_meta_json_with_wrong_types(tmp_path: Path, field: str, value: Any) -> None:
    store_path = tmp_path / "pki"
    assert render(tmp_path, store_path).exit_code == 0
    meta = json.loads((store_path / "meta.json").read_text())
    meta[field] = value
    (store_path / "meta.json").write_text(json.dumps(meta))
    before = (store_path / "meta.json").read_bytes()
    result = render(tmp_path, store_path, name="out2")
    assert_clean_exit_2(result, f"PKI store {store_path}: meta.json is corrupt: '{field}")
    assert (store_path / "meta.json").read_bytes() == before
    assert not (tmp_path / "out2").exists()
    assert_clean_exit_2(preflight(tmp_path, store_path), "meta.json is corrupt")


def test_meta_json_not_utf8(tmp_path: Path) -> None:
    store_path = tmp_path / "pki"
    PkiStore(store_path).load_or_build(make_params())
    data = b'{"version": 1, "mesh_id": "\xff"}'
    (store_path / "meta.json").write_bytes(data)
    offset = data.index(b"\xff")
    with pytest.raises(PkiStoreError, match=f"meta.json is corrupt: not UTF-8 at byte offset {offset}"):
        PkiStore(store_path).load_or_build(make_params())


# --- other environment faults -----------------------------------------------------------------

def test_preflight_without_a_store(tmp_path: Path) -> None:
    result = preflight(tmp_path, tmp_path / "nowhere")
    assert_clean_exit_2(result, f"no PKI store at {tmp_path / 'nowhere'}", "meshboot render")
    assert not (tmp_path / "nowhere").exists()


def test_pki_dir_below_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    assert_clean_exit_2(render(tmp_path, tmp_path / "file" / "pki"), "error: PKI store")


def test_pki_dir_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "pki").write_text("x")
    assert_clean_exit_2(render(tmp_path, tmp_path / "pki"), "error: PKI store")


# --- modes ------------------------------------------------------------------------------------

def loosen(store_path: Path) -> None:
    (store_path / "root" / "key.pem").chmod(0o644)
    (store_path / "clusters" / "east" / "key.pem").chmod(0o640)
    (store_path / "clusters").chmod(0o755)
    store_path.chmod(0o750)


def test_loose_modes_are_fixed_with_a_warning(tmp_path: Path) -> None:
    store_path = tmp_path / "pki"
    store = PkiStore(store_path)
    store.load_or_build(make_params())
    loosen(store_path)
    store.load_or_build(make_params())
    assert mode(store_path / "root" / "key.pem") == 0o600
    assert mode(store_path / "clusters" / "east" / "key.pem") == 0o600
    assert mode(store_path / "clusters") == 0o700 and mode(store_path) == 0o700
    text = "\n".join(store.warnings)
    assert "root/key.pem was accessible to group/others (mode 0644); set to 0600" in text
    assert "clusters was accessible to group/others (mode 0755); set to 0700" in text
    assert len(store.warnings) == 4
    store.load_or_build(make_params())
    assert store.warnings == []


def test_render_prints_mode_warnings(tmp_path: Path) -> None:
    store_path = tmp_path / "pki"
    assert render(tmp_path, store_path).exit_code == 0
    loosen(store_path)
    result = render(tmp_path, store_path, name="out2")
    assert result.exit_code == 0, result.output
    assert f"warning: PKI store {store_path}: root/key.pem was accessible to group/others" in result.stderr
    assert mode(store_path / "root" / "key.pem") == 0o600


def test_preflight_reports_loose_modes_without_changing_them(tmp_path: Path) -> None:
    store_path = tmp_path / "pki"
    assert render(tmp_path, store_path).exit_code == 0
    loosen(store_path)
    result = preflight(tmp_path, store_path)
    assert result.exit_code == 0, result.output
    assert (f"warning: PKI store {store_path}: root/key.pem is accessible to group/others (mode 0644)"
            in result.stderr)
    assert mode(store_path / "root" / "key.pem") == 0o644  # preflight never touches the store
