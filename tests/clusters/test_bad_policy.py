"""Bad policy input: each problem with its key path, all at once, exit code 2, nothing written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from scripts.cli import cli
from tests.conftest import write_stack
from tests.stacks.istio.helpers import CLUSTERS, service, three_cluster_spec

S0 = "meshboot:services[0]"


def run(tmp_path: Path, spec: dict[str, Any], command: str = "render") -> Any:
    args = [command, "--config", str(write_stack(tmp_path, spec))]
    if command == "render":
        args += ["--out", str(tmp_path / "out"), "--pki-dir", str(tmp_path / "pki")]
    return CliRunner().invoke(cli, args)


CANARY = {"stable": "v1", "candidate": "v2", "weight": 10}
CASES: list[tuple[str, dict[str, Any], str]] = [
    ("weights", {"routing": {"weights": {"east": 50, "west": 30}}},
     f"{S0}.routing.weights: weights sum to 80, not 100"),
    ("weights-cluster", {"routing": {"weights": {"east": 50, "mars": 50}}},
     f"{S0}.routing.weights.mars: the service does not run in cluster 'mars'"),
    ("share", {"routing": {"localShare": 120}},
     f"{S0}.routing.localShare: value error, 120 is above 100"),
    ("failover-region", {"routing": {"locality": {"failover": [{"from": "us-east1", "to": "mars-1"}]}}},
     f"{S0}.routing.locality.failover[0].to: no cluster is in region 'mars-1'"),
    ("distribute-region", {"routing": {"locality": {"distribute": [
        {"from": "moon/*", "to": {"us-east1/*": 100}}]}}},
     f"{S0}.routing.locality.distribute[0].from: no cluster is in region 'moon'"),
    ("two-locality-modes", {"routing": {"locality": {"failover": [{"from": "us-east1", "to": "us-west1"}],
                                                     "failoverPriority": ["topology.istio.io/network"]}}},
     f"{S0}.routing.locality: set exactly one of failover, failoverPriority, distribute"),
    ("undeclared-version", {"versions": ["v1"], "release": {"canary": CANARY}},
     f"{S0}.release.canary.candidate: version 'v2' is not declared in versions (v1)"),
    ("undeclared-ab-subset", {"versions": ["v1", "v2"], "release": {"abTest": {
        "groups": [{"name": "g", "version": "v2", "header": {"name": "x-g", "exact": "1"}}],
        "default": {"v1": 50, "v3": 50}}}},
     f"{S0}.release.abTest.default.v3: version 'v3' is not declared in versions (v1, v2)"),
    ("candidate-is-stable", {"versions": ["v1"], "release": {"canary": {**CANARY, "candidate": "v1"}}},
     f"{S0}.release.canary.candidate: the candidate is the stable version 'v1'"),
    ("two-releases", {"versions": ["v1", "v2"], "release": {
        "canary": CANARY, "blueGreen": {"active": "v1", "preview": "v2"}}},
     f"{S0}.release: set exactly one of canary, blueGreen, abTest (got canary, blueGreen)"),
    ("release-and-share", {"versions": ["v1", "v2"], "release": {"canary": CANARY},
                           "routing": {"localShare": 80}},
     f"{S0}.release: a release routes by version: it cannot be combined with routing.localShare"),
    ("retry-post", {"retries": {"attempts": 2, "methods": ["GET", "POST"]}},
     f"{S0}.retries.methods[1]: POST is not idempotent: a retried call may run twice; "
     "set retries.allowNonIdempotent: true"),
    ("retry-on", {"retries": {"attempts": 2, "retryOn": ["5xx", "sometimes"]}},
     f"{S0}.retries.retryOn[1]: unknown retry condition 'sometimes'"),
    ("jwt-issuer", {"jwt": {"jwksUri": "https://idp.example.com/jwks"}},
     f"{S0}.jwt.issuer: required: the token issuer"),
    ("jwt-jwks", {"jwt": {"issuer": "https://idp.example.com"}},
     f"{S0}.jwt.jwksUri: required: where the issuer publishes its keys"),
    ("duration", {"timeout": "5 seconds"},
     f"{S0}.timeout: value error, invalid duration '5 seconds'"),
    ("duration-nested", {"retries": {"attempts": 2, "perTryTimeout": "1x"}},
     f"{S0}.retries.perTryTimeout: value error, invalid duration '1x'"),
    ("header-empty", {"fault": {"header": {"name": "", "exact": "on"}, "abort": {"httpStatus": 503}}},
     f"{S0}.fault.header.name: header name must not be empty"),
    ("header-two-kinds", {"fault": {"header": {"name": "x-f", "exact": "1", "prefix": "1"},
                                    "abort": {"httpStatus": 503}}},
     f"{S0}.fault.header: set exactly one of exact, prefix, regex (got exact, prefix)"),
    ("fault-percent", {"fault": {"header": {"name": "x-f", "exact": "1"},
                                 "abort": {"httpStatus": 503, "percent": 150}}},
     f"{S0}.fault.abort.percent: value error, 150.0 is above 100"),
    ("hash-header", {"loadBalancer": {"algorithm": "CONSISTENT_HASH"}},
     f"{S0}.loadBalancer.hashHeader: CONSISTENT_HASH needs the header to hash on"),
    ("unknown-key", {"routing": {"localShar": 80}}, f"{S0}.routing.localShar: unknown key"),
    ("authz-sa", {"authorization": {"rules": [{"from": {"serviceAccounts": ["frontend"]}}]}},
     f"{S0}.authorization.rules[0].from.serviceAccounts[0]: 'frontend' is not namespace/name"),
]


@pytest.mark.parametrize("policy,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_policy(tmp_path: Path, policy: dict[str, Any], expected: str) -> None:
    spec = three_cluster_spec([service("reviews", ["east", "west"], **policy)])
    result = run(tmp_path, spec)
    assert result.exit_code == 2, result.output
    assert f"Pulumi.dev.yaml: {expected}" in result.output
    assert not (tmp_path / "out").exists()


def test_two_services_claiming_the_same_host(tmp_path: Path) -> None:
    spec = three_cluster_spec([service("reviews", ["east"]), service("reviews", ["west"])])
    result = run(tmp_path, spec, "validate")
    assert result.exit_code == 2
    assert "meshboot:services[1].name: host reviews.shop.svc.cluster.local is already claimed by " \
           "meshboot:services[0]" in result.output


def test_mesh_wide_bad_input(tmp_path: Path) -> None:
    spec = three_cluster_spec([service("reviews", CLUSTERS)],
                              traffic={"sidecarEgress": {"shop": ["reviews"], "ghost": ["./*"]},
                                       "crossCluster": "dns"},
                              security={"mtls": {"mode": "OFF"}})
    result = run(tmp_path, spec, "validate")
    assert result.exit_code == 2
    assert "meshboot:traffic.crossCluster: invalid value 'dns'" in result.output
    assert "meshboot:security.mtls.mode: invalid value 'OFF'" in result.output
    spec["traffic"].pop("crossCluster")
    spec.pop("security")
    result = run(tmp_path, spec, "validate")
    assert result.exit_code == 2
    assert "meshboot:traffic.sidecarEgress.shop[0]: 'reviews' is not namespace/host" in result.output
    assert "meshboot:traffic.sidecarEgress.ghost: no service is in namespace 'ghost'" in result.output


def test_several_problems_reported_at_once(tmp_path: Path) -> None:
    services = [
        service("reviews", CLUSTERS, routing={"weights": {"east": 10, "west": 10, "central": 10}},
                retries={"attempts": 3, "methods": ["PATCH"]}),
        service("ratings", ["west"], versions=["v1"], release={"canary": {"stable": "v1", "candidate": "v1"}},
                jwt={"issuer": "https://idp"},
                routing={"locality": {"failover": [{"from": "atlantis", "to": "us-west1"}]}}),
        service("details", ["east"], fault={"header": {"name": " ", "exact": "1"},
                                            "delay": {"fixedDelay": "1s"}}),
    ]
    result = run(tmp_path, three_cluster_spec(services))
    assert result.exit_code == 2
    expected = [
        "meshboot:services[0].routing.weights: weights sum to 30, not 100",
        "meshboot:services[0].retries.methods[0]: PATCH is not idempotent",
        "meshboot:services[1].release.canary.candidate: the candidate is the stable version 'v1'",
        "meshboot:services[1].jwt.jwksUri: required",
        "meshboot:services[1].routing.locality.failover[0].from: no cluster is in region 'atlantis'",
        "meshboot:services[2].fault.header.name: header name must not be empty",
    ]
    for e in expected:
        assert e in result.output, e
    assert f"({len(expected)} problems)" in result.output


def test_several_shape_errors_at_once(tmp_path: Path) -> None:
    services = [service("reviews", CLUSTERS, timeout="soon", routing={"localShare": 101}),
                service("ratings", ["west"], retries={"attempts": 0})]
    result = run(tmp_path, three_cluster_spec(services), "validate")
    assert result.exit_code == 2
    for e in ("meshboot:services[0].timeout: value error, invalid duration 'soon'",
              "meshboot:services[0].routing.localShare: value error, 101 is above 100",
              "meshboot:services[1].retries.attempts: input should be greater than or equal to 1"):
        assert e in result.output, e


def test_opt_in_makes_non_idempotent_retries_valid(tmp_path: Path) -> None:
    spec = three_cluster_spec([service("reviews", ["east"], retries={
        "attempts": 2, "methods": ["GET", "POST"], "allowNonIdempotent": True})])
    result = run(tmp_path, spec, "validate")
    assert result.exit_code == 0, result.output
