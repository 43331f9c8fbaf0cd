"""The real ``__main__.py`` under Pulumi mocks with a Linkerd environment.

Links for every ordered pair, credentials as secret outputs built from the
target's token, ordering CRDs -> control plane -> multicluster -> links,
and no issuer key in any Helm values. Expectations come from the spec.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
import yaml

from tests.stacks.linkerd.specs import three_clusters, two_clusters
from tests.support.pulumi_harness import (
    PROVIDER,
    RELEASE,
    ProgramRun,
    Registered,
    is_secret_value,
    run_program,
    unwrap_secrets,
    with_fake_kubeconfigs,
)

TOKEN = "linkerd-service-mirror-remote-access-default-token-g1"


def two_without_addresses() -> dict[str, Any]:
    spec = two_clusters()
    for c in spec["clusters"]:
        del c["eastWestGateway"]  # pulumi reads the gateways' load-balancer ingress
    return spec


def three_one_without_address() -> dict[str, Any]:
    spec = three_clusters()
    del spec["clusters"][1]["eastWestGateway"]
    return spec


SPECS = {"2": two_without_addresses, "3": three_one_without_address}


@pytest.fixture(scope="module", params=sorted(SPECS))
def graph(request: pytest.FixtureRequest) -> tuple[dict[str, Any], ProgramRun]:
    spec = SPECS[request.param]()
    return spec, run_program(with_fake_kubeconfigs(spec))


def names(spec: dict[str, Any]) -> list[str]:
    return [c["name"] for c in spec["clusters"]]


def deps(run: ProgramRun, r: Registered) -> set[str]:
    return {run.by_urn(u).name for u in r.dependencies}


def upstream(run: ProgramRun, r: Registered) -> set[str]:
    """Every resource ``r`` transitively depends on."""
    seen: set[str] = set()
    todo = [r]
    while todo:
        for name in deps(run, todo.pop()):
            if name not in seen:
                seen.add(name)
                todo.append(run.named(name))
    return seen


def test_one_explicit_provider_per_cluster(graph: tuple[dict[str, Any], ProgramRun]) -> None:
    spec, run = graph
    providers = {r.name for r in run.of_type(PROVIDER)}
    assert providers == {f"{n}-k8s" for n in names(spec)}
    for r in run.resources:
        if r.type.startswith("kubernetes:"):
            cluster = r.name.split("-", 1)[0]
            assert r.provider.split("::")[-2] == f"{cluster}-k8s", r.name


def test_ordering_crds_control_plane_multicluster_links(
        graph: tuple[dict[str, Any], ProgramRun]) -> None:
    spec, run = graph
    for c in names(spec):
        crds = run.named(f"{c}-linkerd-crds")
        cp = run.named(f"{c}-linkerd-control-plane")
        mc = run.named(f"{c}-linkerd-multicluster")
        links = run.named(f"{c}-links")
        assert {f"{c}-linkerd-crds", f"{c}-secret-linkerd-linkerd-identity-issuer",
                f"{c}-identity-issuer"} <= deps(run, cp)
        assert f"{c}-linkerd-control-plane" in deps(run, mc)
        assert {crds.name, cp.name, mc.name} <= upstream(run, links)
        others = [o for o in names(spec) if o != c]
        assert {f"{c}-secret-{ns}-cluster-credentials-{o}" for o in others
                for ns in ("linkerd", "linkerd-multicluster")} <= deps(run, links)
        for r in (crds, cp, mc):
            assert r.type == RELEASE
            assert r.inputs["repositoryOpts"]["repo"] == "https://helm.linkerd.io/edge"
            assert r.inputs["version"] == "2026.8.3"


def test_links_for_every_ordered_pair(graph: tuple[dict[str, Any], ProgramRun]) -> None:
    spec, run = graph
    clusters = {c["name"]: c for c in spec["clusters"]}
    found = set()
    for a in names(spec):
        objs = unwrap_secrets(run.named(f"{a}-links").inputs["objs"])
        for link in objs:
            assert link["kind"] == "Link"
            b = link["metadata"]["name"]
            found.add((a, b))
            assert link["spec"]["targetClusterName"] == b
            assert link["spec"]["clusterCredentialsSecret"] == f"cluster-credentials-{b}"
            if clusters[a]["network"] == clusters[b]["network"]:
                assert "gatewayAddress" not in link["spec"]
                continue
            fixed = clusters[b].get("eastWestGateway", {}).get("address")
            if fixed:
                assert link["spec"]["gatewayAddress"] == fixed
            else:
                lb = run.named(f"{b}-linkerd-gateway-lb")
                assert lb.read
                assert f"{b}-linkerd-multicluster" in deps(run, lb)
                assert link["spec"]["gatewayAddress"] == \
                    lb.outputs["status"]["loadBalancer"]["ingress"][0]["ip"]
    assert found == set(itertools.permutations(names(spec), 2))


def test_credentials_are_secret_outputs_from_target_tokens(
        graph: tuple[dict[str, Any], ProgramRun]) -> None:
    spec, run = graph
    clusters = {c["name"]: c for c in spec["clusters"]}
    for a, b in itertools.permutations(names(spec), 2):
        for ns in ("linkerd-multicluster", "linkerd"):
            r = run.named(f"{a}-secret-{ns}-cluster-credentials-{b}")
            assert r.inputs["type"] == "mirror.linkerd.io/remote-kubeconfig"
            assert is_secret_value(r.inputs["stringData"])
            kubeconfig = yaml.safe_load(unwrap_secrets(r.inputs["stringData"])["kubeconfig"])
            assert kubeconfig["clusters"][0]["cluster"]["server"] == clusters[b]["apiServer"]
            assert kubeconfig["users"][0]["user"]["token"] == f"token-of-{b}-{TOKEN}"
            labels = r.inputs["metadata"].get("labels", {})
            if ns == "linkerd":
                assert labels["multicluster.linkerd.io/cluster-name"] == b
        read = run.named(f"{b}-{TOKEN}-read")
        assert deps(run, read) == {f"{b}-secret-linkerd-multicluster-{TOKEN}"}
        token = run.named(f"{b}-secret-linkerd-multicluster-{TOKEN}")
        assert f"{b}-linkerd-multicluster" in deps(run, token)  # the chart makes the account


def test_no_issuer_key_in_helm_values(graph: tuple[dict[str, Any], ProgramRun]) -> None:
    spec, run = graph
    for r in run.of_type(RELEASE):
        assert "PRIVATE KEY" not in json.dumps(unwrap_secrets(r.inputs["values"]))
    for c in names(spec):
        issuer = run.named(f"{c}-secret-linkerd-linkerd-identity-issuer")
        assert is_secret_value(issuer.inputs["stringData"])
        data = unwrap_secrets(issuer.inputs["stringData"])
        assert "PRIVATE KEY" in data["tls.key"]
        cp = unwrap_secrets(run.named(f"{c}-linkerd-control-plane").inputs["values"])
        assert cp["identityTrustAnchorsPEM"] == data["ca.crt"]
        assert cp["identity"]["externalCA"] is True


def test_token_rotation_replaces_credentials() -> None:
    spec = two_without_addresses()
    spec["mesh"]["tokenGeneration"] = 3
    run = run_program(with_fake_kubeconfigs(spec))
    all_names = {r.name for r in run.resources}
    assert not any("-token-g1" in n for n in all_names)
    creds = run.named("east-secret-linkerd-multicluster-cluster-credentials-west")
    kubeconfig = yaml.safe_load(unwrap_secrets(creds.inputs["stringData"])["kubeconfig"])
    assert kubeconfig["users"][0]["user"]["token"] == \
        "token-of-west-linkerd-service-mirror-remote-access-default-token-g3"


def issue9_spec() -> dict[str, Any]:
    """Every object kind the issue 9 fixes add: GRPCRoute, probe route and its
    NetworkAuthentication, gateway identity, mirror-only namespaces, max-penalty."""
    spec = three_clusters()
    spec["linkerd"] = {"admitGatewayIdentity": True}
    spec["services"][0].update({
        "outlierDetection": {"baseEjectionTime": "2m"},
        "authorization": {"rules": [{"from": {"serviceAccounts": ["bookinfo/productpage"]},
                                     "to": {"methods": ["GET"]}}],
                          "probePaths": ["/healthz"]}})
    spec["services"].append({
        "name": "rpc", "namespace": "rpc", "clusters": ["b"],
        "ports": [{"name": "grpc", "port": 9090, "protocol": "GRPC"}],
        "routing": {"localShare": 100}, "timeout": "2s",
        "retries": {"attempts": 2, "retryOn": ["unavailable"]}})
    spec["clusters"][1]["gatewayApiVersion"] = "v1.2.1"
    return spec


def test_objects_equal_render(tmp_path: Any) -> None:
    """Both adapters consume one plan: every object render writes is in the Pulumi
    graph with the same content (Secrets aside: another PKI), and vice versa."""
    from click.testing import CliRunner

    from scripts.cli import cli
    from tests.conftest import write_stack
    from tests.support.pulumi_harness import CONFIG_GROUP, SECRET
    from tests.support.validation import load_tree

    spec = issue9_spec()
    run = run_program(with_fake_kubeconfigs(spec))
    result = CliRunner().invoke(cli, ["render", "--config", str(write_stack(tmp_path, spec)),
                                      "--out", str(tmp_path / "out"),
                                      "--pki-dir", str(tmp_path / "pki")], env={})
    assert result.exit_code == 0, result.output
    tree = load_tree(tmp_path / "out")
    kinds: set[str] = set()
    for cluster, objs in tree.items():
        rendered = {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o
                    for o in objs if o["kind"] not in ("HelmRelease", "HelmRepository")}
        pulumi_objs: dict[tuple[str, str, str], dict[str, Any]] = {}
        for r in run.resources:
            if r.read or r.name.split("-", 1)[0] != cluster:
                continue
            if r.type == CONFIG_GROUP:
                for o in unwrap_secrets(r.inputs["objs"]):
                    key = (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])
                    pulumi_objs[key] = o
            elif r.type == SECRET and not r.inputs["metadata"]["name"].startswith(
                    "cluster-credentials-"):  # render lists these, never writes them
                m = r.inputs["metadata"]
                pulumi_objs[("Secret", m["namespace"], m["name"])] = {}
        assert set(rendered) == set(pulumi_objs), cluster
        for key, obj in pulumi_objs.items():
            # Secret contents and the trust roots differ by design: another PKI.
            if key[0] != "Secret" and key[2] != "linkerd-identity-trust-roots":
                assert obj == rendered[key], key
                kinds.add(key[0])
    assert {"GRPCRoute", "NetworkAuthentication", "Link", "HTTPRoute",
            "MeshTLSAuthentication"} <= kinds
