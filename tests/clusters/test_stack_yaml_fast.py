"""The event-built fast path of the stack-file parser gives exactly what the node path gives."""

from __future__ import annotations

import random

import pytest

from clusters import stack_yaml
from tests.conftest import REPO

BUNDLED = [REPO / "Pulumi.dev.yaml", REPO / "examples" / "Pulumi.linkerd.yaml"]


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.name)
def test_bundled_stack_files_take_the_fast_path(path: object) -> None:
    text = path.read_text()  # type: ignore[attr-defined]
    fast = stack_yaml._plain_data(text)
    assert fast is not stack_yaml._FALLBACK
    assert stack_yaml._parse_nodes(text) == (fast, [])


@pytest.mark.parametrize("text", [
    "a: 1\na: 2\n", "a: &x 1\nb: *x\n", "? [a]\n: b\n", "a: !!binary aGVsbG8=\n",
    "---\na: 1\n---\nb: 2\n", "<<: {a: 1}\n", "a: =\n", "a: !custom x\n",
    "a: " + "[" * 70 + "]" * 70 + "\n", "a: 1\nTrue: 2\n1: 3\n",
])
def test_anything_unusual_goes_to_the_node_path(text: str) -> None:
    assert stack_yaml._plain_data(text) is stack_yaml._FALLBACK


@pytest.mark.parametrize("text", ["a: 1.5\nb: .inf\nc: 0x1f\nd: 0o17\ne: 1_000\nf: -7\n",
                                  "a: 2001-12-14\nb: yes\nc: ~\nd: '1'\ne: \"x\\ty\"\nf: |\n  z\n",
                                  "1: a\n'1': b\n- x\n", "", "# only a comment\n",
                                  "a: " + "9" * 150 + "\n"])
def test_same_values_or_problems(text: str) -> None:
    assert stack_yaml.parse(text) == stack_yaml._parse_nodes(text)


def test_mutated_stack_files_agree() -> None:
    rng = random.Random(7)
    base = BUNDLED[0].read_text()
    for _ in range(300):
        chars = list(base)
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(chars))
            chars[i] = rng.choice(":-[]{}&*!|>'\"#\n 01yx.,")
        text = "".join(chars)
        assert stack_yaml.parse(text) == stack_yaml._parse_nodes(text)
