"""Pieces every stack shares: PKI inputs from the spec, namespaces, topology."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from clusters.spec import ClusterSpec, ServiceSpec, Spec
from pki.hierarchy import PkiParams
from pki.keys import KeyAlgorithm
from pki.rotation import Phase, RootRotation, Rotation, phase_from_name


def pki_params(spec: Spec, base_dir: Path | None = None) -> PkiParams:
    """The PKI inputs of an environment (root import read from files if given)."""
    imported = None
    rc = spec.pki.root_ca
    if rc is not None:
        cert = rc.cert_pem or _read(rc.cert_file, base_dir)
        key = rc.key_pem or _read(rc.key_file, base_dir)
        imported = (cert, key)
    return PkiParams(
        profile=spec.mesh.provider,
        mesh_id=spec.mesh.id,
        trust_domain=spec.mesh.trust_domain,
        key_algorithm=KeyAlgorithm(spec.pki.key_algorithm),
        root_validity_days=spec.pki.root_validity_days,
        intermediate_validity_days=spec.pki.intermediate_validity_days,
        renew_before_days=spec.pki.renew_before(spec.mesh.provider),
        clusters=tuple(spec.cluster_names),
        imported_root=imported,
        rotation=root_rotation(spec),
    )


def _time(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def rotation_state(spec: Spec) -> Rotation | None:
    """``meshboot:pki.rotation`` as :class:`pki.rotation.Rotation` (None: no rotation)."""
    rot = spec.pki.rotation
    if rot is None:
        return None
    return Rotation(phase=phase_from_name(rot.phase), ahead=frozenset(rot.clusters),
                    since=_time(rot.since), signing_since=_time(rot.signing_since),
                    aborted_at=_time(rot.aborted_at))


def root_rotation(spec: Spec) -> RootRotation | None:
    """What the PKI needs of the rotation: the new root and every cluster's phase."""
    rot = spec.pki.rotation
    state = rotation_state(spec)
    if rot is None or state is None or rot.new_root is None:
        return None
    phases: tuple[tuple[str, Phase], ...] = tuple(
        (c, state.phase_of(c)) for c in spec.cluster_names)
    return RootRotation(new_root=(rot.new_root.cert_pem or "", rot.new_root.key_pem or ""),
                        phases=phases)


def _read(path: str | None, base_dir: Path | None) -> str:
    assert path is not None
    p = Path(path)
    if base_dir is not None and not p.is_absolute():
        p = base_dir / p
    return p.read_text()


def namespace(name: str, labels: dict[str, str] | None = None,
              annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = dict(sorted(labels.items()))
    if annotations:
        meta["annotations"] = dict(sorted(annotations.items()))
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def cluster_index(spec: Spec, name: str) -> int:
    return spec.cluster_names.index(name)


def networks(spec: Spec) -> list[str]:
    return sorted({c.network for c in spec.clusters})


def is_multi_network(spec: Spec) -> bool:
    return len(networks(spec)) > 1


def remotes_of(spec: Spec, primary: str) -> list[ClusterSpec]:
    return [c for c in spec.clusters if c.is_remote and c.primary == primary]


def locality(cluster: ClusterSpec) -> str | None:
    if not cluster.region:
        return None
    return "/".join(p for p in (cluster.region, cluster.zone) if p)


def service_namespaces(spec: Spec) -> list[str]:
    return sorted({s.namespace for s in spec.services})


# Namespaces Kubernetes creates itself: never (re)created by meshboot.
BUILTIN_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})


def service_account_token_secret(name: str, namespace: str, service_account: str,
                                 labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A ``kubernetes.io/service-account-token`` Secret the token controller fills.

    ``pulumi.com/waitFor`` makes ``pulumi up`` wait until ``data.token`` is
    there before anything reads it (kubectl and Flux ignore the annotation).
    """
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "annotations": {"kubernetes.io/service-account.name": service_account,
                        "pulumi.com/waitFor": "jsonpath={.data.token}"},
    }
    if labels:
        meta["labels"] = dict(labels)
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
            "metadata": meta}


def service_ports(svc: ServiceSpec, app_protocols: dict[str, str],
                  explicit_target: bool = False) -> list[dict[str, Any]]:
    """A Service's ports from the spec; ``appProtocol`` named the way the mesh reads it."""
    ports = []
    for p in svc.ports:
        port: dict[str, Any] = {"name": p.name, "port": p.port, "protocol": "TCP"}
        if p.target_port is not None or explicit_target:
            port["targetPort"] = p.target_port or p.port
        if p.protocol in app_protocols:
            port["appProtocol"] = app_protocols[p.protocol]
        ports.append(port)
    return ports
