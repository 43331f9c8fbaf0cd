"""``meshboot dr plan``: refusals, what it reads, and that its URNs are the program's."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from scripts.cli import cli
from tests.conftest import base_spec, write_stack
from tests.support.pulumi_harness import run_program, with_fake_kubeconfigs

PASS = "correct horse battery staple"


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli, list(args), env=env or {"PULUMI_CONFIG_PASSPHRASE": PASS})


def three() -> dict[str, Any]:
    spec = base_spec()
    spec["clusters"][0]["eastWestGateway"] = {"address": "192.0.2.10"}
    spec["clusters"].append({"name": "south", "apiServer": "https://10.0.0.3:6443",
                             "network": "net-a", "region": "us-east1", "role": "remote",
                             "primary": "east"})
    return spec


def listing(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def urns(output: str) -> list[str]:
    return re.findall(r"--(?:target|replace) '([^']+)'", output)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stack file whose root lives in the default PKI store (created by render)."""
    d = tmp_path_factory.mktemp("dr")
    config = write_stack(d, three())
    assert invoke("render", "--config", str(config), "--out", str(d / "out")).exit_code == 0
    assert (d / ".meshboot" / "dev" / "pki" / "meta.json").is_file()
    return config


def test_refuses_without_a_root_anywhere(tmp_path: Path) -> None:
    config = write_stack(tmp_path, three())
    before = listing(tmp_path)
    result = invoke("dr", "plan", "--config", str(config), "--cluster", "east")
    assert result.exit_code == 2
    assert "meshboot pki init" in result.output and "identity cannot be kept" in result.output
    assert "--target" not in result.output
    assert listing(tmp_path) == before   # nothing written, no store created


def test_unknown_cluster(rendered: Path) -> None:
    result = invoke("dr", "plan", "--config", str(rendered), "--cluster", "north")
    assert result.exit_code == 2
    assert "north" in result.output and "east, west, south" in result.output


def test_store_for_another_mesh_is_refused(rendered: Path, tmp_path: Path) -> None:
    spec = three()
    spec["mesh"]["id"] = "other"
    config = write_stack(tmp_path, spec)
    result = invoke("dr", "plan", "--config", str(config), "--cluster", "east",
                    "--pki-dir", str(rendered.parent / ".meshboot" / "dev" / "pki"))
    assert result.exit_code == 2 and "mesh" in result.output


def test_every_printed_urn_is_in_the_program_graph(rendered: Path) -> None:
    before = listing(rendered.parent)
    result = invoke("dr", "plan", "--config", str(rendered), "--cluster", "east")
    assert result.exit_code == 0, result.output
    assert listing(rendered.parent) == before   # read-only
    printed = urns(result.output)
    assert len(printed) > 20
    graph = {r.urn for r in run_program(with_fake_kubeconfigs(three()), stack="dev").resources}
    # ConfigGroup children are registered by the provider, not under mocks (test_dr_graph).
    top = [u for u in printed if "ConfigGroup$" not in u]
    assert top and set(top) <= graph, sorted(set(top) - graph)
    out = result.output
    assert "Secret istio-system/istio-remote-secret-east in west" in out
    assert "Secret istio-system/istio-remote-secret-south in east" in out
    assert "Secret istio-system/istio-reader-token-1 in east" in out
    assert "south-istiod in south: uses east's east-west gateway address" in out
    assert "kept: the PKI store" in out and "--replace" not in out
    assert "PULUMI_K8S_DELETE_UNREACHABLE=true pulumi refresh --stack dev --yes" in out
    # east, then west (holds istio-remote-secret-east), south (its istiod uses east's gateway)
    assert (f"meshboot verify --config {rendered} --cluster east --cluster west "
            "--cluster south --wait 5m") in out


def test_lost_store_entry_reissues_the_intermediate(rendered: Path, tmp_path: Path) -> None:
    store = tmp_path / "pki"
    shutil.copytree(rendered.parent / ".meshboot" / "dev" / "pki", store)
    shutil.rmtree(store / "clusters" / "west")
    result = invoke("dr", "plan", "--config", str(rendered), "--cluster", "west",
                    "--pki-dir", str(store), "--stack", "acme/meshboot/dev")
    assert result.exit_code == 0, result.output
    assert "re-issued under the same root" in result.output
    replaced = re.findall(r"--replace '([^']+)'", result.output)
    assert replaced == ["urn:pulumi:dev::meshboot::meshboot:index:MeshEnvironment$"
                        "meshboot:index:MeshPki$pulumi-python:dynamic/meshboot:IntermediateCA"
                        "::west-ca"]
    assert "pulumi up --stack acme/meshboot/dev" in result.output


def test_project_name_from_pulumi_yaml(rendered: Path, tmp_path: Path) -> None:
    shutil.copy(rendered, tmp_path / "Pulumi.dev.yaml")
    shutil.copytree(rendered.parent / ".meshboot", tmp_path / ".meshboot")
    (tmp_path / "Pulumi.yaml").write_text("name: platform-mesh\nruntime: python\n")
    result = invoke("dr", "plan", "--config", str(tmp_path / "Pulumi.dev.yaml"),
                    "--cluster", "west")
    assert result.exit_code == 0, result.output
    printed = urns(result.output)
    assert printed and all(u.startswith("urn:pulumi:dev::platform-mesh::") for u in printed)


@pytest.mark.parametrize(("pulumi_yaml", "says"), [
    ("runtime: python\n", "name: the project's name is missing"),
    ("name: 5\nruntime: python\n", "name: the project's name is missing or not a string"),
    ("name: [unclosed\n", "cannot read the project's name"),
])
def test_a_pulumi_yaml_pulumi_refuses_gives_no_urns(rendered: Path, tmp_path: Path,
                                                     pulumi_yaml: str, says: str) -> None:
    """URNs of a made-up project would match nothing in the state: exit 2, unless --project."""
    shutil.copy(rendered, tmp_path / "Pulumi.dev.yaml")
    shutil.copytree(rendered.parent / ".meshboot", tmp_path / ".meshboot")
    (tmp_path / "Pulumi.yaml").write_text(pulumi_yaml)
    config = str(tmp_path / "Pulumi.dev.yaml")
    for command in (["plan", "--cluster", "west"], ["adopt"]):
        result = invoke("dr", *command, "--config", config)
        assert result.exit_code == 2, result.output
        assert f"{tmp_path / 'Pulumi.yaml'}: {says}" in result.output
        assert "urn:pulumi" not in result.output and "Traceback" not in result.output
    given = invoke("dr", "plan", "--config", config, "--cluster", "west", "--project", "p1")
    assert given.exit_code == 0, given.output
    assert all(u.startswith("urn:pulumi:dev::p1::") for u in urns(given.output))


@pytest.fixture(scope="module")
def with_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stack file holding the root (meshboot pki init), no PKI store."""
    config = write_stack(tmp_path_factory.mktemp("root"), three())
    assert invoke("pki", "init", "--config", str(config)).exit_code == 0
    return config


def test_root_in_the_stack_file_is_enough(with_root: Path) -> None:
    """The whole environment lost: stack file + passphrase, no PKI store anywhere."""
    config, tmp_path = with_root, with_root.parent
    result = invoke("dr", "plan", "--config", str(config), "--cluster", "west")
    assert result.exit_code == 0, result.output
    assert "meshboot:pki.rootCa" in result.output
    assert "kept in Pulumi state (no PKI store" in result.output
    assert not (tmp_path / ".meshboot").exists()
    wrong = invoke("dr", "plan", "--config", str(config), "--cluster", "west",
                   env={"PULUMI_CONFIG_PASSPHRASE": "wrong"})
    assert wrong.exit_code == 2 and "Traceback" not in wrong.output


def test_adopt_refuses_without_the_root_in_the_stack_file(rendered: Path) -> None:
    result = invoke("dr", "adopt", "--config", str(rendered))
    assert result.exit_code == 2
    assert "meshboot:pki.rootCa" in result.output and "--target" not in result.output


def test_adopt_imports_every_release_where_the_program_puts_it(with_root: Path) -> None:
    spec, config = three(), with_root
    result = invoke("dr", "adopt", "--config", str(config))
    assert result.exit_code == 0, result.output
    imports = re.findall(r"pulumi import --stack dev --yes --protect=false --generate-code=false "
                         r"'kubernetes:helm\.sh/v3:Release' (\S+) (\S+) \\\n"
                         r"  --parent 'cluster=([^']+)' \\\n  --provider 'k8s=([^']+)'",
                         result.output)
    run = run_program(with_fake_kubeconfigs(spec), stack="dev")
    releases = {r.name: r for r in run.of_type("kubernetes:helm.sh/v3:Release")}
    assert sorted(name for name, *_ in imports) == sorted(releases)
    for name, release_id, parent, provider in imports:
        r = releases[name]
        assert release_id == f"{r.inputs['namespace']}/{r.inputs['name']}"
        assert parent == r.parent
        assert r.provider.rsplit("::", 1)[0] == provider
    targets = urns(result.output)
    assert targets and set(targets) <= {r.urn for r in run.resources}
    assert "MESHBOOT_ADOPT_EXISTING=1 pulumi up --stack dev\n" in result.output
    assert "pulumi preview --stack dev --expect-no-changes" in result.output


def shell_calls(script: str, cwd: Path) -> list[list[str]]:
    """Run ``script`` in a POSIX shell with ``pulumi`` and ``meshboot`` as functions that
    print their arguments: the words each command really passes, after the shell's quoting."""
    sh = shutil.which("sh")
    if sh is None:
        pytest.skip("no POSIX sh on this machine")
    record = ('r() { printf "%s" "$1"; shift; for a in "$@"; do printf "\\n%s" "$a"; done; '
              'printf "\\n\\036"; }\npulumi() { r pulumi "$@"; }\nmeshboot() { r meshboot "$@"; }\n')
    out = subprocess.run([sh, "-c", record + script], cwd=cwd, capture_output=True, text=True,
                         check=True, timeout=10).stdout
    return [call.strip("\n").split("\n") for call in out.split("\036") if call.strip("\n")]


@pytest.fixture(scope="module")
def graph() -> set[str]:
    """The URNs the program registers for ``three()`` as stack dev (project meshboot)."""
    return {r.urn for r in run_program(with_fake_kubeconfigs(three()), stack="dev").resources}


def test_printed_commands_survive_a_posix_shell(with_root: Path, tmp_path: Path,
                                                graph: set[str]) -> None:
    """A project whose stack files live in a directory with a space in its name
    (Pulumi.yaml's stackConfigDir): the commands run where Pulumi.yaml is, every URN reaches
    pulumi as one word with its `$` and `::`, the stack file path too."""
    sub = tmp_path / "stacks dir"
    sub.mkdir()
    config = sub / "Pulumi.dev.yaml"
    shutil.copy(with_root, config)
    (tmp_path / "Pulumi.yaml").write_text("name: platform\nruntime: python\n"
                                          "stackConfigDir: stacks dir\n")
    result = invoke("dr", "plan", "--config", str(config), "--cluster", "east")
    assert result.exit_code == 0, result.output
    assert f"run them in {tmp_path}, where Pulumi.yaml is" in result.output
    script = result.output.split("PULUMI_CONFIG_PASSPHRASE set):", 1)[1]
    calls = shell_calls(script, tmp_path)
    assert [c[:2] for c in calls] == [["pulumi", "refresh"], ["pulumi", "up"],
                                      ["meshboot", "verify"]]
    for call in calls[:2]:
        assert call[2:4] == ["--stack", "dev"]
        targets = [call[i + 1] for i, a in enumerate(call) if a == "--target"]
        assert targets and all(t.startswith("urn:pulumi:dev::platform::") for t in targets)
        top = {t.replace("::platform::", "::meshboot::", 1) for t in targets
               if "ConfigGroup$" not in t}
        assert top <= graph, sorted(top - graph)   # the program's URNs, whole
    verify = calls[2]
    assert verify[1:5] == ["verify", "--config", "stacks dir/Pulumi.dev.yaml", "--cluster"]
    assert verify[4:6] == ["--cluster", "east"] and verify[-2:] == ["--wait", "5m"]
    assert (tmp_path / verify[3]).is_file()


@pytest.mark.parametrize("args, says", [
    (["--stack", "my stack"], "--stack: 'my stack' is not a Pulumi stack name"),
    (["--stack", "acme/other/dev"], "names project 'other'"),
    (["--stack", "a/b/c/d"], "is not a Pulumi stack name"),
    (["--stack", "acme/"], "is not a Pulumi stack name"),
    (["--project", "x;rm -rf"], "--project: 'x;rm -rf' is not a Pulumi project name"),
])
def test_names_pulumi_refuses_are_refused(with_root: Path, args: list[str], says: str) -> None:
    for command in (["dr", "plan", "--config", str(with_root), "--cluster", "east"],
                    ["dr", "adopt", "--config", str(with_root)]):
        result = invoke(*command, *args)
        assert result.exit_code == 2, result.output
        assert says in result.output and "Traceback" not in result.output
        assert "--target" not in result.output and "pulumi " not in result.output


def test_stack_name_from_the_file_name_is_checked(with_root: Path, tmp_path: Path) -> None:
    config = tmp_path / "Pulumi.my env.yaml"
    shutil.copy(with_root, config)
    result = invoke("dr", "plan", "--config", str(config), "--cluster", "east")
    assert result.exit_code == 2, result.output
    assert "'my env' is not a Pulumi stack name" in result.output
    assert "the stack name from the file name" in result.output   # not blamed on --stack


def test_a_store_of_another_root_is_refused_with_the_root_in_the_stack_file(
        with_root: Path, rendered: Path) -> None:
    """The stack file holds the root; the store was made for another root (another copy of
    the environment): its intermediates are not this mesh's, so nothing is claimed kept."""
    store = rendered.parent / ".meshboot" / "dev" / "pki"
    result = invoke("dr", "plan", "--config", str(with_root), "--cluster", "west",
                    "--pki-dir", str(store))
    assert result.exit_code == 2, result.output
    assert f"PKI store {store} holds root" in result.output
    assert "Traceback" not in result.output and "--target" not in result.output
    # The same store with its own root in the stack file is fine.
    assert invoke("dr", "plan", "--config", str(rendered), "--cluster", "west").exit_code == 0


def test_linkerd_restarts_reach_each_peer_as_pulumi_does(tmp_path: Path) -> None:
    """The restart commands name each peer the way the program reaches it: the spec's
    kubeconfig file (resolved beside the stack file) and context."""
    from tests.stacks.linkerd.specs import three_clusters

    spec = three_clusters()
    spec["clusters"][0].update({"context": "kind a", "kubeconfig": "kube/a.yaml"})
    spec["clusters"][2]["context"] = "kind-c"
    config = write_stack(tmp_path, spec)
    assert invoke("pki", "init", "--config", str(config)).exit_code == 0
    result = invoke("dr", "plan", "--config", str(config), "--cluster", "b")
    assert result.exit_code == 0, result.output
    assert "deployment linkerd-multicluster/controller-b in a" in result.output
    script = result.output.split("PULUMI_CONFIG_PASSPHRASE set):", 1)[1]
    kubectl = [call for call in shell_calls(
        "kubectl() { r kubectl \"$@\"; }\n" + script, tmp_path) if call[0] == "kubectl"]
    assert kubectl == [
        ["kubectl", "--kubeconfig", str(tmp_path / "kube" / "a.yaml"), "--context", "kind a",
         "-n", ns, "rollout", "restart", f"deployment/{d}"]
        for ns, d in (("linkerd", "linkerd-destination"),
                      ("linkerd-multicluster", "controller-b"))] + [
        ["kubectl", "--context", "kind-c", "-n", ns, "rollout", "restart", f"deployment/{d}"]
        for ns, d in (("linkerd", "linkerd-destination"),
                      ("linkerd-multicluster", "controller-b"))]


def test_one_cluster_per_plan(with_root: Path) -> None:
    """Two --cluster options are refused, not silently planned for the last one only."""
    result = invoke("dr", "plan", "--config", str(with_root), "--cluster", "east",
                    "--cluster", "west")
    assert result.exit_code == 2, result.output
    assert "one cluster per plan (got east, west)" in result.output
    assert "urn:pulumi" not in result.output
