"""Running the workflow's shell scripts (.github/scripts) as the workflow runs them:
bash with this virtualenv's `meshboot` on PATH, the step outputs file read back."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

SCRIPTS = REPO / ".github" / "scripts"
MESHBOOT = Path(sys.executable).parent / "meshboot"
PASSPHRASE = "ci-test-passphrase"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def step_outputs(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line)


def run(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {"PATH": f"{MESHBOOT.parent}:/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run([tool("bash"), str(SCRIPTS / script)], cwd=cwd, env=base | env,
                          capture_output=True, text=True, timeout=120, check=False)


def git(repo: Path, *args: str) -> str:
    return subprocess.run([tool("git"), "-C", str(repo), "-c", "user.name=t", "-c",
                           "user.email=t@example.invalid", *args], capture_output=True,
                          text=True, check=True, timeout=30).stdout.strip()
