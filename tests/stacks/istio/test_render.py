"""`meshboot render` for Istio: strict validity, determinism, stability, secrets handling."""

from __future__ import annotations

import datetime as dt
import filecmp
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from cryptography import x509

from pki.store import PkiStore
from scripts.cli import cli
from stacks.common import pki_params
from tests.conftest import REPO, base_spec, write_stack
from tests.support.validation import load_tree, unknown_value_paths, validate_object

CHART_VALUES = {"base": "istio-base-1.30.3.values.yaml",
                "istiod": "istio-istiod-1.30.3.values.yaml",
                "gateway": "istio-gateway-1.30.3.values.yaml"}


def render(config: Path, out: Path, pki: Path, env: dict[str, str] | None = None) -> str:
    result = CliRunner().invoke(cli, ["render", "--config", str(config), "--out", str(out),
                                      "--pki-dir", str(pki)], env=env or {})
    assert result.exit_code == 0, result.output
    return result.output


def four_cluster_spec() -> dict[str, Any]:
    spec = base_spec()
    spec["clusters"] = [
        {"name": "a", "apiServer": "https://10.0.0.1:6443", "network": "n1", "region": "r1",
         "zone": "r1-a", "eastWestGateway": {"address": "192.0.2.1"}},
        {"name": "b", "apiServer": "https://10.0.0.2:6443", "network": "n2", "region": "r2",
         "zone": "r2-a"},
        {"name": "c", "apiServer": "https://10.0.0.3:6443", "network": "n1", "region": "r1",
         "zone": "r1-b", "role": "remote", "primary": "a"},
        {"name": "d", "apiServer": "https://10.0.0.4:6443", "network": "n2", "region": "r2",
         "zone": "r2-b"},
    ]
    spec["services"][0]["clusters"] = ["a", "b", "c"]
    return spec


@pytest.fixture
def example(tmp_path: Path) -> Path:
    shutil.copy(REPO / "Pulumi.dev.yaml", tmp_path / "Pulumi.dev.yaml")
    return tmp_path / "Pulumi.dev.yaml"


def test_example_renders_valid_objects(tmp_path: Path, example: Path) -> None:
    output = render(example, tmp_path / "out", tmp_path / "pki")
    tree = load_tree(tmp_path / "out")
    assert sorted(tree) == ["central", "east", "west"]
    checked = 0
    for objs in tree.values():
        for obj in objs:
            validate_object(obj)
            checked += 1
            if obj["kind"] == "HelmRelease":
                chart = obj["spec"]["chart"]["spec"]["chart"]
                assert unknown_value_paths(obj["spec"]["values"], CHART_VALUES[chart]) == []
    assert checked >= 27
    # Remote secrets need live tokens: announced, never written.
    assert "east: Secret istio-system/istio-remote-secret-west" in output
    assert not list((tmp_path / "out").rglob("*remote-secret*"))


def test_validator_rejects_unknown_fields() -> None:
    gw = {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
          "metadata": {"name": "x", "namespace": "y"},
          "spec": {"selector": {"istio": "x"}, "servers": [{"port": {"number": 1, "name": "a",
                                                                       "protocol": "TLS"},
                                                              "hosts": ["*"], "tlsMode": "x"}]}}
    with pytest.raises(AssertionError, match="tlsMode"):
        validate_object(gw)
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}, "spec": {"x": 1}}
    with pytest.raises(AssertionError):
        validate_object(ns)


def test_render_is_deterministic(tmp_path: Path, example: Path) -> None:
    render(example, tmp_path / "one", tmp_path / "pki")
    render(example, tmp_path / "two", tmp_path / "pki")
    cmp = filecmp.dircmp(tmp_path / "one", tmp_path / "two")
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.yaml"))
    assert files
    for rel in files:
        assert (tmp_path / "one" / rel).read_bytes() == (tmp_path / "two" / rel).read_bytes()
    assert not cmp.left_only and not cmp.right_only


def test_rerender_replaces_its_own_output(tmp_path: Path, example: Path) -> None:
    out = tmp_path / "out"
    render(example, out, tmp_path / "pki")
    deleted = next(out.glob("east/*namespaces.yaml"))
    deleted.unlink()  # a file meshboot wrote, removed by hand: the next render brings it back
    render(example, out, tmp_path / "pki")
    assert deleted.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".out.tmp-", ".out.old-"))]


def test_secrets_files_are_private(tmp_path: Path, example: Path) -> None:
    render(example, tmp_path / "out", tmp_path / "pki")
    secrets = list((tmp_path / "out").rglob("secrets/*.yaml"))
    assert len(secrets) == 5  # reader token per cluster, cacerts per primary (central: remote)
    for f in secrets:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
        assert stat.S_IMODE(f.parent.stat().st_mode) == 0o700
    for f in (tmp_path / "out").rglob("*.yaml"):
        if "secrets" not in f.parts:
            assert "PRIVATE KEY" not in f.read_text(), f


def _cacerts(out: Path, cluster: str) -> dict[str, str]:
    doc = yaml.safe_load((out / cluster / "secrets" / "istio-system.cacerts.yaml").read_text())
    return doc["stringData"]


def test_cacerts_chain_verifies_with_openssl(tmp_path: Path, example: Path) -> None:
    render(example, tmp_path / "out", tmp_path / "pki")
    data = _cacerts(tmp_path / "out", "east")
    assert set(data) == {"ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem"}
    for name, content in data.items():
        (tmp_path / name).write_text(content)
    ok = subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "root-cert.pem"),
                         str(tmp_path / "cert-chain.pem")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    # The chain starts with the intermediate the Secret also carries as ca-cert.pem.
    assert data["cert-chain.pem"].startswith(data["ca-cert.pem"].strip())
    other = subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "ca-cert.pem"),
                            str(tmp_path / "root-cert.pem")], capture_output=True, text=True)
    assert other.returncode != 0
    inter = x509.load_pem_x509_certificate(data["ca-cert.pem"].encode())
    assert inter.subject.get_attributes_for_oid(x509.NameOID.LOCALITY_NAME)[0].value == "east"


def test_zone_change_keeps_that_clusters_ca(tmp_path: Path) -> None:
    spec = base_spec()
    config = write_stack(tmp_path, spec)
    render(config, tmp_path / "out", tmp_path / "pki")
    before = {c: _cacerts(tmp_path / "out", c) for c in ("east", "west")}
    spec["clusters"][0]["zone"] = "us-east1-d"
    write_stack(tmp_path, spec)
    render(config, tmp_path / "out", tmp_path / "pki")
    after = {c: _cacerts(tmp_path / "out", c) for c in ("east", "west")}
    assert before == after


def test_near_expiry_is_reissued_under_the_same_root(tmp_path: Path) -> None:
    from clusters.loader import load_stack_file

    spec = base_spec()
    spec["pki"].update(intermediateValidityDays=60, renewBeforeDays=30)
    config = write_stack(tmp_path, spec)
    params = pki_params(load_stack_file(config).spec)
    # Issue the hierarchy 45 days ago: 15 days left, inside the 30-day window.
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=45)
    PkiStore(tmp_path / "pki").load_or_build(params, now=past)
    old = PkiStore(tmp_path / "pki").load_or_build(params, now=past)
    output = render(config, tmp_path / "out", tmp_path / "pki")
    assert "issued intermediate CAs for: east, west" in output
    data = _cacerts(tmp_path / "out", "east")
    new_inter = x509.load_pem_x509_certificate(data["ca-cert.pem"].encode())
    assert new_inter.not_valid_after_utc > old.intermediates["east"].cert.not_valid_after_utc
    assert data["root-cert.pem"].strip() == old.root.cert_pem.strip()
    new_inter.verify_directly_issued_by(old.root.cert)


def test_store_for_another_mesh_is_refused(tmp_path: Path) -> None:
    spec = base_spec()
    config = write_stack(tmp_path, spec)
    render(config, tmp_path / "out", tmp_path / "pki")
    before = {p: p.read_bytes() for p in (tmp_path / "pki").rglob("*") if p.is_file()}
    spec["mesh"]["id"] = "mesh2"
    write_stack(tmp_path, spec)
    result = CliRunner().invoke(cli, ["render", "--config", str(config), "--out",
                                      str(tmp_path / "out2"), "--pki-dir", str(tmp_path / "pki")])
    assert result.exit_code == 2
    assert "mesh" in result.output and str(tmp_path / "pki") in result.output
    assert not (tmp_path / "out2").exists()
    assert before == {p: p.read_bytes() for p in (tmp_path / "pki").rglob("*") if p.is_file()}


def test_passphrase_encrypts_the_store(tmp_path: Path) -> None:
    config = write_stack(tmp_path, base_spec())
    render(config, tmp_path / "out", tmp_path / "pki", env={"MESHBOOT_PKI_PASSPHRASE": "s3cret"})
    keys = list((tmp_path / "pki").rglob("key.pem"))
    assert len(keys) == 3
    for k in keys:
        assert b"ENCRYPTED PRIVATE KEY" in k.read_bytes()
    result = CliRunner().invoke(cli, ["render", "--config", str(config), "--out",
                                      str(tmp_path / "out2"), "--pki-dir", str(tmp_path / "pki")],
                                env={"MESHBOOT_PKI_PASSPHRASE": ""})
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "out2").exists()


def test_default_pki_dir_is_next_to_the_stack_file(tmp_path: Path) -> None:
    config = write_stack(tmp_path, base_spec(), env="prod")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        result = CliRunner().invoke(cli, ["render", "--config", str(config)])
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.output
    store = tmp_path / ".meshboot" / "prod" / "pki"
    assert (store / "meta.json").exists()
    assert stat.S_IMODE(store.stat().st_mode) == 0o700
    assert (tmp_path / "out" / "prod" / "east").is_dir()


def test_four_clusters_primary_remote_multi_network(tmp_path: Path) -> None:
    config = write_stack(tmp_path, four_cluster_spec())
    output = render(config, tmp_path / "out", tmp_path / "pki")
    tree = load_tree(tmp_path / "out")
    for objs in tree.values():
        for obj in objs:
            validate_object(obj)

    def releases(cluster: str) -> dict[str, dict[str, Any]]:
        return {o["metadata"]["name"]: o["spec"]["values"] for o in tree[cluster]
                if o["kind"] == "HelmRelease"}

    remote = releases("c")
    assert remote["istiod"]["profile"] == "remote"
    assert remote["istiod"]["global"]["remotePilotAddress"] == "192.0.2.1"
    assert remote["istiod"]["istiodRemote"]["injectionPath"] == "/inject/cluster/c/net/n1"
    assert remote["istio-base"]["profile"] == "remote"
    assert releases("a")["istiod"]["global"]["externalIstiod"] is True
    assert "externalIstiod" not in releases("b")["istiod"]["global"]
    for cluster, net in (("a", "n1"), ("b", "n2"), ("c", "n1"), ("d", "n2")):
        values = releases(cluster)
        assert values["istiod"]["global"]["multiCluster"]["clusterName"] == cluster
        assert values["istiod"]["global"]["network"] == net
        assert values["istiod"]["global"]["meshID"] == "mesh1"
        ns = next(o for o in tree[cluster] if o["kind"] == "Namespace"
                  and o["metadata"]["name"] == "istio-system")
        assert ns["metadata"]["labels"]["topology.istio.io/network"] == net
        kinds = {(o["kind"], o["metadata"]["name"]) for o in tree[cluster]}
        # One gateway per network: the remote c shares a's (see test_topology.py).
        if cluster != "c":
            assert values["istio-eastwestgateway"]["networkGateway"] == net
            assert ("Gateway", "cross-network-gateway") in kinds
        else:
            assert "istio-eastwestgateway" not in values
            assert ("Gateway", "cross-network-gateway") not in kinds
    ns_c = next(o for o in tree["c"] if o["metadata"]["name"] == "istio-system")
    assert ns_c["metadata"]["annotations"]["topology.istio.io/controlPlaneClusters"] == "a"
    kinds_a = {(o["kind"], o["metadata"]["name"]) for o in tree["a"]}
    assert {("Gateway", "istiod-gateway"), ("VirtualService", "istiod-vs")} <= kinds_a
    # Every primary is told about every other cluster; the remote reads nobody.
    primaries = ["a", "b", "d"]
    for p in primaries:
        for other in ["a", "b", "c", "d"]:
            if other != p:
                assert f"{p}: Secret istio-system/istio-remote-secret-{other}" in output
    assert "c: Secret istio-system/istio-remote-secret" not in output


def test_remote_needs_a_fixed_primary_address_in_render(tmp_path: Path) -> None:
    spec = four_cluster_spec()
    del spec["clusters"][0]["eastWestGateway"]
    config = write_stack(tmp_path, spec)
    result = CliRunner().invoke(cli, ["render", "--config", str(config), "--out",
                                      str(tmp_path / "out"), "--pki-dir", str(tmp_path / "pki")])
    assert result.exit_code == 2
    assert "meshboot:clusters[0].eastWestGateway.address: render needs a fixed east-west " \
           "gateway address for cluster 'a'" in result.output
    assert not (tmp_path / "out").exists() and not (tmp_path / "pki").exists()


@pytest.mark.parametrize("mutation,expected", [
    (lambda s: s["mesh"].update(revision="1-30_3"),
     "meshboot:mesh.revision: revision '1-30_3' is not a DNS-1123 label"),
    (lambda s: s["clusters"][3].update(apiServer="https://10.0.0.1:6443"),
     "meshboot:clusters[3].apiServer: 'https://10.0.0.1:6443' is used by more than one cluster"),
    (lambda s: s["clusters"][2].update(meshId="mesh2"),
     "meshboot:clusters[2].meshId: 'mesh2' differs from meshboot:mesh.id 'mesh1'"),
    (lambda s: s["clusters"][0].update(eastWestGateway={"enabled": False}),
     "meshboot:clusters[0].eastWestGateway.enabled: primary 'a' serves remote 'c'"),
])
def test_istio_bad_input(tmp_path: Path, mutation: Any, expected: str) -> None:
    spec = four_cluster_spec()
    mutation(spec)
    config = write_stack(tmp_path, spec)
    result = CliRunner().invoke(cli, ["render", "--config", str(config), "--out",
                                      str(tmp_path / "out"), "--pki-dir", str(tmp_path / "pki")])
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert not (tmp_path / "out").exists()


def test_revision_and_token_generation(tmp_path: Path) -> None:
    spec = base_spec()
    spec["mesh"].update(revision="canary-1", tokenGeneration=3)
    config = write_stack(tmp_path, spec)
    render(config, tmp_path / "out", tmp_path / "pki")
    tree = load_tree(tmp_path / "out")
    istiod = next(o for o in tree["east"] if o["kind"] == "HelmRelease"
                  and o["metadata"]["name"] == "istiod")
    assert istiod["spec"]["values"]["revision"] == "canary-1"
    token = [o for o in tree["east"] if o["kind"] == "Secret"
             and o["type"] == "kubernetes.io/service-account-token"]
    assert [t["metadata"]["name"] for t in token] == ["istio-reader-token-3"]
    ns = next(o for o in tree["east"] if o["metadata"]["name"] == "bookinfo")
    assert ns["metadata"]["labels"] == {"istio.io/rev": "canary-1",
                                        "app.kubernetes.io/managed-by": "meshboot"}


def test_token_secret_makes_pulumi_wait_for_the_token(tmp_path: Path) -> None:
    config = write_stack(tmp_path, base_spec())
    render(config, tmp_path / "out", tmp_path / "pki")
    token = yaml.safe_load((tmp_path / "out" / "east" / "secrets" /
                            "istio-system.istio-reader-token-1.yaml").read_text())
    assert token["type"] == "kubernetes.io/service-account-token"
    annotations = token["metadata"]["annotations"]
    assert annotations["kubernetes.io/service-account.name"] == "istio-reader-service-account"
    assert annotations["pulumi.com/waitFor"] == "jsonpath={.data.token}"
    assert "data" not in token and "stringData" not in token
