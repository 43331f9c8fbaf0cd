"""Spec problems: collected, never raised one at a time.

A platform engineer fixing a stack file wants every mistake in one run, each
pointing at the file and the key path (``meshboot:clusters[1].network``).
"""

from __future__ import annotations

from dataclasses import dataclass


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
        self.problems = sorted(set(problems), key=_problem_order)
        # The spec as far as it parsed, so stack-level checks can still report theirs.
        self.partial = partial
        super().__init__(self.text())

    def text(self) -> str:
        lines = [p.render(self.source) for p in self.problems]
        return "\n".join(lines)


def _problem_order(p: Problem) -> tuple[str, str]:
    return (p.path, p.message)
