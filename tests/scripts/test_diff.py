"""`meshboot diff` on real renders of the bundled Pulumi.dev.yaml and modified copies of it."""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from pki.ca import CA
from scripts.cli import cli
from tests.conftest import REPO

SECRET_FILES = ("secrets/istio-system.cacerts.yaml", "secrets/istio-system.istio-reader-token-1.yaml")


def _run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def _stack(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def _render(workdir: Path, doc: dict[str, Any], *extra: str, env: str = "dev") -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / f"Pulumi.{env}.yaml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    out = workdir / "out" / env
    result = _run("render", "--config", str(config), "--out", str(out), *extra)
    assert result.exit_code == 0, result.output
    return out


def _modified(doc: dict[str, Any]) -> dict[str, Any]:
    """Canary weight 10 -> 20, local share 80 -> 70, a new service `payments`."""
    doc = copy.deepcopy(doc)
    services = doc["config"]["meshboot:services"]
    by_name = {s["name"]: s for s in services}
    by_name["ratings"]["release"]["canary"]["weight"] = 20
    by_name["reviews"]["routing"]["localShare"] = 70
    services.append({"name": "payments", "namespace": "shop",
                     "ports": [{"name": "http", "port": 8080}], "clusters": ["east", "west"]})
    return doc


@pytest.fixture(scope="module")
def renders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """base; mod (same root, east's intermediate re-issued, spec changes); newroot; split."""
    tmp = tmp_path_factory.mktemp("diff")
    doc = _stack(REPO / "Pulumi.dev.yaml")
    base = _render(tmp / "base", doc)
    store = tmp / "base" / ".meshboot"
    same = _render(tmp / "same", doc, "--pki-dir", str(store / "dev" / "pki"))
    shutil.copytree(store, tmp / "mod" / ".meshboot")
    shutil.rmtree(tmp / "mod" / ".meshboot" / "dev" / "pki" / "clusters" / "east")
    mod = _render(tmp / "mod", _modified(doc))
    newroot = _render(tmp / "newroot", _modified(doc))  # its own store: a new root
    shutil.copytree(store, tmp / "split" / ".meshboot")
    split = _render(tmp / "split", doc, "--secrets-out", str(tmp / "split" / "secrets" / "dev"))
    return {"base": base, "same": same, "mod": mod, "newroot": newroot, "split": split,
            "split-secrets": tmp / "split" / "secrets" / "dev"}


def _secret_material(*trees: Path) -> list[str]:
    """Every value of every rendered Secret, as written and base64-encoded, and each PEM body line."""
    found: list[str] = []
    for tree in trees:
        for path in sorted(tree.rglob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if not isinstance(doc, dict) or doc.get("kind") != "Secret":
                    continue
                for value in list((doc.get("stringData") or {}).values()) + \
                        list((doc.get("data") or {}).values()):
                    text = str(value)
                    found.append(text)
                    found.append(base64.b64encode(text.encode()).decode())
                    found += [line for line in text.splitlines()
                              if len(line) >= 20 and "-----" not in line]
    assert found, "the renders hold Secrets with values: the check must check something"
    return found


def test_identical_renders_exit_0(renders: dict[str, Path]) -> None:
    result = _run("diff", str(renders["base"]), str(renders["same"]))
    assert result.exit_code == 0, result.output
    assert "summary: no changes" in result.output
    assert "intermediates unchanged: east, west\n" in result.output
    assert re.search(r"root unchanged: SHA-256 [0-9a-f]{64}", result.output)


def test_changes_exit_3_with_field_diffs_and_ca_events(renders: dict[str, Path]) -> None:
    result = _run("diff", str(renders["base"]), str(renders["mod"]))
    assert result.exit_code == 3, result.output
    out = result.output
    # The canary's weights (west runs ratings; every primary routes to it).
    assert re.search(r"~ networking\.istio\.io/v1 VirtualService bookinfo/ratings\n"
                     r"(      .*\n)*      spec\.http\[\d+\]\.route\[\d+\]\.weight: 10 -> 20\n", out)
    assert re.search(r"spec\.http\[\d+\]\.route\[\d+\]\.weight: 90 -> 80", out)
    # The new service: its namespace appears in every cluster that runs it.
    for cluster in ("east", "west"):
        section = out.split(f"\n{cluster}: ", 1)[1].split("\nsummary:", 1)[0]
        assert "+ v1 Namespace shop" in section
    # Capped field lists: reviews changes more fields than shown.
    assert re.search(r"reviews\n(      .*\n){8}      \.\.\. \d+ more\n", out)
    # CA: same root, east re-issued, nothing said about west/central.
    assert re.search(r"root unchanged: SHA-256 [0-9a-f]{64}", out)
    assert re.search(r"intermediate of east re-issued: SHA-256 [0-9a-f]{16}… -> [0-9a-f]{16}…", out)
    assert "intermediate of west" not in out and "NEW ROOT" not in out
    assert "intermediates unchanged: west\n" in out  # central is a remote: no cacerts
    assert "summary: " in out and "CA: intermediate of east re-issued" in out


def test_new_root_is_reported(renders: dict[str, Path]) -> None:
    result = _run("diff", str(renders["base"]), str(renders["newroot"]))
    assert result.exit_code == 3, result.output
    old_fp = _root_fp(renders["base"])
    new_fp = _root_fp(renders["newroot"])
    assert old_fp != new_fp
    assert f"NEW ROOT: SHA-256 {new_fp} replaces {old_fp}" in result.output
    for cluster in ("east", "west"):
        assert f"intermediate of {cluster} re-issued" in result.output


def _root_fp(tree: Path) -> str:
    data = yaml.safe_load((tree / "east" / "secrets" / "istio-system.cacerts.yaml").read_text())
    cert = x509.load_pem_x509_certificate(data["stringData"]["root-cert.pem"].encode())
    return cert.fingerprint(hashes.SHA256()).hex()


def test_root_bundle_during_a_rotation(renders: dict[str, Path], tmp_path: Path) -> None:
    rotated = tmp_path / "rotated"
    shutil.copytree(renders["base"], rotated)
    second = CA.create_root(profile="istio", key_algorithm="ecdsa-p256", validity_days=3650)
    for cluster in ("east", "west"):
        path = rotated / cluster / "secrets" / "istio-system.cacerts.yaml"
        docs = list(yaml.safe_load_all(path.read_text()))
        secret = docs[-1]
        secret["stringData"]["root-cert.pem"] += second.cert_pem
        path.write_text(yaml.safe_dump(secret))
    result = _run("diff", str(renders["base"]), str(rotated))
    assert result.exit_code == 3, result.output
    new_fp = second.cert.fingerprint(hashes.SHA256()).hex()
    assert f"root bundle: + new root SHA-256 {new_fp}" in result.output
    assert "NEW ROOT" not in result.output
    assert "edited since meshboot wrote it" in result.stderr


def test_secrets_never_printed(renders: dict[str, Path]) -> None:
    material = _secret_material(renders["base"], renders["mod"], renders["newroot"])
    for other in ("mod", "newroot"):
        for extra in ((), ("--markdown",)):
            result = _run("diff", str(renders["base"]), str(renders[other]), *extra)
            assert result.exit_code == 3
            assert "Secret istio-system/cacerts (type Opaque, content sha256:" in result.output
            for value in material:
                assert value not in result.output, f"secret material printed ({other} {extra})"


def test_without_secrets_uses_the_marker_root(renders: dict[str, Path]) -> None:
    result = _run("diff", str(renders["base"]), str(renders["split"]))
    assert result.exit_code == 0, result.output
    assert "Secrets not compared" in result.output
    assert "intermediates not compared" in result.output
    assert f"root unchanged: SHA-256 {_root_fp(renders['base'])}" in result.output
    with_secrets = _run("diff", str(renders["base"]), str(renders["split"]),
                        "--new-secrets", str(renders["split-secrets"]))
    assert with_secrets.exit_code == 0, with_secrets.output
    assert "not compared" not in with_secrets.output


def test_markdown_shape(renders: dict[str, Path]) -> None:
    result = _run("diff", str(renders["base"]), str(renders["mod"]), "--markdown")
    assert result.exit_code == 3, result.output
    md = result.output
    assert md.startswith("<!-- meshboot-diff -->\n### meshboot diff: `dev` (Pulumi.dev.yaml)\n")
    assert "| cluster | added | removed | changed |" in md
    assert re.search(r"^\| east \| 1 \| 0 \| 3 \|$", md, re.M)
    assert "- **intermediate of east re-issued" in md
    # One collapsible section per changed cluster, each a diff block that is closed.
    sections = re.findall(r"<details><summary><b>(\w+)</b>: [^<]+</summary>\n\n```diff\n"
                          r"(.*?)\n```\n\n</details>", md, re.S)
    assert [name for name, _ in sections] == ["central", "east", "west"]
    east = dict(sections)["east"]
    assert "! networking.istio.io/v1 VirtualService bookinfo/ratings" in east
    assert "+ v1 Namespace shop" in east


def test_deterministic(renders: dict[str, Path]) -> None:
    first = _run("diff", str(renders["base"]), str(renders["mod"]), "--markdown").output
    assert first == _run("diff", str(renders["base"]), str(renders["mod"]), "--markdown").output


def test_config_against_renders_without_touching_the_store(renders: dict[str, Path]) -> None:
    workdir = renders["mod"].parent.parent
    store = workdir / ".meshboot" / "dev" / "pki"
    before = {p: p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()}
    result = _run("diff", "--config", str(workdir / "Pulumi.dev.yaml"),
                  "--against", str(renders["mod"]))
    assert result.exit_code == 0, result.output
    assert "summary: no changes" in result.output
    changed = _run("diff", "--config", str(workdir / "Pulumi.dev.yaml"),
                   "--against", str(renders["base"]))
    assert changed.exit_code == 3
    assert "intermediate of east re-issued" in changed.output
    after = {p: p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()}
    assert after == before


ALIAS_BOMB = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: y}\ndata:\n" + "".join(
    f"  {k}: &{k} [{', '.join([f'*{p}'] * 9 if p else ['1'] * 9)}]\n"
    for p, k in zip(["", *"abcdefg"], "abcdefgh", strict=True))


@pytest.mark.parametrize("case", ["missing", "no-marker", "bad-yaml", "not-object", "one-dir",
                                  "config-alone", "aliases", "secrets-not-secrets-out",
                                  "secrets-of-inline-tree", "fifo", "device",
                                  "secrets-tree-as-render"])
def test_bad_input_exit_2(renders: dict[str, Path], tmp_path: Path, case: str) -> None:
    bad = tmp_path / "bad"
    args: list[str]
    if case == "missing":
        args = [str(renders["base"]), str(tmp_path / "nope")]
        expect = "no such directory"
    elif case == "no-marker":
        (bad / "east").mkdir(parents=True)
        (bad / "east" / "01-namespaces.yaml").write_text("kind: Namespace\n")
        args = [str(renders["base"]), str(bad)]
        expect = "not a meshboot render"
    elif case in ("bad-yaml", "not-object"):
        shutil.copytree(renders["base"], bad)
        (bad / "east" / "10-policy.yaml").write_text(
            "a: [unclosed\n" if case == "bad-yaml" else "- just\n- a list\n")
        args = [str(renders["base"]), str(bad)]
        expect = "not valid YAML" if case == "bad-yaml" else "not a Kubernetes object"
    elif case == "one-dir":
        args = [str(renders["base"])]
        expect = "expected OLD_DIR NEW_DIR"
    else:
        args = ["--config", str(REPO / "Pulumi.dev.yaml")]
        expect = "--config and --against go together"
    if case == "aliases":   # 9**8 leaves once expanded: comparing them would never end
        shutil.copytree(renders["base"], bad)
        (bad / "east" / "99-by-hand.yaml").write_text(ALIAS_BOMB)
        args = [str(bad), str(bad)]
        expect = "uses YAML aliases"
    if case in ("fifo", "device"):   # reading either would block or never end
        shutil.copytree(renders["base"], bad)
        if case == "fifo":
            os.mkfifo(bad / "east" / "99-by-hand.yaml")
        else:
            (bad / "east" / "99-by-hand.yaml").symlink_to("/dev/zero")
        args = [str(renders["base"]), str(bad)]
        expect = "not a regular file"
    if case == "secrets-tree-as-render":
        args = [str(renders["split-secrets"]), str(renders["split"])]
        expect = "the Secrets of a render (its --secrets-out tree), not the render"
    if case == "secrets-not-secrets-out":   # another render's tree is not the split's Secrets
        args = [str(renders["split"]), str(renders["split"]),
                "--old-secrets", str(renders["base"])]
        expect = "not the Secrets of a render"
    if case == "secrets-of-inline-tree":    # base holds its Secrets: they would count twice
        args = [str(renders["base"]), str(renders["split"]),
                "--old-secrets", str(renders["split-secrets"])]
        expect = "holds its own Secrets"
    result = _run("diff", *args)
    assert result.exit_code == 2, result.output
    assert expect in result.stderr
    assert "Traceback" not in result.output
    if case in ("bad-yaml", "not-object"):
        assert str(bad / "east" / "10-policy.yaml") in result.stderr
    if case in ("aliases", "fifo", "device"):
        assert str(bad / "east" / "99-by-hand.yaml") in result.stderr


def test_linkerd_issuer_and_anchor(tmp_path: Path) -> None:
    doc = _stack(REPO / "examples" / "Pulumi.linkerd.yaml")
    base = _render(tmp_path, doc, "--secrets-out", str(tmp_path / "secrets" / "linkerd"),
                   env="linkerd")
    shutil.rmtree(tmp_path / ".meshboot" / "linkerd" / "pki" / "clusters" / "west")
    config = tmp_path / "Pulumi.linkerd.yaml"
    # The anchor is in the ConfigMap and the HelmRelease values: compared even without Secrets.
    result = _run("diff", "--config", str(config), "--against", str(base))
    assert result.exit_code == 0, result.output
    assert re.search(r"root unchanged: SHA-256 [0-9a-f]{64}", result.output)
    assert "intermediates not compared: no Secrets in the old render" in result.output
    result = _run("diff", "--config", str(config), "--against", str(base),
                  "--old-secrets", str(tmp_path / "secrets" / "linkerd"))
    assert result.exit_code == 3, result.output
    assert "issuer of west re-issued" in result.output
    assert "issuer of east" not in result.output
    assert "Secret linkerd/linkerd-identity-issuer (type kubernetes.io/tls, content sha256:" \
        in result.output
    for value in _secret_material(tmp_path / "secrets"):
        assert value not in result.output


def test_markdown_names_from_the_tree_cannot_inject(renders: dict[str, Path], tmp_path: Path) -> None:
    """A hand-edited marker or a cluster directory of any name stays plain text in the comment."""
    bad = tmp_path / "bad"
    shutil.copytree(renders["base"], bad)
    marker = bad / ".meshboot-render.json"
    data = json.loads(marker.read_text())
    data["environment"], data["source"] = "x`<img src=a>", "<b>s</b>|t"
    marker.write_text(json.dumps(data))
    (bad / "east").rename(bad / "<i>e|f")
    md = _run("diff", str(renders["base"]), str(bad), "--markdown").stdout
    assert "### meshboot diff: ``x`<img src=a>`` (&lt;b>s&lt;/b>\\|t)\n" in md
    assert "<i>" not in md and "| &lt;i>e\\|f (added) |" in md
    assert "<details><summary><b>&lt;i>e\\|f</b>" in md
