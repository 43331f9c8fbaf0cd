"""A reader that goes away (`meshboot ... | head -1`) ends meshboot quietly, like any CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_closed_stdout_is_not_an_error(tmp_path: Path) -> None:
    meshboot = Path(sys.executable).parent / "meshboot"
    proc = subprocess.Popen([str(meshboot), "validate", "--config", str(REPO / "Pulumi.dev.yaml")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()          # before the interpreter has even started writing
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=60)
    assert "Broken pipe" not in err and "Traceback" not in err, err
    assert code == 1   # click's exit for a closed pipe, not 2 (bad input)
