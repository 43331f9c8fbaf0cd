"""The bundled example renders for Linkerd by switching only ``meshboot:mesh.provider``."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from scripts.cli import cli
from tests.conftest import REPO
from tests.stacks.linkerd.specs import validate
from tests.support.validation import load_tree

EXAMPLE = REPO / "Pulumi.dev.yaml"


def switched(tmp_path: Path) -> Path:
    text = EXAMPLE.read_text()
    assert text.count("provider: istio") == 1
    out = tmp_path / "Pulumi.dev.yaml"
    out.write_text(text.replace("provider: istio", "provider: linkerd"))
    return out


def test_example_renders_for_linkerd(tmp_path: Path) -> None:
    config = switched(tmp_path)
    result = CliRunner().invoke(cli, ["render", "--config", str(config), "--out",
                                      str(tmp_path / "out"), "--pki-dir", str(tmp_path / "pki")],
                                env={})
    assert result.exit_code == 0, result.output
    tree = load_tree(tmp_path / "out")
    assert sorted(tree) == ["central", "east", "west"]
    for objs in tree.values():
        for obj in objs:
            validate(obj)
        assert len([o for o in objs if o["kind"] == "Link"]) == 2
    # The remote cluster becomes a full member, and the summary says so.
    assert "central (role remote)" in result.output


def test_example_validates_for_linkerd(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["validate", "--config", str(switched(tmp_path))], env={})
    assert result.exit_code == 0, result.output
    assert "(linkerd, 3 clusters" in result.output


def test_linkerd_example_renders(tmp_path: Path) -> None:
    from tests.stacks.linkerd.specs import validate
    example = REPO / "examples" / "Pulumi.linkerd.yaml"
    spec = yaml.safe_load(example.read_text())["config"]
    result = CliRunner().invoke(cli, ["render", "--config", str(example), "--out",
                                      str(tmp_path / "out"), "--pki-dir", str(tmp_path / "pki")],
                                env={})
    assert result.exit_code == 0, result.output
    tree = load_tree(tmp_path / "out")
    assert sorted(tree) == sorted(c["name"] for c in spec["meshboot:clusters"])
    routes = 0
    for objs in tree.values():
        for obj in objs:
            validate(obj)
            routes += obj["kind"] == "HTTPRoute"
    assert routes == len(spec["meshboot:clusters"])  # reviews runs everywhere, one HTTP port
