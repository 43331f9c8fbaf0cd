"""Bad meshboot:delivery / meshboot:observability input: key path, all at once, exit 2, nothing written."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from scripts.cli import cli
from tests.conftest import write_stack
from tests.stacks.istio.helpers import service, three_cluster_spec

S0 = "meshboot:services[0]"
CANARY = {"stable": "v1", "candidate": "v2"}
OBS: dict[str, Any] = {}


def spec_with(policy: dict[str, Any] | None = None, clusters: list[str] | None = None,
              **sections: Any) -> dict[str, Any]:
    svc = service("reviews", clusters or ["east", "west"], versions=["v1", "v2"],
                  release={"canary": copy.deepcopy(CANARY)})
    for key, value in (policy or {}).items():
        if key == "canary":
            svc["release"]["canary"].update(value)
        else:
            svc[key] = value
    return three_cluster_spec([svc], **sections)


def run(tmp_path: Path, spec: dict[str, Any]) -> Any:
    return CliRunner().invoke(cli, ["render", "--config", str(write_stack(tmp_path, spec)),
                                    "--out", str(tmp_path / "out"), "--pki-dir", str(tmp_path / "pki")])


FLAGGER = {"delivery": {}, "observability": OBS}
CASES: list[tuple[str, dict[str, Any], str]] = [
    ("unknown-key", spec_with(delivery={"engin": "flagger"}, observability=OBS),
     "meshboot:delivery.engin: unknown key"),
    ("engine", spec_with(delivery={"engine": "argo"}, observability=OBS),
     "meshboot:delivery.engine: invalid value 'argo'"),
    ("step-above-max", spec_with(delivery={"analysis": {"stepWeight": 60}}, observability=OBS),
     "meshboot:delivery.analysis.stepWeight: 60 is above maxWeight 50"),
    ("service-step-above-max", spec_with({"canary": {"analysis": {"maxWeight": 5}}}, **FLAGGER),
     f"{S0}.release.canary.analysis.stepWeight: 10 is above maxWeight 5"),
    ("go-only-duration", spec_with(delivery={"analysis": {"interval": "1.5s"}}, observability=OBS),
     "meshboot:delivery.analysis.interval: value error, invalid duration '1.5s'"),
    # Flagger raises a shorter analysis interval to 10s (canary.go GetAnalysisInterval)
    ("interval-below-flagger-floor", spec_with(delivery={"analysis": {"interval": "5s"}}, observability=OBS),
     "meshboot:delivery.analysis.interval: 5s is shorter than 10s"),
    ("service-interval-below-flagger-floor", spec_with({"canary": {"analysis": {"interval": "9s"}}},
                                                       **FLAGGER),
     f"{S0}.release.canary.analysis.interval: 9s is shorter than 10s"),
    # rate() over one scrape: every check finds no data
    ("metric-interval-one-scrape", spec_with({"canary": {"analysis": {"metricInterval": "20s"}}},
                                             **FLAGGER),
     f"{S0}.release.canary.analysis.metricInterval: 20s holds fewer than two scrapes (15s"),
    ("default-metric-interval-slow-scrapes", spec_with(delivery={},
                                                       observability={"scrapeInterval": "1m"}),
     "meshboot:delivery.analysis.metricInterval: 1m holds fewer than two scrapes (1m"),
    ("success-rate", spec_with({"canary": {"analysis": {"successRate": 120}}}, **FLAGGER),
     f"{S0}.release.canary.analysis.successRate: value error, 120.0 is above 100"),
    ("analysis-without-flagger", spec_with({"canary": {"analysis": {"threshold": 2}}}),
     f"{S0}.release.canary.analysis: only used when Flagger drives the release"),
    ("iterations-without-header", spec_with({"canary": {"analysis": {"iterations": 5}}}, **FLAGGER),
     f"{S0}.release.canary.analysis.iterations: an A/B test needs the header"),
    ("fault", spec_with({"fault": {"header": {"name": "x-f", "exact": "1"},
                                   "abort": {"httpStatus": 503}}}, **FLAGGER),
     f"{S0}.fault: cannot be combined with a Flagger canary"),
    ("authorization", spec_with({"authorization": {"rules": [{"from": {"namespaces": ["shop"]}}]}},
                                **FLAGGER),
     f"{S0}.authorization: cannot be combined with a Flagger canary: Flagger renames"),
    ("retries-some-methods", spec_with({"retries": {"attempts": 2}}, **FLAGGER),
     f"{S0}.retries: Flagger's VirtualService retries every method"),
    ("tcp-pool", spec_with({"connectionPool": {"tcp": {"maxConnections": 5}}}, **FLAGGER),
     f"{S0}.connectionPool.tcp: Flagger's Canary carries only the http connection pool"),
    ("failover-priority", spec_with({"routing": {"locality": {"failoverPriority": ["x"]}}}, **FLAGGER),
     f"{S0}.routing.locality.failoverPriority: Flagger's Canary has no failoverPriority"),
    ("istio-remote", spec_with(clusters=["east", "central"], **FLAGGER),
     f"{S0}.clusters: 'central' is an Istio remote"),
    ("bad-prometheus-url", spec_with(delivery={"prometheus": "prometheus:9090"}),
     "meshboot:delivery.prometheus: 'prometheus:9090' is not an http(s) URL"),
    ("observability-unknown-key", spec_with(observability={"scrapeIntervall": "15s"}),
     "meshboot:observability.scrapeIntervall: unknown key"),
    ("rule-window", spec_with(observability={"ruleWindow": "20s"}),
     "meshboot:observability.ruleWindow: 20s holds fewer than two scrapes (15s)"),
    ("federation-cluster", spec_with(observability={"federation": {"cluster": "mars",
                                                                   "targets": {"west": "p:9090"}}}),
     "meshboot:observability.federation.cluster: unknown cluster 'mars'"),
    ("federation-target", spec_with(observability={"federation": {"cluster": "east",
                                                                  "targets": {"west": "p"}}}),
     "meshboot:observability.federation.targets.west: 'p' is not host:port"),
    ("federate-itself", spec_with(observability={"federation": {"cluster": "east",
                                                                "targets": {"east": "p:9090"}}}),
     "meshboot:observability.federation.targets.east: a Prometheus does not federate itself"),
    ("flagger-namespace", spec_with(delivery={"flagger": {"namespace": "Flagger"}}, observability=OBS),
     "meshboot:delivery.flagger.namespace: 'Flagger' is not a namespace name"),
]


@pytest.mark.parametrize("spec,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_delivery(tmp_path: Path, spec: dict[str, Any], expected: str) -> None:
    result = run(tmp_path, spec)
    assert result.exit_code == 2, result.output
    assert f"Pulumi.dev.yaml: {expected}" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_every_problem_at_once(tmp_path: Path) -> None:
    spec = spec_with({"fault": {"header": {"name": "x-f", "exact": "1"}, "abort": {"httpStatus": 503}},
                      "canary": {"analysis": {"iterations": 3}}},
                     delivery={"analysis": {"stepWeight": 60}},
                     observability={"federation": {"cluster": "mars", "targets": {"west": "p"}}})
    result = run(tmp_path, spec)
    assert result.exit_code == 2
    for path in ("meshboot:delivery.analysis.stepWeight", f"{S0}.fault",
                 f"{S0}.release.canary.analysis.iterations", "meshboot:observability.federation.cluster",
                 "meshboot:observability.federation.targets.west"):
        assert f"Pulumi.dev.yaml: {path}:" in result.output, path


def test_flagger_without_cluster_labels_is_a_warning(tmp_path: Path) -> None:
    result = run(tmp_path, spec_with(delivery={}))
    assert result.exit_code == 0, result.output
    assert "Pulumi.dev.yaml: meshboot:delivery.prometheus: Flagger's metric queries " \
           "select one cluster by the `cluster` label" in result.output


def test_a_named_prometheus_silences_the_warning(tmp_path: Path) -> None:
    result = run(tmp_path, spec_with(delivery={"prometheus": "http://thanos.example:9090"}))
    assert result.exit_code == 0, result.output
    assert "meshboot:delivery" not in result.output


def test_linkerd_federation_warns_that_viz_prometheus_admits_only_metrics_api(tmp_path: Path) -> None:
    """linkerd-viz's Prometheus authorizes only viz's metrics-api on its Server
    ``prometheus-admin`` (linkerd2 edge-26.8.3 viz/charts/linkerd-viz/templates/
    prometheus-policy.yaml): a federating Prometheus is refused unless authorized."""
    federation = {"federation": {"cluster": "east", "targets": {"west": "prometheus.west.example:9090"}}}
    spec = spec_with(observability=federation)
    spec["mesh"]["provider"] = "linkerd"
    result = run(tmp_path, spec)
    assert result.exit_code == 0, result.output
    assert "meshboot:observability.federation.targets.west: west's linkerd-viz Prometheus admits " \
           "only viz's metrics-api" in result.output
    spec["mesh"]["provider"] = "istio"   # Istio's Prometheus is not behind a mesh policy
    (tmp_path / "istio").mkdir()
    result = run(tmp_path / "istio", spec)
    assert result.exit_code == 0, result.output
    assert "federation.targets" not in result.output


def test_default_deny_with_a_flagger_canary_warns_that_every_call_is_denied(tmp_path: Path) -> None:
    """defaultDeny admits what `authorization` allows, which a Flagger canary cannot have:
    the rendered namespace policy denies every call to the service."""
    spec = spec_with(**FLAGGER)
    spec["security"] = {"defaultDeny": True}
    result = run(tmp_path, spec)
    assert result.exit_code == 0, result.output
    assert "meshboot:security.defaultDeny: reviews (shop) is released by Flagger" in result.output
    deny = [f for f in (tmp_path / "out").rglob("*.yaml") if "default-deny" in f.read_text()]
    assert deny   # the namespace-wide deny the warning is about is rendered
    spec["delivery"] = {"engine": "static"}
    (tmp_path / "static").mkdir()
    result = run(tmp_path / "static", spec)
    assert result.exit_code == 0, result.output
    assert "defaultDeny" not in result.output
