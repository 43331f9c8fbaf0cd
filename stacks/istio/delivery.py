"""Istio steps for ``meshboot:observability`` and ``meshboot:delivery`` (both optional).

``observability``: the ``meshboot-prometheus`` ConfigMap in every cluster (each
scrapes its own proxies) and, where Istio resources are read (primaries), the
mesh-wide ``Telemetry``. ``kiali``: Kiali on primaries. ``flagger`` and
``delivery``: Flagger and its objects where a Flagger canary runs (primaries
only: see ``clusters.validate_delivery``).
"""

from __future__ import annotations

from typing import Any

from clusters.spec import ClusterSpec, ServiceSpec, Spec
from stacks.common import namespace, service_account_token_secret
from stacks.delivery.flagger import (
    app_protocol,
    canary,
    flagger_namespace,
    flagger_release,
    flagger_services,
    metric_templates,
)
from stacks.istio.policy import _APP_PROTOCOL, traffic_policy
from stacks.istio.topology import ISTIO_NS
from stacks.observability.kiali import (
    KIALI_SA,
    kiali_remote_secret,
    kiali_remote_values,
    kiali_service_account,
    kiali_token_secret_name,
    kiali_values,
)
from stacks.observability.prometheus import istio_prometheus_configmap, telemetry_defaults
from stacks.plan import ClusterPlan, HelmRelease, Step


def extra_namespaces(spec: Spec, c: ClusterSpec) -> list[dict[str, Any]]:
    if spec.delivery is not None and spec.delivery.flagger.enabled and flagger_services(spec, c.name):
        return [namespace(flagger_namespace(spec))]
    return []


def canary_service(spec: Spec, s: ServiceSpec) -> dict[str, Any]:
    """The Istio part of ``Canary.spec.service``: what meshboot's VirtualService and
    DestinationRule would have carried (Flagger copies them into its own)."""
    out: dict[str, Any] = app_protocol(s, _APP_PROTOCOL)
    if s.retries is not None:
        r = s.retries
        retries: dict[str, Any] = {"attempts": r.attempts, "retryOn": ",".join(r.retry_on)}
        if r.per_try_timeout is not None:
            retries["perTryTimeout"] = r.per_try_timeout
        out["retries"] = retries
    tp = flagger_traffic_policy(spec, s)
    if tp:
        out["trafficPolicy"] = tp
    return out


def flagger_traffic_policy(spec: Spec, s: ServiceSpec) -> dict[str, Any]:
    """The DestinationRule traffic policy as Flagger's Canary carries it.

    Flagger's ``LoadBalancerSettings`` needs exactly one of ``simple`` and
    ``consistentHash`` (fluxcd/flagger pkg/apis/istio/v1beta1/destination_rule.go,
    and its CRD's oneOf), where Istio accepts locality settings alone: the
    algorithm Istio uses then, LEAST_REQUEST (istio 1.30.3
    pilot/pkg/networking/core/cluster_traffic_policy.go ``defaultLBAlgorithm``),
    is written out. What the Canary cannot carry (a TCP pool, failoverPriority)
    is refused by ``clusters.validate_delivery``.
    """
    tp = traffic_policy(spec, s)
    lb = tp.get("loadBalancer")
    if lb is not None and "simple" not in lb and "consistentHash" not in lb:
        tp["loadBalancer"] = {"simple": "LEAST_REQUEST", **lb}
    return tp


def add_kiali_steps(spec: Spec, cp: ClusterPlan, c: ClusterSpec) -> None:
    """Kiali on a primary, reading every other cluster of the mesh through
    remote-cluster Secrets (kiali.io docs/configuration/multi-cluster); in an
    Istio remote only the ServiceAccount and roles those Kialis use. Each
    cluster another cluster's Kiali reads gets a token Secret for that account.
    """
    assert spec.observability is not None
    k = spec.observability.kiali
    values = kiali_remote_values() if c.is_remote else kiali_values(k.prometheus, k.auth_strategy)
    # Account, token and remote-cluster Secrets before the release that mounts the
    # Secrets (see stacks.observability.kiali.SKIP_ACCOUNT).
    cp.add(Step("kiali-account", after=("istiod",), objects=(kiali_service_account(),)))
    kiali_after = "kiali-account"
    if any(not o.is_remote and o.name != c.name for o in spec.clusters):
        cp.add(Step("kiali-token", after=("kiali-account",), objects=(service_account_token_secret(
            kiali_token_secret_name(spec), ISTIO_NS, KIALI_SA),)))
    if not c.is_remote:
        others = [o for o in spec.clusters if o.name != c.name]
        if others:
            cp.add(Step("kiali-remote-secrets", after=("kiali-account",), objects=tuple(
                kiali_remote_secret(spec, o.name, o.api_server) for o in others)))
            kiali_after = "kiali-remote-secrets"
    cp.add(Step("kiali", after=("istiod", kiali_after), release=HelmRelease(
        release_name="kiali", namespace=ISTIO_NS, chart="kiali-server", repo_name="kiali",
        repo_url=k.chart_repository, version=k.chart_version, values=values)))


def add_steps(spec: Spec, cp: ClusterPlan, c: ClusterSpec, cr_after: str) -> None:
    """Append the optional steps to ``cp`` (after the mesh's own)."""
    if spec.observability is not None:
        objs = [istio_prometheus_configmap(spec, c.name)]
        if not c.is_remote:
            objs.insert(0, telemetry_defaults())
        cp.add(Step("observability", after=(cr_after,), objects=tuple(objs)))
        if spec.observability.kiali.enabled:
            add_kiali_steps(spec, cp, c)
    services = flagger_services(spec, c.name)
    if not services:
        return
    assert spec.delivery is not None
    after = cr_after
    if spec.delivery.flagger.enabled:
        cp.add(Step("flagger", after=("namespaces", "istiod"),
                    release=flagger_release(spec, c.name, {})))
        after = "flagger"
    objs = metric_templates(spec, c.name)
    objs += [canary(spec, s, canary_service(spec, s)) for s in services]
    cp.add(Step("delivery", after=(after,), objects=tuple(objs)))



