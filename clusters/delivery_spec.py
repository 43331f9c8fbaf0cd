"""``meshboot:delivery`` and ``meshboot:observability``: both optional, off when absent.

``meshboot:delivery`` hands canary releases (``release.canary``) to a release
controller that promotes by metrics. ``engine: flagger`` (the default once the
section is set) renders a Flagger ``Canary`` per cluster that runs the service;
``engine: static`` keeps meshboot's own weighted routes (as without the
section). Analysis settings are mesh-wide defaults here, overridable per
service in ``release.canary.analysis``.

``meshboot:observability`` adds per-cluster metrics wiring (Istio
``Telemetry``, a Prometheus configuration whose external label ``cluster`` is
the cluster's name, recording rules, Kiali on primaries; Linkerd: viz).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from clusters.errors import echo
from clusters.models import Model, Percent

# Durations both Go's time.ParseDuration (Flagger's intervals) and PromQL
# (prometheus/common model.ParseDuration: integer counts, largest unit first) read:
# Go's "1.5s" or "250us" are not PromQL, PromQL's "1d" is not Go. Flagger puts the
# metric interval into the query as `[{{ interval }}]`.
_PROM_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
_PROM_UNITS = (3600.0, 60.0, 1.0, 1e-3)


def prom_duration_seconds(value: str) -> float:
    """Seconds in a PromQL duration (``30s``, ``1m30s``, ``500ms``); ValueError if it does not parse."""
    m = _PROM_DURATION.match(value) if isinstance(value, str) else None
    if not value or m is None:
        raise ValueError(f"invalid duration {echo(value)} (integers with units h, m, s, ms, "
                         "largest first, e.g. 30s, 1m, 1m30s: both Go and PromQL read these)")
    return sum(int(n) * u for n, u in zip(m.groups(), _PROM_UNITS, strict=True) if n)


def _check_prom_duration(value: str) -> str:
    if prom_duration_seconds(value) < 1:
        raise ValueError(f"duration {echo(value)} is shorter than 1s")
    if prom_duration_seconds(value) > 86400:
        raise ValueError(f"duration {echo(value)} is longer than 24h")
    return value


PromDuration = Annotated[str, AfterValidator(_check_prom_duration)]
"""A duration both Go (Flagger) and PromQL parse, 1s to 24h: ``30s``, ``1m``, ``1m30s``."""


def _check_latency(value: str) -> str:
    if prom_duration_seconds(value) < 1e-3:
        raise ValueError(f"duration {echo(value)} is shorter than 1ms")
    return value


Latency = Annotated[str, AfterValidator(_check_latency)]
"""A latency bound such as ``500ms`` or ``2s`` (at least 1ms)."""


class AnalysisSpec(Model):
    """Flagger's canary analysis (``Canary.spec.analysis``); unset keys fall back to
    ``meshboot:delivery.analysis``, then to the defaults in :data:`ANALYSIS_DEFAULTS`."""

    # How often Flagger checks the metrics and moves the weight.
    interval: PromDuration | None = None
    # Failed checks before Flagger rolls back.
    threshold: int | None = Field(default=None, ge=1, le=1000)
    step_weight: int | None = Field(default=None, ge=1, le=100)
    max_weight: int | None = Field(default=None, ge=1, le=100)
    # With a header match: run an A/B test of this many intervals instead of shifting weights.
    iterations: int | None = Field(default=None, ge=1, le=1000)
    # The window of the metric queries (`[{{ interval }}]` in the PromQL).
    metric_interval: PromDuration | None = None
    # Lowest acceptable success rate of the canary, percent of non-5xx responses.
    success_rate: Percent | None = None
    # Highest acceptable 99th percentile request duration of the canary.
    latency_p99: Latency | None = None


ANALYSIS_DEFAULTS = AnalysisSpec(interval="1m", threshold=5, step_weight=10, max_weight=50,
                                 metric_interval="1m", success_rate=99.0, latency_p99="500ms")
"""Flagger's documented example values (docs/gitbook/usage/deployment-strategies.md)."""


def merged_analysis(*layers: AnalysisSpec | None) -> AnalysisSpec:
    """The first value set per key, from the most specific layer to the defaults."""
    values: dict[str, object] = {}
    for layer in (*layers, ANALYSIS_DEFAULTS):
        if layer is None:
            continue
        for key in AnalysisSpec.model_fields:
            if values.get(key) is None and getattr(layer, key) is not None:
                values[key] = getattr(layer, key)
    return AnalysisSpec.model_construct(**values)  # type: ignore[arg-type]


class FlaggerInstallSpec(Model):
    """The Flagger Helm release meshboot installs in every cluster with a Flagger canary."""

    enabled: bool = True
    namespace: str = "flagger-system"
    chart_version: str = "1.44.0"
    chart_repository: str = "https://flagger.app"


class DeliverySpec(Model):
    """``meshboot:delivery``."""

    engine: Literal["flagger", "static"] = "flagger"
    # Where Flagger's MetricTemplates query: a federated Prometheus whose series carry
    # the `cluster` label (meshboot:observability adds it). Default per provider: the
    # Prometheus of meshboot:observability (Istio) or linkerd-viz (Linkerd).
    prometheus: str | None = None
    flagger: FlaggerInstallSpec = FlaggerInstallSpec()
    analysis: AnalysisSpec = AnalysisSpec()


class FederationSpec(Model):
    """One cluster's Prometheus federates the others' (``/federate``), so the
    cross-cluster recording rules see every cluster."""

    # The cluster whose Prometheus scrapes the others.
    cluster: str
    # cluster -> host:port of its Prometheus, as the federating cluster reaches it.
    targets: dict[str, str]


class KialiSpec(Model):
    """Kiali on every Istio primary (kiali-server chart)."""

    enabled: bool = True
    # The Prometheus Kiali reads (a federating one shows every cluster); default
    # Istio's addon Prometheus in the cluster.
    prometheus: str | None = None
    # Kiali's login strategy (chart auth.strategy); its unified multi-cluster view
    # supports anonymous and openid. Default: the chart's.
    auth_strategy: Literal["anonymous", "openid", "token", "header"] | None = None
    chart_version: str = "2.29.0"
    chart_repository: str = "https://kiali.org/helm-charts"


class ObservabilitySpec(Model):
    """``meshboot:observability``."""

    scrape_interval: PromDuration = "15s"
    evaluation_interval: PromDuration = "30s"
    # The window of the recording rules' rate() (at least 4 scrape intervals).
    rule_window: PromDuration = "5m"
    federation: FederationSpec | None = None
    kiali: KialiSpec = KialiSpec()
