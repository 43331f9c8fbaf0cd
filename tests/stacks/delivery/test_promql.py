"""The PromQL meshboot renders, run by the real ``promtool`` (Debian's prometheus package).

The canary queries are taken from the rendered MetricTemplates and filled in
as Flagger fills its template (namespace, target, the Canary metric's
interval); the threshold is the rendered Canary's ``thresholdRange``. Each
becomes an alerting rule "the canary fails its check", and ``promtool test
rules`` evaluates it on synthetic series. The Prometheus configuration and the
recording rules are checked with ``promtool check config`` / ``check rules``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from stacks.delivery.queries import fill_template
from stacks.observability.prometheus import RULES_FILE
from tests.stacks.delivery.specs import find

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not found: install Debian's `prometheus` package "
    "(apt-get install --no-install-recommends prometheus; .ci/run does) to run the PromQL proofs")

NS = "bookinfo"
# west runs `reviews`, whose Canary has the default thresholds: success rate >= 99%,
# p99 <= 500ms. east's series are "another cluster".
CLUSTER, OTHER = "west", "east"


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=60)


def canary_checks(objs: list[dict[str, Any]]) -> dict[str, tuple[str, str, float]]:
    """metric name -> (query template, window, failing comparison) of the reviews Canary."""
    [canary] = find(objs, "Canary", "reviews")
    templates = {t["metadata"]["name"]: t["spec"]["query"] for t in find(objs, "MetricTemplate")}
    out = {}
    for m in canary["spec"]["analysis"]["metrics"]:
        rng = m["thresholdRange"]
        # Flagger fails a check whose value is below min or above max.
        fails = ("<", rng["min"]) if "min" in rng else (">", rng["max"])
        out[m["name"]] = (templates[m["templateRef"]["name"]], m["interval"], *fails)
    return out


def series(provider: str, cluster: str, target: str, ok: int, failed: int) -> list[dict[str, str]]:
    """Counters growing by ``ok`` / ``failed`` responses per 15s scrape."""
    if provider == "istio":
        base = (f'istio_requests_total{{reporter="destination", cluster="{cluster}", '
                f'destination_workload_namespace="{NS}", destination_workload="{target}", ')
        kinds = (('response_code="200"}', ok), ('response_code="503"}', failed))
    else:
        base = (f'response_total{{direction="inbound", cluster="{cluster}", namespace="{NS}", '
                f'deployment="{target}", ')
        kinds = (('classification="success"}', ok), ('classification="failure"}', failed))
    return [{"series": base + k, "values": f"0+{n}x40"} for k, n in kinds]


def buckets(provider: str, cluster: str, target: str, per_le: dict[str, int]) -> list[dict[str, str]]:
    """Latency histogram: ``per_le`` = cumulative count per bucket growth per scrape."""
    if provider == "istio":
        head = (f'istio_request_duration_milliseconds_bucket{{reporter="destination", '
                f'cluster="{cluster}", destination_workload_namespace="{NS}", '
                f'destination_workload="{target}", ')
    else:
        head = (f'response_latency_ms_bucket{{direction="inbound", cluster="{cluster}", '
                f'namespace="{NS}", deployment="{target}", ')
    return [{"series": head + f'le="{le}"}}', "values": f"0+{n}x40"} for le, n in per_le.items()]


# (target, series builder, the success-rate check fails?)
SUCCESS_CASES = [
    ("two-percent", lambda p: series(p, CLUSTER, "two-percent", 980, 20), True),
    ("half-percent", lambda p: series(p, CLUSTER, "half-percent", 995, 5), False),
    # half the calls fail in the other cluster: not this canary's business
    ("errors-elsewhere", lambda p: series(p, CLUSTER, "errors-elsewhere", 995, 5)
     + series(p, OTHER, "errors-elsewhere", 500, 500), False),
    # plenty of healthy calls elsewhere must not mask 2% errors here
    ("masked", lambda p: series(p, CLUSTER, "masked", 980, 20)
     + series(p, OTHER, "masked", 100000, 0), True),
]
FAST = {"100": 90, "250": 100, "500": 100, "1000": 100, "+Inf": 100}
SLOW = {"100": 90, "250": 95, "500": 97, "1000": 100, "+Inf": 100}   # 3% above 500ms
LATENCY_CASES = [
    ("slow", lambda p: buckets(p, CLUSTER, "slow", SLOW), True),
    ("fast", lambda p: buckets(p, CLUSTER, "fast", FAST), False),
    ("slow-elsewhere", lambda p: buckets(p, CLUSTER, "slow-elsewhere", FAST)
     + buckets(p, OTHER, "slow-elsewhere", SLOW), False),
]


def test_canary_checks_pass_and_fail_on_synthetic_series(rendered: Any, tmp_path: Path) -> None:
    provider, tree = rendered
    checks = canary_checks(tree[CLUSTER])
    rules, inputs, alert_tests = [], [], []
    for metric, cases in (("success-rate", SUCCESS_CASES), ("latency-p99", LATENCY_CASES)):
        query, window, op, threshold = checks[metric]
        for target, make, fails in cases:
            expr = fill_template(query, NS, target, window)
            name = f"CanaryFails_{metric.replace('-', '_')}_{target.replace('-', '_')}"
            rules.append({"alert": name, "expr": f"({expr}) {op} {threshold}"})
            inputs += make(provider)
            alert_tests.append({"eval_time": "8m", "alertname": name,
                                "exp_alerts": [{"exp_labels": {}}] if fails else []})
    assert checks["success-rate"][2:] == ("<", 99)     # the spec's default threshold
    (tmp_path / "canary.yml").write_text(yaml.safe_dump({"groups": [{"name": "canary",
                                                                      "rules": rules}]}))
    (tmp_path / "test.yml").write_text(yaml.safe_dump({
        "rule_files": ["canary.yml"], "evaluation_interval": "1m",
        "tests": [{"interval": "15s", "input_series": inputs, "alert_rule_test": alert_tests}]}))
    result = promtool("test", "rules", tmp_path / "test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_a_wrong_expectation_fails(rendered: Any, tmp_path: Path) -> None:
    """The harness can fail: 2% errors expected to pass is reported by promtool."""
    provider, tree = rendered
    query, window, op, threshold = canary_checks(tree[CLUSTER])["success-rate"]
    expr = fill_template(query, NS, "two-percent", window)
    (tmp_path / "canary.yml").write_text(yaml.safe_dump({"groups": [{"name": "canary", "rules": [
        {"alert": "CanaryFails", "expr": f"({expr}) {op} {threshold}"}]}]}))
    (tmp_path / "test.yml").write_text(yaml.safe_dump({
        "rule_files": ["canary.yml"], "evaluation_interval": "1m",
        "tests": [{"interval": "15s", "input_series": series(provider, CLUSTER, "two-percent", 980, 20),
                   "alert_rule_test": [{"eval_time": "8m", "alertname": "CanaryFails",
                                        "exp_alerts": []}]}]}))
    assert promtool("test", "rules", tmp_path / "test.yml").returncode != 0


def prometheus_files(provider: str, objs: list[dict[str, Any]]) -> tuple[dict[str, Any], str]:
    """(prometheus.yml as rendered, the rules file) of one cluster.

    Linkerd: viz's chart writes prometheus.yml; its ``global:`` block,
    the ``linkerd-proxy`` job's ``metric_relabel_configs`` and the extra jobs
    are meshboot's values (viz templates/prometheus.yaml), rebuilt here.
    """
    if provider == "istio":
        [cm] = find(objs, "ConfigMap", "meshboot-prometheus")
        return yaml.safe_load(cm["data"]["prometheus.yml"]), cm["data"][RULES_FILE]
    [viz] = find(objs, "HelmRelease", "linkerd-viz")
    [cm] = find(objs, "ConfigMap", "meshboot-prometheus-rules")
    prom = viz["spec"]["values"]["prometheus"]
    config = {"global": prom["globalConfig"], "rule_files": [RULES_FILE],
              "scrape_configs": [{"job_name": "linkerd-proxy",
                                  "kubernetes_sd_configs": [{"role": "pod"}],
                                  "metric_relabel_configs": prom["metricRelabelConfigs"]},
                                 *prom.get("scrapeConfigs", [])]}
    return config, cm["data"][RULES_FILE]


@pytest.mark.parametrize("cluster", ["east", "west"])
def test_rendered_config_and_rules_pass_promtool_checks(rendered: Any, tmp_path: Path,
                                                        cluster: str) -> None:
    provider, tree = rendered
    config, rules = prometheus_files(provider, tree[cluster])
    assert config["global"]["external_labels"] == {"cluster": cluster}
    jobs = [j["job_name"] for j in config["scrape_configs"]]
    assert ("federate-west" in jobs) == (cluster == "east")
    (tmp_path / RULES_FILE).write_text(rules)
    checked = promtool("check", "rules", tmp_path / RULES_FILE)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    checked = check_config(config, tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert RULES_FILE in checked.stdout + checked.stderr   # the rule file was found and read


def check_config(config: dict[str, Any], directory: Path) -> subprocess.CompletedProcess[str]:
    """``promtool check config`` on ``config``.

    Debian builds Prometheus without the Kubernetes service discovery (its
    ``kubernetes_sd_configs`` field is unknown there: "field
    kubernetes_sd_configs not found in type config.ScrapeConfig"). When that is
    the only complaint, the check is repeated with each job's Kubernetes
    discovery replaced by an empty static target list, so everything else of
    the configuration is still checked.
    """
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = promtool("check", "config", path)
    output = result.stdout + result.stderr
    if result.returncode == 0 or "kubernetes_sd_configs not found" not in output:
        return result
    complaints = [line for line in output.splitlines() if line.strip().startswith("line ")]
    k8s_jobs = [j for j in config["scrape_configs"] if "kubernetes_sd_configs" in j]
    assert complaints and all("kubernetes_sd_configs not found" in c for c in complaints), output
    assert len(complaints) == len(k8s_jobs), output
    stripped = {**config, "scrape_configs": [
        {**{k: v for k, v in j.items() if k != "kubernetes_sd_configs"},
         **({"static_configs": [{"targets": []}]} if "kubernetes_sd_configs" in j else {})}
        for j in config["scrape_configs"]]}
    path.write_text(yaml.safe_dump(stripped))
    return promtool("check", "config", path)


def test_recording_rules_per_cluster_and_across(rendered: Any, tmp_path: Path) -> None:
    """Errors per cluster stay apart; the mesh-wide rule adds the clusters up."""
    provider, tree = rendered
    _, rules = prometheus_files(provider, tree["east"])
    (tmp_path / RULES_FILE).write_text(rules)
    m = "istio_requests_total" if provider == "istio" else "response_total"
    w = "destination_workload" if provider == "istio" else "deployment"
    inputs = series(provider, "east", "app", 100, 5) + series(provider, "west", "app", 100, 10)
    per_minute = [  # of 105 and 110 calls per 15s, 5 and 10 fail: 20 and 40 a minute
        (f'round(60 * sum(cluster:{m}:errors:rate5m{{cluster="east", {w}="app"}}))', 20),
        (f'round(60 * sum(cluster:{m}:errors:rate5m{{cluster="west", {w}="app"}}))', 40),
        (f'round(60 * sum(mesh:{m}:errors:rate5m{{{w}="app"}}))', 60),
        (f'round(60 * sum(mesh:{m}:rate5m{{{w}="app"}}))', 4 * (105 + 110)),
    ]
    (tmp_path / "test.yml").write_text(yaml.safe_dump({
        "rule_files": [RULES_FILE], "evaluation_interval": "1m",
        "tests": [{"interval": "15s", "input_series": inputs, "promql_expr_test": [
            {"expr": expr, "eval_time": "8m", "exp_samples": [{"labels": "{}", "value": value}]}
            for expr, value in per_minute]}]}))
    result = promtool("test", "rules", tmp_path / "test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_linkerd_multicluster_rules(rendered: Any, tmp_path: Path) -> None:
    """Gateway health per link and the calls through this cluster's gateway."""
    provider, tree = rendered
    if provider != "linkerd":
        pytest.skip("Linkerd's multicluster metrics")
    _, rules = prometheus_files(provider, tree["east"])
    (tmp_path / RULES_FILE).write_text(rules)
    gateway = ('response_total{direction="inbound", cluster="east", '
               'namespace="linkerd-multicluster", deployment="linkerd-gateway", ')
    inputs = [{"series": 'gateway_alive{target_cluster_name="west"}', "values": "1x40"},
              {"series": 'gateway_alive{target_cluster_name="north"}', "values": "0x40"},
              {"series": gateway + 'classification="success"}', "values": "0+30x40"},
              {"series": gateway + 'classification="failure"}', "values": "0+3x40"}]
    tests = [
        ('link:gateway_alive:max{target_cluster_name="west"}', 1),
        ('link:gateway_alive:max{target_cluster_name="north"}', 0),
        ('round(60 * sum(cluster:linkerd_gateway_response_total:rate5m{cluster="east"}))', 4 * 33),
        ('round(60 * sum(cluster:linkerd_gateway_response_total:errors:rate5m))', 4 * 3),
    ]
    (tmp_path / "test.yml").write_text(yaml.safe_dump({
        "rule_files": [RULES_FILE], "evaluation_interval": "1m",
        "tests": [{"interval": "15s", "input_series": inputs, "promql_expr_test": [
            {"expr": f"sum({e})" if e.startswith("link:") else e, "eval_time": "8m",
             "exp_samples": [{"labels": "{}", "value": v}]} for e, v in tests]}]}))
    result = promtool("test", "rules", tmp_path / "test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
