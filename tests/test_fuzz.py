"""Mutated copies of the bundled stack files through the real ``render`` command.

Whatever the input, the answer is exit 0 or a clear exit 2, never a traceback
or a hang, and a refused file writes nothing (neither output nor PKI store).
Seeded, so a failure names a case that reproduces: the case number, the seed
and the mutations applied are in the assertion message.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from scripts.cli import cli
from tests.conftest import REPO

SEED = 20260808
CASES = 600
CASE_SECONDS = 10.0  # a hang guard, not a benchmark: one render takes well under a second
BASES = {name: (REPO / name).read_bytes() for name in ("Pulumi.dev.yaml", "examples/Pulumi.linkerd.yaml")}

# Values swapped in for a mapping value: wrong types, edge numbers, YAML features.
# No "rsa-*": RSA key generation would make the run slow, not more thorough.
VALUES = [
    "5", "-1", "0", "true", "yes", "no", "null", "~", '"5"', "'true'", "[]", "{}", "[1, 2]",
    "{a: 1}", "3000000", "99999999999999999999999999", "1" * 5000, "1e400", ".nan", "-.inf",
    "0x7fffffffffffffff", "2001-13-45", "2001-12-14", "!!binary aGVsbG8=", "!!set {a, b}",
    "!!python/object/apply:os.system [echo]", "!!omap [a: 1]", "*nowhere", "&anchor value",
    '"\\x00"', '"' + "x" * 400 + '"', "127.0.0.1", "https://localhost:6443", "::1",
    "{secure: 'v1:AAAA:BBBB'}", "{secure: 5}", "/ready", "'ready'", "http://10.0.0.1:6443",
    "ecdsa-p256", "linkerd", "istio", "remote", "east", "99999999999h", "0s", "'9" + "9" * 400 + "h'",
    "[" * 50 + "]" * 50, "[" * 2000 + "]" * 2000, '"\\ud800"', "? [a]\n  : b", "<<: {a: 1}",
]


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def flip_byte(rng: random.Random, data: bytes) -> bytes:
    i = rng.randrange(max(len(data), 1))
    return data[:i] + bytes([rng.randrange(256)]) + data[i + 1:]


def delete_line(rng: random.Random, data: bytes) -> bytes:
    lines = _lines(data)
    del lines[rng.randrange(len(lines))]
    return b"\n".join(lines)


def duplicate_line(rng: random.Random, data: bytes) -> bytes:
    lines = _lines(data)
    i = rng.randrange(len(lines))
    lines.insert(i, lines[i])
    return b"\n".join(lines)


def swap_value(rng: random.Random, data: bytes) -> bytes:
    lines = _lines(data)
    candidates = [i for i, line in enumerate(lines) if b": " in line and not line.lstrip().startswith(b"#")]
    if not candidates:
        return data
    i = rng.choice(candidates)
    key = lines[i].split(b": ", 1)[0]
    lines[i] = key + b": " + rng.choice(VALUES).encode()
    return b"\n".join(lines)


def reindent(rng: random.Random, data: bytes) -> bytes:
    lines = _lines(data)
    i = rng.randrange(len(lines))
    lines[i] = (b" " * rng.randrange(6)) + lines[i].lstrip(b" ")
    return b"\n".join(lines)


def alias_bomb(rng: random.Random, data: bytes) -> bytes:
    bomb = [b"bomb0: &b0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for n in range(1, 10):
        bomb.append(f"bomb{n}: &b{n} [{', '.join([f'*b{n - 1}'] * 9)}]".encode())
    if rng.random() < 0.5:
        return b"\n".join(bomb) + b"\n" + data  # top level, next to config:
    # inside config:, as another provider's value and as a meshboot value
    nested = b"\n".join(b"  x" + line for line in bomb) + b"\n  meshboot:linkerd: *b9\n"
    return data.replace(b"config:\n", b"config:\n" + nested, 1)


def deep_nesting(rng: random.Random, data: bytes) -> bytes:
    depth = rng.choice([40, 200, 990, 3000])
    value = b"[" * depth + b"x" + b"]" * depth
    return data.replace(b"config:\n", b"config:\n  aws:region: " + value + b"\n", 1) \
        if rng.random() < 0.5 else data + b"  meshboot:traffic: {sidecarEgress: {a: " + value + b"}}\n"


def non_utf8(rng: random.Random, data: bytes) -> bytes:
    choice = rng.randrange(3)
    if choice == 0:
        return data.decode(errors="replace").encode("utf-16")
    i = rng.randrange(len(data) + 1)
    return data[:i] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\x1b"]) + data[i:]


def duplicate_key(rng: random.Random, data: bytes) -> bytes:
    lines = _lines(data)
    candidates = [i for i, line in enumerate(lines) if line.strip().lstrip(b"- ").startswith(b"name:")]
    if not candidates:
        return data
    i = rng.choice(candidates)
    again = lines[i].replace(b"- name:", b"  name:")  # the same mapping, not a new list item
    lines.insert(i + 1, again.replace(b"name:", b"name: x") if rng.random() < 0.5 else again)
    return b"\n".join(lines)


def truncate(rng: random.Random, data: bytes) -> bytes:
    return data[:rng.randrange(len(data) + 1)]


MUTATIONS: list[Callable[[random.Random, bytes], bytes]] = [
    flip_byte, delete_line, duplicate_line, swap_value, swap_value, swap_value, reindent,
    alias_bomb, deep_nesting, non_utf8, duplicate_key, truncate,
]


def mutated(case: int) -> tuple[str, bytes, list[str]]:
    rng = random.Random(f"{SEED}:{case}")
    name = rng.choice(sorted(BASES))
    data = BASES[name]
    applied = []
    for _ in range(rng.choice([1, 1, 2, 3])):
        fn = rng.choice(MUTATIONS)
        data = fn(rng, data)
        applied.append(fn.__name__)
    return name, data, applied


@pytest.mark.parametrize("block", range(8))
def test_mutated_stack_files_exit_0_or_2(tmp_path: Path, block: int) -> None:
    for case in range(block, CASES, 8):
        name, data, applied = mutated(case)
        workdir = tmp_path / str(case)
        workdir.mkdir()
        config = workdir / Path(name).name
        config.write_bytes(data)
        out, pki = workdir / "out", workdir / "pki"
        started = time.monotonic()
        result = CliRunner().invoke(
            cli, ["render", "--config", str(config), "--out", str(out), "--pki-dir", str(pki)],
            env={"PULUMI_CONFIG_PASSPHRASE": None, "PULUMI_CONFIG_PASSPHRASE_FILE": None,
                 "MESHBOOT_PKI_PASSPHRASE": None})
        elapsed = time.monotonic() - started
        where = f"case {case} (seed {SEED}, {name}, {applied}):\n{result.output[-3000:]}"
        assert result.exit_code in (0, 2), where
        assert result.exception is None or isinstance(result.exception, SystemExit), \
            f"{where}\n{result.exception!r}"
        assert "Traceback" not in result.output, where
        assert elapsed < CASE_SECONDS, f"{where}\ntook {elapsed:.1f}s"
        if result.exit_code == 2:
            assert any(line.startswith("error: ") for line in result.output.splitlines()), where
            assert not out.exists() and not pki.exists(), f"{where}\nwritten on exit 2"
