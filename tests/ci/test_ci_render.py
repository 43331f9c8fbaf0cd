"""render-pr.sh: a pull request's base and head renders on a fresh runner (no PKI store),
with the real `meshboot` of this virtualenv, in a throwaway git repository whose commits
are: no stack file; a stack file without a root; `meshboot pki init`; a change.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.ci.scripts_harness import MESHBOOT, PASSPHRASE, git, run, step_outputs
from tests.conftest import base_spec, write_stack

# -- render-pr.sh ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """c0 no stack file; c1 Pulumi.prod.yaml without a root; c2 `pki init`; c3 a change."""
    if not MESHBOOT.exists():
        pytest.skip(f"{MESHBOOT} not installed (pip install -e .)")
    repo = tmp_path_factory.mktemp("history")
    git(repo, "init", "-q")
    (repo / "README").write_text("x\n")
    git(repo, "add", "README")
    git(repo, "commit", "-qm", "c0")
    commits = {"c0": git(repo, "rev-parse", "HEAD")}
    spec = base_spec()
    spec["services"][0]["timeout"] = "3s"
    stack = write_stack(repo, spec, env="prod")
    git(repo, "add", stack.name)
    git(repo, "commit", "-qm", "c1")
    commits["c1"] = git(repo, "rev-parse", "HEAD")
    init = subprocess.run([str(MESHBOOT), "pki", "init", "--config", stack.name], cwd=repo,
                          env={"PATH": "/usr/bin:/bin", "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE},
                          capture_output=True, text=True, timeout=120, check=False)
    assert init.returncode == 0, init.stderr
    git(repo, "commit", "-qam", "c2")
    commits["c2"] = git(repo, "rev-parse", "HEAD")
    data = yaml.safe_load(stack.read_text())
    data["config"]["meshboot:services"][0]["timeout"] = "7s"
    stack.write_text(yaml.safe_dump(data, sort_keys=False))
    git(repo, "commit", "-qam", "c3")
    commits["c3"] = git(repo, "rev-parse", "HEAD")
    return repo, commits


def _review(history: tuple[Path, dict[str, str]], tmp: Path, base: str, head: str,
            deployed: bool) -> tuple[subprocess.CompletedProcess[str], dict[str, str], Path]:
    repo, commits = history
    checkout = tmp / "checkout"
    git(repo, "worktree", "add", "-q", "--detach", str(checkout), commits[head])
    runner = tmp / "runner"
    runner.mkdir()
    out = runner / "github_output"
    result = run("render-pr.sh", checkout, {
        "STACK_FILE": "Pulumi.prod.yaml", "BASE_SHA": commits[base], "RUNNER_TEMP": str(runner),
        "GITHUB_OUTPUT": str(out), "MESHBOOT": str(MESHBOOT), "BASE_MESHBOOT": str(MESHBOOT),
        "DEPLOYED": "true" if deployed else "false", "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE})
    return result, step_outputs(out), runner


def _diff(runner: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(MESHBOOT), "diff", str(runner / "render" / "base"),
                           str(runner / "render" / "head")], capture_output=True, text=True,
                          timeout=120, check=False)


def test_the_pull_request_running_pki_init_is_reviewed(
        history: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    # The base render makes a root up (no rootCa, fresh runner); sharing its store with
    # the head, which imports the stack file's root, was refused with exit 2.
    result, outputs, runner = _review(history, tmp_path, "c1", "c2", deployed=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert outputs == {"base_exists": "true", "base_root": "new", "head_root": "imported"}
    assert "::error" not in result.stdout
    assert "has no `meshboot:pki.rootCa`" in (runner / "notes.md").read_text()
    diff = _diff(runner)
    assert diff.returncode == 3, diff.stderr
    assert "NEW ROOT" in diff.stdout


def test_a_change_under_the_stack_files_root_shows_only_the_change(
        history: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    result, outputs, runner = _review(history, tmp_path, "c2", "c3", deployed=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert outputs == {"base_exists": "true", "base_root": "imported", "head_root": "imported"}
    assert (runner / "notes.md").read_text() == ""
    diff = _diff(runner)
    assert diff.returncode == 3, diff.stderr
    assert "root unchanged" in diff.stdout and "NEW ROOT" not in diff.stdout
    assert "re-issued" not in diff.stdout  # the head reused the base's intermediates
    assert 'timeout: "3s" -> "7s"' in diff.stdout


def test_a_new_environment_without_root(history: tuple[Path, dict[str, str]],
                                        tmp_path: Path) -> None:
    """Deployed: an error annotation (the workflow fails the job after the comment);
    test_ci_scripts.py has the warning of an environment that is not deployed."""
    result, outputs, runner = _review(history, tmp_path, "c0", "c1", deployed=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert outputs == {"base_exists": "false", "base_root": "none", "head_root": "new"}
    assert not (runner / "render" / "base").exists()
    kind = "::error"
    annotations = [line for line in result.stdout.splitlines() if line.startswith("::")]
    assert len(annotations) == 1 and annotations[0].startswith(f"{kind} file=Pulumi.prod.yaml::")
    assert "meshboot pki init --config Pulumi.prod.yaml" in annotations[0]
    assert "No root CA in Pulumi.prod.yaml" in (runner / "notes.md").read_text()




def test_an_environment_without_root_shows_only_the_change(
        history: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    """Neither side has meshboot:pki.rootCa: the head reuses the root and intermediates the
    base made up on the runner, so an unchanged stack file diffs to nothing, not NEW ROOT."""
    result, outputs, runner = _review(history, tmp_path, "c1", "c1", deployed=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert outputs == {"base_exists": "true", "base_root": "new", "head_root": "store"}
    diff = _diff(runner)
    assert diff.returncode == 0, diff.stdout + diff.stderr
    assert "NEW ROOT" not in diff.stdout and "summary: no changes" in diff.stdout
