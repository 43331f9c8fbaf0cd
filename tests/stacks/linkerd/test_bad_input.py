"""Bad Linkerd environments: exit 2, every problem at once, each naming its key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from click.testing import CliRunner

from scripts.cli import cli
from tests.conftest import write_stack
from tests.stacks.linkerd.specs import three_clusters, two_clusters


def run(tmp_path: Path, spec: dict[str, Any], command: str = "validate") -> tuple[int, str]:
    args = [command, "--config", str(write_stack(tmp_path, spec))]
    if command == "render":
        args += ["--out", str(tmp_path / "out"), "--pki-dir", str(tmp_path / "pki")]
    result = CliRunner().invoke(cli, args, env={})
    return result.exit_code, result.output


def problem_lines(output: str) -> list[str]:
    # Errors only: warnings (e.g. renewBeforeDays under Linkerd's 60) do not fail a run.
    return [line for line in output.splitlines()
            if ": meshboot:" in line and not line.startswith("warning:")]


def test_all_problems_at_once(tmp_path: Path) -> None:
    spec = three_clusters()
    spec["pki"].update({"keyAlgorithm": "rsa-2048", "intermediateValidityDays": 45,
                        "renewBeforeDays": 10})
    spec["mesh"]["trustDomain"] = "Not_A.Domain"
    spec["linkerd"] = {"gatewayless": [{"source": "a", "target": "b"}]}
    spec["services"][1]["clusters"] = ["a", "b"]  # federated across n1 and n2
    code, output = run(tmp_path, spec)
    assert code == 2, output
    paths = {line.split(": ")[1] for line in problem_lines(output)}
    # Spec-level problems (loader) are reported together; the Linkerd stack's own
    # checks run once the spec parses (test below).
    assert {"meshboot:pki.keyAlgorithm", "meshboot:mesh.trustDomain"} <= paths, output


def test_linkerd_rules_reported_together(tmp_path: Path) -> None:
    """Spec-valid input that only the Linkerd stack rejects: all of it in one run."""
    spec = three_clusters()
    spec["pki"].update({"intermediateValidityDays": 45, "renewBeforeDays": 10})
    spec["linkerd"] = {"gatewayless": [{"source": "a", "target": "b"},
                                       {"source": "c", "target": "nowhere"}]}
    spec["services"][1]["clusters"] = ["a", "b"]  # federated across n1 and n2
    spec["clusters"][1]["eastWestGateway"] = {"enabled": False}  # a and c need b's gateway
    code, output = run(tmp_path, spec, "render")
    assert code == 2, output
    lines = problem_lines(output)
    by_path = {line.split(": ")[1]: line for line in lines}
    assert "45 days" in by_path["meshboot:pki.intermediateValidityDays"]
    assert "60" in by_path["meshboot:pki.intermediateValidityDays"]
    assert "'n1'" in by_path["meshboot:linkerd.gatewayless[0]"]
    assert "'n2'" in by_path["meshboot:linkerd.gatewayless[0]"]
    assert "unknown cluster 'nowhere'" in by_path["meshboot:linkerd.gatewayless[1].target"]
    assert "federated" in by_path["meshboot:services[1].federated"]
    assert "cannot be disabled" in by_path["meshboot:clusters[1].eastWestGateway.enabled"]
    assert len(lines) == 5, output
    assert not (tmp_path / "out").exists()


def test_non_ecdsa_rejected(tmp_path: Path) -> None:
    spec = two_clusters()
    spec["pki"]["keyAlgorithm"] = "rsa-4096"
    code, output = run(tmp_path, spec)
    assert code == 2
    assert "meshboot:pki.keyAlgorithm" in output and "ecdsa-p256" in output


def test_trust_domain_must_be_dns_subdomain(tmp_path: Path) -> None:
    spec = two_clusters()
    spec["mesh"]["trustDomain"] = "Cluster_Local"
    code, output = run(tmp_path, spec)
    assert code == 2
    assert "meshboot:mesh.trustDomain" in output


def test_anchor_validity_below_sixty_days(tmp_path: Path) -> None:
    spec = two_clusters()
    spec["pki"].update({"rootValidityDays": 59, "intermediateValidityDays": 40,
                        "renewBeforeDays": 5})
    code, output = run(tmp_path, spec)
    assert code == 2
    paths = {line.split(": ")[1] for line in problem_lines(output)}
    assert paths == {"meshboot:pki.rootValidityDays", "meshboot:pki.intermediateValidityDays"}


def test_sixty_days_is_enough(tmp_path: Path) -> None:
    spec = two_clusters()
    spec["pki"].update({"intermediateValidityDays": 60, "renewBeforeDays": 10})
    code, output = run(tmp_path, spec)
    assert code == 0, output


def test_istio_version_is_not_a_linkerd_version(tmp_path: Path) -> None:
    spec = two_clusters()
    spec["mesh"]["version"] = "1.30.3"
    code, output = run(tmp_path, spec)
    assert code == 2
    assert "meshboot:mesh.version" in output
    spec["linkerd"] = {"chartVersion": "2026.8.3"}
    code, output = run(tmp_path, spec)
    assert code == 0, output


def test_unknown_linkerd_key(tmp_path: Path) -> None:
    spec = two_clusters()
    spec["linkerd"] = {"gatewayPrt": 4143}
    code, output = run(tmp_path, spec)
    assert code == 2
    assert "meshboot:linkerd.gatewayPrt" in output


def test_gatewayless_same_network_is_fine(tmp_path: Path) -> None:
    spec = three_clusters()
    spec["linkerd"] = {"gatewaylessSameNetwork": False,
                       "gatewayless": [{"source": "a", "target": "c"}]}
    code, output = run(tmp_path, spec)
    assert code == 0, output
