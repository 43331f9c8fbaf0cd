"""Block-style YAML for plan objects, several times faster than PyYAML's dumper.

PyYAML's ``CSafeDumper`` emits in C but represents every node in Python (a
node object, a resolver lookup and a regex per scalar); that is where render
spent its time. Plan objects only hold dicts, lists, tuples, strings, ints,
floats, booleans and None, so this writer emits them directly, in the layout
``yaml.dump(..., default_flow_style=False, sort_keys=False)`` produces:

- mappings in block style, two-space indent, sequences not indented under
  their key (``key:\\n- a``), ``{}`` / ``[]`` for empty collections;
- multi-line strings as literal blocks (``|``, ``|-``, ``|+``) when they can
  be written so, double-quoted with escapes otherwise.

A string is written plain only when every YAML reader that will see it reads
it back as the same string: PyYAML's YAML 1.1 resolver (bool, int, float,
null, timestamp, merge, value), go-yaml v2 as used by ``sigs.k8s.io/yaml``
(kubectl, Flux), which also takes ``y``/``n`` as booleans and tries Go's
number syntax (``1e3``, ``0o17``, ``1_000``) on scalars that start like a
number, and YAML 1.2. Everything else is single-quoted, or double-quoted when
it holds characters that single quotes cannot carry. ``tests/stacks/
test_yaml_emit.py`` round-trips adversarial strings through libyaml.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

from yaml.resolver import Resolver

# Characters a plain scalar may not start with (YAML indicators, spaces).
_PLAIN_FIRST_BAD = frozenset("-?:,[]{}#&*!|>'\"%@` \t")
# Printable in YAML, minus the line breaks YAML 1.1 knows (NEL, LS, PS) and the BOM.
_NEEDS_ESCAPE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff"
                           "\ud800-\udfff]")
_NOT_PLAIN = re.compile(r": |\s#|[\t\n\r]|[\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff"
                        r"\ud800-\udfff]")
_GO_BOOL_OR_NULL = frozenset({"y", "Y", "n", "N", "~", "null", "Null", "NULL", "true", "True",
                              "TRUE", "false", "False", "FALSE", "yes", "Yes", "YES", "no", "No",
                              "NO", "on", "On", "ON", "off", "Off", "OFF"})
_IMPLICIT = Resolver.yaml_implicit_resolvers
_STR_TAG = "tag:yaml.org,2002:str"


def _number_like(s: str) -> bool:
    """Would go-yaml read ``s`` as a number (Go's ParseInt base 0 / ParseFloat)?"""
    if s[0] not in "+-.0123456789":
        return False
    try:
        float(s)
        return True
    except ValueError:
        pass
    try:
        int(s, 0)
        return True
    except ValueError:
        return False


def plain_ok(s: str) -> bool:
    """``s`` can be written unquoted and still reads back as this string everywhere."""
    if not s or s[0] in _PLAIN_FIRST_BAD or s[-1] in " \t:" or s.startswith("..."):
        return False
    if _NOT_PLAIN.search(s) or s in _GO_BOOL_OR_NULL or _number_like(s):
        return False
    for tag, regexp in _IMPLICIT.get(s[0], ()):
        if tag != _STR_TAG and regexp.match(s):
            return False
    return True


def _double_quoted(s: str) -> str:
    text = json.dumps(s, ensure_ascii=False)
    return _NEEDS_ESCAPE.sub(_escape, text)


def _escape(m: re.Match[str]) -> str:
    return f"\\u{ord(m.group()):04x}"


def quote(s: str) -> str:
    """One-line form of a string scalar: plain, single- or double-quoted."""
    if plain_ok(s):
        return s
    if "\n" in s or "\r" in s or _NEEDS_ESCAPE.search(s) or "\t" in s:
        return _double_quoted(s)
    return "'" + s.replace("'", "''") + "'"


def _literal_ok(s: str) -> bool:
    if s[0] in " \n" or "\r" in s or "\t" in s or _NEEDS_ESCAPE.search(s):
        return False
    return " \n" not in s and not s.endswith(" ")


def _float(v: float) -> str:
    if math.isnan(v):
        return ".nan"
    if math.isinf(v):
        return ".inf" if v > 0 else "-.inf"
    text = repr(v).lower()
    if "." not in text and "e" in text:
        text = text.replace("e", ".0e", 1)
    return text


class YamlWriter:
    """Emits documents; caches the written form of every string it has seen.

    One writer per render: the cache grows with the distinct strings of the
    plan (keys, names, hosts), which are few compared with the output.
    """

    def __init__(self, resolve: Callable[[Any], Any] | None = None,
                 ref_types: tuple[type, ...] = ()) -> None:
        """``resolve`` replaces values of ``ref_types`` (plan references) while writing."""
        self._scalars: dict[str, str] = {}
        self._resolve = resolve
        self._ref_types = frozenset(ref_types)

    def document(self, obj: Any) -> str:
        """One document with its ``---`` line."""
        return self.documents([obj])

    def documents(self, objs: list[Any], header: str = "") -> str:
        """``---``-separated documents (the layout of ``yaml.dump_all(explicit_start=True)``)."""
        out = [header]
        for obj in objs:
            kind = type(obj)
            if kind is dict and obj:
                out.append("---\n")
                self._mapping(obj, "", "", out)
            elif (kind is list or kind is tuple) and obj:
                out.append("---\n")
                self._sequence(obj, "", "", out)
            else:
                out.append(f"--- {self._inline(obj)}\n")
        return "".join(out)

    def _string(self, s: str) -> str:
        found = self._scalars.get(s)
        if found is None:
            found = self._scalars[s] = quote(s)
        return found

    def _inline(self, v: Any) -> str:
        """A value that fits on its key's line (never a non-empty collection)."""
        kind = type(v)
        if kind is str:
            return self._string(v)
        if kind is bool:
            return "true" if v else "false"
        if kind is int:
            return str(v)
        if v is None:
            return "null"
        if kind is float:
            return _float(v)
        if kind is dict:
            return "{}"
        if kind is list or kind is tuple:
            return "[]"
        if isinstance(v, str):  # str subclasses (e.g. enums)
            return self._string(str(v))
        if isinstance(v, bool | int):
            return self._inline(bool(v) if isinstance(v, bool) else int(v))
        raise TypeError(f"cannot write {type(v).__name__} as YAML: {v!r}")

    def _resolved(self, ref: Any) -> Any:
        assert self._resolve is not None
        value = self._resolve(ref)
        if type(value) in self._ref_types:
            raise TypeError(f"{ref!r} resolved to another reference")
        return value

    def _block(self, s: str, indent: str) -> str:
        """A multi-line string after ``key: `` / ``- ``: a literal block if possible."""
        if not _literal_ok(s):
            return _double_quoted(s) + "\n"
        if s.endswith("\n\n"):
            head = "|+\n"
        elif s.endswith("\n"):
            head = "|\n"
        else:
            head = "|-\n"
        lines = s.split("\n")
        if s.endswith("\n"):
            lines.pop()
        return head + "".join(f"{indent}{line}\n" if line else "\n" for line in lines)

    def _mapping(self, d: dict[Any, Any], indent: str, first: str, out: list[str]) -> None:
        """``d`` (non-empty) with keys at ``indent``; the first line starts with ``first``."""
        prefix = first or indent
        inner = indent + "  "
        for k, v in d.items():
            key = self._string(k) if type(k) is str else self._inline(k)
            kind = type(v)
            if kind is str:
                if "\n" in v or "\r" in v:
                    out.append(f"{prefix}{key}: {self._block(v, inner)}")
                else:
                    out.append(f"{prefix}{key}: {self._string(v)}\n")
            elif kind is dict and v:
                out.append(f"{prefix}{key}:\n")
                self._mapping(v, inner, "", out)
            elif (kind is list or kind is tuple) and v:
                out.append(f"{prefix}{key}:\n")
                self._sequence(v, indent, "", out)
            elif kind in self._ref_types:
                self._mapping({k: self._resolved(v)}, indent, prefix, out)
            else:
                out.append(f"{prefix}{key}: {self._inline(v)}\n")
            prefix = indent

    def _sequence(self, seq: list[Any] | tuple[Any, ...], indent: str, first: str,
                  out: list[str]) -> None:
        """``seq`` (non-empty) with dashes at ``indent``; the first line starts with ``first``."""
        prefix = (first or indent) + "- "
        dash = indent + "- "
        inner = indent + "  "
        for v in seq:
            kind = type(v)
            if kind is dict and v:
                self._mapping(v, inner, prefix, out)
            elif (kind is list or kind is tuple) and v:
                self._sequence(v, inner, prefix, out)
            elif kind is str and ("\n" in v or "\r" in v):
                out.append(f"{prefix}{self._block(v, inner)}")
            elif kind in self._ref_types:
                self._sequence([self._resolved(v)], indent, prefix[:-2], out)
            else:
                out.append(f"{prefix}{self._inline(v)}\n")
            prefix = dash
