"""Where a render goes, and how it gets there without destroying anything.

Guarantees of :class:`OutputTree` (each one tested in ``tests/stacks/test_output.py``):

* **Only meshboot's own trees are replaced.** Every render writes a marker,
  ``.meshboot-render.json`` (meshboot version, source stack file, root
  fingerprint, SHA-256 of every file). An existing directory is replaced only
  if it holds a marker and exactly the files that marker lists, unchanged.
  Anything else (a non-empty directory without a marker, a file meshboot did not
  write, a file edited since) is refused and left untouched.
* **Dangerous targets are refused up front**: an empty ``--out`` (an unset CI
  variable), the current directory or the stack file's directory (or any of
  their ancestors), a directory that contains the stack file or the PKI store,
  or one inside the PKI store.
* **The swap is atomic.** The new tree is built in a sibling temporary directory
  and exchanged with the old one by ``renameat2(RENAME_EXCHANGE)`` (Linux) or
  ``renamex_np(RENAME_SWAP)`` (macOS): one system call, so at every instant the
  path names either the complete old tree or the complete new one. Chosen over a
  symlink flipped with ``os.replace`` because the output stays a plain directory
  that ``kubectl apply -R``, Flux and ``git add`` treat like any other. Where the
  file system cannot exchange (``EINVAL``/``ENOSYS``), the old tree is renamed
  aside first and a warning says the swap was not atomic.
* **Concurrent renders into the same directory are serialised** by an exclusive
  ``flock`` on ``.<name>.lock`` beside it.
* **Nothing with keys is left behind.** Temporary and old trees (``.<name>.tmp-*``
  / ``.<name>.old-*``, which hold CA keys) are removed when the render ends, and
  any left by a killed render are removed by the next render of that directory.
* **Modes do not depend on the umask**: directories 0755, Secret directories
  0700, files 0644, Secret files 0600, set explicitly.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

MARKER = ".meshboot-render.json"
MARKER_FORMAT = 1
_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----")
_LISTED = 8  # offending files named in a refusal before "... and N more"


class OutputError(Exception):
    """The output cannot be written as asked; nothing was changed. CLI: exit 2."""


@dataclass(frozen=True)
class OutputFile:
    content: bytes
    secret: bool = False


@dataclass
class PreviousRender:
    """What an existing render directory says about itself."""

    marker: dict[str, Any] | None = None
    roots: set[str] = field(default_factory=set)   # SHA-256 of root CAs found in its files


# --------------------------------------------------------------- target checks
def path_problem(raw: str | Path, option: str) -> str | None:
    """Why ``raw`` is not a usable path at all (too long, a NUL byte, a loop...), or None."""
    try:
        os.stat(_resolved(Path(raw)))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError, RuntimeError) as exc:
        return f"{option} {str(raw)[:80]!r}: not a usable path ({getattr(exc, 'strerror', None) or exc})"
    return None


def check_target(raw: str, *, option: str, stack_file: Path, pki_dir: Path,
                 cwd: Path | None = None) -> list[str]:
    """Why ``raw`` must not be used as a render directory (empty list: fine)."""
    if not raw.strip():
        return [f"{option} is empty (an unset variable?); name the output directory"]
    unusable = [p for p in (path_problem(raw, option), path_problem(pki_dir, "--pki-dir")) if p]
    if unusable:
        return unusable
    target = _resolved(Path(raw))
    cwd = _resolved(cwd or Path.cwd())
    stack_file = _resolved(stack_file)
    pki_dir = _resolved(pki_dir)
    problems = []
    if target.exists() and not target.is_dir():
        problems.append(f"{option} {raw}: exists and is not a directory")
    for what, path in (("the current directory", cwd),
                       ("the stack file's directory", stack_file.parent)):
        if target == path:
            problems.append(f"{option} {raw}: is {what}; render into a subdirectory "
                            "such as out/<env>")
        elif _is_within(path, target):
            problems.append(f"{option} {raw}: contains {what} ({path})")
    if _is_within(stack_file, target) and stack_file.parent != target:
        problems.append(f"{option} {raw}: contains the stack file {stack_file}")
    if _is_within(pki_dir, target) or pki_dir == target:
        problems.append(f"{option} {raw}: contains the PKI store {pki_dir}")
    elif _is_within(target, pki_dir):
        problems.append(f"{option} {raw}: lies inside the PKI store {pki_dir}")
    return problems


def check_pair(out: Path, secrets_out: Path) -> list[str]:
    out, secrets_out = _resolved(out), _resolved(secrets_out)
    if out == secrets_out or _is_within(out, secrets_out) or _is_within(secrets_out, out):
        return [f"--secrets-out {secrets_out} and --out {out} must not contain each other: "
                "Secrets go outside the tree that is committed"]
    return []


def _resolved(path: Path) -> Path:
    return Path(os.path.abspath(path.expanduser())).resolve()


def _is_within(path: Path, directory: Path) -> bool:
    """True if ``path`` is strictly below ``directory``."""
    return path != directory and directory in path.parents


# --------------------------------------------------------------- existing trees
def read_previous(directory: Path) -> PreviousRender:
    """Marker and root fingerprints of an existing render; refuses what is not one."""
    prev = PreviousRender()
    if not directory.exists():
        return prev
    entries = _tree_files(directory)
    if not entries:
        return prev
    marker_path = directory / MARKER
    if MARKER not in entries:
        raise OutputError(
            f"{directory} is not empty and was not written by meshboot (no {MARKER}); "
            "refusing to replace it. Choose another directory, or move it away yourself.")
    try:
        marker = json.loads(marker_path.read_bytes())
        listed = marker["files"]
        if not isinstance(listed, dict):
            raise TypeError("files is not a mapping")
    except (ValueError, KeyError, TypeError) as exc:
        raise OutputError(f"{marker_path} is not a meshboot render marker ({exc}); "
                          "refusing to replace the directory") from exc
    foreign = sorted(set(entries) - set(listed) - {MARKER})
    changed = sorted(rel for rel in set(listed) & set(entries)
                     if _sha256_file(directory / rel) != listed[rel])
    problems = []
    for what, names in (("not written by meshboot", foreign),
                        ("edited since meshboot wrote them", changed)):
        if names:
            shown = ", ".join(names[:_LISTED])
            more = f" and {len(names) - _LISTED} more" if len(names) > _LISTED else ""
            problems.append(f"files {what}: {shown}{more}")
    if problems:
        raise OutputError(
            f"{directory} holds a meshboot render, but " + "; ".join(problems)
            + ". Refusing to replace it: move those files away (or re-render elsewhere).")
    # A listed file deleted by hand is no loss: the new render brings it back.
    prev.marker = marker
    if isinstance(marker.get("root_fingerprint"), str):
        prev.roots.add(marker["root_fingerprint"])
    trust = marker.get("trust")
    for entry in trust.values() if isinstance(trust, dict) else ():
        roots = entry.get("roots") if isinstance(entry, dict) else None
        prev.roots |= {r for r in roots if isinstance(r, str)} if isinstance(roots, list) else set()
    for rel in entries:
        if rel.endswith((".yaml", ".yml")):
            prev.roots |= _root_fingerprints((directory / rel).read_bytes())
    return prev


def _tree_files(directory: Path) -> list[str]:
    """Every non-directory entry below ``directory`` (symlinks included), as relative paths."""
    out = []
    for dirpath, dirnames, filenames in os.walk(directory):
        base = Path(dirpath)
        for name in filenames + [d for d in dirnames if (base / d).is_symlink()]:
            out.append((base / name).relative_to(directory).as_posix())
    return sorted(out)


def _sha256_file(path: Path) -> str | None:
    if path.is_symlink() or not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _root_fingerprints(data: bytes) -> set[str]:
    """SHA-256 of the self-signed CA certificates in a rendered file.

    That is how the root shows up in every render: Istio's ``cacerts``
    ``root-cert.pem``/``cert-chain.pem``, Linkerd's trust anchors in the
    control-plane values and the issuer Secret's ``ca.crt``.
    """
    found = set()
    for match in _PEM_CERT.finditer(data):
        block = match.group(0)
        # Rendered YAML indents PEM lines; strip that before parsing.
        pem = b"\n".join(line.strip() for line in block.splitlines()) + b"\n"
        try:
            cert = x509.load_pem_x509_certificate(pem)
            basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except (ValueError, x509.ExtensionNotFound):
            continue
        if basic.ca and cert.issuer == cert.subject:
            found.add(cert.fingerprint(hashes.SHA256()).hex())
    return found


# --------------------------------------------------------------- writing
class OutputTree:
    """One render target: locked, cleaned, built aside, then swapped in.

    Use as a context manager: entering takes the lock, removes stale trees and
    creates the temporary directory (so an unwritable target fails before the
    PKI store is touched); :meth:`commit` writes and swaps; leaving removes the
    temporary tree whatever happened.
    """

    def __init__(self, directory: Path, private: bool = False) -> None:
        self.directory = _resolved(directory)
        self.private = private  # a tree of Secrets only: 0700 from its top
        self.shown = directory
        self.previous = PreviousRender()
        self.warnings: list[str] = []
        self._lock_fd: int | None = None
        self._tmp: Path | None = None
        self._digests: dict[str, str] = {}

    def __enter__(self) -> OutputTree:
        parent = self.directory.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(parent / f".{self.directory.name}.lock",
                                    os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise OutputError(f"cannot write output {self.shown}: {parent}: "
                              f"{exc.strerror or exc}") from exc
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another render of {self.shown} to finish...", file=sys.stderr)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            self._remove_stale()
            self.previous = read_previous(self.directory)
            self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.directory.name}.tmp-", dir=parent))
        except OSError as exc:
            self._release()
            raise OutputError(f"cannot write output {self.shown}: {exc.strerror or exc}") from exc
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        self._release()

    def _release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def _remove_stale(self) -> None:
        """Trees left by a killed render of this directory; they may hold CA keys."""
        name = self.directory.name
        for entry in self.directory.parent.iterdir():
            if entry.name.startswith((f".{name}.tmp-", f".{name}.old-")):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()

    @property
    def staging(self) -> Path:
        """The temporary tree being built (files written there are swapped in by commit)."""
        assert self._tmp is not None, "staging outside `with`"
        return self._tmp

    def record(self, rel: str, digest: str) -> None:
        """A file written into :attr:`staging` (e.g. by a worker process), for the marker."""
        self._digests[rel] = digest

    def commit(self, marker: dict[str, Any], files: dict[str, OutputFile] | None = None) -> None:
        """Write ``files`` and the marker into the temporary tree, then swap it in."""
        tmp = self.staging
        os.chmod(tmp, 0o700 if self.private else 0o755)
        for rel in sorted(files or {}):
            f = (files or {})[rel]
            self._digests[rel] = staged_file(tmp, rel, f.content, f.secret)
        digests = dict(sorted(self._digests.items()))
        doc = {"format": MARKER_FORMAT, **marker, "files": digests}
        staged_file(tmp, MARKER, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode(), False)
        self._swap(tmp)

    def _swap(self, tmp: Path) -> None:
        target = self.directory
        if not target.exists():
            os.rename(tmp, target)
            self._tmp = None
            return
        if not _exchange(tmp, target):
            self.warnings.append(f"{target.parent} cannot exchange directories atomically; "
                                 f"{self.shown} was replaced with two renames")
            old = target.parent / f".{target.name}.old-{os.getpid()}"
            os.rename(target, old)
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
            self._tmp = None
            return
        # ``tmp`` now holds the old tree; __exit__ removes it.


class StagedFile:
    """A new file in a staging tree, written piece by piece, hashed as it is written.

    Explicit modes (0644, Secrets 0600 in a 0700 directory), never the umask.
    Several processes may stage different files of one tree at once: a
    directory another process created first is fine.
    """

    def __init__(self, root: Path, rel: str, secret: bool) -> None:
        self.path = root / rel
        parent = self.path.parent
        chain = [parent, *parent.parents]
        # The directories strictly below ``root`` (as _is_within, in one walk up the chain).
        below_root = chain[:chain.index(root)] if root in chain else []
        for d in reversed(below_root):
            if not d.exists():
                try:
                    d.mkdir()
                    os.chmod(d, 0o755)
                except FileExistsError:
                    pass
        if secret:
            os.chmod(parent, 0o700)
        mode = 0o600 if secret else 0o644
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        self._fh = os.fdopen(fd, "wb")
        os.fchmod(fd, mode)  # not left to the umask
        self._sha = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self._fh.write(data)
        self._sha.update(data)

    def close(self) -> str:
        """Close; the content's SHA-256."""
        self._fh.close()
        return self._sha.hexdigest()

    def discard(self) -> None:
        self._fh.close()
        self.path.unlink()


def staged_file(root: Path, rel: str, content: bytes, secret: bool) -> str:
    """Write ``root/rel`` in one piece (see :class:`StagedFile`); its SHA-256."""
    f = StagedFile(root, rel, secret)
    f.write(content)
    return f.close()


_RENAME_EXCHANGE = 1 << 1     # linux/fs.h
_RENAME_SWAP = 0x00000002     # macOS sys/stdio.h
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two directories; False if this system cannot."""
    libc = _libc()
    if libc is None:
        return False
    if sys.platform.startswith("linux") and hasattr(libc, "renameat2"):
        rc = libc.renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b),
                            _RENAME_EXCHANGE)
    elif sys.platform == "darwin" and hasattr(libc, "renamex_np"):
        rc = libc.renamex_np(os.fsencode(a), os.fsencode(b), _RENAME_SWAP)
    else:
        return False
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _libc() -> Any:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    except OSError:
        return None
