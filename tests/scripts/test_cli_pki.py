"""CLI paths around the PKI: importing an enterprise root, preflight, Pulumi import."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner
from cryptography import x509

from pki.ca import CA
from scripts.cli import cli
from tests.conftest import base_spec, write_stack
from tests.support.pulumi_harness import run_program, unwrap_secrets, with_fake_kubeconfigs


def _enterprise_root() -> CA:
    return CA.create_root(profile="istio", key_algorithm="ecdsa-p256", validity_days=3650)


def test_render_uses_an_imported_root_from_files(tmp_path: Path) -> None:
    root = _enterprise_root()
    (tmp_path / "root.pem").write_text(root.cert_pem)
    (tmp_path / "root-key.pem").write_text(root.key_pem)
    spec = base_spec()
    spec["pki"]["rootCa"] = {"certFile": "root.pem", "keyFile": "root-key.pem"}
    config = write_stack(tmp_path, spec)
    result = CliRunner().invoke(cli, ["render", "--config", str(config), "--out",
                                      str(tmp_path / "out"), "--pki-dir", str(tmp_path / "pki")])
    assert result.exit_code == 0, result.output
    for cluster in ("east", "west"):
        data = yaml.safe_load((tmp_path / "out" / cluster / "secrets" /
                               "istio-system.cacerts.yaml").read_text())["stringData"]
        assert data["root-cert.pem"].strip() == root.cert_pem.strip()
        inter = x509.load_pem_x509_certificate(data["ca-cert.pem"].encode())
        inter.verify_directly_issued_by(root.cert)


def test_import_with_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    spec = base_spec()
    spec["pki"]["rootCa"] = {"certFile": "nope.pem"}
    config = write_stack(tmp_path, spec)
    result = CliRunner().invoke(cli, ["render", "--config", str(config), "--out",
                                      str(tmp_path / "out"), "--pki-dir", str(tmp_path / "pki")])
    assert result.exit_code == 2
    assert "meshboot:pki.rootCa.certFile: file" in result.output
    assert "meshboot:pki.rootCa: the root key is missing" in result.output


def test_pulumi_program_uses_the_imported_root_inline() -> None:
    root = _enterprise_root()
    spec = base_spec()
    spec["pki"]["rootCa"] = {"certPem": root.cert_pem, "keyPem": root.key_pem}
    run = run_program(with_fake_kubeconfigs(spec))
    cacerts = run.named("east-secret-istio-system-cacerts")
    data = unwrap_secrets(cacerts.inputs["stringData"])
    assert data["root-cert.pem"].strip() == root.cert_pem.strip()
    root_res = run.named("mesh1-pki-root")
    assert "imported_key_pem" in root_res.secret_outputs


def test_preflight_passes_on_a_fresh_store_and_never_writes(tmp_path: Path) -> None:
    config = write_stack(tmp_path, base_spec())
    runner = CliRunner()
    missing = runner.invoke(cli, ["preflight", "--config", str(config),
                                  "--pki-dir", str(tmp_path / "pki")])
    assert missing.exit_code == 2 and "no PKI store" in missing.output  # an environment fault
    assert not (tmp_path / "pki").exists()
    rendered = runner.invoke(cli, ["render", "--config", str(config), "--out",
                                   str(tmp_path / "out"), "--pki-dir", str(tmp_path / "pki")])
    assert rendered.exit_code == 0, rendered.output
    before = {p: p.read_bytes() for p in (tmp_path / "pki").rglob("*") if p.is_file()}
    result = runner.invoke(cli, ["preflight", "--config", str(config),
                                 "--pki-dir", str(tmp_path / "pki")])
    assert result.exit_code == 0, result.output
    assert "east: [ok] ca-cert.pem verifies to root-cert.pem" in result.output
    assert "FAIL" not in result.output
    assert before == {p: p.read_bytes() for p in (tmp_path / "pki").rglob("*") if p.is_file()}
