"""Cross-field checks of ``meshboot:delivery``, ``meshboot:observability`` and the
per-service canary analysis; every problem at once, each with its key path."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from clusters.delivery_spec import AnalysisSpec, merged_analysis, prom_duration_seconds
from clusters.errors import Problem, echo
from clusters.names import is_dns1123_label, is_dns1123_subdomain
from clusters.spec import ServiceSpec, Spec

_SEMVER = re.compile(r"^v?\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$")
_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$")


def validate_delivery(spec: Spec) -> list[Problem]:
    out: list[Problem] = []
    d = spec.delivery
    if d is not None:
        base = "meshboot:delivery"
        out += _check_url(d.prometheus, f"{base}.prometheus")
        if not is_dns1123_label(d.flagger.namespace):
            out.append(Problem(f"{base}.flagger.namespace",
                               f"{echo(d.flagger.namespace)} is not a namespace name"))
        if not _SEMVER.match(d.flagger.chart_version):
            out.append(Problem(f"{base}.flagger.chartVersion",
                               f"{echo(d.flagger.chart_version)} is not a chart version (X.Y.Z)"))
        if d.analysis.iterations is not None:
            out.append(Problem(f"{base}.analysis.iterations",
                               "set iterations per service (release.canary.analysis), with the "
                               "header that selects the testers: it turns a canary into an A/B test"))
        out += _check_weights(merged_analysis(d.analysis), f"{base}.analysis")
        out += _check_interval(d.analysis, f"{base}.analysis")
    for i, s in enumerate(spec.services):
        canary = s.release.canary if s.release is not None else None
        if canary is None:
            continue
        path = f"meshboot:services[{i}].release.canary"
        if not spec.flagger:
            for key, value in (("analysis", canary.analysis), ("deployment", canary.deployment)):
                if value is not None:
                    out.append(Problem(f"{path}.{key}", "only used when Flagger drives the release "
                                                        "(meshboot:delivery.engine: flagger)"))
            continue
        out += _check_flagger_service(spec, s, i)
    out += _check_metric_intervals(spec)
    out += _check_observability(spec)
    return out


# Flagger runs the analysis at most every 10s: a shorter interval is raised to 10s
# (fluxcd/flagger v1.44.0 pkg/apis/flagger/v1beta1/canary.go GetAnalysisInterval).
FLAGGER_MIN_INTERVAL_SECONDS = 10.0


def _check_interval(a: AnalysisSpec, path: str) -> list[Problem]:
    if a.interval is not None and prom_duration_seconds(a.interval) < FLAGGER_MIN_INTERVAL_SECONDS:
        return [Problem(f"{path}.interval", f"{a.interval} is shorter than 10s: Flagger runs the "
                                            "analysis at most every 10s (use 10s or more)")]
    return []


def _check_metric_intervals(spec: Spec) -> list[Problem]:
    """Each Flagger canary's query window holds two scrapes of meshboot's Prometheus
    (``rate()`` needs two samples: with fewer every check finds no data, and Flagger
    counts that as a failed check). Reported where the window is set."""
    d, o = spec.delivery, spec.observability
    if d is None or o is None or not spec.flagger:
        return []
    scrape = prom_duration_seconds(o.scrape_interval)
    out: list[Problem] = []
    for i, s in enumerate(spec.services):
        if not spec.flagger_canary(s):
            continue
        assert s.release is not None and s.release.canary is not None
        own = s.release.canary.analysis
        window = merged_analysis(own, d.analysis).metric_interval
        assert window is not None
        if prom_duration_seconds(window) >= 2 * scrape:
            continue
        if own is not None and own.metric_interval is not None:
            path = f"meshboot:services[{i}].release.canary.analysis.metricInterval"
        else:
            path = "meshboot:delivery.analysis.metricInterval"
        problem = Problem(path, f"{window} holds fewer than two scrapes ({o.scrape_interval}, "
                                "meshboot:observability.scrapeInterval): the canary queries' "
                                "rate() finds no data and Flagger rolls the canary back")
        if problem not in out:
            out.append(problem)
    return out


def delivery_warnings(spec: Spec) -> list[Problem]:
    """Valid, but likely to fail once deployed."""
    return _cluster_label_warning(spec) + _default_deny_warnings(spec) + _viz_federation_warnings(spec)


def _default_deny_warnings(spec: Spec) -> list[Problem]:
    """``security.defaultDeny`` admits only what a service's ``authorization`` allows,
    and a Flagger canary cannot have one (Flagger relabels the primary pods
    ``app: <svc>-primary``, fluxcd/flagger pkg/canary/deployment_controller.go): every
    call to the service, the canary checks' traffic included, would be denied."""
    if not spec.security.default_deny or not spec.flagger:
        return []
    return [Problem("meshboot:security.defaultDeny",
                    f"{s.name} ({s.namespace}) is released by Flagger, so meshboot renders no "
                    "authorization for it: every call to it is denied (and Flagger, finding no "
                    "traffic, rolls the canary back). Allow its callers yourself on the pods "
                    f"labelled app: {s.name} and app: {s.name}-primary, or use "
                    "meshboot:delivery.engine: static")
            for s in spec.services if spec.flagger_canary(s)]


def _viz_federation_warnings(spec: Spec) -> list[Problem]:
    """linkerd-viz's Prometheus answers only viz's metrics-api: its Server
    ``prometheus-admin`` has one AuthorizationPolicy, for that ServiceAccount
    (linkerd/linkerd2 edge-26.8.3 viz/charts/linkerd-viz/templates/prometheus-policy.yaml;
    Flagger's chart adds its own, ``linkerdAuthPolicy``). Who the federating
    Prometheus arrives as depends on the path to ``host:port`` (its own identity
    pod-to-pod, the gateway's through a multicluster gateway, none through a load
    balancer), which the spec does not say, so meshboot cannot write that policy."""
    o = spec.observability
    if spec.mesh.provider != "linkerd" or o is None or o.federation is None:
        return []
    f = o.federation
    return [Problem(f"meshboot:observability.federation.targets.{name}",
                    f"{name}'s linkerd-viz Prometheus admits only viz's metrics-api (Server "
                    "linkerd-viz/prometheus-admin): add an AuthorizationPolicy there for the "
                    f"identity or network {f.cluster}'s Prometheus arrives with, or /federate "
                    "answers 403")
            for name in f.targets if name != f.cluster and name in spec.cluster_names]


def _cluster_label_warning(spec: Spec) -> list[Problem]:
    """Flagger would fail every check: its queries select the cluster by the ``cluster``
    label, which the default Prometheus has only with meshboot:observability."""
    d = spec.delivery
    if d is None or not spec.flagger or spec.observability is not None or d.prometheus is not None \
            or not any(spec.flagger_canary(s) for s in spec.services):
        return []
    return [Problem("meshboot:delivery.prometheus",
                    "Flagger's metric queries select one cluster by the `cluster` label, which the "
                    "default Prometheus only has with meshboot:observability (its configuration "
                    "puts it on every series); without it every check finds no data and Flagger "
                    "rolls the canary back. Turn on meshboot:observability or name a Prometheus "
                    "whose series carry the label")]


def _check_url(value: str | None, path: str) -> list[Problem]:
    if value is None:
        return []
    url = urlsplit(value)
    if url.scheme not in ("http", "https") or not url.hostname:
        return [Problem(path, f"{echo(value)} is not an http(s) URL of a Prometheus")]
    return []


def _check_weights(a: AnalysisSpec, path: str) -> list[Problem]:
    step, top = a.step_weight, a.max_weight
    if step is not None and top is not None and step > top:
        return [Problem(f"{path}.stepWeight", f"{step} is above maxWeight {top}")]
    return []


def _check_flagger_service(spec: Spec, s: ServiceSpec, i: int) -> list[Problem]:
    out: list[Problem] = []
    base = f"meshboot:services[{i}]"
    assert s.release is not None and s.release.canary is not None and spec.delivery is not None
    canary = s.release.canary
    path = f"{base}.release.canary"
    own = canary.analysis
    if own is not None:
        out += _check_interval(own, f"{path}.analysis")
        if own.step_weight is not None or own.max_weight is not None:
            # Otherwise both come from meshboot:delivery.analysis, checked there.
            out += _check_weights(merged_analysis(own, spec.delivery.analysis), f"{path}.analysis")
        if own.iterations is not None and canary.header is None:
            out.append(Problem(f"{path}.analysis.iterations",
                               "an A/B test needs the header that selects the testers "
                               "(release.canary.header); without it Flagger would run a "
                               "blue/green release"))
    if canary.deployment is not None and not is_dns1123_subdomain(canary.deployment):
        out.append(Problem(f"{path}.deployment", f"{echo(canary.deployment)} is not a Deployment name"))
    # Flagger relabels the primary pods `app: <name>-primary` (its selectorLabels,
    # pkg/canary/deployment_controller.go), so selectors on `app: <name>` miss them.
    why_selector = ("Flagger renames the primary pods' app label to <name>-primary, so "
                    "meshboot's workload selector (app: <name>) would only reach the canary")
    for key, value in (("authorization", s.authorization), ("jwt", s.jwt), ("mtls", s.mtls)):
        if value is not None:
            out.append(Problem(f"{base}.{key}", f"cannot be combined with a Flagger canary: {why_selector}"))
    if s.fault is not None:
        out.append(Problem(f"{base}.fault", "cannot be combined with a Flagger canary: Flagger owns "
                                            "the service's routes and has no fault injection"))
    if spec.mesh.provider == "istio":
        known = {c.name: c for c in spec.clusters}  # a cluster that failed validation is absent
        for name in s.clusters:
            c = known.get(name)
            if c is not None and c.is_remote:
                out.append(Problem(f"{base}.clusters",
                                   f"{name!r} is an Istio remote: its Flagger would have to write "
                                   f"the VirtualService into {c.primary!r}'s API server "
                                   "(Flagger's controlplane kubeconfig), which meshboot does not "
                                   "set up; run Flagger canaries on primaries"))
                break
        # Flagger's Canary trafficPolicy schema (artifacts/flagger/crd.yaml) has no TCP pool
        # and no failoverPriority.
        if s.connection_pool is not None and s.connection_pool.tcp is not None:
            out.append(Problem(f"{base}.connectionPool.tcp",
                               "Flagger's Canary carries only the http connection pool"))
        locality = s.routing.locality if s.routing is not None else None
        if locality is not None and locality.failover_priority is not None:
            out.append(Problem(f"{base}.routing.locality.failoverPriority",
                               "Flagger's Canary has no failoverPriority (use failover or "
                               "distribute)"))
        r = s.retries
        if r is not None and not (r.allow_non_idempotent and r.methods is None):
            out.append(Problem(f"{base}.retries",
                               "Flagger's VirtualService retries every method; set "
                               "retries.allowNonIdempotent: true without methods to accept that"))
    else:
        if s.retries is not None:
            out.append(Problem(f"{base}.retries", "Flagger's Gateway API HTTPRoute carries no "
                                                  "retries: remove them or use engine: static"))
        if s.federated:
            out.append(Problem(f"{base}.federated", "a federated service has no local route for "
                                                    "Flagger to shift"))
    return out


def _check_observability(spec: Spec) -> list[Problem]:
    o = spec.observability
    if o is None:
        return []
    out: list[Problem] = []
    base = "meshboot:observability"
    out += _check_url(o.kiali.prometheus, f"{base}.kiali.prometheus")
    if prom_duration_seconds(o.rule_window) < 2 * prom_duration_seconds(o.scrape_interval):
        out.append(Problem(f"{base}.ruleWindow",
                           f"{o.rule_window} holds fewer than two scrapes ({o.scrape_interval}): "
                           "rate() needs two samples (use at least four scrape intervals)"))
    f = o.federation
    if f is not None:
        names = spec.cluster_names
        if f.cluster not in names:
            out.append(Problem(f"{base}.federation.cluster", f"unknown cluster {echo(f.cluster)}"))
        if not f.targets:
            out.append(Problem(f"{base}.federation.targets", "list at least one cluster to federate"))
        for name, target in f.targets.items():
            tpath = f"{base}.federation.targets.{name}"
            if name not in names:
                out.append(Problem(tpath, f"unknown cluster {echo(name)}"))
            elif name == f.cluster:
                out.append(Problem(tpath, "a Prometheus does not federate itself"))
            if not _HOST_PORT.match(target) or not 0 < int(target.rsplit(":", 1)[1]) < 65536:
                out.append(Problem(tpath, f"{echo(target)} is not host:port"))
    return out
