"""The Istio scrape jobs meshboot renders, run on synthetic discovered targets.

Debian's promtool cannot run Kubernetes discovery, so the relabelling is
evaluated here with Prometheus' documented semantics (prometheus.io docs
configuration ``<relabel_config>``; prometheus/prometheus model/relabel/relabel.go):
source label values joined by ``;``, the regex anchored at both ends and ``(.*)``
by default, ``keep``/``drop`` on a match, ``replace`` writing the expanded
replacement (``$1`` by default) into the target label.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from stacks.observability.prometheus import istio_scrape_jobs
from tests.stacks.delivery.specs import find


def relabel(labels: dict[str, str], steps: list[dict[str, Any]]) -> dict[str, str] | None:
    """The target's labels after ``steps``, None when a step drops it."""
    out = dict(labels)
    for step in steps:
        action = step.get("action", "replace")
        value = ";".join(out.get(name, "") for name in step.get("source_labels", []))
        match = re.fullmatch(step.get("regex", "(.*)"), value)
        if action == "keep" and match is None or action == "drop" and match is not None:
            return None
        if action == "replace" and match is not None:
            template = re.sub(r"\$\{?(\d+)\}?", r"\\g<\1>", step.get("replacement", "$1"))
            result = match.expand(template)
            if result:
                out[step["target_label"]] = result
            else:
                out.pop(step["target_label"], None)
    return out


def pod_target(container: str, ip: str = "10.1.2.3", **extra: str) -> dict[str, str]:
    """A target of ``role: pod`` for a container port of an injected pod."""
    return {"__address__": f"{ip}:15090", "__meta_kubernetes_namespace": "bookinfo",
            "__meta_kubernetes_pod_name": "ratings-7d9f", "__meta_kubernetes_pod_ip": ip,
            "__meta_kubernetes_pod_container_name": container,
            "__meta_kubernetes_pod_annotationpresent_prometheus_io_scrape": "true",
            "__meta_kubernetes_pod_annotation_prometheus_io_port": "15020", **extra}


def test_envoy_stats_scrapes_each_sidecar_once_with_the_cluster() -> None:
    envoy, _ = istio_scrape_jobs("east")
    steps = envoy["relabel_configs"]
    kept = relabel(pod_target("istio-proxy"), steps)
    assert kept is not None
    # Istio's merged metrics port (the pod's prometheus.io/port annotation)
    assert kept["__address__"] == "10.1.2.3:15020"
    assert (kept["namespace"], kept["pod"], kept["cluster"]) == ("bookinfo", "ratings-7d9f", "east")
    v6 = relabel(pod_target("istio-proxy", ip="fd00::1:2"), steps)
    assert v6 is not None and v6["__address__"] == "[fd00::1:2]:15020"
    # the application's own container ports are other targets of the same pod
    assert relabel(pod_target("ratings"), steps) is None
    # pods Istio's PodMonitor leaves out (selector: no istio-prometheus-ignore label)
    ignored = pod_target("istio-proxy", **{
        "__meta_kubernetes_pod_label_istio_prometheus_ignore": "true",
        "__meta_kubernetes_pod_labelpresent_istio_prometheus_ignore": "true"})
    assert relabel(ignored, steps) is None


def test_istiod_job_keeps_only_pilots_monitoring_port() -> None:
    _, istiod = istio_scrape_jobs("west")
    base = {"__address__": "10.9.0.4:15014", "__meta_kubernetes_service_label_istio": "pilot",
            "__meta_kubernetes_endpoint_port_name": "http-monitoring"}
    kept = relabel(base, istiod["relabel_configs"])
    assert kept is not None and kept["cluster"] == "west"
    assert relabel({**base, "__meta_kubernetes_endpoint_port_name": "grpc-xds"},
                   istiod["relabel_configs"]) is None
    assert relabel({**base, "__meta_kubernetes_service_label_istio": "eastwestgateway"},
                   istiod["relabel_configs"]) is None


def federated_names(job: dict[str, Any]) -> str:
    [selector] = job["params"]["match[]"]
    found = re.fullmatch(r'\{__name__=~"(.*)"\}', selector)
    assert found is not None, selector
    return found.group(1)


def test_federation_pulls_what_kiali_and_the_canary_checks_read(rendered: Any) -> None:
    """The federating Prometheus (east) is the one Kiali reads for a mesh-wide view and
    the canary checks and recording rules may query: Istio's standard metrics
    (istio.io docs/reference/config/metrics; Kiali uses all of them,
    kiali/kiali business/metrics_definitions.go), not the proxies' own."""
    provider, tree = rendered
    [cm] = find(tree["east"], "ConfigMap", "meshboot-prometheus" if provider == "istio"
                else "meshboot-prometheus-rules")
    if provider == "istio":
        config = yaml.safe_load(cm["data"]["prometheus.yml"])
        jobs = config["scrape_configs"]
    else:
        [viz] = find(tree["east"], "HelmRelease", "linkerd-viz")
        jobs = viz["spec"]["values"]["prometheus"]["scrapeConfigs"]
    [job] = [j for j in jobs if j["job_name"] == "federate-west"]
    assert job["honor_labels"] is True   # each series keeps its own cluster label...
    # ...and one that has none gets the target's (Istio's multicluster monitoring guide)
    assert job["static_configs"] == [{"targets": ["prometheus.west.example:9090"],
                                      "labels": {"cluster": "west"}}]
    names = federated_names(job)   # Prometheus anchors the regex at both ends
    queries = " ".join(t["spec"]["query"] for t in find(tree["west"], "MetricTemplate"))
    used = set(re.findall(r"\b([a-z_]+)\{", queries))
    assert used and all(re.fullmatch(names, n) for n in used)
    if provider == "istio":
        for kiali in ("istio_tcp_sent_bytes_total", "istio_tcp_received_bytes_total",
                      "istio_tcp_connections_opened_total", "istio_request_bytes_sum",
                      "istio_response_bytes_bucket", "istio_request_duration_milliseconds_sum",
                      "istio_request_duration_milliseconds_count", "istio_request_messages_total",
                      "istio_response_messages_total"):
            assert re.fullmatch(names, kiali), kiali
        for local in ("istio_agent_go_goroutines", "envoy_cluster_upstream_rq_total", "istio_build"):
            assert not re.fullmatch(names, local), local
    else:
        assert not re.fullmatch(names, "tcp_open_total")
