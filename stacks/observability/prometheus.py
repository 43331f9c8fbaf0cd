"""Per-cluster metrics wiring (``meshboot:observability``): Prometheus configuration,
recording rules, Istio ``Telemetry``, linkerd-viz values (Kiali: ``kiali``).

The one invariant: every series a cluster's Prometheus holds carries
``cluster="<cluster name>"``, put on at scrape time (a ``relabel_configs``
entry on each job) and also the Prometheus ``external_labels.cluster``, which
``/federate`` adds to what it exports. So the canary queries
(``stacks.delivery.queries``) select one cluster in the cluster's own
Prometheus and in one that federates the others alike.
"""

from __future__ import annotations

from typing import Any

import yaml

from clusters.delivery_spec import ObservabilitySpec, prom_duration_seconds
from clusters.spec import Spec
from stacks.delivery.queries import CLUSTER_LABEL, METRICS, recording_rules
from stacks.labels import MANAGED

PROMETHEUS_CONFIGMAP = "meshboot-prometheus"
RULES_CONFIGMAP = "meshboot-prometheus-rules"
RULES_FILE = "meshboot_rules.yml"   # linkerd-viz mounts `*_rules.yml` (its rule_files glob)
ISTIO_NS = "istio-system"
VIZ_NS = "linkerd-viz"


def observability(spec: Spec) -> ObservabilitySpec:
    assert spec.observability is not None
    return spec.observability


def cluster_relabel(cluster: str) -> dict[str, Any]:
    """A relabel step that sets ``cluster`` on every target (no source label: the empty
    value matches the default regex and the replacement is written)."""
    return {"target_label": CLUSTER_LABEL, "replacement": cluster}


def istio_scrape_jobs(cluster: str) -> list[dict[str, Any]]:
    """Istio's proxies and istiod, as Istio's Prometheus Operator examples scrape them
    (istio/istio 1.30.3 samples/addons/extras/prometheus-operator.yaml: PodMonitor
    ``envoy-stats-monitor``, ServiceMonitor ``istio-component-monitor``). The
    PodMonitor's selector (pods without the label ``istio-prometheus-ignore``) is
    the first relabel step here."""
    envoy = {
        "job_name": "envoy-stats",
        "metrics_path": "/stats/prometheus",
        "kubernetes_sd_configs": [{"role": "pod"}],
        "relabel_configs": [
            {"action": "drop",
             "source_labels": ["__meta_kubernetes_pod_labelpresent_istio_prometheus_ignore"],
             "regex": "true"},
            {"action": "keep", "source_labels": ["__meta_kubernetes_pod_container_name"],
             "regex": "istio-proxy"},
            {"action": "keep",
             "source_labels": ["__meta_kubernetes_pod_annotationpresent_prometheus_io_scrape"]},
            {"action": "replace",
             "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_port",
                               "__meta_kubernetes_pod_ip"],
             "regex": r"(\d+);(([A-Fa-f0-9]{1,4}::?){1,7}[A-Fa-f0-9]{1,4})",
             "replacement": "[$2]:$1", "target_label": "__address__"},
            {"action": "replace",
             "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_port",
                               "__meta_kubernetes_pod_ip"],
             "regex": r"(\d+);((([0-9]+?)(\.|$)){4})",
             "replacement": "$2:$1", "target_label": "__address__"},
            {"action": "replace", "source_labels": ["__meta_kubernetes_namespace"],
             "target_label": "namespace"},
            {"action": "replace", "source_labels": ["__meta_kubernetes_pod_name"],
             "target_label": "pod"},
            cluster_relabel(cluster),
        ],
    }
    istiod = {
        "job_name": "istiod",
        "kubernetes_sd_configs": [{"role": "endpoints", "namespaces": {"names": [ISTIO_NS]}}],
        "relabel_configs": [
            {"action": "keep",
             "source_labels": ["__meta_kubernetes_service_label_istio",
                               "__meta_kubernetes_endpoint_port_name"],
             "regex": "pilot;http-monitoring"},
            cluster_relabel(cluster),
        ],
    }
    return [envoy, istiod]


# Histograms are federated as their three series families.
_HISTOGRAM = "_(bucket|sum|count)"
# What the federating Prometheus pulls from the others. Istio: all its standard metrics
# (istio.io docs/reference/config/metrics), since Kiali's mesh-wide graph and metrics
# read that Prometheus and use them all (kiali/kiali business/metrics_definitions.go,
# graph/telemetry/istio/istio.go: TCP bytes and connections, request and response
# sizes, gRPC messages, duration sums), not only the two the canary checks use. The
# agent's and Envoy's own metrics stay in each cluster. Linkerd: what the canary
# checks and the recording rules use (viz has no multi-cluster view to feed).
FEDERATED = {
    "istio": ("istio_requests_total", f"istio_request_duration_milliseconds{_HISTOGRAM}",
              f"istio_request_bytes{_HISTOGRAM}", f"istio_response_bytes{_HISTOGRAM}",
              "istio_request_messages_total", "istio_response_messages_total",
              "istio_tcp_sent_bytes_total", "istio_tcp_received_bytes_total",
              "istio_tcp_connections_opened_total", "istio_tcp_connections_closed_total"),
    "linkerd": (METRICS["linkerd"].requests, METRICS["linkerd"].latency_bucket),
}


def federation_jobs(spec: Spec, cluster: str) -> list[dict[str, Any]]:
    """In the federating cluster: one ``/federate`` job per other cluster.

    ``honor_labels`` keeps each series' own ``cluster`` (Prometheus federation
    docs: "honor_labels ... ensures the labels of the federated series are
    kept"); the mesh's metrics (:data:`FEDERATED`) are federated raw, so the
    canary queries and the recording rules run there unchanged.
    """
    f = observability(spec).federation
    if f is None or f.cluster != cluster:
        return []
    names = "|".join(FEDERATED[spec.mesh.provider])
    return [{
        "job_name": f"federate-{name}",
        "honor_labels": True,
        "metrics_path": "/federate",
        "params": {"match[]": [f'{{__name__=~"{names}"}}']},
        # As Istio's multicluster monitoring guide (istio.io docs/ops/configuration/
        # telemetry/monitoring-multicluster-prometheus): series that come without
        # `cluster` (a Prometheus meshboot did not configure) still get theirs.
        "static_configs": [{"targets": [f.targets[name]], "labels": {CLUSTER_LABEL: name}}],
    } for name in spec.cluster_names if name in f.targets]


def global_config(spec: Spec, cluster: str) -> dict[str, Any]:
    o = observability(spec)
    # Prometheus refuses a scrape_timeout above the interval; its default timeout is 10s.
    timeout = o.scrape_interval if prom_duration_seconds(o.scrape_interval) < 10 else "10s"
    return {"scrape_interval": o.scrape_interval, "scrape_timeout": timeout,
            "evaluation_interval": o.evaluation_interval,
            "external_labels": {CLUSTER_LABEL: cluster}}


def istio_prometheus_config(spec: Spec, cluster: str) -> dict[str, Any]:
    """``prometheus.yml`` for ``cluster`` (Istio); rule files next to it."""
    return {
        "global": global_config(spec, cluster),
        "rule_files": [RULES_FILE],
        "scrape_configs": istio_scrape_jobs(cluster) + federation_jobs(spec, cluster),
    }


def rules(spec: Spec) -> dict[str, Any]:
    """The recording rules file (``promtool check rules`` format)."""
    return {"groups": recording_rules(spec.mesh.provider, observability(spec).rule_window)}


def dump(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=1000)


def istio_prometheus_configmap(spec: Spec, cluster: str) -> dict[str, Any]:
    """``meshboot-prometheus`` in istio-system: mount it as the Prometheus config directory
    (``--config.file=<dir>/prometheus.yml``; the rule file is named relative to it)."""
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": PROMETHEUS_CONFIGMAP, "namespace": ISTIO_NS, "labels": dict(MANAGED)},
        "data": {"prometheus.yml": dump(istio_prometheus_config(spec, cluster)),
                 RULES_FILE: dump(rules(spec))},
    }


def telemetry_defaults() -> dict[str, Any]:
    """Mesh-wide Telemetry (root namespace, no selector): the standard metrics through the
    ``prometheus`` provider (istio.io docs/tasks/observability/telemetry-api)."""
    return {
        "apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
        "metadata": {"name": "mesh-default", "namespace": ISTIO_NS},
        "spec": {"metrics": [{"providers": [{"name": "prometheus"}]}]},
    }


def linkerd_rules_configmap(spec: Spec) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": RULES_CONFIGMAP, "namespace": VIZ_NS, "labels": dict(MANAGED)},
        "data": {RULES_FILE: dump(rules(spec))},
    }


def linkerd_viz_values(spec: Spec, cluster: str) -> dict[str, Any]:
    """linkerd-viz chart values (viz/charts/linkerd-viz/values.yaml, edge-26.8.3).

    ``prometheus.globalConfig`` is the ``global:`` block of its prometheus.yml
    (templates/prometheus.yaml, toYaml); ``metricRelabelConfigs`` go on its
    ``linkerd-proxy`` job, so every proxy series gets ``cluster``;
    ``ruleConfigMapMounts`` mount the rules where its ``rule_files`` glob
    (``/etc/prometheus/*_rules.yml``) finds them; ``scrapeConfigs`` are extra
    jobs (federation).
    """
    prom: dict[str, Any] = {
        "globalConfig": global_config(spec, cluster),
        "metricRelabelConfigs": [cluster_relabel(cluster)],
        "ruleConfigMapMounts": [{"name": "meshboot-rules", "subPath": RULES_FILE,
                                 "configMap": RULES_CONFIGMAP}],
    }
    jobs = federation_jobs(spec, cluster)
    if jobs:
        prom["scrapeConfigs"] = jobs
    return {"prometheus": prom}
