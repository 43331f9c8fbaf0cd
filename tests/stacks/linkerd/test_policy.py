"""Traffic/security policy with Linkerd: what maps, and clear errors for what cannot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from click.testing import CliRunner

from scripts.cli import cli
from tests.conftest import write_stack
from tests.stacks.linkerd.specs import three_clusters, validate
from tests.support.validation import load_tree, load_valid_tree


def invoke(tmp_path: Path, spec: dict[str, Any]) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["render", "--config", str(write_stack(tmp_path, spec)),
                                      "--out", str(tmp_path / "out"),
                                      "--pki-dir", str(tmp_path / "pki")], env={})
    return result.exit_code, result.output


def policy_spec() -> dict[str, Any]:
    spec = three_clusters()
    reviews = spec["services"][0]  # runs in a, b, c
    reviews.update({"routing": {"localShare": 70}, "timeout": "3s",
                    "retries": {"attempts": 2, "perTryTimeout": "1s",
                                "retryOn": ["5xx", "connect-failure", "unavailable"]},
                    "authorization": {"rules": [{"from": {
                        "serviceAccounts": ["bookinfo/productpage"],
                        "namespaces": ["frontend"]}}]}})
    spec["services"].append({
        "name": "details", "namespace": "bookinfo", "ports": [{"name": "http", "port": 9080}],
        "clusters": ["a", "b"], "versions": ["v1", "v2"],
        "release": {"canary": {"stable": "v1", "candidate": "v2", "weight": 10,
                               "header": {"name": "x-canary", "exact": "yes"}}}})
    spec["security"] = {"defaultDeny": True}
    # b is reached through gateways: admit the gateway identity (test_upstream_fixes)
    spec["linkerd"] = {"admitGatewayIdentity": True}
    # b brings its own Gateway API CRDs: recent enough for rules[].timeouts
    spec["clusters"][1]["gatewayApiVersion"] = "v1.2.1"
    return spec


GATEWAY = "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd."


def objects(tree: dict[str, list[dict[str, Any]]], cluster: str, kind: str
            ) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in tree[cluster] if o["kind"] == kind}


def test_policies_map_to_valid_linkerd_objects(tmp_path: Path) -> None:
    spec = policy_spec()
    code, output = invoke(tmp_path, spec)
    assert code == 0, output
    tree = load_valid_tree(tmp_path / "out")
    clusters = [c["name"] for c in spec["clusters"]]
    for caller in clusters:
        routes = objects(tree, caller, "HTTPRoute")
        main = routes["reviews-http"]["spec"]
        assert main["parentRefs"] == [{"group": "", "kind": "Service", "name": "reviews",
                                       "port": 9080}]
        (rule,) = main["rules"]
        weights = {b["name"]: b["weight"] for b in rule["backendRefs"]}
        others = [c for c in clusters if c != caller]
        # 70 local, the remaining 30 evenly over the two other clusters' mirrors.
        assert weights == {"reviews": 70, **{f"reviews-{o}": 15 for o in others}}
        assert rule["timeouts"] == {"request": "3s"}
        retry = routes["reviews-http-retry"]
        # retry.linkerd.io/grpc is read on GRPCRoutes only (test_upstream_fixes)
        assert retry["metadata"]["annotations"] == {
            "retry.linkerd.io/limit": "2", "retry.linkerd.io/http": "5xx",
            "retry.linkerd.io/timeout": "1s"}
        methods = {m["method"] for m in retry["spec"]["rules"][0]["matches"]}
        assert "POST" not in methods and "GET" in methods
        mtls = objects(tree, caller, "MeshTLSAuthentication")["reviews-callers"]
        assert sorted(mtls["spec"]["identities"]) == sorted([
            "productpage.bookinfo.serviceaccount.identity.linkerd.mesh.example.org",
            "*.frontend.serviceaccount.identity.linkerd.mesh.example.org",
            GATEWAY + "mesh.example.org"])
        server = objects(tree, caller, "Server")["reviews-http"]
        assert server["spec"]["port"] == 9080
        assert objects(tree, caller, "AuthorizationPolicy")["reviews-http"]["spec"][
            "targetRef"]["name"] == "reviews-http"
        ns = objects(tree, caller, "Namespace")["bookinfo"]
        assert ns["metadata"]["annotations"]["config.linkerd.io/default-inbound-policy"] == "deny"
    for cluster in ("a", "b"):
        routes = objects(tree, cluster, "HTTPRoute")
        header_rule, split_rule = routes["details-http"]["spec"]["rules"]
        assert header_rule["matches"] == [{"headers": [
            {"type": "Exact", "name": "x-canary", "value": "yes"}]}]
        assert [b["name"] for b in header_rule["backendRefs"]] == ["details-v2"]
        assert {b["name"]: b["weight"] for b in split_rule["backendRefs"]} == {
            "details-v1": 90, "details-v2": 10}
        services = objects(tree, cluster, "Service")
        assert services["details-v2"]["spec"]["selector"] == {"app": "details",
                                                              "version": "v2"}
    assert "details-http" not in objects(tree, "c", "HTTPRoute")
    assert "callers in c" in output  # the note for clusters without the service


def test_unsupported_policies_are_errors(tmp_path: Path) -> None:
    spec = three_clusters()
    spec["clusters"][0]["region"] = "r1"
    spec["clusters"][1]["region"] = "r2"
    reviews = spec["services"][0]
    reviews.update({
        "fault": {"header": {"name": "x-test", "exact": "1"},
                  "abort": {"httpStatus": 503}},
        "routing": {"locality": {"failover": [{"from": "r1", "to": "r2"}]}},
        "loadBalancer": {"algorithm": "LEAST_REQUEST"},
        "retries": {"attempts": 2, "retryOn": ["retriable-4xx"]},
    })
    spec["services"][1]["routing"] = {"localShare": 50}  # federated
    spec["traffic"] = {"crossCluster": "serviceEntry"}
    code, output = invoke(tmp_path, spec)
    assert code == 2, output
    paths = {line.split(": ")[1] for line in output.splitlines() if ": meshboot:" in line}
    assert paths == {
        "meshboot:services[0].fault", "meshboot:services[0].routing.locality",
        "meshboot:services[0].loadBalancer", "meshboot:services[0].retries.retryOn[0]",
        "meshboot:services[1].federated", "meshboot:traffic.crossCluster"}, output
    assert "not supported with Linkerd" in output
    assert not (tmp_path / "out").exists()


def test_gateway_api_validation_is_not_vacuous() -> None:
    import pytest

    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
             "metadata": {"name": "r", "namespace": "n"},
             "spec": {"parentRefs": [{"name": "s", "kind": "Service", "group": ""}],
                      "rules": [{"backendRefs": [{"name": "s", "weight": "ten"}]}]}}
    with pytest.raises(AssertionError):
        validate(route)


def test_per_route_authorization(tmp_path: Path) -> None:
    """Rules with `to` become Server-attached HTTPRoutes, each with its own callers.

    Linkerd picks the most specific route, so a route must also admit the callers
    of every rule whose operations cover it.
    """
    td = "mesh.example.org"
    spec = three_clusters()

    def sa(ns: str, name: str) -> str:
        return f"{name}.{ns}.serviceaccount.identity.linkerd.{td}"

    rules = [
        {"from": {"serviceAccounts": ["bookinfo/productpage"]},
         "to": {"methods": ["GET"], "paths": ["/api/*"]}},
        {"from": {"namespaces": ["admin"]}},                       # any operation
        {"from": {"serviceAccounts": ["ops/reporter"]},
         "to": {"methods": ["GET"], "paths": ["/api/v1/*"]}},      # inside rule 0
        {"to": {"paths": ["/healthz"]}},                           # any meshed caller
    ]
    spec["services"][0]["authorization"] = {"rules": rules, "probePaths": ["/healthz"]}
    spec["linkerd"] = {"admitGatewayIdentity": True}  # a is reached from b's network
    code, output = invoke(tmp_path, spec)
    assert code == 0, output
    tree = load_tree(tmp_path / "out")
    objs = tree["a"]
    for obj in objs:
        validate(obj)
    auths = {o["metadata"]["name"]: sorted(o["spec"]["identities"])
             for o in objs if o["kind"] == "MeshTLSAuthentication"}
    admin = f"*.admin.serviceaccount.identity.linkerd.{td}"
    gw = GATEWAY + td
    assert auths == {
        "reviews-authz-0": sorted([sa("bookinfo", "productpage"), admin, gw]),
        "reviews-authz-2": sorted([sa("ops", "reporter"), sa("bookinfo", "productpage"),
                                   admin, gw]),
        "reviews-authz-3": ["*"],
        "reviews-authz-any": sorted([admin, gw]),
    }
    routes = {o["metadata"]["name"]: o for o in objs
              if o["kind"] == "HTTPRoute" and o["apiVersion"].startswith("policy.linkerd.io/")}
    assert set(routes) == {"reviews-http-authz-0", "reviews-http-authz-2",
                           "reviews-http-authz-3", "reviews-http-authz-any",
                           "reviews-http-probe"}  # kubelet probes (test_upstream_fixes)
    probe = routes.pop("reviews-http-probe")
    assert probe["spec"]["rules"][0]["matches"] == [
        {"path": {"type": "Exact", "value": "/healthz"}, "method": "GET"}]
    for route in routes.values():
        assert route["spec"]["parentRefs"] == [
            {"group": "policy.linkerd.io", "kind": "Server", "name": "reviews-http"}]
    assert routes["reviews-http-authz-0"]["spec"]["rules"][0]["matches"] == [
        {"path": {"type": "RegularExpression", "value": "/api/.*"}, "method": "GET"}]
    assert routes["reviews-http-authz-3"]["spec"]["rules"][0]["matches"] == [
        {"path": {"type": "Exact", "value": "/healthz"}}]
    policies = {o["metadata"]["name"]: o["spec"] for o in objs
                if o["kind"] == "AuthorizationPolicy"}
    for name in routes:
        target = policies[name]["targetRef"]
        assert target == {"group": "policy.linkerd.io", "kind": "HTTPRoute", "name": name}
        k = name.rsplit("-", 1)[1]
        assert policies[name]["requiredAuthenticationRefs"][0]["name"] == f"reviews-authz-{k}"
    # No Server-wide grant: requests matching no route are refused.
    assert "reviews-http" not in policies


def test_outlier_detection_becomes_a_circuit_breaker(tmp_path: Path) -> None:
    spec = three_clusters()
    failures, ejection = 4, "1m30s"
    spec["services"][0]["outlierDetection"] = {"consecutive5xxErrors": failures,
                                               "baseEjectionTime": ejection}
    code, output = invoke(tmp_path, spec)
    assert code == 0, output
    tree = load_tree(tmp_path / "out")
    for cluster in spec["services"][0]["clusters"]:
        svc = objects(tree, cluster, "Service")["reviews"]
        validate(svc)
        assert svc["metadata"]["annotations"] == {
            "balancer.linkerd.io/failure-accrual": "consecutive",
            "balancer.linkerd.io/failure-accrual-consecutive-max-failures": str(failures),
            "balancer.linkerd.io/failure-accrual-consecutive-min-penalty": "90s",
            # over the 60s default max penalty (see test_upstream_fixes)
            "balancer.linkerd.io/failure-accrual-consecutive-max-penalty": "90s",
        }


def test_outlier_detection_fields_linkerd_lacks_are_errors(tmp_path: Path) -> None:
    spec = three_clusters()
    spec["services"][0]["outlierDetection"] = {"consecutive5xxErrors": 3, "interval": "10s",
                                               "maxEjectionPercent": 50}
    code, output = invoke(tmp_path, spec)
    assert code == 2, output
    assert "meshboot:services[0].outlierDetection.interval: not supported with Linkerd" in output
    assert "meshboot:services[0].outlierDetection.maxEjectionPercent: not supported with " \
           "Linkerd" in output
    assert not (tmp_path / "out").exists()
