"""Output a reviewer can trust: header, managed-by label, stable file names, apply order, counts.

Every environment is rendered through the CLI. Expected values come from
outside the code under test: the version from pyproject.toml, the stack file
name from the test, the apply order from how kubectl walks a directory.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import tomllib
from collections import defaultdict
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from clusters.loader import load_stack_file
from scripts.cli import cli
from stacks.build import build_plan
from stacks.output import MARKER
from stacks.steps import STEP_ORDER
from tests.conftest import REPO, base_spec, write_stack
from tests.stacks.istio.helpers import three_cluster_spec
from tests.stacks.linkerd.specs import flat_clusters, three_clusters
from tests.support.policy_examples import full_policy_mesh, full_policy_service
from tests.support.validation import validate_object, yaml_doc, yaml_docs

VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
MANAGED_BY = "app.kubernetes.io/managed-by"
# Namespaces every cluster has before anything is applied.
BUILTIN = {"default", "kube-system", "kube-public", "kube-node-lease"}
CHAIN = [("us-east1", "us-west1"), ("us-west1", "eu-west1"), ("eu-west1", "us-east1")]


# ------------------------------------------------------------------ environments
def istio_policy() -> dict[str, Any]:
    """Multi-primary + primary-remote, two networks, every Istio policy feature."""
    services = [
        full_policy_service("reviews", "shop", ["east", "west", "central"]),
        full_policy_service("ratings", "shop", ["west"], release="canary", failover=CHAIN),
        full_policy_service("details", "shop", ["west", "central"], release="blueGreen"),
        full_policy_service("orders", "billing", ["east"], release="abTest", failover=CHAIN[:1]),
    ]
    return three_cluster_spec(services, **full_policy_mesh(["shop", "billing"]))


def istio_service_entries() -> dict[str, Any]:
    spec = istio_policy()
    spec["traffic"]["crossCluster"] = "serviceEntry"
    # A config-only mesh: per-cluster shares stay in the caller's config store where
    # that store runs the service (stacks.istio.policy._check_config_stores).
    spec["services"][0]["clusters"] = ["east", "central"]
    return spec


def istio_one_cluster_no_services() -> dict[str, Any]:
    spec = base_spec()
    spec["clusters"] = spec["clusters"][:1]
    spec["services"] = []
    return spec


def istio_default_namespace() -> dict[str, Any]:
    """A service in a built-in namespace (never created by meshboot)."""
    spec = base_spec()
    spec["services"].append({"name": "web", "namespace": "default",
                             "ports": [{"name": "http", "port": 80}],
                             "clusters": ["east", "west"], "timeout": "2s"})
    spec["security"] = {"defaultDeny": True}
    return spec


def linkerd_policy() -> dict[str, Any]:
    spec = three_clusters()
    spec["services"][0].update({
        "routing": {"localShare": 70}, "timeout": "3s",
        "retries": {"attempts": 2, "perTryTimeout": "1s", "retryOn": ["5xx"]},
        "authorization": {"rules": [{"from": {"serviceAccounts": ["bookinfo/productpage"]},
                                     "to": {"methods": ["GET"], "paths": ["/api/*"]}}],
                          "probePaths": ["/healthz"]}})
    spec["linkerd"] = {"admitGatewayIdentity": True}  # b is on another network
    spec["clusters"][1]["gatewayApiVersion"] = "v1.2.1"  # b: present, keeps timeouts
    spec["services"].append({
        "name": "details", "namespace": "shop", "ports": [{"name": "http", "port": 9080}],
        "clusters": ["a", "b"], "versions": ["v1", "v2"],
        "release": {"canary": {"stable": "v1", "candidate": "v2", "weight": 10}}})
    spec["security"] = {"defaultDeny": True}
    return spec


def linkerd_flat_no_services() -> dict[str, Any]:
    spec = flat_clusters()
    spec["services"] = []
    return spec


def linkerd_one_cluster() -> dict[str, Any]:
    spec = flat_clusters()
    spec["clusters"] = spec["clusters"][:1]
    spec["services"][0]["clusters"] = ["east"]
    return spec


def linkerd_one_cluster_service_in_multicluster_namespace() -> dict[str, Any]:
    """One cluster has no multicluster extension, so meshboot must create that namespace."""
    spec = linkerd_one_cluster()
    spec["services"][0]["namespace"] = "linkerd-multicluster"
    return spec


EXAMPLES = {"dev": REPO / "Pulumi.dev.yaml", "linkerd": REPO / "examples" / "Pulumi.linkerd.yaml"}
SPECS: dict[str, Callable[[], dict[str, Any]]] = {
    "istio-policy": istio_policy,
    "istio-serviceentry": istio_service_entries,
    "istio-single": istio_one_cluster_no_services,
    "istio-default-ns": istio_default_namespace,
    "linkerd-policy": linkerd_policy,
    "linkerd-flat": linkerd_flat_no_services,
    "linkerd-single": linkerd_one_cluster,
    "linkerd-single-mc-ns": linkerd_one_cluster_service_in_multicluster_namespace,
}
ENVS = sorted(EXAMPLES) + sorted(SPECS)


class Rendered:
    """One render, shared by the module's tests (they only read it)."""

    def __init__(self, env: str, config: Path, out: Path, output: str) -> None:
        self.env, self.config, self.out, self.output = env, config, out, output

    @cached_property
    def provider(self) -> str:
        return str(yaml_doc(self.config.read_text())["config"]["meshboot:mesh"]["provider"])

    def clusters(self) -> list[Path]:
        return sorted(p for p in self.out.iterdir() if p.is_dir())

    def objects(self) -> list[dict[str, Any]]:
        return self._objects

    @cached_property
    def _objects(self) -> list[dict[str, Any]]:
        return [d for f in sorted(self.out.rglob("*.yaml"))
                for d in yaml_docs(f.read_text()) if d is not None]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Rendered]:
    result = {}
    for env in ENVS:
        tmp = tmp_path_factory.mktemp(env)
        if env in EXAMPLES:
            config = tmp / EXAMPLES[env].name
            shutil.copy(EXAMPLES[env], config)
        else:
            config = write_stack(tmp, SPECS[env](), env=env)
        out = tmp / "out"
        run = CliRunner().invoke(cli, ["render", "--config", str(config), "--out", str(out),
                                       "--pki-dir", str(tmp / "pki")], env={})
        assert run.exit_code == 0, f"{env}: {run.output}"
        result[env] = Rendered(env, config, out, run.output)
    return result


# ----------------------------------------------------------------------- header
def test_version_option() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"meshboot {VERSION}\n"


@pytest.mark.parametrize("env", ENVS)
def test_every_file_starts_with_the_generated_header(rendered: dict[str, Rendered],
                                                     env: str) -> None:
    r = rendered[env]
    # The render marker is JSON metadata beside the cluster trees, not a manifest.
    files = [p for p in r.out.rglob("*") if p.is_file() and p.name != MARKER]
    assert (r.out / MARKER).is_file()
    assert any(p.parent.name == "secrets" for p in files)
    assert any(p.name.endswith("-helm-repositories.yaml") for p in files)
    for f in files:
        first = f.read_text().splitlines()[0]
        assert first == (f"# Generated by meshboot {VERSION} from {r.config.name}. "
                         "Do not edit: change the stack file and re-render."), f
        assert [d for d in yaml_docs(f.read_text()) if d], f


# ------------------------------------------------------------------------ label
@pytest.mark.parametrize("env", ENVS)
def test_every_rendered_object_carries_managed_by(rendered: dict[str, Rendered],
                                                  env: str) -> None:
    objs = rendered[env].objects()
    kinds = {o["kind"] for o in objs}
    assert {"Namespace", "Secret", "HelmRelease", "HelmRepository"} <= kinds
    for obj in objs:
        labels = obj["metadata"].get("labels", {})
        assert labels.get(MANAGED_BY) == "meshboot", (obj["kind"], obj["metadata"])
        validate_object(obj)
        if obj["kind"] == "HelmRelease":
            # Only objects meshboot renders: chart values are the chart's business.
            assert MANAGED_BY not in json.dumps(obj["spec"].get("values", {}))


def test_mesh_gateways_are_labelled(rendered: dict[str, Rendered]) -> None:
    gateways = [o for o in rendered["dev"].objects() if o["kind"] == "Gateway"]
    assert {g["metadata"]["name"] for g in gateways} == {"cross-network-gateway",
                                                          "istiod-gateway"}
    assert all(g["metadata"]["labels"][MANAGED_BY] == "meshboot" for g in gateways)


def test_existing_labels_are_kept(rendered: dict[str, Rendered]) -> None:
    objs = rendered["dev"].objects()
    istio_system = [o for o in objs if o["kind"] == "Namespace"
                    and o["metadata"]["name"] == "istio-system"]
    networks = {o["metadata"]["labels"].get("topology.istio.io/network") for o in istio_system}
    assert networks == {"net-east", "net-west"}


def test_pulumi_objects_carry_managed_by() -> None:
    from tests.support.pulumi_harness import (
        CONFIG_GROUP,
        SECRET,
        run_program,
        unwrap_secrets,
        with_fake_kubeconfigs,
    )

    for spec in (istio_service_entries(), linkerd_policy()):
        run = run_program(with_fake_kubeconfigs(spec))
        seen: set[str] = set()
        for r in run.resources:
            if r.read:
                continue
            if r.type == CONFIG_GROUP:
                metas = [o["metadata"] for o in unwrap_secrets(r.inputs["objs"])]
            elif r.type == SECRET:
                metas = [unwrap_secrets(r.inputs["metadata"])]
            else:
                continue
            for meta in metas:
                assert meta["labels"][MANAGED_BY] == "meshboot", (r.name, meta)
                seen.add(r.type)
        assert seen == {CONFIG_GROUP, SECRET}


# ------------------------------------------------------------------- file names
STEP_FILE = re.compile(r"^(\d{2})-([a-z0-9-]+)\.yaml$")


def test_same_step_same_file_name_everywhere(rendered: dict[str, Rendered]) -> None:
    """Across every cluster of every environment of a provider, one prefix per step."""
    prefixes: dict[tuple[str, str], set[str]] = defaultdict(set)
    steps_per_cluster: dict[str, set[frozenset[str]]] = defaultdict(set)
    for r in rendered.values():
        for cluster in r.clusters():
            names = set()
            for f in cluster.iterdir():
                if f.is_dir():
                    assert f.name == "secrets"
                    continue
                m = STEP_FILE.match(f.name)
                assert m, f
                prefixes[(r.provider, m.group(2))].add(m.group(1))
                names.add(m.group(2))
            steps_per_cluster[r.provider].add(frozenset(names))
    assert {k: v for k, v in prefixes.items() if len(v) > 1} == {}
    # Not vacuous: clusters with different step sets were compared.
    assert len(steps_per_cluster["istio"]) > 1 and len(steps_per_cluster["linkerd"]) > 1
    assert ("istio", "policy") in prefixes and ("linkerd", "policy") in prefixes


def kubectl_file_order(root: Path) -> list[Path]:
    """Files in the order ``kubectl apply -R -f root`` reads them.

    kubectl expands a directory with Go's ``filepath.Walk`` (cli-runtime
    ``pkg/resource/visitor.go``, ``ExpandPathsToFileVisitors``), which visits
    entries in lexical order and descends into a directory at its place in
    that order; only ``.json``, ``.yaml`` and ``.yml`` files are read.
    """
    files: list[Path] = []
    for name in sorted(p.name for p in root.iterdir()):
        path = root / name
        if path.is_dir():
            files += kubectl_file_order(path)
        elif path.suffix in (".json", ".yaml", ".yml"):
            files.append(path)
    return files


@pytest.mark.parametrize("env", ENVS)
def test_kubectl_apply_creates_namespaces_before_their_objects(rendered: dict[str, Rendered],
                                                               env: str) -> None:
    for cluster in rendered[env].clusters():
        created: set[str] = set()
        repositories: set[tuple[str, str]] = set()
        applied = 0
        for f in kubectl_file_order(cluster):
            for obj in (d for d in yaml_docs(f.read_text()) if d):
                meta = obj["metadata"]
                applied += 1
                if obj["kind"] == "Namespace":
                    assert "namespace" not in meta
                    created.add(meta["name"])
                    continue
                ns = meta.get("namespace")
                assert ns in created or ns in BUILTIN, \
                    f"{f.relative_to(cluster)}: {obj['kind']} {ns}/{meta['name']} before its namespace"
                if obj["kind"] == "HelmRepository":
                    repositories.add((ns, meta["name"]))
                if obj["kind"] == "HelmRelease":
                    ref = obj["spec"]["chart"]["spec"]["sourceRef"]
                    assert (ref["namespace"], ref["name"]) in repositories, f
        assert applied and created, cluster


# ---------------------------------------------------------------- the step table
def _step_literals(path: Path) -> set[str]:
    """First arguments of every ``Step("...")`` call in a module."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Step":
            arg = node.args[0]
            assert isinstance(arg, ast.Constant) and isinstance(arg.value, str), \
                f"{path}: a Step named by an expression cannot be checked against the table"
            names.add(arg.value)
    return names


@pytest.mark.parametrize("provider", ["istio", "linkerd"])
def test_every_step_a_plan_can_add_has_a_place(provider: str) -> None:
    literals = _step_literals(REPO / "stacks" / provider / "plan.py")
    assert literals and literals <= set(STEP_ORDER[provider])
    assert len(set(STEP_ORDER[provider])) == len(STEP_ORDER[provider])


@pytest.mark.parametrize("env", ENVS)
def test_plan_order_is_file_order(rendered: dict[str, Rendered], env: str) -> None:
    """The table orders the steps as the plans do, so file order is dependency order."""
    plan = build_plan(load_stack_file(rendered[env].config).spec)
    order = STEP_ORDER[plan.provider]
    for cp in plan.clusters:
        positions = [order.index(s.name) for s in cp.steps]
        assert positions == sorted(positions), (cp.cluster, [s.name for s in cp.steps])
        assert cp.steps[0].name == "namespaces"


# ------------------------------------------------------------------------ counts
VALIDATE = re.compile(r": valid \((\w+), (\d+) clusters\): (\d+) objects to render"
                      r"(?: \(\+(\d+) created by `pulumi up` only\))?$")


@pytest.mark.parametrize("env", ENVS)
def test_validate_and_render_count_the_same_objects(rendered: dict[str, Rendered],
                                                    env: str) -> None:
    r = rendered[env]
    result = CliRunner().invoke(cli, ["validate", "--config", str(r.config)])
    assert result.exit_code == 0, result.output
    m = VALIDATE.search(result.output.strip())
    assert m, result.output
    to_render, pulumi_only = int(m.group(3)), int(m.group(4) or 0)
    assert int(m.group(2)) == len(r.clusters())
    # What render says it wrote, and what is really in the tree.
    assert re.match(rf"rendered {to_render} objects ", r.output), r.output
    assert len(r.objects()) == to_render
    listed = [line for line in r.output.splitlines()
              if re.match(r"^  \S+: Secret \S+/\S+$", line)]
    assert len(listed) == pulumi_only
    if pulumi_only:
        assert f"+{pulumi_only} created by `pulumi up` only" in r.output


def test_dev_example_counts_remote_secrets_as_pulumi_only(rendered: dict[str, Rendered]) -> None:
    # Pulumi.dev.yaml: primaries east and west each read the two other clusters.
    result = CliRunner().invoke(cli, ["validate", "--config", str(rendered["dev"].config)])
    assert "(+4 created by `pulumi up` only)" in result.output


def test_labelling_never_writes_to_shared_objects() -> None:
    from stacks.plan import ClusterPlan, Step

    shared = {"apiVersion": "v1", "kind": "Namespace",
              "metadata": {"name": "shop", "labels": {"team": "a"}}}
    before = json.dumps(shared)
    a, b = ClusterPlan("a"), ClusterPlan("b")
    got = [cp.add(Step("namespaces", objects=(shared,))).objects[0] for cp in (a, b)]
    assert json.dumps(shared) == before
    for obj in got:
        assert obj["metadata"]["labels"] == {"team": "a", MANAGED_BY: "meshboot"}
    assert a.steps[0].objects[0]["metadata"]["labels"] is not shared["metadata"]["labels"]
