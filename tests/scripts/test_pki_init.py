"""`meshboot pki init`: the stack file becomes the mesh's whole identity.

The decryption oracle below is written from Pulumi's own description of its
passphrase provider (pkg/secrets/passphrase/manager.go: 8-byte salt, verifier
"pulumi"; sdk/go/common/resource/config/crypt.go: PBKDF2-HMAC-SHA256 with
1,000,000 rounds, AES-256-GCM, ``v1:<b64 nonce>:<b64 sealed>``), not with
meshboot's crypter, so a wrong format in meshboot fails here.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from scripts.cli import cli
from tests.conftest import base_spec, write_stack
from tests.support.pulumi_harness import run_program, unwrap_secrets, with_fake_kubeconfigs
from tests.support.speed import pbkdf2

PASS = "correct horse battery staple"
ENV = {"PULUMI_CONFIG_PASSPHRASE": PASS}


@pytest.fixture(scope="module")
def initialised(tmp_path_factory: pytest.TempPathFactory) -> str:
    """base_spec()'s stack file after `pki init`, for the tests that start from one."""
    config = write_stack(tmp_path_factory.mktemp("initialised"), base_spec())
    result = invoke("pki", "init", "--config", str(config))
    assert result.exit_code == 0, result.output
    return config.read_text()


def initialised_copy(directory: Path, text: str) -> Path:
    config = directory / "Pulumi.dev.yaml"
    config.write_text(text)
    return config


def pulumi_decrypt(salt_line: str, passphrase: str, value: str) -> str:
    _, salt_b64, verifier = salt_line.split(":", 2)
    salt = base64.b64decode(salt_b64)
    assert len(salt) == 8, "Pulumi's passphrase provider uses an 8-byte salt"
    key = pbkdf2(passphrase, salt, iterations=1_000_000)  # PBKDF2-HMAC-SHA256, 32 bytes

    def open_(sealed: str) -> str:
        version, nonce, data = sealed.split(":")
        assert version == "v1"
        return AESGCM(key).decrypt(base64.b64decode(nonce), base64.b64decode(data), None).decode()

    assert open_(verifier) == "pulumi"
    return open_(value)


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli, list(args), env=ENV if env is None else env)


def render(config: Path, out: Path, pki: Path, *extra: str) -> Any:
    return invoke("render", "--config", str(config), "--out", str(out), "--pki-dir", str(pki),
                  *extra)


def cacerts_root(out: Path, cluster: str = "east") -> x509.Certificate:
    data = yaml.safe_load((out / cluster / "secrets" / "istio-system.cacerts.yaml").read_text())
    return x509.load_pem_x509_certificate(data["stringData"]["root-cert.pem"].encode())


def fp(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def stack_root(config: Path, passphrase: str = PASS) -> tuple[x509.Certificate, str]:
    doc = yaml.load(config.read_text(), Loader=yaml.BaseLoader)  # every scalar as text
    rc = doc["config"]["meshboot:pki"]["rootCa"]
    key_pem = pulumi_decrypt(doc["encryptionsalt"], passphrase, rc["keyPem"]["secure"])
    return x509.load_pem_x509_certificate(rc["certPem"].encode()), key_pem


def test_init_writes_the_root_as_pulumi_would(tmp_path: Path) -> None:
    config = write_stack(tmp_path, base_spec())
    before = config.read_text()
    result = invoke("pki", "init", "--config", str(config))
    assert result.exit_code == 0, result.output
    cert, key_pem = stack_root(config)
    key = serialization.load_pem_private_key(key_pem.encode(), None)
    assert key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo) == \
        cert.public_key().public_bytes(serialization.Encoding.DER,
                                       serialization.PublicFormat.SubjectPublicKeyInfo)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert fp(cert) in result.output
    assert "PRIVATE KEY" not in config.read_text(), "the key is only stored encrypted"
    assert "PRIVATE KEY" not in result.output
    # Nothing else in the file changed: every old line is still there, in order.
    after = config.read_text().splitlines()
    it = iter(after)
    assert all(line in it for line in before.splitlines())


def test_a_rebuilt_machine_renders_the_same_root(tmp_path: Path, initialised: str) -> None:
    laptop, ci = tmp_path / "laptop", tmp_path / "ci"
    laptop.mkdir()
    config = initialised_copy(laptop, initialised)
    first = render(config, laptop / "out", laptop / "pki")
    assert first.exit_code == 0, first.output
    # The CI runner / DR machine has the stack file and the passphrase, nothing else.
    ci.mkdir()
    shutil.copy(config, ci / config.name)
    second = render(ci / config.name, ci / "out", ci / "pki")
    assert second.exit_code == 0, second.output
    root, _ = stack_root(config)
    assert fp(cacerts_root(laptop / "out")) == fp(cacerts_root(ci / "out")) == fp(root)
    assert f"root CA: SHA-256 {fp(root)} (imported: from" in second.output
    # Intermediates are re-issued on the new machine, and the summary says so.
    assert "new PKI store on this machine; the root is unchanged" in second.output
    a = yaml.safe_load((laptop / "out/east/secrets/istio-system.cacerts.yaml").read_text())
    b = yaml.safe_load((ci / "out/east/secrets/istio-system.cacerts.yaml").read_text())
    assert a["stringData"]["ca-cert.pem"] != b["stringData"]["ca-cert.pem"]


def test_without_the_passphrase_a_rebuild_fails_instead_of_inventing_a_root(
        tmp_path: Path, initialised: str) -> None:
    config = initialised_copy(tmp_path, initialised)
    result = render(config, tmp_path / "out", tmp_path / "pki", )
    assert result.exit_code == 0
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(config, other / config.name)
    result = invoke("render", "--config", str(other / config.name), "--out",
                    str(other / "out"), "--pki-dir", str(other / "pki"), env={})
    assert result.exit_code == 2
    assert "meshboot:pki.rootCa.keyPem" in result.output
    assert not (other / "out").exists() and not (other / "pki").exists()


def test_from_store_keeps_a_running_meshs_identity(tmp_path: Path) -> None:
    config = write_stack(tmp_path, base_spec())
    out, store = tmp_path / "out", tmp_path / "pki"
    assert render(config, out, store).exit_code == 0
    deployed = fp(cacerts_root(out))
    result = invoke("pki", "init", "--config", str(config), "--from-store", str(store))
    assert result.exit_code == 0, result.output
    assert fp(stack_root(config)[0]) == deployed
    again = render(config, out, store)  # no --new-root needed: same root
    assert again.exit_code == 0, again.output
    assert fp(cacerts_root(out)) == deployed


def test_init_takes_the_environments_default_store(tmp_path: Path) -> None:
    config = write_stack(tmp_path, base_spec())
    default_store = tmp_path / ".meshboot" / "dev" / "pki"
    assert invoke("render", "--config", str(config), "--out", str(tmp_path / "out")).exit_code == 0
    deployed = fp(cacerts_root(tmp_path / "out"))
    result = invoke("pki", "init", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert str(default_store) in result.output
    assert fp(stack_root(config)[0]) == deployed


def test_refuses_a_second_root_unless_forced(tmp_path: Path, initialised: str) -> None:
    config = initialised_copy(tmp_path, initialised)
    first = config.read_text()
    again = invoke("pki", "init", "--config", str(config))
    assert again.exit_code == 2
    assert "meshboot:pki.rootCa" in again.output and "--force" in again.output
    assert config.read_text() == first
    forced = invoke("pki", "init", "--config", str(config), "--force")
    assert forced.exit_code == 0, forced.output
    assert fp(stack_root(config)[0]) != fp(x509.load_pem_x509_certificate(
        yaml.safe_load(first)["config"]["meshboot:pki"]["rootCa"]["certPem"].encode()))
    assert yaml.safe_load(config.read_text())["encryptionsalt"] == \
        yaml.safe_load(first)["encryptionsalt"], "the stack's salt is kept"


def test_existing_salt_and_secrets_are_kept(tmp_path: Path, initialised: str) -> None:
    config = initialised_copy(tmp_path, initialised)
    doc = yaml.safe_load(config.read_text())
    salt = doc["encryptionsalt"]
    # Another secret value in the stack, written by "pulumi config set --secret" earlier.
    other = doc["config"]["meshboot:pki"]["rootCa"]["keyPem"]
    doc["config"]["aws:secretKey"] = other
    del doc["config"]["meshboot:pki"]["rootCa"]
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = invoke("pki", "init", "--config", str(config))
    assert result.exit_code == 0, result.output
    new = yaml.safe_load(config.read_text())
    assert new["encryptionsalt"] == salt
    assert new["config"]["aws:secretKey"] == other
    stack_root(config)


def test_wrong_passphrase_is_refused_and_the_file_untouched(tmp_path: Path, initialised: str) -> None:
    config = initialised_copy(tmp_path, initialised)
    text = config.read_text()
    result = invoke("pki", "init", "--config", str(config), "--force",
                    env={"PULUMI_CONFIG_PASSPHRASE": "wrong"})
    assert result.exit_code == 2
    assert "passphrase" in result.output
    assert config.read_text() == text


@pytest.mark.parametrize("extra, fragment", [
    ({"secretsprovider": "awskms://alias/pulumi"}, "awskms://alias/pulumi"),
    ({}, "PULUMI_CONFIG_PASSPHRASE"),
])
def test_refusals_leave_the_file_untouched(tmp_path: Path, extra: dict[str, str],
                                           fragment: str) -> None:
    config = write_stack(tmp_path, base_spec(), **extra)
    text = config.read_text()
    result = invoke("pki", "init", "--config", str(config), env={})
    assert result.exit_code == 2
    assert fragment in result.output
    assert config.read_text() == text


def test_secure_values_of_an_unknown_provider_are_not_overwritten(tmp_path: Path) -> None:
    config = write_stack(tmp_path, base_spec())
    doc = yaml.safe_load(config.read_text())
    doc["config"]["aws:secretKey"] = {"secure": "AAABAJ5rZXk="}  # service-encrypted
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    text = config.read_text()
    result = invoke("pki", "init", "--config", str(config))
    assert result.exit_code == 2 and "encryptionsalt" in result.output
    assert config.read_text() == text


@pytest.mark.parametrize("layout", ["block with comments", "flow", "absent", "empty"])
def test_layouts_of_the_pki_section(tmp_path: Path, layout: str) -> None:
    pki = {
        "block with comments": ("  meshboot:pki:\n    # the mesh's keys\n"
                                "    keyAlgorithm: ecdsa-p256   # P-256\n"
                                "    rootValidityDays: 3650\n"),
        "flow": "  meshboot:pki: {keyAlgorithm: ecdsa-p256, rootValidityDays: 3650}\n",
        "absent": "",
        "empty": "  meshboot:pki:\n",
    }[layout]
    text = ("# my environment\nconfig:\n  meshboot:mesh:\n    id: mesh1  # keep\n" + pki
            + "  meshboot:clusters:\n    - name: east\n      apiServer: https://10.0.0.1:6443\n"
            + "  aws:region: us-east-1\n")
    config = tmp_path / "Pulumi.dev.yaml"
    config.write_text(text)
    result = invoke("pki", "init", "--config", str(config))
    assert result.exit_code == 0, result.output
    new = config.read_text()
    assert new.startswith("# my environment\n")
    assert "id: mesh1  # keep" in new
    doc = yaml.safe_load(new)
    assert doc["config"]["aws:region"] == "us-east-1"
    assert doc["config"]["meshboot:clusters"][0]["name"] == "east"
    if layout in ("block with comments", "flow"):
        assert doc["config"]["meshboot:pki"]["rootValidityDays"] == 3650
    if layout == "block with comments":
        assert "keyAlgorithm: ecdsa-p256   # P-256" in new
    stack_root(config)
    assert render(config, tmp_path / "out", tmp_path / "store").exit_code == 0


def test_pulumi_up_uses_the_root_from_the_stack_file(tmp_path: Path, initialised: str) -> None:
    """The Pulumi program, given the config the engine decrypts, deploys the same root."""
    config = initialised_copy(tmp_path, initialised)
    cert, key_pem = stack_root(config)
    spec = base_spec()
    spec["pki"]["rootCa"] = {"certPem": cert.public_bytes(serialization.Encoding.PEM).decode(),
                             "keyPem": key_pem}
    run = run_program(with_fake_kubeconfigs(spec), secret_keys=["meshboot:pki"])
    data = unwrap_secrets(run.named("east-secret-istio-system-cacerts").inputs["stringData"])
    assert fp(x509.load_pem_x509_certificate(data["root-cert.pem"].encode())) == fp(cert)
    assert render(config, tmp_path / "out", tmp_path / "pki").exit_code == 0
    assert fp(cacerts_root(tmp_path / "out")) == fp(cert)


def pulumi_encrypt(salt_line: str, passphrase: str, plaintext: str) -> str:
    salt = base64.b64decode(salt_line.split(":")[1])
    key = pbkdf2(passphrase, salt, iterations=1_000_000)  # PBKDF2-HMAC-SHA256, 32 bytes
    nonce = b"\x01" * 12
    sealed = AESGCM(key).encrypt(nonce, plaintext.encode(), None)
    return f"v1:{base64.b64encode(nonce).decode()}:{base64.b64encode(sealed).decode()}"


def stack_export(root_outputs: dict[str, Any], salt_line: str, show_secrets: bool) -> dict:
    """A `pulumi stack export` document (pulumi/pulumi developer-docs deployment-schema.md)."""
    sig = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270"}
    outputs = dict(root_outputs)
    payload = json.dumps(outputs["key_pem"])  # secrets hold the JSON encoding of the value
    outputs["key_pem"] = {**sig, "plaintext": payload} if show_secrets else \
        {**sig, "ciphertext": pulumi_encrypt(salt_line, PASS, payload)}
    urn = ("urn:pulumi:prod::meshboot::meshboot:index:MeshEnvironment$meshboot:index:MeshPki"
           "$pulumi-python:dynamic/meshboot:RootCA::mesh1-pki-root")
    return {"version": 3, "deployment": {
        "manifest": {"time": "2026-11-01T00:00:00Z", "magic": "", "version": "v3.200.0"},
        "secrets_providers": {"type": "passphrase", "state": {"salt": salt_line}},
        "resources": [
            {"urn": "urn:pulumi:prod::meshboot::pulumi:pulumi:Stack::meshboot-prod",
             "type": "pulumi:pulumi:Stack", "custom": False},
            {"urn": urn, "type": "pulumi-python:dynamic/meshboot:RootCA", "custom": True,
             "id": "abc", "outputs": outputs},
        ]}}


@pytest.fixture(scope="module")
def deployed_root() -> dict[str, Any]:
    """The root CA outputs `pulumi up` of base_spec() records in the state."""
    run = run_program(with_fake_kubeconfigs(base_spec()))
    return dict(unwrap_secrets(run.named("mesh1-pki-root").outputs))


@pytest.mark.parametrize("show_secrets", [False, True])
def test_from_state_keeps_the_root_pulumi_deployed(tmp_path: Path, show_secrets: bool,
                                                   deployed_root: dict[str, Any]) -> None:
    deployed = deployed_root
    config = write_stack(tmp_path, base_spec())
    # The stack already has a passphrase salt (pulumi up created it).
    salt_line = "v1:" + base64.b64encode(b"saltsalt").decode() + ":" + \
        pulumi_encrypt("v1:" + base64.b64encode(b"saltsalt").decode() + ":x", PASS, "pulumi")
    doc = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({"encryptionsalt": salt_line, **doc}, sort_keys=False))
    export = tmp_path / "state.json"
    export.write_text(json.dumps(stack_export(deployed, salt_line, show_secrets)))
    result = invoke("pki", "init", "--config", str(config), "--from-state", str(export))
    assert result.exit_code == 0, result.output
    cert, key_pem = stack_root(config)
    assert fp(cert) == fp(x509.load_pem_x509_certificate(deployed["cert_pem"].encode()))
    assert key_pem == deployed["key_pem"]
    assert render(config, tmp_path / "out", tmp_path / "pki").exit_code == 0
    assert fp(cacerts_root(tmp_path / "out")) == fp(cert)


def test_from_state_without_a_root_is_refused(tmp_path: Path) -> None:
    config = write_stack(tmp_path, base_spec())
    text = config.read_text()
    export = tmp_path / "state.json"
    export.write_text(json.dumps({"version": 3, "deployment": {"resources": []}}))
    result = invoke("pki", "init", "--config", str(config), "--from-state", str(export))
    assert result.exit_code == 2 and "mesh1-pki-root" in result.output
    assert config.read_text() == text


def test_values_the_strict_parser_keeps_as_text_do_not_crash_init(tmp_path: Path) -> None:
    """`render` reads 2001-13-45 as text (no spec key is a date); `pki init` must too."""
    config = write_stack(tmp_path, base_spec())
    config.write_text(config.read_text().replace("config:\n", "config:\n  other:since: 2001-13-45\n"))
    result = invoke("pki", "init", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert "  other:since: 2001-13-45\n" in config.read_text()
    stack_root(config)


def test_passphrase_file_is_trimmed_as_pulumi_does(tmp_path: Path) -> None:
    """manager.go readPassphrase: strings.TrimSpace(file) — a CRLF/space-padded file works."""
    config = write_stack(tmp_path, base_spec())
    secret_file = tmp_path / "passphrase.txt"
    secret_file.write_text(f"  {PASS} \r\n")
    result = invoke("pki", "init", "--config", str(config),
                    env={"PULUMI_CONFIG_PASSPHRASE_FILE": str(secret_file)})
    assert result.exit_code == 0, result.output
    stack_root(config, passphrase=PASS)  # Pulumi derives the key from the trimmed text
