"""A local HTTP server speaking the parts of the Kubernetes API ``meshboot verify`` reads.

Listens on 127.0.0.1 only. Each cluster is a bearer token (its kubeconfig's
user); the server answers GETs from a table path -> response, where a
response is a JSON document (200), ``Reply(status, doc)``, or ``Seq`` (one
response per request, the last repeated: "pending, then ready"). Unknown
paths are 404 with a Kubernetes ``Status``; unknown tokens 401. List paths
(``/api/v1/nodes``, ``/api/v1/pods``) ignore the query. Every request is
recorded ``(cluster, path)``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from pki.ca import CA


@dataclass
class Reply:
    status: int
    doc: Any


@dataclass
class Seq:
    replies: list[Any]
    served: int = 0

    def next(self) -> Any:
        reply = self.replies[min(self.served, len(self.replies) - 1)]
        self.served += 1
        return reply


@dataclass
class KubeApi:
    clusters: dict[str, dict[str, Any]] = field(default_factory=dict)   # token -> path -> reply
    requests: list[tuple[str, str]] = field(default_factory=list)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def requested(self, cluster: str, fragment: str) -> int:
        return sum(1 for c, p in self.requests if c == cluster and fragment in p)


def not_found(path: str) -> Reply:
    return Reply(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                       "message": f"{path} not found", "reason": "NotFound", "code": 404})


def server_cert(root: CA) -> tuple[str, str]:
    """A serving certificate for 127.0.0.1 (IP SAN) issued by ``root``: (cert PEM, key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(root.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(root.key, hashes.SHA256()))  # type: ignore[arg-type]
    return (cert.public_bytes(serialization.Encoding.PEM).decode(),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode())


@contextmanager
def serve(api: KubeApi, tls: tuple[str, str] | None = None) -> Iterator[KubeApi]:
    """Serve ``api`` over HTTP, or HTTPS with ``tls`` = (certificate PEM, key PEM)."""
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            path = unquote(urlsplit(self.path).path)
            token = self.headers.get("Authorization", "").removeprefix("Bearer ")
            with api.lock:
                api.requests.append((token, path))
                table = api.clusters.get(token)
                if table is None:
                    reply: Any = Reply(401, {"kind": "Status", "message": "Unauthorized",
                                             "code": 401})
                else:
                    reply = table.get(path, not_found(path))
                    if isinstance(reply, Seq):
                        reply = reply.next()
            if not isinstance(reply, Reply):
                reply = Reply(200, reply)
            body = json.dumps(reply.doc).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    scheme = "http"
    if tls is not None:
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = Path(tmp) / "srv.crt", Path(tmp) / "srv.key"
            cert.write_text(tls[0])
            key.write_text(tls[1])
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    api.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()


def write_kubeconfig(path: Path, server: str, cluster: str, token: str | None = None,
                     ca_file: str | None = None) -> Path:
    """A kubeconfig like `kind`'s or a cloud's: one cluster, one token user, context = cluster.

    ``ca_file``: ``certificate-authority``, a path as written (relative: to the kubeconfig).
    """
    entry: dict[str, Any] = {"server": server}
    if ca_file:
        entry["certificate-authority"] = ca_file
    doc = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": cluster, "cluster": entry}],
        "users": [{"name": f"{cluster}-admin", "user": {"token": token or cluster}}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster,
                                                   "user": f"{cluster}-admin"}}],
        "current-context": cluster,
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
