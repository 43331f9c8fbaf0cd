"""CLI paths around the PKI: importing an enterprise root, preflight, Pulumi import."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from cryptography import x509

import stacks.build
from pki.ca import CA
from scripts.cli import cli
from stacks.plan import PkiRef, Step
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


def _render(config: Path, tmp_path: Path) -> None:
    rendered = CliRunner().invoke(cli, ["render", "--config", str(config), "--out",
                                        str(tmp_path / "out"), "--pki-dir", str(tmp_path / "pki")])
    assert rendered.exit_code == 0, rendered.output


def _preflight(config: Path, tmp_path: Path) -> Result:
    return CliRunner().invoke(cli, ["preflight", "--config", str(config),
                                    "--pki-dir", str(tmp_path / "pki")])


def _patch_plan(monkeypatch: pytest.MonkeyPatch, step_name: str,
                change: Callable[[Step], Step]) -> list[str]:
    """Make build_plan return plans whose ``step_name`` steps are changed; return the clusters."""
    providers = dict(stacks.build.PROVIDERS)
    changed: list[str] = []

    def patched(spec: Any, source: str) -> Any:
        plan = providers[spec.mesh.provider](spec, source)
        for cp in plan.clusters:
            for i, step in enumerate(cp.steps):
                if step.name == step_name:
                    cp.steps[i] = change(step)
                    changed.append(cp.cluster)
        return plan

    monkeypatch.setattr(stacks.build, "PROVIDERS", {name: patched for name in providers})
    return changed


def test_preflight_checks_the_plans_cacerts_secret(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_stack(tmp_path, base_spec())
    _render(config, tmp_path)

    def without_chain(step: Step) -> Step:
        secret = copy.deepcopy(step.objects[0])
        del secret["stringData"]["cert-chain.pem"]
        return dataclasses.replace(step, objects=(secret,))

    changed = _patch_plan(monkeypatch, "cacerts", without_chain)
    result = _preflight(config, tmp_path)
    assert changed == ["east", "west"]
    assert result.exit_code == 1, result.output
    assert "east: [FAIL] cacerts has all four keys: missing: cert-chain.pem" in result.output


def test_preflight_skips_a_remote_which_has_no_cacerts(tmp_path: Path) -> None:
    spec = base_spec()
    spec["clusters"][1].update({"role": "remote", "primary": "east", "network": "net-a"})
    spec["clusters"][0]["eastWestGateway"] = {"address": "192.0.2.10"}
    config = write_stack(tmp_path, spec)
    _render(config, tmp_path)
    result = _preflight(config, tmp_path)
    assert result.exit_code == 0, result.output
    assert "east: [ok] ca-cert.pem verifies to root-cert.pem" in result.output
    assert "west: no cacerts Secret in the plan (a remote runs no istiod): nothing to check" \
        in result.output
    assert "west: [" not in result.output


def _linkerd_spec() -> dict[str, Any]:
    spec = base_spec()
    spec["mesh"]["provider"] = "linkerd"
    spec["clusters"][0]["eastWestGateway"] = {"address": "192.0.2.10"}
    spec["clusters"][1]["eastWestGateway"] = {"address": "192.0.2.11"}
    return spec


def test_preflight_linkerd_checks_the_plans_issuer_and_trust_anchors(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_stack(tmp_path, _linkerd_spec())
    _render(config, tmp_path)
    result = _preflight(config, tmp_path)
    assert result.exit_code == 0, result.output
    for cluster in ("east", "west"):
        assert f"{cluster}: [ok] issuer cert is issued by the trust anchor" in result.output

    def anchored_on_west(step: Step) -> Step:
        assert step.release is not None
        values = {**step.release.values, "identityTrustAnchorsPEM": PkiRef("ca-cert", "west")}
        return dataclasses.replace(step, release=dataclasses.replace(step.release, values=values))

    _patch_plan(monkeypatch, "linkerd-control-plane", anchored_on_west)
    result = _preflight(config, tmp_path)
    assert result.exit_code == 1, result.output
    assert "east: [FAIL] issuer cert is issued by the trust anchor" in result.output
