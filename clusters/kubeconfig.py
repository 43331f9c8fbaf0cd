"""Finding and reading a cluster's kubeconfig, without Pulumi or a Kubernetes library.

:class:`KubeconfigLocation` is the one lookup both entry points use: the plan
holds each cluster's location (``stacks.build``, no I/O, so render needs no
kubeconfig) and the Pulumi program reads it and hands the text to
``kubernetes.Provider`` (``stacks.pulumi_program``); ``meshboot preflight
--live`` reads it (:func:`find_kubeconfig`) with :func:`client_config` to talk
to the API server itself (``clusters.live``).

:func:`client_config` understands the parts of a kubeconfig a plain HTTPS client
can use: ``server`` (https, or http), ``certificate-authority[-data]``,
``insecure-skip-tls-verify``, ``tls-server-name``, bearer ``token`` /
``tokenFile``, ``client-certificate[-data]`` / ``client-key[-data]`` (kind's
users). Credential plugins (``exec``, ``auth-provider``), basic auth and
``proxy-url`` are refused with a sentence saying so: running plugins is kubectl's
business, and meshboot stays a small explicit client (no ``kubernetes`` package).
Relative file paths are resolved against the kubeconfig's directory, as kubectl
does (against the stack file's directory for an inline kubeconfig).
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from clusters.spec import ClusterSpec


class KubeconfigError(Exception):
    """A kubeconfig that is missing, unreadable, or asks for something we do not do."""


@dataclass(frozen=True)
class KubeconfigSource:
    text: str
    path: Path | None  # None: inline in the stack file

    @property
    def where(self) -> str:
        return str(self.path) if self.path is not None else "the inline kubeconfig"


@dataclass(frozen=True)
class KubeconfigLocation:
    """Where a cluster's kubeconfig is, not what it says: inline, a file, or $KUBECONFIG.

    :func:`locate_kubeconfig` makes one without I/O (the plan keeps it, render
    never reads it); :meth:`read` looks the file up when a cluster is reached.
    """

    cluster: str
    index: int | None = None              # in meshboot:clusters, for messages
    inline: str | None = field(default=None, repr=False)  # the stack file's inline kubeconfig
    path: Path | None = None              # the spec's file, resolved against the stack file's dir
    # Neither: the first existing $KUBECONFIG file, else ~/.kube/config (looked up by read).

    def read(self, env: dict[str, str] | None = None) -> KubeconfigSource:
        """The kubeconfig text; raises KubeconfigError naming every place looked at.

        Of several $KUBECONFIG files the first that exists is used (kubectl merges
        them; meshboot wants one explicit file per cluster).
        """
        if self.inline is not None:
            return KubeconfigSource(self.inline, None)
        env = dict(os.environ) if env is None else env
        candidates: list[Path] = []
        if self.path is not None:
            candidates.append(self.path)
        else:
            for part in env.get("KUBECONFIG", "").split(os.pathsep):
                if part:
                    candidates.append(Path(part).expanduser())
            candidates.append(Path(env.get("HOME", "~")).expanduser() / ".kube" / "config")
        for p in candidates:
            if p.is_file():
                try:
                    return KubeconfigSource(p.read_text(), p)
                except OSError as err:
                    raise KubeconfigError(f"{p}: cannot read it ({err.strerror or err})") from None
                except UnicodeDecodeError:
                    raise KubeconfigError(f"{p}: not a kubeconfig (not UTF-8 text)") from None
        where = ", ".join(str(p) for p in candidates)
        key = f"meshboot:clusters[{'' if self.index is None else self.index}].kubeconfig"
        raise KubeconfigError(f"{key}: cluster {self.cluster!r} has no kubeconfig (looked at "
                              f"{where}); set it to a path or to the (secure) contents")


def locate_kubeconfig(cluster: ClusterSpec, base_dir: Path,
                      index: int | None = None) -> KubeconfigLocation:
    """Where the kubeconfig of ``cluster`` is; relative paths against ``base_dir``. No I/O."""
    value = cluster.kubeconfig
    if value and ("\n" in value or value.lstrip().startswith(("apiVersion", "{"))):
        return KubeconfigLocation(cluster.name, index, inline=value)
    if value:
        p = Path(value).expanduser()
        return KubeconfigLocation(cluster.name, index, path=p if p.is_absolute() else base_dir / p)
    return KubeconfigLocation(cluster.name, index)


def find_kubeconfig(cluster: ClusterSpec, base_dir: Path, env: dict[str, str] | None = None,
                    index: int | None = None) -> KubeconfigSource:
    """The kubeconfig for a cluster: inline, a file, or $KUBECONFIG, else ~/.kube/config."""
    return locate_kubeconfig(cluster, base_dir, index).read(env)


@dataclass(frozen=True)
class ClientConfig:
    """What an HTTPS client needs to reach one API server as one user."""

    server: str                   # scheme://host[:port][/path], no trailing slash
    context: str
    user: str
    source: str                   # the kubeconfig, for messages
    ca_pem: bytes | None = None   # None: the system's trust store
    insecure: bool = False        # insecure-skip-tls-verify
    tls_server_name: str | None = None
    token: str | None = None
    client_cert_pem: bytes | None = None
    client_key_pem: bytes | None = None

    @property
    def auth(self) -> str:
        if self.token:
            return "a bearer token"
        if self.client_cert_pem:
            return "a client certificate"
        return "no credentials"


def _named(doc: dict[str, Any], section: str, name: str, inner: str, where: str) -> dict[str, Any]:
    entries = doc.get(section) or []
    if not isinstance(entries, list):
        raise KubeconfigError(f"{where}: {section} is not a list")
    for entry in entries:
        if isinstance(entry, dict) and entry.get("name") == name:
            body = entry.get(inner) or {}
            if not isinstance(body, dict):
                raise KubeconfigError(f"{where}: {section} {name!r}: {inner} is not a mapping")
            return body
    raise KubeconfigError(f"{where}: no {inner} named {name!r} in {section}")


def _data(value: Any, what: str, where: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError) as err:
        raise KubeconfigError(f"{where}: {what} is not valid base64 ({err})") from None


def _file(value: Any, what: str, relative_to: Path, where: str) -> bytes:
    p = Path(str(value)).expanduser()
    p = p if p.is_absolute() else relative_to / p
    try:
        return p.read_bytes()
    except OSError as err:
        raise KubeconfigError(f"{where}: {what} {p}: {err.strerror or err}") from None


def _pem(body: dict[str, Any], key: str, what: str, relative_to: Path, where: str) -> bytes | None:
    if body.get(f"{key}-data"):
        return _data(body[f"{key}-data"], f"{what} ({key}-data)", where)
    if body.get(key):
        return _file(body[key], f"{what} ({key})", relative_to, where)
    return None


def client_config(source: KubeconfigSource, context: str | None, base_dir: Path) -> ClientConfig:
    """Resolve the context (the spec's ``context``, else ``current-context``) to a ClientConfig."""
    where = source.where
    try:
        doc = yaml.safe_load(source.text)
    except yaml.YAMLError as err:
        raise KubeconfigError(f"{where}: not YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise KubeconfigError(f"{where}: not a kubeconfig (expected a mapping)")
    name = context or doc.get("current-context")
    if not name:
        raise KubeconfigError(f"{where}: no current-context; set meshboot:clusters[].context")
    ctx = _named(doc, "contexts", str(name), "context", where)
    cluster_name, user_name = ctx.get("cluster"), ctx.get("user")
    if not cluster_name:
        raise KubeconfigError(f"{where}: context {name!r} names no cluster")
    cluster = _named(doc, "clusters", str(cluster_name), "cluster", where)
    user = _named(doc, "users", str(user_name), "user", where) if user_name else {}
    relative_to = source.path.parent if source.path is not None else base_dir
    where_ctx = f"{where} (context {name!r})"

    server = str(cluster.get("server") or "").rstrip("/")
    if not server:
        raise KubeconfigError(f"{where_ctx}: cluster {cluster_name!r} has no server")
    if "://" not in server:
        server = "https://" + server
    try:
        parts = urlsplit(server)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as err:
        raise KubeconfigError(f"{where_ctx}: server {server!r} is not a URL ({err})") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise KubeconfigError(f"{where_ctx}: server {server!r} is not an http(s) URL")
    if cluster.get("proxy-url"):
        raise KubeconfigError(f"{where_ctx}: proxy-url is not supported by the live check; "
                              "run it from a machine that reaches the API server directly")

    if user.get("exec"):
        command = (user["exec"] or {}).get("command", "?") if isinstance(user["exec"], dict) else "?"
        raise KubeconfigError(
            f"{where_ctx}: user {user_name!r} gets its credentials from an exec plugin "
            f"({command}), which the live check does not run; give it a kubeconfig with a "
            "token (e.g. from `kubectl create token`) or a client certificate")
    if user.get("auth-provider"):
        provider = (user["auth-provider"] or {}).get("name", "?") \
            if isinstance(user["auth-provider"], dict) else "?"
        raise KubeconfigError(
            f"{where_ctx}: user {user_name!r} uses the {provider!r} auth-provider, which the live "
            "check does not support; give it a kubeconfig with a token or a client certificate")
    if user.get("username") or user.get("password"):
        raise KubeconfigError(f"{where_ctx}: user {user_name!r}: basic auth (username/password) is "
                              "not supported (Kubernetes removed it in 1.19)")

    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = _file(user["tokenFile"], "tokenFile", relative_to, where_ctx).decode(
            "utf-8", "replace").strip()
    if token and any(ord(ch) < 0x21 or ord(ch) == 0x7f for ch in str(token)):
        raise KubeconfigError(f"{where_ctx}: user {user_name!r}: the token contains spaces or "
                              "control characters")
    cert = _pem(user, "client-certificate", "client certificate", relative_to, where_ctx)
    key = _pem(user, "client-key", "client key", relative_to, where_ctx)
    if bool(cert) != bool(key):
        raise KubeconfigError(f"{where_ctx}: user {user_name!r} has a client certificate without "
                              "its key, or a key without its certificate")
    return ClientConfig(
        server=server,
        context=str(name),
        user=str(user_name or ""),
        source=where,
        ca_pem=_pem(cluster, "certificate-authority", "certificate authority", relative_to,
                    where_ctx),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        tls_server_name=str(cluster["tls-server-name"]) if cluster.get("tls-server-name") else None,
        token=str(token) if token else None,
        client_cert_pem=cert,
        client_key_pem=key,
    )
