"""Issue 9 (Linkerd): behaviours meshboot must share with upstream Linkerd edge-26.8.3.

Each test names the upstream source (linkerd/linkerd2 at edge-26.8.3, or the
linkerd.io 2-edge docs) whose behaviour it encodes. Expected values come from
the spec each test writes and from those upstream sources.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from clusters.spec import Spec
from scripts.cli import cli
from stacks.common import pki_params
from tests.conftest import write_stack
from tests.stacks.linkerd.specs import flat_clusters, three_clusters
from tests.support.validation import load_valid_tree

TD = "mesh.example.org"  # three_clusters() trust domain
GATEWAY_ID = f"linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.{TD}"


def render(tmp_path: Path, spec: dict[str, Any]) -> tuple[int, str]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    result = CliRunner().invoke(cli, ["render", "--config", str(write_stack(tmp_path, spec)),
                                      "--out", str(tmp_path / "out"),
                                      "--pki-dir", str(tmp_path / "pki")], env={})
    return result.exit_code, result.output


def rendered(tmp_path: Path, spec: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    code, output = render(tmp_path, spec)
    assert code == 0, output
    return load_valid_tree(tmp_path / "out")


@pytest.fixture(scope="module")
def three_clusters_tree(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """three_clusters() rendered once for the tests that only read it."""
    return rendered(tmp_path_factory.mktemp("three"), three_clusters())


def problems(output: str) -> dict[str, str]:
    return {line.split(": ")[1]: line for line in output.splitlines() if ": meshboot:" in line}


def of_kind(objs: list[dict[str, Any]], kind: str, api_prefix: str = ""
            ) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs
            if o["kind"] == kind and o["apiVersion"].startswith(api_prefix)}


# ------------------------------------------------------------------ 1. federated
def test_federated_selector_only_on_gatewayless_links(
        three_clusters_tree: dict[str, list[dict[str, Any]]]) -> None:
    # multicluster/service-mirror/cluster_watcher.go handleFederatedServiceJoin adds
    # svc@target to the remote-discovery annotation (pod-to-pod) whatever the Link's
    # mode; docs 2-edge/tasks/federated-services.md: federated services send traffic
    # directly to pods, never through a gateway. An unset selector matches nothing
    # (cluster_watcher.go isFederatedServiceMember).
    spec = three_clusters()  # a, c on n1 (flat); b on n2
    tree = three_clusters_tree
    nets = {c["name"]: c["network"] for c in spec["clusters"]}
    seen = 0
    for source, objs in tree.items():
        for name, link in of_kind(objs, "Link").items():
            flat = nets[source] == nets[name]
            assert ("gatewayAddress" not in link["spec"]) == flat
            if flat:
                assert link["spec"]["federatedServiceSelector"] == {
                    "matchLabels": {"mirror.linkerd.io/federated": "member"}}
            else:
                assert "federatedServiceSelector" not in link["spec"], (source, name)
            seen += 1
    assert seen == 6


# ------------------------------------------------------------ 2. mirror namespaces
def test_mirror_namespaces_exist_in_every_cluster_that_gets_a_mirror(tmp_path: Path) -> None:
    # cluster_watcher.go handleCreateOrUpdate / handleCreateFederatedService: with
    # enableNamespaceCreation false (chart values.yaml default) a service whose
    # namespace is missing is skipped ("Skipped mirroring service: namespace does
    # not exist"). meshboot creates the namespace (injected) wherever a mirror goes.
    spec = three_clusters()
    spec["services"] += [
        # exported from b only: a and c mirror it through b's gateway
        {"name": "shop", "namespace": "store", "ports": [{"name": "http", "port": 80}],
         "clusters": ["b"]},
        # federated, only in a: c joins it (flat link), b does not (gateway link)
        {"name": "search", "namespace": "fed", "ports": [{"name": "http", "port": 80}],
         "clusters": ["a"], "federated": True},
    ]
    spec["security"] = {"defaultDeny": True}
    tree = rendered(tmp_path, spec)

    def namespaces(cluster: str) -> dict[str, dict[str, Any]]:
        return of_kind(tree[cluster], "Namespace")

    for cluster in ("a", "b", "c"):
        ns = namespaces(cluster)["store"]
        assert ns["metadata"]["annotations"] == {
            "config.linkerd.io/default-inbound-policy": "deny",
            "linkerd.io/inject": "enabled"}
    assert "fed" in namespaces("a") and "fed" in namespaces("c")
    assert "fed" not in namespaces("b")  # no federated mirror through a gateway
    # The chart's own switch stays off: meshboot owns the namespaces.
    for cluster in ("a", "b", "c"):
        mc = of_kind(tree[cluster], "HelmRelease")["linkerd-multicluster"]
        assert "enableNamespaceCreation" not in mc["spec"]["values"]


# ------------------------------------------------------------------ 3. probe port
def test_probe_port_other_than_the_proxy_admin_port_is_refused(tmp_path: Path) -> None:
    # charts/linkerd-multicluster templates/controller/probe-svc.yaml takes the
    # probe-<link> port from controllers[].gateway.probe.port (default 4191), and
    # templates/gateway.yaml's mc-probe port has no targetPort, so it must be the
    # gateway proxy's admin port (4191). service-mirror/probe_worker.go dials
    # probe-<link>:<Link.probeSpec.port>.
    spec = three_clusters()
    spec["linkerd"] = {"probe": {"port": 4192}}
    code, output = render(tmp_path, spec)
    assert code == 2, output
    assert "4191" in problems(output)["meshboot:linkerd.probe.port"]
    spec["linkerd"] = {"probe": {"port": 4191}}
    tree = rendered(tmp_path / "ok", spec)
    for objs in tree.values():
        values = of_kind(objs, "HelmRelease")["linkerd-multicluster"]["spec"]["values"]
        assert values["gateway"]["probe"]["port"] == 4191
        for link in of_kind(objs, "Link").values():
            if "probeSpec" in link["spec"]:
                assert link["spec"]["probeSpec"]["port"] == "4191"


# ---------------------------------------------------------- 4. probes on routes
def test_per_route_authorization_keeps_kubelet_probes(tmp_path: Path) -> None:
    # policy-controller/k8s/index/src/inbound/index.rs http_routes(): once an
    # HTTPRoute is attached to a Server, the default and probe routes are no longer
    # synthesised. docs 2-edge/tasks/configuring-per-route-policy.md: "we must also
    # create a HTTPRoute and AuthorizationPolicy so that probes from the Kubelet are
    # still authorized" (NetworkAuthentication 0.0.0.0/0 and ::/0, GET, exact paths).
    spec = flat_clusters()
    reviews = spec["services"][0]
    reviews["authorization"] = {
        "rules": [{"from": {"serviceAccounts": ["bookinfo/productpage"]},
                   "to": {"methods": ["GET"]}}]}
    code, output = render(tmp_path, spec)
    assert code == 2, output
    assert "probe" in problems(output)["meshboot:services[0].authorization.probePaths"]

    reviews["authorization"]["probePaths"] = ["/healthz", "/ready"]
    tree = rendered(tmp_path / "ok", spec)
    for objs in tree.values():
        routes = of_kind(objs, "HTTPRoute", "policy.linkerd.io/")
        probe = routes["reviews-http-probe"]
        assert probe["spec"]["parentRefs"] == [
            {"group": "policy.linkerd.io", "kind": "Server", "name": "reviews-http"}]
        assert probe["spec"]["rules"] == [{"matches": [
            {"path": {"type": "Exact", "value": "/healthz"}, "method": "GET"},
            {"path": {"type": "Exact", "value": "/ready"}, "method": "GET"}]}]
        authn = of_kind(objs, "NetworkAuthentication")["reviews-probe"]
        assert authn["spec"]["networks"] == [{"cidr": "0.0.0.0/0"}, {"cidr": "::/0"}]
        policy = of_kind(objs, "AuthorizationPolicy")["reviews-http-probe"]
        assert policy["spec"]["targetRef"] == {
            "group": "policy.linkerd.io", "kind": "HTTPRoute", "name": "reviews-http-probe"}
        assert policy["spec"]["requiredAuthenticationRefs"] == [
            {"group": "policy.linkerd.io", "kind": "NetworkAuthentication",
             "name": "reviews-probe"}]


def test_server_wide_authorization_needs_no_probe_paths(tmp_path: Path) -> None:
    # No route attached: the policy controller synthesises the probe route itself
    # (index.rs default_inbound_http_routes), so meshboot adds nothing.
    spec = flat_clusters()
    spec["services"][0]["authorization"] = {
        "rules": [{"from": {"serviceAccounts": ["bookinfo/productpage"]}}]}
    tree = rendered(tmp_path, spec)
    for objs in tree.values():
        assert not of_kind(objs, "NetworkAuthentication")
        assert not of_kind(objs, "HTTPRoute", "policy.linkerd.io/")


# ------------------------------------------------------------ 5. gateway identity
def test_restricted_callers_through_a_gateway_are_refused_by_default(tmp_path: Path) -> None:
    # docs 2-edge/tasks/pod-to-pod-multicluster.md: "client identity is lost when
    # going through the gateway"; requests arrive as the gateway's identity
    # (templates/gateway.yaml mirror.linkerd.io/gateway-identity).
    spec = three_clusters()  # reviews runs in a, b, c; b reaches a and c via gateways
    spec["services"][0]["authorization"] = {
        "rules": [{"from": {"serviceAccounts": ["bookinfo/productpage"]}}]}
    code, output = render(tmp_path, spec)
    assert code == 2, output
    line = problems(output)["meshboot:services[0].authorization"]
    assert "meshboot:linkerd.admitGatewayIdentity" in line


def test_gateway_identity_admitted_on_request(tmp_path: Path) -> None:
    spec = three_clusters()
    spec["linkerd"] = {"admitGatewayIdentity": True}
    spec["services"][0]["authorization"] = {
        "rules": [{"from": {"serviceAccounts": ["bookinfo/productpage"]}}]}
    spec["services"].append({"name": "flatonly", "namespace": "bookinfo",
                             "ports": [{"name": "http", "port": 80}], "clusters": ["a"],
                             "authorization": {"rules": [{"from": {
                                 "namespaces": ["frontend"]}}]}})
    tree = rendered(tmp_path, spec)
    for cluster in ("a", "b", "c"):
        ids = of_kind(tree[cluster], "MeshTLSAuthentication")["reviews-callers"]["spec"][
            "identities"]
        assert sorted(ids) == sorted([
            f"productpage.bookinfo.serviceaccount.identity.linkerd.{TD}", GATEWAY_ID])
    # flatonly runs in a, which b reaches through a's gateway: admitted too.
    ids = of_kind(tree["a"], "MeshTLSAuthentication")["flatonly-callers"]["spec"]["identities"]
    assert GATEWAY_ID in ids


def test_flat_network_needs_no_gateway_identity(tmp_path: Path) -> None:
    spec = flat_clusters()
    spec["services"][0]["authorization"] = {
        "rules": [{"from": {"serviceAccounts": ["bookinfo/productpage"]}}]}
    tree = rendered(tmp_path, spec)
    for objs in tree.values():
        for auth in of_kind(objs, "MeshTLSAuthentication").values():
            assert not any("linkerd-gateway" in i for i in auth["spec"]["identities"])


# --------------------------------------------------------- 6. circuit breaking
def test_long_base_ejection_time_sets_the_max_penalty(tmp_path: Path) -> None:
    # policy-controller/k8s/index/src/outbound/index.rs parse_consecutive_params:
    # max-penalty defaults to 60s and min_penalty <= max_penalty is required; a parse
    # error only logs a warning and leaves the Service without failure accrual.
    spec = three_clusters()
    spec["services"][0]["outlierDetection"] = {"consecutive5xxErrors": 3,
                                               "baseEjectionTime": "2m"}
    spec["services"].append({"name": "short", "namespace": "bookinfo",
                             "ports": [{"name": "http", "port": 80}], "clusters": ["a"],
                             "outlierDetection": {"baseEjectionTime": "30s"}})
    tree = rendered(tmp_path, spec)
    svc = of_kind(tree["a"], "Service")["reviews"]
    ann = svc["metadata"]["annotations"]
    assert ann["balancer.linkerd.io/failure-accrual-consecutive-min-penalty"] == "120s"
    assert ann["balancer.linkerd.io/failure-accrual-consecutive-max-penalty"] == "120s"
    short = of_kind(tree["a"], "Service")["short"]["metadata"]["annotations"]
    assert short["balancer.linkerd.io/failure-accrual-consecutive-min-penalty"] == "30s"
    assert "balancer.linkerd.io/failure-accrual-consecutive-max-penalty" not in short


# ------------------------------------------------------------------ 7. gRPC routes
def test_grpc_ports_get_grpcroutes(tmp_path: Path) -> None:
    # policy-controller/grpc/src/outbound.rs: on an appProtocol kubernetes.io/h2c port
    # GRPCRoutes are used when present (HTTPRoutes otherwise); outbound/index/grpc.rs
    # reads retry.linkerd.io/{limit,timeout,grpc} and timeout.linkerd.io/request from
    # the GRPCRoute's annotations; outbound/index/http.rs reads only
    # retry.linkerd.io/{limit,timeout,http} on an HTTPRoute.
    spec = flat_clusters()
    spec["services"] = [
        {"name": "rpc", "namespace": "bookinfo",
         "ports": [{"name": "grpc", "port": 9090, "protocol": "GRPC"},
                   {"name": "http", "port": 8080, "protocol": "HTTP"}],
         "clusters": ["east", "west"], "routing": {"localShare": 80}, "timeout": "2s",
         "retries": {"attempts": 3, "perTryTimeout": "500ms",
                     "retryOn": ["5xx", "unavailable", "cancelled"]}},
    ]
    tree = rendered(tmp_path, spec)
    for cluster, objs in tree.items():
        other = "west" if cluster == "east" else "east"
        grpc = of_kind(objs, "GRPCRoute")
        assert set(grpc) == {"rpc-grpc"}
        route = grpc["rpc-grpc"]
        assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
        assert route["spec"]["parentRefs"] == [
            {"group": "", "kind": "Service", "name": "rpc", "port": 9090}]
        (rule,) = route["spec"]["rules"]
        assert "matches" not in rule  # every method: no method filter
        assert {b["name"]: b["weight"] for b in rule["backendRefs"]} == {
            "rpc": 80, f"rpc-{other}": 20}
        assert route["metadata"]["annotations"] == {
            "retry.linkerd.io/limit": "3", "retry.linkerd.io/grpc": "cancelled,unavailable",
            "retry.linkerd.io/timeout": "500ms", "timeout.linkerd.io/request": "2s"}
        http = of_kind(objs, "HTTPRoute", "gateway.networking.k8s.io/")
        assert set(http) == {"rpc-http", "rpc-http-retry"}  # none for the gRPC port
        assert http["rpc-http-retry"]["metadata"]["annotations"] == {
            "retry.linkerd.io/limit": "3", "retry.linkerd.io/http": "5xx",
            "retry.linkerd.io/timeout": "500ms"}


# ------------------------------------------------------------------ 8. clean checks
def test_links_carry_the_created_by_annotation(
        three_clusters_tree: dict[str, list[dict[str, Any]]]) -> None:
    # multicluster/cmd/link-gen.go sets linkerd.io/created-by: linkerd/cli <version>;
    # multicluster/cmd/check.go checkLinkVersions warns "unable to determine version"
    # without it.
    for objs in three_clusters_tree.values():
        for link in of_kind(objs, "Link").values():
            assert link["metadata"]["annotations"] == {
                "linkerd.io/created-by": "linkerd/cli edge-26.8.3"}


def test_issuer_renewal_defaults_to_linkerd_check_window() -> None:
    # pkg/issuercerts/issuercerts.go expirationWarningThresholdInDays = 60;
    # pkg/healthcheck "issuer cert is valid for at least 60 days" warns below it.
    linkerd = Spec.model_validate(three_clusters())
    assert linkerd.pki.renew_before_days is None
    assert pki_params(linkerd).renew_before_days == 60
    istio = three_clusters()
    istio["mesh"]["provider"] = "istio"
    assert pki_params(Spec.model_validate(istio)).renew_before_days == 30
    explicit = three_clusters()
    explicit["pki"]["renewBeforeDays"] = 75
    assert pki_params(Spec.model_validate(explicit)).renew_before_days == 75


def test_short_issuer_renewal_warns_for_linkerd(tmp_path: Path) -> None:
    spec = three_clusters()
    spec["pki"]["renewBeforeDays"] = 30
    result = CliRunner().invoke(cli, ["validate", "--config", str(write_stack(tmp_path, spec))],
                                env={})
    assert result.exit_code == 0, result.output
    assert "meshboot:pki.renewBeforeDays" in result.output
    assert "60" in result.output


def test_linkerd_default_renewal_must_fit_the_issuer_validity(tmp_path: Path) -> None:
    spec = three_clusters()
    spec["pki"]["intermediateValidityDays"] = 60  # not longer than the default 60
    result = CliRunner().invoke(cli, ["validate", "--config", str(write_stack(tmp_path, spec))],
                                env={})
    assert result.exit_code == 2, result.output
    assert "meshboot:pki.intermediateValidityDays" in result.output
    assert "renewBeforeDays (60, the linkerd default)" in result.output


# ---------------------------------------------------------- 9. Gateway API CRDs
def test_present_gateway_api_must_keep_the_fields_meshboot_sets(tmp_path: Path) -> None:
    # charts/linkerd-crds bundles Gateway API v1.1.1 experimental
    # (gateway.networking.k8s.io/bundle-version annotation); rules[].timeouts is in
    # the standard channel from v1.2.0 only, so older standard CRDs prune it.
    # pkg/healthcheck CheckGatewayAPICRDs requires the v1 versions (v1.1.1 or later).
    spec = three_clusters()  # b has gatewayApiCrds: present
    spec["services"][0]["timeout"] = "3s"  # reviews runs in b
    code, output = render(tmp_path, spec)
    assert code == 2, output
    assert "kubectl get crd" in problems(output)["meshboot:clusters[1].gatewayApiVersion"]

    spec["clusters"][1]["gatewayApiVersion"] = "v1.1.1"
    code, output = render(tmp_path / "old", spec)
    assert code == 2, output
    assert "timeouts" in problems(output)["meshboot:clusters[1].gatewayApiVersion"]

    spec["clusters"][1]["gatewayApiVersion"] = "v1.0.0"
    spec["clusters"][1]["gatewayApiChannel"] = "experimental"
    code, output = render(tmp_path / "ancient", spec)
    assert code == 2, output
    assert "v1.1.1" in problems(output)["meshboot:clusters[1].gatewayApiVersion"]

    for version, channel in (("v1.1.1", "experimental"), ("v1.2.0", "standard")):
        spec["clusters"][1]["gatewayApiVersion"] = version
        spec["clusters"][1]["gatewayApiChannel"] = channel
        rendered(tmp_path / version, spec)


def test_present_gateway_api_without_routes_needs_no_version(
        three_clusters_tree: dict[str, list[dict[str, Any]]]) -> None:
    b = three_clusters()["clusters"][1]
    assert b["gatewayApiCrds"] == "present" and "gatewayApiVersion" not in b  # the premise
    assert three_clusters_tree["b"]  # rendered (exit 0) and strictly valid: the fixture
