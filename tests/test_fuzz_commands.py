"""Mutated stack files through the commands that read a spec but write no render:
``validate``, ``graph``, ``rotate root --status`` and ``dr plan``.

Bases beyond the bundled files: the example with ``meshboot:delivery`` and
``meshboot:observability`` set, and the example in the middle of a root rotation
(``meshboot:pki.rootCa`` and ``meshboot:pki.rotation`` with ``secure:`` keys), so
the newer spec sections are mutated too. Whatever the input: exit 0 or a clear
exit 2 (``dr plan`` and ``rotate`` may also refuse with 2), never a traceback or a
hang, and none of them writes anything (the stack file is unchanged, no PKI
store appears).
"""

from __future__ import annotations

import hashlib
import random
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import clusters.pulumi_secrets as pulumi_secrets
from scripts.cli import cli
from tests.conftest import REPO
from tests.test_fuzz import MUTATIONS, VALUES

SEED = 20261203
CASES = 160
CASE_SECONDS = 10.0  # a hang guard, not a benchmark
PASSPHRASE = "fuzz"
DELIVERY = (b"  meshboot:delivery:\n    engine: flagger\n"
            b"    analysis: {interval: 1m, threshold: 5, stepWeight: 10, maxWeight: 50,"
            b" successRate: 99, latencyP99: 500ms}\n"
            b"  meshboot:observability:\n    kiali: {}\n")


def _invoke(*args: str) -> object:
    return CliRunner().invoke(cli, list(args), env={
        "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE, "PULUMI_CONFIG_PASSPHRASE_FILE": None,
        "MESHBOOT_PKI_PASSPHRASE": None})


@pytest.fixture(scope="module")
def bases() -> dict[str, bytes]:
    dev = (REPO / "Pulumi.dev.yaml").read_bytes()
    # a fixed file (not made at test time) so that a failing case reproduces byte for byte
    rotating = (REPO / "tests/data/fuzz/Pulumi.rotation.yaml").read_bytes()
    return {"Pulumi.dev.yaml": dev,
            "Pulumi.linkerd.yaml": (REPO / "examples/Pulumi.linkerd.yaml").read_bytes(),
            "delivery": dev.rstrip(b"\n") + b"\n" + DELIVERY,
            "rotation": rotating}


def swap_pki_value(rng: random.Random, data: bytes) -> bytes:
    """A value inside ``meshboot:pki`` (root, rotation phase, clusters, times, new root)
    replaced, or a rotation key added: the rotation's own keys get mutated, not just
    the rest of the file."""
    lines = data.split(b"\n")
    start = next((i for i, line in enumerate(lines) if line.startswith(b"  meshboot:pki:")), None)
    if start is None:  # an earlier mutation took it
        return data
    end = next((i for i in range(start + 1, len(lines))
                if lines[i].startswith(b"  ") and not lines[i].startswith(b"   ")), len(lines))
    candidates = [i for i in range(start + 1, end) if b": " in lines[i]]
    value = rng.choice(VALUES + ['"drop-old"', "3", "sign-with-new", "{east: drop-old}",
                                 "{nowhere: trust-both}", '"2999-01-01T00:00:00Z"', '"yesterday"'])
    if rng.random() < 0.3:
        key = rng.choice([b"clusters", b"signingSince", b"abortedAt", b"phase", b"since", b"extra"])
        at = next((i for i in range(start, end) if lines[i].strip() == b"rotation:"), start)
        lines.insert(at + 1, b"      " + key + b": " + value.encode())
        return b"\n".join(lines)
    if not candidates:
        return data
    i = rng.choice(candidates)
    lines[i] = lines[i].split(b": ", 1)[0] + b": " + value.encode()
    return b"\n".join(lines)


def _mutated(bases: dict[str, bytes], case: int) -> tuple[str, bytes, list[str]]:
    rng = random.Random(f"{SEED}:{case}")
    name = rng.choice(sorted(bases))
    data = bases[name]
    applied = []
    for _ in range(rng.choice([1, 1, 2])):
        fn = swap_pki_value if name == "rotation" and rng.random() < 0.7 else rng.choice(MUTATIONS)
        data = fn(rng, data)
        applied.append(fn.__name__)
    return name, data, applied


def test_unmutated_bases_are_accepted(bases: dict[str, bytes], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The bases themselves are valid, so the mutations start from working input."""
    monkeypatch.setattr(pulumi_secrets, "PBKDF2_ITERATIONS", 1000)
    for name, data in bases.items():
        config = tmp_path / name / "Pulumi.dev.yaml"
        config.parent.mkdir()
        config.write_bytes(data)
        result = _invoke("validate", "--config", str(config))
        assert result.exit_code == 0, f"{name}: {result.output}"  # type: ignore[attr-defined]
    config = tmp_path / "rotation" / "Pulumi.dev.yaml"
    for command in (["rotate", "root", "--status"], ["dr", "plan", "--cluster", "east"]):
        result = _invoke(*command, "--config", str(config))
        assert result.exit_code == 0, f"{command}: {result.output}"  # type: ignore[attr-defined]


def test_mutated_specs_never_crash_the_read_only_commands(
        bases: dict[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pulumi_secrets, "PBKDF2_ITERATIONS", 1000)
    exits: dict[str, set[int]] = {}
    for case in range(CASES):
        name, data, applied = _mutated(bases, case)
        workdir = tmp_path / str(case)
        workdir.mkdir()
        config = workdir / "Pulumi.dev.yaml"
        config.write_bytes(data)
        before = hashlib.sha256(data).hexdigest()
        for command in (["validate"], ["graph", "--format", "mermaid"],
                        ["rotate", "root", "--status"], ["dr", "plan", "--cluster", "east"]):
            started = time.monotonic()
            result = _invoke(*command, "--config", str(config))
            elapsed = time.monotonic() - started
            output = result.output  # type: ignore[attr-defined]
            code = result.exit_code  # type: ignore[attr-defined]
            exc = result.exception  # type: ignore[attr-defined]
            where = f"{' '.join(command)}, case {case} (seed {SEED}, {name}, {applied}):\n{output[-2000:]}"
            assert code in (0, 2), where
            assert exc is None or isinstance(exc, SystemExit), f"{where}\n{exc!r}"
            assert "Traceback" not in output, where
            assert elapsed < CASE_SECONDS, f"{where}\ntook {elapsed:.1f}s"
            if code == 2:
                assert "error" in output.lower(), where
            exits.setdefault(command[0], set()).add(code)
        assert hashlib.sha256(config.read_bytes()).hexdigest() == before, f"case {case}: stack file changed"
        assert sorted(p.name for p in workdir.iterdir()) == ["Pulumi.dev.yaml"], \
            f"case {case}: files written: {sorted(p.name for p in workdir.iterdir())}"
    # the mutations reach both outcomes, so the run exercised more than the parser
    assert exits["validate"] == {0, 2} and exits["graph"] == {0, 2}, exits
    assert exits["rotate"] == {0, 2}, exits
