"""Reading a finished render back: the objects of every cluster, keyed as Kubernetes keys them.

`meshboot diff` compares two renders, so it reads what `render` wrote (see
README "What render writes"): a tree with the marker ``.meshboot-render.json``
and one directory per cluster, whose Secrets are either in
``<cluster>/secrets/``, in a separate ``--secrets-out`` tree (its own marker,
``"secrets": "this tree"``, files ``<cluster>/<namespace>.<name>.yaml``), or
absent. Every layout is read the same way: the first path component is the
cluster, every ``.yaml`` file below it holds its objects.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stacks.output import MARKER

try:  # libyaml when present: renders of big meshes are tens of MB
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader

# An alias: ``*`` starting a plain token (a plain scalar cannot start with it, so
# outside quotes it is always an alias); a match inside quotes only costs a walk.
_ALIAS = re.compile(rb"(?:^|[\s\[{,])\*", re.M)

# What render writes in the marker's "secrets": where this tree's Secrets are.
SECRETS_ELSEWHERE = "--secrets-out"
SECRETS_TREE = "this tree"  # ... and in the marker of the --secrets-out tree itself


class TreeError(Exception):
    """A directory that cannot be compared: missing, not a render, unparseable."""


@dataclass(frozen=True, order=True)
class ObjectKey:
    """How the API server identifies an object in one cluster."""

    api_version: str
    kind: str
    namespace: str
    name: str

    def text(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.api_version} {self.kind} {where}"


@dataclass
class RenderTree:
    """One render (optionally with its separate Secrets tree), read into memory."""

    path: Path
    marker: dict[str, Any]
    label: str = ""  # how reports name it (a temporary render is named after its stack file)
    clusters: dict[str, dict[ObjectKey, dict[str, Any]]] = field(default_factory=dict)
    has_secrets: bool = True
    warnings: list[str] = field(default_factory=list)

    @property
    def root_fingerprint(self) -> str | None:
        fp = self.marker.get("root_fingerprint")
        return fp if isinstance(fp, str) else None

    @property
    def version(self) -> str | None:
        v = self.marker.get("version")
        return v if isinstance(v, str) else None


def read_marker(directory: Path) -> dict[str, Any]:
    """The marker of a render tree; :class:`TreeError` for anything that is not one."""
    if not directory.exists():
        raise TreeError(f"{directory}: no such directory")
    if not directory.is_dir():
        raise TreeError(f"{directory}: not a directory")
    path = directory / MARKER
    if not path.is_file():
        raise TreeError(f"{directory}: not a meshboot render (no {MARKER}); "
                        "give the directory `meshboot render --out` wrote")
    try:
        marker = json.loads(path.read_bytes())
    except ValueError as exc:
        raise TreeError(f"{path}: not a meshboot render marker (not JSON: {exc})") from exc
    if not isinstance(marker, dict) or marker.get("generator") != "meshboot" \
            or not isinstance(marker.get("files"), dict):
        raise TreeError(f"{path}: not a meshboot render marker "
                        "(expected generator \"meshboot\" and a files mapping)")
    return marker


def read_tree(directory: Path, secrets_dir: Path | None = None) -> RenderTree:
    """The objects of a render tree (and of its ``--secrets-out`` tree, if given)."""
    marker = read_marker(directory)
    if marker.get("secrets") == SECRETS_TREE:
        raise TreeError(f"{directory}: the Secrets of a render (its --secrets-out tree), not "
                        "the render: give the --out directory, and this one with "
                        "--old-secrets/--new-secrets")
    tree = RenderTree(path=directory, marker=marker, label=str(directory))
    _read_objects(tree, directory, marker)
    if secrets_dir is not None:
        secrets_marker = read_marker(secrets_dir)
        if secrets_marker.get("secrets") != SECRETS_TREE:
            raise TreeError(f"{secrets_dir}: not the Secrets of a render (its "
                            f"{MARKER} is not that of a --secrets-out tree)")
        if marker.get("secrets") != SECRETS_ELSEWHERE:
            raise TreeError(f"{directory}: holds its own Secrets (rendered without "
                            f"--secrets-out), so {secrets_dir} cannot be its Secrets tree")
        _read_objects(tree, secrets_dir, secrets_marker)
    else:
        tree.has_secrets = marker.get("secrets") != SECRETS_ELSEWHERE
    return tree


def _read_objects(tree: RenderTree, directory: Path, marker: dict[str, Any]) -> None:
    listed: dict[str, Any] = marker["files"]
    found = _yaml_files(directory)
    for rel in sorted(set(listed) - set(found)):
        tree.warnings.append(f"{directory}: {rel} is listed in {MARKER} but missing")
    for rel in found:
        data = _read_regular(directory / rel)
        if rel not in listed:
            tree.warnings.append(f"{directory}: {rel} was not written by meshboot (not in {MARKER})")
        elif hashlib.sha256(data).hexdigest() != listed[rel]:
            tree.warnings.append(f"{directory}: {rel} was edited since meshboot wrote it")
        if "/" not in rel:
            tree.warnings.append(f"{directory}: {rel} is outside every cluster directory; ignored")
            continue
        cluster = rel.split("/", 1)[0]
        objects = tree.clusters.setdefault(cluster, {})
        for index, obj in enumerate(_documents(directory / rel, data)):
            key = _key(obj, directory / rel, index)
            if key in objects and objects[key] != obj:
                raise TreeError(f"{directory / rel}: document {index + 1}: {key.text()} is "
                                f"already defined differently in cluster {cluster}")
            objects[key] = obj


def _yaml_files(directory: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames.sort()
        base = Path(dirpath)
        for name in filenames:
            if name.endswith((".yaml", ".yml")):
                out.append((base / name).relative_to(directory).as_posix())
    return sorted(out)


def _read_regular(path: Path) -> bytes:
    """The bytes of a regular file; a FIFO or a device (e.g. a symlink to /dev/zero)
    would block or never end, so it is refused like any unreadable file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise TreeError(f"{path}: cannot read it ({exc.strerror})") from exc
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise TreeError(f"{path}: not a regular file")
        try:
            return f.read()
        except OSError as exc:
            raise TreeError(f"{path}: cannot read it ({exc.strerror})") from exc


def _documents(path: Path, data: bytes) -> list[dict[str, Any]]:
    try:
        docs = list(yaml.load_all(data, Loader=_Loader))
    except yaml.YAMLError as exc:
        raise TreeError(f"{path}: not valid YAML ({_yaml_reason(exc)})") from exc
    out = []
    maybe_aliases = _ALIAS.search(data) is not None
    for index, doc in enumerate(docs):
        if doc is None:  # the empty document before a file's first `---`
            continue
        if not isinstance(doc, dict):
            raise TreeError(f"{path}: document {index + 1}: not a Kubernetes object "
                            f"(a {type(doc).__name__}, expected a mapping)")
        if maybe_aliases and _shares_nodes(doc):
            raise TreeError(f"{path}: document {index + 1}: uses YAML aliases (*name), which "
                            "meshboot never writes; expand them to compare this file")
        out.append(doc)
    return out


def _shares_nodes(doc: dict[str, Any]) -> bool:
    """Whether a mapping or list occurs twice in ``doc``: only an alias does that.

    An alias costs nothing to load but is walked once per use when compared and
    hashed, so a few nested ones (the "billion laughs") would never finish.
    Render writes no aliases; like the stack file's reader, diff refuses them.
    """
    seen: set[int] = set()
    stack: list[Any] = [doc]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            return True
        seen.add(id(node))
        children = node.values() if isinstance(node, dict) else node
        stack.extend(c for c in children if isinstance(c, (dict, list)))
    return False


def _yaml_reason(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"line {mark.line + 1}: {problem}" if mark is not None else str(problem)


def _key(obj: dict[str, Any], path: Path, index: int) -> ObjectKey:
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    namespace = meta.get("namespace", "") if isinstance(meta, dict) else ""
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not all(isinstance(v, str) and v for v in (api_version, kind, name)) \
            or not isinstance(namespace, str):
        raise TreeError(f"{path}: object {index + 1}: not a Kubernetes object "
                        "(needs string apiVersion, kind and metadata.name)")
    return ObjectKey(str(api_version), str(kind), namespace, str(name))
