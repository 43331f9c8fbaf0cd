"""`meshboot verify` during a root rotation: each cluster is checked against its
phase's bundle from ``meshboot:pki.rotation`` (through the real CLI, client and a
local Kubernetes API server), so a half-applied phase is what blocks --advance."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import clusters.pulumi_secrets as pulumi_secrets
from clusters.pulumi_secrets import PassphraseCrypter, new_encryption_salt
from pki.ca import CA
from scripts.cli import cli
from tests.conftest import write_stack
from tests.support import live_mesh as mesh
from tests.support.kube_api import KubeApi, serve, write_kubeconfig

PASS = "verify rotation"


@pytest.fixture(autouse=True)
def fast_kdf() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pulumi_secrets, "PBKDF2_ITERATIONS", 1000)
        mp.setenv("PULUMI_CONFIG_PASSPHRASE", PASS)
        yield


@pytest.fixture(scope="module")
def anchors() -> tuple[CA, CA, dict[str, CA]]:
    return mesh.linkerd_rotation_pki()


def rotating_stack(tmp: Path, old: CA, new: CA, url: str, phase: str = "trust-both",
                   spec: dict[str, Any] | None = None) -> Path:
    salt = os.urandom(8)
    crypter = PassphraseCrypter.from_passphrase(PASS, salt)
    (tmp / "root.pem").write_text(old.cert_pem)
    (tmp / "root-key.pem").write_text(old.key_pem)
    for c in ("east", "west"):
        write_kubeconfig(tmp / f"kube-{c}.yaml", url, c)
    spec = spec or mesh.linkerd_spec()
    spec["pki"]["rotation"] = {"phase": phase, "newRoot": {
        "certPem": new.cert_pem, "keyPem": {"secure": crypter.encrypt(new.key_pem)}}}
    return write_stack(tmp, spec, encryptionsalt=new_encryption_salt(crypter, salt))


def rows_of(config: Path) -> list[dict[str, Any]]:
    result = CliRunner().invoke(cli, ["verify", "--config", str(config), "--json"])
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def status(rows: list[dict[str, Any]], cluster: str, check: str) -> str:
    return str(next(r for r in rows if r["cluster"] == cluster and r["check"] == check)["status"])


def test_verify_expects_the_phase_bundle(tmp_path: Path,
                                        anchors: tuple[CA, CA, dict[str, CA]]) -> None:
    old, new, issuers = anchors
    both = old.cert_pem + new.cert_pem
    # east applied trust-both, west still runs the old anchor alone
    api = KubeApi(clusters={"east": mesh.linkerd_cluster("east", both, issuers["east"]),
                            "west": mesh.linkerd_cluster("west", old.cert_pem, issuers["west"])})
    with serve(api):
        rows = rows_of(rotating_stack(tmp_path, old, new, api.url))
    assert status(rows, "east", "trust-roots") == "ok"
    assert status(rows, "east", "proxy-roots") == "ok"
    assert status(rows, "west", "trust-roots") == "fail"
    assert status(rows, "west", "proxy-roots") == "fail"


def test_verify_tells_trust_both_from_sign_with_new_by_the_issuer(
        tmp_path: Path, anchors: tuple[CA, CA, dict[str, CA]]) -> None:
    """The bundle is the same in both phases: only the issuer's root says whether
    sign-with-new is applied (drop-old's wait assumes it is)."""
    old, new, old_issuers = anchors
    both = old.cert_pem + new.cert_pem
    new_east = new.issue_intermediate(profile="linkerd", cluster="east",
                                      key_algorithm="ecdsa-p256", validity_days=10)
    # east applied sign-with-new; west still runs its issuer under the old anchor
    api = KubeApi(clusters={"east": mesh.linkerd_cluster("east", both, new_east),
                            "west": mesh.linkerd_cluster("west", both, old_issuers["west"])})
    with serve(api):
        rows = rows_of(rotating_stack(tmp_path, old, new, api.url, "sign-with-new"))
    assert status(rows, "east", "identity") == "ok"
    assert status(rows, "east", "trust-roots") == "ok"
    west = next(r for r in rows if r["cluster"] == "west" and r["check"] == "identity")
    assert west["status"] == "fail"
    assert "under the old root, but phase sign-with-new signs with the new root" in west["reason"]
    # the same clusters in trust-both: east's issuer under the new anchor is the stale one
    (tmp_path / "tb").mkdir()
    with serve(api):
        rows = rows_of(rotating_stack(tmp_path / "tb", old, new, api.url))
    assert status(rows, "west", "identity") == "ok"
    assert status(rows, "east", "identity") == "fail"


def test_istio_cacerts_signing_root_follows_the_phase(tmp_path: Path) -> None:
    old = CA.create_root(profile="istio", key_algorithm="ecdsa-p256", validity_days=30)
    new = CA.create_root(profile="istio", key_algorithm="ecdsa-p256", validity_days=60)
    both = old.cert_pem + new.cert_pem
    clusters = {}
    for c, root in (("east", new), ("west", old)):   # west has not applied sign-with-new
        inter = root.issue_intermediate(profile="istio", cluster=c, key_algorithm="ecdsa-p256",
                                        validity_days=10)
        objs = mesh.istio_cluster(c, root, inter)
        ns = "/api/v1/namespaces/istio-system"
        objs[f"{ns}/secrets/cacerts"] = mesh.secret("cacerts", "istio-system", {
            "ca-cert.pem": inter.cert_pem, "ca-key.pem": "(not read)",
            "cert-chain.pem": inter.chain_pem, "root-cert.pem": both})
        objs[f"{ns}/configmaps/istio-ca-root-cert"] = mesh.config_map(
            "istio-ca-root-cert", "istio-system", {"root-cert.pem": both})
        clusters[c] = objs
    api = KubeApi(clusters=clusters)
    with serve(api):
        rows = rows_of(rotating_stack(tmp_path, old, new, api.url, "sign-with-new",
                                      mesh.istio_spec()))
    assert status(rows, "east", "cacerts") == "ok"
    west = next(r for r in rows if r["cluster"] == "west" and r["check"] == "cacerts")
    assert west["status"] == "fail" and "phase sign-with-new signs with the new root" \
        in west["reason"]
