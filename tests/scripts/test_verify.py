"""``meshboot verify`` against a local HTTP server speaking the Kubernetes API.

Real kubeconfig files point each cluster at 127.0.0.1 (a bearer token per
cluster); the official ``kubernetes`` client does the requests; the server
answers with recorded-shape objects (tests/support/live_mesh.py,
tests/data/verify). Scenarios: a healthy mesh (Istio, Linkerd), a remote
secret missing, a cluster ``timeout`` in istiod's clusterz, a gateway
without an address, a mismatched root, a rotation half applied, bad
credentials, an unreachable server, and a fake clock proving what is
retried and what is not.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from clusters.loader import load_stack_file, spec_from_config
from pki.ca import CA
from pki.store import PkiStore
from scripts.cli import cli
from stacks.build import build_plan
from stacks.istio.verify import IstioVerifier
from stacks.plan import PkiRef
from stacks.verify import Verifier, verifier
from stacks.verify_run import Runner, parse_duration
from tests.conftest import write_stack
from tests.support import live_mesh as mesh
from tests.support.kube_api import Hang, KubeApi, PortError, Reply, Seq, serve, server_cert, write_kubeconfig

PROXY = mesh.PROXY
FORWARD = mesh.FORWARD
NS = "/api/v1/namespaces/istio-system"
MC = "/api/v1/namespaces/linkerd-multicluster"


@pytest.fixture(scope="module")
def istio_pki() -> tuple[CA, dict[str, CA]]:
    root = CA.create_root(profile="istio", key_algorithm="ecdsa-p256", validity_days=30)
    return root, {c: root.issue_intermediate(profile="istio", cluster=c,
                                             key_algorithm="ecdsa-p256", validity_days=10)
                  for c in ("east", "west")}


@pytest.fixture(scope="module")
def linkerd_pki() -> tuple[CA, CA, dict[str, CA]]:
    """The current trust anchor, a new one (rotation), and issuers under the current."""
    return mesh.linkerd_rotation_pki()


def stack(tmp: Path, spec: dict[str, Any], root: CA, url: str) -> Path:
    (tmp / "root.pem").write_text(root.cert_pem)
    (tmp / "root-key.pem").write_text(root.key_pem)
    for c in ("east", "west"):
        write_kubeconfig(tmp / f"kube-{c}.yaml", url, c)
    return write_stack(tmp, spec)


def istio_api(istio_pki: tuple[CA, dict[str, CA]]) -> KubeApi:
    root, inter = istio_pki
    return KubeApi(clusters={c: mesh.istio_cluster(c, root, inter[c]) for c in ("east", "west")})


def linkerd_api(anchors: str, issuers: dict[str, CA]) -> KubeApi:
    return KubeApi(clusters={c: mesh.linkerd_cluster(c, anchors, issuers[c])
                             for c in ("east", "west")})


def run(config: Path, *args: str) -> tuple[Result, list[dict[str, Any]]]:
    result = CliRunner().invoke(cli, ["verify", "--config", str(config), "--json", *args])
    try:
        rows = json.loads(result.stdout)
    except ValueError:
        rows = []
    return result, rows


def row(rows: list[dict[str, Any]], cluster: str, check: str) -> dict[str, Any]:
    found = [r for r in rows if r["cluster"] == cluster and r["check"] == check]
    assert len(found) == 1, (cluster, check, rows)
    return found[0]


# ------------------------------------------------------------------ Istio
def test_istio_healthy_mesh_passes_every_check(tmp_path: Path,
                                               istio_pki: tuple[CA, dict[str, CA]]) -> None:
    with serve(istio_api(istio_pki)) as api:
        result, rows = run(stack(tmp_path, mesh.istio_spec(), istio_pki[0], api.url))
        text = CliRunner().invoke(cli, ["verify", "--config", str(tmp_path / "Pulumi.dev.yaml")])
    assert result.exit_code == 0, result.output
    assert {r["status"] for r in rows} == {"ok"}, [r for r in rows if r["status"] != "ok"]
    checks = {(r["cluster"], r["check"]) for r in rows}
    for c in ("east", "west"):
        peer = mesh.PEER[c]
        for check in ("node-region", "node-zone", "istiod", "cacerts", "network-label",
                      "eastwest-gateway", f"remote-secret:{peer}", f"clusterz:{peer}",
                      "endpoints:reviews.bookinfo", "proxy-roots"):
            assert (c, check) in checks
    assert ("(mesh)", "trust-roots-identical") in checks
    # Through the real client: istiod's pod port-forwarded (websocket), as istioctl does;
    # the service proxy, where istiod refuses /debug/*, is not used.
    assert api.requested("east", f"/pods/{mesh.ISTIOD_POD}/portforward:15014/debug/clusterz") == 2
    assert api.requested("west", "portforward:15014/debug/endpointShardz") == 2
    assert api.requested("east", "/proxy/") == 0
    assert "endpoints in east, west" in row(rows, "west", "endpoints:reviews.bookinfo")["reason"]
    assert text.exit_code == 0
    assert text.output.splitlines()[0].split() == ["CLUSTER", "CHECK", "STATUS", "REASON", "FIX"]


def test_missing_remote_secret_fails_at_once(tmp_path: Path,
                                             istio_pki: tuple[CA, dict[str, CA]]) -> None:
    api = istio_api(istio_pki)
    del api.clusters["east"][f"{NS}/secrets/istio-remote-secret-west"]
    # Without the secret istiod does not list west at all.
    api.clusters["east"][FORWARD + "clusterz"] = mesh.data("istio-clusterz-east.json")[:1]
    with serve(api):
        result, rows = run(stack(tmp_path, mesh.istio_spec(), istio_pki[0], api.url))
    assert result.exit_code == 1
    r = row(rows, "east", "remote-secret:west")
    assert r["status"] == "fail" and "no Secret istio-system/istio-remote-secret-west" in r["reason"]
    assert "pulumi up" in r["fix"]
    assert row(rows, "east", "clusterz:west")["status"] == "fail"
    assert row(rows, "west", "remote-secret:east")["status"] == "ok"


def test_cluster_timeout_in_clusterz_is_not_retried(tmp_path: Path,
                                                    istio_pki: tuple[CA, dict[str, CA]]) -> None:
    api = istio_api(istio_pki)
    api.clusters["east"][FORWARD + "clusterz"] = mesh.data("istio-clusterz-east-timeout.json")
    with serve(api):
        result, rows = run(stack(tmp_path, mesh.istio_spec(), istio_pki[0], api.url),
                           "--wait", "10m")
    assert result.exit_code == 1
    r = row(rows, "east", "clusterz:west")
    assert r["status"] == "fail" and "'timeout'" in r["reason"] and r["attempts"] == 1
    assert "tokenGeneration" in r["fix"]
    assert api.requested("east", "portforward:15014/debug/clusterz") == 1  # --wait 10m: no wait


def forbid_port_forward(table: dict[str, Any]) -> None:
    """RBAC without `create` on pods/portforward: the API server refuses the upgrade."""
    table[f"{NS}/pods/{mesh.ISTIOD_POD}/portforward"] = Reply(403, {
        "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden",
        "code": 403, "message": f'pods "{mesh.ISTIOD_POD}" is forbidden: User "verify" cannot '
                                'create resource "pods/portforward" in API group "" in the '
                                'namespace "istio-system"'})


def test_without_port_forward_istiod_is_read_through_the_service_proxy(
        tmp_path: Path, istio_pki: tuple[CA, dict[str, CA]]) -> None:
    api = istio_api(istio_pki)
    east = api.clusters["east"]
    forbid_port_forward(east)
    east[PROXY + "clusterz"] = east.pop(FORWARD + "clusterz")   # an istiod without the check
    east[PROXY + "endpointShardz"] = east.pop(FORWARD + "endpointShardz")
    with serve(api):
        result, rows = run(stack(tmp_path, mesh.istio_spec(), istio_pki[0], api.url))
    assert result.exit_code == 0, [r for r in rows if r["status"] != "ok"]
    assert row(rows, "east", "clusterz:west")["status"] == "ok"
    assert api.requested("east", "proxy/debug/clusterz") == 1
    assert api.requested("west", "/proxy/") == 0


def test_istiod_refusing_debug_through_the_service_proxy_is_not_a_bad_kubeconfig(
        tmp_path: Path, istio_pki: tuple[CA, dict[str, CA]]) -> None:
    # No port-forward allowed, and istiod serves /debug/* only to localhost or authenticated
    # callers (istio/istio pilot/pkg/xds/debug.go allowAuthenticatedOrLocalhost) while the
    # API server's service proxy forwards no credentials: istiod's bare 401 passes through.
    api = istio_api(istio_pki)
    forbid_port_forward(api.clusters["east"])
    api.clusters["east"][PROXY + "clusterz"] = Reply(401, "")
    api.clusters["east"][PROXY + "endpointShardz"] = Reply(401, "")
    with serve(api):
        result, rows = run(stack(tmp_path, mesh.istio_spec(), istio_pki[0], api.url),
                           "--wait", "10m")
    assert result.exit_code == 0, [r for r in rows if r["status"] != "ok"]
    assert not [r for r in rows if r["check"] == "api-server"]
    for check in ("clusterz", "endpoints"):
        r = row(rows, "east", check)
        assert r["status"] == "warn" and "not checked" in r["reason"], r
        assert r["attempts"] == 1   # not retried: waiting does not help
    assert "remote-clusters" in row(rows, "east", "clusterz")["fix"]
    assert "pods/portforward" in row(rows, "east", "clusterz")["fix"]
    assert "403" in row(rows, "east", "clusterz")["reason"]
    assert row(rows, "east", "proxy-roots")["status"] == "ok"   # the cluster's other checks ran
    assert row(rows, "west", "clusterz:east")["status"] == "ok"


def test_no_ready_istiod_pod_and_a_silent_port_forward_are_waited_for(
        tmp_path: Path, istio_pki: tuple[CA, dict[str, CA]]) -> None:
    api = istio_api(istio_pki)
    api.clusters["east"][f"{NS}/pods"] = mesh.istiod_pods(mesh.ISTIOD_POD, ready=False)
    api.clusters["west"][FORWARD + "clusterz"] = Hang()
    threads = threading.active_count()
    with serve(api):
        started = time.monotonic()
        result, rows = run(stack(tmp_path, mesh.istio_spec(), istio_pki[0], api.url),
                           "--timeout", "0.5")
        elapsed = time.monotonic() - started
    assert result.exit_code == 1
    for check in ("clusterz", "endpoints"):
        r = row(rows, "east", check)
        assert r["status"] == "fail" and r["reason"].startswith("not ready (no --wait)"), r
        assert "no running, ready istiod pod (app=istiod)" in r["reason"] and "1 not ready" in r["reason"]
    assert api.requested("east", "/portforward") == 0
    r = row(rows, "west", "clusterz")
    assert r["status"] == "fail" and "no HTTP answer" in r["reason"] and "timed out" in r["reason"]
    assert row(rows, "west", "endpoints:reviews.bookinfo")["status"] == "ok"  # the next one worked
    assert elapsed < 8
    deadline = time.monotonic() + 5   # the port-forward relay threads end with their streams
    while threading.active_count() > threads and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= threads


def test_istiod_pod_of_the_spec_revision_is_port_forwarded(
        tmp_path: Path, istio_pki: tuple[CA, dict[str, CA]]) -> None:
    class Pods:
        selectors: list[str] = []
        forwarded: list[str] = []

        def namespaced_pods(self, namespace: str, selector: str, field: str) -> list[Any]:
            assert (namespace, field) == ("istio-system", "status.phase=Running")
            self.selectors.append(selector)
            pods = mesh.istiod_pods("istiod-canary-b", "istiod-canary-a")["items"]
            pods.append(mesh.istiod_pods("istiod-canary-0", ready=False)["items"][0])
            return pods

        def pod_get(self, namespace: str, pod: str, port: int, path: str) -> Any:
            self.forwarded.append(f"{pod}:{port}/{path}")
            return []

    spec = mesh.istio_spec()
    spec["mesh"]["revision"] = "canary"
    cfg = load_stack_file(stack(tmp_path, spec, istio_pki[0], "http://127.0.0.1:1"))
    checker = IstioVerifier(cfg.spec, build_plan(cfg.spec, cfg.source, cfg.base_dir))
    kube = Pods()
    assert checker.debug(kube, "east", "clusterz", "clusterz") == ([], [])  # type: ignore[arg-type]
    assert kube.selectors == ["app=istiod,istio.io/rev=canary"]
    assert kube.forwarded == ["istiod-canary-a:15014/debug/clusterz"]   # ready, first by name


def test_gateway_without_address(tmp_path: Path, istio_pki: tuple[CA, dict[str, CA]]) -> None:
    api = istio_api(istio_pki)
    api.clusters["west"][f"{NS}/services/istio-eastwestgateway"] = mesh.lb_service(
        "istio-eastwestgateway", "istio-system", None)
    with serve(api):
        result, rows = run(stack(tmp_path, mesh.istio_spec(), istio_pki[0], api.url))
    assert result.exit_code == 1
    r = row(rows, "west", "eastwest-gateway")
    assert r["status"] == "fail"
    assert r["reason"].startswith("not ready (no --wait): ") and "no load-balancer address" in r["reason"]
    assert row(rows, "east", "eastwest-gateway")["status"] == "ok"


def test_gateway_with_another_address_than_the_spec(tmp_path: Path,
                                                    istio_pki: tuple[CA, dict[str, CA]]) -> None:
    api = istio_api(istio_pki)
    api.clusters["east"][f"{NS}/services/istio-eastwestgateway"] = mesh.lb_service(
        "istio-eastwestgateway", "istio-system", "192.0.2.99")
    with serve(api):
        result, rows = run(stack(tmp_path, mesh.istio_spec(), istio_pki[0], api.url))
    r = row(rows, "east", "eastwest-gateway")
    assert result.exit_code == 1 and r["status"] == "fail"
    assert "192.0.2.99" in r["reason"] and mesh.ADDRESS["east"] in r["reason"]
    assert "meshboot:clusters[0].eastWestGateway.address" in r["fix"]


def test_mismatched_root(tmp_path: Path, istio_pki: tuple[CA, dict[str, CA]]) -> None:
    other = CA.create_root(profile="istio", key_algorithm="ecdsa-p256", validity_days=30)
    other_inter = other.issue_intermediate(profile="istio", cluster="west",
                                           key_algorithm="ecdsa-p256", validity_days=10)
    api = istio_api(istio_pki)
    api.clusters["west"] = mesh.istio_cluster("west", other, other_inter)
    with serve(api):
        result, rows = run(stack(tmp_path, mesh.istio_spec(), istio_pki[0], api.url))
    assert result.exit_code == 1
    r = row(rows, "west", "cacerts")
    assert r["status"] == "fail" and other.fingerprint[:16] in r["reason"]
    assert istio_pki[0].fingerprint[:16] in r["reason"]
    assert row(rows, "east", "cacerts")["status"] == "ok"
    assert row(rows, "(mesh)", "trust-roots-identical")["status"] == "fail"


def test_wrong_network_label_and_missing_endpoints(tmp_path: Path,
                                                   istio_pki: tuple[CA, dict[str, CA]]) -> None:
    api = istio_api(istio_pki)
    api.clusters["east"][NS]["metadata"]["labels"]["topology.istio.io/network"] = "net-b"
    api.clusters["east"][FORWARD + "endpointShardz"] = mesh.data(
        "istio-endpointshardz-east-only.json")
    with serve(api):
        _, rows = run(stack(tmp_path, mesh.istio_spec(), istio_pki[0], api.url))
    assert row(rows, "east", "network-label")["status"] == "fail"
    r = row(rows, "east", "endpoints:reviews.bookinfo")
    assert r["status"] == "fail" and "in west" in r["reason"]


def test_bad_credentials_unreachable_server_and_unknown_context(
        tmp_path: Path, istio_pki: tuple[CA, dict[str, CA]]) -> None:
    with serve(istio_api(istio_pki)) as api:
        config = stack(tmp_path, mesh.istio_spec(), istio_pki[0], api.url)
        write_kubeconfig(tmp_path / "kube-east.yaml", api.url, "east", token="expired")
        write_kubeconfig(tmp_path / "kube-west.yaml", "http://127.0.0.1:1", "west")
        result, rows = run(config, "--wait", "5m")
    assert result.exit_code == 1
    assert [r["check"] for r in rows if r["cluster"] == "east"] == ["api-server"]
    assert "401" in row(rows, "east", "api-server")["reason"]
    assert "unreachable" in row(rows, "west", "api-server")["reason"]
    spec = mesh.istio_spec()
    spec["clusters"][1]["context"] = "prod-west"
    result, rows = run(write_stack(tmp_path, spec), "--cluster", "west")
    assert result.exit_code == 2
    assert "prod-west" in row(rows, "west", "kubeconfig")["reason"]


def test_unparsable_kubeconfig_from_the_environment_is_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        istio_pki: tuple[CA, dict[str, CA]]) -> None:
    """No kubeconfig in the spec: the one $KUBECONFIG names is read; if it is not YAML the
    row names that file (not "inline kubeconfig") and verify exits 2."""
    broken = tmp_path / "kube config.yaml"
    broken.write_text("clusters: [\n")
    monkeypatch.setenv("KUBECONFIG", str(broken))
    spec = mesh.istio_spec()
    for c in spec["clusters"]:
        del c["kubeconfig"]
    result, rows = run(stack(tmp_path, spec, istio_pki[0], "http://127.0.0.1:1"),
                       "--cluster", "east")
    assert result.exit_code == 2
    found = row(rows, "east", "kubeconfig")
    assert found["reason"].startswith(f"{broken}: not YAML"), found
    assert "inline" not in found["reason"] and found["fix"]


def test_https_with_a_relative_certificate_authority(
        tmp_path: Path, istio_pki: tuple[CA, dict[str, CA]]) -> None:
    """TLS through the real client; `certificate-authority: certs/ca.crt` resolves against the
    kubeconfig's directory (as kubectl does), not the working directory."""
    server_ca = CA.create_root(profile="istio", key_algorithm="ecdsa-p256", validity_days=2)
    stranger = CA.create_root(profile="istio", key_algorithm="ecdsa-p256", validity_days=2)
    kube_dir = tmp_path / "kube"
    (kube_dir / "certs").mkdir(parents=True)
    (kube_dir / "certs" / "ca.crt").write_text(server_ca.cert_pem)
    (kube_dir / "certs" / "other.crt").write_text(stranger.cert_pem)
    spec = mesh.istio_spec()
    for c in spec["clusters"]:
        c["kubeconfig"] = f"kube/{c['name']}.yaml"
    with serve(istio_api(istio_pki), tls=server_cert(server_ca)) as api:
        config = stack(tmp_path, spec, istio_pki[0], api.url)
        write_kubeconfig(kube_dir / "east.yaml", api.url, "east", ca_file="certs/ca.crt")
        write_kubeconfig(kube_dir / "west.yaml", api.url, "west", ca_file="certs/other.crt")
        result, rows = run(config)
    assert row(rows, "east", "istiod")["status"] == "ok"
    assert {r["status"] for r in rows if r["cluster"] == "east"} == {"ok"}
    assert api.requested("east", "portforward:15014/debug/clusterz") == 1   # wss, same CA
    west = row(rows, "west", "api-server")
    assert west["status"] == "fail" and "TLS handshake failed" in west["reason"]
    assert "certificate-authority" in west["fix"]
    assert result.exit_code == 1


def test_silent_server_and_forbidden_secrets(tmp_path: Path,
                                             istio_pki: tuple[CA, dict[str, CA]]) -> None:
    """A server that accepts but never answers gives up after --timeout; 403 fails at once."""
    api = istio_api(istio_pki)
    api.clusters["east"][f"{NS}/secrets/cacerts"] = Reply(403, {
        "kind": "Status", "code": 403, "reason": "Forbidden",
        "message": 'secrets "cacerts" is forbidden: User "viewer" cannot get resource "secrets" '
                   'in API group "" in the namespace "istio-system"'})
    with socket.socket() as silent, serve(api):
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        config = stack(tmp_path, mesh.istio_spec(), istio_pki[0], api.url)
        write_kubeconfig(tmp_path / "kube-west.yaml",
                         f"http://127.0.0.1:{silent.getsockname()[1]}", "west")
        started = time.monotonic()
        result, rows = run(config, "--timeout", "0.3", "--wait", "10m")
        elapsed = time.monotonic() - started
    assert elapsed < 5
    assert "timed out" in row(rows, "west", "api-server")["reason"]
    r = row(rows, "east", "cacerts")
    assert r["status"] == "fail" and "403" in r["reason"] and r["attempts"] == 1
    assert row(rows, "east", "istiod")["status"] == "ok"   # other checks still ran
    assert result.exit_code == 1


def test_checks_follow_the_topology() -> None:
    """Primary-remote: the remote runs no istiod (no istiod/cacerts/clusterz checks there);
    the primary checks its remote's secret and sync status and the remote's endpoints."""
    spec = mesh.istio_spec()
    spec["clusters"][1].update(role="remote", primary="east", network="net-a")
    del spec["clusters"][1]["eastWestGateway"]
    del spec["pki"]["rootCa"]
    loaded_spec = spec_from_config({f"meshboot:{k}": v for k, v in spec.items()}, "test")
    plan = build_plan(loaded_spec)
    checker = verifier(loaded_spec, plan)
    assert isinstance(checker, IstioVerifier)
    assert [n for n, _ in checker.checks("east")] == [
        "nodes", "istiod", "cacerts", "network-label", "eastwest-gateway", "remote-secrets",
        "clusterz", "endpoints", "proxy-roots"]
    assert [n for n, _ in checker.checks("west")] == ["nodes", "network-label", "proxy-roots"]
    assert checker._discovered("east") == ["east", "west"]


def test_root_from_the_pki_store_read_only(tmp_path: Path) -> None:
    """Without an imported root, the root is the PKI store's (never written); without a store,
    roots are only compared across clusters (warnings, exit 0)."""
    spec = mesh.istio_spec()
    del spec["pki"]["rootCa"]
    config = write_stack(tmp_path, spec)
    loaded = load_stack_file(config)
    store = tmp_path / "pki"
    mesh_pki = PkiStore(store).load_or_build(build_plan(loaded.spec, loaded.source).pki)
    before = {p: p.stat().st_mtime_ns for p in store.rglob("*")}
    api = KubeApi(clusters={c: mesh.istio_cluster(c, mesh_pki.root, mesh_pki.intermediates[c])
                            for c in ("east", "west")})
    with serve(api):
        for c in ("east", "west"):
            write_kubeconfig(tmp_path / f"kube-{c}.yaml", api.url, c)
        result, rows = run(config, "--pki-dir", str(store))
        assert result.exit_code == 0, [r for r in rows if r["status"] != "ok"]
        assert mesh_pki.root.fingerprint[:16] in row(rows, "east", "cacerts")["reason"]
        result, rows = run(config, "--pki-dir", str(tmp_path / "nowhere"))
        assert result.exit_code == 0
        assert row(rows, "east", "cacerts")["status"] == "warn"
        assert row(rows, "(mesh)", "trust-roots-identical")["status"] == "ok"
        forged = CA.create_root(profile="istio", key_algorithm="ecdsa-p256", validity_days=1)
        (store / "root" / "cert.pem").write_text(forged.cert_pem)
        result, _ = run(config, "--pki-dir", str(store))
        assert result.exit_code == 2 and "does not match meta.json" in result.output
    assert {p: p.stat().st_mtime_ns for p in store.rglob("*") if p.name != "cert.pem"} == \
        {p: t for p, t in before.items() if p.name != "cert.pem"}
    assert not (tmp_path / "nowhere").exists()


def test_bad_input_exits_2(tmp_path: Path, istio_pki: tuple[CA, dict[str, CA]]) -> None:
    config = stack(tmp_path, mesh.istio_spec(), istio_pki[0], "http://127.0.0.1:1")
    for args, said in ((["--wait", "10 minutes"], "--wait"), (["--cluster", "north"], "north")):
        result = CliRunner().invoke(cli, ["verify", "--config", str(config), *args])
        assert result.exit_code == 2 and said in result.output and "Traceback" not in result.output


def test_parse_duration() -> None:
    assert [parse_duration(t) for t in ("0", "30s", "10m", "1h", "1m30s", "90")] == \
        [0, 30, 600, 3600, 90, 90]
    for bad in ("", "m", "5x", "1s1m", "3m3m", "10 minutes", "-1s"):
        with pytest.raises(ValueError):
            parse_duration(bad)


# ------------------------------------------------------------------ Linkerd
def test_linkerd_healthy_mesh(tmp_path: Path, linkerd_pki: tuple[CA, CA, dict[str, CA]]) -> None:
    old, _, issuers = linkerd_pki
    with serve(linkerd_api(old.cert_pem, issuers)) as api:
        result, rows = run(stack(tmp_path, mesh.linkerd_spec(), old, api.url))
    assert result.exit_code == 0, [r for r in rows if r["status"] != "ok"]
    checks = {(r["cluster"], r["check"]) for r in rows}
    for c in ("east", "west"):
        peer = mesh.PEER[c]
        for check in ("control-plane", "identity", "trust-roots", f"link:{peer}", "gateway",
                      f"gateway-probe:{peer}", f"mirror:reviews-{peer}.bookinfo", "proxy-roots"):
            assert (c, check) in checks, check
    assert "2 meshed pods" in row(rows, "east", "proxy-roots")["reason"]
    # The probe Service of the chart's controllers is probe-<link> (linkerd-multicluster
    # templates/controller/probe-svc.yaml), not the old link chart's probe-gateway-<target>.
    assert row(rows, "west", "gateway-probe:east")["status"] == "ok"
    assert "linkerd-multicluster/probe-east has endpoints" in \
        row(rows, "west", "gateway-probe:east")["reason"]


def test_linkerd_missing_link_credentials_and_dead_probe(
        tmp_path: Path, linkerd_pki: tuple[CA, CA, dict[str, CA]]) -> None:
    old, _, issuers = linkerd_pki
    api = linkerd_api(old.cert_pem, issuers)
    del api.clusters["east"][f"{MC}/secrets/cluster-credentials-west"]
    api.clusters["west"][f"{MC}/endpoints/probe-east"]["subsets"] = []
    with serve(api):
        result, rows = run(stack(tmp_path, mesh.linkerd_spec(), old, api.url))
    assert result.exit_code == 1
    assert "cluster-credentials-west" in row(rows, "east", "link:west")["reason"]
    assert row(rows, "west", "gateway-probe:east")["status"] == "fail"
    assert row(rows, "west", "link:east")["status"] == "ok"


def _verifier(config: Path, trust_pem: str) -> Verifier:
    loaded = load_stack_file(config)
    plan = build_plan(loaded.spec, loaded.source, loaded.base_dir)

    def trust(ref: PkiRef) -> str:
        assert ref.item == "root-cert"
        return trust_pem

    return verifier(loaded.spec, plan, trust)


def test_rotation_half_applied(tmp_path: Path, linkerd_pki: tuple[CA, CA, dict[str, CA]]) -> None:
    """Phase "trust both": the plan's bundle holds old + new; east got it, west did not yet,
    and one of east's pods still runs with the old bundle."""
    old, new, issuers = linkerd_pki
    both = old.cert_pem + new.cert_pem
    api = KubeApi(clusters={"east": mesh.linkerd_cluster("east", both, issuers["east"]),
                            "west": mesh.linkerd_cluster("west", old.cert_pem, issuers["west"])})
    stale = hashlib.sha256(old.cert_pem.encode()).hexdigest()
    pods = api.clusters["east"]["/api/v1/pods"]["items"]
    pods[0]["metadata"]["annotations"]["linkerd.io/trust-root-sha256"] = stale
    with serve(api):
        config = stack(tmp_path, mesh.linkerd_spec(), old, api.url)
        rows = [r.as_dict() for r in Runner(_verifier(config, both), tmp_path).run(["east", "west"])]
    assert row(rows, "east", "trust-roots")["status"] == "ok"
    assert "2 roots" in row(rows, "east", "trust-roots")["reason"]
    west = row(rows, "west", "trust-roots")
    assert west["status"] == "fail" and new.fingerprint[:16] in west["reason"]
    assert row(rows, "(mesh)", "trust-roots-identical")["status"] == "fail"
    r = row(rows, "east", "proxy-roots")
    assert r["status"] == "fail" and "bookinfo/reviews-v1" in r["reason"] and "restart" in r["fix"]
    assert row(rows, "west", "proxy-roots")["status"] == "fail"


# ------------------------------------------------------------------ retries
class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_only_not_ready_conditions_are_retried(tmp_path: Path,
                                               istio_pki: tuple[CA, dict[str, CA]]) -> None:
    api = istio_api(istio_pki)
    east = api.clusters["east"]
    no_address = mesh.lb_service("istio-eastwestgateway", "istio-system", None)
    east[f"{NS}/services/istio-eastwestgateway"] = Seq(
        [no_address, no_address, east[f"{NS}/services/istio-eastwestgateway"]])
    east[FORWARD + "clusterz"] = Seq([mesh.data("istio-clusterz-east-syncing.json"),
                                      mesh.data("istio-clusterz-east.json")])
    rolling = mesh.deployment("istiod", "istio-system", ready=0)
    east["/apis/apps/v1/namespaces/istio-system/deployments/istiod"] = Seq(
        [rolling, Reply(200, mesh.deployment("istiod", "istio-system"))])
    del east[f"{NS}/secrets/istio-remote-secret-west"]          # configuration: fail at once
    west = api.clusters["west"]
    west[FORWARD + "endpointShardz"] = mesh.data("istio-endpointshardz-east-only.json")  # never
    # istiod's port not listening yet: the kubelet says so on the error channel.
    west[FORWARD + "clusterz"] = Seq([PortError(
        f"error forwarding port 15014 to pod {mesh.ISTIOD_POD}, uid : failed to execute "
        "portforward in network namespace: failed to connect to localhost:15014 inside "
        "namespace: connection refused"), west[FORWARD + "clusterz"]])
    clock = FakeClock()
    with serve(api):
        config = stack(tmp_path, mesh.istio_spec(), istio_pki[0], api.url)
        loaded = load_stack_file(config)
        plan = build_plan(loaded.spec, loaded.source, loaded.base_dir)
        checker = verifier(loaded.spec, plan, lambda ref: istio_pki[0].cert_pem)
        runner = Runner(checker, tmp_path, wait=parse_duration("2m"), clock=clock,
                        sleep=clock.sleep, interval=5)
        rows = [r.as_dict() for r in runner.run(["east", "west"])]
    attempts = {(r["cluster"], r["check"]): (r["status"], r["attempts"]) for r in rows}
    # Not ready yet, then ready: retried until ok.
    assert attempts["east", "istiod"] == ("ok", 2)
    assert attempts["east", "eastwest-gateway"] == ("ok", 3)
    assert attempts["east", "clusterz:west"] == ("ok", 2)
    # Configuration errors: one attempt, whatever --wait says.
    assert attempts["east", "remote-secret:west"] == ("fail", 1)
    assert attempts["east", "cacerts"] == ("ok", 1)
    assert attempts["west", "clusterz:east"] == ("ok", 2)
    # Never ready: retried until the deadline, then failed saying so.
    status, tries = attempts["west", "endpoints:reviews.bookinfo"]
    assert status == "fail" and tries > 2
    assert row(rows, "west", "endpoints:reviews.bookinfo")["reason"].startswith(
        "not ready after waiting 2m")
    assert clock.now - 1000.0 == pytest.approx(120.0)   # waited exactly --wait, on the fake clock
    assert all(0 < s <= 5 for s in clock.sleeps)
    assert api.requested("east", "/secrets/istio-remote-secret-west") == 1
