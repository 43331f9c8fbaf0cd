"""Cross-field checks of the spec that a schema cannot express."""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from clusters.errors import Problem, echo
from clusters.linkerd_spec import LinkerdSpec
from clusters.names import PROBE_PATH, is_dns1123_label, is_dns1123_subdomain, is_label_value
from clusters.spec import (
    KEY_ALGORITHMS,
    LINKERD_EXPIRY_WARNING_DAYS,
    RENEW_BEFORE_DAYS,
    ROTATION_PHASES,
    ClusterSpec,
    MeshSpec,
    PkiSpec,
    ServiceSpec,
    Spec,
)
from clusters.validate_delivery import delivery_warnings


def label_problem(path: str, value: str, what: str = "name") -> list[Problem]:
    if is_dns1123_label(value):
        return []
    return [Problem(path, f"{what} {echo(value)} is not a DNS-1123 label (lower-case alphanumerics "
                          "and '-', starting and ending alphanumeric, at most 63 characters)")]


def validate_spec(
    sections: dict[str, Any],
    items: dict[str, dict[int, Any]],
    base_dir: Path | None = None,
    declared_clusters: set[str] | None = None,
) -> list[Problem]:
    """Check what parsed; ``items`` maps list index -> parsed entry."""
    problems: list[Problem] = []
    mesh: MeshSpec = sections.get("mesh") or MeshSpec()
    pki: PkiSpec | None = sections.get("pki") or (PkiSpec() if "pki" not in sections else None)
    clusters: dict[int, ClusterSpec] = items.get("clusters", {})
    services: dict[int, ServiceSpec] = items.get("services", {})

    problems += _check_mesh(mesh)
    if pki is not None:
        problems += _check_pki(pki, mesh, base_dir)
    problems += _check_clusters(clusters, mesh.id)
    known = {c.name for c in clusters.values()} | (declared_clusters or set())
    problems += _check_services(services, known)
    if pki is not None and pki.rotation is not None:
        problems += _check_rotation(pki, known)
    linkerd: LinkerdSpec | None = sections.get("linkerd")
    if linkerd is not None:
        problems += _check_linkerd(linkerd)
    return problems


def spec_warnings(spec: Spec) -> list[Problem]:
    """What is valid but will likely fail once deployed; never fails a command."""
    out: list[Problem] = []
    renew = spec.pki.renew_before_days
    if spec.mesh.provider == "linkerd" and renew is not None \
            and renew < LINKERD_EXPIRY_WARNING_DAYS:
        # linkerd2 pkg/healthcheck "issuer cert is valid for at least 60 days" is a
        # warning (pkg/issuercerts expirationWarningThresholdInDays = 60).
        out.append(Problem("meshboot:pki.renewBeforeDays",
                           f"{renew} days: `linkerd check` warns once an issuer is valid for "
                           f"less than {LINKERD_EXPIRY_WARNING_DAYS} days, so it will warn for "
                           f"{LINKERD_EXPIRY_WARNING_DAYS - renew} days before every renewal "
                           f"(the Linkerd default is {RENEW_BEFORE_DAYS['linkerd']})"))
    out += delivery_warnings(spec)
    for i, c in enumerate(spec.clusters):
        base = f"meshboot:clusters[{i}]"
        host = urlsplit(c.api_server).hostname or ""
        if is_loopback(host):
            out.append(Problem(f"{base}.apiServer",
                               f"{echo(c.api_server)} is a loopback address: other clusters "
                               "cannot reach it (use an address routable between clusters)"))
        address = c.east_west_gateway.address
        if address is not None and is_loopback(address):
            out.append(Problem(f"{base}.eastWestGateway.address",
                               f"{echo(address)} is a loopback address: other clusters cannot "
                               "reach it"))
    return out


def is_loopback(host: str) -> bool:
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):  # RFC 6761: always loopback
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_address(value: str) -> bool:
    """An IPv4/IPv6 address or a DNS name (what a gateway's clients can dial)."""
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        pass
    if re.fullmatch(r"[0-9.]+", value):
        return False  # looks like IPv4 but is not one (999.1.1.1, 10.0.0)
    return is_dns1123_subdomain(value.lower().rstrip("."))


def _check_linkerd(linkerd: LinkerdSpec) -> list[Problem]:
    if PROBE_PATH.match(linkerd.probe.path):
        return []
    return [Problem("meshboot:linkerd.probe.path",
                    f"{echo(linkerd.probe.path)} is not an absolute HTTP path (starts with '/', "
                    "printable ASCII, no spaces)")]


def _check_mesh(mesh: MeshSpec) -> list[Problem]:
    out = label_problem("meshboot:mesh.id", mesh.id, "mesh id")
    if not is_dns1123_subdomain(mesh.trust_domain):
        out.append(Problem("meshboot:mesh.trustDomain",
                           f"{echo(mesh.trust_domain)} is not a DNS-1123 subdomain"))
    if mesh.revision is not None:
        out += label_problem("meshboot:mesh.revision", mesh.revision, "revision")
        if mesh.provider != "istio":
            out.append(Problem("meshboot:mesh.revision", "revisions exist only for Istio"))
    return out


def _check_pki(pki: PkiSpec, mesh: MeshSpec, base_dir: Path | None) -> list[Problem]:
    out: list[Problem] = []
    if pki.key_algorithm not in KEY_ALGORITHMS:
        out.append(Problem("meshboot:pki.keyAlgorithm",
                           f"unknown key algorithm {echo(pki.key_algorithm)} "
                           f"(one of: {', '.join(KEY_ALGORITHMS)})"))
    elif mesh.provider == "linkerd" and pki.key_algorithm != "ecdsa-p256":
        out.append(Problem("meshboot:pki.keyAlgorithm",
                           f"Linkerd requires ecdsa-p256 for its trust anchor and issuers, "
                           f"got {echo(pki.key_algorithm)}"))
    renew = pki.renew_before(mesh.provider)
    default = "" if pki.renew_before_days is not None else f", the {mesh.provider} default"
    for key, days in (("rootValidityDays", pki.root_validity_days),
                      ("intermediateValidityDays", pki.intermediate_validity_days)):
        if days <= renew:
            out.append(Problem(f"meshboot:pki.{key}",
                               f"validity of {days} days is not longer than renewBeforeDays "
                               f"({renew}{default}): the certificate would be re-issued "
                               "on every run"))
    if pki.intermediate_validity_days > pki.root_validity_days:
        out.append(Problem("meshboot:pki.intermediateValidityDays",
                           "must not exceed rootValidityDays (an intermediate cannot outlive "
                           "its root)"))
    if pki.root_ca is not None:
        out += _check_root_import(pki, base_dir)
    return out


_ROTATION = "meshboot:pki.rotation"


def _utc_time(path: str, value: str | None) -> list[Problem]:
    import datetime as dt

    if value is None:
        return []
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        return [Problem(path, f"{echo(value)} is not an ISO 8601 time with a zone "
                              "(e.g. 2026-12-03T07:00:00Z)")]
    return []


def _check_rotation(pki: PkiSpec, clusters: set[str]) -> list[Problem]:
    """The structure of a rotation in progress; the new root's crypto is checked with
    the plan's PKI inputs (stacks.build)."""
    rot = pki.rotation
    assert rot is not None
    out: list[Problem] = []
    if pki.root_ca is None:
        out.append(Problem(_ROTATION, "a rotation replaces meshboot:pki.rootCa, which is not "
                                      "set: put the current root there first "
                                      "(`meshboot pki init`)"))
    if rot.new_root is None:
        out.append(Problem(f"{_ROTATION}.newRoot", "required: the root being rotated to "
                                                   "(certPem, and keyPem as a secure value)"))
    else:
        for key, value in (("certPem", rot.new_root.cert_pem), ("keyPem", rot.new_root.key_pem)):
            if not value:
                out.append(Problem(f"{_ROTATION}.newRoot.{key}", "required"))
    order = list(ROTATION_PHASES)
    nxt = order[order.index(rot.phase) + 1] if rot.phase != order[-1] else None
    for name, phase in rot.clusters.items():
        path = f"{_ROTATION}.clusters.{name}"
        if name not in clusters:
            out.append(Problem(path, f"no cluster named {echo(name)} in meshboot:clusters"))
        elif phase != nxt:
            allowed = (f"only {nxt} (one phase ahead of phase {rot.phase})" if nxt
                       else "none: nothing comes after drop-old")
            out.append(Problem(path, f"{phase}: clusters are never more than one phase apart, "
                                     f"and one listed here must be ahead; allowed: {allowed}"))
    for key, value in (("since", rot.since), ("signingSince", rot.signing_since),
                       ("abortedAt", rot.aborted_at)):
        out += _utc_time(f"{_ROTATION}.{key}", value)
    return out


def _check_root_import(pki: PkiSpec, base_dir: Path | None) -> list[Problem]:
    assert pki.root_ca is not None
    rc = pki.root_ca
    out: list[Problem] = []
    for what, inline, file, inline_key, file_key in (
        ("certificate", rc.cert_pem, rc.cert_file, "certPem", "certFile"),
        ("key", rc.key_pem, rc.key_file, "keyPem", "keyFile"),
    ):
        if inline and file:
            out.append(Problem(f"meshboot:pki.rootCa.{inline_key}",
                               f"set either {inline_key} or {file_key}, not both"))
        elif not inline and not file:
            out.append(Problem("meshboot:pki.rootCa",
                               f"the root {what} is missing: set {inline_key} or {file_key}"))
        elif file:
            path = Path(file) if base_dir is None else base_dir / file
            if not path.is_file():
                out.append(Problem(f"meshboot:pki.rootCa.{file_key}",
                                   f"file {echo(str(path))} does not exist"))
    return out


def _check_api_server(path: str, value: str) -> list[Problem]:
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        return [Problem(path, f"invalid URL {echo(value)}: {str(exc)[:80]}")]
    if parts.scheme != "https" or not parts.hostname:
        return [Problem(path, f"invalid URL {echo(value)}: expected https://<host>[:<port>]")]
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return [Problem(path, f"invalid URL {echo(value)}: expected https://<host>[:<port>] with no "
                              "path, query or credentials")]
    host = parts.hostname
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not is_dns1123_subdomain(host.lower()):
            return [Problem(path, f"invalid URL {echo(value)}: {echo(host)} is not a valid host name")]
    if port == 0:
        return [Problem(path, f"invalid URL {echo(value)}: port 0")]
    return []


def _check_clusters(clusters: dict[int, ClusterSpec], mesh_id: str) -> list[Problem]:
    out: list[Problem] = []
    names = Counter(c.name for c in clusters.values())
    by_name = {c.name: c for c in clusters.values()}
    servers = Counter(_normal_server(c.api_server) for c in clusters.values())
    for i, c in clusters.items():
        base = f"meshboot:clusters[{i}]"
        out += label_problem(f"{base}.name", c.name, "cluster name")
        if names[c.name] > 1:
            out.append(Problem(f"{base}.name", f"duplicate cluster name {echo(c.name)}"))
        api_problems = _check_api_server(f"{base}.apiServer", c.api_server)
        out += api_problems
        if not api_problems and servers[_normal_server(c.api_server)] > 1:
            out.append(Problem(f"{base}.apiServer",
                               f"{echo(c.api_server)} is used by more than one cluster"))
        if not is_label_value(c.network):
            out.append(Problem(f"{base}.network",
                               f"{echo(c.network)} is not a valid Kubernetes label value"))
        if c.mesh_id is not None and c.mesh_id != mesh_id:
            # Upstream istio-discovery values.yaml (global.meshID): "Within a multicluster
            # mesh, each cluster must be (manually or auto) configured to have the same
            # Mesh ID value."
            out.append(Problem(f"{base}.meshId",
                               f"{echo(c.mesh_id)} differs from meshboot:mesh.id {echo(mesh_id)}: "
                               "all clusters of one mesh share its mesh ID (remove the key)"))
        if c.zone and not c.region:
            out.append(Problem(f"{base}.zone", "a zone needs a region"))
        if c.role == "remote":
            if not c.primary:
                out.append(Problem(f"{base}.primary", "a remote cluster needs its primary"))
            elif c.primary not in by_name:
                out.append(Problem(f"{base}.primary", f"unknown cluster {echo(c.primary)}"))
            elif by_name[c.primary].role != "primary":
                out.append(Problem(f"{base}.primary",
                                   f"{echo(c.primary)} is a remote cluster; a remote must point "
                                   "at a primary"))
        elif c.primary:
            out.append(Problem(f"{base}.primary", "only clusters with role remote have a primary"))
        address = c.east_west_gateway.address
        if address is not None and not address.strip():
            out.append(Problem(f"{base}.eastWestGateway.address", "must not be empty"))
        elif address is not None and not is_address(address):
            out.append(Problem(f"{base}.eastWestGateway.address",
                               f"{echo(address)} is not an IPv4/IPv6 address or a DNS name"))
    return out


def _normal_server(url: str) -> str:
    try:
        parts = urlsplit(url)
        return f"{parts.hostname}:{parts.port or 443}"
    except ValueError:
        return url


def _check_services(services: dict[int, ServiceSpec], clusters: set[str]) -> list[Problem]:
    out: list[Problem] = []
    keys = Counter((s.namespace, s.name) for s in services.values())
    for i, s in services.items():
        base = f"meshboot:services[{i}]"
        out += label_problem(f"{base}.name", s.name, "service name")
        out += label_problem(f"{base}.namespace", s.namespace, "namespace")
        if keys[(s.namespace, s.name)] > 1:
            out.append(Problem(f"{base}.name",
                               f"duplicate service {s.namespace}/{s.name}"))
        for j, cname in enumerate(s.clusters):
            if cname not in clusters:
                out.append(Problem(f"{base}.clusters[{j}]", f"unknown cluster {echo(cname)}"))
        if len(set(s.clusters)) != len(s.clusters):
            out.append(Problem(f"{base}.clusters", "lists a cluster more than once"))
        port_names = Counter(p.name for p in s.ports)
        port_nums = Counter(p.port for p in s.ports)
        for j, p in enumerate(s.ports):
            out += label_problem(f"{base}.ports[{j}].name", p.name, "port name")
            if port_names[p.name] > 1:
                out.append(Problem(f"{base}.ports[{j}].name", f"duplicate port name {echo(p.name)}"))
            if port_nums[p.port] > 1:
                out.append(Problem(f"{base}.ports[{j}].port", f"duplicate port {p.port}"))
    return out
