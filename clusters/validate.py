"""Cross-field checks of the spec that a schema cannot express."""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from clusters.errors import Problem
from clusters.spec import KEY_ALGORITHMS, ClusterSpec, MeshSpec, PkiSpec, ServiceSpec

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# Kubernetes label values: the network name ends up in topology.istio.io/network.
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def is_dns1123_label(value: str) -> bool:
    return len(value) <= 63 and bool(DNS1123_LABEL.match(value))


def is_dns1123_subdomain(value: str) -> bool:
    return len(value) <= 253 and bool(DNS1123_SUBDOMAIN.match(value))


def label_problem(path: str, value: str, what: str = "name") -> list[Problem]:
    if is_dns1123_label(value):
        return []
    return [Problem(path, f"{what} {value!r} is not a DNS-1123 label (lower-case alphanumerics "
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
    return problems


def _check_mesh(mesh: MeshSpec) -> list[Problem]:
    out = label_problem("meshboot:mesh.id", mesh.id, "mesh id")
    if not is_dns1123_subdomain(mesh.trust_domain):
        out.append(Problem("meshboot:mesh.trustDomain",
                           f"{mesh.trust_domain!r} is not a DNS-1123 subdomain"))
    if mesh.revision is not None:
        out += label_problem("meshboot:mesh.revision", mesh.revision, "revision")
        if mesh.provider != "istio":
            out.append(Problem("meshboot:mesh.revision", "revisions exist only for Istio"))
    return out


def _check_pki(pki: PkiSpec, mesh: MeshSpec, base_dir: Path | None) -> list[Problem]:
    out: list[Problem] = []
    if pki.key_algorithm not in KEY_ALGORITHMS:
        out.append(Problem("meshboot:pki.keyAlgorithm",
                           f"unknown key algorithm {pki.key_algorithm!r} "
                           f"(one of: {', '.join(KEY_ALGORITHMS)})"))
    elif mesh.provider == "linkerd" and pki.key_algorithm != "ecdsa-p256":
        out.append(Problem("meshboot:pki.keyAlgorithm",
                           f"Linkerd requires ecdsa-p256 for its trust anchor and issuers, "
                           f"got {pki.key_algorithm!r}"))
    for key, days in (("rootValidityDays", pki.root_validity_days),
                      ("intermediateValidityDays", pki.intermediate_validity_days)):
        if days <= pki.renew_before_days:
            out.append(Problem(f"meshboot:pki.{key}",
                               f"validity of {days} days is not longer than renewBeforeDays "
                               f"({pki.renew_before_days}): the certificate would be re-issued "
                               "on every run"))
    if pki.intermediate_validity_days > pki.root_validity_days:
        out.append(Problem("meshboot:pki.intermediateValidityDays",
                           "must not exceed rootValidityDays (an intermediate cannot outlive "
                           "its root)"))
    if pki.root_ca is not None:
        out += _check_root_import(pki, base_dir)
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
                                   f"file {str(path)!r} does not exist"))
    return out


def _check_api_server(path: str, value: str) -> list[Problem]:
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        return [Problem(path, f"invalid URL {value!r}: {exc}")]
    if parts.scheme != "https" or not parts.hostname:
        return [Problem(path, f"invalid URL {value!r}: expected https://<host>[:<port>]")]
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return [Problem(path, f"invalid URL {value!r}: expected https://<host>[:<port>] with no "
                              "path, query or credentials")]
    host = parts.hostname
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not is_dns1123_subdomain(host.lower()):
            return [Problem(path, f"invalid URL {value!r}: {host!r} is not a valid host name")]
    if port == 0:
        return [Problem(path, f"invalid URL {value!r}: port 0")]
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
            out.append(Problem(f"{base}.name", f"duplicate cluster name {c.name!r}"))
        api_problems = _check_api_server(f"{base}.apiServer", c.api_server)
        out += api_problems
        if not api_problems and servers[_normal_server(c.api_server)] > 1:
            out.append(Problem(f"{base}.apiServer",
                               f"{c.api_server!r} is used by more than one cluster"))
        if not LABEL_VALUE.match(c.network) or len(c.network) > 63:
            out.append(Problem(f"{base}.network",
                               f"{c.network!r} is not a valid Kubernetes label value"))
        if c.mesh_id is not None:
            out += label_problem(f"{base}.meshId", c.mesh_id, "mesh id")
        if c.zone and not c.region:
            out.append(Problem(f"{base}.zone", "a zone needs a region"))
        if c.role == "remote":
            if not c.primary:
                out.append(Problem(f"{base}.primary", "a remote cluster needs its primary"))
            elif c.primary not in by_name:
                out.append(Problem(f"{base}.primary", f"unknown cluster {c.primary!r}"))
            elif by_name[c.primary].role != "primary":
                out.append(Problem(f"{base}.primary",
                                   f"{c.primary!r} is a remote cluster; a remote must point "
                                   "at a primary"))
            elif (c.mesh_id or mesh_id) != (by_name[c.primary].mesh_id or mesh_id):
                out.append(Problem(f"{base}.meshId",
                                   f"remote {c.name!r} is on mesh id {c.mesh_id or mesh_id!r} "
                                   f"but its primary {c.primary!r} is on mesh id "
                                   f"{by_name[c.primary].mesh_id or mesh_id!r}"))
        elif c.primary:
            out.append(Problem(f"{base}.primary", "only clusters with role remote have a primary"))
        if c.east_west_gateway.address is not None and not c.east_west_gateway.address.strip():
            out.append(Problem(f"{base}.eastWestGateway.address", "must not be empty"))
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
                out.append(Problem(f"{base}.clusters[{j}]", f"unknown cluster {cname!r}"))
        if len(set(s.clusters)) != len(s.clusters):
            out.append(Problem(f"{base}.clusters", "lists a cluster more than once"))
        port_names = Counter(p.name for p in s.ports)
        port_nums = Counter(p.port for p in s.ports)
        for j, p in enumerate(s.ports):
            out += label_problem(f"{base}.ports[{j}].name", p.name, "port name")
            if port_names[p.name] > 1:
                out.append(Problem(f"{base}.ports[{j}].name", f"duplicate port name {p.name!r}"))
            if port_nums[p.port] > 1:
                out.append(Problem(f"{base}.ports[{j}].port", f"duplicate port {p.port}"))
    return out
