"""Linkerd steps for ``meshboot:observability`` and ``meshboot:delivery`` (both optional).

``observability``: the recording-rules ConfigMap in ``linkerd-viz``;
``linkerd-viz``: the viz extension, whose Prometheus scrapes the proxies
(gateway and service-mirror metrics of linkerd-multicluster included: its
``linkerd-proxy`` and ``linkerd-multicluster-controller`` jobs) with the
``cluster`` label and external label. ``flagger`` and ``delivery``: Flagger
(Gateway API provider) and its objects where a Flagger canary runs.
"""

from __future__ import annotations

from typing import Any

from clusters.spec import ClusterSpec, ServiceSpec, Spec
from stacks.common import namespace
from stacks.delivery.flagger import (
    app_protocol,
    canary,
    canary_port,
    flagger_namespace,
    flagger_release,
    flagger_services,
    metric_templates,
)
from stacks.linkerd.policy import gateway_api_duration
from stacks.linkerd.topology import APP_PROTOCOL
from stacks.observability.prometheus import VIZ_NS, linkerd_rules_configmap, linkerd_viz_values
from stacks.plan import ClusterPlan, HelmRelease, Step

# viz's templates/namespace.yaml (written only by `linkerd viz install`; Helm installs
# need the namespace first): the extension label `linkerd check` looks for, and the
# privileged pod-security level linkerd-init needs without the CNI plugin.
VIZ_NAMESPACE_LABELS = {"linkerd.io/extension": "viz",
                        "pod-security.kubernetes.io/enforce": "privileged"}


def extra_namespaces(spec: Spec, c: ClusterSpec) -> list[dict[str, Any]]:
    out = []
    if spec.observability is not None:
        out.append(namespace(VIZ_NS, VIZ_NAMESPACE_LABELS))
    if spec.delivery is not None and spec.delivery.flagger.enabled and flagger_services(spec, c.name):
        # Meshed, as fluxcd/flagger kustomize/linkerd/namespace.yaml: Flagger calls
        # linkerd-viz's Prometheus, which only admits meshed clients.
        out.append(namespace(flagger_namespace(spec), annotations={"linkerd.io/inject": "enabled"}))
    return out


def canary_service(s: ServiceSpec, apex_labels: dict[str, str],
                   apex_annotations: dict[str, str]) -> dict[str, Any]:
    """The Gateway API part of ``Canary.spec.service``: the HTTPRoute attaches to the
    apex Service itself (Linkerd's producer routes; Flagger's Linkerd tutorial
    ``gatewayRefs: [{group: core, kind: Service, ...}]``), and the apex Service,
    which Flagger owns, carries the labels meshboot's Service would have (export)."""
    port = canary_port(s)
    apex: dict[str, Any] = {"labels": dict(apex_labels)}
    # Flagger copies service.timeout into the HTTPRoute's rules[].timeouts.request
    # (pkg/router/gateway_api.go makeHTTPRouteTimeouts): a Gateway API Duration.
    timeout = {"timeout": gateway_api_duration(s.timeout)} if s.timeout is not None else {}
    if apex_annotations:
        apex["annotations"] = dict(apex_annotations)
    return {**app_protocol(s, APP_PROTOCOL), **timeout,
            "gatewayRefs": [{"name": s.name, "namespace": s.namespace, "group": "core",
                             "kind": "Service", "port": port.port}],
            "apex": apex}


def add_steps(spec: Spec, cp: ClusterPlan, c: ClusterSpec, control_plane: HelmRelease,
              apex: dict[str, tuple[dict[str, str], dict[str, str]]]) -> None:
    """Append the optional steps; ``apex``: service name -> (labels, annotations)."""
    if spec.observability is not None:
        cp.add(Step("observability", after=("namespaces",),
                    objects=(linkerd_rules_configmap(spec),)))
        cp.add(Step("linkerd-viz", after=("linkerd-control-plane", "observability"),
                    release=HelmRelease(
                        release_name="linkerd-viz", namespace=VIZ_NS, chart="linkerd-viz",
                        repo_name=control_plane.repo_name, repo_url=control_plane.repo_url,
                        version=control_plane.version, values=linkerd_viz_values(spec, c.name))))
    services = flagger_services(spec, c.name)
    if not services:
        return
    assert spec.delivery is not None
    after = "linkerd-control-plane"
    if spec.delivery.flagger.enabled:
        values: dict[str, Any] = {}
        if spec.observability is not None:
            # The chart's AuthorizationPolicy lets Flagger query viz's Prometheus.
            values["linkerdAuthPolicy"] = {"create": True}
        flagger_after = ("namespaces", "linkerd-viz" if spec.observability is not None
                         else "linkerd-control-plane")
        cp.add(Step("flagger", after=flagger_after, release=flagger_release(spec, c.name, values)))
        after = "flagger"
    objs = metric_templates(spec, c.name)
    objs += [canary(spec, s, canary_service(s, *apex[s.name])) for s in services]
    cp.add(Step("delivery", after=(after,), objects=tuple(objs)))
