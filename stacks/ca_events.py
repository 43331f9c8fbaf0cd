"""What a change of renders does to the mesh's CA: root kept, bundle changed, intermediates re-issued.

Read from the objects that carry the PKI into the clusters, as the meshes read
them:

- Istio: the ``cacerts`` Secret, ``root-cert.pem`` (the trust bundle: istiod
  distributes every certificate in it) and ``ca-cert.pem`` (the cluster's
  intermediate), as istio.io "Plug in CA Certificates" describes;
- Linkerd: the ``linkerd-identity-issuer`` Secret (``tls.crt`` the issuer,
  ``ca.crt`` the anchors), the ``linkerd-identity-trust-roots`` ConfigMap
  (``ca-bundle.crt``, what the control plane chart's ``externalCA`` mode reads)
  and the HelmRelease value ``identityTrustAnchorsPEM`` (linkerd2
  ``charts/linkerd-control-plane/values.yaml``).

A root is a self-signed CA certificate in a bundle; a bundle with two roots
is a root rotation in progress, reported as bundle changes rather than as a
new root. Without the Secrets (``--secrets-out``) an Istio tree has no
certificates at all: the marker's root fingerprint stands in for the root
and intermediates cannot be compared.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from stacks.render_tree import ObjectKey, RenderTree

_PEM = re.compile(r"-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----")

ISTIO_SECRET = "cacerts"
LINKERD_SECRET = "linkerd-identity-issuer"
LINKERD_ROOTS = "linkerd-identity-trust-roots"


@dataclass(frozen=True)
class Cert:
    fingerprint: str
    not_after: str

    @property
    def short(self) -> str:
        return self.fingerprint[:16]


@dataclass(frozen=True)
class ClusterCa:
    """The CA material one cluster receives; ``None`` where the tree does not show it."""

    roots: frozenset[str] | None
    intermediate: Cert | None
    what: str  # how the mesh names the intermediate: "intermediate" (Istio) / "issuer" (Linkerd)


@dataclass(frozen=True)
class CaEvent:
    text: str
    change: bool
    cluster: str | None = None


def cluster_ca(objects: dict[ObjectKey, dict[str, Any]]) -> ClusterCa:
    roots: set[str] = set()
    seen_bundle = False
    intermediate: Cert | None = None
    what = "intermediate"
    for key, obj in sorted(objects.items()):
        if key.kind == "Secret" and key.name == ISTIO_SECRET:
            values = secret_values(obj)
            if "root-cert.pem" in values:
                seen_bundle = True
                roots |= _roots(values["root-cert.pem"])
            intermediate = _first(values.get("ca-cert.pem", b"")) or intermediate
        elif key.kind == "Secret" and key.name == LINKERD_SECRET:
            what = "issuer"
            values = secret_values(obj)
            if "ca.crt" in values:
                seen_bundle = True
                roots |= _roots(values["ca.crt"])
            intermediate = _first(values.get("tls.crt", b"")) or intermediate
        elif key.kind == "ConfigMap" and key.name == LINKERD_ROOTS:
            what = "issuer"
            bundle = (obj.get("data") or {}).get("ca-bundle.crt")
            if isinstance(bundle, str):
                seen_bundle = True
                roots |= _roots(bundle.encode())
        elif key.kind == "HelmRelease":
            values = (obj.get("spec") or {}).get("values") or {}
            anchors = values.get("identityTrustAnchorsPEM") if isinstance(values, dict) else None
            if isinstance(anchors, str):
                what = "issuer"
                seen_bundle = True
                roots |= _roots(anchors.encode())
    return ClusterCa(frozenset(roots) if seen_bundle else None, intermediate, what)


def secret_values(obj: dict[str, Any]) -> dict[str, bytes]:
    """A Secret's keys and bytes as the API server stores them (``stringData`` wins over ``data``)."""
    out: dict[str, bytes] = {}
    data = obj.get("data")
    if isinstance(data, dict):
        for k, v in data.items():
            raw = str(v).encode()
            try:
                out[str(k)] = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError):
                out[str(k)] = raw  # not base64: the API server would refuse it; hash it as written
    string_data = obj.get("stringData")
    if isinstance(string_data, dict):
        for k, v in string_data.items():
            out[str(k)] = ("" if v is None else str(v)).encode()
    return out


def _certs(pem: bytes) -> list[x509.Certificate]:
    out = []
    for match in _PEM.finditer(pem.decode(errors="replace")):
        block = "\n".join(line.strip() for line in match.group(0).splitlines()) + "\n"
        try:
            out.append(x509.load_pem_x509_certificate(block.encode()))
        except ValueError:
            continue
    return out


def _is_root(cert: x509.Certificate) -> bool:
    try:
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return basic.ca and cert.issuer == cert.subject


def _roots(pem: bytes) -> set[str]:
    return {c.fingerprint(hashes.SHA256()).hex() for c in _certs(pem) if _is_root(c)}


def _first(pem: bytes) -> Cert | None:
    certs = _certs(pem)
    if not certs:
        return None
    cert = certs[0]
    return Cert(cert.fingerprint(hashes.SHA256()).hex(),
                cert.not_valid_after_utc.strftime("%Y-%m-%d"))


def _bundle(cas: dict[str, ClusterCa]) -> frozenset[str] | None:
    bundles = [ca.roots for ca in cas.values() if ca.roots is not None]
    return frozenset().union(*bundles) if bundles else None


def _marker_root(tree: RenderTree) -> frozenset[str] | None:
    fp = tree.root_fingerprint
    return frozenset({fp}) if fp else None


def ca_events(old: RenderTree, new: RenderTree) -> list[CaEvent]:
    """Root (mesh-wide) first, then each cluster's intermediate, in cluster order."""
    old_ca = {c: cluster_ca(objs) for c, objs in old.clusters.items()}
    new_ca = {c: cluster_ca(objs) for c, objs in new.clusters.items()}
    old_roots, new_roots = _bundle(old_ca), _bundle(new_ca)
    if old_roots is None or new_roots is None:
        # One side shows no certificates (an Istio render without its Secrets): compare
        # like with like, the root each marker records.
        old_roots, new_roots = _marker_root(old), _marker_root(new)
    events = _root_events(old_roots, new_roots)
    if not (old.has_secrets and new.has_secrets):
        which = " and ".join(t for t, tree in (("old", old), ("new", new)) if not tree.has_secrets)
        events.append(CaEvent(f"intermediates not compared: no Secrets in the {which} render",
                              change=False))
        return events
    unchanged: list[str] = []
    what = "intermediate"
    for cluster in cluster_order(old, new):
        before, after = old_ca.get(cluster), new_ca.get(cluster)
        a = before.intermediate if before else None
        b = after.intermediate if after else None
        known = after or before
        what = known.what if known is not None else what
        if a and b and a.fingerprint == b.fingerprint:
            unchanged.append(cluster)
        elif a and b:
            events.append(CaEvent(f"{what} of {cluster} re-issued: SHA-256 {a.short}… -> "
                                  f"{b.short}… (valid until {b.not_after})", True, cluster))
        elif b and not a:
            events.append(CaEvent(f"{what} of {cluster} new: SHA-256 {b.short}… "
                                  f"(valid until {b.not_after})", True, cluster))
        elif a and not b:
            events.append(CaEvent(f"{what} of {cluster} removed (was SHA-256 {a.short}…)",
                                  True, cluster))
    if unchanged:
        events.append(CaEvent(f"{what}s unchanged: {', '.join(unchanged)}", change=False))
    return events


def _root_events(old: frozenset[str] | None, new: frozenset[str] | None) -> list[CaEvent]:
    if old is None or new is None:
        side = "old" if old is None else "new"
        return [CaEvent(f"root not compared: the {side} render shows no root certificate",
                        change=False)]
    if old == new:
        label = "root" if len(new) == 1 else "root bundle"
        return [CaEvent(f"{label} unchanged: SHA-256 {', '.join(sorted(new))}", change=False)]
    if not old & new:
        return [CaEvent(f"NEW ROOT: SHA-256 {', '.join(sorted(new))} replaces "
                        f"{', '.join(sorted(old))}: clusters that only trust the old root stop "
                        "trusting workloads certified by the new one", change=True)]
    events = [CaEvent(f"root bundle: + new root SHA-256 {fp}", True) for fp in sorted(new - old)]
    events += [CaEvent(f"root bundle: - root SHA-256 {fp} removed", True)
               for fp in sorted(old - new)]
    return events


def cluster_order(old: RenderTree, new: RenderTree) -> list[str]:
    """Every cluster of either render, by name (the marker lists files sorted too)."""
    return sorted(set(old.clusters) | set(new.clusters))
