"""Bad specs through the real CLI: every problem named by file and key path, exit 2, nothing written."""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from clusters.pulumi_secrets import PassphraseCrypter, new_encryption_salt
from scripts.cli import cli
from tests.conftest import base_spec, write_stack


def run_render(tmp_path: Path, spec: dict[str, Any], env: dict[str, str] | None = None,
               raw: str | None = None, **extra: Any) -> tuple[int, str, Path]:
    if raw is not None:
        config = tmp_path / "Pulumi.dev.yaml"
        config.write_text(raw)
    else:
        config = write_stack(tmp_path, spec, **extra)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["render", "--config", str(config), "--out", str(out),
              "--pki-dir", str(tmp_path / "pki")],
        env=env or {})
    return result.exit_code, result.output, out


def assert_rejected(tmp_path: Path, spec: dict[str, Any], *expected: str, **kw: Any) -> str:
    code, output, out = run_render(tmp_path, spec, **kw)
    assert code == 2, output
    for fragment in expected:
        assert fragment in output, f"{fragment!r} not in:\n{output}"
    assert not out.exists(), "nothing may be written on bad input"
    assert not (tmp_path / "pki").exists(), "the PKI store must not be created on bad input"
    return output


def mutate(fn: Any) -> dict[str, Any]:
    spec = base_spec()
    fn(spec)
    return spec


CASES = {
    "unknown cluster key": (
        lambda s: s["clusters"][1].update(netwrok="x"),
        ["meshboot:clusters[1].netwrok: unknown key"]),
    "unknown top-level key": (
        lambda s: s.update(clustres=[]),
        ["meshboot:clustres: unknown key"]),
    "unknown nested key": (
        lambda s: s["clusters"][0].update(eastWestGateway={"adress": "1.2.3.4"}),
        ["meshboot:clusters[0].eastWestGateway.adress: unknown key"]),
    "duplicate cluster": (
        lambda s: s["clusters"][1].update(name="east"),
        ["meshboot:clusters[1].name: duplicate cluster name 'east'"]),
    "duplicate service": (
        lambda s: s["services"].append(copy.deepcopy(s["services"][0])),
        ["meshboot:services[1].name: duplicate service bookinfo/reviews"]),
    "cluster not DNS-1123": (
        lambda s: s["clusters"][0].update(name="East_1"),
        ["meshboot:clusters[0].name: cluster name 'East_1' is not a DNS-1123 label"]),
    "service not DNS-1123": (
        lambda s: s["services"][0].update(name="Reviews"),
        ["meshboot:services[0].name: service name 'Reviews' is not a DNS-1123 label"]),
    "mesh id not DNS-1123": (
        lambda s: s["mesh"].update(id="mesh.1"),
        ["meshboot:mesh.id: mesh id 'mesh.1' is not a DNS-1123 label"]),
    "remote without existing primary": (
        lambda s: s["clusters"][1].update(role="remote", primary="north"),
        ["meshboot:clusters[1].primary: unknown cluster 'north'"]),
    "remote without primary": (
        lambda s: s["clusters"][1].update(role="remote"),
        ["meshboot:clusters[1].primary: a remote cluster needs its primary"]),
    "remote pointing at remote": (
        lambda s: s["clusters"].extend([
            {"name": "r1", "apiServer": "https://10.0.0.3:6443", "role": "remote",
             "primary": "east"},
            {"name": "r2", "apiServer": "https://10.0.0.4:6443", "role": "remote",
             "primary": "r1"}]),
        ["meshboot:clusters[3].primary: 'r1' is a remote cluster"]),
    "service on unknown cluster": (
        lambda s: s["services"][0].update(clusters=["east", "mars"]),
        ["meshboot:services[0].clusters[1]: unknown cluster 'mars'"]),
    "invalid apiServer URL": (
        lambda s: s["clusters"][0].update(apiServer="not a url"),
        ["meshboot:clusters[0].apiServer: invalid URL 'not a url'"]),
    "apiServer not https": (
        lambda s: s["clusters"][0].update(apiServer="http://10.0.0.1:6443"),
        ["meshboot:clusters[0].apiServer: invalid URL"]),
    "unknown provider": (
        lambda s: s["mesh"].update(provider="consul"),
        ["meshboot:mesh.provider: invalid value 'consul'"]),
    "unknown key algorithm": (
        lambda s: s["pki"].update(keyAlgorithm="dsa-1024"),
        ["meshboot:pki.keyAlgorithm: unknown key algorithm 'dsa-1024'"]),
    "linkerd with rsa": (
        lambda s: (s["mesh"].update(provider="linkerd"), s["pki"].update(keyAlgorithm="rsa-2048")),
        ["meshboot:pki.keyAlgorithm: Linkerd requires ecdsa-p256"]),
    "validity shorter than renewBeforeDays": (
        lambda s: s["pki"].update(intermediateValidityDays=20, renewBeforeDays=30),
        ["meshboot:pki.intermediateValidityDays: validity of 20 days is not longer than "
         "renewBeforeDays (30)"]),
    "wrong type": (
        lambda s: s["services"][0]["ports"][0].update(port="http"),
        ["meshboot:services[0].ports[0].port:"]),
    "missing apiServer": (
        lambda s: s["clusters"][0].pop("apiServer"),
        ["meshboot:clusters[0].apiServer: required key is missing"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_named_and_exits_2(tmp_path: Path, case: str) -> None:
    fn, expected = CASES[case]
    output = assert_rejected(tmp_path, mutate(fn), *expected)
    assert "Pulumi.dev.yaml" in output


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    spec = base_spec()
    spec["clusters"][0]["netwrk"] = "x"                      # typo
    spec["clusters"][1]["apiServer"] = "ftp://x"             # bad URL
    spec["services"][0]["clusters"] = ["mars"]               # unknown cluster
    spec["pki"]["keyAlgorithm"] = "rsa-1024"                 # unknown algorithm
    output = assert_rejected(
        tmp_path, spec,
        "meshboot:clusters[0].netwrk: unknown key",
        "meshboot:clusters[1].apiServer: invalid URL",
        "meshboot:services[0].clusters[0]: unknown cluster 'mars'",
        "meshboot:pki.keyAlgorithm: unknown key algorithm")
    assert "4 problems" in output


def test_service_on_a_cluster_that_failed_to_parse_is_not_reported_unknown(tmp_path: Path) -> None:
    spec = base_spec()
    spec["clusters"][0]["netwrk"] = "x"
    output = assert_rejected(tmp_path, spec, "meshboot:clusters[0].netwrk: unknown key")
    assert "unknown cluster 'east'" not in output


def test_malformed_yaml(tmp_path: Path) -> None:
    raw = "config:\n  meshboot:mesh:\n    provider: istio\n   id: [oops\n"
    assert_rejected(tmp_path, {}, "Pulumi.dev.yaml: <yaml>: malformed YAML at line", raw=raw)


def test_missing_clusters(tmp_path: Path) -> None:
    assert_rejected(tmp_path, {"mesh": {"provider": "istio"}},
                    "meshboot:clusters: required: at least one cluster")


def test_other_namespaces_are_ignored(tmp_path: Path) -> None:
    config = write_stack(tmp_path, base_spec())
    text = config.read_text() + "  kubernetes:context: kind-east\n"
    config.write_text(text)
    result = CliRunner().invoke(cli, ["validate", "--config", str(config)])
    assert result.exit_code == 0, result.output


# --- secure: values -------------------------------------------------------------------------

PASSPHRASE = "correct horse battery staple"


# Any 8 bytes: Pulumi's salt is random, these tests are about the values, not the salt,
# and one salt lets tests/support/speed.py derive the key once.
SALT = b"\x8a\x13meshs\x07"


def _encrypted_stack(tmp_path: Path, passphrase: str, secret_value: str) -> dict[str, Any]:
    salt = SALT
    crypter = PassphraseCrypter.from_passphrase(passphrase, salt)
    spec = base_spec()
    spec["clusters"][0]["kubeconfig"] = {"secure": crypter.encrypt(secret_value)}
    return {"spec": spec, "encryptionsalt": new_encryption_salt(crypter, salt)}


def test_secure_value_decrypts_with_the_stack_passphrase(tmp_path: Path) -> None:
    from clusters.loader import load_stack_file

    stack = _encrypted_stack(tmp_path, PASSPHRASE, "apiVersion: v1\nkind: Config\n")
    config = write_stack(tmp_path, stack["spec"], encryptionsalt=stack["encryptionsalt"])
    loaded = load_stack_file(config, env={"PULUMI_CONFIG_PASSPHRASE": PASSPHRASE})
    assert loaded.spec.clusters[0].kubeconfig == "apiVersion: v1\nkind: Config\n"


def test_secure_value_with_wrong_passphrase_is_a_spec_error(tmp_path: Path) -> None:
    stack = _encrypted_stack(tmp_path, PASSPHRASE, "x")
    assert_rejected(tmp_path, stack["spec"],
                    "meshboot:clusters[0].kubeconfig: secure value cannot be decrypted: "
                    "incorrect passphrase",
                    env={"PULUMI_CONFIG_PASSPHRASE": "wrong"},
                    encryptionsalt=stack["encryptionsalt"])


def test_secure_value_without_passphrase(tmp_path: Path) -> None:
    stack = _encrypted_stack(tmp_path, PASSPHRASE, "x")
    assert_rejected(tmp_path, stack["spec"],
                    "meshboot:clusters[0].kubeconfig: secure value cannot be decrypted: "
                    "PULUMI_CONFIG_PASSPHRASE",
                    encryptionsalt=stack["encryptionsalt"])


def test_secure_value_from_a_kms_stack(tmp_path: Path) -> None:
    spec = base_spec()
    spec["clusters"][0]["kubeconfig"] = {"secure": "v1:AAAA:BBBB"}
    assert_rejected(tmp_path, spec, "meshboot:clusters[0].kubeconfig: secure value cannot be "
                    "decrypted: the stack uses secrets provider 'awskms://alias/x'",
                    secretsprovider="awskms://alias/x", encryptedkey="abc")


def test_tampered_ciphertext_fails() -> None:
    crypter = PassphraseCrypter.from_passphrase(PASSPHRASE, SALT)
    token = crypter.encrypt("hello")
    version, nonce, data = token.split(":")
    raw = bytearray(base64.b64decode(data))
    raw[0] ^= 1
    from clusters.pulumi_secrets import SecretDecryptError
    with pytest.raises(SecretDecryptError):
        crypter.decrypt(f"{version}:{nonce}:{base64.b64encode(bytes(raw)).decode()}")
    assert crypter.decrypt(token) == "hello"


def test_spec_and_stack_problems_are_reported_together(tmp_path: Path) -> None:
    spec = base_spec()
    spec["mesh"]["provider"] = "linkerd"
    # renewBeforeDays below 40 (the Linkerd default, 60, would be a third problem)
    spec["pki"].update(keyAlgorithm="rsa-2048", intermediateValidityDays=40, renewBeforeDays=10)
    output = assert_rejected(tmp_path, spec,
                             "meshboot:pki.keyAlgorithm: Linkerd requires ecdsa-p256",
                             "meshboot:pki.intermediateValidityDays: 40 days is shorter than 60")
    assert "2 problems" in output
