"""Bad stack files through the real CLI: exit 2 with the file and key path, never a
traceback, a hang or a guess (issue 8, section 3)."""

from __future__ import annotations

import copy
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from clusters.loader import load_stack_file
from scripts.cli import cli
from tests.conftest import base_spec, stack_doc, write_stack


def render(tmp_path: Path, config: Path, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["render", "--config", str(config), "--out", str(tmp_path / "out"),
                                    "--pki-dir", str(tmp_path / "pki")], env=env or {})


def refused(tmp_path: Path, config: Path, *expected: str) -> str:
    """Exit 2, every fragment in the output, nothing written, no traceback."""
    result = render(tmp_path, config)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    for fragment in expected:
        assert fragment in result.output, f"{fragment!r} not in:\n{result.output}"
    assert not (tmp_path / "out").exists() and not (tmp_path / "pki").exists()
    return result.output


def raw_stack(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "Pulumi.dev.yaml"
    if isinstance(text, str):
        path.write_text(text)
    else:
        path.write_bytes(text)
    return path


def base_text() -> str:
    return yaml.safe_dump(stack_doc(base_spec()), sort_keys=False)


# --- aliases and nesting ----------------------------------------------------------------------

def billion_laughs(levels: int = 10) -> str:
    lines = ['lol0: &l0 "lol"']
    lines += [f"lol{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 10)}]" for n in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("where", ["top level", "other provider", "meshboot value"])
def test_alias_bomb_is_refused_quickly_with_bounded_memory(tmp_path: Path, where: str) -> None:
    bomb = billion_laughs()
    if where == "top level":
        text = bomb + base_text()
    else:
        nested = "".join(f"  x{line}\n" for line in bomb.splitlines())
        key = "aws:tags" if where == "other provider" else "meshboot:linkerd"
        text = base_text().replace("config:\n", f"config:\n{nested}  {key}: *l9\n", 1)
    config = raw_stack(tmp_path, text)
    tracemalloc.start()
    started = time.monotonic()
    try:
        result = render(tmp_path, config)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 5
    assert peak < 50 * 2**20, f"peak {peak} bytes"
    assert result.exit_code == 2, result.output
    assert "aliases (*name) are not allowed in stack files" in result.output
    assert not (tmp_path / "out").exists() and not (tmp_path / "pki").exists()


def test_alias_problem_names_the_second_use(tmp_path: Path) -> None:
    text = base_text().replace("  meshboot:mesh:\n", "  aws:a: &shared {x: 1}\n  aws:b: [1, *shared]\n"
                               "  meshboot:mesh:\n", 1)
    refused(tmp_path, raw_stack(tmp_path, text), "Pulumi.dev.yaml: aws:b[1]: aliases")


def test_self_referencing_structure(tmp_path: Path) -> None:
    text = base_text().replace("config:\n", "config:\n  meshboot:traffic: &self {loop: *self}\n", 1)
    refused(tmp_path, raw_stack(tmp_path, text), "aliases (*name) are not allowed")


@pytest.mark.parametrize("depth", [100, 990, 5000])
def test_deep_nesting_is_refused_without_recursion_error(tmp_path: Path, depth: int) -> None:
    value = "[" * depth + "x" + "]" * depth
    text = base_text() + f"  meshboot:traffic: {{sidecarEgress: {{bookinfo: {value}}}}}\n"
    output = refused(tmp_path, raw_stack(tmp_path, text))
    assert "nested deeper than 64 levels" in output or "maximum nesting depth" in output
    assert "RecursionError" not in output


# --- wrong types for whole sections -----------------------------------------------------------

@pytest.mark.parametrize(("key", "value", "expected"), [
    ("services", 5, "meshboot:services: must be a list"),
    ("services", "reviews", "meshboot:services: must be a list"),
    ("clusters", "east", "meshboot:clusters: must be a list"),
    ("mesh", ["istio"], "meshboot:mesh: must be a mapping, got list"),
    ("pki", 7, "meshboot:pki: must be a mapping, got int"),
    ("linkerd", True, "meshboot:linkerd: must be a mapping, got bool"),
])
def test_wrong_type_for_a_whole_section(tmp_path: Path, key: str, value: Any, expected: str) -> None:
    spec = base_spec()
    spec[key] = value
    refused(tmp_path, write_stack(tmp_path, spec), f"Pulumi.dev.yaml: {expected}")


def test_config_that_is_not_a_mapping(tmp_path: Path) -> None:
    refused(tmp_path, raw_stack(tmp_path, "config: [1, 2]\n"), "Pulumi.dev.yaml: config: must be a mapping")


# --- encodings --------------------------------------------------------------------------------

def test_stray_byte_names_file_and_offset(tmp_path: Path) -> None:
    data = base_text().encode()
    offset = data.index(b"mesh1")
    config = raw_stack(tmp_path, data[:offset] + b"\xff" + data[offset:])
    refused(tmp_path, config, f"Pulumi.dev.yaml: <file>: not UTF-8 at byte offset {offset}")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
def test_utf16_with_bom(tmp_path: Path, encoding: str) -> None:
    data = base_text().encode(encoding)
    if not encoding.endswith(("16", "32")):
        data = b"\xfe\xff" + data
    refused(tmp_path, raw_stack(tmp_path, data), "Pulumi.dev.yaml: <file>: not UTF-8 at byte offset 0")


def test_utf8_bom_is_fine(tmp_path: Path) -> None:
    config = raw_stack(tmp_path, b"\xef\xbb\xbf" + base_text().encode())
    result = CliRunner().invoke(cli, ["validate", "--config", str(config)])
    assert result.exit_code == 0, result.output


# --- values that would overflow later ---------------------------------------------------------

@pytest.mark.parametrize(("key", "days"), [
    ("rootValidityDays", 3_000_000), ("rootValidityDays", 36501),
    ("intermediateValidityDays", 3_000_000), ("renewBeforeDays", 3_000_000),
])
def test_validity_past_year_9999_is_caught_by_validation(tmp_path: Path, key: str, days: int) -> None:
    spec = base_spec()
    spec["pki"][key] = days
    refused(tmp_path, write_stack(tmp_path, spec), f"meshboot:pki.{key}: input should be less than or equal "
                                                   "to 36500")


def test_hundred_years_is_accepted(tmp_path: Path) -> None:
    spec = base_spec()
    spec["pki"].update(rootValidityDays=36500, intermediateValidityDays=36500)
    result = render(tmp_path, write_stack(tmp_path, spec))
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(("section", "key", "value"), [
    ("linkerd", "probe.periodSeconds", 10**12),
    ("linkerd", "probe.timeoutSeconds", 10**12),
    ("mesh", "tokenGeneration", 10**30),
])
def test_other_counts_are_bounded(tmp_path: Path, section: str, key: str, value: int) -> None:
    spec = base_spec()
    outer, _, inner = key.rpartition(".")
    target = spec.setdefault(section, {})
    if outer:
        target = target.setdefault(outer, {})
    target[inner] = value
    refused(tmp_path, write_stack(tmp_path, spec), f"meshboot:{section}.{key}: input should be less than")


def test_duration_past_what_go_can_parse(tmp_path: Path) -> None:
    spec = base_spec()
    spec["services"][0].update(timeout="9" * 400 + "h", routing={"localShare": 80})
    refused(tmp_path, write_stack(tmp_path, spec),
            "meshboot:services[0].timeout: value error, duration '999", "longest Go duration")


@pytest.mark.parametrize("value", ["99999999999999999999999999999999999999999999" * 5, "1" * 5000])
def test_huge_integer_literal(tmp_path: Path, value: str) -> None:
    text = base_text().replace("keyAlgorithm: ecdsa-p256",
                               f"keyAlgorithm: ecdsa-p256\n    rootValidityDays: {value}")
    refused(tmp_path, raw_stack(tmp_path, text), "Pulumi.dev.yaml: <yaml>:", "out of range")


@pytest.mark.parametrize("value", ["2001-13-45", "2001-12-14"])
def test_timestamp_like_values_stay_strings(tmp_path: Path, value: str) -> None:
    """YAML 1.1 would make these dates (the first one a crash); no spec key is a date."""
    config = raw_stack(tmp_path, base_text().replace("network: net-a", f"network: {value}"))
    result = CliRunner().invoke(cli, ["validate", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert load_stack_file(config).spec.clusters[0].network == value


# --- duplicate keys ---------------------------------------------------------------------------

def test_duplicate_key_is_an_error_not_last_one_wins(tmp_path: Path) -> None:
    text = base_text().replace("    id: mesh1\n", "    id: a\n    id: b\n", 1)
    lines = text.splitlines()
    first = lines.index("    id: a") + 1
    refused(tmp_path, raw_stack(tmp_path, text),
            f"Pulumi.dev.yaml: meshboot:mesh.id: duplicate key at line {first + 1} (first at line {first})")


def test_duplicate_key_in_a_list_item(tmp_path: Path) -> None:
    text = base_text().replace("  - name: west\n", "  - name: west\n    name: north\n", 1)
    refused(tmp_path, raw_stack(tmp_path, text), "meshboot:clusters[1].name: duplicate key")


def test_duplicate_top_level_section(tmp_path: Path) -> None:
    text = base_text() + "  meshboot:mesh: {provider: linkerd}\n"
    refused(tmp_path, raw_stack(tmp_path, text), "Pulumi.dev.yaml: meshboot:mesh: duplicate key")


# --- no silent coercion -----------------------------------------------------------------------

@pytest.mark.parametrize(("path", "yaml_value", "expected"), [
    ("pki.rootValidityDays", "true", "input should be a valid integer, got boolean True"),
    ("pki.rootValidityDays", "yes", "input should be a valid integer, got boolean True"),
    ("pki.rootValidityDays", '"5"', "input should be a valid integer, got string '5'"),
    ("pki.rootValidityDays", "3650.0", "input should be a valid integer, got number 3650.0"),
    ("services[0].ports[0].port", '"9080"', "input should be a valid integer, got string '9080'"),
    ("services[0].federated", '"yes"', "input should be a valid boolean, got string 'yes'"),
    ("mesh.id", "5", "input should be a valid string, got integer 5"),
    ("clusters[0].network", "true", "input should be a valid string, got boolean True"),
    ("mesh.tokenGeneration", "1.5", "input should be a valid integer, got number 1.5"),
])
def test_no_silent_coercion(tmp_path: Path, path: str, yaml_value: str, expected: str) -> None:
    spec = base_spec()
    marker = "REPLACE-ME"
    *parents, leaf = path.replace("[", ".").replace("]", "").split(".")
    target: Any = spec
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    target[leaf] = marker
    config = write_stack(tmp_path, spec)
    config.write_text(config.read_text().replace(marker, yaml_value))
    refused(tmp_path, config, f"Pulumi.dev.yaml: meshboot:{path}: {expected}")


def test_json_string_port_keys_from_the_engine_still_parse() -> None:
    """``pulumi up`` hands structured config over as JSON, whose keys are strings."""
    from clusters.loader import spec_from_config

    spec = base_spec()
    spec["services"][0]["mtls"] = {"ports": {"15090": "DISABLE"}}
    parsed = spec_from_config({f"meshboot:{k}": v for k, v in spec.items()}, "Pulumi.dev.yaml")
    assert parsed.services[0].mtls is not None and parsed.services[0].mtls.ports == {15090: "DISABLE"}


def test_nested_models_and_literals_parse_from_plain_dicts(tmp_path: Path) -> None:
    spec = base_spec()
    spec["mesh"]["provider"] = "linkerd"
    spec["linkerd"] = {"probe": {"path": "/ready", "port": 4191}, "gatewayless": [
        {"source": "east", "target": "west"}]}
    spec["clusters"][0]["eastWestGateway"] = {"address": "172.18.255.10"}
    spec["clusters"][1]["eastWestGateway"] = {"address": "gw.west.example.com"}
    loaded = load_stack_file(write_stack(tmp_path, spec))
    assert loaded.spec.linkerd.probe.port == 4191
    assert loaded.spec.linkerd.gatewayless[0].target == "west"
    assert loaded.spec.clusters[1].east_west_gateway.address == "gw.west.example.com"


# --- addresses and paths ----------------------------------------------------------------------

def validate(tmp_path: Path, spec: dict[str, Any]) -> Result:
    return CliRunner().invoke(cli, ["validate", "--config", str(write_stack(tmp_path, spec))])


@pytest.mark.parametrize("address", ["not an address", "999.1.1.1", "10.0.0", "10.0.0.1:15443",
                                     "https://gw.example.com", "gw_1.example.com", "-gw.example.com"])
def test_bad_gateway_address(tmp_path: Path, address: str) -> None:
    spec = base_spec()
    spec["clusters"][1]["eastWestGateway"] = {"address": address}
    refused(tmp_path, write_stack(tmp_path, spec),
            "meshboot:clusters[1].eastWestGateway.address:", "is not an IPv4/IPv6 address or a DNS name")


@pytest.mark.parametrize("address", ["172.18.255.10", "fd00::10", "GW.West.Example.com",
                                     "gw.example.com."])
def test_good_gateway_address(tmp_path: Path, address: str) -> None:
    spec = base_spec()
    spec["clusters"][1]["eastWestGateway"] = {"address": address}
    result = validate(tmp_path, spec)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("path", ["ready", "/re ady", "/ready\x7f", "/réady", ""])
def test_bad_linkerd_probe_path(tmp_path: Path, path: str) -> None:
    spec = base_spec()
    spec["linkerd"] = {"probe": {"path": path}}
    refused(tmp_path, write_stack(tmp_path, spec), "meshboot:linkerd.probe.path:",
            "is not an absolute HTTP path")


def test_linkerd_gateway_address_is_the_east_west_address(tmp_path: Path) -> None:
    """Linkerd has no separate gatewayAddress key: its Links dial eastWestGateway.address."""
    spec = base_spec()
    spec["mesh"]["provider"] = "linkerd"
    spec["clusters"][0]["eastWestGateway"] = {"address": "10.0.0.300"}
    refused(tmp_path, write_stack(tmp_path, spec), "meshboot:clusters[0].eastWestGateway.address:")


@pytest.mark.parametrize("url", ["https://127.0.0.1:6443", "https://localhost:6443", "https://[::1]:6443",
                                 "https://api.localhost"])
def test_loopback_api_server_is_a_warning(tmp_path: Path, url: str) -> None:
    spec = base_spec()
    spec["clusters"][1]["apiServer"] = url
    result = validate(tmp_path, spec)
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("warning: ")
    assert (f"Pulumi.dev.yaml: meshboot:clusters[1].apiServer: '{url}' is a loopback address: "
            "other clusters cannot reach it") in result.stderr
    assert "warning" not in result.stdout


def test_routable_api_server_has_no_warning(tmp_path: Path) -> None:
    result = validate(tmp_path, base_spec())
    assert result.exit_code == 0 and "warning" not in result.output, result.output


# --- problem order and value echoes -----------------------------------------------------------

def test_problems_sorted_naturally_by_key_path(tmp_path: Path) -> None:
    spec = base_spec()
    template = spec["services"][0]
    spec["services"] = [dict(copy.deepcopy(template), name=f"svc{i}") for i in range(12)]
    for i in (2, 9, 10, 11):
        spec["services"][i]["ports"][0]["port"] = 0
    output = refused(tmp_path, write_stack(tmp_path, spec))
    paths = [line.split("Pulumi.dev.yaml: ")[1].split(": ")[0] for line in output.splitlines()
             if "Pulumi.dev.yaml: " in line]
    assert paths == [f"meshboot:services[{i}].ports[0].port" for i in (2, 9, 10, 11)]


@pytest.mark.parametrize("where", ["network", "apiServer", "mesh id", "literal"])
def test_offending_values_are_echoed_at_most_80_characters(tmp_path: Path, where: str) -> None:
    spec = base_spec()
    long = "x" * 5000
    if where == "network":
        spec["clusters"][0]["network"] = long + "!"
    elif where == "apiServer":
        spec["clusters"][0]["apiServer"] = "https://" + long
    elif where == "mesh id":
        spec["mesh"]["id"] = long.upper()
    else:
        spec["mesh"]["provider"] = long
    output = refused(tmp_path, write_stack(tmp_path, spec))
    assert "xxxxxxxxxx" in output.lower()
    assert "x" * 81 not in output.lower()


# --- secure: values of other providers --------------------------------------------------------

def test_other_providers_secure_values_are_not_decrypted(tmp_path: Path) -> None:
    spec = base_spec()
    doc = stack_doc(spec, secretsprovider="awskms://alias/infra", encryptedkey="AAAA")
    doc["config"]["aws:secretKey"] = {"secure": "AAABAHB0xyz"}
    doc["config"]["gcp:creds"] = {"nested": [{"secure": "v1:AAAA:BBBB"}]}
    config = tmp_path / "Pulumi.dev.yaml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = render(tmp_path, config)
    assert result.exit_code == 0, result.output


def test_pulumi_cloud_secret_names_the_provider_it_needs(tmp_path: Path) -> None:
    spec = base_spec()
    spec["clusters"][0]["kubeconfig"] = {"secure": "AAABAHB0xyz"}
    refused(tmp_path, write_stack(tmp_path, spec),
            "meshboot:clusters[0].kubeconfig: secure value cannot be decrypted:", "Pulumi Cloud")


@pytest.mark.parametrize("provider", ["gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k",
                                      "azurekeyvault://v.vault.azure.net/keys/k",
                                      "hashivault://meshboot"])
def test_kms_secret_names_the_provider_it_needs(tmp_path: Path, provider: str) -> None:
    spec = base_spec()
    spec["clusters"][0]["kubeconfig"] = {"secure": "AAABAHB0xyz"}
    refused(tmp_path, write_stack(tmp_path, spec, secretsprovider=provider, encryptedkey="AAAA"),
            f"the stack uses secrets provider '{provider}'")
