"""Spec problems: collected, never raised one at a time.

A platform engineer fixing a stack file wants every mistake in one run, each
pointing at the file and the key path (``meshboot:clusters[1].network``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

ECHO_LIMIT = 80


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with the spec, located by its key path."""

    path: str
    message: str

    def render(self, source: str) -> str:
        return f"{source}: {self.path}: {self.message}"


class SpecError(Exception):
    """Raised with every problem found; the CLI maps it to exit code 2."""

    def __init__(self, source: str, problems: list[Problem], partial: object = None) -> None:
        self.source = source
        self.problems = sorted(set(problems), key=problem_order)
        # The spec as far as it parsed, so stack-level checks can still report theirs.
        self.partial = partial
        super().__init__(self.text())

    def text(self) -> str:
        lines = [p.render(self.source) for p in self.problems]
        return "\n".join(lines)


def echo(value: Any, limit: int = ECHO_LIMIT) -> str:
    """``repr(value)`` cut to about ``limit`` characters.

    An offending value may be a whole pasted kubeconfig or a 5,000-digit
    number; the message needs enough of it to recognise, not all of it.
    """
    try:
        text = repr(value)
    except ValueError:  # an int past Python's int-to-str digit limit
        return f"<a number of about {int(value.bit_length() * 0.30103)} digits>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def natural_key(path: str) -> tuple[Any, ...]:
    """Sort key that orders ``services[9]`` before ``services[10]``."""
    parts = re.split(r"(\d+)", path)
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts))


def problem_order(p: Problem) -> tuple[Any, ...]:
    return (natural_key(p.path), p.message)
