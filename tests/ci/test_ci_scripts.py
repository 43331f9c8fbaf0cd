"""The workflow's shell scripts (.github/scripts), run as the workflow runs them.

- list-environments.sh: the matrices, a MESHBOOT_ENVIRONMENTS name without a stack file,
  a stack file the pull request removes, the environments a push deploys;
- deploy-under-way.sh: drift detection's guard, against a stand-in `gh`.
(render-pr.sh: test_ci_render.py.)
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.ci.scripts_harness import SCRIPTS, git, run, step_outputs, tool

# -- list-environments.sh ------------------------------------------------------------


@pytest.fixture()
def stacks(tmp_path: Path) -> Path:
    tool("jq")
    for env in ("staging", "prod"):
        (tmp_path / f"Pulumi.{env}.yaml").write_text("config: {}\n")
    (tmp_path / "Pulumi.yaml").write_text("name: meshboot\n")
    return tmp_path


def test_every_stack_file_is_reviewed_when_none_is_deployed(stacks: Path) -> None:
    out = stacks / "out"
    result = run("list-environments.sh", stacks, {"GITHUB_OUTPUT": str(out),
                                                   "MESHBOOT_ENVIRONMENTS": " "})
    assert result.returncode == 0, result.stdout + result.stderr
    lists = {k: json.loads(v) for k, v in step_outputs(out).items()}
    assert lists == {"review": ["prod", "staging"], "deploy": []}


def test_deployed_environments_are_the_listed_ones(stacks: Path) -> None:
    out = stacks / "out"
    result = run("list-environments.sh", stacks, {"GITHUB_OUTPUT": str(out),
                                                   "MESHBOOT_ENVIRONMENTS": "prod"})
    assert result.returncode == 0, result.stdout + result.stderr
    lists = {k: json.loads(v) for k, v in step_outputs(out).items()}
    assert lists == {"review": ["prod"], "deploy": ["prod"]}


def test_a_listed_environment_without_stack_file_fails(stacks: Path) -> None:
    out = stacks / "out"
    result = run("list-environments.sh", stacks, {"GITHUB_OUTPUT": str(out),
                                                   "MESHBOOT_ENVIRONMENTS": "prod prd qa"})
    assert result.returncode == 1
    errors = [line for line in result.stdout.splitlines() if line.startswith("::error::")]
    assert len(errors) == 2 and "'prd'" in errors[0] and "Pulumi.prd.yaml" in errors[0]
    assert "'qa'" in errors[1]
    assert step_outputs(out) == {}  # no matrix: no job runs for a half-right list


def test_a_stack_file_removed_by_the_pull_request_is_warned(stacks: Path) -> None:
    git(stacks, "init", "-q")
    (stacks / "Pulumi.old.yaml").write_text("config: {}\n")
    git(stacks, "add", "Pulumi.old.yaml", "Pulumi.prod.yaml")
    git(stacks, "commit", "-qm", "base")
    base = git(stacks, "rev-parse", "HEAD")
    (stacks / "Pulumi.old.yaml").unlink()
    out = stacks / "out"
    result = run("list-environments.sh", stacks, {"GITHUB_OUTPUT": str(out),
                                                   "MESHBOOT_ENVIRONMENTS": "", "BASE_REF": base})
    assert result.returncode == 0, result.stdout + result.stderr
    warnings = [line for line in result.stdout.splitlines() if line.startswith("::warning")]
    assert len(warnings) == 1 and "file=Pulumi.old.yaml::" in warnings[0]
    assert "pulumi destroy --stack old" in warnings[0]
    assert json.loads(step_outputs(out)["review"]) == ["prod", "staging"]


# -- list-environments.sh on a push ------------------------------------------------------


@pytest.fixture()
def pushed(stacks: Path) -> tuple[Path, str]:
    git(stacks, "init", "-q")
    (stacks / "stacks").mkdir()
    (stacks / "stacks" / "plan.py").write_text("x = 1\n")
    git(stacks, "add", ".")
    git(stacks, "commit", "-qm", "before")
    return stacks, git(stacks, "rev-parse", "HEAD")


def _deployed(repo: Path, before: str) -> subprocess.CompletedProcess[str]:
    return run("list-environments.sh", repo, {"GITHUB_OUTPUT": str(repo / ".out"),
                                               "MESHBOOT_ENVIRONMENTS": "staging prod",
                                               "CHANGED_SINCE": before})


def test_a_push_deploys_the_environments_whose_stack_file_changed(pushed: tuple[Path, str]) -> None:
    repo, before = pushed
    (repo / "Pulumi.staging.yaml").write_text("config: {a: 1}\n")
    (repo / "README.md").write_text("docs\n")  # does not change what is deployed
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "staging")
    result = _deployed(repo, before)
    assert result.returncode == 0, result.stdout + result.stderr
    found = step_outputs(repo / ".out")
    assert json.loads(found["deploy"]) == ["staging"]
    assert json.loads(found["review"]) == ["prod", "staging"]


def test_a_push_changing_meshboot_deploys_every_environment(pushed: tuple[Path, str]) -> None:
    repo, before = pushed
    (repo / "stacks" / "plan.py").write_text("x = 2\n")
    git(repo, "commit", "-qam", "code")
    result = _deployed(repo, before)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(step_outputs(repo / ".out")["deploy"]) == ["prod", "staging"]


def test_an_unknown_previous_head_deploys_every_environment(pushed: tuple[Path, str]) -> None:
    repo, _ = pushed
    for before in ("0" * 40, "1234567890abcdef1234567890abcdef12345678"):  # new branch, force push
        result = _deployed(repo, before)
        assert result.returncode == 0, result.stdout + result.stderr
        assert json.loads(step_outputs(repo / ".out")["deploy"]) == ["prod", "staging"]


# -- deploy-under-way.sh ------------------------------------------------------------------

FAKE_GH = """#!/usr/bin/env bash
# gh stand-in: the canned API answer for `run list` / `run view ID`, filtered by --jq as gh does.
jq_expr=""; prev=""
for arg in "$@"; do [ "$prev" = "--jq" ] && jq_expr="$arg"; prev="$arg"; done
echo "$*" >> "$FAKE_GH_DIR/calls"
if [ "$1 $2" = "run list" ]; then file="$FAKE_GH_DIR/runs.json"; else file="$FAKE_GH_DIR/run-$3.json"; fi
jq -r "$jq_expr" "$file"
"""


@pytest.mark.parametrize(("job_status", "check"), [
    ("in_progress", "false"), ("queued", "false"), ("waiting", "true"), ("completed", "true")])
def test_drift_waits_for_a_queued_or_running_up(tmp_path: Path, job_status: str, check: str) -> None:
    tool("jq")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gh").write_text(FAKE_GH)
    (bin_dir / "gh").chmod(0o755)
    (tmp_path / "runs.json").write_text(json.dumps([
        {"databaseId": 11, "status": "in_progress"}, {"databaseId": 10, "status": "completed"}]))
    (tmp_path / "run-11.json").write_text(json.dumps({"jobs": [
        {"name": "list environments", "status": "completed"},
        {"name": "pulumi up (staging)", "status": "in_progress"},
        {"name": "pulumi up (prod)", "status": job_status}]}))
    out = tmp_path / "out"
    result = subprocess.run(
        [tool("bash"), str(SCRIPTS / "deploy-under-way.sh")], cwd=tmp_path,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_GH_DIR": str(tmp_path),
             "JOB_NAME": "pulumi up (prod)", "GITHUB_REPOSITORY": "acme/mesh",
             "GITHUB_WORKFLOW_REF": "acme/mesh/.github/workflows/meshboot.yml@refs/heads/main",
             "GITHUB_OUTPUT": str(out)},
        capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert step_outputs(out) == {"check": check}
    assert ("::notice::" in result.stdout) == (check == "false")
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[0].startswith("run list --repo acme/mesh --workflow meshboot.yml --event push")
    assert [c.split()[2] for c in calls[1:]] == ["11"]  # only the unfinished run is read


# -- render-pr.sh's decisions, with a stand-in meshboot (the real one: test_ci_render.py) --

FAKE_MESHBOOT = """#!/usr/bin/env bash
# meshboot stand-in: `render --config F --out DIR --pki-dir P` prints the root line the
# stack file's first line asks for (`# root: imported|new`) and records its PKI store;
# like render, it refuses to import a root into a store holding one it made up.
config=""; out=""; pki=""
while [ $# -gt 0 ]; do
  case "$1" in --config) config="$2"; shift ;; --out) out="$2"; shift ;; --pki-dir) pki="$2"; shift ;; esac
  shift
done
root="$(head -n1 "$config")"
if [ "$root" = "# root: imported" ] && [ -e "$pki/made-up-root" ]; then
  echo "error: PKI store: ... root rotation is not done implicitly. Nothing was changed." >&2
  exit 2
fi
mkdir -p "$out" "$pki"
echo "$out $pki" >> "$FAKE_LOG"
case "$root" in
  "# root: imported") echo "root CA: SHA-256 aa11 (imported: from $config (meshboot:pki.rootCa))" ;;
  *) touch "$pki/made-up-root"
     echo "root CA: SHA-256 bb22 (new: generated now into the PKI store $pki; keep it ...)" ;;
esac
"""


@pytest.mark.parametrize(("base_root", "head_root", "deployed", "annotation", "shared"), [
    ("imported", "imported", True, None, True),
    ("new", "imported", True, None, False),
    ("new", "new", False, "::warning", True),   # the head reuses the root the base made up
    ("imported", "new", True, "::error", True),
])
def test_render_pr_decisions(tmp_path: Path, base_root: str, head_root: str, deployed: bool,
                             annotation: str | None, shared: bool) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    stack = repo / "Pulumi.prod.yaml"
    stack.write_text(f"# root: {base_root}\nconfig: {{}}\n")
    git(repo, "add", stack.name)
    git(repo, "commit", "-qm", "base")
    base = git(repo, "rev-parse", "HEAD")
    stack.write_text(f"# root: {head_root}\nconfig: {{}}\n")
    fake = tmp_path / "meshboot"
    fake.write_text(FAKE_MESHBOOT)
    fake.chmod(0o755)
    runner = tmp_path / "runner"
    runner.mkdir()
    log = tmp_path / "calls"
    result = run("render-pr.sh", repo, {
        "STACK_FILE": stack.name, "BASE_SHA": base, "RUNNER_TEMP": str(runner),
        "GITHUB_OUTPUT": str(runner / "out"), "MESHBOOT": str(fake), "BASE_MESHBOOT": str(fake),
        "DEPLOYED": str(deployed).lower(), "FAKE_LOG": str(log)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert step_outputs(runner / "out") == {"base_exists": "true", "base_root": base_root,
                                        "head_root": head_root}
    (base_out, base_pki), (head_out, head_pki) = (line.split() for line in log.read_text().splitlines())
    assert (base_out, head_out) == (str(runner / "render" / "base"), str(runner / "render" / "head"))
    assert (head_pki == base_pki) == shared
    annotations = [line for line in result.stdout.splitlines() if line.startswith("::")]
    if annotation is None:
        assert annotations == []
    else:
        assert len(annotations) == 1
        assert annotations[0].startswith(f"{annotation} file=Pulumi.prod.yaml::")
        assert "meshboot pki init --config Pulumi.prod.yaml" in annotations[0]
    notes = (runner / "notes.md").read_text()
    assert ("has no `meshboot:pki.rootCa`: its render used a root CA made up" in notes) == \
        (base_root != "imported")
