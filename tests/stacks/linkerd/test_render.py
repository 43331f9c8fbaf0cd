"""`meshboot render` for Linkerd: strict validity, structure from the spec, secrets, PKI.

Expected values come from the spec each test writes (names, addresses,
networks, trust domain), not from the plan code.
"""

from __future__ import annotations

import filecmp
import itertools
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from pki.checks import linkerd_identity_checks
from scripts.cli import cli
from tests.conftest import write_stack
from tests.stacks.linkerd.specs import flat_clusters, three_clusters, two_clusters
from tests.support.validation import chart_defaults, load_tree, unknown_value_paths, validate_object

CHART_VALUES = {"linkerd-crds": "linkerd-crds-edge-26.8.3.values.yaml",
                "linkerd-control-plane": "linkerd-control-plane-edge-26.8.3.values.yaml",
                "linkerd-multicluster": "linkerd-multicluster-edge-26.8.3.values.yaml"}
SPECS = {"2": two_clusters, "3": three_clusters, "flat": flat_clusters}


def render(config: Path, out: Path, pki: Path) -> str:
    result = CliRunner().invoke(cli, ["render", "--config", str(config), "--out", str(out),
                                      "--pki-dir", str(pki)], env={})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module", params=sorted(SPECS))
def rendered(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[dict[str, Any], Path, str]:
    """One render per environment, shared by the tests below (they only read it)."""
    tmp_path = tmp_path_factory.mktemp(f"linkerd-{request.param}")
    spec = SPECS[request.param]()
    config = write_stack(tmp_path, spec)
    out = tmp_path / "out"
    output = render(config, out, tmp_path / "pki")
    return spec, out, output


def find(objs: list[dict[str, Any]], kind: str, name: str, ns: str | None = None
         ) -> dict[str, Any]:
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name
             and (ns is None or o["metadata"].get("namespace") == ns)]
    assert len(found) == 1, f"{kind} {ns}/{name}: {len(found)} found"
    return found[0]


def release(objs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return find(objs, "HelmRelease", name)


def net(spec: dict[str, Any], cluster: str) -> str:
    return next(c["network"] for c in spec["clusters"] if c["name"] == cluster)


def address(spec: dict[str, Any], cluster: str) -> str | None:
    c = next(c for c in spec["clusters"] if c["name"] == cluster)
    return c.get("eastWestGateway", {}).get("address")


def names(spec: dict[str, Any]) -> list[str]:
    return [c["name"] for c in spec["clusters"]]


def test_every_object_is_strictly_valid(rendered: tuple[dict[str, Any], Path, str]) -> None:
    spec, out, _ = rendered
    tree = load_tree(out)
    assert sorted(tree) == sorted(names(spec))
    kinds = set()
    for objs in tree.values():
        for obj in objs:
            validate_object(obj)
            kinds.add(obj["kind"])
            if obj["kind"] == "HelmRelease":
                chart = obj["spec"]["chart"]["spec"]["chart"]
                assert unknown_value_paths(obj["spec"]["values"], CHART_VALUES[chart]) == []
    assert {"Namespace", "Secret", "ConfigMap", "HelmRelease", "HelmRepository", "Link",
            "Service"} <= kinds


def test_validator_catches_a_bad_link() -> None:
    link = {"apiVersion": "multicluster.linkerd.io/v1alpha3", "kind": "Link",
            "metadata": {"name": "x", "namespace": "linkerd-multicluster"},
            "spec": {"targetClusterName": "x", "gatewayPort": 4143}}
    with pytest.raises(AssertionError):
        validate_object(link)  # gatewayPort is a string in the CRD


def test_controllers_entries_use_known_keys(rendered: tuple[dict[str, Any], Path, str]) -> None:
    """``controllers`` is a list (the key checker stops there): check entries by hand."""
    spec, out, _ = rendered
    defaults = chart_defaults(CHART_VALUES["linkerd-multicluster"])["controllerDefaults"]
    for _cluster, objs in load_tree(out).items():
        controllers = release(objs, "linkerd-multicluster")["spec"]["values"]["controllers"]
        for entry in controllers:
            assert set(entry) <= {"link", *defaults}
            assert set(entry["link"]) == {"ref"}
            for key, value in entry.get("gateway", {}).items():
                assert key in defaults["gateway"]
                assert isinstance(value, type(defaults["gateway"][key]))


def test_charts_pinned_and_ordered(rendered: tuple[dict[str, Any], Path, str]) -> None:
    spec, out, _ = rendered
    for cluster, objs in load_tree(out).items():
        repos = [o for o in objs if o["kind"] == "HelmRepository"]
        assert {r["spec"]["url"] for r in repos} == {"https://helm.linkerd.io/edge"}
        for name in CHART_VALUES:
            chart = release(objs, name)["spec"]["chart"]["spec"]
            assert (chart["chart"], chart["version"]) == (name, "2026.8.3")
        deps = {name: [d["name"] for d in release(objs, name)["spec"].get("dependsOn", [])]
                for name in CHART_VALUES}
        assert deps["linkerd-crds"] == []
        assert deps["linkerd-control-plane"] == ["linkerd-crds"]
        assert deps["linkerd-multicluster"] == ["linkerd-control-plane"]
        files = sorted(p.name for p in (out / cluster).glob("*.yaml"))
        order = [next(i for i, f in enumerate(files) if f.endswith(f"-{step}.yaml"))
                 for step in ("namespaces", "identity-issuer", "linkerd-crds",
                              "linkerd-control-plane", "linkerd-multicluster", "links")]
        assert order == sorted(order)


def test_control_plane_uses_external_issuer(rendered: tuple[dict[str, Any], Path, str]) -> None:
    spec, out, _ = rendered
    trust_domain = spec["mesh"]["trustDomain"]
    anchors = set()
    for _cluster, objs in load_tree(out).items():
        values = release(objs, "linkerd-control-plane")["spec"]["values"]
        assert values["identity"] == {"externalCA": True,
                                      "issuer": {"scheme": "kubernetes.io/tls"}}
        assert values["identityTrustDomain"] == trust_domain
        roots = find(objs, "ConfigMap", "linkerd-identity-trust-roots", "linkerd")
        assert values["identityTrustAnchorsPEM"] == roots["data"]["ca-bundle.crt"]
        anchors.add(values["identityTrustAnchorsPEM"])
        issuer = find(objs, "Secret", "linkerd-identity-issuer", "linkerd")
        assert issuer["type"] == "kubernetes.io/tls"
        assert sorted(issuer["stringData"]) == ["ca.crt", "tls.crt", "tls.key"]
        assert issuer["stringData"]["ca.crt"] == values["identityTrustAnchorsPEM"]
        mc = release(objs, "linkerd-multicluster")["spec"]["values"]
        assert mc["identityTrustDomain"] == trust_domain
    assert len(anchors) == 1  # one shared trust anchor


def test_no_private_key_outside_secret_files(rendered: tuple[dict[str, Any], Path, str]) -> None:
    _, out, _ = rendered
    for path in out.rglob("*.yaml"):
        text = path.read_text()
        if path.parent.name == "secrets":
            continue
        assert "PRIVATE KEY" not in text, path
        for doc in yaml.safe_load_all(text):
            if doc and doc["kind"] == "HelmRelease":
                assert "tls.key" not in yaml.safe_dump(doc["spec"]["values"])
                assert "keyPEM" not in yaml.safe_dump(doc["spec"]["values"])


def test_links_for_every_ordered_pair(rendered: tuple[dict[str, Any], Path, str]) -> None:
    spec, out, output = rendered
    tree = load_tree(out)
    trust_domain = spec["mesh"]["trustDomain"]
    for a, b in itertools.permutations(names(spec), 2):
        link = find(tree[a], "Link", b, "linkerd-multicluster")["spec"]
        assert link["targetClusterName"] == b
        assert link["targetClusterDomain"] == "cluster.local"
        assert link["targetClusterLinkerdNamespace"] == "linkerd"
        assert link["clusterCredentialsSecret"] == f"cluster-credentials-{b}"
        controllers = release(tree[a], "linkerd-multicluster")["spec"]["values"]["controllers"]
        entry = next(e for e in controllers if e["link"]["ref"]["name"] == b)
        if net(spec, a) == net(spec, b):
            assert "gatewayAddress" not in link
            assert entry.get("gateway") == {"enabled": False}
            assert link["remoteDiscoverySelector"]["matchExpressions"][0]["values"] == [
                "true", "remote-discovery"]
            assert link["federatedServiceSelector"] == {
                "matchLabels": {"mirror.linkerd.io/federated": "member"}}
        else:
            assert link["gatewayAddress"] == address(spec, b)
            assert link["gatewayPort"] == "4143"
            assert link["gatewayIdentity"] == (
                "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd."
                + trust_domain)
            assert link["probeSpec"]["port"] == "4191"
            assert link["selector"] == {"matchLabels": {"mirror.linkerd.io/exported": "true"}}
            assert "gateway" not in entry
            # federated members are joined pod-to-pod only (see test_upstream_fixes)
            assert "federatedServiceSelector" not in link
        for ns in ("linkerd-multicluster", "linkerd"):
            assert f"{a}: Secret {ns}/cluster-credentials-{b}" in output
    for a in names(spec):
        links = [o for o in tree[a] if o["kind"] == "Link"]
        assert len(links) == len(spec["clusters"]) - 1
        controllers = release(tree[a], "linkerd-multicluster")["spec"]["values"]["controllers"]
        assert len(controllers) == len(links)
        reached_via_gateway = any(net(spec, x) != net(spec, a) for x in names(spec))
        gateway = release(tree[a], "linkerd-multicluster")["spec"]["values"]["gateway"]
        assert gateway["enabled"] is reached_via_gateway


def test_credentials_never_written(rendered: tuple[dict[str, Any], Path, str]) -> None:
    spec, out, output = rendered
    assert "created by `pulumi up` only" in output
    assert not list(out.rglob("*cluster-credentials*"))
    for objs in load_tree(out).values():
        assert not [o for o in objs if o.get("type") == "mirror.linkerd.io/remote-kubeconfig"]
        # The token Secret the other clusters read: the chart's account, filled by Kubernetes.
        tokens = [o for o in objs if o.get("type") == "kubernetes.io/service-account-token"]
        assert len(tokens) == 1
        assert tokens[0]["metadata"]["namespace"] == "linkerd-multicluster"
        assert tokens[0]["metadata"]["annotations"]["kubernetes.io/service-account.name"] == \
            "linkerd-service-mirror-remote-access-default"
        assert "data" not in tokens[0] and "stringData" not in tokens[0]


def test_gateway_api_crds_unless_present(rendered: tuple[dict[str, Any], Path, str]) -> None:
    spec, out, _ = rendered
    tree = load_tree(out)
    for c in spec["clusters"]:
        values = release(tree[c["name"]], "linkerd-crds")["spec"]["values"]
        assert values == {"installGatewayAPI": c.get("gatewayApiCrds", "install") == "install"}


def test_services_exported_where_they_run(rendered: tuple[dict[str, Any], Path, str]) -> None:
    spec, out, _ = rendered
    tree = load_tree(out)
    for svc in spec["services"]:
        for cluster in names(spec):
            services = [o for o in tree[cluster] if o["kind"] == "Service"
                        and o["metadata"]["name"] == svc["name"]]
            if cluster not in svc["clusters"]:
                assert services == []
                continue
            (obj,) = services
            assert obj["metadata"]["namespace"] == svc["namespace"]
            assert obj["spec"]["selector"] == {"app": svc["name"]}
            assert [(p["name"], p["port"], p["targetPort"]) for p in obj["spec"]["ports"]] == [
                (p["name"], p["port"], p.get("targetPort", p["port"])) for p in svc["ports"]]
            labels = obj["metadata"]["labels"]
            peers_elsewhere = any(net(spec, x) != net(spec, cluster) for x in names(spec))
            if svc.get("federated"):
                assert labels["mirror.linkerd.io/federated"] == "member"
                assert "mirror.linkerd.io/exported" not in labels
            elif peers_elsewhere:
                assert labels["mirror.linkerd.io/exported"] == "true"
            else:
                assert labels["mirror.linkerd.io/exported"] == "remote-discovery"
        ns = find(tree[svc["clusters"][0]], "Namespace", svc["namespace"])
        assert ns["metadata"]["annotations"]["linkerd.io/inject"] == "enabled"


def test_issuer_material_passes_linkerd_check(rendered: tuple[dict[str, Any], Path, str]) -> None:
    """What `linkerd check` verifies, on the Secret/ConfigMap as rendered."""
    spec, out, _ = rendered
    tree = load_tree(out)
    issuers = set()
    for cluster in names(spec):
        secret = yaml.safe_load(
            (out / cluster / "secrets" / "linkerd.linkerd-identity-issuer.yaml").read_text())
        data = secret["stringData"]
        anchor = find(tree[cluster], "ConfigMap", "linkerd-identity-trust-roots")["data"][
            "ca-bundle.crt"]
        checks = linkerd_identity_checks(anchor, data["tls.crt"], data["tls.key"])
        assert checks and [c for c in checks if not c.ok] == [], checks
        cert = x509.load_pem_x509_certificate(data["tls.crt"].encode())
        key = cert.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
        td = spec["mesh"]["trustDomain"]
        assert common_name(cert) == f"identity.linkerd.{td}"
        assert common_name(x509.load_pem_x509_certificate(anchor.encode())) == \
            f"root.linkerd.{td}"
        issuers.add(cert.fingerprint(cert.signature_hash_algorithm))  # type: ignore[arg-type]
    assert len(issuers) == len(spec["clusters"])  # one issuer per cluster


def common_name(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)


def test_check_fails_for_foreign_anchor(tmp_path: Path) -> None:
    """The check above can fail: an issuer from another environment's anchor."""
    outs = []
    for env in ("one", "two"):
        (tmp_path / env).mkdir()
        config = write_stack(tmp_path / env, two_clusters(), env=env)
        render(config, tmp_path / env / "out", tmp_path / env / "pki")
        outs.append(tmp_path / env / "out")
    issuer = yaml.safe_load((outs[0] / "east" / "secrets" / "linkerd.linkerd-identity-issuer.yaml")
                            .read_text())["stringData"]
    foreign = find(load_tree(outs[1])["east"], "ConfigMap", "linkerd-identity-trust-roots")
    checks = linkerd_identity_checks(foreign["data"]["ca-bundle.crt"], issuer["tls.crt"])
    failed = [c.name for c in checks if c.failed]
    assert failed == ["issuer cert is issued by the trust anchor"]


def test_render_is_deterministic(tmp_path: Path) -> None:
    config = write_stack(tmp_path, three_clusters())
    render(config, tmp_path / "one", tmp_path / "pki")
    render(config, tmp_path / "two", tmp_path / "pki")
    one = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.yaml"))
    two = sorted(p.relative_to(tmp_path / "two") for p in (tmp_path / "two").rglob("*.yaml"))
    assert one == two and one
    _, mismatch, errors = filecmp.cmpfiles(tmp_path / "one", tmp_path / "two",
                                           [str(p) for p in one], shallow=False)
    assert mismatch == [] and errors == []


def test_render_needs_gateway_addresses(tmp_path: Path) -> None:
    spec = two_clusters()
    del spec["clusters"][1]["eastWestGateway"]
    result = CliRunner().invoke(cli, ["render", "--config", str(write_stack(tmp_path, spec)),
                                      "--out", str(tmp_path / "out"),
                                      "--pki-dir", str(tmp_path / "pki")], env={})
    assert result.exit_code == 2, result.output
    assert "meshboot:clusters[1].eastWestGateway.address" in result.output
    assert not (tmp_path / "out").exists()


def test_flat_network_needs_no_addresses(tmp_path: Path) -> None:
    spec = flat_clusters()
    assert all("eastWestGateway" not in c for c in spec["clusters"])
    render(write_stack(tmp_path, spec), tmp_path / "out", tmp_path / "pki")
