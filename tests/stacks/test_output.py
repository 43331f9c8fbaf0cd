"""Render output never destroys what meshboot did not write, and never swaps the root silently."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import select
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from scripts.cli import cli
from stacks.output import MARKER, OutputError, OutputFile, OutputTree
from tests.conftest import REPO, base_spec, write_stack

LINKERD_EXAMPLE = REPO / "examples" / "Pulumi.linkerd.yaml"


def render(config: Path, out: str | Path, pki: Path, *extra: str, cwd: Path | None = None) -> Any:
    args = ["render", "--config", str(config), "--out", str(out), "--pki-dir", str(pki), *extra]
    if cwd is None:
        return CliRunner().invoke(cli, args, env={})
    old = Path.cwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(cli, args, env={})
    finally:
        os.chdir(old)


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def sha256_of_root_in(out: Path, cluster: str = "east") -> str:
    data = yaml.safe_load((out / cluster / "secrets" / "istio-system.cacerts.yaml").read_text())
    cert = x509.load_pem_x509_certificate(data["stringData"]["root-cert.pem"].encode())
    return cert.fingerprint(hashes.SHA256()).hex()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_stack(tmp_path, base_spec())


# ------------------------------------------------------------------ refusals
@pytest.mark.parametrize("target", ["", " ", ".", "STACKDIR", "PARENT", "PKI", "INSIDE_PKI",
                                    "STORE_PARENT"])
def test_dangerous_targets_are_refused_before_anything_is_written(
        tmp_path: Path, target: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    config = write_stack(work, base_spec())
    pki = work / ".meshboot" / "dev" / "pki"
    if target in ("PKI", "INSIDE_PKI", "STORE_PARENT"):
        assert render(config, work / "first", pki).exit_code == 0  # the store exists
    raw = {"STACKDIR": str(work), "PARENT": str(tmp_path), "PKI": str(pki),
           "INSIDE_PKI": str(pki / "out"), "STORE_PARENT": str(work / ".meshboot" / "dev")
           }.get(target, target)
    before = snapshot(tmp_path)
    result = render(config, raw, pki, cwd=work)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert snapshot(tmp_path) == before, "a refused render writes nothing"
    if target != "INSIDE_PKI":
        assert not (pki / "out").exists()


def test_out_dev_beside_the_stack_file_is_fine(tmp_path: Path, config: Path) -> None:
    result = render(config.name, "out/dev", Path(".meshboot/dev/pki"), cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "dev" / MARKER).is_file()


def test_a_foreign_directory_is_left_untouched(tmp_path: Path, config: Path) -> None:
    repo = tmp_path / "gitops"
    (repo / ".git").mkdir(parents=True)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (repo / "README.md").write_text("hand-written\n")
    before = snapshot(repo)
    result = render(config, repo, tmp_path / "pki")
    assert result.exit_code == 2
    assert "not written by meshboot" in result.output
    assert snapshot(repo) == before
    assert not (tmp_path / "pki").exists(), "the PKI store is untouched when output is refused"


def test_an_empty_existing_directory_is_used(tmp_path: Path, config: Path) -> None:
    (tmp_path / "out").mkdir()
    assert render(config, tmp_path / "out", tmp_path / "pki").exit_code == 0


@pytest.mark.parametrize("change", ["added", "edited"])
def test_a_render_someone_changed_is_not_replaced(tmp_path: Path, config: Path,
                                                  change: str) -> None:
    out = tmp_path / "out"
    assert render(config, out, tmp_path / "pki").exit_code == 0
    if change == "added":
        (out / "east" / "kustomization.yaml").write_text("resources: []\n")
    else:
        victim = next(out.glob("east/*namespaces.yaml"))
        victim.write_text(victim.read_text() + "# reviewed\n")
    before = snapshot(out)
    result = render(config, out, tmp_path / "pki")
    assert result.exit_code == 2
    assert ("kustomization.yaml" if change == "added" else "namespaces.yaml") in result.output
    assert snapshot(out) == before


def test_unwritable_output_fails_before_the_pki_store(tmp_path: Path, config: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = render(config, blocker / "out", tmp_path / "pki")
    assert result.exit_code == 2
    assert "cannot write output" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "pki").exists()


# ------------------------------------------------------------------ marker
def test_marker_lists_every_file_with_its_hash(tmp_path: Path, config: Path) -> None:
    out = tmp_path / "out"
    assert render(config, out, tmp_path / "pki").exit_code == 0
    marker = json.loads((out / MARKER).read_text())
    files = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} - {MARKER}
    assert set(marker["files"]) == files
    for rel, digest in marker["files"].items():
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == digest
    assert marker["source"] == config.name
    assert marker["version"]
    assert marker["root_fingerprint"] == sha256_of_root_in(out)


def test_stale_trees_of_a_killed_render_are_removed(tmp_path: Path, config: Path) -> None:
    out = tmp_path / "out"
    assert render(config, out, tmp_path / "pki").exit_code == 0
    stale = [tmp_path / ".out.tmp-k1ll3d", tmp_path / ".out.old-4242"]
    for d in stale:
        (d / "east" / "secrets").mkdir(parents=True)
        (d / "east" / "secrets" / "istio-system.cacerts.yaml").write_text("ca-key.pem: x\n")
    unrelated = tmp_path / ".other.tmp-keep"
    unrelated.mkdir()
    assert render(config, out, tmp_path / "pki").exit_code == 0
    assert not any(d.exists() for d in stale)
    assert unrelated.exists(), "only this directory's leftovers are removed"


@pytest.mark.parametrize("umask", [0o077, 0o000])
def test_modes_do_not_depend_on_the_umask(tmp_path: Path, config: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        assert render(config, tmp_path / "out", tmp_path / "pki").exit_code == 0
    finally:
        os.umask(old)
    out = tmp_path / "out"
    for p in [out, *out.rglob("*")]:
        mode = stat.S_IMODE(p.stat().st_mode)
        secret = "secrets" in p.relative_to(tmp_path).parts
        if p.is_dir():
            assert mode == (0o700 if secret else 0o755), p
        else:
            assert mode == (0o600 if secret else 0o644), p


# ------------------------------------------------------------------ --secrets-out
def test_secrets_out_keeps_every_secret_outside_the_tree(tmp_path: Path, config: Path) -> None:
    out, secrets = tmp_path / "out", tmp_path / "private"
    result = render(config, out, tmp_path / "pki", "--secrets-out", str(secrets))
    assert result.exit_code == 0, result.output
    for p in out.rglob("*"):
        if p.is_file():
            text = p.read_text()
            assert "PRIVATE KEY" not in text and "kind: Secret" not in text, p
    names = sorted(str(p.relative_to(secrets)) for p in secrets.rglob("*.yaml"))
    assert "east/istio-system.cacerts.yaml" in names
    for d in (secrets, secrets / "east", secrets / "west"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    for p in secrets.rglob("*.yaml"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
        assert yaml.safe_load(p.read_text())["kind"] == "Secret"
    assert (secrets / MARKER).is_file() and (out / MARKER).is_file()
    # A second render replaces both trees (each holds meshboot's own marker).
    assert render(config, out, tmp_path / "pki", "--secrets-out", str(secrets)).exit_code == 0


def test_secrets_out_inside_out_is_refused(tmp_path: Path, config: Path) -> None:
    result = render(config, tmp_path / "out", tmp_path / "pki", "--secrets-out",
                    str(tmp_path / "out" / "secrets"))
    assert result.exit_code == 2 and "--secrets-out" in result.output
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ the root guard
def test_a_new_root_is_refused_over_a_render_of_another_root(tmp_path: Path,
                                                             config: Path) -> None:
    out = tmp_path / "out"
    first = render(config, out, tmp_path / "pki")
    assert first.exit_code == 0
    old_fp = sha256_of_root_in(out)
    assert f"root CA: SHA-256 {old_fp} (new: generated now" in first.output
    before = snapshot(out)
    # A machine without the store (CI runner, rebuilt laptop) would generate a new root.
    result = render(config, out, tmp_path / "fresh-pki")
    assert result.exit_code == 2
    assert old_fp in result.output
    new_fps = set(re.findall(r"\b[0-9a-f]{64}\b", result.output)) - {old_fp}
    assert len(new_fps) == 1, "the refusal names both fingerprints"
    assert "--new-root" in result.output
    assert snapshot(out) == before
    assert not (tmp_path / "fresh-pki").exists(), "the refused root is not persisted"
    forced = render(config, out, tmp_path / "fresh-pki", "--new-root")
    assert forced.exit_code == 0, forced.output
    assert sha256_of_root_in(out) != old_fp
    assert "REPLACED" in forced.output


@pytest.mark.parametrize("provider", ["istio", "linkerd"])
def test_the_guard_reads_the_root_from_the_rendered_objects(tmp_path: Path,
                                                            provider: str) -> None:
    """Without the marker's fingerprint, the root still shows in cacerts / trust anchors."""
    config = tmp_path / "Pulumi.dev.yaml"
    if provider == "linkerd":
        config.write_text(LINKERD_EXAMPLE.read_text())
    else:
        write_stack(tmp_path, base_spec())
    out = tmp_path / "out"
    assert render(config, out, tmp_path / "pki").exit_code == 0
    marker = json.loads((out / MARKER).read_text())
    del marker["root_fingerprint"]
    (out / MARKER).write_text(json.dumps(marker))
    result = render(config, out, tmp_path / "fresh-pki")
    assert result.exit_code == 2 and "--new-root" in result.output
    stored = x509.load_pem_x509_certificate((tmp_path / "pki/root/cert.pem").read_bytes())
    assert stored.fingerprint(hashes.SHA256()).hex() in result.output


def test_same_store_rerenders_without_questions(tmp_path: Path, config: Path) -> None:
    out = tmp_path / "out"
    assert render(config, out, tmp_path / "pki").exit_code == 0
    again = render(config, out, tmp_path / "pki")
    assert again.exit_code == 0
    assert f"(from the store: the PKI store {tmp_path / 'pki'})" in again.output


# ------------------------------------------------------------------ atomicity and locking
def test_the_directory_is_always_a_complete_tree(tmp_path: Path) -> None:
    """A reader never sees the path missing, nor a tree that disagrees with its marker."""
    out = tmp_path / "out"
    trees = [{f"c/{i:03d}.yaml": OutputFile(f"{n}-{i}\n".encode()) for i in range(40)}
             for n in ("a", "b")]
    with OutputTree(out) as tree:
        tree.commit({"generator": "meshboot"}, trees[0])
    child = subprocess.Popen([sys.executable, "-c", _SWAPPER, str(out)], cwd=REPO)
    seen = 0
    try:
        deadline = time.monotonic() + 20
        while child.poll() is None and time.monotonic() < deadline:
            fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)  # FileNotFoundError = a gap
            try:
                listed, present, digests = _read_tree(fd)
            except FileNotFoundError:
                listed = None  # swapped away and deleted while we read it
            finally:
                ino = os.fstat(fd).st_ino
                os.close(fd)
            if os.stat(out).st_ino != ino:
                continue  # the tree was swapped out during the read: inconclusive
            assert listed is not None
            assert present == set(listed)
            assert all(listed[rel] == digest for rel, digest in digests.items())
            seen += 1
    finally:
        child.wait(timeout=30)
    assert child.returncode == 0
    assert seen > 20, "the reader must have raced the swaps"


_SWAPPER = """
import sys
from pathlib import Path
from stacks.output import OutputFile, OutputTree
out = Path(sys.argv[1])
for k in range(60):
    n = "ab"[k % 2]
    with OutputTree(out) as tree:
        tree.commit({"generator": "meshboot"},
                    {f"c/{i:03d}.yaml": OutputFile(f"{n}-{i}-{k}\\n".encode()) for i in range(40)})
"""


def _read_tree(fd: int) -> tuple[dict[str, str], set[str], dict[str, str]]:
    listed = json.loads(_read_at(fd, MARKER))["files"]
    sub = os.open("c", os.O_RDONLY, dir_fd=fd)
    try:
        present = {f"c/{n}" for n in os.listdir(sub)}
    finally:
        os.close(sub)
    digests = {rel: hashlib.sha256(_read_at(fd, rel)).hexdigest() for rel in list(listed)[:3]}
    return listed, present, digests


def _read_at(dir_fd: int, rel: str) -> bytes:
    parts = rel.split("/")
    fds = [dir_fd]
    try:
        for part in parts[:-1]:
            fds.append(os.open(part, os.O_RDONLY, dir_fd=fds[-1]))
        fd = os.open(parts[-1], os.O_RDONLY, dir_fd=fds[-1])
        with os.fdopen(fd, "rb") as fh:
            return fh.read()
    finally:
        for fd in fds[1:]:
            os.close(fd)


def _waits_for_a_lock(child: subprocess.Popen[str], deadline: float) -> bool:
    """Whether ``child`` is (or soon is) blocked on a file lock: a ``->`` waiter in /proc/locks."""
    locks = Path("/proc/locks")
    if not locks.exists():  # not Linux: it has at least not finished within a second
        time.sleep(1.0)
        return True
    while time.monotonic() < deadline and child.poll() is None:
        for line in locks.read_text().splitlines():
            fields = line.split()
            if len(fields) > 5 and fields[1] == "->" and fields[5] == str(child.pid):
                return True
        time.sleep(0.01)
    return False


def test_concurrent_renders_are_serialised(tmp_path: Path) -> None:
    out = tmp_path / "out"
    lock = os.open(tmp_path / ".out.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom pathlib import Path\n"
         "from stacks.output import OutputFile, OutputTree\n"
         "with OutputTree(Path(sys.argv[1])) as t:\n"
         "    t.commit({}, {'x.yaml': OutputFile(b'x')})\n", str(out)],
        cwd=REPO, stderr=subprocess.PIPE, text=True)
    assert child.stderr is not None
    said = ""
    try:
        # The child says it waits just before it blocks on the lock (no sleep: its own words).
        deadline = time.monotonic() + 30
        while "waiting for another render" not in said and time.monotonic() < deadline:
            ready, _, _ = select.select([child.stderr], [], [], deadline - time.monotonic())
            line = child.stderr.readline() if ready else ""
            if not line:
                break
            said += line
        assert "waiting for another render" in said, said
        assert _waits_for_a_lock(child, deadline), "a render must wait while another holds the lock"
        assert child.poll() is None
        assert not out.exists()
    finally:
        os.close(lock)  # releases the flock
    _, err = child.communicate(timeout=30)
    assert child.returncode == 0, said + err
    assert (out / "x.yaml").read_bytes() == b"x"


def test_a_failed_commit_leaves_the_old_tree(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with OutputTree(out) as tree:
        tree.commit({}, {"a.yaml": OutputFile(b"old")})
    with pytest.raises(OSError), OutputTree(out) as tree:
        tree.commit({}, {"a.yaml": OutputFile(b"new"), "a.yaml/b": OutputFile(b"x")})
    assert (out / "a.yaml").read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")] == [".out.lock"]


def test_output_error_for_a_marker_that_is_not_ours(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / MARKER).write_text("not json")
    with pytest.raises(OutputError, match="not a meshboot render marker"), OutputTree(out):
        pass


def test_same_render_from_another_directory_is_byte_identical(tmp_path: Path,
                                                              config: Path) -> None:
    """Marker included: nothing in the output depends on where render was run from."""
    assert render(config, tmp_path / "a", tmp_path / "pki").exit_code == 0
    assert render(config.name, "b", Path("pki"), cwd=tmp_path).exit_code == 0
    assert snapshot(tmp_path / "a") == snapshot(tmp_path / "b")


@pytest.mark.parametrize("flag", ["--out", "--pki-dir", "--secrets-out"])
def test_paths_the_os_refuses_are_a_clear_error(tmp_path: Path, config: Path, flag: str) -> None:
    too_long = str(tmp_path / ("x" * 300))
    paths = {"--out": str(tmp_path / "out"), "--pki-dir": str(tmp_path / "pki")}
    paths[flag] = too_long
    args = ["render", "--config", str(config)] + [a for k, v in paths.items() for a in (k, v)]
    result = CliRunner().invoke(cli, args, env={})
    assert result.exit_code == 2, result.output
    assert "not a usable path" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists() and not (tmp_path / "pki").exists()


def test_any_os_error_is_exit_2_with_a_sentence(tmp_path: Path, config: Path) -> None:
    result = CliRunner().invoke(cli, ["pki", "init", "--config", str(config), "--from-store",
                                      str(tmp_path / ("s" * 300))],
                                env={"PULUMI_CONFIG_PASSPHRASE": "p"})
    assert result.exit_code == 2
    assert "File name too long" in result.output
    assert isinstance(result.exception, SystemExit)
