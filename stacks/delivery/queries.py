"""The PromQL meshboot renders, per provider: canary checks and recording rules.

The canary checks have the shape of Flagger's built-in ``request-success-rate``
and ``request-duration`` queries (fluxcd/flagger v1.44.0
``pkg/metrics/observers/istio.go`` and ``linkerd.go``), with one change: every
selector also matches ``cluster="<cluster>"``. In a federated Prometheus the
series of every cluster sit side by side; without the filter healthy traffic
of the same workload in other clusters would dilute a failing canary.
``{{ namespace }}``, ``{{ target }}`` and ``{{ interval }}`` are Flagger's
template variables (``pkg/apis/flagger/v1beta1/metric.go``).

The ``cluster`` label is put on every series at scrape time by the
configuration ``stacks.observability`` renders (and is the Prometheus external
label too), so the same query works in the cluster's own Prometheus and in one
that federates all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

CLUSTER_LABEL = "cluster"


@dataclass(frozen=True)
class MeshMetrics:
    """The request metrics of a mesh's proxies and how to select a workload's inbound calls."""

    requests: str          # counter of responses
    failure: str           # label matcher of failed responses
    latency_bucket: str    # histogram of response latency in milliseconds
    inbound: tuple[str, ...]    # matchers of the server side's report
    namespace_label: str
    workload_label: str


# Istio standard metrics (istio.io docs/reference/config/metrics): reported by the
# server's proxy with reporter="destination".
ISTIO = MeshMetrics(
    requests="istio_requests_total", failure='response_code=~"5.*"',
    latency_bucket="istio_request_duration_milliseconds_bucket",
    inbound=('reporter="destination"',),
    namespace_label="destination_workload_namespace", workload_label="destination_workload")
# Linkerd proxy metrics (linkerd.io reference/proxy-metrics): inbound responses of a
# Deployment's proxies; classification="failure" are 5xx and gRPC errors.
LINKERD = MeshMetrics(
    requests="response_total", failure='classification="failure"',
    latency_bucket="response_latency_ms_bucket",
    inbound=('direction="inbound"',),
    namespace_label="namespace", workload_label="deployment")

METRICS = {"istio": ISTIO, "linkerd": LINKERD}


def _negate(matcher: str) -> str:
    return matcher.replace("=~", "!~", 1) if "=~" in matcher else matcher.replace("=", "!=", 1)


def _selector(*matchers: str) -> str:
    return "{" + ", ".join(matchers) + "}"


def canary_matchers(m: MeshMetrics, cluster: str) -> tuple[str, ...]:
    return (*m.inbound, f'{CLUSTER_LABEL}="{cluster}"',
            f'{m.namespace_label}="{{{{ namespace }}}}"', f'{m.workload_label}=~"{{{{ target }}}}"')


def success_rate_query(provider: str, cluster: str) -> str:
    """Percent of the canary's inbound calls in ``cluster`` that did not fail (Flagger template)."""
    m = METRICS[provider]
    sel = canary_matchers(m, cluster)
    ok = _selector(*sel, _negate(m.failure))
    return (f"sum(rate({m.requests}{ok}[{{{{ interval }}}}]))\n"
            f"/\nsum(rate({m.requests}{_selector(*sel)}[{{{{ interval }}}}]))\n* 100\n")


def latency_p99_query(provider: str, cluster: str) -> str:
    """The 99th percentile of the canary's inbound request duration in ``cluster``, in ms."""
    m = METRICS[provider]
    sel = _selector(*canary_matchers(m, cluster))
    return (f"histogram_quantile(0.99,\n"
            f"  sum(rate({m.latency_bucket}{sel}[{{{{ interval }}}}])) by (le)\n)\n")


def fill_template(query: str, namespace: str, target: str, interval: str) -> str:
    """``query`` with Flagger's variables substituted, as Flagger's text/template does."""
    return (query.replace("{{ namespace }}", namespace).replace("{{ target }}", target)
            .replace("{{ interval }}", interval))


def recording_rules(provider: str, window: str) -> list[dict[str, object]]:
    """Recording rule groups: per cluster and across clusters, request rate, errors, p99.

    Names follow Prometheus' ``level:metric:operations`` convention
    (prometheus.io docs/practices/rules). ``cluster:`` rules keep the
    ``cluster`` label, ``mesh:`` rules sum over every cluster the Prometheus
    sees (the federating one sees them all). For Istio, ``cluster_pair:``
    counts calls by ``source_cluster`` and ``destination_cluster`` (labels of
    Istio's standard metrics; PromQL cannot compare two labels, so the pairs of
    a cluster with itself, its local calls, are there too).
    """
    m = METRICS[provider]
    inbound = _selector(*m.inbound)
    failed = _selector(*m.inbound, m.failure)
    by = f"{CLUSTER_LABEL}, {m.namespace_label}, {m.workload_label}"
    mesh_by = f"{m.namespace_label}, {m.workload_label}"
    per_cluster = [
        {"record": f"cluster:{m.requests}:rate{window}",
         "expr": f"sum by ({by}) (rate({m.requests}{inbound}[{window}]))"},
        {"record": f"cluster:{m.requests}:errors:rate{window}",
         "expr": f"sum by ({by}) (rate({m.requests}{failed}[{window}]))"},
        {"record": f"cluster:{m.latency_bucket}:rate{window}",
         "expr": f"sum by ({by}, le) (rate({m.latency_bucket}{inbound}[{window}]))"},
        {"record": f"cluster:{m.latency_bucket.removesuffix('_bucket')}:p99_{window}",
         "expr": f"histogram_quantile(0.99, cluster:{m.latency_bucket}:rate{window})"},
    ]
    mesh = [
        {"record": f"mesh:{m.requests}:rate{window}",
         "expr": f"sum by ({mesh_by}) (cluster:{m.requests}:rate{window})"},
        {"record": f"mesh:{m.requests}:errors:rate{window}",
         "expr": f"sum by ({mesh_by}) (cluster:{m.requests}:errors:rate{window})"},
        {"record": f"mesh:{m.latency_bucket.removesuffix('_bucket')}:p99_{window}",
         "expr": f"histogram_quantile(0.99, sum by ({mesh_by}, le) "
                 f"(cluster:{m.latency_bucket}:rate{window}))"},
    ]
    if provider == "istio":
        pair = "source_cluster, destination_cluster"
        mesh += [
            {"record": f"cluster_pair:{m.requests}:rate{window}",
             "expr": f'sum by ({pair}) (rate({m.requests}{{reporter="destination", '
                     f'source_cluster!="unknown"}}[{window}]))'},
            {"record": f"cluster_pair:{m.requests}:errors:rate{window}",
             "expr": f'sum by ({pair}) (rate({m.requests}{{reporter="destination", '
                     f'source_cluster!="unknown", {m.failure}}}[{window}]))'},
        ]
    groups: list[dict[str, object]] = [{"name": "meshboot-cluster", "rules": per_cluster},
              {"name": "meshboot-mesh", "rules": mesh}]
    if provider == "linkerd":
        groups.append({"name": "meshboot-multicluster", "rules": linkerd_multicluster_rules(window)})
    return groups


def linkerd_multicluster_rules(window: str) -> list[dict[str, object]]:
    """Linkerd's multicluster metrics: the service mirror's probes of each linked
    gateway (``gateway_alive``, ``gateway_probe_latency_ms`` by
    ``target_cluster_name``: linkerd2 edge-26.8.3 multicluster/service-mirror/
    metrics.go, the metrics ``linkerd multicluster gateways`` reads), and the
    calls through this cluster's gateway (its proxy: ``deployment="linkerd-gateway"``
    in ``linkerd-multicluster``)."""
    gw = 'namespace="linkerd-multicluster", deployment="linkerd-gateway"'
    return [
        {"record": "link:gateway_alive:max",
         "expr": "max by (target_cluster_name) (gateway_alive)"},
        {"record": f"link:gateway_probe_latency_ms:p99_{window}",
         "expr": f"histogram_quantile(0.99, sum by (target_cluster_name, le) "
                 f"(rate(gateway_probe_latency_ms_bucket[{window}])))"},
        {"record": f"cluster:linkerd_gateway_response_total:rate{window}",
         "expr": f"sum by ({CLUSTER_LABEL}, direction) (rate(response_total{{{gw}}}[{window}]))"},
        {"record": f"cluster:linkerd_gateway_response_total:errors:rate{window}",
         "expr": f'sum by ({CLUSTER_LABEL}, direction) (rate(response_total{{{gw}, '
                 f'classification="failure"}}[{window}]))'},
    ]
