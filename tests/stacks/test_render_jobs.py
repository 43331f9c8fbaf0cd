"""`render --jobs N`: forked workers write the same tree, and refuse the same specs, as one process."""

from __future__ import annotations

import filecmp
import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from scripts.cli import cli
from tests.conftest import REPO, write_stack
from tests.stacks.istio.test_render import four_cluster_spec

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers fork: Linux")


def render(config: Path, out: Path, pki: Path, *extra: str) -> str:
    result = CliRunner().invoke(cli, ["render", "--config", str(config), "--out", str(out),
                                      "--pki-dir", str(pki), *extra])
    assert result.exit_code == 0, result.output
    return result.output


def same_tree(a: Path, b: Path) -> None:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b and files_a
    _, mismatch, errors = filecmp.cmpfiles(a, b, [str(p) for p in files_a], shallow=False)
    assert not mismatch and not errors
    for p in files_a:
        assert (a / p).stat().st_mode == (b / p).stat().st_mode, p


@pytest.mark.parametrize("stack", ["Pulumi.dev.yaml", "examples/Pulumi.linkerd.yaml"])
def test_workers_write_byte_identical_trees(tmp_path: Path, stack: str) -> None:
    config = tmp_path / Path(stack).name
    config.write_bytes((REPO / stack).read_bytes())
    pki = tmp_path / "pki"
    one = render(config, tmp_path / "one", pki)
    three = render(config, tmp_path / "three", pki, "--jobs", "3")
    same_tree(tmp_path / "one", tmp_path / "three")
    def counts(output: str, name: str) -> str:  # the summary above the PKI lines
        return output.split("root CA:")[0].replace(name, "X")

    assert counts(one, "one") == counts(three, "three")
    marker = json.loads((tmp_path / "three" / ".meshboot-render.json").read_text())
    assert len(marker["files"]) == len([p for p in (tmp_path / "three").rglob("*.yaml")])


def test_workers_and_secrets_out(tmp_path: Path) -> None:
    config = tmp_path / "Pulumi.dev.yaml"
    config.write_bytes((REPO / "Pulumi.dev.yaml").read_bytes())
    render(config, tmp_path / "a", tmp_path / "pki", "--secrets-out", str(tmp_path / "sa"))
    render(config, tmp_path / "b", tmp_path / "pki", "--secrets-out", str(tmp_path / "sb"),
           "--jobs", "2")
    same_tree(tmp_path / "a", tmp_path / "b")
    same_tree(tmp_path / "sa", tmp_path / "sb")


def test_workers_report_unrenderable_plans_before_anything_is_kept(tmp_path: Path) -> None:
    spec = four_cluster_spec()
    del spec["clusters"][0]["eastWestGateway"]
    config = write_stack(tmp_path, spec)
    result = CliRunner().invoke(cli, ["render", "--config", str(config), "--out",
                                      str(tmp_path / "out"), "--pki-dir", str(tmp_path / "pki"),
                                      "--jobs", "4"])
    assert result.exit_code == 2, result.output
    assert "meshboot:clusters[0].eastWestGateway.address: render needs a fixed east-west " \
           "gateway address for cluster 'a'" in result.output
    assert not (tmp_path / "out").exists() and not (tmp_path / "pki").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.tmp-")]


def test_jobs_must_be_positive(tmp_path: Path) -> None:
    config = tmp_path / "Pulumi.dev.yaml"
    config.write_bytes((REPO / "Pulumi.dev.yaml").read_bytes())
    result = CliRunner().invoke(cli, ["render", "--config", str(config), "--jobs", "0"])
    assert result.exit_code == 2 and "--jobs" in result.output
