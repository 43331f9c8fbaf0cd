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
    old = CA.create_root(profile="linkerd", key_algorithm="ecdsa-p256", validity_days=30)
    new = CA.create_root(profile="linkerd", key_algorithm="ecdsa-p256", validity_days=60)
    return old, new, {c: old.issue_intermediate(profile="linkerd", cluster=c,
                                                key_algorithm="ecdsa-p256", validity_days=10)
                      for c in ("east", "west")}


def rotating_stack(tmp: Path, old: CA, new: CA, url: str) -> Path:
    salt = os.urandom(8)
    crypter = PassphraseCrypter.from_passphrase(PASS, salt)
    (tmp / "root.pem").write_text(old.cert_pem)
    (tmp / "root-key.pem").write_text(old.key_pem)
    for c in ("east", "west"):
        write_kubeconfig(tmp / f"kube-{c}.yaml", url, c)
    spec = mesh.linkerd_spec()
    spec["pki"]["rotation"] = {"phase": "trust-both", "newRoot": {
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
