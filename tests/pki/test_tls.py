"""The hierarchy really works: TLS 1.3 mutual auth across clusters, with Python's ssl.

Each side trusts only the mesh root; leaves come from *different* clusters'
intermediates, which is exactly the cross-cluster mTLS a multi-cluster mesh does.
"""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import pytest

from pki.ca import CA, Leaf, certs_to_pem
from tests.support.pki_material import issue_ca_unsafe

TD = "cluster.local"


def spiffe(ns: str, sa: str, td: str = TD) -> str:
    return f"spiffe://{td}/ns/{ns}/sa/{sa}"


def _context(side: int, leaf: Leaf, trusted: CA, tmp: Path, tag: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(side)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if side == ssl.PROTOCOL_TLS_CLIENT:
        ctx.check_hostname = False  # identity is the SPIFFE URI, checked below
    ctx.verify_mode = ssl.CERT_REQUIRED
    chain, key = tmp / f"{tag}-chain.pem", tmp / f"{tag}-key.pem"
    chain.write_text(leaf.chain_pem)
    key.write_text(leaf.key_pem)
    ctx.load_cert_chain(chain, key)
    ctx.load_verify_locations(cadata=certs_to_pem([trusted.root_cert]))
    return ctx


def _uri_sans(peercert: dict) -> list[str]:  # type: ignore[type-arg]
    return [v for k, v in peercert.get("subjectAltName", ()) if k == "URI"]


def mtls(
    server_leaf: Leaf,
    client_leaf: Leaf,
    server_trusts: CA,
    client_trusts: CA,
    tmp: Path,
) -> tuple[list[str], list[str]]:
    """Run one handshake; return (URI SANs the server saw, URI SANs the client saw)."""
    server_ctx = _context(ssl.PROTOCOL_TLS_SERVER, server_leaf, server_trusts, tmp, "srv")
    client_ctx = _context(ssl.PROTOCOL_TLS_CLIENT, client_leaf, client_trusts, tmp, "cli")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    result: dict[str, object] = {}

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                result["server_saw"] = _uri_sans(tls.getpeercert() or {})
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError) as exc:
            result["server_error"] = exc

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with client_ctx.wrap_socket(raw) as tls:
                assert tls.version() == "TLSv1.3"
                client_saw = _uri_sans(tls.getpeercert() or {})
                # TLS 1.3: the server verifies the client cert after the client's
                # Finished; reading forces that verdict to reach us.
                assert tls.recv(2) == b"ok"
    finally:
        thread.join(timeout=10)
        listener.close()
    if "server_error" in result:
        raise result["server_error"]  # type: ignore[misc]
    return result["server_saw"], client_saw  # type: ignore[return-value]


@pytest.fixture(scope="module")
def istio_mesh(istio_root: CA) -> tuple[CA, CA]:
    a = istio_root.issue_intermediate(
        profile="istio", cluster="east", key_algorithm="ecdsa-p256", validity_days=30
    )
    b = istio_root.issue_intermediate(
        profile="istio", cluster="west", key_algorithm="rsa-2048", validity_days=30
    )
    return a, b


@pytest.fixture(scope="module")
def linkerd_mesh(linkerd_anchor: CA) -> tuple[CA, CA]:
    return tuple(  # type: ignore[return-value]
        linkerd_anchor.issue_intermediate(
            profile="linkerd", cluster=c, key_algorithm="ecdsa-p256", validity_days=30
        )
        for c in ("east", "west")
    )


@pytest.mark.parametrize("leaf_alg", ["ecdsa-p256", "rsa-2048"])
def test_istio_cross_cluster_mtls(
    istio_root: CA, istio_mesh: tuple[CA, CA], tmp_path: Path, leaf_alg: str
) -> None:
    a, b = istio_mesh
    server = a.issue_leaf(spiffe_ids=[spiffe("shop", "cart")], key_algorithm=leaf_alg)
    client = b.issue_leaf(spiffe_ids=[spiffe("shop", "web")], key_algorithm=leaf_alg)
    server_saw, client_saw = mtls(server, client, istio_root, istio_root, tmp_path)
    assert server_saw == [spiffe("shop", "web")]
    assert client_saw == [spiffe("shop", "cart")]


def test_linkerd_cross_cluster_mtls(
    linkerd_anchor: CA, linkerd_mesh: tuple[CA, CA], tmp_path: Path
) -> None:
    a, b = linkerd_mesh
    server = a.issue_leaf(spiffe_ids=[spiffe("emoji", "voting")])
    client = b.issue_leaf(spiffe_ids=[spiffe("emoji", "web")])
    server_saw, client_saw = mtls(server, client, linkerd_anchor, linkerd_anchor, tmp_path)
    assert server_saw == [spiffe("emoji", "web")]
    assert client_saw == [spiffe("emoji", "voting")]


def test_client_trusting_foreign_root_rejects_server(
    istio_root: CA, istio_mesh: tuple[CA, CA], foreign_root: CA, tmp_path: Path
) -> None:
    a, b = istio_mesh
    server = a.issue_leaf(spiffe_ids=[spiffe("shop", "cart")])
    client = b.issue_leaf(spiffe_ids=[spiffe("shop", "web")])
    with pytest.raises(ssl.SSLCertVerificationError):
        mtls(server, client, istio_root, foreign_root, tmp_path)


def test_server_trusting_foreign_root_rejects_client(
    istio_root: CA, istio_mesh: tuple[CA, CA], foreign_root: CA, tmp_path: Path
) -> None:
    a, b = istio_mesh
    server = a.issue_leaf(spiffe_ids=[spiffe("shop", "cart")])
    client = b.issue_leaf(spiffe_ids=[spiffe("shop", "web")])
    with pytest.raises((ssl.SSLError, ConnectionError)):
        mtls(server, client, foreign_root, istio_root, tmp_path)


@pytest.mark.parametrize("mesh", ["istio", "linkerd"])
def test_ca_under_pathlen0_intermediate_is_rejected(
    mesh: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    root: CA = request.getfixturevalue("istio_root" if mesh == "istio" else "linkerd_anchor")
    a, b = request.getfixturevalue(f"{mesh}_mesh")
    rogue = issue_ca_unsafe(a, common_name="rogue sub-CA")
    server = rogue.issue_leaf(spiffe_ids=[spiffe("evil", "sa")])
    assert len(server.issuers) == 2  # rogue CA + intermediate are presented
    client = b.issue_leaf(spiffe_ids=[spiffe("shop", "web")])
    with pytest.raises(ssl.SSLCertVerificationError, match="path length"):
        mtls(server, client, root, root, tmp_path)
