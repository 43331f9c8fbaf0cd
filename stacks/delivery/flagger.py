"""Flagger objects for services whose canary Flagger releases (``meshboot:delivery``).

Per cluster that runs such a service: the Flagger Helm release, two
``MetricTemplate`` objects whose PromQL is bound to that cluster
(``stacks.delivery.queries``), and one ``Canary`` per service
(``flagger.app/v1beta1``, schema: fluxcd/flagger v1.44.0
``artifacts/flagger/crd.yaml``).

Flagger owns the service's routing while it drives a canary: from the target
Deployment it creates ``<svc>-primary``, the Services ``<svc>``,
``<svc>-primary`` and ``<svc>-canary`` and the route (Istio: VirtualService
``<svc>`` and DestinationRules ``<svc>-primary``/``-canary``,
``pkg/router/istio.go``; Gateway API: HTTPRoute ``<svc>`` attached to the
``gatewayRefs``, ``pkg/router/gateway_api.go``). So the providers' planners
render none of those for the service (see ``Spec.flagger_canary``); what the
spec says about the route (timeout, retries, traffic policy, the Linkerd
export label) goes into the Canary's ``service`` block instead.
"""

from __future__ import annotations

import re
from typing import Any

from clusters.delivery_spec import AnalysisSpec, merged_analysis, prom_duration_seconds
from clusters.policy import HeaderMatch
from clusters.spec import PortSpec, ServiceSpec, Spec
from stacks.delivery.queries import latency_p99_query, success_rate_query
from stacks.plan import HelmRelease

FLAGGER_API = "flagger.app/v1beta1"
SUCCESS_TEMPLATE = "meshboot-success-rate"
LATENCY_TEMPLATE = "meshboot-latency-p99"
# Flagger's mesh provider per meshboot provider: Istio's router, and Gateway API v1
# HTTPRoutes for Linkerd (Flagger's Linkerd tutorial, docs/gitbook/tutorials/
# linkerd-progressive-delivery.md: `meshProvider=gatewayapi:...`; Linkerd 2.14+
# routes by HTTPRoute, and the `linkerd` provider needs the SMI extension).
FLAGGER_PROVIDER = {"istio": "istio", "linkerd": "gatewayapi:v1"}
# Where the provider's Prometheus usually is: Istio's samples/addons/prometheus.yaml
# (Service prometheus.istio-system:9090); linkerd-viz's (viz chart, as in Flagger's
# Linkerd tutorial `metricsServer=http://prometheus.linkerd-viz:9090`).
DEFAULT_PROMETHEUS = {"istio": "http://prometheus.istio-system:9090",
                      "linkerd": "http://prometheus.linkerd-viz:9090"}


def prometheus_url(spec: Spec) -> str:
    assert spec.delivery is not None
    return spec.delivery.prometheus or DEFAULT_PROMETHEUS[spec.mesh.provider]


def flagger_namespace(spec: Spec) -> str:
    assert spec.delivery is not None
    return spec.delivery.flagger.namespace


def flagger_services(spec: Spec, cluster: str) -> list[ServiceSpec]:
    """The services Flagger releases in ``cluster`` (those with a canary that run there)."""
    return [s for s in spec.services if spec.flagger_canary(s) and cluster in s.clusters]


def analysis_of(spec: Spec, s: ServiceSpec) -> AnalysisSpec:
    assert spec.delivery is not None and s.release is not None and s.release.canary is not None
    return merged_analysis(s.release.canary.analysis, spec.delivery.analysis)


def metric_templates(spec: Spec, cluster: str) -> list[dict[str, Any]]:
    """The two MetricTemplates every Canary in ``cluster`` refers to."""
    provider = spec.mesh.provider
    ns = flagger_namespace(spec)
    source = {"type": "prometheus", "address": prometheus_url(spec)}
    return [
        {"apiVersion": FLAGGER_API, "kind": "MetricTemplate",
         "metadata": {"name": name, "namespace": ns},
         "spec": {"provider": dict(source), "query": query}}
        for name, query in ((SUCCESS_TEMPLATE, success_rate_query(provider, cluster)),
                            (LATENCY_TEMPLATE, latency_p99_query(provider, cluster)))
    ]


def header_match(h: HeaderMatch, provider: str) -> dict[str, str]:
    """Flagger's match value (Istio StringMatch). Flagger's Gateway API router only maps
    exact and regex (``mapRouteMatches``), so a prefix becomes an anchored regex there."""
    if h.exact is not None:
        return {"exact": h.exact}
    if h.prefix is not None:
        if provider == "istio":
            return {"prefix": h.prefix}
        return {"regex": f"^{re.escape(h.prefix)}.*"}
    assert h.regex is not None
    return {"regex": h.regex}


def analysis(spec: Spec, s: ServiceSpec) -> dict[str, Any]:
    """``Canary.spec.analysis`` from the merged analysis settings.

    Without a header: a progressive canary, ``stepWeight`` up to ``maxWeight``.
    With a header, Flagger routes only the matching calls by those weights and
    every other call to the primary (``pkg/router/istio.go`` SetRoutes, "fix
    routing (A/B testing)"); with ``iterations`` as well it is an A/B test, the
    matching calls go to the canary for that many intervals
    (``Canary.DeploymentStrategy``), and the weights are not used.
    """
    a = analysis_of(spec, s)
    assert s.release is not None and s.release.canary is not None
    header = s.release.canary.header
    body: dict[str, Any] = {"interval": a.interval, "threshold": a.threshold}
    if a.iterations is not None and header is not None:
        body["iterations"] = a.iterations
    else:
        body["maxWeight"] = a.max_weight
        body["stepWeight"] = a.step_weight
    if header is not None:
        body["match"] = [{"headers": {header.name: header_match(header, spec.mesh.provider)}}]
    ns = flagger_namespace(spec)
    assert a.latency_p99 is not None and a.success_rate is not None
    latency_ms = prom_duration_seconds(a.latency_p99) * 1000
    body["metrics"] = [
        {"name": "success-rate", "templateRef": {"name": SUCCESS_TEMPLATE, "namespace": ns},
         "thresholdRange": {"min": _number(a.success_rate)}, "interval": a.metric_interval},
        {"name": "latency-p99", "templateRef": {"name": LATENCY_TEMPLATE, "namespace": ns},
         "thresholdRange": {"max": _number(latency_ms)}, "interval": a.metric_interval},
    ]
    return body


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else round(value, 6)


def canary_port(s: ServiceSpec) -> PortSpec:
    """The port Flagger routes: the service's first HTTP port (validation requires one)."""
    return s.http_ports[0]


def app_protocol(s: ServiceSpec, app_protocols: dict[str, str]) -> dict[str, str]:
    """``{"appProtocol": ...}`` of the canary port when its protocol is declared, in the
    mesh's spelling (``app_protocols``: the provider's Service ports use the same map)."""
    protocol = canary_port(s).protocol
    return {"appProtocol": app_protocols[protocol]} if protocol in app_protocols else {}


def canary(spec: Spec, s: ServiceSpec, service: dict[str, Any]) -> dict[str, Any]:
    """The Canary for ``s``; ``service``: the provider's part of ``spec.service``."""
    assert s.release is not None and s.release.canary is not None
    target = s.release.canary.deployment or s.name
    port = canary_port(s)
    svc: dict[str, Any] = {}
    if target != s.name:
        svc["name"] = s.name
    svc["port"] = port.port
    svc["targetPort"] = port.target_port or port.port
    # Flagger writes the main port of the Services itself (and rewrites the ports of a
    # Service it adopts): named `portName`, default "http", with `appProtocol`
    # (fluxcd/flagger v1.44.0 pkg/router/kubernetes_default.go reconcileService). The
    # spec's name, and the provider's appProtocol in ``service``, keep what meshboot's
    # Service would have declared.
    svc["portName"] = port.name
    if len(s.ports) > 1:
        # The other ports are copied onto the generated Services (Flagger portDiscovery).
        svc["portDiscovery"] = True
    if s.timeout is not None:
        svc["timeout"] = s.timeout
    svc.update(service)
    return {
        "apiVersion": FLAGGER_API,
        "kind": "Canary",
        "metadata": {"name": s.name, "namespace": s.namespace},
        "spec": {
            "provider": FLAGGER_PROVIDER[spec.mesh.provider],
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "service": svc,
            "analysis": analysis(spec, s),
        },
    }


def flagger_release(spec: Spec, cluster: str, values: dict[str, Any]) -> HelmRelease:
    """Flagger's chart (charts/flagger, values.yaml of v1.44.0) for ``cluster``."""
    assert spec.delivery is not None
    f = spec.delivery.flagger
    base: dict[str, Any] = {"meshProvider": FLAGGER_PROVIDER[spec.mesh.provider],
                            "metricsServer": prometheus_url(spec),
                            "clusterName": cluster}
    return HelmRelease(release_name="flagger", namespace=f.namespace, chart="flagger",
                       repo_name="flagger", repo_url=f.chart_repository, version=f.chart_version,
                       values={**base, **values})


