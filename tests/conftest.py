from __future__ import annotations

import copy
import gc
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import clusters.pulumi_secrets
from tests.support.speed import MemoPBKDF2HMAC, fsync_disabled

REPO = Path(__file__).resolve().parent.parent
# Memory-backed: tests create thousands of small files and directories (renders, PKI
# stores), and on a busy disk each create costs milliseconds.
TMPFS = Path("/dev/shm")


def pytest_configure(config: pytest.Config) -> None:
    """tmp_path under /dev/shm when it is usable and no other place was asked for; fewer
    garbage collections (see pytest_collection_finish)."""
    gc.set_threshold(20_000, 20, 20)
    if (config.option.basetemp is None and "PYTEST_DEBUG_TEMPROOT" not in os.environ
            and TMPFS.is_dir() and os.access(TMPFS, os.W_OK | os.X_OK)):
        os.environ["PYTEST_DEBUG_TEMPROOT"] = str(TMPFS)


def pytest_collection_finish(session: pytest.Session) -> None:
    """The cyclic GC's passes cost a tenth of the run at Python's default thresholds:
    renders, YAML trees and Pulumi runs allocate millions of objects. What is alive after
    collection (modules, test data) lives to the end, so it is frozen out of every pass."""
    gc.freeze()


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` (pyproject addopts): a worker per usable CPU, at most 4, when the whole
    suite or a directory of tests runs; none (the tests run in this process) for single
    files or tests, where starting workers, each collecting everything, costs more than
    it saves. ``PYTEST_XDIST_AUTO_NUM_WORKERS`` or ``-n N`` decide otherwise."""
    env = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS", "")
    if env.isdigit():
        return int(env)
    whole = config.args_source == pytest.Config.ArgsSource.TESTPATHS or any(
        Path(arg.split("::")[0]).is_dir() for arg in config.args)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = min(cpus, 4)
    return workers if whole and workers > 1 else 0


# yaml.safe_dump's output, emitted by libyaml when PyYAML has it.
_SafeDumper: type = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def base_spec() -> dict[str, Any]:
    """A small valid environment in spec form (keys without the meshboot: prefix)."""
    return {
        "mesh": {"provider": "istio", "id": "mesh1", "trustDomain": "cluster.local"},
        "pki": {"keyAlgorithm": "ecdsa-p256"},
        "clusters": [
            {"name": "east", "apiServer": "https://10.0.0.1:6443", "network": "net-a",
             "region": "us-east1", "zone": "us-east1-b"},
            {"name": "west", "apiServer": "https://10.0.0.2:6443", "network": "net-b",
             "region": "us-west1", "zone": "us-west1-a"},
        ],
        "services": [
            {"name": "reviews", "namespace": "bookinfo", "ports": [{"name": "http", "port": 9080}],
             "clusters": ["east", "west"]},
        ],
    }


def stack_doc(spec: dict[str, Any], **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = dict(extra)
    doc["config"] = {f"meshboot:{k}": v for k, v in spec.items()}
    return doc


def write_stack(directory: Path, spec: dict[str, Any], env: str = "dev", **extra: Any) -> Path:
    path = directory / f"Pulumi.{env}.yaml"
    path.write_text(yaml.dump(stack_doc(copy.deepcopy(spec), **extra), Dumper=_SafeDumper,
                              sort_keys=False))
    return path


@pytest.fixture
def spec() -> dict[str, Any]:
    return base_spec()


_REAL_FSYNC = os.fsync


@pytest.fixture(scope="session", autouse=True)
def _fast_slow_paths() -> Iterator[None]:
    """Memoised PBKDF2 and (unless MESHBOOT_TEST_FSYNC=1) no-op fsync: tests/support/speed.py."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(clusters.pulumi_secrets, "PBKDF2HMAC", MemoPBKDF2HMAC)
        if fsync_disabled():
            mp.setattr(os, "fsync", lambda fd: None)
        yield


@pytest.fixture
def real_fsync(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The real ``os.fsync`` for this test; returns the descriptors it was called with."""
    calls: list[int] = []

    def spy(fd: int) -> None:
        calls.append(fd)
        _REAL_FSYNC(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return calls
