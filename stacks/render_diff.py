"""Two renders compared: per cluster, objects added, removed and changed, with short field diffs.

Objects are matched by what the API server matches them by, (apiVersion,
kind, namespace, name), per cluster. A field diff is a list of dotted paths
(``spec.http[0].route[1].weight: 10 -> 20``), capped per object. Secret
values never appear: a Secret is shown by name, type and a hash of its
content, and any other value that holds a private key, spans lines or is
long is shown as a hash too, so the output can go into a CI log or a pull
request comment.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from stacks.ca_events import CaEvent, ca_events, cluster_order, secret_values
from stacks.render_tree import ObjectKey, RenderTree

FIELDS_PER_OBJECT = 8
_SHOWN_CHARS = 60
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_NUMBER_LIKE = re.compile(r"^[-+]?(\d|\.\d)")
_SECRET_SHOWN = ("apiVersion", "kind", "metadata", "type", "immutable")
_ABSENT = object()


@dataclass
class ObjectChange:
    key: ObjectKey
    change: str  # "added" | "removed" | "changed"
    summary: str = ""  # e.g. a Secret's type and content hash
    fields: list[str] = field(default_factory=list)
    more: int = 0  # field lines left off


@dataclass
class ClusterDiff:
    name: str
    status: str  # "" | "added" | "removed": the whole cluster is new / gone
    changes: list[ObjectChange] = field(default_factory=list)

    def count(self, change: str) -> int:
        return sum(1 for c in self.changes if c.change == change)


@dataclass
class TreeDiff:
    old: RenderTree
    new: RenderTree
    clusters: list[ClusterDiff]
    ca: list[CaEvent]
    notes: list[str]

    @property
    def changed(self) -> bool:
        return any(c.changes or c.status for c in self.clusters) or any(e.change for e in self.ca)


def diff_trees(old: RenderTree, new: RenderTree) -> TreeDiff:
    compare_secrets = old.has_secrets and new.has_secrets
    notes = []
    if not compare_secrets:
        which = " and ".join(t for t, tree in (("old", old), ("new", new)) if not tree.has_secrets)
        notes.append(f"Secrets not compared: the {which} render keeps them in a separate "
                     f"--secrets-out tree (pass it with --{which.split()[0]}-secrets DIR)")
    if old.version != new.version:
        notes.append(f"rendered by meshboot {old.version} (old) and {new.version} (new)")
    clusters = []
    for name in cluster_order(old, new):
        before = _objects(old.clusters.get(name, {}), compare_secrets)
        after = _objects(new.clusters.get(name, {}), compare_secrets)
        status = "added" if name not in old.clusters else "removed" if name not in new.clusters else ""
        clusters.append(ClusterDiff(name, status, _object_changes(before, after)))
    return TreeDiff(old, new, clusters, ca_events(old, new), notes)


def _objects(objects: dict[ObjectKey, dict[str, Any]], secrets: bool) -> dict[ObjectKey, dict[str, Any]]:
    return objects if secrets else {k: v for k, v in objects.items() if k.kind != "Secret"}


def _object_changes(before: dict[ObjectKey, dict[str, Any]],
                    after: dict[ObjectKey, dict[str, Any]]) -> list[ObjectChange]:
    out = []
    for key in sorted(set(before) | set(after),
                      key=lambda k: (k.kind, k.namespace, k.name, k.api_version)):
        if key not in before:
            out.append(ObjectChange(key, "added", _summary(key, after[key])))
        elif key not in after:
            out.append(ObjectChange(key, "removed", _summary(key, before[key])))
        elif before[key] != after[key]:
            lines = object_fields(key, before[key], after[key])
            if not lines:  # e.g. a Secret's value moved between data and stringData
                continue
            out.append(ObjectChange(key, "changed", _summary(key, after[key], before[key]),
                                    lines[:FIELDS_PER_OBJECT], max(0, len(lines) - FIELDS_PER_OBJECT)))
    return out


def _summary(key: ObjectKey, obj: dict[str, Any], before: dict[str, Any] | None = None) -> str:
    if key.kind != "Secret":
        return ""
    content = secret_hash(obj)
    if before is not None and secret_hash(before) != content:
        content = f"{secret_hash(before)} -> {content}"
    return f"type {obj.get('type', 'Opaque')}, content {content}"


def secret_hash(obj: dict[str, Any]) -> str:
    """One hash of a Secret's keys and values: equal exactly when the stored content is."""
    values = secret_values(obj)
    if not values:
        return "empty"
    digest = hashlib.sha256()
    for k in sorted(values):
        digest.update(f"{k}\0{len(values[k])}\0".encode() + values[k])
    return f"sha256:{digest.hexdigest()[:16]}"


def object_fields(key: ObjectKey, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Every changed field as one line; a Secret's values as key names only."""
    if key.kind != "Secret":
        return _fields(old, new, "")
    a, b = secret_values(old), secret_values(new)
    lines = []
    for k in sorted(set(a) | set(b)):
        if k not in a:
            lines.append(f"data[{_quote(k)}]: + (value hidden)")
        elif k not in b:
            lines.append(f"data[{_quote(k)}]: - (value hidden)")
        elif a[k] != b[k]:
            lines.append(f"data[{_quote(k)}]: changed (value hidden)")
    # Only a Secret's identity and type are shown; any field beyond the API's own
    # (a hand-edited file may hold content anywhere) is hidden like its data.
    for k in sorted({*old, *new} - {*_SECRET_SHOWN, "data", "stringData"}):
        if old.get(k, _ABSENT) != new.get(k, _ABSENT):
            change = "+" if k not in old else "-" if k not in new else "changed"
            lines.append(f"{_join('', k)}: {change} (value hidden)")
    rest_a = {k: v for k, v in old.items() if k in _SECRET_SHOWN}
    rest_b = {k: v for k, v in new.items() if k in _SECRET_SHOWN}
    return lines + _fields(rest_a, rest_b, "")


def _fields(old: Any, new: Any, path: str) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in list(new) + [k for k in old if k not in new]:
            p = _join(path, str(k))
            if k not in old:
                out.append(f"{p}: + {show(new[k])}")
            elif k not in new:
                out.append(f"{p}: - {show(old[k])}")
            else:
                out += _fields(old[k], new[k], p)
        return out
    if isinstance(old, list) and isinstance(new, list):
        return _list_fields(old, new, path)
    if old != new or type(old) is not type(new):
        return [f"{path or '.'}: {show(old)} -> {show(new)}"]
    return []


def _names(items: list[Any]) -> list[str] | None:
    names = [i.get("name") for i in items if isinstance(i, dict)]
    if len(names) != len(items) or not all(isinstance(n, str) for n in names) \
            or len(set(names)) != len(names):
        return None
    return [str(n) for n in names]


def _list_fields(old: list[Any], new: list[Any], path: str) -> list[str]:
    old_names, new_names = _names(old), _names(new)
    if old_names is not None and new_names is not None and old_names != new_names:
        # Named entries (routes, ports, subsets): an insertion is one line, not a shift of all.
        out = []
        for j, name in enumerate(new_names):
            if name in old_names:
                out += _fields(old[old_names.index(name)], new[j], f"{path}[{j}]")
            else:
                out.append(f"{path}[{j}]: + {show(new[j])}")
        out += [f"{path}[{i}]: - {show(old[i])}" for i, name in enumerate(old_names)
                if name not in new_names]
        return out
    out = []
    for i in range(max(len(old), len(new))):
        if i >= len(old):
            out.append(f"{path}[{i}]: + {show(new[i])}")
        elif i >= len(new):
            out.append(f"{path}[{i}]: - {show(old[i])}")
        else:
            out += _fields(old[i], new[i], f"{path}[{i}]")
    return out


def _join(path: str, key: str) -> str:
    if _PLAIN_KEY.match(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{_quote(key)}]"


def _quote(key: str) -> str:
    return json.dumps(key)


def _hashed(text: str) -> str:
    return f"sha256:{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def show(value: Any) -> str:
    """A value short enough for one line and safe to publish."""
    if isinstance(value, str):
        if "PRIVATE KEY" in value:
            return f"<private key, hidden: {_hashed(value)}>"
        if "\n" in value.rstrip("\n"):
            return f"<{len(value.splitlines())} lines, {_hashed(value)}>"
        if len(value) > _SHOWN_CHARS:
            return f"<{len(value)} characters, {_hashed(value)}>"
        if not value or value != value.strip() or value in ("true", "false", "null", "~") \
                or _NUMBER_LIKE.match(value) or any(c in value for c in "{}[],:#\"'\n"):
            return json.dumps(value)
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, dict):
        flat = _flow(value)
        if flat is not None:
            return flat
        name = value.get("name")
        if isinstance(name, str) and not show(name).startswith("<"):
            more = len(value) - 1
            return f"{{name: {show(name)}, {more} more key{'s' if more != 1 else ''}}}"
        return f"{{{len(value)} keys}}"
    if isinstance(value, list):
        flat = _flow(value)
        return flat if flat is not None else f"[{len(value)} items]"
    return f"<{type(value).__name__}>"


def _flow(value: dict[str, Any] | list[Any]) -> str | None:
    """A small collection of short scalars in YAML flow style, else None."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    parts = []
    for k, v in items:
        if isinstance(v, (dict, list)):
            return None
        shown = show(v)
        if shown.startswith("<"):
            return None
        parts.append(f"{k}: {shown}" if isinstance(value, dict) else shown)
    text = ("{" + ", ".join(parts) + "}") if isinstance(value, dict) else ("[" + ", ".join(parts) + "]")
    return text if len(text) <= _SHOWN_CHARS else None
