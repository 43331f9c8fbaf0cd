"""Istio topology against upstream 1.30.3 (issue 9, Istio items 2, 3, 4, 5, 7).

Each test names the upstream file or doc page whose behaviour it pins. Paths are
in istio/istio at tag 1.30.3 unless they start with ``istio.io:`` (the docs,
repository istio/istio.io, ``content/en/docs/...``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from scripts.cli import cli
from tests.conftest import write_stack
from tests.stacks.istio.helpers import GATEWAYS, routes, service, three_cluster_spec
from tests.stacks.istio.test_render import CHART_VALUES, four_cluster_spec
from tests.support.validation import load_valid_tree, unknown_value_paths

Tree = dict[str, list[dict[str, Any]]]


def run_render(tmp_path: Path, spec: dict[str, Any]) -> tuple[int, str]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = write_stack(tmp_path, spec)
    result = CliRunner().invoke(cli, ["render", "--config", str(config), "--out",
                                      str(tmp_path / "out"), "--pki-dir", str(tmp_path / "pki")],
                                env={})
    return result.exit_code, result.output


def render_tree(tmp_path: Path, spec: dict[str, Any]) -> tuple[Tree, str]:
    code, output = run_render(tmp_path, spec)
    assert code == 0, output
    tree = load_valid_tree(tmp_path / "out")
    for objs in tree.values():
        for obj in objs:
            if obj["kind"] == "HelmRelease":
                chart = obj["spec"]["chart"]["spec"]["chart"]
                assert unknown_value_paths(obj["spec"]["values"], CHART_VALUES[chart]) == []
    return tree, output


@pytest.fixture(scope="module")
def four_clusters(tmp_path_factory: pytest.TempPathFactory) -> tuple[Tree, Path]:
    """four_cluster_spec() rendered once for the tests that only read it: (tree, out)."""
    tmp_path = tmp_path_factory.mktemp("four")
    tree, _ = render_tree(tmp_path, four_cluster_spec())
    return tree, tmp_path / "out"


def releases(tree: Tree, cluster: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o["spec"]["values"] for o in tree[cluster]
            if o["kind"] == "HelmRelease"}


def istio_crs(tree: Tree, cluster: str) -> list[tuple[str, str]]:
    return [(o["kind"], o["metadata"]["name"]) for o in tree[cluster]
            if o["apiVersion"].split("/")[0].endswith(".istio.io")]


def gateway_clusters(tree: Tree) -> set[str]:
    return {c for c in tree if "istio-eastwestgateway" in releases(tree, c)}


# --- item 2: one east-west gateway per network, no Istio CRs in remotes ------------------

def test_remote_on_its_primarys_network_gets_no_gateway_and_no_istio_crs(
        four_clusters: tuple[Tree, Path]) -> None:
    # Upstream: primary-remote_multi-network installs a gateway in the remote only because
    # it is on another network; on the primary's network (istio.io: setup/install/
    # multicluster/primary-remote) the remote has none. Istio CRs in a remote are never
    # read: the remote profile has `configMap: false` and istiod serves it from the
    # primary's config store (manifests/charts/base/files/profile-remote.yaml;
    # istio.io primary-remote_multi-network tip: "exposing services on the primary cluster
    # will expose them on the east-west gateways of both clusters").
    tree, out = four_clusters
    assert gateway_clusters(tree) == {"a", "b", "d"}
    assert istio_crs(tree, "c") == []
    assert not [p for p in (out / "c").glob("*mesh-gateways.yaml")]
    assert ("Gateway", "cross-network-gateway") in istio_crs(tree, "a")


def test_remote_alone_on_its_network_gets_the_gateway(tmp_path: Path) -> None:
    spec = four_cluster_spec()
    spec["clusters"][2]["network"] = "n3"
    tree, _ = render_tree(tmp_path, spec)
    assert releases(tree, "c")["istio-eastwestgateway"]["networkGateway"] == "n3"
    # Its Gateway objects live in the primary, whose selector also picks the remote's pods.
    assert istio_crs(tree, "c") == []
    gw = next(o for o in tree["a"] if o["kind"] == "Gateway"
              and o["metadata"]["name"] == "cross-network-gateway")
    assert gw["spec"]["selector"] == {"istio": "eastwestgateway"}


def test_gateway_flags_per_network(tmp_path: Path) -> None:
    spec = four_cluster_spec()
    spec["clusters"][2]["eastWestGateway"] = {"enabled": True}   # a remote may ask for one
    spec["clusters"][3]["eastWestGateway"] = {"enabled": False}  # n2 keeps b's
    tree, _ = render_tree(tmp_path, spec)
    assert gateway_clusters(tree) == {"a", "b", "c"}
    assert istio_crs(tree, "c") == []
    assert not [k for k in istio_crs(tree, "d") if k[0] == "Gateway"]
    # d's callers still reach other networks: its istiod discovers b's gateway.
    assert "policy" in " ".join(p.name for p in (tmp_path / "out" / "d").glob("*.yaml"))


def test_network_without_gateway_is_an_error(tmp_path: Path) -> None:
    spec = four_cluster_spec()
    spec["clusters"][1]["eastWestGateway"] = {"enabled": False}
    spec["clusters"][3]["eastWestGateway"] = {"enabled": False}
    code, output = run_render(tmp_path, spec)
    assert code == 2, output
    assert "meshboot:clusters[1].eastWestGateway.enabled: network 'n2' has no east-west " \
           "gateway" in output


def test_remote_may_disable_the_gateway_its_network_does_not_need(tmp_path: Path) -> None:
    spec = four_cluster_spec()
    spec["clusters"][2]["eastWestGateway"] = {"enabled": False}
    tree, _ = render_tree(tmp_path, spec)
    assert "c" not in gateway_clusters(tree)


# --- item 3: revisions ------------------------------------------------------------------

def test_revision_reaches_base_validator_and_istiod_exposure(tmp_path: Path) -> None:
    spec = four_cluster_spec()
    spec["mesh"]["revision"] = "1-30-3"
    tree, _ = render_tree(tmp_path, spec)
    # base has no `revision` value; its default validator targets Service
    # `istiod-<defaultRevision>` unless that is "default"
    # (manifests/charts/base/values.yaml, templates/defaultrevision-
    # validatingwebhookconfiguration.yaml). A remote gets Service `istiod-<rev>` from
    # istio-discovery/templates/remote-istiod-service.yaml, so the same value holds there.
    for cluster in tree:
        assert releases(tree, cluster)["istio-base"].get("defaultRevision") == "1-30-3"
        assert "revision" not in releases(tree, cluster)["istio-base"]
    # samples/multicluster/expose-istiod-rev.yaml.tmpl: VS per revision, SNI restricted.
    vs = next(o for o in tree["a"] if o["kind"] == "VirtualService"
              and o["metadata"]["namespace"] == "istio-system")
    assert vs["metadata"]["name"] == "istiod-vs-1-30-3"
    sni = ["istiod-1-30-3.istio-system.svc", "istiod-1-30-3.istio-system.svc.cluster.local"]
    assert [(r["match"][0]["port"], r["match"][0]["sniHosts"], r["route"][0]["destination"])
            for r in vs["spec"]["tls"]] == [
        (15012, sni, {"host": "istiod-1-30-3.istio-system.svc.cluster.local",
                      "port": {"number": 15012}}),
        (15017, sni, {"host": "istiod-1-30-3.istio-system.svc.cluster.local",
                      "port": {"number": 443}})]


def test_without_revision_exposure_is_expose_istiod_yaml(four_clusters: tuple[Tree, Path]) -> None:
    tree, _ = four_clusters
    # samples/multicluster/expose-istiod.yaml
    vs = next(o for o in tree["a"] if o["kind"] == "VirtualService"
              and o["metadata"]["namespace"] == "istio-system")
    assert vs["metadata"]["name"] == "istiod-vs"
    assert all(r["match"][0]["sniHosts"] == ["*"] for r in vs["spec"]["tls"])
    assert "defaultRevision" not in releases(tree, "a")["istio-base"]


# --- item 4: crossCluster serviceEntry is a config-only mesh -----------------------------

DNS_PROXY = {"ISTIO_META_DNS_CAPTURE": "true", "ISTIO_META_DNS_AUTO_ALLOCATE": "true"}


def se_spec(*services: dict[str, Any]) -> dict[str, Any]:
    return three_cluster_spec(list(services), traffic={"crossCluster": "serviceEntry"})


def test_service_entry_mode_resolves_and_is_not_shadowed(tmp_path: Path) -> None:
    # ratings runs only in west; east (and its remote central) call it.
    tree, output = render_tree(tmp_path, se_spec(service("ratings", ["west"]),
                                                 service("cart", ["east", "central"])))
    # istio.io: ops/configuration/traffic-management/dns-proxy: a ServiceEntry host resolves
    # only with ISTIO_META_DNS_CAPTURE; ISTIO_META_DNS_AUTO_ALLOCATE gives it a VIP
    # (pilot/pkg/serviceregistry/serviceentry/auto_allocation.go). Remotes get their proxy
    # config from the primary (profile-remote.yaml: configMap false), so primaries only.
    for primary in ("east", "west"):
        proxy = releases(tree, primary)["istiod"]["meshConfig"]["defaultConfig"]["proxyMetadata"]
        assert proxy == DNS_PROXY
    assert "defaultConfig" not in releases(tree, "central")["istiod"].get("meshConfig", {})
    # pilot/pkg/model/push_context.go (initServiceRegistry): for one host and namespace a
    # Kubernetes Service wins over a ServiceEntry. So no primary may discover the real
    # Service of a host it has a ServiceEntry for: remote secrets only for its own remotes.
    assert "east: Secret istio-system/istio-remote-secret-central" in output
    assert "east: Secret istio-system/istio-remote-secret-west" not in output
    assert "west: Secret istio-system/istio-remote-secret" not in output
    (se,) = [o for o in tree["east"] if o["kind"] == "ServiceEntry"]
    assert se["spec"]["hosts"] == ["ratings.shop.svc.cluster.local"]
    for cluster in ("east", "central"):
        assert not [o for o in tree[cluster] if o["kind"] == "Service"
                    and o["metadata"]["name"] == "ratings"]
    # `meshboot routes` from the remote: the name resolves through the DNS proxy of its
    # config cluster, to the ServiceEntry whose endpoint is west's east-west gateway.
    result = routes(tmp_path / "out" / "central", "ratings.shop")
    assert result["configCluster"] == "east"
    assert result["reachability"]["via"] == ["ServiceEntry shop/ratings-crosscluster"]
    assert result["reachability"]["resolves"] == "istio DNS proxy (ISTIO_META_DNS_CAPTURE)"
    assert [e["address"] for e in result["reachability"]["endpoints"]] == [GATEWAYS["west"]]
    # cart runs in east's store: no ServiceEntry, no stub; west reaches it through an entry.
    assert [o["metadata"]["name"] for o in tree["west"] if o["kind"] == "ServiceEntry"] == \
        ["cart-crosscluster"]


def test_service_entry_mode_under_pulumi() -> None:
    # The same plan through the Pulumi adapter: remote secrets (which render only lists)
    # exist for a primary's own remotes only, and the istiod values carry the DNS proxy.
    from tests.support.pulumi_harness import SECRET, run_program, unwrap_secrets, with_fake_kubeconfigs

    spec = se_spec(service("ratings", ["west"]))
    for c in spec["clusters"]:
        c["eastWestGateway"].pop("address")
    run = run_program(with_fake_kubeconfigs(spec))
    pairs = {(r.name.split("-", 1)[0], r.name.rsplit("istio-remote-secret-", 1)[1])
             for r in run.of_type(SECRET) if not r.read and "istio-remote-secret-" in r.name}
    assert pairs == {("east", "central")}
    for primary in ("east", "west"):
        values = unwrap_secrets(run.named(f"{primary}-istiod").inputs["values"])
        assert values["meshConfig"]["defaultConfig"]["proxyMetadata"] == DNS_PROXY
    # central shares east's network gateway: no gateway release, no Istio CRs there.
    names = {r.name for r in run.resources if r.name.startswith("central-")}
    assert "central-eastwest-gateway" not in names and "central-mesh-gateways" not in names


def test_discovery_mode_keeps_remote_secrets_and_stubs(tmp_path: Path) -> None:
    tree, output = render_tree(tmp_path, three_cluster_spec([service("ratings", ["west"])]))
    assert "east: Secret istio-system/istio-remote-secret-west" in output
    assert "proxyMetadata" not in str(releases(tree, "east")["istiod"])
    result = routes(tmp_path / "out" / "central", "ratings.shop")
    assert result["reachability"]["resolves"] == "kube-dns (Service shop/ratings)"


def test_routes_says_when_a_name_does_not_resolve(tmp_path: Path) -> None:
    from stacks.istio.routes import _reachability

    se = {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
          "metadata": {"name": "x-crosscluster", "namespace": "shop"},
          "spec": {"hosts": ["x.shop.svc.cluster.local"], "endpoints": [{"address": "192.0.2.1"}]}}
    assert _reachability([se], [], "x.shop.svc.cluster.local")["resolves"] is None


def test_service_entry_mode_rejects_shares_across_config_stores(tmp_path: Path) -> None:
    spec = se_spec(service("reviews", ["east", "west"], routing={"localShare": 80}))
    code, output = run_render(tmp_path, spec)
    assert code == 2, output
    assert "meshboot:services[0].routing: " in output and "config store" in output


# --- item 5: one mesh ID -----------------------------------------------------------------

def test_a_cluster_mesh_id_must_be_the_mesh_id(tmp_path: Path) -> None:
    # istio-discovery/values.yaml (global.meshID): "Within a multicluster mesh, each cluster
    # must be (manually or auto) configured to have the same Mesh ID value."
    spec = four_cluster_spec()
    spec["clusters"][1]["meshId"] = "mesh2"
    code, output = run_render(tmp_path, spec)
    assert code == 2, output
    assert "meshboot:clusters[1].meshId: 'mesh2' differs from meshboot:mesh.id 'mesh1'" in output
    spec["clusters"][1]["meshId"] = "mesh1"
    tree, _ = render_tree(tmp_path / "same", spec)
    assert releases(tree, "b")["istiod"]["global"]["meshID"] == "mesh1"


# --- item 7: smaller points --------------------------------------------------------------

def test_eastwest_values_are_the_docs_helm_command(four_clusters: tuple[Tree, Path]) -> None:
    # gateway/templates/_helpers.tpl derives `istio: eastwestgateway` from the name;
    # deployment.yaml and service.yaml add topology.istio.io/network from networkGateway.
    tree, _ = four_clusters
    for cluster in gateway_clusters(tree):
        values = releases(tree, cluster)["istio-eastwestgateway"]
        assert set(values) == {"name", "networkGateway"}


def test_remotes_get_no_cacerts(four_clusters: tuple[Tree, Path]) -> None:
    # A remote runs no istiod; its workloads get certificates from the primary's istiod
    # through the east-west gateway (15012), signed by the primary's intermediate.
    _, out = four_clusters
    assert (out / "a" / "secrets" / "istio-system.cacerts.yaml").exists()
    assert not (out / "c" / "secrets" / "istio-system.cacerts.yaml").exists()


def test_hostname_remote_pilot_address_is_rejected_unless_allowed(tmp_path: Path) -> None:
    # istio.io setup/install/multicluster/primary-remote: "not suitable for AWS EKS primary
    # cluster deployment" (FQDN load balancers); remote-istiod-service.yaml renders an
    # ExternalName Service and remote-istiod-endpointslices.yaml no EndpointSlice for it.
    spec = four_cluster_spec()
    spec["clusters"][0]["eastWestGateway"] = {"address": "gw.example.com"}
    code, output = run_render(tmp_path, spec)
    assert code == 2, output
    assert "meshboot:clusters[0].eastWestGateway.address: 'gw.example.com' is a host name" \
        in output
    spec["clusters"][0]["eastWestGateway"]["allowHostname"] = True
    tree, _ = render_tree(tmp_path / "allowed", spec)
    assert releases(tree, "c")["istiod"]["global"]["remotePilotAddress"] == "gw.example.com"


def test_hostname_is_fine_where_no_remote_uses_it(tmp_path: Path) -> None:
    spec = four_cluster_spec()
    spec["clusters"][1]["eastWestGateway"] = {"address": "gw-b.example.com"}
    code, output = run_render(tmp_path, spec)
    assert code == 0, output


def test_pulumi_rejects_a_hostname_load_balancer_for_remote_pilot_address() -> None:
    from stacks.pulumi_program import ProgramError, _pilot_address

    path = "meshboot:clusters[0].eastWestGateway.address"
    assert _pilot_address("a", path, "192.0.2.1") == "192.0.2.1"
    assert _pilot_address("a", path, "2001:db8::1") == "2001:db8::1"
    with pytest.raises(ProgramError, match=r"clusters\[0\]\.eastWestGateway\.allowHostname"):
        _pilot_address("a", path, "lb.example.com")
