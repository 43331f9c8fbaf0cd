"""The local PKI store behind ``meshboot render --pki-dir`` (default ``.meshboot/<env>/pki``).

Layout::

    <path>/                 0700
      meta.json             0600  mesh id, profile, algorithm, trust domain, root
                                  fingerprint, per-cluster subject inputs, SHA-256
                                  of every key file it wrote or fully checked
      root/cert.pem         0600
      root/key.pem          0600  PKCS#8, encrypted when a passphrase is given
      clusters/<name>/cert.pem, key.pem

Why it is this careful:

* it holds the mesh's root key, so files are created 0600 from the start
  (``os.open(..., 0o600)``; no window where a chmod has not happened yet) and
  directories are 0700;
* every file is written to a temporary name and ``os.replace``-d into place, so an
  interrupted run never leaves a truncated key behind;
* a store that belongs to another mesh (different mesh id, profile, key algorithm,
  trust domain or imported root) is **never** silently overwritten: a
  :class:`PkiStoreError` names the store and what differs;
* clusters removed from the spec keep their files (someone may still need them to
  roll back), they are just not returned;
* files or directories others can read (copied around, restored from a backup) are
  set back to 0600/0700, with a warning in :attr:`PkiStore.warnings`;
* a store the user cannot write (a read-only checkout or mount) still loads as long as
  nothing needs issuing; only an actual write fails, with a :class:`PkiStoreError`;
* loading is fast without trusting the files blindly: a key file whose bytes match
  the SHA-256 meta.json recorded (when the store wrote it, or after it passed the
  full check once) skips OpenSSL's RSA consistency check (0.5 s per 4096-bit key);
  a key file with any other bytes gets the full check, and a certificate/key
  mismatch is caught either way;
* an intermediate whose stored pair is unusable (half-written, hand-edited, a key
  of another certificate) is re-issued, and the reason says so (``MeshPKI.reasons``),
  so a damaged store never reads as a first run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import errno
import fcntl
import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from clusters.names import is_dns1123_label

from .ca import CA, certs_from_pem, certs_to_pem, fingerprint
from .hierarchy import MeshPKI, PkiParams, build, intermediate_inputs, validate_params
from .keys import KeyAlgorithm, load_private_key, private_key_to_pem

__all__ = ["PASSPHRASE_ENV", "PkiStore", "PkiStoreError"]

PASSPHRASE_ENV = "MESHBOOT_PKI_PASSPHRASE"
_META_VERSION = 1
_FILE_MODE, _DIR_MODE = 0o600, 0o700
# meta.json field -> JSON type; a hand-edited or foreign file is refused, not half-used.
_META_TYPES: dict[str, tuple[type, str]] = {
    "version": (int, "a number"), "mesh_id": (str, "a string"), "profile": (str, "a string"),
    "key_algorithm": (str, "a string"), "trust_domain": (str, "a string"),
    "root_fingerprint": (str, "a string"), "root_imported": (bool, "true or false"),
    "clusters": (dict, "an object"), "key_sha256": (dict, "an object"),
    "next_root_fingerprint": (str, "a string"),
}
_READ_ONLY_ERRORS = (errno.EACCES, errno.EPERM, errno.EROFS)


class PkiStoreError(Exception):
    """The store cannot be used as asked; the message says which store and why."""


class PkiStore:
    """Persistent CA material for one environment."""

    def __init__(self, path: Path | str, passphrase: bytes | None = None) -> None:
        self.path = Path(path)
        self.passphrase = passphrase or None
        # What the last call fixed or found odd but could work with; the CLI prints these.
        self.warnings: list[str] = []
        self._key_digests: dict[str, str] = {}   # meta.json key_sha256: keys known good
        self._checked: dict[str, str] = {}       # keys loaded by this call: name -> SHA-256

    # ----------------------------------------------------------------- public API
    def load_or_build(
        self,
        params: PkiParams,
        now: dt.datetime | None = None,
        before_write: Callable[[MeshPKI], None] | None = None,
    ) -> MeshPKI:
        """Load what exists, reuse what is still good, issue the rest, persist it.

        ``before_write`` sees the hierarchy before anything is persisted; if it
        raises, nothing is written, and a store directory this call created is
        removed again (so a refused render leaves no empty store behind).
        """
        validate_params(params)
        for cluster in params.clusters:
            _check_cluster_name(cluster)
        self.warnings = []
        self._key_digests, self._checked = {}, {}
        created = self._missing_dirs(self.path)
        self._ensure_dir(self.path)
        self._enforce_modes()
        try:
            return self._load_or_build_locked(params, now, before_write)
        except BaseException:
            self._remove_if_pristine(created)
            raise

    def read_root(self) -> CA | None:
        """The store's root CA (``None`` if the store has none); reads only, never writes."""
        meta = self._read_meta()
        if meta is None:
            return None
        return self._load_root(meta)

    def _load_or_build_locked(
        self,
        params: PkiParams,
        now: dt.datetime | None,
        before_write: Callable[[MeshPKI], None] | None,
    ) -> MeshPKI:
        with self._lock():
            meta = self._read_meta()
            existing_root: CA | None = None
            existing: dict[str, tuple[CA, dict[str, Any]]] = {}
            unusable: dict[str, str] = {}
            if meta is not None:
                self._check_meta(meta, params)
                existing_root = self._load_root(meta)
                self._check_imported_root(params, existing_root, meta)
                for cluster in params.clusters:
                    inputs = meta.get("clusters", {}).get(cluster)
                    loaded = self._load_cluster(cluster, unusable)
                    if loaded is not None and inputs is not None:
                        existing[cluster] = (loaded, inputs)
            elif self._dir("root").joinpath("cert.pem").exists():
                raise PkiStoreError(
                    f"PKI store {self.path} has a root but no meta.json; refusing to guess "
                    "which mesh it belongs to"
                )
            try:
                pki = build(params, existing_root, existing, now)
            except ValueError as exc:
                raise PkiStoreError(f"PKI store {self.path}: {exc}") from exc
            if unusable:
                # Re-issued because the stored pair was unusable, not because none existed.
                pki = dataclasses.replace(pki, reasons={
                    **pki.reasons, **{c: r for c, r in unusable.items() if c in pki.reissued}})
            if before_write is not None:
                before_write(pki)
            self._persist(params, pki, meta, root_is_new=existing_root is None
                          or fingerprint(existing_root.cert) != fingerprint(pki.root.cert))
            return pki

    def exists(self) -> bool:
        return (self.path / "meta.json").exists()

    def has_intermediate(self, cluster: str) -> bool:
        """Whether the store holds ``cluster``'s intermediate as :meth:`load_or_build`
        would reuse it (recorded in meta.json, cert and key readable); reads only."""
        meta = self._read_meta()
        if meta is None or cluster not in (meta.get("clusters") or {}):
            return False
        return self._load_cluster(cluster) is not None

    def mode_problems(self) -> list[tuple[Path, int, int]]:
        """(path, mode, wanted mode) of every store entry group or others can access."""
        if not self.path.is_dir():
            return []
        out = []
        for entry in [self.path, *sorted(self.path.rglob("*"))]:
            if entry.is_symlink():
                continue
            mode = stat.S_IMODE(entry.lstat().st_mode)
            if mode & 0o077:
                out.append((entry, mode, _DIR_MODE if entry.is_dir() else _FILE_MODE))
        return out

    def check(self, params: PkiParams) -> list[str]:
        """Problems that :meth:`load_or_build` would raise, without writing anything."""
        meta = self._read_meta()
        if meta is None:
            return []
        problems = self._meta_differences(meta, params)
        if not problems:
            try:
                root = self._load_root(meta)
                self._check_imported_root(params, root, meta)
            except PkiStoreError as exc:
                problems.append(str(exc))
        return problems

    # ----------------------------------------------------------------- validation
    def _meta_differences(self, meta: dict[str, Any], params: PkiParams) -> list[str]:
        wanted = {
            "mesh_id": params.mesh_id,
            "profile": params.profile,
            "key_algorithm": KeyAlgorithm(params.key_algorithm).value,
            "trust_domain": params.trust_domain,
        }
        return [
            f"{k.replace('_', ' ')}: store has {meta.get(k)!r}, spec wants {v!r}"
            for k, v in wanted.items()
            if meta.get(k) != v
        ]

    def _check_meta(self, meta: dict[str, Any], params: PkiParams) -> None:
        if meta.get("version") != _META_VERSION:
            raise PkiStoreError(
                f"PKI store {self.path} has meta.json version {meta.get('version')!r}; "
                f"this meshboot understands version {_META_VERSION}"
            )
        diffs = self._meta_differences(meta, params)
        if diffs:
            raise PkiStoreError(
                f"PKI store {self.path} does not match the spec ("
                + "; ".join(diffs)
                + "). It belongs to another mesh or configuration; point --pki-dir "
                "elsewhere or move the store away deliberately. Nothing was changed."
            )

    def _check_imported_root(self, params: PkiParams, stored_root: CA,
                             meta: dict[str, Any] | None = None) -> None:
        if params.imported_root is None:
            return
        try:
            imported = CA.from_pem(*params.imported_root)
        except ValueError as exc:
            raise PkiStoreError(f"imported root is unusable: {exc}") from exc
        # A finished root rotation (pki.rotation): the stack file's root became the
        # new root this store was told about while the rotation ran. Any other
        # change is refused.
        finished = (meta or {}).get("next_root_fingerprint") == fingerprint(imported.cert)
        if fingerprint(imported.cert) != fingerprint(stored_root.cert) and not finished:
            raise PkiStoreError(
                f"PKI store {self.path} holds root {fingerprint(stored_root.cert)[:16]}..., "
                f"but the spec imports root {fingerprint(imported.cert)[:16]}...; "
                "root rotation is not done implicitly. Nothing was changed."
            )

    # -------------------------------------------------------------------- loading
    def _read_meta(self) -> dict[str, Any] | None:
        path = self.path / "meta.json"
        try:
            text = path.read_bytes().decode("utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise PkiStoreError(f"PKI store {self.path}: cannot read meta.json ({exc.strerror})") \
                from exc
        except UnicodeDecodeError as exc:
            raise PkiStoreError(f"PKI store {self.path}: meta.json is corrupt: not UTF-8 at byte "
                                f"offset {exc.start}") from exc
        try:
            meta = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise PkiStoreError(f"PKI store {self.path}: meta.json is corrupt: {exc}") from exc
        if not isinstance(meta, dict):
            raise PkiStoreError(f"PKI store {self.path}: meta.json is not an object")
        problems = _meta_type_problems(meta)
        if problems:
            raise PkiStoreError(f"PKI store {self.path}: meta.json is corrupt: "
                                + "; ".join(problems) + ". Nothing was changed.")
        digests = meta.get("key_sha256", {})
        self._key_digests = {k: v for k, v in digests.items() if isinstance(v, str)}
        return meta

    def _load_key(self, path: Path) -> Any:
        data = path.read_bytes()
        name = path.parent.name if path.parent.parent == self.path / "clusters" else "root"
        digest = hashlib.sha256(data).hexdigest()
        known_good = self._key_digests.get(name) == digest
        encrypted = b"ENCRYPTED PRIVATE KEY" in data
        if encrypted and not self.passphrase:
            raise PkiStoreError(
                f"PKI store {self.path}: {path.relative_to(self.path)} is encrypted; set "
                f"{PASSPHRASE_ENV} to the store passphrase"
            )
        if not encrypted and self.passphrase:
            raise PkiStoreError(
                f"PKI store {self.path}: {path.relative_to(self.path)} is not encrypted but "
                f"a passphrase was given; unset {PASSPHRASE_ENV} or re-create the store"
            )
        try:
            key = load_private_key(data, self.passphrase if encrypted else None, known_good)
        except (ValueError, TypeError) as exc:
            hint = "wrong passphrase?" if encrypted else str(exc)
            raise PkiStoreError(
                f"PKI store {self.path}: cannot load {path.relative_to(self.path)} ({hint})"
            ) from exc
        self._checked[name] = digest
        return key

    def _load_ca(self, directory: Path) -> CA:
        """Load cert + key; key problems raise, a cert/key mismatch raises ValueError."""
        try:
            key = self._load_key(directory / "key.pem")
            certs = certs_from_pem((directory / "cert.pem").read_bytes())
        except OSError as exc:
            raise PkiStoreError(f"PKI store {self.path}: cannot read "
                                f"{Path(exc.filename or directory).relative_to(self.path)} "
                                f"({exc.strerror})") from exc
        if len(certs) != 1:
            raise ValueError(f"{directory / 'cert.pem'} must hold exactly one certificate")
        return CA.from_key(certs[0], key)

    def _load_root(self, meta: dict[str, Any]) -> CA:
        root_dir = self._dir("root")
        if not (root_dir / "cert.pem").exists():
            raise PkiStoreError(f"PKI store {self.path}: meta.json exists but root/ is missing")
        try:
            root = self._load_ca(root_dir)
        except ValueError as exc:
            raise PkiStoreError(f"PKI store {self.path}: root/: {exc}") from exc
        if meta.get("root_fingerprint") != fingerprint(root.cert):
            raise PkiStoreError(
                f"PKI store {self.path}: root/cert.pem does not match the fingerprint "
                "recorded in meta.json; the store was modified by hand"
            )
        return root

    def _load_cluster(self, cluster: str, unusable: dict[str, str] | None = None) -> CA | None:
        directory = self._dir("clusters", cluster)
        if not (directory / "cert.pem").exists() or not (directory / "key.pem").exists():
            return None
        try:
            return self._load_ca(directory)
        except ValueError as exc:
            # A half-written pair (interrupted run) or a hand-edited file: re-issuing
            # an intermediate is cheap and safe, so treat it as missing, and say why.
            if unusable is not None:
                unusable[cluster] = f"the stored intermediate was unusable ({exc})"
            return None

    # -------------------------------------------------------------------- writing
    def _persist(
        self, params: PkiParams, pki: MeshPKI, meta: dict[str, Any] | None, root_is_new: bool
    ) -> None:
        digests = dict((meta or {}).get("key_sha256", {}))
        if root_is_new:
            digests = {"root": self._write_ca(self._dir("root"), pki.root)}
        elif "root" in self._checked:
            digests["root"] = self._checked["root"]
        self._ensure_dir(self._dir("clusters"))
        for cluster in pki.reissued:
            digests[cluster] = self._write_ca(self._dir("clusters", cluster),
                                              pki.intermediates[cluster])
        for cluster in pki.intermediates:
            if cluster not in pki.reissued and cluster in self._checked:
                digests[cluster] = self._checked[cluster]
        root_fp = fingerprint(pki.root.cert)
        clusters_meta: dict[str, Any] = dict((meta or {}).get("clusters", {}))
        for cluster, ca in pki.intermediates.items():
            # during a root rotation a cluster may sign with the new root already
            clusters_meta[cluster] = intermediate_inputs(params, cluster,
                                                         fingerprint(ca.root_cert))
        new_meta = {
            "version": _META_VERSION,
            "mesh_id": params.mesh_id,
            "profile": params.profile,
            "key_algorithm": KeyAlgorithm(params.key_algorithm).value,
            "trust_domain": params.trust_domain,
            "root_fingerprint": root_fp,
            "root_imported": params.imported_root is not None,
            "clusters": dict(sorted(clusters_meta.items())),
            "key_sha256": dict(sorted(digests.items())),
        }
        if pki.new_root is not None:
            # What a finished rotation may make the root (see _check_imported_root).
            new_meta["next_root_fingerprint"] = fingerprint(pki.new_root.cert)
        if new_meta != meta:
            self._write_file(
                self.path / "meta.json", (json.dumps(new_meta, indent=2) + "\n").encode()
            )

    def _write_ca(self, directory: Path, ca: CA) -> str:
        """Write key and certificate; return the key file's SHA-256 (for meta.json)."""
        self._ensure_dir(directory)
        # key first: a crash in between leaves new key + old cert, which loading
        # detects as a mismatch (and re-issues, for an intermediate).
        key_pem = private_key_to_pem(ca.key, self.passphrase)
        self._write_file(directory / "key.pem", key_pem)
        self._write_file(directory / "cert.pem", certs_to_pem([ca.cert]).encode())
        return hashlib.sha256(key_pem).hexdigest()

    def _write_file(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
        except OSError as exc:
            raise self._not_writable(path, exc) from exc
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        _fsync_dir(path.parent)

    @staticmethod
    def _missing_dirs(path: Path) -> list[Path]:
        """``path`` and its ancestors that do not exist yet, deepest first."""
        missing = []
        for p in (path, *path.parents):
            if p.exists():
                break
            missing.append(p)
        return missing

    def _remove_if_pristine(self, created: list[Path]) -> None:
        """Remove directories this call created, if they hold nothing but the lock."""
        if not created:
            return
        with contextlib.suppress(FileNotFoundError):
            (self.path / ".lock").unlink()
        for directory in created:
            try:
                directory.rmdir()
            except OSError:
                return

    def _dir(self, *parts: str) -> Path:
        return self.path.joinpath(*parts)

    def _ensure_dir(self, directory: Path) -> None:
        if directory.is_dir():
            return  # modes of existing directories: _enforce_modes
        try:
            directory.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
        except OSError as exc:
            raise self._not_writable(directory, exc, "create directory") from exc

    def _not_writable(self, path: Path, exc: OSError, what: str = "write") -> PkiStoreError:
        shown: Path | str = path.relative_to(self.path) if path.is_relative_to(self.path) else path
        if path == self.path:
            shown = "its directory"
        return PkiStoreError(
            f"PKI store {self.path}: cannot {what} {shown} ({exc.strerror}); the store must be "
            "writable to create or renew certificates"
        )

    def _enforce_modes(self) -> None:
        for entry, mode, wanted in self.mode_problems():
            shown = entry.relative_to(self.path)
            try:
                os.chmod(entry, wanted)
                done = f"set to {wanted:04o}"
            except OSError as exc:
                done = f"could not set {wanted:04o}: {exc.strerror}"
            self.warnings.append(f"PKI store {self.path}: {shown} was accessible to group/others "
                                 f"(mode {mode:04o}); {done}")

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise concurrent renders of the same environment."""
        try:
            fd: int | None = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, _FILE_MODE)
        except OSError as exc:
            if exc.errno not in _READ_ONLY_ERRORS:
                raise
            # A store we cannot write: lock the existing lock file read-only (flock
            # does not care how it was opened), or go without: a write would fail
            # anyway, and every file is replaced atomically, so a read sees whole files.
            try:
                fd = os.open(self.path / ".lock", os.O_RDONLY)
            except OSError:
                fd = None
        try:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            if fd is not None:
                os.close(fd)


def _check_cluster_name(name: str) -> None:
    # Cluster names become directory names: refuse anything that could escape.
    if not is_dns1123_label(name):
        raise PkiStoreError(f"cluster name {name!r} is not a DNS-1123 label")


def _meta_type_problems(meta: dict[str, Any]) -> list[str]:
    out = []
    for key, (kind, name) in _META_TYPES.items():
        value = meta.get(key)
        if key in meta and not (isinstance(value, kind) and (kind is bool or not isinstance(value, bool))):
            out.append(f"{key!r} should be {name}, got {json.dumps(value)[:40]}")
    clusters = meta.get("clusters")
    for cluster, inputs in clusters.items() if isinstance(clusters, dict) else ():
        if not isinstance(inputs, dict):
            out.append(f"'clusters.{cluster}' should be an object, got {json.dumps(inputs)[:40]}")
    return out


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
