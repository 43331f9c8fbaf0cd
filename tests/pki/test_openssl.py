"""Second opinion from OpenSSL 3 in strict X.509 mode on the files we hand to istiod."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pki.ca import CA
from tests.support.pki_material import issue_ca_unsafe, istio_cacerts, linkerd_issuer_secret_data

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
pytestmark = pytest.mark.skipif(not Path(OPENSSL).exists(), reason="openssl not installed")


def openssl_verify(tmp: Path, files: dict[str, str], *args: str) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    for name, content in files.items():
        (tmp / name).write_text(content)
    return subprocess.run(
        [OPENSSL, "verify", "-x509_strict", *args],
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize("alg", ["ecdsa-p256", "rsa-2048"])
def test_istio_cacerts_verify_with_openssl(istio_root: CA, tmp_path: Path, alg: str) -> None:
    inter = istio_root.issue_intermediate(
        profile="istio", cluster="east", key_algorithm=alg, validity_days=30
    )
    res = openssl_verify(
        tmp_path,
        istio_cacerts(inter),
        "-CAfile", "root-cert.pem", "-untrusted", "cert-chain.pem", "ca-cert.pem",
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "ca-cert.pem: OK" in res.stdout

    leaf = inter.issue_leaf(spiffe_ids=["spiffe://cluster.local/ns/a/sa/b"])
    (tmp_path / "leaf.pem").write_text(leaf.cert_pem)
    res = openssl_verify(
        tmp_path, {}, "-purpose", "sslserver",
        "-CAfile", "root-cert.pem", "-untrusted", "cert-chain.pem", "leaf.pem",
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_openssl_rejects_foreign_root(istio_root: CA, foreign_root: CA, tmp_path: Path) -> None:
    inter = istio_root.issue_intermediate(
        profile="istio", cluster="east", key_algorithm="ecdsa-p256", validity_days=30
    )
    files = istio_cacerts(inter)
    files["root-cert.pem"] = foreign_root.cert_pem
    res = openssl_verify(
        tmp_path, files, "-CAfile", "root-cert.pem", "-untrusted", "cert-chain.pem", "ca-cert.pem"
    )
    assert res.returncode != 0
    assert "error" in (res.stdout + res.stderr).lower()


def test_linkerd_issuer_verifies_with_openssl(linkerd_anchor: CA, tmp_path: Path) -> None:
    issuer = linkerd_anchor.issue_intermediate(
        profile="linkerd", cluster="east", key_algorithm="ecdsa-p256", validity_days=30
    )
    res = openssl_verify(
        tmp_path, linkerd_issuer_secret_data(issuer), "-CAfile", "ca.crt", "tls.crt"
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_openssl_rejects_leaf_of_ca_under_pathlen0(istio_root: CA, tmp_path: Path) -> None:
    inter = istio_root.issue_intermediate(
        profile="istio", cluster="east", key_algorithm="ecdsa-p256", validity_days=30
    )
    rogue = issue_ca_unsafe(inter)
    leaf = rogue.issue_leaf(dns_names=["evil.example"])
    res = openssl_verify(
        tmp_path,
        {"root.pem": istio_root.cert_pem, "untrusted.pem": "".join(
            c for c in (rogue.cert_pem, inter.cert_pem)), "leaf.pem": leaf.cert_pem},
        "-CAfile", "root.pem", "-untrusted", "untrusted.pem", "leaf.pem",
    )
    assert res.returncode != 0
    assert "path length" in (res.stdout + res.stderr)
