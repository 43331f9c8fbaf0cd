"""The README's picture of the bundled example cannot go stale.

``docs/topology.dot`` and the README's mermaid block are compared with what
``meshboot graph`` makes of ``Pulumi.dev.yaml`` now; ``docs/topology.svg`` with
what ``dot`` draws from that DOT (its nodes, edges and text; the coordinates
depend on the Graphviz version and fonts).
"""

from __future__ import annotations

import re
import subprocess
import xml.etree.ElementTree as ET
from collections import Counter

import pytest
from click.testing import CliRunner

from scripts.cli import cli
from stacks.graph.image import dot_available
from tests.conftest import REPO

REGENERATE = "see README, 'The topology as a picture', for the commands that regenerate it"
MARKER = "<!-- meshboot graph --config Pulumi.dev.yaml --format mermaid -->\n```mermaid\n"
SVG = "{http://www.w3.org/2000/svg}"


def generated(fmt: str) -> str:
    result = CliRunner().invoke(cli, ["graph", "--config", str(REPO / "Pulumi.dev.yaml"),
                                      "--format", fmt])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_committed_dot_is_current() -> None:
    assert (REPO / "docs" / "topology.dot").read_text() == generated("dot"), \
        f"docs/topology.dot is stale: {REGENERATE}"


def test_readme_mermaid_block_is_current() -> None:
    readme = (REPO / "README.md").read_text()
    assert readme.count(MARKER) == 1
    block = readme.split(MARKER, 1)[1].split("```\n", 1)[0]
    assert block == generated("mermaid"), f"the README's mermaid block is stale: {REGENERATE}"


def test_readme_shows_the_svg() -> None:
    assert re.search(r"!\[[^\]]*\]\(docs/topology\.svg\)", (REPO / "README.md").read_text())


def _drawn(svg: bytes) -> tuple[Counter[str], Counter[str]]:
    root = ET.fromstring(svg)
    return (Counter(t.text or "" for t in root.iter(f"{SVG}title")),
            Counter(t.text or "" for t in root.iter(f"{SVG}text")))


@pytest.mark.skipif(not dot_available(),
                    reason="Graphviz's `dot` is not installed (apt-get install graphviz)")
def test_committed_svg_is_drawn_from_the_current_dot() -> None:
    fresh = subprocess.run(["dot", "-Tsvg"], input=generated("dot").encode(),
                           capture_output=True, check=True).stdout
    committed = (REPO / "docs" / "topology.svg").read_bytes()
    assert _drawn(committed) == _drawn(fresh), f"docs/topology.svg is stale: {REGENERATE}"
