"""Parse a Pulumi stack file strictly: what Pulumi would refuse, or what only
an attacker or an accident would write, is a located problem, not a crash.

Pulumi reads stack files with go-yaml v3, which refuses duplicate mapping keys
("mapping key "x" already defined at line N"); PyYAML silently keeps the last
one, so duplicates are checked here. Stack files never need aliases, and an
alias bomb ("billion laughs") expands exponentially in every walk over the
parsed data, so aliases are refused outright. Nesting is bounded so that no
recursive walk downstream (pydantic, validation, secret decryption) can hit
Python's recursion limit.

libyaml (``yaml.CSafeLoader``) is used when PyYAML has it: composing the node
graph in C is what keeps large stack files fast. The checks work on that node
graph, where an alias is the same node object reached twice.
"""

from __future__ import annotations

import codecs
import re
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from clusters.errors import Problem

MAX_DEPTH = 64
"""Deepest nesting accepted. The spec itself needs about 10 levels."""

MAX_INT_DIGITS = 100
"""Integers longer than this are refused before Python's int() sees them (it
raises past 4,300 digits); no setting needs more than a handful."""

# Longest BOMs first: the UTF-32 LE mark starts with the UTF-16 LE one.
_FOREIGN_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"),
)


class _StrictConstructor(SafeConstructor):
    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        digits = sum(ch.isdigit() for ch in node.value)
        if digits > MAX_INT_DIGITS:
            raise ConstructorError(None, None, f"integer with {digits} digits is out of range",
                                   node.start_mark)
        return super().construct_yaml_int(node)

    def construct_yaml_timestamp_as_str(self, node: yaml.ScalarNode) -> str:
        # YAML 1.1 turns 2001-12-14 into a date (and 2001-13-45 into a crash);
        # no spec key is a date, so the text is kept and validated as a string.
        return str(node.value)

    yaml_constructors = {
        **SafeConstructor.yaml_constructors,
        "tag:yaml.org,2002:int": construct_yaml_int,
        "tag:yaml.org,2002:timestamp": construct_yaml_timestamp_as_str,
    }


class _PyLoader(Reader, Scanner, Parser, Composer, _StrictConstructor, Resolver):
    """Fallback for a PyYAML built without libyaml (same checks, slower)."""

    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        _StrictConstructor.__init__(self)
        Resolver.__init__(self)


_Loader: type = _PyLoader
if yaml.__with_libyaml__:
    from yaml._yaml import CParser

    class _CLoader(CParser, _StrictConstructor, Resolver):  # type: ignore[misc]
        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            _StrictConstructor.__init__(self)
            Resolver.__init__(self)

    _Loader = _CLoader


def decode(data: bytes) -> tuple[str | None, list[Problem]]:
    """The file's text, or why it is not UTF-8 (with the byte offset)."""
    for bom, name in _FOREIGN_BOMS:
        if data.startswith(bom):
            return None, [Problem("<file>", f"not UTF-8 at byte offset 0: the file starts with a "
                                            f"{name} byte order mark (save it as UTF-8)")]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [Problem("<file>", f"not UTF-8 at byte offset {exc.start} "
                                        f"(byte 0x{data[exc.start]:02x})")]
    return text.removeprefix("\ufeff"), []


def parse(text: str) -> tuple[Any, list[Problem]]:
    """The document's data, or the problems that prevent using it.

    Ordinary stack files take the fast path (:func:`_plain_data`); anything it
    does not handle goes through the node graph, which locates every problem.
    """
    if _Parser is not None:
        data = _plain_data(text)
        if data is not _FALLBACK:
            return data, []
    return _parse_nodes(text)


_FALLBACK: Any = object()
_DECIMAL = re.compile(r"[-+]?(?:0|[1-9][0-9]{0,17})")
_Parser: Any = None
if yaml.__with_libyaml__:
    from yaml._yaml import CParser as _Parser
_SIMPLE_TAGS = {"tag:yaml.org,2002:str", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
                "tag:yaml.org,2002:bool",
                "tag:yaml.org,2002:null", "tag:yaml.org,2002:timestamp"}


def _plain_data(text: str) -> Any:
    """The data of a stack file without anchors, aliases, tags, merge keys, duplicate or
    non-scalar keys and deep nesting, built straight from libyaml's events; else ``_FALLBACK``.

    Building from events skips the node graph (a node and two marks per value)
    and PyYAML's Python constructor: a tenth of the time and of the memory on
    large stack files. Values are what the node path builds (same resolver,
    same strict int and timestamp rules).
    """
    parser = _Parser(text)
    resolver = Resolver()
    constructor = _StrictConstructor()
    tags: dict[str, str] = {}
    try:
        event = parser.get_event()          # StreamStart
        event = parser.get_event()
        if isinstance(event, yaml.StreamEndEvent):
            return None
        # DocumentStart; then one node; then DocumentEnd and StreamEnd.
        stack: list[Any] = []               # [container, pending key | None, keys seen]
        root: Any = _FALLBACK
        while True:
            event = parser.get_event()
            kind = type(event)
            if kind is yaml.ScalarEvent:
                if event.anchor is not None or (event.tag is not None and event.tag != "!"):
                    return _FALLBACK
                value = event.value
                if event.style or not event.implicit[0]:
                    item: Any = value
                    tag: str | None = "tag:yaml.org,2002:str"
                else:
                    tag = tags.get(value)
                    if tag is None:
                        tag = tags[value] = resolver.resolve(yaml.ScalarNode, value, (True, False))
                    if tag == "tag:yaml.org,2002:str" or tag == "tag:yaml.org,2002:timestamp":
                        item = value
                    elif tag == "tag:yaml.org,2002:int" and _DECIMAL.fullmatch(value):
                        item = int(value)
                    elif tag not in _SIMPLE_TAGS:
                        return _FALLBACK        # merge "<<", value "=": the node path
                    else:
                        item = constructor.construct_object(
                            yaml.ScalarNode(tag, value, event.start_mark, event.end_mark))
            elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
                if event.anchor is not None or (event.tag is not None and event.tag != "!") \
                        or len(stack) >= MAX_DEPTH:
                    return _FALLBACK
                stack.append([{} if kind is yaml.MappingStartEvent else [], _FALLBACK])
                continue
            elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                item = stack.pop()[0]
            elif kind is yaml.DocumentEndEvent:
                event = parser.get_event()
                return root if isinstance(event, yaml.StreamEndEvent) else _FALLBACK
            else:                                # an alias
                return _FALLBACK
            if not stack:
                root = item
                continue
            frame = stack[-1]
            container = frame[0]
            if type(container) is list:
                container.append(item)
            elif frame[1] is _FALLBACK:          # a key
                if kind is not yaml.ScalarEvent or item in container:
                    return _FALLBACK             # non-scalar or duplicate key
                frame[1] = item
            else:
                container[frame[1]] = item
                frame[1] = _FALLBACK
    except (yaml.YAMLError, RecursionError, TypeError, ValueError):
        return _FALLBACK
    finally:
        parser.dispose()


def _parse_nodes(text: str) -> tuple[Any, list[Problem]]:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, []
        problems = structure_problems(node)
        if problems:
            return None, problems
        return loader.construct_document(node), []
    except yaml.YAMLError as exc:
        return None, [Problem("<yaml>", f"malformed YAML {_where(exc)}: {_what(exc)}")]
    except RecursionError:  # only the pure-Python composer recurses; libyaml stops at 1000
        return None, [Problem("<yaml>", f"nested deeper than {MAX_DEPTH} levels")]
    finally:
        loader.dispose()


def structure_problems(root: yaml.Node) -> list[Problem]:
    """Aliases, excessive nesting and duplicate keys, each with its key path.

    Iterative, and it never enters a node twice, so an alias bomb or a
    self-referencing node costs one step per node in the file.
    """
    problems: list[Problem] = []
    seen: set[int] = set()
    alias_reported = False
    stack: list[tuple[yaml.Node, str, int]] = [(root, "", 1)]
    while stack:
        node, path, depth = stack.pop()
        if id(node) in seen:
            if not alias_reported:
                problems.append(Problem(_shown(path) or "<yaml>",
                                        "aliases (*name) are not allowed in stack files: the value "
                                        f"anchored at line {node.start_mark.line + 1} is used again "
                                        "here (write the value out)"))
                alias_reported = True
            continue
        seen.add(id(node))
        if depth > MAX_DEPTH and not isinstance(node, yaml.ScalarNode):
            problems.append(Problem(_shown(path) or "<yaml>",
                                    f"nested deeper than {MAX_DEPTH} levels (line "
                                    f"{node.start_mark.line + 1})"))
            continue
        children: list[tuple[yaml.Node, str, int]] = []
        if isinstance(node, yaml.SequenceNode):
            children = [(child, f"{path}[{i}]", depth + 1) for i, child in enumerate(node.value)]
        elif isinstance(node, yaml.MappingNode):
            problems += _duplicate_keys(node, path)
            for key, value in node.value:
                label = str(key.value) if isinstance(key, yaml.ScalarNode) else "?"
                child_path = f"{path}.{label}" if path else label
                children += [(key, child_path, depth + 1), (value, child_path, depth + 1)]
        stack.extend(reversed(children))  # popped in document order: the alias is the second use
    return problems


def _duplicate_keys(node: yaml.MappingNode, path: str) -> list[Problem]:
    first_line: dict[tuple[str, str], int] = {}
    out: list[Problem] = []
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
            continue
        ident = (key.tag, key.value)
        line = key.start_mark.line + 1
        if ident in first_line:
            where = f"{path}.{key.value}" if path else str(key.value)
            out.append(Problem(_shown(where), f"duplicate key at line {line} (first at line "
                                              f"{first_line[ident]}); Pulumi refuses the file"))
        else:
            first_line[ident] = line
    return out


def _shown(path: str) -> str:
    """Key paths as the rest of meshboot prints them: relative to ``config``."""
    return path.removeprefix("config.")


def _where(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        return f"at line {mark.line + 1}, column {mark.column + 1}"
    position = getattr(exc, "position", None)
    if position is not None:  # a ReaderError: a character YAML does not allow
        return f"at character offset {position}"
    return "at an unknown position"


def _what(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.reader.ReaderError):
        return f"character #x{exc.character:04x} is not allowed in YAML ({exc.reason})" \
            if isinstance(exc.character, int) else str(exc.reason)
    return str(getattr(exc, "problem", None) or exc)
