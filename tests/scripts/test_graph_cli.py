"""``meshboot graph``: formats, --out, exit codes, nothing written on failure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from scripts.cli import cli
from stacks.graph.image import dot_available
from tests.conftest import write_stack
from tests.stacks.graph.specs import linkerd_three, multi_primary

needs_dot = pytest.mark.skipif(not dot_available(),
                               reason="Graphviz's `dot` is not installed (apt-get install graphviz)")


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["graph", *args])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_stack(tmp_path_factory.mktemp("graph"), multi_primary())


def test_text_formats_go_to_stdout(stack: Path) -> None:
    dot = run("--config", str(stack), "--format", "dot")
    assert dot.exit_code == 0, dot.output
    assert dot.stdout.startswith("// meshboot graph") and '"cp_p1" -> "cp_p2"' in dot.stdout
    mermaid = run("--config", str(stack), "--format", "mermaid")
    assert mermaid.exit_code == 0 and mermaid.stdout.startswith("flowchart TB\n")
    assert "cp_rem1 -.->" in mermaid.stdout
    # A picture needs no PKI: nothing is created next to the stack file.
    assert sorted(p.name for p in stack.parent.iterdir()) == [stack.name]


def test_linkerd_stack(tmp_path: Path) -> None:
    result = run("--config", str(write_stack(tmp_path, linkerd_three())), "--format", "mermaid")
    assert result.exit_code == 0, result.output
    assert '"Link (pod-to-pod)"' in result.stdout and "multicluster gateway" in result.stdout


def test_out_file_and_format_from_its_suffix(stack: Path, tmp_path: Path) -> None:
    out = tmp_path / "topology.mmd"
    result = run("--config", str(stack), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert out.read_text() == run("--config", str(stack), "--format", "mermaid").stdout
    assert out.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["topology.mmd"]  # no temporary left


@needs_dot
def test_svg_and_png(stack: Path) -> None:
    svg = run("--config", str(stack))  # svg by default
    assert svg.exit_code == 0, svg.output
    assert svg.stdout.lstrip().startswith("<?xml") and "</svg>" in svg.stdout
    assert ">p1</text>" in svg.stdout
    png = run("--config", str(stack), "--format", "png")  # CliRunner's stdout is no TTY
    assert png.exit_code == 0 and png.stdout_bytes.startswith(b"\x89PNG\r\n\x1a\n")


def test_png_refused_on_a_terminal(stack: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("scripts.graph._stdout_is_tty", lambda: True)
    result = run("--config", str(stack), "--format", "png")
    assert result.exit_code == 2
    assert "--out FILE" in result.stderr and result.stdout_bytes == b""


def test_missing_dot_is_exit_1_and_writes_nothing(stack: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out = tmp_path / "t.svg"
    result = run("--config", str(stack), "--out", str(out))
    assert result.exit_code == 1
    assert "`dot`" in result.stderr and "apt-get install graphviz" in result.stderr
    assert "--format dot or mermaid" in result.stderr
    assert not out.exists()
    # The text formats need no Graphviz.
    assert run("--config", str(stack), "--format", "dot").exit_code == 0


def test_unknown_format_is_exit_2(stack: Path) -> None:
    result = run("--config", str(stack), "--format", "gif")
    assert result.exit_code == 2 and "gif" in result.stderr


@pytest.mark.parametrize("case", ["missing-dir", "directory", "stack-file", "empty", "read-only"])
def test_bad_out_is_exit_2_and_nothing_written(stack: Path, tmp_path: Path, case: str) -> None:
    target = {"missing-dir": str(tmp_path / "nope" / "t.svg"), "directory": str(tmp_path),
              "stack-file": str(stack), "empty": "", "read-only": str(tmp_path / "ro" / "t.dot")}[case]
    if case == "read-only":
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only directories")
        (tmp_path / "ro").mkdir(mode=0o555)
    before = stack.read_bytes()
    result = run("--config", str(stack), "--format", "dot", "--out", target)
    assert result.exit_code == 2, result.output
    assert "error: --out" in result.stderr
    assert stack.read_bytes() == before
    assert not (tmp_path / "nope").exists()


def test_write_failure_is_exit_2(stack: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("scripts.graph.os.replace", refuse)
    out = tmp_path / "t.dot"
    result = run("--config", str(stack), "--out", str(out))
    assert result.exit_code == 2 and "cannot write: Permission denied" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_spec_errors_and_out_errors_reported_together(tmp_path: Path) -> None:
    spec = multi_primary()
    spec["clusters"][2]["primary"] = "nowhere"
    spec["services"][0]["clusters"] = ["p1", "ghost"]
    stack = write_stack(tmp_path, spec)
    result = run("--config", str(stack), "--format", "dot", "--out", str(tmp_path / "x" / "g.dot"))
    assert result.exit_code == 2
    err = result.stderr
    assert "meshboot:clusters[2].primary" in err and "meshboot:services[0].clusters[1]" in err
    assert "error: --out" in err and "Traceback" not in err


def test_no_passphrase_needed_for_the_ca_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A picture draws no key: a stack file holding the root (and a rotation's new root) as
    secure values graphs without PULUMI_CONFIG_PASSPHRASE, e.g. in a pull request's CI job
    that has no secrets; commands that use the keys still need it."""
    from pki.ca import CA

    for var in ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE"):
        monkeypatch.delenv(var, raising=False)
    old, new = (CA.create_root(profile="istio", key_algorithm="ecdsa-p256", validity_days=30)
                for _ in range(2))
    secure = {"secure": "v1:bm90LXJlYWQ=:bm90LXJlYWQ="}   # never decrypted here
    spec = multi_primary()
    spec["pki"] = {"rootCa": {"certPem": old.cert_pem, "keyPem": secure},
                   "rotation": {"phase": "trust-both",
                                "newRoot": {"certPem": new.cert_pem, "keyPem": dict(secure)}}}
    config = write_stack(tmp_path, spec)
    plain = write_stack(tmp_path, multi_primary(), env="plain")
    result = run("--config", str(config), "--format", "mermaid")
    assert result.exit_code == 0, result.output
    assert result.stdout == run("--config", str(plain), "--format", "mermaid").stdout
    validate = CliRunner().invoke(cli, ["validate", "--config", str(config)])
    assert validate.exit_code == 2
    assert "meshboot:pki.rootCa.keyPem: secure value cannot be decrypted" in validate.output
