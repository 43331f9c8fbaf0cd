"""A ``secure:`` value that cannot be decrypted is one problem, not three: the key it
leaves out of the spec is not reported again as missing or required."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from scripts.cli import cli
from tests.conftest import REPO

ROTATING = REPO / "tests/data/fuzz/Pulumi.rotation.yaml"  # rootCa and newRoot keys are secure values


def _validate(config: Path, passphrase: str | None) -> tuple[int, list[str]]:
    result = CliRunner().invoke(cli, ["validate", "--config", str(config)], env={
        "PULUMI_CONFIG_PASSPHRASE": passphrase, "PULUMI_CONFIG_PASSPHRASE_FILE": None})
    return result.exit_code, [line for line in result.output.splitlines() if ": meshboot:" in line]


def test_undecryptable_keys_are_reported_once_each(tmp_path: Path) -> None:
    config = tmp_path / "Pulumi.dev.yaml"
    config.write_bytes(ROTATING.read_bytes())
    code, lines = _validate(config, None)
    assert code == 2
    assert [line.split(": ", 2)[1] for line in lines] == [
        "meshboot:pki.rootCa.keyPem", "meshboot:pki.rotation.newRoot.keyPem"], lines
    assert all("cannot be decrypted" in line and "PULUMI_CONFIG_PASSPHRASE" in line for line in lines)


def test_a_missing_key_is_still_reported_when_nothing_failed_to_decrypt(tmp_path: Path) -> None:
    config = tmp_path / "Pulumi.dev.yaml"
    text = ROTATING.read_text()
    # the new root without any key: a real omission, reported as such
    start = text.index("        keyPem:", text.index("newRoot:"))
    end = text.index("\n", text.index("secure:", start))
    config.write_text(text[:start] + text[end + 1:])
    code, lines = _validate(config, None)
    assert code == 2
    assert any("meshboot:pki.rotation.newRoot.keyPem: required" in line for line in lines), lines
