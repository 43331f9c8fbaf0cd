"""The real ``__main__.py`` under Pulumi mocks: providers, values, depends_on, secrets.

Expected structure comes from the spec each test builds, not from the plan code.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from scripts.cli import cli
from tests.conftest import base_spec, write_stack
from tests.support.pulumi_harness import (
    CONFIG_GROUP,
    PROVIDER,
    SECRET,
    ProgramRun,
    Registered,
    is_secret_value,
    run_program,
    unwrap_secrets,
    with_fake_kubeconfigs,
)
from tests.support.validation import load_tree


def one_cluster() -> dict[str, Any]:
    spec = base_spec()
    spec["clusters"] = spec["clusters"][:1]
    spec["services"][0]["clusters"] = ["east"]
    return spec


def two_clusters() -> dict[str, Any]:
    return base_spec()


def four_clusters() -> dict[str, Any]:
    spec = base_spec()
    spec["clusters"] = [
        {"name": "a", "apiServer": "https://10.0.0.1:6443", "network": "n1", "region": "r1"},
        {"name": "b", "apiServer": "https://10.0.0.2:6443", "network": "n2", "region": "r2"},
        {"name": "c", "apiServer": "https://10.0.0.3:6443", "network": "n1", "region": "r1",
         "role": "remote", "primary": "a"},
        {"name": "d", "apiServer": "https://10.0.0.4:6443", "network": "n2", "region": "r2"},
    ]
    spec["services"][0]["clusters"] = ["a", "b", "c"]
    return spec


SPECS = {"1": one_cluster, "2": two_clusters, "4": four_clusters}


@pytest.fixture(scope="module", params=sorted(SPECS))
def graph(request: pytest.FixtureRequest) -> tuple[dict[str, Any], ProgramRun]:
    spec = SPECS[request.param]()
    return spec, run_program(with_fake_kubeconfigs(spec))


def managed(run: ProgramRun) -> list[Registered]:
    return [r for r in run.resources if not r.read]


def cluster_of(r: Registered) -> str:
    return r.name.split("-", 1)[0]


def test_no_duplicate_urns(graph: tuple[dict[str, Any], ProgramRun]) -> None:
    _, run = graph
    urns = [r.urn for r in run.resources]
    assert len(urns) == len(set(urns))
    assert len(urns) >= 8 * len(graph[0]["clusters"])


def test_one_explicit_provider_per_cluster(graph: tuple[dict[str, Any], ProgramRun]) -> None:
    spec, run = graph
    names = [c["name"] for c in spec["clusters"]]
    providers = {r.name: r for r in run.of_type(PROVIDER)}
    assert sorted(providers) == sorted(f"{n}-k8s" for n in names)
    for p in providers.values():
        assert is_secret_value(p.inputs["kubeconfig"]), "kubeconfig contents must be secret"
    k8s = [r for r in run.resources if r.type.startswith("kubernetes:")]
    assert k8s
    for r in k8s:
        cluster = cluster_of(r)
        assert cluster in names, r.name
        # provider reference is "<urn>::<id>" of that cluster's provider.
        assert r.provider.split("::")[-2] == f"{cluster}-k8s", (r.name, r.provider)


def test_istiod_values_and_ordering(graph: tuple[dict[str, Any], ProgramRun]) -> None:
    spec, run = graph
    for c in spec["clusters"]:
        name = c["name"]
        istiod = run.named(f"{name}-istiod")
        values = unwrap_secrets(istiod.inputs["values"])
        assert values["global"]["meshID"] == spec["mesh"]["id"]
        assert values["global"]["multiCluster"]["clusterName"] == name
        assert values["global"]["network"] == c["network"]
        assert istiod.inputs["chart"] == "istiod"
        assert istiod.inputs["repositoryOpts"]["repo"] == \
            "https://istio-release.storage.googleapis.com/charts"
        deps = {run.by_urn(u).name for u in istiod.dependencies}
        # A remote runs no istiod of its own: no cacerts there (test_topology.py).
        needs = {f"{name}-istio-base"} if c.get("role") == "remote" else \
            {f"{name}-secret-istio-system-cacerts", f"{name}-istio-base"}
        assert needs <= deps
        base = run.named(f"{name}-istio-base")
        assert f"{name}-namespaces" in {run.by_urn(u).name for u in base.dependencies}
        if c.get("role") == "remote":
            assert values["profile"] == "remote"
            primary_gw = run.named(f"{c['primary']}-istio-eastwestgateway-lb")
            assert values["global"]["remotePilotAddress"] == \
                primary_gw.outputs["status"]["loadBalancer"]["ingress"][0]["ip"]


def test_custom_resources_wait_for_istiod(graph: tuple[dict[str, Any], ProgramRun]) -> None:
    spec, run = graph
    multi_network = len({c["network"] for c in spec["clusters"]}) > 1
    groups = [r for r in run.of_type(CONFIG_GROUP) if r.name.endswith("-mesh-gateways")]
    assert bool(groups) == multi_network
    remotes = {c["name"] for c in spec["clusters"] if c.get("role") == "remote"}
    assert not {cluster_of(g) for g in groups} & remotes  # Istio CRs only in primaries
    for g in groups:
        cluster = cluster_of(g)
        deps = {run.by_urn(u).name for u in g.dependencies}
        assert deps == {f"{cluster}-eastwest-gateway"}
        gw = run.named(f"{cluster}-eastwest-gateway")
        assert f"{cluster}-istiod" in {run.by_urn(u).name for u in gw.dependencies}


def test_remote_secret_for_every_ordered_pair_of_primaries(
        graph: tuple[dict[str, Any], ProgramRun]) -> None:
    spec, run = graph
    clusters = {c["name"]: c for c in spec["clusters"]}
    primaries = [n for n, c in clusters.items() if c.get("role", "primary") == "primary"]
    expected = {(p, o) for p in primaries for o in clusters if o != p}
    found = set()
    for r in run.of_type(SECRET):
        if r.read or "istio-remote-secret-" not in r.name:
            continue
        holder, target = cluster_of(r), r.name.rsplit("istio-remote-secret-", 1)[1]
        found.add((holder, target))
        meta = r.inputs["metadata"]
        assert meta["labels"] == {"istio/multiCluster": "true",
                                  "app.kubernetes.io/managed-by": "meshboot"}
        assert meta["annotations"] == {"networking.istio.io/cluster": target}
        assert is_secret_value(r.inputs["stringData"])
        kubeconfig = yaml.safe_load(unwrap_secrets(r.inputs["stringData"])[target])
        assert kubeconfig["clusters"][0]["cluster"]["server"] == clusters[target]["apiServer"]
        token = kubeconfig["users"][0]["user"]["token"]
        assert token == f"token-of-{target}-istio-reader-token-1"
        # The token Secret meshboot created in the target comes first (cross-cluster edge).
        read = run.named(f"{target}-istio-reader-token-1-read")
        assert {run.by_urn(u).name for u in read.dependencies} == \
            {f"{target}-secret-istio-system-istio-reader-token-1"}
    assert found == expected
    if len(primaries) >= 2:
        assert {(a, b) for a, b in itertools.permutations(primaries, 2)} <= found


def test_key_material_only_in_secrets(graph: tuple[dict[str, Any], ProgramRun]) -> None:
    _, run = graph
    leaks = []
    checked_secret_keys = 0

    def scan(value: Any, where: str) -> None:
        nonlocal checked_secret_keys
        if is_secret_value(value):
            if "PRIVATE KEY" in json.dumps(value):
                checked_secret_keys += 1
            return
        if isinstance(value, dict):
            for k, v in value.items():
                scan(v, f"{where}.{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                scan(v, f"{where}[{i}]")
        elif isinstance(value, str) and "PRIVATE KEY" in value:
            leaks.append(where)

    for r in run.resources:
        scan(r.inputs, f"{r.name}.inputs")
    assert leaks == []
    assert checked_secret_keys >= 1  # the cacerts Secrets really carried keys, as secrets
    for r in run.resources:
        if r.type.startswith("pulumi-python:dynamic"):
            assert "key_pem" in r.secret_outputs
            assert "PRIVATE KEY" in r.outputs["key_pem"]
    cacerts = [r for r in run.of_type(SECRET) if r.name.endswith("-cacerts")]
    assert cacerts
    for r in cacerts:
        data = unwrap_secrets(r.inputs["stringData"])
        assert "BEGIN" in data["ca-key.pem"] and "BEGIN CERTIFICATE" in data["cert-chain.pem"]


def test_token_rotation_replaces_token_secret_and_remote_secrets() -> None:
    spec = two_clusters()
    spec["mesh"]["tokenGeneration"] = 2
    run = run_program(with_fake_kubeconfigs(spec))
    names = {r.name for r in run.resources}
    assert "east-secret-istio-system-istio-reader-token-2" in names
    assert not any("reader-token-1" in n for n in names)
    remote = run.named("east-secret-istio-system-istio-remote-secret-west")
    kubeconfig = yaml.safe_load(unwrap_secrets(remote.inputs["stringData"])["west"])
    assert kubeconfig["users"][0]["user"]["token"] == "token-of-west-istio-reader-token-2"


def pulumi_and_render(tmp_path: Path, spec: dict[str, Any]
                      ) -> tuple[ProgramRun, dict[str, list[dict[str, Any]]]]:
    """The same spec through both adapters: the mock Pulumi run and `meshboot render`."""
    run = run_program(with_fake_kubeconfigs(spec))
    config = write_stack(tmp_path, spec)
    result = CliRunner().invoke(cli, ["render", "--config", str(config), "--out",
                                      str(tmp_path / "out"), "--pki-dir", str(tmp_path / "pki")])
    assert result.exit_code == 0, result.output
    return run, load_tree(tmp_path / "out")


Both = Callable[[Callable[[], dict[str, Any]]], tuple[ProgramRun, dict[str, list[dict[str, Any]]]]]


@pytest.fixture(scope="module")
def both_adapters(tmp_path_factory: pytest.TempPathFactory) -> Both:
    """make_spec -> pulumi_and_render of make_spec() with a's gateway address fixed,
    computed once per spec for the tests below (they only read it)."""
    done: dict[Any, tuple[ProgramRun, dict[str, list[dict[str, Any]]]]] = {}

    def get(make_spec: Callable[[], dict[str, Any]]
            ) -> tuple[ProgramRun, dict[str, list[dict[str, Any]]]]:
        if make_spec not in done:
            spec = make_spec()
            spec["clusters"][0]["eastWestGateway"] = {"address": "192.0.2.7"}
            done[make_spec] = pulumi_and_render(tmp_path_factory.mktemp(make_spec.__name__), spec)
        return done[make_spec]

    return get


def test_helm_values_equal_render(both_adapters: Both) -> None:
    run, tree = both_adapters(four_clusters)
    compared = 0
    for cluster, objs in tree.items():
        for obj in objs:
            if obj["kind"] != "HelmRelease":
                continue
            step = {"istio-base": "istio-base", "istiod": "istiod",
                    "istio-eastwestgateway": "eastwest-gateway"}[obj["metadata"]["name"]]
            release = run.named(f"{cluster}-{step}")
            assert unwrap_secrets(release.inputs["values"]) == obj["spec"]["values"]
            assert release.inputs["version"] == obj["spec"]["chart"]["spec"]["version"]
            assert release.inputs["name"] == obj["spec"]["releaseName"]
            compared += 1
    assert compared == 11  # 4 x base + istiod; gateways in a, b, d (c shares a's network)


def policy_four_clusters() -> dict[str, Any]:
    from tests.support.policy_examples import full_policy_mesh, full_policy_service

    spec = four_clusters()
    for i, c in enumerate(spec["clusters"]):
        c["eastWestGateway"] = {"address": f"192.0.2.{i + 1}"}
    spec["services"] = [
        # serviceEntry is a config-only mesh: shares stay in a's store (a, c).
        full_policy_service("reviews", "bookinfo", ["a", "c"]),
        full_policy_service("ratings", "bookinfo", ["b", "d"], release="canary"),
        full_policy_service("details", "shop", ["a"], release="abTest"),
    ]
    spec.update(full_policy_mesh(["bookinfo", "shop"]))
    spec["traffic"]["crossCluster"] = "serviceEntry"
    return spec


@pytest.mark.parametrize("make_spec", [four_clusters, policy_four_clusters])
def test_objects_equal_render(both_adapters: Both, make_spec: Any) -> None:
    """Every object render writes is in the Pulumi graph with the same content, and vice versa."""
    run, tree = both_adapters(make_spec)
    compared = 0
    for cluster, objs in tree.items():
        rendered = {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o
                    for o in objs if o["kind"] not in ("HelmRelease", "HelmRepository")}
        pulumi_objs: dict[tuple[str, str, str], dict[str, Any]] = {}
        for r in run.resources:
            if r.read or cluster_of(r) != cluster:
                continue
            if r.type == CONFIG_GROUP:
                for o in unwrap_secrets(r.inputs["objs"]):
                    key = (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])
                    assert key not in pulumi_objs, key
                    pulumi_objs[key] = o
            elif r.type == SECRET and "remote-secret" not in r.name:
                m = r.inputs["metadata"]
                pulumi_objs[("Secret", m["namespace"], m["name"])] = {}
        assert set(rendered) == set(pulumi_objs), cluster
        assert rendered
        for key, obj in pulumi_objs.items():
            if key[0] != "Secret":  # Secret contents differ by design: another PKI
                assert obj == rendered[key], key
                compared += 1
    assert compared > 0
    if make_spec is policy_four_clusters:
        kinds = {k[0] for objs in tree.values() for o in objs for k in [(o["kind"],)]}
        assert {"VirtualService", "DestinationRule", "ServiceEntry", "AuthorizationPolicy",
                "PeerAuthentication", "RequestAuthentication", "Sidecar"} <= kinds
