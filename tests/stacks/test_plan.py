"""The plan itself: what build_plan adds for the adapters, the PkiRef mapping, its invariants."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clusters.errors import SpecError
from clusters.kubeconfig import KubeconfigLocation
from clusters.loader import spec_from_config
from pki.ca import CA
from stacks.build import build_plan
from stacks.istio.plan import build_istio_plan
from stacks.plan import ClusterPlan, HelmRelease, PkiRef, PlanIncomplete, Step, pki_pem
from tests.conftest import base_spec


@pytest.fixture(scope="module")
def istio_root() -> CA:
    return CA.create_root(profile="istio", key_algorithm="ecdsa-p256", validity_days=3650)


def spec_of(spec_dict: dict[str, Any], base_dir: Path | None = None) -> Any:
    return spec_from_config({f"meshboot:{k}": v for k, v in spec_dict.items()}, "t",
                            base_dir=base_dir)


def release(values: dict[str, Any]) -> HelmRelease:
    return HelmRelease(release_name="r", namespace="ns", chart="c", repo_name="repo",
                       repo_url="https://example.com/charts", version="1.0.0", values=values)


# ------------------------------------------------------------- invariants at build time
def test_private_key_in_helm_values_is_refused_when_the_step_is_added() -> None:
    cp = ClusterPlan("east")
    cp.add(Step("namespaces"))
    nested = {"global": {"certs": [{"pem": PkiRef("ca-cert", "east")},
                                   {"key": PkiRef("ca-key", "east")}]}}
    with pytest.raises(ValueError, match=r"east/istiod: refusing a private key \(ca-key of east\) "
                                         r"in Helm values"):
        cp.add(Step("istiod", after=("namespaces",), release=release(nested)))
    assert [s.name for s in cp.steps] == ["namespaces"]


def test_certificates_in_helm_values_and_keys_in_secrets_are_fine() -> None:
    cp = ClusterPlan("east")
    cp.add(Step("istiod", release=release({"anchors": PkiRef("root-cert"),
                                           "ca": PkiRef("cert-chain", "east")})))
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "k", "namespace": "n"},
              "stringData": {"key": PkiRef("ca-key", "east")}}
    cp.add(Step("cacerts", objects=(secret,)))
    assert [s.name for s in cp.steps] == ["istiod", "cacerts"]


# ------------------------------------------------------------------ the PkiRef mapping
def test_pki_pem_maps_every_item(istio_root: CA) -> None:
    inter = istio_root.issue_intermediate(profile="istio", cluster="east",
                                          key_algorithm="ecdsa-p256", validity_days=30)
    cas = {"east": inter}
    assert pki_pem(PkiRef("root-cert"), istio_root.cert_pem, cas) == istio_root.cert_pem
    assert pki_pem(PkiRef("ca-cert", "east"), istio_root.cert_pem, cas) == inter.cert_pem
    assert pki_pem(PkiRef("ca-key", "east"), istio_root.cert_pem, cas) == inter.key_pem
    chain = pki_pem(PkiRef("cert-chain", "east"), istio_root.cert_pem, cas)
    assert chain == inter.cert_pem + istio_root.cert_pem
    with pytest.raises(ValueError, match="names no cluster"):
        pki_pem(PkiRef("ca-cert"), istio_root.cert_pem, cas)


# --------------------------------------------------------- what build_plan adds
def test_build_plan_adds_pki_params_with_the_imported_root_read(tmp_path: Path,
                                                               istio_root: CA) -> None:
    (tmp_path / "root.pem").write_text(istio_root.cert_pem)
    (tmp_path / "root-key.pem").write_text(istio_root.key_pem)
    d = base_spec()
    d["pki"]["rootCa"] = {"certFile": "root.pem", "keyFile": "root-key.pem"}
    plan = build_plan(spec_of(d, tmp_path), "t", base_dir=tmp_path)
    assert plan.pki.imported_root == (istio_root.cert_pem, istio_root.key_pem)
    assert plan.pki.clusters == ("east", "west")
    assert (plan.pki.profile, plan.pki.mesh_id) == ("istio", "mesh1")


def test_unreadable_root_file_is_a_spec_error(tmp_path: Path) -> None:
    (tmp_path / "root.pem").write_bytes(b"\xff\xfe not text")   # passes the spec's existence check
    (tmp_path / "root-key.pem").write_text("x")
    d = base_spec()
    d["pki"]["rootCa"] = {"certFile": "root.pem", "keyFile": "root-key.pem"}
    spec = spec_of(d, tmp_path)
    with pytest.raises(SpecError) as err:
        build_plan(spec, "t", base_dir=tmp_path)
    assert "meshboot:pki.rootCa: a root CA file is not PEM text" in err.value.text()


def test_build_plan_adds_connections_without_reading_kubeconfigs(tmp_path: Path) -> None:
    d = base_spec()
    d["clusters"][0].update({"kubeconfig": "kube/east.yaml", "context": "east-ctx"})
    d["clusters"][1]["kubeconfig"] = "apiVersion: v1\nkind: Config\n"
    plan = build_plan(spec_of(d), "t", base_dir=tmp_path)   # no file there: nothing is read
    east, west = plan.cluster("east").connection, plan.cluster("west").connection
    assert (east.api_server, east.context) == ("https://10.0.0.1:6443", "east-ctx")
    assert east.kubeconfig == KubeconfigLocation("east", 0, path=tmp_path / "kube" / "east.yaml")
    assert (west.context, west.kubeconfig.inline) == (None, "apiVersion: v1\nkind: Config\n")
    assert "apiVersion" not in repr(west)   # a (secure) inline kubeconfig stays out of reprs


def test_a_plan_not_from_build_plan_says_so() -> None:
    plan = build_istio_plan(spec_of(base_spec()))
    with pytest.raises(PlanIncomplete, match="build_plan"):
        plan.pki  # noqa: B018
    with pytest.raises(PlanIncomplete, match="east"):
        plan.cluster("east").connection  # noqa: B018
