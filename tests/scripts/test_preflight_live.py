"""``meshboot preflight --live`` against a local HTTPS server speaking the Kubernetes API.

The server listens on 127.0.0.1 only, with a throwaway CA made by ``pki.ca``,
asks for a bearer token or a client certificate, serves ``/api/v1/nodes`` in
pages (``limit``/``continue``) and is shut down at the end of every test.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from click.testing import CliRunner, Result

from clusters.live import BETA_ZONE_LABEL, locality_checks, node_locality
from clusters.spec import ClusterSpec
from pki.ca import CA
from scripts.cli import cli
from tests.conftest import base_spec, write_stack
from tests.support.kube_api import server_cert

TOKEN = "s3cret-token"
EAST = {"topology.kubernetes.io/region": "us-east1", "topology.kubernetes.io/zone": "us-east1-b"}
WEST = {"topology.kubernetes.io/region": "us-west1", "topology.kubernetes.io/zone": "us-west1-a"}
SECONDS = 20  # no test may take longer than this


# ------------------------------------------------------------------ the server
@dataclass
class Api:
    """What the fake API server serves and what it saw."""

    nodes: dict[str, list[dict[str, Any]]]          # credential -> its cluster's nodes
    page_size: int = 2
    requests: list[str] = field(default_factory=list)
    url: str = ""
    ca_pem: str = ""


def node(name: str, labels: dict[str, str], taint: str | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                                 **labels}}, "spec": {}}
    if taint:
        obj["spec"]["taints"] = [{"key": taint, "effect": "NoSchedule"}]
    return obj


@pytest.fixture(scope="module")
def root() -> CA:
    return CA.create_root(profile="istio", key_algorithm="ecdsa-p256", validity_days=2)


@contextmanager
def serve(api: Api, root: CA, tmp: Path, dns_name: str | None = None) -> Iterator[Api]:
    """Serve ``api``; the certificate names 127.0.0.1, or only ``dns_name`` if given."""
    if dns_name is None:
        cert_pem, key_pem = server_cert(root)
    else:
        leaf = root.issue_leaf(dns_names=[dns_name])
        cert_pem, key_pem = leaf.cert_pem, leaf.key_pem
    (tmp / "srv.crt").write_text(cert_pem)
    (tmp / "srv.key").write_text(key_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp / "srv.crt", tmp / "srv.key")
    ctx.load_verify_locations(cadata=root.cert_pem)
    ctx.verify_mode = ssl.CERT_OPTIONAL  # a client certificate, or else a token

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, doc: dict[str, Any]) -> None:
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            api.requests.append(self.path)
            peer = self.connection.getpeercert()  # type: ignore[attr-defined]
            names = [v for k, v in (peer or {}).get("subjectAltName", ()) if k == "DNS"]
            auth = self.headers.get("Authorization", "")
            who = names[0] if names else auth.removeprefix("Bearer ") if auth else ""
            if who == "no-rbac":
                self._send(403, {"kind": "Status", "code": 403, "message":
                                 'nodes is forbidden: User "viewer" cannot list resource "nodes"'})
                return
            if who not in api.nodes:
                self._send(401, {"kind": "Status", "message": "Unauthorized", "code": 401})
                return
            parts = urlsplit(self.path)
            if parts.path != "/api/v1/nodes":
                self._send(404, {"kind": "Status", "message": "not found", "code": 404})
                return
            query = parse_qs(parts.query)
            start = int(query.get("continue", ["0"])[0])
            items = api.nodes[who][start:start + api.page_size]
            more = start + api.page_size < len(api.nodes[who])
            self._send(200, {"kind": "NodeList", "apiVersion": "v1", "items": items,
                             "metadata": {"continue": str(start + api.page_size) if more else ""}})

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # e.g. a client that rejects our certificate: its side is what is tested

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    # The handshake runs in the handler's thread (first read), not in the accept loop.
    server.socket = ctx.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    api.url = f"https://127.0.0.1:{server.server_address[1]}"
    api.ca_pem = root.cert_pem
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        assert not thread.is_alive()


# ------------------------------------------------------------------ kubeconfigs
def kubeconfig(path: Path, server: str, *, ca_pem: str | None = None, ca_file: str | None = None,
               user: dict[str, Any] | None = None, context: str = "kind-east",
               extra_contexts: tuple[str, ...] = (), **cluster_keys: Any) -> Path:
    cluster: dict[str, Any] = {"server": server, **cluster_keys}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem.encode()).decode()
    if ca_file is not None:
        cluster["certificate-authority"] = ca_file
    doc = {
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user if user is not None else {"token": TOKEN}}],
        "contexts": [{"name": n, "context": {"cluster": "c", "user": "u"}}
                     for n in (context, *extra_contexts)],
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def stack(tmp: Path, kubeconfigs: dict[str, Path | None], **changes: dict[str, Any]) -> Path:
    spec = base_spec()
    for c in spec["clusters"]:
        kc = kubeconfigs.get(c["name"])
        if kc is not None:
            c["kubeconfig"] = str(kc)
        c.update(changes.get(c["name"], {}))
    return write_stack(tmp, spec)


def preflight(config: Path, *args: str) -> tuple[Result, float]:
    start = time.monotonic()
    result = CliRunner().invoke(cli, ["preflight", "--config", str(config), "--live", *args])
    elapsed = time.monotonic() - start
    assert elapsed < SECONDS, f"preflight took {elapsed:.1f}s"
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result, elapsed


def lines(result: Result, cluster: str) -> list[str]:
    return [ln for ln in result.output.splitlines() if ln.startswith(f"{cluster}: ")]


# ------------------------------------------------------------------------ cases
def test_labels_match_exit_0(tmp_path: Path, root: CA) -> None:
    api = Api({TOKEN: [node("e1", EAST), node("e2", EAST)],
               "west-token": [node("w1", WEST)]})
    with serve(api, root, tmp_path) as a:
        east = kubeconfig(tmp_path / "east.kc", a.url, ca_pem=a.ca_pem)
        west = kubeconfig(tmp_path / "west.kc", a.url, ca_pem=a.ca_pem,
                          user={"token": "west-token"}, context="kind-west")
        result, _ = preflight(stack(tmp_path, {"east": east, "west": west}))
    assert result.exit_code == 0, result.output
    assert "warning: no PKI store" in result.output  # no render yet: live checks alone
    assert f"east: [ok] live: API server: {a.url} (context 'kind-east'): 2 nodes" in result.output
    assert "east: [ok] live: region: all 2 nodes in us-east1" in result.output
    assert "east: [ok] live: zone: 2 nodes in us-east1/us-east1-b" in result.output
    assert "west: [ok] live: zone: 1 node in us-west1/us-west1-a" in result.output
    assert all("?limit=500" in r for r in a.requests)


def test_node_missing_the_zone_label_fails(tmp_path: Path, root: CA) -> None:
    api = Api({TOKEN: [node("e1", EAST),
                       node("e2", {"topology.kubernetes.io/region": "us-east1"})]})
    with serve(api, root, tmp_path) as a:
        east = kubeconfig(tmp_path / "east.kc", a.url, ca_pem=a.ca_pem)
        result, _ = preflight(stack(tmp_path, {"east": east}), "--cluster", "east")
    assert result.exit_code == 1, result.output
    assert "east: [FAIL] live: zone: 1 node without topology.kubernetes.io/zone: e2" \
        in result.output
    assert "east: [ok] live: region" in result.output
    assert lines(result, "west") == []  # --cluster east: west is not contacted


def test_contradicting_region_fails(tmp_path: Path, root: CA) -> None:
    api = Api({TOKEN: [node("e1", EAST), node("e2", {**EAST, "topology.kubernetes.io/region":
                                                     "eu-west1"})]})
    with serve(api, root, tmp_path) as a:
        east = kubeconfig(tmp_path / "east.kc", a.url, ca_pem=a.ca_pem)
        result, _ = preflight(stack(tmp_path, {"east": east}), "--cluster", "east")
    assert result.exit_code == 1, result.output
    assert ("east: [FAIL] live: region: 1 node in another region than "
            "meshboot:clusters[0].region 'us-east1': e2=eu-west1") in result.output


def test_spec_zone_that_no_node_has_fails(tmp_path: Path, root: CA) -> None:
    other = {**EAST, "topology.kubernetes.io/zone": "us-east1-c"}
    api = Api({TOKEN: [node("e1", other)]})
    with serve(api, root, tmp_path) as a:
        east = kubeconfig(tmp_path / "east.kc", a.url, ca_pem=a.ca_pem)
        result, _ = preflight(stack(tmp_path, {"east": east}), "--cluster", "east")
    assert result.exit_code == 1, result.output
    assert ("east: [FAIL] live: zone: no node is in meshboot:clusters[0].zone 'us-east1-b' "
            "(zones of us-east1: us-east1-c (1))") in result.output


def test_nodes_on_page_two_are_checked(tmp_path: Path, root: CA) -> None:
    nodes = [node(f"e{i}", EAST) for i in range(4)]
    nodes.append(node("late", {**EAST, "topology.kubernetes.io/region": "us-central1"}))
    api = Api({TOKEN: nodes}, page_size=2)
    with serve(api, root, tmp_path) as a:
        east = kubeconfig(tmp_path / "east.kc", a.url, ca_pem=a.ca_pem)
        result, _ = preflight(stack(tmp_path, {"east": east}), "--cluster", "east")
    assert result.exit_code == 1, result.output
    assert "(context 'kind-east'): 5 nodes" in result.output
    assert "late=us-central1" in result.output
    assert [r.split("continue=")[-1] if "continue=" in r else "" for r in a.requests] \
        == ["", "2", "4"]


def test_wrong_token_is_a_clear_401(tmp_path: Path, root: CA) -> None:
    api = Api({TOKEN: [node("e1", EAST)]})
    with serve(api, root, tmp_path) as a:
        east = kubeconfig(tmp_path / "east.kc", a.url, ca_pem=a.ca_pem, user={"token": "nope"})
        result, _ = preflight(stack(tmp_path, {"east": east}), "--cluster", "east")
    assert result.exit_code == 1, result.output
    assert (f"east: [FAIL] live: API server: {a.url}: authentication failed (401 Unauthorized): "
            f"the API server does not accept user 'u' of context 'kind-east' (a bearer token) "
            f"from {tmp_path / 'east.kc'}") in result.output


def test_a_user_without_rbac_for_nodes_is_a_clear_403(tmp_path: Path, root: CA) -> None:
    api = Api({TOKEN: [node("e1", EAST)]})
    with serve(api, root, tmp_path) as a:
        east = kubeconfig(tmp_path / "east.kc", a.url, ca_pem=a.ca_pem, user={"token": "no-rbac"})
        result, _ = preflight(stack(tmp_path, {"east": east}), "--cluster", "east")
    assert result.exit_code == 1, result.output
    assert ("may not list nodes (403 Forbidden: nodes is forbidden: User \"viewer\" cannot list "
            "resource \"nodes\"); it needs `list` on `nodes` (cluster-wide)") in result.output


def test_unreachable_server_fails_fast_and_cleanly(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    east = kubeconfig(tmp_path / "east.kc", f"https://127.0.0.1:{port}", ca_pem=None,
                      user={"token": TOKEN})
    west = kubeconfig(tmp_path / "west.kc", f"https://127.0.0.1:{port}", ca_pem=None)
    result, elapsed = preflight(stack(tmp_path, {"east": east, "west": west}), "--timeout", "2")
    assert result.exit_code == 1, result.output
    assert elapsed < 5
    for cluster in ("east", "west"):  # one cluster down does not hide the other
        assert f"{cluster}: [FAIL] live: API server: https://127.0.0.1:{port}: unreachable (" \
            in result.output


def test_a_server_that_never_answers_times_out(tmp_path: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))  # accepts (backlog), never speaks
    try:
        port = listener.getsockname()[1]
        east = kubeconfig(tmp_path / "east.kc", f"https://127.0.0.1:{port}")
        result, elapsed = preflight(stack(tmp_path, {"east": east}), "--cluster", "east",
                                    "--timeout", "0.5")
    finally:
        listener.close()
    assert result.exit_code == 1, result.output
    assert elapsed < 5
    assert f"https://127.0.0.1:{port}: no answer within 0.5 s" in result.output


def test_untrusted_server_certificate(tmp_path: Path, root: CA) -> None:
    other = CA.create_root(profile="istio", key_algorithm="ecdsa-p256", validity_days=2)
    api = Api({TOKEN: [node("e1", EAST)]})
    with serve(api, root, tmp_path) as a:
        east = kubeconfig(tmp_path / "east.kc", a.url, ca_pem=other.cert_pem)
        result, _ = preflight(stack(tmp_path, {"east": east}), "--cluster", "east")
    assert result.exit_code == 1, result.output
    assert "the server's certificate is not trusted" in result.output
    assert a.requests == []  # the token never left the machine's TLS stack


def test_tls_server_name_and_insecure_skip_tls_verify(tmp_path: Path, root: CA) -> None:
    """A certificate that names kube.test, not 127.0.0.1: tls-server-name, or no verification."""
    api = Api({TOKEN: [node("e1", EAST)]})
    with serve(api, root, tmp_path, dns_name="kube.test") as a:
        east = kubeconfig(tmp_path / "east.kc", a.url, ca_pem=a.ca_pem)
        result, _ = preflight(stack(tmp_path, {"east": east}), "--cluster", "east")
        assert result.exit_code == 1, result.output
        assert "the server's certificate is not trusted" in result.output
        assert "127.0.0.1" in result.output  # the hostname mismatch is named
        east = kubeconfig(tmp_path / "east.kc", a.url, ca_pem=a.ca_pem,
                          **{"tls-server-name": "kube.test"})
        result, _ = preflight(stack(tmp_path, {"east": east}), "--cluster", "east")
        assert result.exit_code == 0, result.output
        east = kubeconfig(tmp_path / "east.kc", a.url, **{"insecure-skip-tls-verify": True})
        result, _ = preflight(stack(tmp_path, {"east": east}), "--cluster", "east")
        assert result.exit_code == 0, result.output
    assert len(a.requests) == 2


def test_client_certificate_files_relative_to_the_kubeconfig(tmp_path: Path, root: CA) -> None:
    """kind-style user: client certificate; CA, cert and key as files next to the kubeconfig."""
    admin = root.issue_leaf(dns_names=["kubernetes-admin"])
    api = Api({"kubernetes-admin": [node("e1", EAST)]})
    (tmp_path / "kube").mkdir()
    (tmp_path / "kube" / "ca.crt").write_text(root.cert_pem)
    (tmp_path / "kube" / "admin.crt").write_text(admin.cert_pem)
    (tmp_path / "kube" / "admin.key").write_text(admin.key_pem)
    with serve(api, root, tmp_path) as a:
        east = kubeconfig(tmp_path / "kube" / "config", a.url, ca_file="ca.crt",
                          user={"client-certificate": "admin.crt", "client-key": "admin.key"})
        result, _ = preflight(stack(tmp_path, {"east": east}), "--cluster", "east")
    assert result.exit_code == 0, result.output
    assert "east: [ok] live: zone: 1 node in us-east1/us-east1-b" in result.output


def test_context_from_the_spec_and_client_cert_data(tmp_path: Path, root: CA) -> None:
    admin = root.issue_leaf(dns_names=["kubernetes-admin"])
    api = Api({"kubernetes-admin": [node("e1", EAST)]})
    user = {"client-certificate-data": base64.b64encode(admin.cert_pem.encode()).decode(),
            "client-key-data": base64.b64encode(admin.key_pem.encode()).decode()}
    with serve(api, root, tmp_path) as a:
        east = kubeconfig(tmp_path / "east.kc", a.url, ca_pem=a.ca_pem, user=user,
                          context="other", extra_contexts=("kind-east",))
        config = stack(tmp_path, {"east": east}, east={"context": "kind-east"})
        result, _ = preflight(config, "--cluster", "east")
        assert result.exit_code == 0, result.output
        assert "(context 'kind-east')" in result.output
        config = stack(tmp_path, {"east": east}, east={"context": "missing"})
        result, _ = preflight(config, "--cluster", "east")
    assert result.exit_code == 2, result.output
    assert f"east: [FAIL] live: kubeconfig: {east}: no context named 'missing' in contexts" \
        in result.output


def test_exec_plugin_users_get_a_clear_error(tmp_path: Path) -> None:
    east = kubeconfig(tmp_path / "east.kc", "https://127.0.0.1:1",
                      user={"exec": {"apiVersion": "client.authentication.k8s.io/v1",
                                     "command": "aws", "args": ["eks", "get-token"]}})
    result, _ = preflight(stack(tmp_path, {"east": east}), "--cluster", "east")
    assert result.exit_code == 2, result.output
    assert "gets its credentials from an exec plugin (aws), which the live check does not run" \
        in result.output


def test_missing_kubeconfig_and_unknown_cluster_are_bad_input(tmp_path: Path) -> None:
    config = stack(tmp_path, {"east": tmp_path / "nope.kc"})
    result, _ = preflight(config, "--cluster", "east")
    assert result.exit_code == 2, result.output
    assert "meshboot:clusters[0].kubeconfig: cluster 'east' has no kubeconfig" in result.output
    result, _ = preflight(config, "--cluster", "north")
    assert result.exit_code == 2, result.output
    assert "error: --cluster north: no such cluster" in result.output


def test_live_runs_alongside_the_pki_checks(tmp_path: Path, root: CA) -> None:
    api = Api({TOKEN: [node("e1", EAST)]})
    with serve(api, root, tmp_path) as a:
        east = kubeconfig(tmp_path / "east.kc", a.url, ca_pem=a.ca_pem)
        config = stack(tmp_path, {"east": east})
        render = CliRunner().invoke(cli, ["render", "--config", str(config), "--out",
                                          str(tmp_path / "out")])
        assert render.exit_code == 0, render.output
        result, _ = preflight(config, "--cluster", "east")
        plain = CliRunner().invoke(cli, ["preflight", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "no PKI store" not in result.output
    pki_lines = [ln for ln in lines(result, "east") if "live:" not in ln]
    assert pki_lines and all(ln.startswith("east: [ok]") for ln in pki_lines)
    assert "east: [ok] live: region" in result.output
    # Without --live: the old output, every cluster, nothing contacted.
    assert plain.exit_code == 0 and "live:" not in plain.output and "west: [ok]" in plain.output
    assert len(a.requests) == 1


# ------------------------------------------------------------ rules, no server
def _cluster(**kw: Any) -> ClusterSpec:
    return ClusterSpec(name="c", api_server="https://10.0.0.1:6443", **kw)


def _statuses(cluster: ClusterSpec, nodes: list[dict[str, Any]]) -> dict[str, str]:
    return {f"{c.name}/{c.status}": c.message
            for c in locality_checks(cluster, 0, [node_locality(n) for n in nodes])}


def test_rules_spec_without_locality_is_informational() -> None:
    got = _statuses(_cluster(), [node("n1", EAST)])
    assert list(got) == ["locality/info"]
    assert "us-east1/us-east1-b (1)" in got["locality/info"]
    assert list(_statuses(_cluster(), [node("n1", {})])) == ["locality/ok"]


def test_rules_control_plane_nodes_and_other_zones() -> None:
    cluster = _cluster(region="us-east1", zone="us-east1-b")
    nodes = [node("cp", {}, taint="node-role.kubernetes.io/control-plane"),
             node("w1", EAST), node("w2", {**EAST, "topology.kubernetes.io/zone": "us-east1-c"})]
    got = _statuses(cluster, nodes)
    assert set(got) == {"region/ok", "zone/ok", "zone/info", "control-plane nodes/info"}
    assert "us-east1-c (1)" in got["zone/info"]
    # The same unlabelled node without the taint runs workloads: a failure.
    nodes[0] = node("cp", {})
    assert "region/FAIL" in _statuses(cluster, nodes)


def test_rules_beta_labels_count_as_istio_reads_them() -> None:
    cluster = _cluster(region="us-east1", zone="us-east1-b")
    beta = {"topology.kubernetes.io/region": "us-east1", BETA_ZONE_LABEL: "us-east1-b"}
    got = _statuses(cluster, [node("n1", beta)])
    assert set(got) == {"region/ok", "zone/ok", "deprecated labels/warn"}


def test_rules_a_cluster_without_nodes_fails_when_the_spec_has_a_region() -> None:
    got = _statuses(_cluster(region="us-east1"), [])
    assert got["region/FAIL"] == ("no node is in meshboot:clusters[0].region 'us-east1' "
                                  "(the cluster has no nodes)")


@pytest.mark.parametrize(("kubeconfig_text", "message"), [
    ("current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
     "clusters: [{name: c, cluster: {server: 'https://[::1'}}]\nusers: [{name: u, user: {}}]\n",
     "server 'https://[::1' is not a URL"),
    ("current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
     "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1', "
     "certificate-authority-data: Zm9v}}]\nusers: [{name: u, user: {}}]\n",
     "the certificate authority is not a usable PEM certificate"),
    ("current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
     "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
     "users: [{name: u, user: {client-certificate-data: Zm9v}}]\n",
     "has a client certificate without its key"),
    ("current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
     "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
     "users: [{name: u, user: {auth-provider: {name: gcp}}}]\n",
     "uses the 'gcp' auth-provider"),
    ("apiVersion: v1\nkind: Config\nclusters: []\n", "no current-context"),
    ("\xff\xfe not text", "not a kubeconfig (not UTF-8 text)"),
])
def test_unusable_kubeconfigs_are_bad_input(tmp_path: Path, kubeconfig_text: str,
                                             message: str) -> None:
    kc = tmp_path / "east.kc"
    kc.write_bytes(kubeconfig_text.encode("latin-1"))
    result, _ = preflight(stack(tmp_path, {"east": kc}), "--cluster", "east")
    assert result.exit_code == 2, result.output
    assert "east: [FAIL] live: kubeconfig: " in result.output
    assert message in result.output
