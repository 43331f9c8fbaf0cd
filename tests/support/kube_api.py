"""A local HTTP server speaking the parts of the Kubernetes API ``meshboot verify`` reads.

Listens on 127.0.0.1 only. Each cluster is a bearer token (its kubeconfig's
user); the server answers GETs from a table path -> response, where a
response is a JSON document (200), ``Reply(status, doc)``, or ``Seq`` (one
response per request, the last repeated: "pending, then ready"). Unknown
paths are 404 with a Kubernetes ``Status``; unknown tokens 401. List paths
(``/api/v1/nodes``, ``/api/v1/pods``) ignore the query. Every request is
recorded ``(cluster, path)``.

Port-forward: a websocket upgrade of ``/api/v1/namespaces/NS/pods/POD/portforward
?ports=P`` speaks ``v4.channel.k8s.io`` as the kubelet does (kubernetes
``pkg/kubelet/cri/streaming/portforward/websocket.go``): binary frames whose
first byte is the channel (0 data, 1 error), each channel opened by a frame
holding the port (little-endian). An HTTP request arriving on the data
channel is answered from the table key ``<portforward path>:P<request path>``
(recorded under that key), then the stream closes. A table entry at the
portforward path itself refuses the upgrade with that reply (e.g. 403); a pod
with no ``<path>:`` key is 404. ``PortError(text)`` as an answer sends ``text``
on the error channel instead, as the kubelet does when nothing listens;
``Hang()`` never answers.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import json
import ssl
import struct
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

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
class PortError:
    """Sent on the port-forward's error channel, as the kubelet does."""

    text: str


@dataclass
class Hang:
    """A port-forward whose pod port accepts and never answers (until the client leaves)."""


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


WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
PORTFORWARD_PROTOCOL = "v4.channel.k8s.io"


def read_frame(rfile: Any) -> tuple[int, bytes] | None:
    """One websocket frame (opcode, payload), unmasked; None at end of stream."""
    head = rfile.read(2)
    if len(head) < 2:
        return None
    opcode, size = head[0] & 0x0F, head[1] & 0x7F
    if size == 126:
        size = struct.unpack(">H", rfile.read(2))[0]
    elif size == 127:
        size = struct.unpack(">Q", rfile.read(8))[0]
    mask = rfile.read(4) if head[1] & 0x80 else b""
    data = rfile.read(size)
    if mask:
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return opcode, data


def frame(opcode: int, data: bytes) -> bytes:
    """A final, unmasked server frame."""
    size = len(data)
    if size < 126:
        head = bytes([0x80 | opcode, size])
    elif size < 1 << 16:
        head = bytes([0x80 | opcode, 126]) + struct.pack(">H", size)
    else:
        head = bytes([0x80 | opcode, 127]) + struct.pack(">Q", size)
    return head + data


def http_answer(reply: Reply) -> bytes:
    body = reply.doc if isinstance(reply.doc, bytes) else json.dumps(reply.doc).encode()
    return (f"HTTP/1.1 {reply.status} {'OK' if reply.status == 200 else 'Error'}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode() + body


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
            forward = False
            with api.lock:
                api.requests.append((token, path))
                table = api.clusters.get(token)
                if table is None:
                    reply: Any = Reply(401, {"kind": "Status", "message": "Unauthorized",
                                             "code": 401})
                elif path.endswith("/portforward") and path not in table:
                    if not any(k.startswith(path + ":") for k in table):
                        reply = not_found(path)
                    elif self.headers.get("Upgrade", "").lower() != "websocket":
                        reply = Reply(400, {"kind": "Status", "message": "Upgrade request required",
                                            "code": 400})
                    else:
                        forward = True
                else:
                    reply = table.get(path, not_found(path))
                    if isinstance(reply, Seq):
                        reply = reply.next()
            if forward and table is not None:
                try:
                    self.forward(token, path, table)
                except OSError:
                    pass  # the client went away mid-stream
            else:
                self.answer(reply)

        def answer(self, reply: Any) -> None:
            if not isinstance(reply, Reply):
                reply = Reply(200, reply)
            body = json.dumps(reply.doc).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def forward(self, token: str, path: str, table: dict[str, Any]) -> None:
            """A port-forward stream: the handshake, one HTTP exchange, close."""
            self.close_connection = True
            offered = [p.strip() for p in self.headers.get("Sec-WebSocket-Protocol", "").split(",")]
            ports = parse_qs(urlsplit(self.path).query).get("ports", [""])[0]
            if PORTFORWARD_PROTOCOL not in offered or not ports.isdigit():
                return self.answer(Reply(400, {"kind": "Status", "code": 400,
                                               "message": "bad port-forward request"}))
            key = self.headers.get("Sec-WebSocket-Key", "")
            accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
            self.send_response(101, "Switching Protocols")
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept)
            self.send_header("Sec-WebSocket-Protocol", PORTFORWARD_PROTOCOL)
            self.end_headers()
            port = int(ports)
            opening = struct.pack("<H", port)
            self.wfile.write(frame(2, b"\x00" + opening) + frame(2, b"\x01" + opening))
            request = b""
            while b"\r\n\r\n" not in request:
                got = read_frame(self.rfile)
                if got is None or got[0] == 8:
                    return
                if got[0] == 2 and got[1][:1] == b"\x00":
                    request += got[1][1:]
            line = request.split(b"\r\n", 1)[0].decode("latin-1").split()
            inner = f"{path}:{port}{urlsplit(line[1]).path if len(line) > 1 else '/'}"
            with api.lock:
                api.requests.append((token, inner))
                reply = table.get(inner, Reply(404, "404 page not found"))
                if isinstance(reply, Seq):
                    reply = reply.next()
            if isinstance(reply, Hang):
                while (got := read_frame(self.rfile)) is not None and got[0] != 8:
                    pass
                return
            if isinstance(reply, PortError):
                self.wfile.write(frame(2, b"\x01" + reply.text.encode()))
            else:
                self.wfile.write(frame(2, b"\x00" + http_answer(
                    reply if isinstance(reply, Reply) else Reply(200, reply))))
            self.wfile.write(frame(8, struct.pack(">H", 1000)))

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
