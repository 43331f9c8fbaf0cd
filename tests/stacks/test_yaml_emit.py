"""The fast YAML writer: same bytes as PyYAML on plan data, and nothing it writes is misread."""

from __future__ import annotations

import random
import string

import pytest
import yaml

from stacks.yaml_emit import YamlWriter, plain_ok, quote

LOADERS = [yaml.SafeLoader, getattr(yaml, "CSafeLoader", yaml.SafeLoader)]


class _Literal(yaml.SafeDumper):
    """PyYAML as render configured it before: literal blocks for multi-line strings."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Literal.add_representer(str, _str)


def pyyaml(objs: list[object]) -> str:
    return yaml.dump_all(objs, Dumper=_Literal, sort_keys=False,
                         default_flow_style=False, explicit_start=True, width=1_000_000)


def roundtrip(objs: list[object]) -> None:
    text = YamlWriter().documents(objs)
    for loader in LOADERS:
        assert list(yaml.load_all(text, Loader=loader)) == [
            list(o) if isinstance(o, tuple) else o for o in objs], text


SHAPES = [
    {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cacerts", "labels": {"a": "b"}},
     "stringData": {"ca-cert.pem": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}},
    {"spec": {"http": [{"match": [{"headers": {"x": {"exact": "1"}}}],
                        "route": [{"destination": {"host": "h", "subset": "v1"}, "weight": 90}]},
                       {"route": []}],
              "empty": {}, "none": None, "flag": False, "ratio": 0.5, "tiny": 1e-05,
              "nested": [[1, 2], [[3]], [{"a": [{"b": "c"}]}]]}},
    {"k": ["multi\nline", "trailing newline\n", "two\n\n", "x"], "ports": {15090: {"mode": "DISABLE"}}},
]


@pytest.mark.parametrize("obj", SHAPES)
def test_same_bytes_as_pyyaml(obj: dict[str, object]) -> None:
    assert YamlWriter().documents([obj]) == pyyaml([obj])
    roundtrip([obj])


TRICKY = ["", " ", "yes", "No", "on", "OFF", "y", "n", "Y", "N", "~", "null", "true", "1", "-1",
          "0o17", "0x1F", "1e3", "1_000", ".5", "1.30", "1.30.3", "10.0.0.1", "1:30", "2001-12-14",
          "2001-12-14T21:59:43.10-05:00", "=", "<<", "*", "*.svc", "&a", "!tag", "|", ">", "%x",
          "@x", "`x", "'q'", '"q"', "a: b", "a:b", "a #c", "a#c", "ends:", "#c", "- x", "-x", "? x",
          "---", "...", "...x", "a\tb", "\ta", "a ", " a", "multi\nline", "\nlead", "trail \nx",
          "cr\rlf", "nel\x85x", "ls\u2028x", "bom\ufeffx", "del\x7fx", "bell\x07", "ünï ✓",
          "emoji 🚀", "back\\slash", "outbound|9080||reviews.shop.svc.cluster.local", ".inf",
          "-.inf", ".NaN", "+1", "0b101", "0777", "1.", "\n", "\n\n", "a\n\n\nb\n\n", "  x\ny"]


@pytest.mark.parametrize("s", TRICKY)
def test_tricky_strings_read_back_as_themselves(s: str) -> None:
    roundtrip([{"k": s, s: [s, {s: s}]}])


@pytest.mark.parametrize("s", ["y", "n", "Y", "N", "1e3", "0o17", "1_000", "on", "null", "1.30",
                               "2001-12-14", "=", "<<"])
def test_strings_other_readers_take_for_non_strings_are_quoted(s: str) -> None:
    # go-yaml v2 (sigs.k8s.io/yaml: kubectl, Flux) reads y/n as booleans and Go number syntax.
    assert not plain_ok(s)
    assert quote(s)[0] in "'\""


def test_random_strings_roundtrip() -> None:
    rng = random.Random(1234)
    alphabet = string.printable + "\x85\u2028\u2029\ufeff\x00\x1b\x7f\x9fé✓🚀:#-?&*!|>'\"%@`"
    for _ in range(3000):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        roundtrip([{s or "k": [s, {"v": s}], "x": s}])


def test_plain_strings_are_not_numbers_or_booleans_anywhere() -> None:
    rng = random.Random(99)
    alphabet = "0123456789.eE+-_xXoObByYnN:"
    for _ in range(5000):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6)))
        if plain_ok(s):
            assert s not in {"y", "Y", "n", "N"}
            for parse in (float, lambda t: int(t, 0)):
                with pytest.raises(ValueError):
                    parse(s)
