"""Flagger canaries and observability wiring, rendered for Istio and Linkerd."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.stacks.delivery.specs import delivery_spec, find, plan_objects, plan_of
from tests.support.validation import unknown_value_paths

CHARTS = {"flagger": "flagger-1.44.0.values.yaml", "linkerd-viz": "linkerd-viz-edge-26.8.3.values.yaml",
          "kiali-server": "kiali-server-2.29.0.values.yaml"}


def test_one_canary_per_cluster_that_runs_the_service(rendered: Any) -> None:
    _, tree = rendered
    assert [c["metadata"]["name"] for c in find(tree["east"], "Canary")] == ["ratings"]
    assert sorted(c["metadata"]["name"] for c in find(tree["west"], "Canary")) == ["ratings", "reviews"]


def test_analysis_comes_from_the_spec(rendered: Any) -> None:
    provider, tree = rendered
    [ratings] = find(tree["east"], "Canary", "ratings")
    a = ratings["spec"]["analysis"]
    # per service (stepWeight 5) over meshboot:delivery.analysis (30s, 3, 40) over defaults
    assert (a["interval"], a["threshold"], a["stepWeight"], a["maxWeight"]) == ("30s", 3, 5, 40)
    assert a["match"] == [{"headers": {"x-canary": {"exact": "always"}}}]
    thresholds = {m["name"]: m["thresholdRange"] for m in a["metrics"]}
    assert thresholds == {"success-rate": {"min": 99.5}, "latency-p99": {"max": 750}}
    assert ratings["spec"]["provider"] == {"istio": "istio", "linkerd": "gatewayapi:v1"}[provider]
    assert ratings["spec"]["targetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                            "name": "ratings"}
    svc = ratings["spec"]["service"]
    assert (svc["port"], svc["timeout"], svc["portDiscovery"]) == (9080, "3s", True)
    [reviews] = find(tree["west"], "Canary", "reviews")
    assert reviews["spec"]["targetRef"]["name"] == "reviews-app"
    assert reviews["spec"]["service"]["name"] == "reviews"
    assert reviews["spec"]["service"]["targetPort"] == 8080
    assert "match" not in reviews["spec"]["analysis"]
    assert reviews["spec"]["analysis"]["stepWeight"] == 10   # the default


def test_metric_templates_select_their_own_cluster(rendered: Any) -> None:
    _, tree = rendered
    for cluster, other in (("east", "west"), ("west", "east")):
        templates = find(tree[cluster], "MetricTemplate")
        assert sorted(t["metadata"]["name"] for t in templates) == \
            ["meshboot-latency-p99", "meshboot-success-rate"]
        for t in templates:
            q = t["spec"]["query"]
            assert f'cluster="{cluster}"' in q and other not in q
            # every selector of the query is bound to the cluster
            selectors = re.sub(r"\{\{[^}]*\}\}", "", q).count("{")
            assert selectors == q.count(f'cluster="{cluster}"') >= 1
        refs = {m["templateRef"]["name"] for c in find(tree[cluster], "Canary")
                for m in c["spec"]["analysis"]["metrics"]}
        assert refs == {t["metadata"]["name"] for t in templates}


def test_flagger_owns_the_route_of_the_services_it_releases(rendered: Any) -> None:
    provider, tree = rendered
    for cluster in ("east", "west"):
        objs = tree[cluster]
        names = {(o["kind"], o["metadata"]["name"]) for o in objs}
        for svc, runs in (("ratings", True), ("reviews", cluster == "west")):
            assert ("VirtualService", svc) not in names
            assert ("DestinationRule", svc) not in names
            owned = [o for o in objs if o["kind"] in ("HTTPRoute", "Service")
                     and o["metadata"]["name"].startswith(svc)
                     and o["metadata"].get("namespace") == "bookinfo"]
            if runs:
                assert owned == []
            else:   # where it does not run, only what makes the name resolve
                assert [o["metadata"]["labels"].get("meshboot.io/role") for o in owned] in \
                    ([], ["cross-cluster-stub"])
        # the blue/green service keeps meshboot's own routes
        assert (("VirtualService", "details") if provider == "istio"
                else ("HTTPRoute", "details-http")) in names


def test_provider_specific_service_block(rendered: Any) -> None:
    provider, tree = rendered
    [ratings] = find(tree["west"], "Canary", "ratings")
    svc = ratings["spec"]["service"]
    if provider == "istio":
        assert svc["portName"] == "http"
        assert svc["trafficPolicy"] == {"outlierDetection": {"consecutive5xxErrors": 7}}
    else:
        assert svc["gatewayRefs"] == [{"name": "ratings", "namespace": "bookinfo", "group": "core",
                                       "kind": "Service", "port": 9080}]
        # the export label meshboot's own Service would carry (west is behind a gateway)
        assert svc["apex"]["labels"] == {"mirror.linkerd.io/exported": "true"}
        assert svc["apex"]["annotations"][
            "balancer.linkerd.io/failure-accrual-consecutive-max-failures"] == "7"


def test_helm_values_exist_in_the_charts(rendered: Any) -> None:
    provider, tree = rendered
    seen = set()
    for objs in tree.values():
        for obj in find(objs, "HelmRelease"):
            chart = obj["spec"]["chart"]["spec"]["chart"]
            if chart in CHARTS:
                seen.add(chart)
                assert unknown_value_paths(obj["spec"]["values"], CHARTS[chart]) == []
    assert seen == ({"flagger", "kiali-server"} if provider == "istio" else {"flagger", "linkerd-viz"})


def test_flagger_release_per_cluster(rendered: Any) -> None:
    provider, tree = rendered
    for cluster in ("east", "west"):
        [rel] = find(tree[cluster], "HelmRelease", "flagger")
        v = rel["spec"]["values"]
        assert v["clusterName"] == cluster
        assert v["meshProvider"] == {"istio": "istio", "linkerd": "gatewayapi:v1"}[provider]
        assert rel["spec"]["chart"]["spec"]["version"] == "1.44.0"
        assert find(tree[cluster], "Namespace", "flagger-system")


def test_observability_objects(rendered: Any) -> None:
    provider, tree = rendered
    for cluster in ("east", "west"):
        objs = tree[cluster]
        if provider == "istio":
            [cm] = find(objs, "ConfigMap", "meshboot-prometheus")
            assert f"cluster: {cluster}" in cm["data"]["prometheus.yml"]
            assert find(objs, "Telemetry", "mesh-default")
        else:
            [viz] = find(objs, "HelmRelease", "linkerd-viz")
            prom = viz["spec"]["values"]["prometheus"]
            assert prom["globalConfig"]["external_labels"] == {"cluster": cluster}
            assert prom["metricRelabelConfigs"] == [{"target_label": "cluster",
                                                     "replacement": cluster}]
            assert find(objs, "ConfigMap", "meshboot-prometheus-rules")


def test_without_the_sections_nothing_changes(tmp_path: Path) -> None:
    spec = delivery_spec("istio")
    del spec["delivery"], spec["observability"]
    for s in spec["services"]:
        canary = s.get("release", {}).get("canary")
        if canary:
            canary.pop("analysis", None)
            canary.pop("deployment", None)
    tree = plan_objects(spec)
    kinds = {o["kind"] for objs in tree.values() for o in objs}
    assert not kinds & {"Canary", "MetricTemplate", "Telemetry", "ConfigMap"}
    [vs] = find(tree["east"], "VirtualService", "ratings")
    assert [r["name"] for r in vs["spec"]["http"]] == ["canary-header", "canary"]


def test_static_engine_keeps_meshboots_routes(tmp_path: Path) -> None:
    spec = delivery_spec("istio")
    spec["delivery"] = {"engine": "static"}
    for s in spec["services"]:
        canary = s.get("release", {}).get("canary")
        if canary:
            canary.pop("analysis", None)
            canary.pop("deployment", None)
    tree = plan_objects(spec)
    assert not find(tree["east"], "Canary")
    assert find(tree["east"], "VirtualService", "ratings")


def test_what_meshboots_routes_carried_moves_into_the_canary(tmp_path: Path) -> None:
    """Locality, pools, outlier detection, retries (Istio); A/B iterations; a prefix header."""
    spec = delivery_spec("istio")
    s = spec["services"][0]
    s["routing"] = {"locality": {"failover": [{"from": "us-east1", "to": "us-west1"}]}}
    s["connectionPool"] = {"http": {"http2MaxRequests": 5, "idleTimeout": "10s"}}
    s["retries"] = {"attempts": 3, "perTryTimeout": "1s", "allowNonIdempotent": True}
    s["release"]["canary"]["header"] = {"name": "x-canary", "prefix": "al"}
    s["release"]["canary"]["analysis"]["iterations"] = 4
    tree = plan_objects(spec)   # strict schema validation included
    [c] = find(tree["east"], "Canary", "ratings")
    svc, analysis = c["spec"]["service"], c["spec"]["analysis"]
    # Flagger needs an algorithm next to locality settings: Istio's own default.
    assert svc["trafficPolicy"]["loadBalancer"] == {
        "simple": "LEAST_REQUEST", "localityLbSetting": {"failover": [{"from": "us-east1",
                                                                        "to": "us-west1"}]}}
    assert svc["trafficPolicy"]["connectionPool"] == {"http": {"http2MaxRequests": 5,
                                                               "idleTimeout": "10s"}}
    assert svc["retries"] == {"attempts": 3, "perTryTimeout": "1s",
                              "retryOn": "connect-failure,refused-stream,unavailable,cancelled,5xx"}
    # A/B test: iterations and the match, no weights (Flagger ignores them there).
    assert analysis["iterations"] == 4 and "stepWeight" not in analysis and "maxWeight" not in analysis
    assert analysis["match"] == [{"headers": {"x-canary": {"prefix": "al"}}}]

    spec["mesh"]["provider"] = "linkerd"
    for key in ("routing", "connectionPool", "retries"):
        del s[key]
    tree = plan_objects(spec)
    [c] = find(tree["east"], "Canary", "ratings")
    # Flagger's Gateway API router maps only exact and regex header matches.
    assert c["spec"]["analysis"]["match"] == [{"headers": {"x-canary": {"regex": "^al.*"}}}]


@pytest.mark.parametrize("provider", ["istio", "linkerd"])
def test_flagger_in_a_service_namespace_is_one_namespace(provider: str) -> None:
    spec = delivery_spec(provider)
    spec["delivery"]["flagger"] = {"namespace": "bookinfo"}
    for cluster, objs in plan_objects(spec).items():
        assert len(find(objs, "Namespace", "bookinfo")) == 1, cluster
        assert {t["metadata"]["namespace"] for t in find(objs, "MetricTemplate")} == {"bookinfo"}


def test_kiali_on_primaries_reads_every_other_cluster() -> None:
    """Primaries run Kiali with a remote-cluster Secret per other cluster (Pulumi builds
    the kubeconfig from that cluster's Kiali token); a remote only hosts the account."""
    from stacks.plan import KubeconfigRef
    from tests.stacks.istio.helpers import CLUSTERS, service, three_cluster_spec

    spec = three_cluster_spec([service("reviews", ["east", "west"])],
                              observability={"kiali": {"authStrategy": "anonymous",
                                                       "prometheus": "http://thanos.monitoring:9090"}})
    tree = plan_objects(spec)
    plan = plan_of(spec)
    for cluster in CLUSTERS:
        objs = tree[cluster]
        kiali = plan.cluster(cluster).step("kiali").release
        assert kiali is not None and kiali.chart == "kiali-server"
        values = kiali.values
        assert unknown_value_paths(values, CHARTS["kiali-server"]) == []
        [token] = find(objs, "Secret", "kiali-token-1")
        assert token["type"] == "kubernetes.io/service-account-token"
        assert token["metadata"]["annotations"]["kubernetes.io/service-account.name"] == "kiali"
        secrets = {s["metadata"]["name"]: s for s in find(objs, "Secret")
                   if s["metadata"]["name"].startswith("kiali-remote-cluster-secret-")}
        if cluster == "central":    # an Istio remote: no Kiali of its own
            assert values == {"skipResources": ["sa"], "deployment": {"remote_cluster_resources_only": True}}
            assert secrets == {}
            continue
        assert values["auth"] == {"strategy": "anonymous"}
        assert values["external_services"]["prometheus"] == {
            "enabled": True, "url": "http://thanos.monitoring:9090"}
        assert values["clustering"]["autodetect_secrets"] == {
            "enabled": True, "label": "kiali.io/multiCluster=true"}
        others = [c for c in CLUSTERS if c != cluster]
        assert sorted(secrets) == sorted(f"kiali-remote-cluster-secret-{o}" for o in others)
        for other in others:
            s = secrets[f"kiali-remote-cluster-secret-{other}"]
            assert s["metadata"]["labels"]["kiali.io/multiCluster"] == "true"
            assert s["metadata"]["annotations"] == {"kiali.io/cluster": other}
            ref = s["stringData"][other]
            assert isinstance(ref, KubeconfigRef)
            assert (ref.target, ref.token_secret, ref.user) == \
                (other, ("istio-system", "kiali-token-1"), "kiali")


def test_kiali_starts_after_the_remote_cluster_secrets_it_mounts() -> None:
    """kiali-server mounts the remote-cluster Secrets it finds with Helm's `lookup` when
    the release is installed (kiali/helm-charts kiali-server/templates/_helpers.tpl
    "kiali-server.remote-cluster-secrets", deployment.yaml volumes), and Kiali reads
    them once at start (kiali/kiali kubernetes/client_factory.go GetRemoteClusterInfos).
    So the Secrets must exist before the release: the `kiali` account and its token
    come first (meshboot's, the chart told to skip it), the Kiali release last."""
    from tests.stacks.istio.helpers import CLUSTERS, service, three_cluster_spec

    spec = three_cluster_spec([service("reviews", ["east", "west"])], observability={"kiali": {}})
    plan = plan_of(spec)
    for cluster in CLUSTERS:
        cp = plan.cluster(cluster)
        names = [s.name for s in cp.steps]
        kiali = cp.step("kiali")
        assert kiali.release is not None
        assert kiali.release.values["skipResources"] == ["sa"]
        [account] = [o for o in cp.step("kiali-account").objects if o["kind"] == "ServiceAccount"]
        assert (account["metadata"]["name"], account["metadata"]["namespace"]) == ("kiali", "istio-system")
        assert names.index("kiali-account") < names.index("kiali")
        if "kiali-token" in names:
            assert "kiali-account" in cp.step("kiali-token").after
        if "kiali-remote-secrets" in names:
            assert names.index("kiali-remote-secrets") < names.index("kiali")
            assert "kiali-remote-secrets" in kiali.after
            assert "kiali" not in cp.step("kiali-remote-secrets").after
    # pulumi up: each primary's Kiali after every other cluster's token (no cycle).
    from stacks.pulumi_program import _schedule

    order = _schedule(plan)
    for cluster in ("east", "west"):
        for other in CLUSTERS:
            if other != cluster:
                assert order.index((other, "kiali-token")) < order.index((cluster, "kiali"))


def test_flagger_route_timeouts_need_gateway_api_crds_that_keep_them() -> None:
    """Flagger's Gateway API router writes Canary ``service.timeout`` into HTTPRoute
    ``rules[].timeouts`` (fluxcd/flagger v1.44.0 pkg/router/gateway_api.go
    makeHTTPRouteTimeouts); standard-channel CRDs older than v1.2.0 prune it, as for
    meshboot's own routes."""
    from clusters.errors import SpecError

    spec = delivery_spec("linkerd")   # ratings (timeout 3s) is released by Flagger in west
    west = spec["clusters"][1]
    assert west["name"] == "west"
    west.update({"gatewayApiCrds": "present", "gatewayApiVersion": "v1.1.1"})
    with pytest.raises(SpecError) as err:
        plan_of(spec)
    [problem] = [p for p in err.value.problems if p.path == "meshboot:clusters[1].gatewayApiVersion"]
    assert "timeouts" in problem.message
    west["gatewayApiVersion"] = "v1.2.0"
    assert plan_of(spec).cluster("west").step("delivery")


@pytest.mark.parametrize("provider", ["istio", "linkerd"])
def test_flagger_writes_the_port_meshboots_service_would_have(provider: str) -> None:
    """Flagger writes the main port of ``<svc>``, ``-primary`` and ``-canary`` itself,
    named ``service.portName`` (default "http") with ``service.appProtocol``, and
    replaces the ports of a Service it adopts (fluxcd/flagger v1.44.0
    pkg/router/kubernetes_default.go reconcileService). So the Canary carries the name
    and appProtocol of the Service meshboot renders for the same port without Flagger
    (a gRPC port keeps the appProtocol the mesh reads: h2c for Linkerd, grpc for Istio)."""
    spec = delivery_spec(provider)
    reviews = spec["services"][1]
    assert reviews["name"] == "reviews" and reviews["clusters"] == ["west"]
    reviews["ports"] = [{"name": "grpc-api", "port": 9080, "targetPort": 8080, "protocol": "GRPC"}]
    [canary] = find(plan_objects(spec)["west"], "Canary", "reviews")
    svc = canary["spec"]["service"]
    # meshboot's own Service of that port: Istio's stub where it does not run (east),
    # Linkerd's Service where it runs (engine: static).
    if provider == "istio":
        [own] = find(plan_objects(spec)["east"], "Service", "reviews")
    else:
        spec["delivery"] = {"engine": "static"}
        for s in spec["services"]:
            for key in ("deployment", "analysis"):
                s["release"].get("canary", {}).pop(key, None)
        [own] = find(plan_objects(spec)["west"], "Service", "reviews")
    [port] = own["spec"]["ports"]
    assert port["appProtocol"] == {"istio": "grpc", "linkerd": "kubernetes.io/h2c"}[provider]
    assert (svc["portName"], svc["appProtocol"], svc["port"]) == \
        (port["name"], port["appProtocol"], port["port"])


def test_callers_where_flagger_does_not_run_keep_the_client_policy() -> None:
    """A primary that does not run the service has no Flagger and no Flagger route: its
    callers get meshboot's VirtualService and DestinationRule on <svc> as for the same
    service without a release (timeout, retries, outlier detection), not nothing."""
    spec = delivery_spec("istio")
    reviews = spec["services"][1]   # a Flagger canary, runs only in west
    assert reviews["clusters"] == ["west"]
    reviews.update({"timeout": "2s", "outlierDetection": {"consecutive5xxErrors": 4},
                    "retries": {"attempts": 2, "allowNonIdempotent": True}})
    east = plan_objects(spec)["east"]
    west = plan_objects(spec)["west"]
    assert not find(west, "VirtualService", "reviews") and not find(west, "DestinationRule", "reviews")
    [vs] = find(east, "VirtualService", "reviews")
    [dr] = find(east, "DestinationRule", "reviews")
    # the same service released by nobody
    del reviews["release"], reviews["versions"]
    plain = plan_objects(spec)["east"]
    assert find(plain, "VirtualService", "reviews") == [vs]
    assert find(plain, "DestinationRule", "reviews") == [dr]
    [route] = vs["spec"]["http"]
    assert route["timeout"] == "2s" and route["retries"]["attempts"] == 2
    assert dr["spec"]["trafficPolicy"]["outlierDetection"] == {"consecutive5xxErrors": 4}
